package mls

// Applying Add, Update and Remove proposals to the ratchet tree (RFC 9420
// §12.1.1–§12.1.3) and extending and truncating it (§7.7).
//
// Each operation checks everything it needs before changing the tree, so a
// refused operation leaves the tree as it was. The LeafNode passed in is
// stored as is; callers must not modify it afterwards.

import (
	"slices"

	"github.com/moat-im/moat/crypto/mls/internal/treemath"
)

// addLeaf applies an Add (§12.1.1): the new member takes the leftmost
// blank leaf, extending the tree if there is none, and becomes an
// unmerged leaf of every non-blank node above it. The LeafNode's
// encryption and signature keys must be new to the tree.
func (t *publicTree) addLeaf(ln *LeafNode) (LeafIndex, error) {
	const op = "applying Add"
	if x, dup := t.findEncryptionKey(ln.EncryptionKey); dup {
		return 0, treeErr(op, x, ErrDuplicateKey)
	}
	if i, dup := t.findSignatureKey(ln.SignatureKey); dup {
		return 0, treeErr(op, i.Node(), ErrDuplicateKey)
	}
	i, ok := t.leftmostBlankLeaf()
	if !ok {
		if t.nLeaves >= MaxTreeLeaves {
			return 0, treeErr(op, 0, ErrTreeFull)
		}
		i = LeafIndex(t.nLeaves)
		t.resize(2 * t.nLeaves)
	}
	r := t.root()
	for x := i.Node(); x != r; {
		x, _ = treemath.Parent(x, t.nLeaves)
		if p := t.parents[x>>1]; p != nil {
			q := *p
			q.UnmergedLeaves = insertSorted(p.UnmergedLeaves, uint32(i))
			t.setParent(x, &q)
		}
	}
	t.setLeaf(i, ln)
	return i, nil
}

// leftmostBlankLeaf returns the first blank leaf, if any.
func (t *publicTree) leftmostBlankLeaf() (LeafIndex, bool) {
	i := slices.Index(t.leaves, nil)
	return LeafIndex(i), i >= 0
}

// insertSorted returns a new sorted slice holding s and v.
func insertSorted(s []uint32, v uint32) []uint32 {
	k := lowerBound(s, v)
	out := make([]uint32, 0, len(s)+1)
	out = append(out, s[:k]...)
	out = append(out, v)
	return append(out, s[k:]...)
}

// updateLeaf applies an Update from leaf i (§12.1.2): the leaf is replaced
// and its direct path blanked. The new encryption key must differ from
// every key in the tree, the old leaf's included (§7.3); the signature key
// may be the leaf's own but no other member's.
func (t *publicTree) updateLeaf(i LeafIndex, ln *LeafNode) error {
	const op = "applying Update"
	if t.leaf(i) == nil {
		return treeErr(op, i.Node(), ErrBlankLeaf)
	}
	if x, dup := t.findEncryptionKey(ln.EncryptionKey); dup {
		return treeErr(op, x, ErrDuplicateKey)
	}
	if j, dup := t.findSignatureKey(ln.SignatureKey); dup && j != i {
		return treeErr(op, j.Node(), ErrDuplicateKey)
	}
	t.setLeaf(i, ln)
	t.blankDirectPath(i)
	return nil
}

// removeLeaf applies a Remove of leaf i (§12.1.3): the leaf and its direct
// path are blanked and the tree truncated.
func (t *publicTree) removeLeaf(i LeafIndex) error {
	if t.leaf(i) == nil {
		return treeErr("applying Remove", i.Node(), ErrBlankLeaf)
	}
	t.setLeaf(i, nil)
	t.blankDirectPath(i)
	t.truncate()
	return nil
}

// truncate halves the tree while its right subtree has no non-blank leaf
// (§7.7): the result has 2^d leaves for the smallest d with 2^d > L, L the
// rightmost non-blank leaf.
func (t *publicTree) truncate() {
	last := len(t.leaves) - 1
	for last > 0 && t.leaves[last] == nil {
		last--
	}
	n := t.nLeaves
	for n > 1 && uint32(last) < n/2 {
		n /= 2
	}
	if n == t.nLeaves {
		return
	}
	// Nodes cut off are blank in any tree built by these operations; blank
	// them through setParent anyway so the journal and key index see it.
	for x := treemath.NodeWidth(n); x < t.width(); x += 2 {
		if t.parents[x>>1] != nil {
			t.setParent(NodeIndex(x), nil)
		}
	}
	t.resize(n)
}
