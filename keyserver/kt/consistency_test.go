package kt_test

import (
	"errors"
	"testing"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/kt"
)

// TestBadConsistencyProof: a checkpoint whose note is the log's, cosigned
// by the witness quorum and fresh, but served with a consistency proof
// that does not prove the trusted tree a prefix of it, is refused
// (docs/spec/directory.md §Verifying a lookup, step 9: tlog's append-only
// check), and the client's state is byte-identical: through
// UpdateCheckpoint without a last entry (the proof is the only check) and
// through a lookup, where a changed hash that the anchored inclusion proof
// does not use reaches step 9. The unchanged responses are then accepted.
func TestBadConsistencyProof(t *testing.T) {
	w := newWorld(t, 404)
	c := w.client(t)
	must(c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, 0)), at(2)))
	ok(t, w.d.PublishQuietEpochs(5, at(2)))
	base := c.TreeSize()

	isFork := func(err error) bool {
		var fe *tlog.ForkError
		return errors.As(err, &fe) && !fe.Proven()
	}
	cons := must(w.d.Consistency(base))
	cons.Last = nil
	if len(cons.Checkpoint.Consistency) == 0 {
		t.Fatal("no consistency proof")
	}
	for i := range cons.Checkpoint.Consistency {
		bad := *cons
		bad.Checkpoint.Consistency = append([]tlog.Hash(nil), cons.Checkpoint.Consistency...)
		bad.Checkpoint.Consistency[i][3] ^= 1
		before := state(t, c)
		if _, err := c.UpdateCheckpoint(&bad, at(3)); !isFork(err) {
			t.Fatalf("consistency hash %d changed: got %v, want an unproven *tlog.ForkError", i, err)
		}
		sameState(t, c, before)
	}
	trunc := *cons
	trunc.Checkpoint.Consistency = cons.Checkpoint.Consistency[1:]
	before := state(t, c)
	if _, err := c.UpdateCheckpoint(&trunc, at(3)); err == nil {
		t.Fatal("truncated consistency proof accepted")
	}
	sameState(t, c, before)
	if c.TreeSize() != base {
		t.Fatalf("tree size %d, want %d", c.TreeSize(), base)
	}

	// A lookup: every changed hash is refused; those the anchored
	// inclusion proof does not cover fail at step 9.
	r := must(w.d.Lookup(w.bob, base))
	atStep9 := 0
	for i := range r.Checkpoint.Consistency {
		bad := cloneLookup(t, r)
		bad.Checkpoint.Consistency[i][3] ^= 1
		before := state(t, c)
		_, err := c.VerifyLookup(w.tenant, w.bob, bad, at(3))
		var ke *kt.KTProofError
		switch {
		case isFork(err):
			atStep9++
		case errors.As(err, &ke) && ke.Step == kt.StepLogInclusion:
		default:
			t.Fatalf("consistency hash %d changed: got %v", i, err)
		}
		sameState(t, c, before)
	}
	if atStep9 == 0 {
		t.Fatal("no changed consistency hash reached step 9")
	}
	must(c.VerifyLookup(w.tenant, w.bob, r, at(3)))
	if c.TreeSize() != w.d.Size() {
		t.Fatalf("tree size %d, want %d", c.TreeSize(), w.d.Size())
	}
}
