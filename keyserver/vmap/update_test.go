package vmap

import (
	"errors"
	"slices"
	"testing"
)

func TestUpdateMisuse(t *testing.T) {
	s := NewMemStore()
	m := New(s, nil)
	if _, err := m.Update(0, []Change{{Label{1}, Commitment{1}}, {Label{1}, Commitment{2}}}); !errors.Is(err, ErrDuplicateLabel) {
		t.Errorf("duplicate label: %v", err)
	}
	if _, err := m.Update(5, nil); !errors.Is(err, ErrUnknownEpoch) {
		t.Errorf("update on a missing epoch: %v", err)
	}
	if _, err := m.Prove(0, Label{}); !errors.Is(err, ErrUnknownEpoch) {
		t.Errorf("prove on a missing epoch: %v", err)
	}
	// Update does not modify its input.
	cs := []Change{{Label{9}, Commitment{1}}, {Label{1}, Commitment{2}}, {Label{5}, Commitment{3}}}
	saved := slices.Clone(cs)
	commitUpdate(t, m, s, 0, cs)
	if !slices.Equal(cs, saved) {
		t.Error("Update reordered its input")
	}
}

// TestUpdateNoOps checks that unchanged epochs and no-op changes write the
// root node only, with the same root.
func TestUpdateNoOps(t *testing.T) {
	r := testRand(7)
	s := NewMemStore()
	m := New(s, nil)
	var cs []Change
	for i := 0; i < 1000; i++ {
		var c Change
		r.Read(c.Label[:])
		r.Read(c.Commitment[:])
		cs = append(cs, c)
	}
	b0 := commitUpdate(t, m, s, 0, cs)
	b1 := commitUpdate(t, m, s, 1, nil)
	b2 := commitUpdate(t, m, s, 2, cs[:100])
	for _, b := range []*Batch{b1, b2} {
		if b.Root != b0.Root || len(b.Nodes) != 1 || b.Nodes[0].Node != b0.Nodes[0].Node {
			t.Errorf("epoch %d: root %v and %d nodes, want the root of epoch 0 only", b.Epoch, b.Root, len(b.Nodes))
		}
	}
	// An empty map stays empty.
	s2 := NewMemStore()
	m2 := New(s2, nil)
	commitUpdate(t, m2, s2, 0, nil)
	if b := commitUpdate(t, m2, s2, 1, nil); b.Root != EmptyRoot() || b.Nodes[0].Node.Kind() != KindEmpty {
		t.Error("empty epochs do not keep the empty root")
	}
}

// TestUpdateParallel checks that the hashing and reads split across
// goroutines give the same batch as one goroutine. Run with -race.
func TestUpdateParallel(t *testing.T) {
	r := testRand(8)
	n := 40000
	if testing.Short() {
		n = 12000
	}
	var first, second []Change
	for i := 0; i < n; i++ {
		var c Change
		r.Read(c.Label[:])
		r.Read(c.Commitment[:])
		first = append(first, c)
		if i%2 == 0 {
			c.Commitment[0] ^= 1
			second = append(second, c)
		} else {
			r.Read(c.Label[:])
			second = append(second, c)
		}
	}
	var batches [2][]*Batch
	for i, p := range []int{1, 4} {
		s := NewMemStore()
		m := New(s, &Options{Parallelism: p})
		batches[i] = append(batches[i], commitUpdate(t, m, s, 0, first), commitUpdate(t, m, s, 1, second))
	}
	for e := range batches[0] {
		a, b := batches[0][e], batches[1][e]
		if a.Root != b.Root || !slices.Equal(a.Nodes, b.Nodes) {
			t.Fatalf("epoch %d: parallel batch differs from serial", e)
		}
		if err := a.Check(); err != nil {
			t.Fatal(err)
		}
	}
}

// corruptStore returns a wrong node for one key.
type corruptStore struct {
	*MemStore
	bad NodeKey
	n   Node
}

func (c *corruptStore) GetNodes(keys []NodeKey) ([]Node, error) {
	ns, err := c.MemStore.GetNodes(keys)
	for i, k := range keys {
		if err == nil && k == c.bad {
			ns[i] = c.n
		}
	}
	return ns, err
}

func TestUpdateCorruptStore(t *testing.T) {
	s := NewMemStore()
	m := New(s, nil)
	a, b := Label{0x00}, Label{0x80}
	commitUpdate(t, m, s, 0, []Change{{a, Commitment{1}}, {b, Commitment{2}}, {Label{0x81}, Commitment{3}}})
	// The node at depth 1 on the right is an interior node; claim it is a
	// leaf, or a leaf off its path.
	key := NodeKey{Version: 0, Depth: 1, Path: Label{0x80}}
	for _, n := range []Node{NewLeaf(b, Commitment{2}), {kind: 7}} {
		cm := New(&corruptStore{s, key, n}, nil)
		if _, err := cm.Update(1, []Change{{Label{0x82}, Commitment{4}}}); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Update over a corrupt store: %v", err)
		}
		if _, err := cm.Prove(0, b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Prove over a corrupt store: %v", err)
		}
	}
	leafKey := NodeKey{Version: 0, Depth: 1, Path: Label{0x00}}
	cm := New(&corruptStore{s, leafKey, NewLeaf(Label{0x80}, Commitment{1})}, nil)
	if _, err := cm.Update(1, []Change{{Label{0x01}, Commitment{4}}}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Update over a leaf off its path: %v", err)
	}
}

func TestBatchCheck(t *testing.T) {
	r := testRand(9)
	s := NewMemStore()
	m := New(s, nil)
	var cs []Change
	for i := 0; i < 50; i++ {
		var c Change
		r.Read(c.Label[:])
		cs = append(cs, c)
	}
	b, err := m.Update(0, cs)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Check(); err != nil {
		t.Fatal(err)
	}
	leafAt := -1
	for i, kn := range b.Nodes {
		if kn.Node.Kind() == KindLeaf {
			leafAt = i
			break
		}
	}
	mutations := map[string]func(b *Batch){
		"empty node below root": func(b *Batch) { b.Nodes[1].Node = Node{} },
		"leaf off its path": func(b *Batch) {
			l := b.Nodes[leafAt].Node.Label()
			l[0] ^= 0x80
			b.Nodes[leafAt].Node = NewLeaf(l, Commitment{})
		},
		"child from the future": func(b *Batch) { b.Nodes[1].Node.va = 1 },
		"bad node fields":       func(b *Batch) { b.Nodes[1].Node.ka = 9 },
	}
	for name, mut := range mutations {
		c := &Batch{Epoch: b.Epoch, Root: b.Root, Nodes: slices.Clone(b.Nodes)}
		mut(c)
		if err := c.Check(); !errors.Is(err, ErrInvalidBatch) {
			t.Errorf("%s: Check = %v", name, err)
		}
	}
}
