package tlog

import (
	"context"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
)

// Range proofs (docs/spec/tlog.md §Range proofs): the proof that the
// consecutive leaves [begin, end) are in the tree of a given size is the
// compact range [0, begin) followed by the compact range [end, size) — the
// roots of the perfect subtrees that cover each, left to right. It is at
// most 3·63 hashes however many leaves it covers, where inclusion proofs of
// each leaf would take up to 63 hashes per leaf.

// MaxRangeProofLen bounds range proofs: a compact range [0, begin) has at
// most 63 nodes and a compact range [end, size) at most 2·63, in a tree of
// at most 2^63-1 leaves.
const MaxRangeProofLen = 3 * 63

// RangeProofLen returns the number of hashes in the range proof of leaves
// [begin, end) in a tree of the given size (begin ≤ end ≤ size).
func RangeProofLen(begin, end, size uint64) int {
	return compact.RangeSize(0, begin) + compact.RangeSize(end, size)
}

// RangeProof returns the range proof of the leaves [begin, end) in the tree
// of the given size, at most Size: the hashes of the compact ranges
// [0, begin) and [end, size).
func (t *Tree) RangeProof(ctx context.Context, begin, end, size uint64) ([]Hash, error) {
	if err := t.checkSize(size); err != nil {
		return nil, err
	}
	if begin >= end || end > size {
		return nil, fmt.Errorf("tlog: range [%d, %d) in a tree of size %d", begin, end, size)
	}
	ids := compact.RangeNodes(0, begin, nil)
	ids = compact.RangeNodes(end, size, ids)
	hs, err := readNodes(ctx, t.store, ids)
	if err != nil {
		return nil, err
	}
	out := make([]Hash, len(hs))
	for i, h := range hs {
		if len(h) != HashSize {
			return nil, fmt.Errorf("tlog: bad node hash")
		}
		out[i] = Hash(h)
	}
	return out, nil
}

// VerifyRange checks a range proof that leaves, the leaf hashes of indices
// begin, begin+1, …, are in the tree of the given size and root
// (docs/spec/tlog.md §Range proofs). There must be at least one leaf.
// Failure wraps ErrBadProof.
func VerifyRange(begin uint64, leaves []Hash, size uint64, p []Hash, root Hash) error {
	n := uint64(len(leaves))
	if n == 0 || begin > size || n > size-begin || len(p) > MaxRangeProofLen {
		return fmt.Errorf("%w: range of %d leaves at %d in a tree of size %d", ErrBadProof, n, begin, size)
	}
	end := begin + n
	left := compact.RangeSize(0, begin)
	if len(p) != left+compact.RangeSize(end, size) {
		return fmt.Errorf("%w: range proof of %d hashes for [%d, %d) in a tree of size %d", ErrBadProof, len(p), begin, end, size)
	}
	// The left range grows by appending: its slice must not share spare
	// capacity with the right range's hashes.
	sl := toSlices(p)
	rng, err := rangeFactory.NewRange(0, begin, sl[:left:left])
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadProof, err)
	}
	for i := range leaves {
		if err := rng.Append(leaves[i][:], nil); err != nil {
			return fmt.Errorf("%w: %v", ErrBadProof, err)
		}
	}
	right, err := rangeFactory.NewRange(end, size, sl[left:])
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadProof, err)
	}
	if err := rng.AppendRange(right, nil); err != nil {
		return fmt.Errorf("%w: %v", ErrBadProof, err)
	}
	got, err := rng.GetRootHash(nil)
	if err != nil || len(got) != HashSize || Hash(got) != root {
		return fmt.Errorf("%w: range [%d, %d) does not lead to the root of size %d", ErrBadProof, begin, end, size)
	}
	return nil
}
