package tlog

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"

	xtlog "golang.org/x/mod/sumdb/tlog"
)

// TestRangeProof checks range proofs of every range of a few trees
// against roots computed by golang.org/x/mod/sumdb/tlog, and that any
// change to the proof, a leaf, the position or the size is rejected.
func TestRangeProof(t *testing.T) {
	ctx := context.Background()
	rnd := rand.New(rand.NewPCG(7, 7))
	tr, x := newTestTree(t, 37, rnd)
	for size := uint64(1); size <= tr.Size(); size++ {
		xr, err := xtlog.TreeHash(int64(size), x)
		if err != nil {
			t.Fatal(err)
		}
		root := Hash(xr)
		for begin := uint64(0); begin < size; begin++ {
			for end := begin + 1; end <= size; end++ {
				p, err := tr.RangeProof(ctx, begin, end, size)
				if err != nil {
					t.Fatal(err)
				}
				if len(p) != RangeProofLen(begin, end, size) {
					t.Fatalf("[%d,%d) of %d: %d hashes, RangeProofLen %d", begin, end, size, len(p), RangeProofLen(begin, end, size))
				}
				var leaves []Hash
				for i := begin; i < end; i++ {
					leaves = append(leaves, LeafHash(leafData(i)))
				}
				if err := VerifyRange(begin, leaves, size, p, root); err != nil {
					t.Fatalf("[%d,%d) of %d: %v", begin, end, size, err)
				}
				if size != 23 || begin%3 != 0 {
					continue // the negative cases on one size
				}
				bad := func(what string, err error) {
					t.Helper()
					if !errors.Is(err, ErrBadProof) {
						t.Fatalf("[%d,%d) of %d, %s: %v", begin, end, size, what, err)
					}
				}
				for i := range p {
					q := append([]Hash(nil), p...)
					q[i][5] ^= 1
					bad("hash changed", VerifyRange(begin, leaves, size, q, root))
				}
				for i := range leaves {
					l := append([]Hash(nil), leaves...)
					l[i][0] ^= 1
					bad("leaf changed", VerifyRange(begin, l, size, p, root))
				}
				if len(leaves) > 1 {
					bad("leaf dropped", VerifyRange(begin, leaves[1:], size, p, root))
					bad("leaves swapped", VerifyRange(begin, append([]Hash{leaves[1], leaves[0]}, leaves[2:]...), size, p, root))
				}
				if begin > 0 {
					bad("shifted", VerifyRange(begin-1, leaves, size, p, root))
				}
				bad("longer proof", VerifyRange(begin, leaves, size, append(p, Hash{}), root))
				bad("no leaves", VerifyRange(begin, nil, size, p, root))
			}
		}
	}
	if _, err := tr.RangeProof(ctx, 3, 3, 10); err == nil {
		t.Fatal("empty range proven")
	}
	if _, err := tr.RangeProof(ctx, 3, 11, 10); err == nil {
		t.Fatal("range beyond the size proven")
	}
	if _, err := tr.RangeProof(ctx, 0, 1, tr.Size()+1); err == nil {
		t.Fatal("size beyond the tree proven")
	}
}
