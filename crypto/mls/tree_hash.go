package mls

// Tree hashes (RFC 9420 §7.8) and parent hashes (§7.9).

import (
	"runtime"
	"sync"

	"github.com/moat-im/moat/crypto/mls/internal/treemath"
	"github.com/moat-im/moat/crypto/mls/internal/wire"
	"golang.org/x/crypto/cryptobyte"
)

// treeHash returns the tree hash of the root (§7.8), recomputing only the
// nodes changed since the last call. The result aliases the cache; copy it
// to keep it across changes.
func (t *publicTree) treeHash() ([]byte, error) {
	if err := t.refreshHashes(); err != nil {
		return nil, err
	}
	return t.nodeHash(t.root()), nil
}

// nodeHash is the cached tree hash of x; x must not be stale.
func (t *publicTree) nodeHash(x NodeIndex) []byte {
	nh := t.suite.Nh()
	return t.hashes[int(x)*nh : (int(x)+1)*nh : (int(x)+1)*nh]
}

// parallelHashThreshold is the number of stale nodes above which the tree
// hash is computed by several goroutines (a joiner's first computation);
// below it, the dirty paths of a commit are cheaper to do in place.
const parallelHashThreshold = 4096

// refreshHashes brings every cached tree hash up to date.
func (t *publicTree) refreshHashes() error {
	if t.staleCount == 0 {
		return nil
	}
	r := t.root()
	workers := runtime.GOMAXPROCS(0)
	if t.staleCount < parallelHashThreshold || workers == 1 {
		n, err := t.computeHash(r, &t.buf)
		t.staleCount -= n
		return err
	}
	// Hash independent subtrees concurrently: pick the level with at least
	// 4 subtrees per worker, hash those subtrees in a pool, then finish
	// the nodes above them here.
	level := treemath.Level(r)
	for level > 0 && (t.nLeaves>>level) < uint32(4*workers) {
		level--
	}
	var heads []NodeIndex
	step := NodeIndex(1) << (level + 1)
	for x := NodeIndex(1)<<level - 1; uint32(x) < t.width(); x += step {
		if t.stale[x] {
			heads = append(heads, x)
		}
	}
	cleared := make([]int, len(heads))
	errs := make([]error, len(heads))
	parallelFor(len(heads), workers, func(i int, buf *[]byte) {
		cleared[i], errs[i] = t.computeHash(heads[i], buf)
	})
	for i := range heads {
		t.staleCount -= cleared[i]
		if errs[i] != nil {
			return errs[i]
		}
	}
	n, err := t.computeHash(r, &t.buf)
	t.staleCount -= n
	return err
}

// computeHash recomputes the stale hashes in the subtree of x and returns
// how many it recomputed. It touches only nodes of that subtree, so
// disjoint subtrees may be hashed concurrently.
func (t *publicTree) computeHash(x NodeIndex, buf *[]byte) (int, error) {
	if !t.stale[x] {
		return 0, nil
	}
	n := 0
	var in []byte
	var err error
	if x.IsLeaf() {
		in, err = leafHashInput((*buf)[:0], x.Leaf(), t.leaves[x.Leaf()])
	} else {
		l, r := treemath.Children(x)
		for _, c := range [2]NodeIndex{l, r} {
			m, err := t.computeHash(c, buf)
			n += m
			if err != nil {
				return n, err
			}
		}
		in, err = parentHashInput((*buf)[:0], t.parents[x>>1], t.nodeHash(l), t.nodeHash(r))
	}
	if err != nil {
		return n, treeErr("computing tree hash", x, err)
	}
	*buf = in
	copy(t.nodeHash(x), t.suite.Hash(in))
	t.stale[x] = false
	return n + 1, nil
}

// leafHashInput appends TreeHashInput for a leaf (§7.8):
//
//	struct { NodeType node_type = leaf; uint32 leaf_index; optional<LeafNode> leaf_node; }
func leafHashInput(dst []byte, i LeafIndex, ln *LeafNode) ([]byte, error) {
	b := cryptobyte.NewBuilder(dst)
	b.AddUint8(uint8(NodeTypeLeaf))
	b.AddUint32(uint32(i))
	wire.AddOptional(b, ln != nil, func(b *cryptobyte.Builder) { ln.marshal(b) })
	return b.Bytes()
}

// parentHashInput appends TreeHashInput for a parent node (§7.8):
//
//	struct { NodeType node_type = parent; optional<ParentNode> parent_node;
//	         opaque left_hash<V>; opaque right_hash<V>; }
func parentHashInput(dst []byte, p *ParentNode, left, right []byte) ([]byte, error) {
	b := cryptobyte.NewBuilder(dst)
	b.AddUint8(uint8(NodeTypeParent))
	wire.AddOptional(b, p != nil, func(b *cryptobyte.Builder) { p.marshal(b) })
	wire.AddVarBytes(b, left)
	wire.AddVarBytes(b, right)
	return b.Bytes()
}

// parentHash computes the parent hash of p with the given original sibling
// tree hash (§7.9):
//
//	struct { HPKEPublicKey encryption_key; opaque parent_hash<V>;
//	         opaque original_sibling_tree_hash<V>; } ParentHashInput;
func (t *publicTree) parentHash(buf *[]byte, p *ParentNode, siblingHash []byte) []byte {
	b := cryptobyte.NewBuilder((*buf)[:0])
	wire.AddVarBytes(b, p.EncryptionKey)
	wire.AddVarBytes(b, p.ParentHash)
	wire.AddVarBytes(b, siblingHash)
	in := b.BytesOrPanic() // three vectors of bounded keys and hashes
	*buf = in
	return t.suite.Hash(in)
}

// originalSiblingTreeHash is the tree hash of s in the tree with the leaves
// in unmerged blanked and removed from every unmerged_leaves list (§7.9):
// the tree hash s had when its parent was last set. unmerged is sorted;
// entries outside s's subtree are ignored. Only the paths from those
// leaves up to s are recomputed; everything else comes from the cache, so
// the hashes must be fresh.
func (t *publicTree) originalSiblingTreeHash(buf *[]byte, s NodeIndex, unmerged []uint32) ([]byte, error) {
	first, n := treemath.LeafSpan(s)
	lo, hi := leafRange(unmerged, uint32(first), uint32(first)+n)
	return t.hashExcluding(buf, s, unmerged[lo:hi])
}

// hashExcluding is the tree hash of x with the leaves in excl (sorted, all
// below x) blanked and removed from unmerged lists.
func (t *publicTree) hashExcluding(buf *[]byte, x NodeIndex, excl []uint32) ([]byte, error) {
	if len(excl) == 0 {
		return t.nodeHash(x), nil
	}
	if x.IsLeaf() {
		in, err := leafHashInput((*buf)[:0], x.Leaf(), nil)
		if err != nil {
			return nil, err
		}
		*buf = in
		return t.suite.Hash(in), nil
	}
	l, r := treemath.Children(x)
	// Leaves of the right child start at the leaf just right of x.
	split, _ := leafRange(excl, uint32(x+1)>>1, ^uint32(0))
	lh, err := t.hashExcluding(buf, l, excl[:split])
	if err != nil {
		return nil, err
	}
	rh, err := t.hashExcluding(buf, r, excl[split:])
	if err != nil {
		return nil, err
	}
	p := t.parents[x>>1]
	if p != nil {
		q := *p
		q.UnmergedLeaves = make([]uint32, 0, len(p.UnmergedLeaves))
		for _, u := range p.UnmergedLeaves {
			if !containsU32(excl, u) {
				q.UnmergedLeaves = append(q.UnmergedLeaves, u)
			}
		}
		p = &q
	}
	in, err := parentHashInput((*buf)[:0], p, lh, rh)
	if err != nil {
		return nil, err
	}
	*buf = in
	return t.suite.Hash(in), nil
}

// leafRange returns the sub-slice bounds of the sorted leaves in [lo, hi).
func leafRange(sorted []uint32, lo, hi uint32) (int, int) {
	i := lowerBound(sorted, lo)
	j := i + lowerBound(sorted[i:], hi)
	return i, j
}

func lowerBound(sorted []uint32, v uint32) int {
	i, j := 0, len(sorted)
	for i < j {
		h := int(uint(i+j) >> 1)
		if sorted[h] < v {
			i = h + 1
		} else {
			j = h
		}
	}
	return i
}

func containsU32(sorted []uint32, v uint32) bool {
	i := lowerBound(sorted, v)
	return i < len(sorted) && sorted[i] == v
}

// parallelFor runs f(i) for i in [0, n) on at most workers goroutines, each
// with its own scratch buffer.
func parallelFor(n, workers int, f func(i int, buf *[]byte)) {
	if workers > n {
		workers = n
	}
	if workers <= 1 {
		var buf []byte
		for i := range n {
			f(i, &buf)
		}
		return
	}
	var wg sync.WaitGroup
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	for range workers {
		wg.Go(func() {
			var buf []byte
			for i := range next {
				f(i, &buf)
			}
		})
	}
	wg.Wait()
}
