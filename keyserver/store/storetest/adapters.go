package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/store"
	"github.com/moat-im/moat/keyserver/vmap"
	"github.com/moat-im/moat/keyserver/vmap/vmaptest"
)

// VMapStore adapts a DirectoryStore to vmaptest.Store, so that a backend
// runs vmaptest.StoreConformance: each Commit is an epoch commit carrying
// only the map batch, with the log unchanged. A batch for an epoch already
// committed through the adapter is compared with the one committed (the
// vmap contract: the same nodes succeed, others are vmap.ErrConflict).
func VMapStore(s store.DirectoryStore) vmaptest.Store {
	return &vmapAdapter{DirectoryStore: s, batches: map[uint64][]vmap.KeyedNode{}}
}

type vmapAdapter struct {
	store.DirectoryStore
	mu      sync.Mutex
	batches map[uint64][]vmap.KeyedNode
}

func (a *vmapAdapter) Commit(b *vmap.Batch) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	ctx := context.Background()
	if err := b.Check(); err != nil {
		// Let the store reject it, as it must.
		err := a.CommitEpoch(ctx, &store.EpochCommit{Epoch: b.Epoch, Map: b, Head: store.Head{Epoch: b.Epoch}})
		if err == nil {
			return fmt.Errorf("storetest: store accepted an invalid batch (%v)", b.Check())
		}
		return err
	}
	if old, ok := a.batches[b.Epoch]; ok {
		if slices.Equal(old, b.Nodes) {
			return nil
		}
		return fmt.Errorf("%w: epoch %d", vmap.ErrConflict, b.Epoch)
	}
	h, err := a.Head(ctx)
	if err != nil && !errors.Is(err, store.ErrEmpty) {
		return err
	}
	c := &store.EpochCommit{Epoch: b.Epoch, Map: b, Head: store.Head{Epoch: b.Epoch, LogSize: h.LogSize, Checkpoint: h.Checkpoint}}
	if err := a.CommitEpoch(ctx, c); err != nil {
		return err
	}
	a.batches[b.Epoch] = slices.Clone(b.Nodes)
	return nil
}

// TLogStore adapts a DirectoryStore to tlog.NodeStore through a
// TreeStore, so that a backend runs tlogtest.TestNodeStore: each
// WriteNodes is one epoch commit whose map is unchanged and whose log
// grows to cover the nodes written.
func TLogStore(s store.DirectoryStore) tlog.NodeStore {
	return &tlogAdapter{s: s, ts: store.NewTreeStore(s)}
}

type tlogAdapter struct {
	s  store.DirectoryStore
	ts *store.TreeStore
	mu sync.Mutex
}

func (a *tlogAdapter) ReadNodes(ctx context.Context, ids []tlog.NodeID) ([]tlog.Hash, error) {
	return a.ts.ReadNodes(ctx, ids)
}

func (a *tlogAdapter) WriteNodes(ctx context.Context, nodes []tlog.Node) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var epoch, size uint64
	h, err := a.s.Head(ctx)
	switch {
	case errors.Is(err, store.ErrEmpty):
	case err != nil:
		return err
	default:
		epoch, size = h.Epoch+1, h.LogSize
	}
	for _, n := range nodes {
		if n.ID.Level < 64 && n.ID.Index < (tlog.MaxTreeSize>>n.ID.Level) {
			size = max(size, (n.ID.Index+1)<<n.ID.Level)
		}
	}
	b, err := vmap.New(a.s, nil).Update(epoch, nil)
	if err != nil {
		return err
	}
	c := &store.EpochCommit{Epoch: epoch, Map: b, Head: store.Head{Epoch: epoch, LogSize: size}}
	a.ts.Begin(c)
	if err := a.ts.WriteNodes(ctx, nodes); err != nil {
		a.ts.Abort()
		return err
	}
	return a.ts.Commit(ctx)
}
