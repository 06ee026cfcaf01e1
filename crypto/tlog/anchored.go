package tlog

import (
	"context"
	"fmt"
	"math/bits"

	"github.com/transparency-dev/merkle/proof"
)

// Anchored inclusion proofs (docs/spec/tlog.md §Anchored inclusion of the
// last leaf): an RFC 6962 consistency proof from oldSize to newSize holds
// exactly one node whose subtree covers the new tree's last leaf,
// D[start:newSize] in the notation of RFC 6962 Section 2.1.2. The
// inclusion of the last leaf in that subtree is a prefix of its inclusion
// proof in the whole tree; with the consistency proof verified, it proves
// the last leaf in the new tree.

// lastLeafNode returns the position, in the RFC 6962 consistency proof from
// oldSize to newSize (0 < oldSize < newSize), of the node that covers leaf
// newSize-1, the first leaf of that node's subtree, and the proof's length.
// It follows SUBPROOF of RFC 6962 Section 2.1.2 over the sizes alone.
func lastLeafNode(oldSize, newSize uint64) (pos int, start uint64, n int) {
	// sub appends the proof's nodes for SUBPROOF(m, D[lo:hi], b), as the
	// index of the node covering leaf newSize-1 (if this call adds it)
	// and a count.
	var sub func(m, lo, hi uint64, b bool)
	pos = -1
	sub = func(m, lo, hi uint64, b bool) {
		size := hi - lo
		if m == size {
			if !b {
				n++
			}
			return
		}
		k := uint64(1) << (bits.Len64(size-1) - 1) // largest power of 2 < size
		if m <= k {
			sub(m, lo, lo+k, b)
			if hi == newSize {
				pos, start = n, lo+k
			}
			n++
			return
		}
		sub(m-k, lo+k, hi, false)
		n++
	}
	sub(oldSize, 0, newSize, true)
	return pos, start, n
}

// AnchoredInclusionLen returns the length of the anchored inclusion proof
// of leaf newSize-1 against the consistency proof from oldSize to newSize
// (0 < oldSize < newSize): the length of the inclusion proof of that leaf
// in the subtree of the consistency proof's node that covers it, at most
// ⌊log2(newSize − oldSize)⌋: that subtree holds g ≤ newSize − oldSize
// leaves, and the last leaf of a tree of g leaves has a proof of
// popcount(g − 1) hashes.
func AnchoredInclusionLen(oldSize, newSize uint64) int {
	_, start, _ := lastLeafNode(oldSize, newSize)
	return inclusionLen(newSize-1-start, newSize-start)
}

// inclusionLen is the length of the RFC 6962 inclusion proof of index in a
// tree of size leaves.
func inclusionLen(index, size uint64) int {
	inner := bits.Len64(index ^ (size - 1))
	border := bits.OnesCount64(index >> uint(inner))
	return inner + border
}

// AnchoredInclusionProof returns the anchored inclusion proof of leaf
// newSize-1 against the consistency proof from oldSize to newSize
// (0 < oldSize < newSize ≤ Size).
func (t *Tree) AnchoredInclusionProof(ctx context.Context, oldSize, newSize uint64) ([]Hash, error) {
	if oldSize == 0 || oldSize >= newSize {
		return nil, fmt.Errorf("tlog: anchored inclusion from size %d to %d", oldSize, newSize)
	}
	full, err := t.InclusionProof(ctx, newSize-1, newSize)
	if err != nil {
		return nil, err
	}
	n := AnchoredInclusionLen(oldSize, newSize)
	if n > len(full) {
		return nil, fmt.Errorf("tlog: anchored inclusion longer than the inclusion proof")
	}
	return full[:n:n], nil
}

// VerifyAnchoredInclusion checks that leaf is the last leaf, index
// newSize-1, of the tree that the consistency proof cons from oldSize to
// newSize (0 < oldSize < newSize) leads to: p must be the inclusion proof
// of leaf in the subtree of the node of cons that covers that leaf. It does
// not verify cons: the caller MUST verify it between the trusted tree of
// size oldSize and the new tree's root before relying on the result.
// Failure wraps ErrBadProof.
func VerifyAnchoredInclusion(leaf Hash, oldSize, newSize uint64, cons, p []Hash) error {
	if oldSize == 0 || oldSize >= newSize || newSize > MaxTreeSize {
		return fmt.Errorf("%w: anchored inclusion from size %d to %d", ErrBadProof, oldSize, newSize)
	}
	pos, start, n := lastLeafNode(oldSize, newSize)
	if len(cons) != n || pos < 0 {
		return fmt.Errorf("%w: consistency proof of %d hashes from size %d to %d, want %d", ErrBadProof, len(cons), oldSize, newSize, n)
	}
	index, size := newSize-1-start, newSize-start
	if len(p) != inclusionLen(index, size) {
		return fmt.Errorf("%w: anchored inclusion of %d hashes", ErrBadProof, len(p))
	}
	got, err := proof.RootFromInclusionProof(hasher, index, size, leaf[:], toSlices(p))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadProof, err)
	}
	if Hash(got) != cons[pos] {
		return fmt.Errorf("%w: anchored inclusion does not lead to the consistency proof's node", ErrBadProof)
	}
	return nil
}
