package tlog

import (
	"context"
	"errors"
	"math/bits"
	"math/rand/v2"
	"testing"

	xtlog "golang.org/x/mod/sumdb/tlog"
)

// TestAnchoredInclusion checks anchored inclusion proofs for every pair of
// sizes 0 < old < new of a tree: the consistency proof (from the tree)
// verifies against roots from golang.org/x/mod/sumdb/tlog, the anchored
// proof is a prefix of the last leaf's inclusion proof of the length
// AnchoredInclusionLen gives (at most ⌊log2(new − old)⌋), it verifies,
// and any change to the leaf, the proof, the consistency proof's node or
// the sizes is rejected.
func TestAnchoredInclusion(t *testing.T) {
	ctx := context.Background()
	rnd := rand.New(rand.NewPCG(9, 9))
	tr, x := newTestTree(t, 70, rnd)
	bad := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrBadProof) {
			t.Fatalf("%s: %v", what, err)
		}
	}
	for newSize := uint64(2); newSize <= tr.Size(); newSize++ {
		xr, err := xtlog.TreeHash(int64(newSize), x)
		if err != nil {
			t.Fatal(err)
		}
		root := Hash(xr)
		leaf := LeafHash(leafData(newSize - 1))
		full, err := tr.InclusionProof(ctx, newSize-1, newSize)
		if err != nil {
			t.Fatal(err)
		}
		for old := uint64(1); old < newSize; old++ {
			oldRoot, err := xtlog.TreeHash(int64(old), x)
			if err != nil {
				t.Fatal(err)
			}
			cons, err := tr.ConsistencyProof(ctx, old, newSize)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyConsistency(old, newSize, cons, Hash(oldRoot), root); err != nil {
				t.Fatal(err)
			}
			p, err := tr.AnchoredInclusionProof(ctx, old, newSize)
			if err != nil {
				t.Fatal(err)
			}
			if n := AnchoredInclusionLen(old, newSize); len(p) != n || n > bits.Len64(newSize-old)-1 || n > len(full) {
				t.Fatalf("%d→%d: %d hashes, AnchoredInclusionLen %d, full %d", old, newSize, len(p), n, len(full))
			}
			for i := range p {
				if p[i] != full[i] {
					t.Fatalf("%d→%d: not a prefix of the inclusion proof", old, newSize)
				}
			}
			if err := VerifyAnchoredInclusion(leaf, old, newSize, cons, p); err != nil {
				t.Fatalf("%d→%d: %v", old, newSize, err)
			}
			l := leaf
			l[0] ^= 1
			bad("leaf changed", VerifyAnchoredInclusion(l, old, newSize, cons, p))
			bad("another leaf", VerifyAnchoredInclusion(LeafHash(leafData(newSize-2)), old, newSize, cons, p))
			for i := range p {
				q := append([]Hash(nil), p...)
				q[i][3] ^= 1
				bad("proof hash changed", VerifyAnchoredInclusion(leaf, old, newSize, cons, q))
			}
			bad("proof too long", VerifyAnchoredInclusion(leaf, old, newSize, cons, full[:len(p)+1]))
			if len(p) > 0 {
				bad("proof too short", VerifyAnchoredInclusion(leaf, old, newSize, cons, p[:len(p)-1]))
			}
			bad("consistency proof too short", VerifyAnchoredInclusion(leaf, old, newSize, cons[:len(cons)-1], p))
			// Exactly one node of the consistency proof is the anchor.
			anchors := 0
			for i := range cons {
				c := append([]Hash(nil), cons...)
				c[i][7] ^= 1
				if VerifyAnchoredInclusion(leaf, old, newSize, c, p) != nil {
					anchors++
				}
			}
			if anchors != 1 {
				t.Fatalf("%d→%d: %d nodes of the consistency proof matter", old, newSize, anchors)
			}
		}
	}
	bad("old size 0", VerifyAnchoredInclusion(Hash{}, 0, 5, nil, nil))
	bad("equal sizes", VerifyAnchoredInclusion(Hash{}, 5, 5, nil, nil))
	if _, err := tr.AnchoredInclusionProof(ctx, 0, 5); err == nil {
		t.Fatal("anchored proof from size 0")
	}
}

// TestAnchoredInclusionLen checks the length bound on large trees, where
// the anchored proof replaces a last-leaf inclusion proof of up to 63
// hashes.
func TestAnchoredInclusionLen(t *testing.T) {
	for _, c := range []struct{ old, new uint64 }{
		{1 << 20, 1<<20 + 1}, {1<<20 - 1, 1 << 20}, {12345678, 12345679}, {12345678, 12345678 + 120},
		{1, 1 << 40}, {1<<62 + 3, 1<<62 + 2880}, {MaxTreeSize - 1, MaxTreeSize},
	} {
		n := AnchoredInclusionLen(c.old, c.new)
		if n > bits.Len64(c.new-c.old)-1 {
			t.Errorf("%d→%d: %d hashes", c.old, c.new, n)
		}
		_, _, consLen := lastLeafNode(c.old, c.new)
		if consLen > 2*63 {
			t.Errorf("%d→%d: consistency proof of %d hashes", c.old, c.new, consLen)
		}
	}
}

// FuzzVerifyAnchoredInclusion: arbitrary sizes and proofs never panic,
// and a proof verifies only when its anchor node of the consistency proof
// is the subtree root it computes; the real proofs of a small tree, with
// one hash or a size changed, are the seeds.
func FuzzVerifyAnchoredInclusion(f *testing.F) {
	ctx := context.Background()
	tr, _ := newTestTree(f, 40, rand.New(rand.NewPCG(11, 11)))
	hashes := func(hs []Hash) []byte {
		var b []byte
		for _, h := range hs {
			b = append(b, h[:]...)
		}
		return b
	}
	for _, c := range []struct{ old, new uint64 }{{1, 2}, {3, 7}, {8, 9}, {5, 40}, {31, 33}} {
		cons := must(tr.ConsistencyProof(ctx, c.old, c.new))
		p := must(tr.AnchoredInclusionProof(ctx, c.old, c.new))
		f.Add(c.old, c.new, hashes(cons), hashes(p), leafData(c.new-1))
	}
	f.Add(uint64(MaxTreeSize-1), uint64(MaxTreeSize), []byte{}, []byte{}, []byte("x"))
	split := func(b []byte) []Hash {
		hs := make([]Hash, len(b)/HashSize)
		for i := range hs {
			copy(hs[i][:], b[i*HashSize:])
		}
		return hs
	}
	f.Fuzz(func(t *testing.T, old, newSize uint64, cons, p, leaf []byte) {
		if len(cons) > 126*HashSize || len(p) > 63*HashSize {
			return
		}
		err := VerifyAnchoredInclusion(LeafHash(leaf), old, newSize, split(cons), split(p))
		if err != nil && !errors.Is(err, ErrBadProof) {
			t.Fatalf("error %v does not wrap ErrBadProof", err)
		}
		if err == nil && (old == 0 || old >= newSize || len(p)/HashSize != AnchoredInclusionLen(old, newSize)) {
			t.Fatalf("accepted %d→%d with %d hashes", old, newSize, len(p)/HashSize)
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
