// Package treemath implements the array-based tree arithmetic of RFC 9420
// Appendix C for the perfect binary trees MLS uses (RFC 9420 §4.1: every
// tree has 2^d leaves).
//
// Leaves and nodes have distinct index types so a leaf index can never be
// used where a node index is meant: leaf L sits at node 2L, parent nodes at
// odd node indices. A tree is described by its leaf count n, a power of two;
// functions that take n assume that and that their node arguments lie in
// the tree (x < NodeWidth(n)); callers validate untrusted indices with
// InTree first.
//
// All functions are allocation-free; the path functions append to a
// caller-supplied slice so hot paths can reuse a buffer.
package treemath

import "math/bits"

// LeafIndex is the index of a leaf among the leaves of the tree, counted
// from 0 at the left (RFC 9420 §4.1.1).
type LeafIndex uint32

// NodeIndex is the position of a node in the array representation of the
// tree (RFC 9420 Appendix C).
type NodeIndex uint32

// MaxLeaves is the largest leaf count this package handles: the node width
// 2n-1 then still fits a uint32.
const MaxLeaves = 1 << 31

// Node returns the node index of leaf l (2l).
func (l LeafIndex) Node() NodeIndex { return NodeIndex(l) << 1 }

// IsLeaf reports whether x is a leaf (even) node.
func (x NodeIndex) IsLeaf() bool { return x&1 == 0 }

// Leaf returns the leaf index of x; x must be a leaf node.
func (x NodeIndex) Leaf() LeafIndex { return LeafIndex(x >> 1) }

// Level is the level of node x: 0 for leaves, one more than the level of
// its children for parents (the number of trailing one bits).
func Level(x NodeIndex) uint { return uint(bits.TrailingZeros32(^uint32(x))) }

// NodeWidth is the number of nodes in a tree with n leaves: 2(n-1)+1, or 0
// for an empty tree.
func NodeWidth(n uint32) uint32 {
	if n == 0 {
		return 0
	}
	return 2*(n-1) + 1
}

// LeafCount is the number of leaves of the smallest perfect tree whose
// array holds w nodes: the inverse of NodeWidth, rounded up to a power of
// two. It is used to extend a received ratchet_tree (RFC 9420 §12.4.3.3).
func LeafCount(w uint32) uint32 {
	if w == 0 {
		return 0
	}
	leaves := w/2 + 1
	if leaves&(leaves-1) == 0 {
		return leaves
	}
	return 1 << bits.Len32(leaves)
}

// IsPowerOfTwo reports whether n is a valid leaf count of an MLS tree.
func IsPowerOfTwo(n uint32) bool { return n != 0 && n&(n-1) == 0 }

// log2 is the exponent of the largest power of 2 not above x (0 for 0).
func log2(x uint32) uint {
	if x == 0 {
		return 0
	}
	return uint(bits.Len32(x)) - 1
}

// Root is the root node of a tree with n leaves.
func Root(n uint32) NodeIndex {
	w := NodeWidth(n)
	return NodeIndex(uint32(1)<<log2(w) - 1)
}

// InTree reports whether x is a node of a tree with n leaves.
func InTree(x NodeIndex, n uint32) bool { return uint32(x) < NodeWidth(n) }

// Left is the left child of x; ok is false if x is a leaf.
func Left(x NodeIndex) (l NodeIndex, ok bool) {
	k := Level(x)
	if k == 0 {
		return 0, false
	}
	return x ^ NodeIndex(1)<<(k-1), true
}

// Right is the right child of x; ok is false if x is a leaf.
func Right(x NodeIndex) (r NodeIndex, ok bool) {
	k := Level(x)
	if k == 0 {
		return 0, false
	}
	return x ^ NodeIndex(3)<<(k-1), true
}

// Children returns both children of the parent node x; x must not be a
// leaf.
func Children(x NodeIndex) (l, r NodeIndex) {
	k := Level(x)
	return x ^ NodeIndex(1)<<(k-1), x ^ NodeIndex(3)<<(k-1)
}

// Parent is the parent of x in a tree with n leaves; ok is false for the
// root.
func Parent(x NodeIndex, n uint32) (p NodeIndex, ok bool) {
	if x == Root(n) {
		return 0, false
	}
	return parent(x), true
}

// parent is Appendix C parent() for a non-root node (so level(x) <= 30 and
// the shifts stay inside 32 bits).
func parent(x NodeIndex) NodeIndex {
	k := Level(x)
	b := (x >> (k + 1)) & 1
	return (x | NodeIndex(1)<<k) ^ (b << (k + 1))
}

// Sibling is the other child of x's parent; ok is false for the root.
func Sibling(x NodeIndex, n uint32) (s NodeIndex, ok bool) {
	p, ok := Parent(x, n)
	if !ok {
		return 0, false
	}
	return sibling(x, p), true
}

func sibling(x, p NodeIndex) NodeIndex {
	l, r := Children(p)
	if x < p {
		return r
	}
	return l
}

// DirectPath appends the direct path of x (its parent, the parent's parent,
// ..., the root) to dst, ordered from leaf to root (RFC 9420 §4.1.2).
func DirectPath(dst []NodeIndex, x NodeIndex, n uint32) []NodeIndex {
	r := Root(n)
	for x != r {
		x = parent(x)
		dst = append(dst, x)
	}
	return dst
}

// Copath appends the copath of x (the sibling of x and of each node of its
// direct path below the root) to dst, ordered from leaf to root.
func Copath(dst []NodeIndex, x NodeIndex, n uint32) []NodeIndex {
	r := Root(n)
	for x != r {
		p := parent(x)
		dst = append(dst, sibling(x, p))
		x = p
	}
	return dst
}

// PathLength is the length of the direct path of any leaf in a tree with n
// leaves (its depth, log2 n).
func PathLength(n uint32) int { return int(log2(n)) }

// FilteredDirectPath appends the filtered direct path of x to dst (RFC 9420
// §4.1.2): the direct path without every node whose child on x's copath has
// an empty resolution. emptyResolution reports that for a copath node.
func FilteredDirectPath(dst []NodeIndex, x NodeIndex, n uint32, emptyResolution func(NodeIndex) bool) []NodeIndex {
	r := Root(n)
	for x != r {
		p := parent(x)
		if !emptyResolution(sibling(x, p)) {
			dst = append(dst, p)
		}
		x = p
	}
	return dst
}

// FilteredPath is FilteredDirectPath paired with the copath child of each
// kept node: dst receives the direct-path nodes and cop the matching
// copath nodes, in the same order.
func FilteredPath(dst, cop []NodeIndex, x NodeIndex, n uint32, emptyResolution func(NodeIndex) bool) ([]NodeIndex, []NodeIndex) {
	r := Root(n)
	for x != r {
		p := parent(x)
		s := sibling(x, p)
		if !emptyResolution(s) {
			dst = append(dst, p)
			cop = append(cop, s)
		}
		x = p
	}
	return dst, cop
}

// LeafSpan returns the leaves under x: the subtree headed by x holds the
// leaves first..first+count-1.
func LeafSpan(x NodeIndex) (first LeafIndex, count uint32) {
	k := Level(x)
	count = uint32(1) << k
	// The leftmost leaf node of the subtree is x - (2^k - 1).
	return LeafIndex((uint32(x) - (count - 1)) >> 1), count
}

// IsDescendant reports whether x is in the subtree headed by a (x == a
// counts).
func IsDescendant(x, a NodeIndex) bool {
	k := Level(a)
	// The subtree of a spans node indices a-(2^k-1) .. a+(2^k-1).
	span := uint32(1)<<k - 1
	return uint32(x) >= uint32(a)-span && uint32(x) <= uint32(a)+span
}

// CommonAncestor is the lowest node that is in the direct path of both x
// and y or is one of them (Appendix C common_ancestor_direct).
func CommonAncestor(x, y NodeIndex) NodeIndex {
	lx, ly := Level(x)+1, Level(y)+1
	if lx <= ly && x>>ly == y>>ly {
		return y
	}
	if ly <= lx && x>>lx == y>>lx {
		return x
	}
	xn, yn := uint32(x), uint32(y)
	k := uint(0)
	for xn != yn {
		xn, yn = xn>>1, yn>>1
		k++
	}
	return NodeIndex(xn<<k + 1<<(k-1) - 1)
}
