package vmap

import (
	"fmt"
	"sync"
)

// MemStore is an in-memory NodeStore. Each committed epoch is an immutable
// map published atomically, so reads take no lock; commits are serialised
// by a mutex that reads never touch.
type MemStore struct {
	mu       sync.Mutex // held by Commit only
	versions sync.Map   // uint64 version → *memVersion, never replaced once stored
}

type memKey struct {
	depth uint16
	path  Label
}

type memVersion struct {
	nodes map[memKey]Node
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore { return &MemStore{} }

// GetNodes implements NodeStore.
func (s *MemStore) GetNodes(keys []NodeKey) ([]Node, error) {
	out := make([]Node, len(keys))
	var v *memVersion
	var vv uint64
	for i := range keys {
		k := &keys[i]
		if v == nil || k.Version != vv {
			x, ok := s.versions.Load(k.Version)
			if !ok {
				return nil, fmt.Errorf("vmap: memstore: %v: %w", *k, ErrNodeNotFound)
			}
			v, vv = x.(*memVersion), k.Version
		}
		n, ok := v.nodes[memKey{k.Depth, k.Path}]
		if !ok {
			return nil, fmt.Errorf("vmap: memstore: %v: %w", *k, ErrNodeNotFound)
		}
		out[i] = n
	}
	return out, nil
}

// Commit stores every node of b atomically: readers see all of them or
// none. Committing an epoch again with the same nodes does nothing;
// with any other nodes it is ErrConflict and changes nothing. b must pass
// b.Check.
func (s *MemStore) Commit(b *Batch) error {
	if err := b.Check(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if x, ok := s.versions.Load(b.Epoch); ok {
		v := x.(*memVersion)
		// b.Check guarantees distinct keys, so equal sizes and every node
		// found equal means the same set of nodes.
		if len(v.nodes) != len(b.Nodes) {
			return fmt.Errorf("%w: epoch %d", ErrConflict, b.Epoch)
		}
		for i := range b.Nodes {
			kn := &b.Nodes[i]
			if n, ok := v.nodes[memKey{kn.Key.Depth, kn.Key.Path}]; !ok || n != kn.Node {
				return fmt.Errorf("%w: epoch %d", ErrConflict, b.Epoch)
			}
		}
		return nil
	}
	v := &memVersion{nodes: make(map[memKey]Node, len(b.Nodes))}
	for i := range b.Nodes {
		kn := &b.Nodes[i]
		v.nodes[memKey{kn.Key.Depth, kn.Key.Path}] = kn.Node
	}
	s.versions.Store(b.Epoch, v)
	return nil
}
