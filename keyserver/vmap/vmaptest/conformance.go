// Package vmaptest holds the conformance suite that every vmap.NodeStore
// implementation runs (STYLE item 8).
package vmaptest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/moat-im/moat/keyserver/vmap"
)

// Store is a vmap.NodeStore that can also commit batches, as a backend
// under test must.
type Store interface {
	vmap.NodeStore
	// Commit stores every node of b atomically. Committing an epoch again
	// with the same nodes must succeed and change nothing; with other
	// nodes it must fail with an error matching vmap.ErrConflict and
	// change nothing. A batch failing b.Check must be rejected with an
	// error matching vmap.ErrInvalidBatch, writing nothing.
	Commit(b *vmap.Batch) error
}

// StoreConformance runs the NodeStore conformance suite. newStore returns a
// new, empty store each time it is called.
func StoreConformance(t *testing.T, newStore func(t *testing.T) Store) {
	t.Run("Empty", func(t *testing.T) { testEmpty(t, newStore(t)) })
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, newStore(t)) })
	t.Run("Recommit", func(t *testing.T) { testRecommit(t, newStore(t)) })
	t.Run("InvalidBatch", func(t *testing.T) { testInvalidBatch(t, newStore(t)) })
	t.Run("NoAliasing", func(t *testing.T) { testNoAliasing(t, newStore(t)) })
	t.Run("Epochs", func(t *testing.T) { testEpochs(t, newStore(t)) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, newStore(t), newStore(t)) })
}

func rng(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	binary.BigEndian.PutUint64(s[:], seed)
	copy(s[8:], "moat vmaptest conformance seed")
	return rand.NewChaCha8(s)
}

func randomChanges(r *rand.ChaCha8, n int, existing []vmap.Label) []vmap.Change {
	cs := make([]vmap.Change, 0, n)
	seen := map[vmap.Label]bool{}
	for i := 0; i < n; i++ {
		var c vmap.Change
		if len(existing) > 0 && i%3 == 0 {
			c.Label = existing[int(r.Uint64()%uint64(len(existing)))]
		} else {
			_, _ = r.Read(c.Label[:])
		}
		if seen[c.Label] {
			continue
		}
		seen[c.Label] = true
		_, _ = r.Read(c.Commitment[:])
		cs = append(cs, c)
	}
	return cs
}

func mustUpdate(t *testing.T, m *vmap.Map, epoch uint64, cs []vmap.Change) *vmap.Batch {
	t.Helper()
	b, err := m.Update(epoch, cs)
	if err != nil {
		t.Fatalf("Update(%d): %v", epoch, err)
	}
	return b
}

func mustCommit(t *testing.T, s Store, b *vmap.Batch) {
	t.Helper()
	if err := s.Commit(b); err != nil {
		t.Fatalf("Commit(epoch %d): %v", b.Epoch, err)
	}
}

func keysOf(b *vmap.Batch) []vmap.NodeKey {
	ks := make([]vmap.NodeKey, len(b.Nodes))
	for i := range b.Nodes {
		ks[i] = b.Nodes[i].Key
	}
	return ks
}

// checkAbsent checks that every key is reported missing with
// ErrNodeNotFound, alone and among present keys.
func checkAbsent(t *testing.T, s Store, present []vmap.NodeKey, keys ...vmap.NodeKey) {
	t.Helper()
	for _, k := range keys {
		if _, err := s.GetNodes([]vmap.NodeKey{k}); !errors.Is(err, vmap.ErrNodeNotFound) {
			t.Errorf("GetNodes(%v) = %v, want ErrNodeNotFound", k, err)
		}
		if len(present) > 0 {
			mixed := []vmap.NodeKey{present[0], k, present[len(present)-1]}
			if _, err := s.GetNodes(mixed); !errors.Is(err, vmap.ErrNodeNotFound) {
				t.Errorf("GetNodes(present, %v, present) = %v, want ErrNodeNotFound", k, err)
			}
		}
	}
}

func testEmpty(t *testing.T, s Store) {
	checkAbsent(t, s, nil, vmap.RootKey(0), vmap.RootKey(1), vmap.NodeKey{Version: 7, Depth: 3, Path: vmap.Label{0xe0}})
	ns, err := s.GetNodes(nil)
	if err != nil || len(ns) != 0 {
		t.Errorf("GetNodes(nil) = %v, %v", ns, err)
	}
	m := vmap.New(s, nil)
	if _, err := m.Root(0); !errors.Is(err, vmap.ErrUnknownEpoch) {
		t.Errorf("Root(0) on an empty store = %v, want ErrUnknownEpoch", err)
	}
	if _, err := m.Update(1, nil); !errors.Is(err, vmap.ErrUnknownEpoch) {
		t.Errorf("Update(1) on an empty store = %v, want ErrUnknownEpoch", err)
	}
}

func testRoundTrip(t *testing.T, s Store) {
	r := rng(1)
	m := vmap.New(s, nil)
	b := mustUpdate(t, m, 0, randomChanges(r, 500, nil))
	mustCommit(t, s, b)
	keys := keysOf(b)
	ns, err := s.GetNodes(keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != len(keys) {
		t.Fatalf("GetNodes returned %d nodes for %d keys", len(ns), len(keys))
	}
	for i := range ns {
		if ns[i] != b.Nodes[i].Node {
			t.Fatalf("node %v differs after a round trip", keys[i])
		}
	}
	// Any order, with repeats.
	perm := []vmap.NodeKey{keys[len(keys)-1], keys[0], keys[len(keys)/2], keys[0]}
	ns, err = s.GetNodes(perm)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range perm {
		for j := range b.Nodes {
			if b.Nodes[j].Key == k && ns[i] != b.Nodes[j].Node {
				t.Fatalf("GetNodes out of order: node %d (%v) differs", i, k)
			}
		}
	}
	// Keys that are not stored: another version, another depth, a path
	// bit flipped.
	k := keys[len(keys)-1]
	other := k
	other.Version++
	deeper := k
	deeper.Depth++
	flipped := k
	flipped.Path[0] ^= 0x80
	var missing []vmap.NodeKey
	for _, x := range []vmap.NodeKey{other, deeper, flipped} {
		if _, ok := find(b, x); !ok {
			missing = append(missing, x)
		}
	}
	checkAbsent(t, s, keys, missing...)
	if root, err := m.Root(0); err != nil || root != b.Root {
		t.Errorf("Root(0) = %v, %v, want %v", root, err, b.Root)
	}
}

func find(b *vmap.Batch, k vmap.NodeKey) (vmap.Node, bool) {
	for i := range b.Nodes {
		if b.Nodes[i].Key == k {
			return b.Nodes[i].Node, true
		}
	}
	return vmap.Node{}, false
}

func testRecommit(t *testing.T, s Store) {
	r := rng(2)
	m := vmap.New(s, nil)
	b0 := mustUpdate(t, m, 0, randomChanges(r, 100, nil))
	mustCommit(t, s, b0)
	b1 := mustUpdate(t, m, 1, randomChanges(r, 50, nil))
	mustCommit(t, s, b1)
	if err := s.Commit(b1); err != nil {
		t.Errorf("committing the same batch again: %v", err)
	}
	// Another epoch 1, built from the same base.
	alt := mustUpdate(t, m, 1, randomChanges(r, 50, nil))
	if err := s.Commit(alt); !errors.Is(err, vmap.ErrConflict) {
		t.Errorf("committing another epoch 1 = %v, want ErrConflict", err)
	}
	// Only one node of the batch differs: still a conflict.
	one := &vmap.Batch{Epoch: b1.Epoch, Root: b1.Root, Nodes: append([]vmap.KeyedNode(nil), b1.Nodes...)}
	last := &one.Nodes[len(one.Nodes)-1]
	if last.Node.Kind() == vmap.KindLeaf {
		c := last.Node.Commitment()
		c[0] ^= 1
		last.Node = vmap.NewLeaf(last.Node.Label(), c)
		if err := s.Commit(one); !errors.Is(err, vmap.ErrConflict) {
			t.Errorf("committing epoch 1 with one leaf changed = %v, want ErrConflict", err)
		}
	}
	// A subset of the batch: a conflict, not a merge.
	sub := &vmap.Batch{Epoch: b1.Epoch, Root: b1.Root, Nodes: b1.Nodes[:1]}
	if err := s.Commit(sub); !errors.Is(err, vmap.ErrConflict) {
		t.Errorf("committing a subset of epoch 1 = %v, want ErrConflict", err)
	}
	// Epoch 1 is still the first one, whole.
	ns, err := s.GetNodes(keysOf(b1))
	if err != nil {
		t.Fatal(err)
	}
	for i := range ns {
		if ns[i] != b1.Nodes[i].Node {
			t.Fatalf("node %v changed after a rejected commit", b1.Nodes[i].Key)
		}
	}
	for i := range alt.Nodes {
		if _, ok := find(b1, alt.Nodes[i].Key); !ok {
			checkAbsent(t, s, nil, alt.Nodes[i].Key)
		}
	}
}

func testInvalidBatch(t *testing.T, s Store) {
	r := rng(3)
	m := vmap.New(s, nil)
	b := mustUpdate(t, m, 0, randomChanges(r, 50, nil))
	bad := map[string]func(b *vmap.Batch){
		"wrong version": func(b *vmap.Batch) { b.Nodes[len(b.Nodes)-1].Key.Version = 1 },
		"no root":       func(b *vmap.Batch) { b.Nodes = b.Nodes[1:] },
		"wrong root":    func(b *vmap.Batch) { b.Root[0] ^= 1 },
		"out of order":  func(b *vmap.Batch) { b.Nodes[1], b.Nodes[2] = b.Nodes[2], b.Nodes[1] },
		"duplicate":     func(b *vmap.Batch) { b.Nodes[2] = b.Nodes[1] },
		"dirty path":    func(b *vmap.Batch) { b.Nodes[1].Key.Path[31] |= 1 },
		"empty":         func(b *vmap.Batch) { b.Nodes = nil },
	}
	for name, mutate := range bad {
		c := &vmap.Batch{Epoch: b.Epoch, Root: b.Root, Nodes: append([]vmap.KeyedNode(nil), b.Nodes...)}
		mutate(c)
		if err := s.Commit(c); !errors.Is(err, vmap.ErrInvalidBatch) {
			t.Errorf("%s: Commit = %v, want ErrInvalidBatch", name, err)
		}
		checkAbsent(t, s, nil, vmap.RootKey(0), vmap.RootKey(1))
	}
	mustCommit(t, s, b)
}

func testNoAliasing(t *testing.T, s Store) {
	r := rng(4)
	m := vmap.New(s, nil)
	b := mustUpdate(t, m, 0, randomChanges(r, 20, nil))
	nodes := append([]vmap.KeyedNode(nil), b.Nodes...)
	mustCommit(t, s, b)
	// The store must not retain the batch: scribbling over it changes
	// nothing stored.
	for i := range b.Nodes {
		b.Nodes[i].Node = vmap.NewLeaf(vmap.Label{1}, vmap.Commitment{2})
	}
	keys := make([]vmap.NodeKey, len(nodes))
	for i := range nodes {
		keys[i] = nodes[i].Key
	}
	saved := append([]vmap.NodeKey(nil), keys...)
	ns, err := s.GetNodes(keys)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ns {
		if ns[i] != nodes[i].Node {
			t.Fatalf("store retained the committed batch: node %v changed", keys[i])
		}
		if keys[i] != saved[i] {
			t.Fatal("GetNodes modified its keys")
		}
	}
	// Nor the returned slice.
	for i := range ns {
		ns[i] = vmap.Node{}
	}
	ns, _ = s.GetNodes(keys)
	for i := range ns {
		if ns[i] != nodes[i].Node {
			t.Fatal("writing to a GetNodes result changed the store")
		}
	}
}

// testEpochs builds several epochs, then checks lookups and proofs at every
// one of them against a plain Go map.
func testEpochs(t *testing.T, s Store) {
	r := rng(5)
	m := vmap.New(s, nil)
	state := map[vmap.Label]vmap.Commitment{}
	var history []map[vmap.Label]vmap.Commitment
	var roots []vmap.Hash
	var labels []vmap.Label
	for e := uint64(0); e < 8; e++ {
		n := 300
		if e == 4 {
			n = 0
		}
		cs := randomChanges(r, n, labels)
		b := mustUpdate(t, m, e, cs)
		mustCommit(t, s, b)
		for _, c := range cs {
			if _, ok := state[c.Label]; !ok {
				labels = append(labels, c.Label)
			}
			state[c.Label] = c.Commitment
		}
		snap := make(map[vmap.Label]vmap.Commitment, len(state))
		for k, v := range state {
			snap[k] = v
		}
		history = append(history, snap)
		roots = append(roots, b.Root)
	}
	var absent vmap.Label
	_, _ = r.Read(absent[:])
	for e, snap := range history {
		for _, l := range append(labels[:len(labels):len(labels)], absent) {
			want, ok := snap[l]
			p, err := m.Prove(uint64(e), l)
			if err != nil {
				t.Fatalf("Prove(%d, %v): %v", e, l, err)
			}
			enc, err := p.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			q, err := vmap.ParseProof(enc)
			if err != nil {
				t.Fatal(err)
			}
			res, err := vmap.Verify(roots[e], l, q)
			if err != nil {
				t.Fatalf("epoch %d: %v", e, err)
			}
			if res.Present != ok || (ok && res.Commitment != want) {
				t.Fatalf("epoch %d label %v: proved %+v, want present=%v %v", e, l, res, ok, want)
			}
		}
	}
	if _, err := m.Prove(uint64(len(history)), absent); !errors.Is(err, vmap.ErrUnknownEpoch) {
		t.Errorf("Prove at an uncommitted epoch = %v, want ErrUnknownEpoch", err)
	}
}

// testConcurrent reads committed epochs while later epochs are being
// committed. The batches are computed in advance on a second store. Run it
// with -race.
func testConcurrent(t *testing.T, s, shadow Store) {
	r := rng(6)
	first := randomChanges(r, 200, nil)
	var batches []*vmap.Batch
	sm := vmap.New(shadow, &vmap.Options{Parallelism: 4})
	for e := uint64(0); e < 6; e++ {
		cs := first
		if e > 0 {
			cs = randomChanges(r, 200, nil)
		}
		b := mustUpdate(t, sm, e, cs)
		mustCommit(t, shadow, b)
		batches = append(batches, b)
	}
	m := vmap.New(s, &vmap.Options{Parallelism: 4})
	for _, b := range batches[:3] {
		mustCommit(t, s, b) // the others are committed concurrently below
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				e := uint64(i % 3)
				c := first[(g*20+i)%len(first)]
				got, ok, err := m.Lookup(e, c.Label)
				if err != nil || !ok || (e == 0 && got != c.Commitment) {
					errs <- fmt.Errorf("Lookup(%d, %v) = %v, %v, %v", e, c.Label, got, ok, err)
					return
				}
				if _, err := s.GetNodes(keysOf(batches[e])); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, b := range batches[3:] {
			if err := s.Commit(b); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, b := range batches {
		root, err := m.Root(b.Epoch)
		if err != nil || !bytes.Equal(root[:], b.Root[:]) {
			t.Errorf("Root(%d) = %v, %v, want %v", b.Epoch, root, err, b.Root)
		}
	}
}
