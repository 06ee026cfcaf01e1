package vmap

import (
	"errors"
	"fmt"
	"runtime"
)

// NodeStore is where a Map reads its nodes. Update never writes: it returns
// a Batch, which the caller commits (MemStore.Commit in memory, or in the
// same transaction as the epoch's log entry in a database). Every
// implementation runs vmaptest.StoreConformance.
type NodeStore interface {
	// GetNodes returns the nodes stored under keys, in the same order. If
	// any key is not stored it returns an error wrapping ErrNodeNotFound.
	// It must be safe for concurrent use, including with commits, and must
	// neither modify nor retain keys.
	GetNodes(keys []NodeKey) ([]Node, error)
}

// Options tunes a Map. The zero value gives the defaults.
type Options struct {
	// Parallelism is the number of goroutines Update uses for hashing and
	// for large reads. Zero means runtime.GOMAXPROCS(0).
	Parallelism int
}

// A Map is a handle on the versioned map held by a NodeStore. It keeps no
// state of its own and is safe for concurrent use.
type Map struct {
	store       NodeStore
	parallelism int
}

// New returns a Map reading from store. opts may be nil.
func New(store NodeStore, opts *Options) *Map {
	m := &Map{store: store, parallelism: runtime.GOMAXPROCS(0)}
	if opts != nil && opts.Parallelism > 0 {
		m.parallelism = opts.Parallelism
	}
	return m
}

// A Change sets the commitment of a label in an epoch.
type Change struct {
	Label      Label
	Commitment Commitment
}

// rootNode reads the root node of epoch.
func (m *Map) rootNode(epoch uint64) (Node, error) {
	ns, err := m.store.GetNodes([]NodeKey{RootKey(epoch)})
	if errors.Is(err, ErrNodeNotFound) {
		return Node{}, fmt.Errorf("%w: %d", ErrUnknownEpoch, epoch)
	}
	if err != nil {
		return Node{}, fmt.Errorf("vmap: reading root of epoch %d: %w", epoch, err)
	}
	if len(ns) != 1 {
		return Node{}, fmt.Errorf("%w: store returned %d nodes for 1 key", ErrCorrupt, len(ns))
	}
	return ns[0], nil
}

// Root returns the map root of a committed epoch.
func (m *Map) Root(epoch uint64) (Hash, error) {
	n, err := m.rootNode(epoch)
	if err != nil {
		return Hash{}, err
	}
	return n.Hash(0), nil
}

// Lookup returns the commitment of label at a committed epoch, and whether
// the label is present.
func (m *Map) Lookup(epoch uint64, label Label) (Commitment, bool, error) {
	p, err := m.walk(epoch, label, false)
	if err != nil || p.Kind != ProofInclusion {
		return Commitment{}, false, err
	}
	return p.Commitment, true, nil
}

// Prove returns a lookup proof for label at a committed epoch: an inclusion
// proof if the label is present, an absence proof if not. Past epochs are
// as cheap to prove as the latest.
func (m *Map) Prove(epoch uint64, label Label) (*Proof, error) {
	return m.walk(epoch, label, true)
}

// walk follows label's path down from the root of epoch, one read per node,
// collecting sibling hashes when withSiblings is set.
func (m *Map) walk(epoch uint64, label Label, withSiblings bool) (*Proof, error) {
	n, err := m.rootNode(epoch)
	if err != nil {
		return nil, err
	}
	p := &Proof{}
	if withSiblings {
		p.Siblings = make([]Hash, 0, 32)
	}
	key := make([]NodeKey, 1)
	for d := 0; ; d++ {
		switch n.kind {
		case KindEmpty:
			if d != 0 {
				return nil, fmt.Errorf("%w: empty node below the root", ErrCorrupt)
			}
			p.Kind = ProofAbsenceEmpty
			return p, nil
		case KindLeaf:
			if n.Label() == label {
				p.Kind, p.Commitment = ProofInclusion, n.Commitment()
			} else {
				p.Kind, p.Label, p.Commitment = ProofAbsenceLeaf, n.Label(), n.Commitment()
			}
			return p, nil
		case KindInterior:
		default:
			return nil, fmt.Errorf("%w: node kind %v", ErrCorrupt, n.kind)
		}
		if d >= MaxDepth {
			return nil, fmt.Errorf("%w: interior node at depth %d", ErrCorrupt, d)
		}
		b := label.bit(d)
		next, sib := n.child(b), n.child(1-b)
		if withSiblings {
			p.Siblings = append(p.Siblings, *sib.hash(d + 1))
		}
		if next.Kind == KindEmpty {
			p.Kind = ProofAbsenceEmpty
			return p, nil
		}
		key[0] = NodeKey{Version: next.Version, Depth: uint16(d + 1), Path: label.prefix(d + 1)}
		ns, err := m.store.GetNodes(key)
		if err != nil {
			return nil, fmt.Errorf("vmap: reading node %v: %w", key[0], err)
		}
		if len(ns) != 1 || ns[0].kind != next.Kind {
			return nil, fmt.Errorf("%w: node %v is not the %v its parent names", ErrCorrupt, key[0], next.Kind)
		}
		n = ns[0]
	}
}
