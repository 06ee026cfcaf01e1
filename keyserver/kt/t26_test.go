package kt_test

import (
	"bytes"
	"errors"
	"github.com/moat-im/moat/crypto/tlog"
	"testing"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/vmap"
)

// cloneLookup deep-copies a response through its encoding.
func cloneLookup(t testing.TB, r *kt.LookupResponse) *kt.LookupResponse {
	t.Helper()
	return must(kt.ParseLookupResponse(must(r.Marshal())))
}

func wantProofError(t *testing.T, err error, step kt.ProofStep) *kt.KTProofError {
	t.Helper()
	var ke *kt.KTProofError
	if !errors.As(err, &ke) || !errors.Is(err, kt.ErrProof) {
		t.Fatalf("got %v, want a *KTProofError", err)
	}
	if ke.Step != step {
		t.Fatalf("got step %v (%v), want %v", ke.Step, err, step)
	}
	if len(ke.Checkpoint) == 0 || len(ke.Response) == 0 {
		t.Fatal("KTProofError without its evidence")
	}
	if _, err := kt.ParseLookupResponse(ke.Response); err != nil {
		if _, err := kt.ParseHistoryResponse(ke.Response); err != nil {
			t.Fatal("evidence does not parse")
		}
	}
	return ke
}

// TestT26KeyNotInKT is adversarial case T26: a key that is not in the key
// directory, or a response whose proofs do not verify, is not used, and
// the client raises an alarm: a *KTProofError with the evidence. The
// client's state is byte-identical afterwards. Each mutation is tried
// against a checkpoint the client already trusts and against a new one.
func TestT26KeyNotInKT(t *testing.T) {
	w := newWorld(t, 26)
	// cFresh trusts epoch 0's checkpoint: every response after epoch 3
	// brings it a new checkpoint. cCached trusts epoch 3's: responses
	// reuse it.
	cFresh := w.client(t)
	must(cFresh.VerifyLookup(w.tenant, w.bob, must(w.d.Lookup(w.bob, 0)), at(2)))
	// Epoch 1: alice gets a second device. Epochs 2 and 3 change nothing:
	// cFresh is then three epochs behind, and its proofs' anchored
	// inclusion (directory.md §Anchored inclusion) has a hash to tamper
	// with.
	a2 := must(w.d.Enrol(w.alice, w.a1, at(2)))
	must(w.d.PublishEpoch(at(3)))
	must(w.d.PublishEpoch(at(3)))
	must(w.d.PublishEpoch(at(3)))
	cCached := w.client(t)
	must(cCached.VerifyLookup(w.tenant, w.bob, must(w.d.Lookup(w.bob, 0)), at(4)))
	oldRec := must(w.d.Records(org.Label{User: w.alice}))[0]

	type mutation struct {
		name string
		user org.UserID // the user the client asks for; zero: alice
		mut  func(r *kt.LookupResponse)
		step kt.ProofStep
		// cached, if set, is the step for a response against the trusted
		// checkpoint, where an earlier check catches the mutation.
		cached kt.ProofStep
	}
	// Mutations tried on a copy of c that holds no entry (restored from
	// its state, the held entry dropped): for a client that holds it, an empty inclusion proof is the
	// held entry's (directory.md §Held entry, TestHeldEntry).
	restored := map[string]bool{"log inclusion truncated": true}
	bobResp := func(size uint64) *kt.LookupResponse { return must(w.d.Lookup(w.bob, size)) }
	var size uint64
	muts := []mutation{
		{"vrf proof bit flipped", org.UserID{}, func(r *kt.LookupResponse) { r.Proof.VRFProof[40] ^= 1 }, kt.StepVRF, 0},
		{"vrf proof of another user", org.UserID{}, func(r *kt.LookupResponse) { r.Proof.VRFProof = bobResp(size).Proof.VRFProof }, kt.StepVRF, 0},
		{"whole proof of another user", org.UserID{}, func(r *kt.LookupResponse) { *r = *cloneLookup(t, bobResp(size)) }, kt.StepVRF, 0},
		{"label of another user, own vrf proof", org.UserID{}, func(r *kt.LookupResponse) {
			b := cloneLookup(t, bobResp(size))
			r.Proof.MapProof, r.Record = b.Proof.MapProof, b.Record
		}, kt.StepMap, 0},
		{"map sibling flipped", org.UserID{}, func(r *kt.LookupResponse) { r.Proof.MapProof.Siblings[0][3] ^= 1 }, kt.StepMap, 0},
		{"map proof of absence claimed", org.UserID{}, func(r *kt.LookupResponse) {
			r.Proof.MapProof.Kind, r.Proof.MapProof.Commitment, r.Record = vmap.ProofAbsenceEmpty, vmap.Commitment{}, nil
		}, kt.StepMap, 0},
		{"map commitment swapped", org.UserID{}, func(r *kt.LookupResponse) { r.Proof.MapProof.Commitment[0] ^= 1 }, kt.StepMap, 0},
		{"log inclusion hash flipped", org.UserID{}, func(r *kt.LookupResponse) { r.Proof.Inclusion[0][0] ^= 1 }, kt.StepLogInclusion, 0},
		{"log inclusion truncated", org.UserID{}, func(r *kt.LookupResponse) { r.Proof.Inclusion = r.Proof.Inclusion[:0] }, kt.StepLogInclusion, 0},
		{"log inclusion hash appended", org.UserID{}, func(r *kt.LookupResponse) { r.Proof.Inclusion = append(r.Proof.Inclusion, tlog.Hash{1}) }, kt.StepLogInclusion, 0},
		{"epoch entry map root changed", org.UserID{}, func(r *kt.LookupResponse) { r.Proof.Entry.MapRoot[0] ^= 1 }, kt.StepLogInclusion, 0},
		{"epoch entry time changed", org.UserID{}, func(r *kt.LookupResponse) { r.Proof.Entry.Time = r.Proof.Entry.Time.Add(1e9) }, kt.StepLogInclusion, kt.StepEpoch},
		{"older epoch served", org.UserID{}, func(r *kt.LookupResponse) { r.Proof.Entry.Epoch-- }, kt.StepEpoch, 0},
		{"value record changed", org.UserID{}, func(r *kt.LookupResponse) { r.Record.Value[len(r.Record.Value)-1] ^= 1 }, kt.StepRecord, 0},
		{"record nonce changed", org.UserID{}, func(r *kt.LookupResponse) { r.Record.Nonce[0] ^= 1 }, kt.StepRecord, 0},
		{"older record (commitment mismatch)", org.UserID{}, func(r *kt.LookupResponse) { r.Record = oldRec }, kt.StepRecord, 0},
		{"record epoch changed", org.UserID{}, func(r *kt.LookupResponse) { r.Record.Epoch = 7 }, kt.StepRecord, 0},
	}
	for _, fresh := range []bool{false, true} {
		c := cCached
		if fresh {
			c = cFresh
		}
		size = c.TreeSize()
		for _, m := range muts {
			name := m.name
			if fresh {
				name += "/new checkpoint"
			}
			t.Run(name, func(t *testing.T) {
				r := cloneLookup(t, must(w.d.Lookup(w.alice, size)))
				m.mut(r)
				c := c
				if restored[m.name] {
					c = must(kt.RestoreClient(w.d.Config(maxAge), state(t, c)))
					c.DropCaches(true) // and its held entry
				}
				before := state(t, c)
				_, err := c.VerifyLookup(w.tenant, w.alice, r, at(5))
				step := m.step
				if !fresh && m.cached != 0 {
					step = m.cached
				}
				wantProofError(t, err, step)
				sameState(t, c, before)
			})
		}
		// The untampered response verifies, and a2 is in it.
		res := must(c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, size)), at(5)))
		if res.Device(a2.ID) == nil {
			t.Fatal("a2 missing")
		}
	}

	t.Run("key withheld from the directory is not usable", func(t *testing.T) {
		// The directory publishes alice's value without a3: whoever is
		// handed a3's key (say, by the relay) does not find it in KT.
		a3 := must(w.d.Enrol(w.alice, w.a1, at(6)))
		v := must(w.d.Tenant.UserValue(w.alice))
		var kept []*org.DeviceCertificate
		for _, cert := range v.Certificates {
			if cert.Device != a3.ID {
				kept = append(kept, cert)
			}
		}
		v.Certificates = kept
		w.d.Inject(org.Label{User: w.alice}, must(v.Marshal()))
		must(w.d.PublishEpoch(at(7)))
		c := w.client(t)
		res := must(c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, 0)), at(8)))
		if res.Device(a3.ID) != nil || res.Device(a2.ID) == nil {
			t.Fatal("withheld device found, or a present one missing")
		}
	})

	t.Run("value of another user under the label", func(t *testing.T) {
		bv := must(w.d.Tenant.UserValue(w.bob))
		w.d.Inject(org.Label{User: w.alice}, must(bv.Marshal()))
		must(w.d.PublishEpoch(at(9)))
		c := w.client(t)
		before := state(t, c)
		_, err := c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, 0)), at(10))
		ke := wantProofError(t, err, kt.StepValue)
		if !errors.Is(ke, org.ErrWrongSubject) {
			t.Fatalf("got %v", err)
		}
		sameState(t, c, before)
	})

	t.Run("forged checkpoint is a tlog error, not a proof error", func(t *testing.T) {
		c := w.client(t)
		r := cloneLookup(t, must(w.d.Lookup(w.alice, 0)))
		r.Proof.VRFProof[0] ^= 1
		i := bytes.Index(r.Checkpoint.Note, []byte("\n\n"))
		r.Checkpoint.Note[i-2] ^= 1 // the root hash's base64
		before := state(t, c)
		_, err := c.VerifyLookup(w.tenant, w.alice, r, at(10))
		if errors.Is(err, kt.ErrProof) || err == nil {
			t.Fatalf("got %v", err)
		}
		sameState(t, c, before)
	})

}

// TestLabelRollback: a client that saw a label at version n refuses to see
// it at a lower version, or at version n with another commitment, or
// absent, even under otherwise valid proofs.
func TestLabelRollback(t *testing.T) {
	w := newWorld(t, 27)
	must(w.d.Enrol(w.alice, w.a1, at(2)))
	must(w.d.PublishEpoch(at(3)))
	c := w.client(t)
	must(c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, 0)), at(4)))
	recs := must(w.d.Records(org.Label{User: w.alice}))
	ok(t, w.d.InjectRecord(org.Label{User: w.alice}, recs[0])) // version 1 again
	must(w.d.PublishEpoch(at(5)))
	before := state(t, c)
	_, err := c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, c.TreeSize())), at(6))
	wantProofError(t, err, kt.StepRollback)
	sameState(t, c, before)
	// A client that never saw alice cannot tell from a lookup; its
	// history check can: version 1 has no successor in the chain.
	c2 := w.client(t)
	must(c2.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, 0)), at(6)))

	// Same version, another commitment.
	r2 := *recs[1]
	r2.Value = recs[0].Value
	ok(t, w.d.InjectRecord(org.Label{User: w.alice}, &r2))
	must(w.d.PublishEpoch(at(7)))
	_, err = c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, c.TreeSize())), at(8))
	wantProofError(t, err, kt.StepRollback)
	sameState(t, c, before)
}
