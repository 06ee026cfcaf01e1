package service_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/service"
	"github.com/moat-im/moat/keyserver/store"
	"github.com/moat-im/moat/keyserver/vmap"
)

// overlay is a vmap.NodeStore that reads a fork's nodes first, then the
// real store's: a second map built on the real one's history.
type overlay struct {
	top  *vmap.MemStore
	base vmap.NodeStore
}

func (o *overlay) GetNodes(keys []vmap.NodeKey) ([]vmap.Node, error) {
	out := make([]vmap.Node, len(keys))
	for i, k := range keys {
		ns, err := o.top.GetNodes([]vmap.NodeKey{k})
		if errors.Is(err, vmap.ErrNodeNotFound) {
			ns, err = o.base.GetNodes([]vmap.NodeKey{k})
		}
		if err != nil {
			return nil, err
		}
		out[i] = ns[0]
	}
	return out, nil
}

// TestT27SystemSplitView (adversarial case T27, at the system level): a
// malicious directory that holds every key of the tenant (CA, log, VRF,
// store) shows client B a second view of the next epoch, in which Alice
// has a rogue device recovered with forged admin approvals, while client A
// gets the real one.
//
//   - The real witnesses, over HTTP, refuse to cosign the second view
//     (409, then 422 from the size they cosigned): the operator cannot get
//     a quorum-cosigned checkpoint for it.
//   - With one colluding witness (below the quorum of 2), B rejects the
//     second view and its state does not change.
//   - With two colluding witnesses (a quorum that misbehaves), B accepts
//     it, but A and B exchanging checkpoints detect the fork: each gets a
//     *tlog.ForkError holding both signed notes, which survives a restart
//     of the client, and every later response is refused.
func TestT27SystemSplitView(t *testing.T) {
	w := newWorld(t, worldOptions{seed: 27})
	ctx := context.Background()
	alice, bob := w.addUser("Alice"), w.addUser("Bob")
	a1 := w.mustEnrol(alice) // client A
	b1 := w.mustEnrol(bob)   // client B
	w.publish()
	must(w.lookup(a1, alice))
	must(w.lookup(b1, alice))
	size := w.ten().Head().LogSize // both clients trust this size
	if a1.kt.TreeSize() != size || b1.kt.TreeSize() != size {
		t.Fatal("clients not at the head")
	}

	// The real next epoch (Alice unchanged), cosigned by every witness.
	honest := w.publish()
	must(w.lookup(a1, alice))

	// The second view of the same epoch: a tenant state forked from the
	// stored one, in which the operator enrols a rogue device for Alice
	// with two forged admin approvals (it holds no admin key in reality;
	// here the test plays every part).
	loader := org.NewTenantLoader(func(label [32]byte, v uint32) ([]byte, error) {
		rs, err := w.st.Values(ctx, vmap.Label(label), v, v)
		if err != nil {
			return nil, err
		}
		rec, err := kt.ParseValueRecord(rs[0])
		if err != nil {
			return nil, err
		}
		return rec.Value, nil
	})
	ok(t, w.st.TenantRecords(ctx, w.tenant, func(k store.TenantKey, v []byte) error { return loader.Add(org.StateKey(k), v) }))
	forked := must(loader.Finish(w.keys.CA))
	rogue := w.newDeviceKeys(alice)
	code := must(forked.IssueEnrolmentCode(w.rnd, w.admins[0].Public().ID(), alice, time.Hour, w.clk.Now()))
	req := must(org.NewEnrolmentRequest(code, rogue.id, rogue.mls))
	aps := []*org.Approval{must(org.ApproveByAdmin(w.admins[0], alice, req)), must(org.ApproveByAdmin(w.admins[1], alice, req))}
	must(forked.RedeemEnrolmentCode(code, req, aps, w.clk.Now()))
	ups := must(forked.Publish(w.clk.Now()))
	var aliceValue []byte
	for _, up := range ups {
		if up.Label.User == alice {
			aliceValue = up.Value
		}
	}
	// Alice's next record and the forked map of epoch size-1+1, on top of
	// the real map's history; the forked epoch entry and log.
	epoch := honest.Entry.Epoch
	label, pi := kt.EvaluateLabel(w.keys.VRF, kt.UserAlpha(w.tenant, alice))
	prevV := must(w.st.LatestVersion(ctx, label))
	prev := must(kt.ParseValueRecord(must(w.st.Values(ctx, label, prevV, prevV))[0]))
	if prev.Epoch >= epoch {
		t.Fatal("alice changed in the honest epoch")
	}
	rec, cm := must2(kt.NextRecord(w.keys.Secret, label, epoch, prev, aliceValue))
	ov := &overlay{top: vmap.NewMemStore(), base: w.st}
	fm := vmap.New(ov, nil)
	batch := must(fm.Update(epoch, []vmap.Change{{Label: label, Commitment: cm}}))
	ok(t, ov.top.Commit(batch))
	forkEntry := kt.EpochEntry{Epoch: epoch, Time: honest.Entry.Time.Add(time.Second), MapRoot: batch.Root}
	alt := must(tlog.NewTree(ctx, tlog.NewMemoryNodeStore(), 0))
	for e := uint64(0); e < epoch; e++ {
		must(alt.Append(ctx, must(must(w.ten().EpochEntry(ctx, e)).Marshal())))
	}
	must(alt.Append(ctx, must(forkEntry.Marshal())))
	forkCP := &tlog.Checkpoint{Origin: w.origin, Size: epoch + 1, Root: must(alt.Root(ctx, epoch+1))}
	forkNote := must(tlog.SignCheckpoint(forkCP, w.keys.Log))

	// 1. The real witnesses refuse it over HTTP: each has cosigned the
	// real epoch, so the request from size-1's old size conflicts, and
	// the request from the witnessed size is inconsistent.
	for _, tw := range w.witnesses {
		wc := tw.client(t)
		proof := must(alt.ConsistencyProof(ctx, size, epoch+1))
		_, err := wc.AddCheckpoint(ctx, &tlog.AddCheckpointRequest{OldSize: size, Proof: proof, Checkpoint: forkNote})
		ce, isConflict := errors.AsType[*tlog.ConflictError](err)
		if !isConflict || ce.Size != epoch+1 {
			t.Fatalf("witness %s: %v, want 409 at size %d", tw.name, err, epoch+1)
		}
		_, err = wc.AddCheckpoint(ctx, &tlog.AddCheckpointRequest{OldSize: ce.Size, Checkpoint: forkNote})
		if we, isRefusal := errors.AsType[*service.WitnessError](err); !isRefusal || we.Status != http.StatusUnprocessableEntity {
			t.Fatalf("witness %s cosigned the second view: %v", tw.name, err)
		}
		// Its monitoring checkpoint is still the real one.
		mon := must(tw.w.Checkpoint(ctx, w.origin))
		if noteCheckpoint(t, mon).Root != noteCheckpoint(t, honest.Checkpoint).Root {
			t.Fatalf("witness %s now holds the second view", tw.name)
		}
	}

	// The malicious directory's answer to B's lookup of Alice.
	forkedLookup := func(note []byte) *kt.LookupResponse {
		r := &kt.LookupResponse{
			Checkpoint: kt.CheckpointUpdate{BaseSize: size, Note: note, Consistency: must(alt.ConsistencyProof(ctx, size, epoch+1))},
			Proof: kt.LabelProof{Entry: forkEntry, Inclusion: must(alt.InclusionProof(ctx, epoch, epoch+1)), VRFProof: pi,
				MapProof: must(fm.Prove(epoch, label))},
			Record: rec,
		}
		if err := r.Proof.Anchor(&r.Checkpoint); err != nil { // directory.md §Anchored inclusion
			t.Fatal(err)
		}
		return r
	}
	var served *kt.LookupResponse
	evil := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "application/octet-stream")
		rw.Write(must(served.Marshal()))
	}))
	defer evil.Close()
	bEvil := *b1.api
	bEvil.BaseURL = evil.URL
	lookupB := func() (*kt.LookupResult, error) {
		resp := must(bEvil.Lookup(ctx, alice, b1.kt.TreeSize()))
		return b1.kt.VerifyLookup(w.tenant, alice, resp, w.clk.Now())
	}

	// 2. One colluding witness: below the quorum, B rejects the view.
	served = forkedLookup(w.witnesses[0].cosignAs(t, forkNote, w.clk.Now()))
	before := must(b1.kt.MarshalState())
	if _, err := lookupB(); !errors.Is(err, tlog.ErrNoQuorum) {
		t.Fatalf("B with one colluding witness: %v, want ErrNoQuorum", err)
	}
	if !bytes.Equal(before, must(b1.kt.MarshalState())) {
		t.Fatal("B's state changed on a rejected view")
	}

	// 3. Two colluding witnesses: B accepts the second view and sees the
	// rogue device; A is on the real view.
	quorumNote := w.witnesses[1].cosignAs(t, w.witnesses[0].cosignAs(t, forkNote, w.clk.Now()), w.clk.Now())
	served = forkedLookup(quorumNote)
	res := must(lookupB())
	if len(res.Devices) != 2 {
		t.Fatalf("B's view of alice: %d devices", len(res.Devices))
	}
	ra := must(w.lookup(a1, alice))
	if len(ra.Devices) != 1 {
		t.Fatalf("A's view of alice: %d devices", len(ra.Devices))
	}

	// Gossip: A and B exchange their checkpoints. Each detects the fork.
	_, noteA := a1.kt.Checkpoint()
	_, noteB := b1.kt.Checkpoint()
	_, errA := a1.kt.UpdateCheckpoint(&kt.ConsistencyResponse{Checkpoint: kt.CheckpointUpdate{BaseSize: a1.kt.TreeSize(), Note: noteB}}, w.clk.Now())
	_, errB := b1.kt.UpdateCheckpoint(&kt.ConsistencyResponse{Checkpoint: kt.CheckpointUpdate{BaseSize: b1.kt.TreeSize(), Note: noteA}}, w.clk.Now())
	for name, err := range map[string]error{"A": errA, "B": errB} {
		fe, isFork := errors.AsType[*tlog.ForkError](err)
		if !isFork || !fe.Proven() {
			t.Fatalf("%s: %v, want a proven fork", name, err)
		}
		// The evidence: two notes signed by the log, same size, two roots.
		c1 := must(tlog.OpenCheckpoint(fe.Trusted, w.origin, w.keys.Log.Public()))
		c2 := must(tlog.OpenCheckpoint(fe.Conflicting, w.origin, w.keys.Log.Public()))
		if c1.Size != c2.Size || c1.Root == c2.Root {
			t.Fatalf("%s: evidence %v %v", name, c1, c2)
		}
	}
	// The evidence is kept: in the state, and across a restart.
	for name, c := range map[string]*kt.Client{"A": a1.kt, "B": b1.kt} {
		if c.Fork() == nil {
			t.Fatalf("%s lost the fork", name)
		}
		restored := must(kt.RestoreClient(kt.Config{Bundle: w.ten().TrustBundle(), MaxAge: maxAge}, must(c.MarshalState())))
		if restored.Fork() == nil {
			t.Fatalf("%s: fork lost on restore", name)
		}
	}
	// And A refuses everything from now on, even honest answers.
	if _, err := w.lookup(a1, alice); !isFork(err) {
		t.Fatalf("A after the fork: %v", err)
	}
}

func isFork(err error) bool {
	_, ok := errors.AsType[*tlog.ForkError](err)
	return ok
}

func must2[A, B any](a A, b B, err error) (A, B) {
	if err != nil {
		panic(err)
	}
	return a, b
}
