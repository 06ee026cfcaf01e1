package tlog

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
)

// The log side: an append-only RFC 6962 Merkle tree (docs/spec/tlog.md
// §Merkle tree). The Tree keeps the right border of the tree (a compact
// range) in memory and every perfect-subtree node in a NodeStore; roots and
// proofs of any size up to the current one are computed from stored nodes.

// NodeID names a perfect-subtree node: Level 0 holds the leaf hashes, and
// the node (l, i) covers leaves [i·2^l, (i+1)·2^l).
type NodeID struct {
	Level uint8
	Index uint64
}

// Node is a node and its hash.
type Node struct {
	ID   NodeID
	Hash Hash
}

// NodeReader reads node hashes. A Tree only asks for nodes it has written.
type NodeReader interface {
	// ReadNodes returns the hashes of ids, in order, or an error if any is
	// missing.
	ReadNodes(ctx context.Context, ids []NodeID) ([]Hash, error)
}

// NodeStore is the storage seam of a Tree. Nodes are immutable once
// written; tlogtest.TestNodeStore checks an implementation.
type NodeStore interface {
	NodeReader
	// WriteNodes stores the nodes of one Append, all or none. Writing a
	// node again with the same hash succeeds; with another hash it fails.
	WriteNodes(ctx context.Context, nodes []Node) error
}

// Tree is an append-only Merkle tree for a single writer, which commits one
// batch of leaves per epoch with Append. Its methods are safe for
// concurrent use; proofs and roots can be read while a batch is appended.
type Tree struct {
	mu    sync.RWMutex
	store NodeStore
	rng   *compact.Range // [0, size)
}

var rangeFactory = &compact.RangeFactory{Hash: hasher.HashChildren}

// NewTree returns a tree of the given size whose nodes are in store: 0 for
// a new log, or the size of the last committed Append to resume one.
func NewTree(ctx context.Context, store NodeStore, size uint64) (*Tree, error) {
	if size > MaxTreeSize {
		return nil, errors.New("tlog: tree size too large")
	}
	ids := compact.RangeNodes(0, size, nil)
	hs, err := readNodes(ctx, store, ids)
	if err != nil {
		return nil, fmt.Errorf("tlog: resuming tree of size %d: %w", size, err)
	}
	rng, err := rangeFactory.NewRange(0, size, hs)
	if err != nil {
		return nil, fmt.Errorf("tlog: resuming tree of size %d: %w", size, err)
	}
	return &Tree{store: store, rng: rng}, nil
}

func toIDs(ids []compact.NodeID) []NodeID {
	out := make([]NodeID, len(ids))
	for i, id := range ids {
		out[i] = NodeID{uint8(id.Level), id.Index}
	}
	return out
}

func readNodes(ctx context.Context, r NodeReader, ids []compact.NodeID) ([][]byte, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	hs, err := r.ReadNodes(ctx, toIDs(ids))
	if err != nil {
		return nil, err
	}
	if len(hs) != len(ids) {
		return nil, fmt.Errorf("tlog: node store returned %d hashes for %d nodes", len(hs), len(ids))
	}
	return toSlices(hs), nil
}

// Size returns the number of leaves.
func (t *Tree) Size() uint64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.rng.End()
}

// Append appends the leaves, as one batch, and returns the index of the
// first. The new nodes are written with one WriteNodes call; if it fails
// the tree is unchanged.
func (t *Tree) Append(ctx context.Context, leaves ...[]byte) (uint64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	start := t.rng.End()
	if uint64(len(leaves)) > MaxTreeSize-start {
		return 0, errors.New("tlog: tree full")
	}
	if len(leaves) == 0 {
		return start, nil
	}
	hs := t.rng.Hashes()
	next, err := rangeFactory.NewRange(0, start, append(make([][]byte, 0, len(hs)+1), hs...))
	if err != nil {
		return 0, err
	}
	nodes := make([]Node, 0, 2*len(leaves))
	visit := func(id compact.NodeID, h []byte) {
		nodes = append(nodes, Node{NodeID{uint8(id.Level), id.Index}, Hash(h)})
	}
	for _, l := range leaves {
		lh := LeafHash(l)
		if err := next.Append(lh[:], visit); err != nil {
			return 0, err
		}
	}
	if err := t.store.WriteNodes(ctx, nodes); err != nil {
		return 0, fmt.Errorf("tlog: writing nodes: %w", err)
	}
	t.rng = next
	return start, nil
}

// Root returns the root hash of the tree of the given size, at most Size.
func (t *Tree) Root(ctx context.Context, size uint64) (Hash, error) {
	if err := t.checkSize(size); err != nil {
		return Hash{}, err
	}
	if size == 0 {
		return EmptyRoot, nil
	}
	hs, err := readNodes(ctx, t.store, compact.RangeNodes(0, size, nil))
	if err != nil {
		return Hash{}, err
	}
	rng, err := rangeFactory.NewRange(0, size, hs)
	if err != nil {
		return Hash{}, err
	}
	root, err := rng.GetRootHash(nil)
	if err != nil {
		return Hash{}, err
	}
	return Hash(root), nil
}

// InclusionProof returns the RFC 6962 inclusion proof of the leaf at index
// in the tree of the given size, at most Size.
func (t *Tree) InclusionProof(ctx context.Context, index, size uint64) ([]Hash, error) {
	if err := t.checkSize(size); err != nil {
		return nil, err
	}
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, fmt.Errorf("tlog: %w", err)
	}
	return t.rehash(ctx, nodes)
}

// ConsistencyProof returns the RFC 6962 consistency proof between the trees
// of sizes oldSize and newSize; it is empty if oldSize is 0 or equal to
// newSize.
func (t *Tree) ConsistencyProof(ctx context.Context, oldSize, newSize uint64) ([]Hash, error) {
	if err := t.checkSize(newSize); err != nil {
		return nil, err
	}
	nodes, err := proof.Consistency(oldSize, newSize)
	if err != nil {
		return nil, fmt.Errorf("tlog: %w", err)
	}
	return t.rehash(ctx, nodes)
}

func (t *Tree) checkSize(size uint64) error {
	if s := t.Size(); size > s {
		return fmt.Errorf("tlog: size %d beyond tree size %d", size, s)
	}
	return nil
}

func (t *Tree) rehash(ctx context.Context, nodes proof.Nodes) ([]Hash, error) {
	hs, err := readNodes(ctx, t.store, nodes.IDs)
	if err != nil {
		return nil, err
	}
	hs, err = nodes.Rehash(hs, hasher.HashChildren)
	if err != nil {
		return nil, err
	}
	out := make([]Hash, len(hs))
	for i, h := range hs {
		if len(h) != HashSize {
			return nil, errors.New("tlog: bad node hash")
		}
		out[i] = Hash(h)
	}
	return out, nil
}

// MemoryNodeStore is an in-memory NodeStore. Nodes of each level are kept
// in index order, so a tree of n leaves takes about 2n·32 bytes.
type MemoryNodeStore struct {
	mu     sync.RWMutex
	levels [][]Hash
}

// NewMemoryNodeStore returns an empty in-memory node store.
func NewMemoryNodeStore() *MemoryNodeStore { return &MemoryNodeStore{} }

// ReadNodes implements NodeReader.
func (s *MemoryNodeStore) ReadNodes(_ context.Context, ids []NodeID) ([]Hash, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Hash, len(ids))
	for i, id := range ids {
		if int(id.Level) >= len(s.levels) || id.Index >= uint64(len(s.levels[id.Level])) {
			return nil, fmt.Errorf("tlog: node (%d, %d) not found", id.Level, id.Index)
		}
		out[i] = s.levels[id.Level][id.Index]
	}
	return out, nil
}

// WriteNodes implements NodeStore. Each level grows contiguously: a node
// beyond the end of its level is an error, as is rewriting a node with
// another hash. Nothing is written unless every node is acceptable.
func (s *MemoryNodeStore) WriteNodes(_ context.Context, nodes []Node) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Check first, so that the write is all or nothing.
	pending := make(map[NodeID]Hash, len(nodes))
	next := make(map[uint8]uint64)
	for _, n := range nodes {
		if n.ID.Level >= 64 {
			return fmt.Errorf("tlog: node level %d", n.ID.Level)
		}
		have := uint64(0)
		if int(n.ID.Level) < len(s.levels) {
			have = uint64(len(s.levels[n.ID.Level]))
		}
		if n.ID.Index < have {
			if s.levels[n.ID.Level][n.ID.Index] != n.Hash {
				return fmt.Errorf("tlog: node (%d, %d) rewritten with another hash", n.ID.Level, n.ID.Index)
			}
			continue
		}
		if h, ok := pending[n.ID]; ok {
			if h != n.Hash {
				return fmt.Errorf("tlog: node (%d, %d) written twice with different hashes", n.ID.Level, n.ID.Index)
			}
			continue
		}
		end, ok := next[n.ID.Level]
		if !ok {
			end = have
		}
		if n.ID.Index != end {
			return fmt.Errorf("tlog: node (%d, %d) leaves a gap", n.ID.Level, n.ID.Index)
		}
		next[n.ID.Level] = end + 1
		pending[n.ID] = n.Hash
	}
	for _, n := range nodes {
		for int(n.ID.Level) >= len(s.levels) {
			s.levels = append(s.levels, nil)
		}
		lvl := s.levels[n.ID.Level]
		if n.ID.Index == uint64(len(lvl)) {
			s.levels[n.ID.Level] = append(lvl, n.Hash)
		}
	}
	return nil
}
