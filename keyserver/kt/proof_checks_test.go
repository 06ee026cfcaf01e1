package kt_test

// Tests that pin checks of docs/spec/directory.md §Client verification that
// only a directory operator holding the log key can exercise: responses
// whose every proof verifies, but which roll a label back to absent or
// carry a record from a later epoch.

import (
	"context"
	"errors"
	"testing"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
)

// forgeEpoch appends entry to the directory's log as the next epoch,
// without the map, as an operator holding the log key can: it signs the
// checkpoint and has every (honest) witness cosign it, which they do,
// since the log only grew. It returns the checkpoint update for a client
// at the previous size. The directory's own bookkeeping does not know the
// epoch: it must be the test's last use of the directory.
func forgeEpoch(t testing.TB, w *world, entry kt.EpochEntry) kt.CheckpointUpdate {
	t.Helper()
	ctx := context.Background()
	d := w.d
	old := d.Tree.Size()
	if entry.Epoch != old {
		t.Fatalf("forged epoch %d at size %d", entry.Epoch, old)
	}
	must(d.Tree.Append(ctx, must(entry.Marshal())))
	size := d.Tree.Size()
	cp := &tlog.Checkpoint{Origin: d.Origin, Size: size, Root: must(d.Tree.Root(ctx, size))}
	signed := must(tlog.SignCheckpoint(cp, d.LogKey))
	note := signed
	proof := must(d.Tree.ConsistencyProof(ctx, old, size))
	for _, wt := range d.Witnesses {
		lines := must(wt.AddCheckpoint(ctx, &tlog.AddCheckpointRequest{OldSize: old, Proof: proof, Checkpoint: signed}, entry.Time))
		note = must(tlog.AddCosignatures(note, lines))
	}
	return kt.CheckpointUpdate{BaseSize: old, Note: note, Consistency: proof}
}

// TestLabelSeenThenAbsent: labels never leave the map, so a client that
// saw a label present refuses a proof that it is absent, even one that
// verifies: here the operator appends an epoch whose map root is that of
// an epoch before carol existed, and proves her absence against it. The
// witnesses cosign it (the log only grew); a client that never saw carol
// cannot tell, one that did refuses with the evidence, its state
// unchanged.
func TestLabelSeenThenAbsent(t *testing.T) {
	w := newWorld(t, 85)
	epoch0 := must(w.d.Lookup(w.alice, 0)).Proof.Entry
	carol := uid(3)
	ok(t, w.d.AddUser(carol, "Carol", at(2)))
	must(w.d.Enrol(carol, nil, at(2)))
	must(w.d.PublishEpoch(at(3)))
	seen := w.client(t)
	res := must(seen.VerifyLookup(w.tenant, carol, must(w.d.Lookup(carol, 0)), at(4)))
	fresh := w.client(t)
	must(fresh.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, 0)), at(4)))
	vrfProof := must(w.d.Lookup(carol, 0)).Proof.VRFProof
	mapProof := must(w.d.Map.Prove(epoch0.Epoch, res.Label))

	ctx := context.Background()
	forged := kt.EpochEntry{Epoch: w.d.Size(), Time: at(5), MapRoot: epoch0.MapRoot}
	cu := forgeEpoch(t, w, forged)
	resp := &kt.LookupResponse{Checkpoint: cu, Proof: kt.LabelProof{
		Entry: forged, Inclusion: must(w.d.Tree.InclusionProof(ctx, forged.Epoch, forged.Epoch+1)),
		VRFProof: vrfProof, MapProof: mapProof,
	}}
	ok(t, resp.Proof.Anchor(&resp.Checkpoint))

	before := state(t, seen)
	_, err := seen.VerifyLookup(w.tenant, carol, cloneLookup(t, resp), at(6))
	ke := wantProofError(t, err, kt.StepRollback)
	if ke.Label != res.Label || ke.Epoch != forged.Epoch {
		t.Fatalf("evidence names label %v epoch %d", ke.Label, ke.Epoch)
	}
	sameState(t, seen, before)
	if _, err := seen.VerifyAbsence(w.tenant, carol, cloneLookup(t, resp), at(6)); !errors.Is(err, kt.ErrProof) {
		t.Fatalf("absence of a label seen: got %v", err)
	}
	sameState(t, seen, before)

	// The contrast: every proof in the response verifies, so a client
	// that never saw carol takes her for absent.
	if _, err := fresh.VerifyLookup(w.tenant, carol, cloneLookup(t, resp), at(6)); !errors.Is(err, kt.ErrNotFound) {
		t.Fatalf("client that never saw carol: got %v, want ErrNotFound", err)
	}
}

// TestRecordFromALaterEpoch: a record opens the map's commitment but
// claims an epoch after the one the map is proven at: the operator
// pre-dates nothing it can justify, and the client refuses it.
func TestRecordFromALaterEpoch(t *testing.T) {
	// run injects alice's next record with epoch published+ahead, where
	// published is the epoch that publishes it, and looks her up.
	run := func(ahead uint64) (*kt.Client, []byte, *kt.ValueRecord, error) {
		w := newWorld(t, 86)
		c := w.client(t)
		res := must(c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, 0)), at(2)))
		prev := res.Record
		next := &kt.ValueRecord{
			Epoch: w.d.Size() + ahead, Version: prev.Version + 1, Prev: must(kt.Commit(res.Label, prev)),
			Nonce: [kt.NonceSize]byte{0x5e}, Value: prev.Value,
		}
		ok(t, w.d.InjectRecord(org.Label{User: w.alice}, next))
		if ep := must(w.d.PublishEpoch(at(3))); ep.Entry.Epoch+ahead != next.Epoch {
			t.Fatal("record not published at the epoch meant")
		}
		before := state(t, c)
		r, err := c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, c.TreeSize())), at(4))
		if err == nil && r.Record.Version != next.Version {
			t.Fatalf("version %d", r.Record.Version)
		}
		return c, before, next, err
	}
	c, before, _, err := run(5)
	wantProofError(t, err, kt.StepRecord)
	sameState(t, c, before)
	// The same record with the epoch that published it is accepted.
	if _, _, _, err := run(0); err != nil {
		t.Fatalf("record of the epoch that published it: %v", err)
	}
}
