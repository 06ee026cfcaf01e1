package kt_test

import (
	"errors"
	"math/bits"
	"testing"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/kt"
)

// TestAnchoredInclusion: a lookup that brings a client a larger tree than
// the one it trusts carries the anchored inclusion proof of the new last
// entry (docs/spec/directory.md §Anchored inclusion): at most
// ⌊log2 g⌋ hashes for a client g epochs behind, none for one epoch. The
// whole inclusion proof in its place, an anchored proof for another entry
// or against a changed consistency proof are refused, with the state
// unchanged; the same proofs against a checkpoint the client already
// trusts are whole RFC 6962 inclusion proofs.
func TestAnchoredInclusion(t *testing.T) {
	w := newWorld(t, 94)
	ok(t, w.d.PublishQuietEpochs(6, at(2)))
	c := w.client(t)
	must(c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, 0)), at(3)))
	for _, g := range []uint64{1, 2, 3, 5, 8, 13} {
		base := c.TreeSize()
		ok(t, w.d.PublishQuietEpochs(int(g), at(3)))
		r := must(w.d.Lookup(w.bob, base))
		want := tlog.AnchoredInclusionLen(base, base+g)
		if len(r.Proof.Inclusion) != want || want > bits.Len64(g)-1 {
			t.Fatalf("%d epochs behind: %d hashes, want %d", g, len(r.Proof.Inclusion), want)
		}
		full := must(w.d.Tree.InclusionProof(t.Context(), base+g-1, base+g))
		if len(full) == len(r.Proof.Inclusion) {
			t.Fatalf("%d epochs behind: the anchored proof is as long as the whole one", g)
		}
		refused := func(what string, mut func(r *kt.LookupResponse)) {
			t.Helper()
			bad := cloneLookup(t, r)
			mut(bad)
			before := state(t, c)
			_, err := c.VerifyLookup(w.tenant, w.bob, bad, at(4))
			var ke *kt.KTProofError
			if !errors.As(err, &ke) || ke.Step != kt.StepLogInclusion {
				t.Fatalf("%d epochs behind, %s: got %v, want a log inclusion proof error", g, what, err)
			}
			sameState(t, c, before)
		}
		refused("whole inclusion proof", func(r *kt.LookupResponse) { r.Proof.Inclusion = full })
		refused("another entry", func(r *kt.LookupResponse) { r.Proof.Entry.MapRoot[0] ^= 1 })
		refused("consistency proof changed", func(r *kt.LookupResponse) {
			for i := range r.Checkpoint.Consistency {
				r.Checkpoint.Consistency[i][0] ^= 1
			}
		})
		if len(r.Proof.Inclusion) > 0 {
			refused("anchored proof changed", func(r *kt.LookupResponse) { r.Proof.Inclusion[0][1] ^= 1 })
			refused("anchored proof truncated", func(r *kt.LookupResponse) { r.Proof.Inclusion = r.Proof.Inclusion[1:] })
		}
		must(c.VerifyLookup(w.tenant, w.bob, r, at(4)))
		if e, held := c.HeldEntry(); !held || e != base+g-1 {
			t.Fatalf("%d epochs behind: holds %d, %v", g, e, held)
		}
		// Against the trusted checkpoint, by a client that holds
		// nothing: the whole proof.
		same := must(w.d.Lookup(w.alice, c.TreeSize()))
		if len(same.Proof.Inclusion) != len(full) {
			t.Fatalf("same checkpoint: %d hashes, want %d", len(same.Proof.Inclusion), len(full))
		}
	}
	// From size 0 (no trusted checkpoint): the whole proof.
	if r := must(w.d.Lookup(w.alice, 0)); len(r.Proof.Inclusion) != len(must(w.d.Tree.InclusionProof(t.Context(), w.d.Size()-1, w.d.Size()))) {
		t.Fatal("lookup from size 0 without the whole inclusion proof")
	}
}

// TestLookupFormat2Refused: the format before anchored inclusion proofs
// (0x02) is no longer accepted, so that a directory and a client that
// disagree on what the inclusion proof is fail at parsing instead of
// reporting misbehaviour.
func TestLookupFormat2Refused(t *testing.T) {
	w := newWorld(t, 95)
	for name, enc := range map[string][]byte{
		"lookup":  must(must(w.d.Lookup(w.alice, 0)).Marshal()),
		"history": must(must(w.d.History(w.alice, 0, 0)).Marshal()),
	} {
		if enc[1] != 3 {
			t.Fatalf("%s: format %d", name, enc[1])
		}
		enc[1] = 2
		_, err1 := kt.ParseLookupResponse(enc)
		_, err2 := kt.ParseHistoryResponse(enc)
		if !errors.Is(err1, kt.ErrMalformed) || !errors.Is(err2, kt.ErrMalformed) {
			t.Fatalf("%s: format 2 parsed: %v, %v", name, err1, err2)
		}
	}
}
