package mls

// The public ratchet tree (RFC 9420 §4.1, §7): an array of optional nodes
// in the order of Appendix C, with the tree hash of every node cached.
//
// Nodes stored in a tree are never modified in place; a change replaces
// the *LeafNode or *ParentNode. That keeps clones and the undo journal
// shallow, and lets callers share decoded nodes.

import (
	"bytes"
	"hash/maphash"
	"slices"

	"github.com/moat-im/moat/crypto/mls/internal/suite"
	"github.com/moat-im/moat/crypto/mls/internal/treemath"
)

// LeafIndex is a member's position among the leaves of the tree (§4.1.1).
type LeafIndex = treemath.LeafIndex

// NodeIndex is a node's position in the array representation (Appendix C);
// leaf L is node 2L.
type NodeIndex = treemath.NodeIndex

// publicTree is the public state of a ratchet tree: what every member and
// the ratchet_tree extension agree on.
type publicTree struct {
	suite   *suite.Suite
	nLeaves uint32        // a power of two, at least 1
	leaves  []*LeafNode   // len nLeaves; nil is a blank leaf
	parents []*ParentNode // len nLeaves-1; parent node x at x>>1; nil is blank

	// Tree hash cache (§7.8): hashes[x*Nh:(x+1)*Nh] is the tree hash of
	// node x unless stale[x]. Invariant: a stale node's ancestors are all
	// stale, so marking stops at the first stale ancestor.
	hashes     []byte
	stale      []bool
	staleCount int

	// Key index: every encryption key (leaves and parents) and every
	// signature key (leaves) by a keyed 64-bit hash, for the uniqueness
	// checks of §7.3 and §12.4.2 without scanning the tree.
	seed    maphash.Seed
	encKeys keyIndex
	sigKeys keyIndex

	// journal, when non-nil, records the old value of every node changed,
	// so rollback can restore the tree (state is committed only after
	// verification).
	journal *treeJournal

	buf []byte // scratch for hash inputs (single-threaded paths)
}

// keyIndex maps the maphash of a key to the node holding it. A different
// key with the same 64-bit hash (chance 2^-64 per pair, the seed is secret
// and random per tree) goes to the overflow map.
type keyIndex struct {
	m        map[uint64]NodeIndex
	overflow map[string]NodeIndex
}

func newKeyIndex(n int) keyIndex {
	return keyIndex{m: make(map[uint64]NodeIndex, n)}
}

// newPublicTree returns a one-member tree holding leaf at index 0 (a new
// group, §11).
func newPublicTree(s *suite.Suite, leaf *LeafNode) *publicTree {
	t := newBlankTree(s, 1)
	t.setLeaf(0, leaf)
	return t
}

// newBlankTree returns a tree of n leaves (a power of two), all blank.
func newBlankTree(s *suite.Suite, n uint32) *publicTree {
	t := &publicTree{suite: s, seed: maphash.MakeSeed()}
	t.resize(n)
	t.encKeys, t.sigKeys = newKeyIndex(int(n)), newKeyIndex(int(n))
	return t
}

// width is the number of nodes, 2·nLeaves−1.
func (t *publicTree) width() uint32 { return treemath.NodeWidth(t.nLeaves) }

func (t *publicTree) root() NodeIndex { return treemath.Root(t.nLeaves) }

// leaf returns leaf i, nil if blank or outside the tree.
func (t *publicTree) leaf(i LeafIndex) *LeafNode {
	if uint32(i) >= t.nLeaves {
		return nil
	}
	return t.leaves[i]
}

// blank reports whether node x is blank.
func (t *publicTree) blank(x NodeIndex) bool {
	if x.IsLeaf() {
		return t.leaves[x.Leaf()] == nil
	}
	return t.parents[x>>1] == nil
}

// encryptionKey returns the HPKE public key of non-blank node x.
func (t *publicTree) encryptionKey(x NodeIndex) HPKEPublicKey {
	if x.IsLeaf() {
		if l := t.leaves[x.Leaf()]; l != nil {
			return l.EncryptionKey
		}
		return nil
	}
	if p := t.parents[x>>1]; p != nil {
		return p.EncryptionKey
	}
	return nil
}

// memberCount is the number of non-blank leaves.
func (t *publicTree) memberCount() int {
	n := 0
	for _, l := range t.leaves {
		if l != nil {
			n++
		}
	}
	return n
}

// resize sets the leaf count to n (a power of two), keeping the nodes the
// two sizes share. New nodes are blank and stale; when shrinking, the
// nodes cut off must already be blank.
func (t *publicTree) resize(n uint32) {
	nh := t.suite.Nh()
	w := int(treemath.NodeWidth(n))
	if n > t.nLeaves {
		t.leaves = append(t.leaves, make([]*LeafNode, int(n-t.nLeaves))...)
		t.parents = append(t.parents, make([]*ParentNode, int(n-1)-len(t.parents))...)
		oldW := int(t.width())
		t.hashes = append(t.hashes, make([]byte, (w-oldW)*nh)...)
		t.stale = append(t.stale, make([]bool, w-oldW)...)
		for x := oldW; x < w; x++ {
			t.stale[x] = true
		}
		t.staleCount += w - oldW
	} else {
		oldW := int(t.width())
		for x := w; x < oldW; x++ {
			if t.stale[x] {
				t.staleCount--
			}
		}
		clear(t.leaves[n:])
		clear(t.parents[n-1:])
		t.leaves = t.leaves[:n]
		t.parents = t.parents[:n-1]
		t.hashes = t.hashes[:w*nh]
		t.stale = t.stale[:w]
	}
	t.nLeaves = n
	if t.journal != nil && n < t.journal.minLeaves {
		t.journal.minLeaves = n
	}
}

// markStale marks x and its ancestors as needing their tree hash
// recomputed.
func (t *publicTree) markStale(x NodeIndex) {
	r := t.root()
	for {
		if t.stale[x] {
			return
		}
		t.stale[x] = true
		t.staleCount++
		if x == r {
			return
		}
		x, _ = treemath.Parent(x, t.nLeaves)
	}
}

// setLeaf replaces leaf i (nil blanks it), keeping the key index and hash
// cache current.
func (t *publicTree) setLeaf(i LeafIndex, ln *LeafNode) {
	old := t.leaves[i]
	if old == ln {
		return
	}
	x := i.Node()
	if t.journal != nil {
		t.journal.entries = append(t.journal.entries, journalEntry{node: x, leaf: old})
	}
	if old != nil {
		t.unindexKey(false, old.EncryptionKey, x)
		t.unindexKey(true, old.SignatureKey, x)
	}
	t.leaves[i] = ln
	if ln != nil {
		t.indexKey(false, ln.EncryptionKey, x)
		t.indexKey(true, ln.SignatureKey, x)
	}
	t.markStale(x)
}

// setParent replaces parent node x (nil blanks it).
func (t *publicTree) setParent(x NodeIndex, p *ParentNode) {
	old := t.parents[x>>1]
	if old == p {
		return
	}
	if t.journal != nil {
		t.journal.entries = append(t.journal.entries, journalEntry{node: x, parent: old})
	}
	if old != nil {
		t.unindexKey(false, old.EncryptionKey, x)
	}
	t.parents[x>>1] = p
	if p != nil {
		t.indexKey(false, p.EncryptionKey, x)
	}
	t.markStale(x)
}

// blankDirectPath blanks every parent node on the direct path of leaf i.
func (t *publicTree) blankDirectPath(i LeafIndex) {
	r := t.root()
	for x := i.Node(); x != r; {
		x, _ = treemath.Parent(x, t.nLeaves)
		t.setParent(x, nil)
	}
}

// Key index maintenance. The tree never holds a key twice: loading
// refuses duplicates and every operation checks before it inserts, so
// indexKey only ever sees fresh keys.

// indexKey records that node x holds key; it returns the node already
// holding key, if any (then nothing is recorded).
func (t *publicTree) indexKey(sig bool, key []byte, x NodeIndex) (NodeIndex, bool) {
	k := t.keyIndex(sig)
	h := maphash.Bytes(t.seed, key)
	y, ok := k.m[h]
	if !ok {
		k.m[h] = x
		return 0, false
	}
	if bytes.Equal(t.keyAt(y, sig), key) {
		return y, true
	}
	if y, ok := k.overflow[string(key)]; ok {
		return y, true
	}
	if k.overflow == nil {
		k.overflow = make(map[string]NodeIndex)
	}
	k.overflow[string(key)] = x
	return 0, false
}

// unindexKey forgets that node x holds key.
func (t *publicTree) unindexKey(sig bool, key []byte, x NodeIndex) {
	k := t.keyIndex(sig)
	h := maphash.Bytes(t.seed, key)
	if y, ok := k.m[h]; ok && y == x {
		delete(k.m, h)
		// Promote a colliding key from the overflow map, if any.
		for s, z := range k.overflow {
			if maphash.String(t.seed, s) == h {
				k.m[h] = z
				delete(k.overflow, s)
				break
			}
		}
		return
	}
	if y, ok := k.overflow[string(key)]; ok && y == x {
		delete(k.overflow, string(key))
	}
}

func (t *publicTree) keyIndex(sig bool) *keyIndex {
	if sig {
		return &t.sigKeys
	}
	return &t.encKeys
}

// findKey returns the node holding key.
func (t *publicTree) findKey(sig bool, key []byte) (NodeIndex, bool) {
	k := t.keyIndex(sig)
	y, ok := k.m[maphash.Bytes(t.seed, key)]
	if !ok {
		return 0, false
	}
	if bytes.Equal(t.keyAt(y, sig), key) {
		return y, true
	}
	y, ok = k.overflow[string(key)]
	return y, ok
}

// keyAt is the encryption (or, for sig, signature) key of node x.
func (t *publicTree) keyAt(x NodeIndex, sig bool) []byte {
	if sig {
		return t.leaves[x.Leaf()].SignatureKey
	}
	return t.encryptionKey(x)
}

// findEncryptionKey returns the node whose encryption key is key.
func (t *publicTree) findEncryptionKey(key []byte) (NodeIndex, bool) { return t.findKey(false, key) }

// findSignatureKey returns the leaf whose signature key is key.
func (t *publicTree) findSignatureKey(key []byte) (LeafIndex, bool) {
	x, ok := t.findKey(true, key)
	return x.Leaf(), ok
}

// indexAll builds the key index of a freshly loaded tree, refusing a key
// held by two nodes (§12.4.3.1: encryption keys unique across the tree,
// §7.3: signature keys unique among members).
func (t *publicTree) indexAll() error {
	const op = "validating tree"
	members := 0
	for _, l := range t.leaves {
		if l != nil {
			members++
		}
	}
	t.encKeys = newKeyIndex(2 * members)
	t.sigKeys = newKeyIndex(members)
	for i, l := range t.leaves {
		if l == nil {
			continue
		}
		x := LeafIndex(i).Node()
		if _, dup := t.indexKey(false, l.EncryptionKey, x); dup {
			return treeErr(op, x, ErrDuplicateKey)
		}
		if _, dup := t.indexKey(true, l.SignatureKey, x); dup {
			return treeErr(op, x, ErrDuplicateKey)
		}
	}
	for i, p := range t.parents {
		if p == nil {
			continue
		}
		x := NodeIndex(2*i + 1)
		if _, dup := t.indexKey(false, p.EncryptionKey, x); dup {
			return treeErr(op, x, ErrDuplicateKey)
		}
	}
	return nil
}

// Journal: begin starts recording changes; rollback restores the tree as
// it was at begin; commit keeps the changes. Only one journal at a time.

type journalEntry struct {
	node   NodeIndex
	leaf   *LeafNode
	parent *ParentNode
}

type treeJournal struct {
	nLeaves   uint32 // leaf count at begin
	minLeaves uint32 // smallest leaf count since begin
	entries   []journalEntry
}

func (t *publicTree) begin() {
	if t.journal != nil {
		panic("mls: ratchet tree journal already open")
	}
	t.journal = &treeJournal{nLeaves: t.nLeaves, minLeaves: t.nLeaves}
}

func (t *publicTree) commit() { t.journal = nil }

func (t *publicTree) rollback() {
	j := t.journal
	t.journal = nil
	// Undo node changes newest first. The tree may be larger or smaller
	// than at begin; grow it to cover every node touched.
	maxLeaves := j.nLeaves
	for _, e := range j.entries {
		if l := treemath.LeafCount(uint32(e.node) + 1); l > maxLeaves {
			maxLeaves = l
		}
	}
	if t.nLeaves < maxLeaves {
		t.resize(maxLeaves)
	}
	for _, e := range slices.Backward(j.entries) {
		if e.node.IsLeaf() {
			t.setLeaf(e.node.Leaf(), e.leaf)
		} else {
			t.setParent(e.node, e.parent)
		}
	}
	if t.nLeaves != j.nLeaves {
		t.resize(j.nLeaves)
	}
	// Hashes of nodes beyond the smallest width seen may have been
	// overwritten while the tree was a different size.
	if j.minLeaves < j.nLeaves {
		for x := treemath.NodeWidth(j.minLeaves); x < t.width(); x++ {
			t.markStale(NodeIndex(x))
		}
		t.markStale(treemath.Root(j.minLeaves))
	}
}

// clone returns an independent copy of t (nodes are shared: they are never
// modified in place).
func (t *publicTree) clone() *publicTree {
	c := &publicTree{
		suite:      t.suite,
		nLeaves:    t.nLeaves,
		leaves:     slices.Clone(t.leaves),
		parents:    slices.Clone(t.parents),
		hashes:     slices.Clone(t.hashes),
		stale:      slices.Clone(t.stale),
		staleCount: t.staleCount,
		seed:       t.seed,
		encKeys:    t.encKeys.clone(),
		sigKeys:    t.sigKeys.clone(),
	}
	return c
}

func (k keyIndex) clone() keyIndex {
	c := keyIndex{m: make(map[uint64]NodeIndex, len(k.m))}
	for h, x := range k.m {
		c.m[h] = x
	}
	if k.overflow != nil {
		c.overflow = make(map[string]NodeIndex, len(k.overflow))
		for s, x := range k.overflow {
			c.overflow[s] = x
		}
	}
	return c
}

// Resolution (§4.1.1).

// resolution appends the resolution of node x to dst: the non-blank nodes
// covering x's subtree, each followed by its unmerged leaves.
func (t *publicTree) resolution(dst []NodeIndex, x NodeIndex) []NodeIndex {
	return t.resolutionExcept(dst, x, nil)
}

// resolutionExcept is resolution without the leaves in exclude (sorted):
// the new members of a Commit, to whom path secrets are not encrypted
// (§7.6).
func (t *publicTree) resolutionExcept(dst []NodeIndex, x NodeIndex, exclude []LeafIndex) []NodeIndex {
	if x.IsLeaf() {
		if t.leaves[x.Leaf()] != nil && !containsLeaf(exclude, x.Leaf()) {
			dst = append(dst, x)
		}
		return dst
	}
	if p := t.parents[x>>1]; p != nil {
		dst = append(dst, x)
		for _, u := range p.UnmergedLeaves {
			if !containsLeaf(exclude, LeafIndex(u)) {
				dst = append(dst, LeafIndex(u).Node())
			}
		}
		return dst
	}
	l, r := treemath.Children(x)
	dst = t.resolutionExcept(dst, l, exclude)
	return t.resolutionExcept(dst, r, exclude)
}

// emptyResolution reports whether the resolution of x is empty, without
// building it.
func (t *publicTree) emptyResolution(x NodeIndex) bool {
	if x.IsLeaf() {
		return t.leaves[x.Leaf()] == nil
	}
	if t.parents[x>>1] != nil {
		return false
	}
	// A blank parent's resolution is empty iff every leaf below is blank
	// (unmerged leaves are themselves leaves below).
	first, n := treemath.LeafSpan(x)
	for _, l := range t.leaves[first : uint32(first)+n] {
		if l != nil {
			return false
		}
	}
	return true
}

// filteredDirectPath appends the filtered direct path of leaf i to dst and
// the matching copath children to cop (§4.1.2).
func (t *publicTree) filteredDirectPath(dst, cop []NodeIndex, i LeafIndex) ([]NodeIndex, []NodeIndex) {
	return treemath.FilteredPath(dst, cop, i.Node(), t.nLeaves, t.emptyResolution)
}

func containsLeaf(sorted []LeafIndex, l LeafIndex) bool {
	if len(sorted) == 0 {
		return false
	}
	_, ok := slices.BinarySearch(sorted, l)
	return ok
}

// Conversion to and from the ratchet_tree extension (§12.4.3.3).

// ratchetTree returns the tree as the ratchet_tree extension carries it,
// trailing blank nodes omitted.
func (t *publicTree) ratchetTree() RatchetTree {
	w := int(t.width())
	for w > 0 && t.blank(NodeIndex(w-1)) {
		w--
	}
	out := make(RatchetTree, w)
	nodes := make([]Node, w)
	for x := range w {
		switch {
		case x%2 == 0 && t.leaves[x/2] != nil:
			nodes[x].Leaf = t.leaves[x/2]
			out[x] = &nodes[x]
		case x%2 == 1 && t.parents[x/2] != nil:
			nodes[x].Parent = t.parents[x/2]
			out[x] = &nodes[x]
		}
	}
	return out
}

// newTreeFromRatchetTree builds a tree from a decoded ratchet_tree
// extension, extending it with blank nodes to a full tree. It checks only
// the structure; validate checks the contents. The nodes are shared with
// rt.
func newTreeFromRatchetTree(s *suite.Suite, rt RatchetTree) (*publicTree, error) {
	const op = "loading ratchet tree"
	if len(rt) == 0 || rt[len(rt)-1] == nil || len(rt) > 2*MaxTreeLeaves-1 {
		return nil, treeErr(op, 0, ErrMalformedTree)
	}
	t := newBlankTree(s, treemath.LeafCount(uint32(len(rt))))
	for x, node := range rt {
		if node == nil {
			continue
		}
		switch {
		case x%2 == 0 && node.Leaf != nil && node.Parent == nil:
			t.leaves[x/2] = node.Leaf
		case x%2 == 1 && node.Parent != nil && node.Leaf == nil:
			t.parents[x/2] = node.Parent
		default:
			return nil, treeErr(op, NodeIndex(x), ErrMalformedTree)
		}
	}
	if err := t.indexAll(); err != nil {
		return nil, err
	}
	return t, nil
}
