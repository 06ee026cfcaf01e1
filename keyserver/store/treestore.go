package store

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/moat-im/moat/crypto/tlog"
)

// ErrNoEpoch is returned by TreeStore.WriteNodes outside Begin … Commit,
// and by Commit without Begin.
var ErrNoEpoch = errors.New("store: log nodes written outside an epoch commit")

// A TreeStore is the tlog.NodeStore of the directory's log tree. It makes
// the log append of an epoch part of that epoch's atomic commit:
// WriteNodes buffers the nodes into the pending EpochCommit (its
// LogNodes), and ReadNodes reads the pending nodes first, then the store.
//
// One epoch, as the directory publishes it:
//
//	c := &store.EpochCommit{Epoch: e, Map: batch, Values: vs, Tenants: ts}
//	ts.Begin(c)
//	if _, err := tree.Append(ctx, entry); err != nil { ts.Abort(); … }
//	root, _ := tree.Root(ctx, tree.Size()) // reads through the pending nodes
//	c.Head = store.Head{Epoch: e, LogSize: tree.Size(), Checkpoint: signed}
//	if err := ts.Commit(ctx); err != nil {
//		// Nothing was stored, but the Tree has already advanced: rebuild it.
//		head, _ := s.Head(ctx)
//		tree, _ = tlog.NewTree(ctx, ts, head.LogSize)
//	}
//
// While an epoch is pending the Tree's Size is ahead of the store's head;
// serve proofs for Head.LogSize (the published checkpoint), not Tree.Size.
// A TreeStore is safe for concurrent use: reads may run during an append.
type TreeStore struct {
	s DirectoryStore

	mu         sync.RWMutex
	pending    *EpochCommit // nil outside Begin … Commit/Abort
	committing bool         // Commit is running: no more writes
	nodes      map[tlog.NodeID]tlog.Hash
}

// NewTreeStore returns a TreeStore over s.
func NewTreeStore(s DirectoryStore) *TreeStore { return &TreeStore{s: s} }

// Begin starts buffering log nodes into c.LogNodes. A previous pending
// commit is dropped.
func (t *TreeStore) Begin(c *EpochCommit) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pending, t.committing = c, false
	t.nodes = make(map[tlog.NodeID]tlog.Hash, len(c.LogNodes))
	for _, n := range c.LogNodes {
		t.nodes[n.ID] = n.Hash
	}
}

// Commit commits the pending EpochCommit with CommitEpoch and ends it,
// whatever the outcome.
func (t *TreeStore) Commit(ctx context.Context) error {
	t.mu.Lock()
	c := t.pending
	if c == nil || t.committing {
		t.mu.Unlock()
		return ErrNoEpoch
	}
	t.committing = true
	t.mu.Unlock()
	// Readers keep seeing the pending nodes until the head has moved.
	err := t.s.CommitEpoch(ctx, c)
	t.Abort()
	return err
}

// Abort drops the pending commit. The Tree that wrote into it must be
// rebuilt from the store's head.
func (t *TreeStore) Abort() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pending, t.nodes, t.committing = nil, nil, false
}

// WriteNodes implements tlog.NodeStore: it appends nodes to the pending
// commit's LogNodes, all or none. Rewriting a node (pending or stored)
// with the same hash is a no-op; with another hash it fails.
func (t *TreeStore) WriteNodes(ctx context.Context, nodes []tlog.Node) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pending == nil || t.committing {
		return ErrNoEpoch
	}
	var add []tlog.Node
	var check []tlog.Node
	batch := make(map[tlog.NodeID]tlog.Hash, len(nodes))
	for _, n := range nodes {
		if n.ID.Level >= 64 {
			return fmt.Errorf("store: log node level %d", n.ID.Level)
		}
		if h, ok := t.nodes[n.ID]; ok {
			if h != n.Hash {
				return fmt.Errorf("%w: log node (%d, %d) rewritten with another hash", ErrConflict, n.ID.Level, n.ID.Index)
			}
			continue
		}
		if h, ok := batch[n.ID]; ok {
			if h != n.Hash {
				return fmt.Errorf("%w: log node (%d, %d) written twice with different hashes", ErrConflict, n.ID.Level, n.ID.Index)
			}
			continue
		}
		batch[n.ID] = n.Hash
		check = append(check, n)
	}
	// Nodes already in the store must keep their hash.
	if len(check) > 0 {
		head, err := t.s.Head(ctx)
		switch {
		case errors.Is(err, ErrEmpty):
			add = check
		case err != nil:
			return err
		default:
			var ids []tlog.NodeID
			var idx []int
			stored := make([]bool, len(check))
			for i, n := range check {
				if LogNodeInside(n.ID, head.LogSize) {
					ids = append(ids, n.ID)
					idx = append(idx, i)
					stored[i] = true
				}
			}
			if len(ids) > 0 {
				hs, err := t.s.ReadNodes(ctx, ids)
				if err != nil {
					return err
				}
				for j, i := range idx {
					if hs[j] != check[i].Hash {
						return fmt.Errorf("%w: log node (%d, %d) rewritten with another hash", ErrConflict, check[i].ID.Level, check[i].ID.Index)
					}
				}
			}
			for i, n := range check {
				if !stored[i] {
					add = append(add, n)
				}
			}
		}
	}
	for _, n := range add {
		t.nodes[n.ID] = n.Hash
		t.pending.LogNodes = append(t.pending.LogNodes, n)
	}
	return nil
}

// ReadNodes implements tlog.NodeReader, reading the pending nodes first.
func (t *TreeStore) ReadNodes(ctx context.Context, ids []tlog.NodeID) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(ids))
	var rest []tlog.NodeID
	var idx []int
	t.mu.RLock()
	for i, id := range ids {
		if h, ok := t.nodes[id]; ok {
			out[i] = h
			continue
		}
		rest = append(rest, id)
		idx = append(idx, i)
	}
	t.mu.RUnlock()
	if len(rest) == 0 {
		return out, nil
	}
	hs, err := t.s.ReadNodes(ctx, rest)
	if err != nil {
		return nil, err
	}
	if len(hs) != len(rest) {
		return nil, fmt.Errorf("%w: store returned %d log nodes for %d", ErrCorrupt, len(hs), len(rest))
	}
	for j, i := range idx {
		out[i] = hs[j]
	}
	return out, nil
}

var _ tlog.NodeStore = (*TreeStore)(nil)
