package vmap

// Batch update of docs/spec/vmap.md §Updates and storage. Update walks down the tree one
// level at a time, reading every node it needs at a level in one GetNodes
// call, then hashes back up one level at a time, splitting each level's
// hashing across goroutines. It shares nothing mutable between goroutines
// but disjoint slices, and takes no locks.

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"sync"
)

// What an update does at one position of the tree.
const (
	opKeep     = iota // the subtree is unchanged: keep the old child
	opLeaf            // write a leaf
	opInterior        // write an interior node
)

// maxChanges bounds one epoch's changes, so that work item indices fit in
// an int32.
const maxChanges = 1<<30 - 1

// A work item is one position of the tree that the update touches.
type work struct {
	lo, hi      int32 // the changes below this position: changes[lo:hi]
	mid         int32 // interior: changes[lo:mid] go left, changes[mid:hi] right
	left, right int32 // work items of the children at the next level, or -1
	old         Child // what was here before
	prev        *Node // the old node (fetched, or carried down), or nil
	hash        Hash  // the new node's hash
	node        Node  // the new node; for an interior, settled children
	moved       bool  // prev is a leaf carried down from an ancestor
	op          uint8
	carry       int8 // interior: the side prev (an old leaf) moves to, or -1
}

// res returns the child reference the parent of w gets.
func (w *work) res(epoch uint64) Child {
	if w.op == opKeep {
		return w.old
	}
	return Child{Hash: w.hash, Version: epoch, Kind: w.node.kind}
}

// Update computes epoch from the committed epoch-1 (from the empty map for
// epoch 0) by applying changes, and returns the nodes to commit, which the
// caller must commit before updating epoch+1. It reads the store but does
// not write it, and does not modify changes. A label may appear once in
// changes; changing a label to the commitment it already has is allowed and
// writes nothing for it. Labels are never removed.
//
// The batch always holds the root node of epoch, so that every epoch has a
// root even when nothing changed.
func (m *Map) Update(epoch uint64, changes []Change) (*Batch, error) {
	if len(changes) > maxChanges {
		return nil, fmt.Errorf("vmap: %d changes in one epoch, over %d", len(changes), maxChanges)
	}
	cs := slices.Clone(changes)
	slices.SortFunc(cs, func(a, b Change) int { return bytes.Compare(a.Label[:], b.Label[:]) })
	for i := 1; i < len(cs); i++ {
		if cs[i].Label == cs[i-1].Label {
			return nil, fmt.Errorf("%w: %v", ErrDuplicateLabel, cs[i].Label)
		}
	}

	root := &work{lo: 0, hi: int32(len(cs)), left: -1, right: -1, carry: -1}
	if epoch > 0 {
		rn, err := m.rootNode(epoch - 1)
		if err != nil {
			return nil, err
		}
		if err := rn.check(); err != nil {
			return nil, fmt.Errorf("%w: root of epoch %d: %v", ErrCorrupt, epoch-1, err)
		}
		root.prev = &rn
		root.old = Child{Kind: rn.kind, Version: epoch - 1}
	}
	u := &updater{m: m, epoch: epoch, cs: cs}
	levels, err := u.descend(root)
	if err != nil {
		return nil, err
	}
	u.ascend(levels)
	return u.batch(levels), nil
}

type updater struct {
	m     *Map
	epoch uint64
	cs    []Change
}

// descend builds the work items level by level, reading the old nodes of
// each level in one batch.
func (u *updater) descend(root *work) ([][]work, error) {
	levels := [][]work{{*root}}
	for d := 0; d <= MaxDepth; d++ {
		cur := levels[d]
		if err := u.fetch(cur, d); err != nil {
			return nil, err
		}
		n := 0
		for i := range cur {
			k, err := u.plan(&cur[i], d)
			if err != nil {
				return nil, err
			}
			n += k
		}
		if n == 0 {
			return levels, nil
		}
		next := make([]work, 0, n)
		for i := range cur {
			if cur[i].op == opInterior {
				next = u.expand(&cur[i], next)
			}
		}
		levels = append(levels, next)
	}
	return nil, fmt.Errorf("%w: tree deeper than 256", ErrCorrupt)
}

// fetch reads the old node of every item at depth d that has one and does
// not carry it already.
func (u *updater) fetch(items []work, d int) error {
	var keys []NodeKey
	var idx []int
	for i := range items {
		w := &items[i]
		if w.prev != nil || w.old.Kind == KindEmpty {
			continue
		}
		keys = append(keys, NodeKey{Version: w.old.Version, Depth: uint16(d), Path: u.cs[w.lo].Label.prefix(d)})
		idx = append(idx, i)
	}
	if len(keys) == 0 {
		return nil
	}
	return u.parallel(len(keys), 4096, func(lo, hi int) error {
		nodes, err := u.m.store.GetNodes(keys[lo:hi])
		if err != nil {
			return fmt.Errorf("vmap: reading %d nodes at depth %d: %w", hi-lo, d, err)
		}
		if len(nodes) != hi-lo {
			return fmt.Errorf("%w: store returned %d nodes for %d keys", ErrCorrupt, len(nodes), hi-lo)
		}
		for j := range nodes {
			w, n, k := &items[idx[lo+j]], &nodes[j], &keys[lo+j]
			if n.kind != w.old.Kind || n.check() != nil {
				return fmt.Errorf("%w: node %v is not the %v its parent names", ErrCorrupt, *k, w.old.Kind)
			}
			if l := n.Label(); n.kind == KindLeaf && l.prefix(d) != k.Path {
				return fmt.Errorf("%w: leaf %v off its label's path", ErrCorrupt, *k)
			}
			w.prev = n
		}
		return nil
	})
}

// plan decides what happens at w (depth d) and returns how many child work
// items it needs at depth d+1.
func (u *updater) plan(w *work, d int) (int, error) {
	n := int(w.hi - w.lo)
	if n == 0 && !w.moved {
		w.op = opKeep // only the root can have no changes
		return 0, nil
	}
	switch w.old.Kind {
	case KindEmpty:
		if n == 1 {
			c := &u.cs[w.lo]
			w.op, w.node = opLeaf, NewLeaf(c.Label, c.Commitment)
			return 0, nil
		}
		return u.split(w, d, false), nil

	case KindLeaf:
		old := w.prev
		oldLabel := old.Label()
		j, has := sort.Find(n, func(i int) int {
			return bytes.Compare(oldLabel[:], u.cs[int(w.lo)+i].Label[:])
		})
		if (has && n == 1) || (!has && n == 0) {
			c := old.Commitment()
			if has {
				c = u.cs[int(w.lo)+j].Commitment
			}
			if !w.moved && c == old.Commitment() {
				w.op = opKeep
				return 0, nil
			}
			w.op, w.node = opLeaf, NewLeaf(oldLabel, c)
			return 0, nil
		}
		if d >= MaxDepth {
			return 0, fmt.Errorf("%w: two labels at depth 256", ErrCorrupt)
		}
		// If a change replaces the old leaf, the old leaf simply goes;
		// otherwise it moves down.
		return u.split(w, d, !has), nil

	case KindInterior:
		if d >= MaxDepth {
			return 0, fmt.Errorf("%w: interior node at depth 256", ErrCorrupt)
		}
		return u.split(w, d, false), nil
	}
	return 0, fmt.Errorf("%w: node kind %v", ErrCorrupt, w.old.Kind)
}

// split makes w an interior node: it divides w's changes between the two
// children and, with carry, moves the old leaf w.prev to its side. It
// returns how many children change.
func (u *updater) split(w *work, d int, carry bool) int {
	lo, hi := int(w.lo), int(w.hi)
	w.mid = int32(lo + sort.Search(hi-lo, func(i int) bool { return u.cs[lo+i].Label.bit(d) == 1 }))
	w.op, w.carry = opInterior, -1
	if carry {
		l := w.prev.Label()
		w.carry = int8(l.bit(d))
	}
	k := 0
	if w.mid > w.lo || w.carry == 0 {
		k++
	}
	if w.hi > w.mid || w.carry == 1 {
		k++
	}
	return k
}

// expand appends the work items of w's changing children to next.
func (u *updater) expand(w *work, next []work) []work {
	var kids [2]Child
	if w.old.Kind == KindInterior {
		kids = [2]Child{w.prev.Left(), w.prev.Right()}
	}
	w.node = NewInterior(kids[0], kids[1]) // children that change are filled in by ascend
	w.left, w.right = -1, -1
	bounds := [2][2]int32{{w.lo, w.mid}, {w.mid, w.hi}}
	for side := int8(0); side < 2; side++ {
		clo, chi := bounds[side][0], bounds[side][1]
		if clo == chi && w.carry != side {
			continue // an unchanged child: kids[side] stays
		}
		c := work{lo: clo, hi: chi, left: -1, right: -1, old: kids[side]}
		if w.carry == side {
			c.old = Child{Kind: KindLeaf}
			c.prev, c.moved = w.prev, true
		}
		if side == 0 {
			w.left = int32(len(next))
		} else {
			w.right = int32(len(next))
		}
		next = append(next, c)
	}
	return next
}

// ascend hashes the new nodes from the deepest level up.
func (u *updater) ascend(levels [][]work) {
	for d := len(levels) - 1; d >= 0; d-- {
		cur := levels[d]
		var below []work
		if d+1 < len(levels) {
			below = levels[d+1]
		}
		_ = u.parallel(len(cur), 512, func(lo, hi int) error {
			for i := lo; i < hi; i++ {
				u.hashItem(&cur[i], d, below)
			}
			return nil
		})
	}
}

func (u *updater) hashItem(w *work, d int, below []work) {
	switch w.op {
	case opKeep:
	case opLeaf:
		w.hash = w.node.Hash(d)
	case opInterior:
		l, r := w.node.Left(), w.node.Right()
		if w.left >= 0 {
			l = below[w.left].res(u.epoch)
		}
		if w.right >= 0 {
			r = below[w.right].res(u.epoch)
		}
		n := NewInterior(l, r)
		if w.old.Kind == KindInterior && n == *w.prev {
			w.op = opKeep // every change below was a no-op
			return
		}
		w.node = n
		w.hash = interiorHash(l.hash(d+1), r.hash(d+1))
	}
}

// batch collects the written nodes in key order: by depth, then by path,
// which is the order the items were created in. The root is always written.
func (u *updater) batch(levels [][]work) *Batch {
	total := 1
	for d := 1; d < len(levels); d++ {
		for i := range levels[d] {
			if levels[d][i].op != opKeep {
				total++
			}
		}
	}
	b := &Batch{Epoch: u.epoch, Nodes: make([]KeyedNode, 0, total)}
	r := &levels[0][0]
	rootNode := r.node
	if r.op == opKeep {
		rootNode = Node{}
		if r.prev != nil {
			rootNode = *r.prev
		}
	}
	b.Root = rootNode.Hash(0)
	b.Nodes = append(b.Nodes, KeyedNode{Key: RootKey(u.epoch), Node: rootNode})
	for d := 1; d < len(levels); d++ {
		for i := range levels[d] {
			w := &levels[d][i]
			if w.op == opKeep {
				continue
			}
			var path Label
			if w.lo < w.hi {
				path = u.cs[w.lo].Label.prefix(d)
			} else {
				l := w.node.Label()
				path = l.prefix(d)
			}
			b.Nodes = append(b.Nodes, KeyedNode{Key: NodeKey{Version: u.epoch, Depth: uint16(d), Path: path}, Node: w.node})
		}
	}
	return b
}

// parallel runs f over [0, n) in up to u.m.parallelism contiguous chunks of
// at least minChunk elements, and returns the first error.
func (u *updater) parallel(n, minChunk int, f func(lo, hi int) error) error {
	p := min(u.m.parallelism, n/minChunk)
	if p <= 1 {
		return f(0, n)
	}
	var wg sync.WaitGroup
	errs := make([]error, p)
	for k := 0; k < p; k++ {
		lo, hi := k*n/p, (k+1)*n/p
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[k] = f(lo, hi)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
