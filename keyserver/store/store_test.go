package store_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/store"
	"github.com/moat-im/moat/keyserver/store/memstore"
	"github.com/moat-im/moat/keyserver/vmap"
)

func TestLogNodeInside(t *testing.T) {
	for _, tc := range []struct {
		id   tlog.NodeID
		size uint64
		want bool
	}{
		{tlog.NodeID{Level: 0, Index: 0}, 0, false},
		{tlog.NodeID{Level: 0, Index: 0}, 1, true},
		{tlog.NodeID{Level: 0, Index: 1}, 1, false},
		{tlog.NodeID{Level: 1, Index: 0}, 1, false},
		{tlog.NodeID{Level: 1, Index: 0}, 2, true},
		{tlog.NodeID{Level: 2, Index: 1}, 7, false},
		{tlog.NodeID{Level: 2, Index: 1}, 8, true},
		{tlog.NodeID{Level: 62, Index: 1}, math.MaxInt64, false},
		{tlog.NodeID{Level: 62, Index: 0}, math.MaxInt64, true},
		{tlog.NodeID{Level: 63, Index: 0}, math.MaxInt64, false},
		{tlog.NodeID{Level: 64, Index: 0}, math.MaxUint64, false},
		{tlog.NodeID{Level: 0, Index: math.MaxUint64}, math.MaxUint64, false},
	} {
		if got := store.LogNodeInside(tc.id, tc.size); got != tc.want {
			t.Errorf("LogNodeInside(%v, %d) = %v", tc.id, tc.size, got)
		}
	}
}

// TestCheckLogCompleteness: a commit must carry exactly the log nodes its
// growth creates, as tlog.Tree.Append writes them.
func TestCheckLogCompleteness(t *testing.T) {
	ctx := context.Background()
	for _, grow := range []struct{ from, to uint64 }{{0, 1}, {1, 2}, {2, 7}, {7, 8}, {8, 100}} {
		r := &recorder{NodeStore: tlog.NewMemoryNodeStore()}
		tr, _ := tlog.NewTree(ctx, r, 0)
		var leaves [][]byte
		for i := uint64(0); i < grow.from; i++ {
			leaves = append(leaves, []byte{byte(i)})
		}
		if _, err := tr.Append(ctx, leaves...); err != nil {
			t.Fatal(err)
		}
		r.nodes = nil
		leaves = nil
		for i := grow.from; i < grow.to; i++ {
			leaves = append(leaves, []byte{byte(i)})
		}
		if _, err := tr.Append(ctx, leaves...); err != nil {
			t.Fatal(err)
		}
		prev := &store.Head{Epoch: 0, LogSize: grow.from}
		c := &store.EpochCommit{Epoch: 1, Map: emptyBatch(1), LogNodes: r.nodes, Head: store.Head{Epoch: 1, LogSize: grow.to}}
		if _, err := c.Check(prev); err != nil {
			t.Errorf("growth %d→%d with the tree's nodes: %v", grow.from, grow.to, err)
		}
		c.LogNodes = r.nodes[1:]
		if _, err := c.Check(prev); !errors.Is(err, store.ErrInvalidCommit) {
			t.Errorf("growth %d→%d with a node missing: %v", grow.from, grow.to, err)
		}
	}
}

type recorder struct {
	tlog.NodeStore
	nodes []tlog.Node
}

func (r *recorder) WriteNodes(ctx context.Context, nodes []tlog.Node) error {
	r.nodes = append(r.nodes, nodes...)
	return r.NodeStore.WriteNodes(ctx, nodes)
}

func emptyBatch(epoch uint64) *vmap.Batch {
	var empty vmap.Node
	return &vmap.Batch{Epoch: epoch, Root: empty.Hash(0), Nodes: []vmap.KeyedNode{{Key: vmap.RootKey(epoch), Node: empty}}}
}

// Publishing epochs: the map update, the log append through a TreeStore,
// the value records and the head, committed at once.
func Example() {
	ctx := context.Background()
	s := memstore.New()
	defer s.Close()
	m := vmap.New(s, nil)
	ts := store.NewTreeStore(s)
	tree, _ := tlog.NewTree(ctx, ts, 0)

	label := vmap.Label{1}
	for epoch := uint64(0); epoch < 3; epoch++ {
		record := fmt.Appendf(nil, "record written in epoch %d", epoch)
		batch, err := m.Update(epoch, []vmap.Change{{Label: label, Commitment: vmap.Commitment{byte(epoch)}}})
		if err != nil {
			panic(err)
		}
		c := &store.EpochCommit{
			Epoch:  epoch,
			Map:    batch,
			Values: []store.ValueWrite{{Label: label, Version: uint32(epoch) + 1, Record: record}},
		}
		ts.Begin(c)
		if _, err := tree.Append(ctx, batch.Root[:]); err != nil {
			panic(err)
		}
		c.Head = store.Head{Epoch: epoch, LogSize: tree.Size(), Checkpoint: []byte("signed checkpoint")}
		if err := ts.Commit(ctx); err != nil {
			panic(err) // and rebuild the tree from the store's head
		}
	}
	h, _ := s.Head(ctx)
	v, _ := s.LatestVersion(ctx, label)
	rs, _ := s.Values(ctx, label, v, v)
	fmt.Println(h.Epoch, h.LogSize, v, string(rs[0]))
	// Output: 2 3 3 record written in epoch 2
}
