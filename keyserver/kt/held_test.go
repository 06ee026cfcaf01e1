package kt_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/vmap"
)

// TestHeldEntry: once a client has verified a label proof at its trusted
// checkpoint, it holds the checkpoint's last entry, and a lookup against
// that checkpoint may leave the entry's inclusion proof out
// (docs/spec/directory.md §Held entry). The held entry is part of the
// client state. An empty inclusion proof is refused, with the state
// unchanged, for any other entry, by a client that holds nothing (one
// that took its checkpoint from a consistency response, or moved to a
// newer checkpoint), and for a tree of another size.
func TestHeldEntry(t *testing.T) {
	w := newWorld(t, 93)
	ok(t, w.d.PublishQuietEpochs(5, at(2))) // size 6: inclusion proofs are not empty
	c := w.client(t)
	if _, held := c.HeldEntry(); held {
		t.Fatal("a new client holds an entry")
	}
	first := must(w.d.Lookup(w.alice, 0))
	if len(first.Proof.Inclusion) == 0 {
		t.Fatal("the first proof has no inclusion proof: the test would not exercise anything")
	}
	must(c.VerifyLookup(w.tenant, w.alice, first, at(3)))
	e, held := c.HeldEntry()
	if !held || e != c.TreeSize()-1 {
		t.Fatalf("held entry %d, %v; want %d", e, held, c.TreeSize()-1)
	}
	r := must(w.d.LookupHeld(w.bob, c.TreeSize(), e))
	if len(r.Proof.Inclusion) != 0 {
		t.Fatal("inclusion proof not left out")
	}
	withProof := must(w.d.Lookup(w.bob, c.TreeSize()))
	if saved := len(must(withProof.Marshal())) - len(must(r.Marshal())); saved != 32*len(withProof.Proof.Inclusion) || saved == 0 {
		t.Fatalf("leaving the inclusion proof out saves %d bytes", saved)
	}
	res := must(c.VerifyLookup(w.tenant, w.bob, r, at(3)))
	if len(res.Devices) != 2 {
		t.Fatalf("%d devices", len(res.Devices))
	}

	refused := func(t *testing.T, c *kt.Client, r *kt.LookupResponse, step kt.ProofStep) {
		t.Helper()
		before := state(t, c)
		_, err := c.VerifyLookup(w.tenant, w.bob, r, at(3))
		var ke *kt.KTProofError
		if !errors.As(err, &ke) || ke.Step != step {
			t.Fatalf("got %v, want a proof error at step %v", err, step)
		}
		sameState(t, c, before)
	}
	t.Run("another entry", func(t *testing.T) {
		bad := cloneLookup(t, r)
		bad.Proof.Entry.MapRoot = vmap.Hash{1}
		refused(t, c, bad, kt.StepLogInclusion)
	})
	t.Run("client that holds nothing", func(t *testing.T) {
		// A consistency response without the last entry (as an enrolment
		// answer's checkpoint): nothing held.
		c2 := w.client(t)
		cr := must(w.d.Consistency(0))
		cr.Last = nil
		must(c2.UpdateCheckpoint(cr, at(3)))
		if _, held := c2.HeldEntry(); held {
			t.Fatal("a consistency response without an entry made the client hold one")
		}
		refused(t, c2, cloneLookup(t, r), kt.StepLogInclusion)
	})
	t.Run("consistency response", func(t *testing.T) {
		// With the last entry, the client holds it.
		c2 := w.client(t)
		cr := must(w.d.Consistency(0))
		if cr.Last == nil || len(cr.Last.Inclusion) == 0 {
			t.Fatal("consistency response without the last entry and its whole inclusion proof")
		}
		bad := *cr
		bad.Last = &kt.LastEntry{Entry: cr.Last.Entry, Inclusion: cr.Last.Inclusion}
		bad.Last.Entry.MapRoot[0] ^= 1
		before := state(t, c2)
		_, err := c2.UpdateCheckpoint(&bad, at(3))
		var ke *kt.KTProofError
		if !errors.As(err, &ke) || ke.Step != kt.StepLogInclusion {
			t.Fatalf("another last entry: got %v, want a log inclusion proof error", err)
		}
		sameState(t, c2, before)
		must(c2.UpdateCheckpoint(cr, at(3)))
		if e2, held := c2.HeldEntry(); !held || e2 != e {
			t.Fatalf("holds %d, %v after a consistency response; want %d", e2, held, e)
		}
		must(c2.VerifyLookup(w.tenant, w.bob, cloneLookup(t, r), at(3)))
		// The trusted checkpoint's note again, with its last entry: held.
		c3 := w.client(t)
		cr3 := must(w.d.Consistency(0))
		cr3.Last = nil
		must(c3.UpdateCheckpoint(cr3, at(3)))
		again := must(w.d.Consistency(c3.TreeSize()))
		if again.Last == nil {
			t.Fatal("no last entry with the trusted checkpoint's note")
		}
		must(c3.UpdateCheckpoint(again, at(3)))
		if _, held := c3.HeldEntry(); !held {
			t.Fatal("last entry of the trusted checkpoint not held")
		}
	})
	t.Run("restored client", func(t *testing.T) {
		// The held entry is part of the client state: a restored client
		// still holds it, and one restored from a state whose held entry
		// is dropped or changed does not.
		st := state(t, c)
		c2 := must(kt.RestoreClient(w.d.Config(maxAge), st))
		if e2, held := c2.HeldEntry(); !held || e2 != e {
			t.Fatalf("restored client holds %d, %v; want %d", e2, held, e)
		}
		must(c2.VerifyLookup(w.tenant, w.bob, cloneLookup(t, r), at(3)))
		entry := must(first.Proof.Entry.Marshal())
		i := bytes.Index(st, entry)
		if i < 1 || st[i-1] != byte(len(entry)) {
			t.Fatal("held entry not found in the state")
		}
		dropped := append(append(bytes.Clone(st[:i-1]), 0), st[i+len(entry):]...)
		c3 := must(kt.RestoreClient(w.d.Config(maxAge), dropped))
		if _, held := c3.HeldEntry(); held {
			t.Fatal("a state without the held entry holds one")
		}
		refused(t, c3, cloneLookup(t, r), kt.StepLogInclusion)
		for name, bad := range map[string][]byte{
			"another epoch": func() []byte {
				b := bytes.Clone(st)
				b[i+2+7] ^= 1
				return b
			}(),
			"truncated": append(append(append(bytes.Clone(st[:i-1]), byte(len(entry)-1)), entry[:len(entry)-1]...), st[i+len(entry):]...),
		} {
			if _, err := kt.RestoreClient(w.d.Config(maxAge), bad); !errors.Is(err, kt.ErrMalformed) {
				t.Errorf("%s held entry: %v, want ErrMalformed", name, err)
			}
		}
		// A held entry with another map root restores (the state's
		// integrity is the caller's, §Client state), and then an empty
		// inclusion proof for the real entry is refused.
		b := bytes.Clone(st)
		b[i+len(entry)-1] ^= 1
		c4 := must(kt.RestoreClient(w.d.Config(maxAge), b))
		refused(t, c4, cloneLookup(t, r), kt.StepLogInclusion)
	})
	t.Run("newer checkpoint", func(t *testing.T) {
		c2 := w.client(t)
		must(c2.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, 0)), at(3)))
		must(w.d.PublishEpoch(at(4)))
		cr := must(w.d.Consistency(c2.TreeSize()))
		if cr.Last == nil || len(cr.Last.Inclusion) != tlog.AnchoredInclusionLen(c2.TreeSize(), w.d.Size()) {
			t.Fatal("consistency response without the anchored last entry")
		}
		cr.Last = nil
		must(c2.UpdateCheckpoint(cr, at(4)))
		if _, held := c2.HeldEntry(); held {
			t.Fatal("the client holds an entry of an older tree")
		}
		// The new tree's last entry, without its inclusion proof.
		bad := must(w.d.Lookup(w.bob, c2.TreeSize()))
		bad.Proof.Inclusion = nil
		refused(t, c2, bad, kt.StepLogInclusion)
		// The directory does not leave it out for a client that does not
		// name the new tree's last entry.
		if r := must(w.d.LookupHeld(w.bob, c2.TreeSize(), e)); len(r.Proof.Inclusion) == 0 {
			t.Fatal("inclusion left out for an entry of another tree")
		}
	})
}
