// Package storetest holds the conformance suite of store.DirectoryStore
// (STYLE 8): every backend runs Run, and backends that persist also run
// RunDurable.
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.DirectoryStore { return newMyStore(t) })
//	}
//
// Run also runs vmaptest.StoreConformance and tlogtest.TestNodeStore
// against the backend, through VMapStore and TLogStore.
//
// Mid-commit faults are injected through the context: a store must check
// ctx.Err() before each step of a commit it can still undo (badgerstore:
// before each badger transaction), and the suite hands it a context whose
// Err starts failing after n calls, for n = 0, 1, 2, …
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/crypto/tlog/tlogtest"
	"github.com/moat-im/moat/keyserver/store"
	"github.com/moat-im/moat/keyserver/vmap"
	"github.com/moat-im/moat/keyserver/vmap/vmaptest"
)

// Run runs the conformance suite. newStore returns a new, empty store each
// time it is called, and arranges for it to be closed when t ends (Close
// must be idempotent).
func Run(t *testing.T, newStore func(t *testing.T) store.DirectoryStore) {
	t.Run("Empty", func(t *testing.T) { testEmpty(t, newStore(t)) })
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, newStore(t)) })
	t.Run("PastEpochs", func(t *testing.T) { testPastEpochs(t, newStore(t)) })
	t.Run("NoAliasing", func(t *testing.T) { testNoAliasing(t, newStore(t)) })
	t.Run("EpochOrder", func(t *testing.T) { testEpochOrder(t, newStore(t)) })
	t.Run("ValueVersions", func(t *testing.T) { testValueVersions(t, newStore(t)) })
	t.Run("InvalidCommits", func(t *testing.T) { testInvalidCommits(t, newStore(t)) })
	t.Run("LateConflict", func(t *testing.T) { testLateConflict(t, newStore(t)) })
	t.Run("MidCommitFault", func(t *testing.T) { testMidCommitFault(t, newStore) })
	t.Run("LargeBlobs", func(t *testing.T) { testLargeBlobs(t, newStore(t)) })
	t.Run("TenantRecords", func(t *testing.T) { testTenantRecords(t, newStore(t)) })
	t.Run("PendingRecords", func(t *testing.T) { testPendingRecords(t, newStore(t)) })
	t.Run("ConcurrentReaders", func(t *testing.T) { testConcurrentReaders(t, newStore(t)) })
	t.Run("TreeStore", func(t *testing.T) { testTreeStore(t, newStore(t)) })
	t.Run("Closed", func(t *testing.T) { testClosed(t, newStore(t)) })
	t.Run("HeadCheckpoint", func(t *testing.T) { testHeadCheckpoint(t, newStore(t)) })
	t.Run("Transitions", func(t *testing.T) { testTransitions(t, newStore(t)) })
	t.Run("Lodged", func(t *testing.T) { testLodged(t, newStore(t)) })
	t.Run("VRFOutputs", func(t *testing.T) { testVRFOutputs(t, newStore(t)) })
	t.Run("vmaptest", func(t *testing.T) {
		vmaptest.StoreConformance(t, func(t *testing.T) vmaptest.Store { return VMapStore(newStore(t)) })
	})
	t.Run("tlogtest", func(t *testing.T) {
		tlogtest.TestNodeStore(t, func(t *testing.T) tlog.NodeStore { return TLogStore(newStore(t)) })
	})
}

// RunDurable runs the durability tests of a persistent backend. open opens
// the store kept in dir, creating it if dir is empty; the suite closes
// every store it opens.
func RunDurable(t *testing.T, open func(t *testing.T, dir string) store.DirectoryStore) {
	t.Run("ReopenSide", func(t *testing.T) { testReopenSide(t, open) })
	t.Run("Reopen", func(t *testing.T) {
		dir := t.TempDir()
		s := open(t, dir)
		m := NewModel(t, s, 100)
		for e := 0; e < 4; e++ {
			m.MustCommit(t, Spec{NewLabels: 50, Updates: 20, Tenants: 2})
		}
		m.MustCommit(t, Spec{NewLabels: 3000, Updates: 100, RecordSize: 1024, Tenants: 3, TenantSize: 600 << 10}) // staged in badger
		m.Check(t, true)
		closeStore(t, s)
		for round := 0; round < 2; round++ {
			s = open(t, dir)
			m.S = s
			m.Reset(t)
			m.Check(t, true)
			m.MustCommit(t, Spec{NewLabels: 10, Updates: 10, Tenants: 1})
			m.Check(t, false)
			closeStore(t, s)
		}
	})
	t.Run("ReopenHeadCheckpoint", func(t *testing.T) {
		dir := t.TempDir()
		s := open(t, dir)
		m := NewModel(t, s, 102)
		m.MustCommit(t, Spec{NewLabels: 10, Tenants: 1})
		m.MustUpdateHeadCheckpoint(t, 3000) // several fragments
		m.MustUpdateHeadCheckpoint(t, 200)
		closeStore(t, s)
		s = open(t, dir)
		m.S = s
		m.Reset(t)
		m.Check(t, true)
		m.MustCommit(t, Spec{NewLabels: 5, Tenants: 1})
		closeStore(t, s)
		// The commit's own checkpoint, not the update of the previous
		// head, is the head's after a restart.
		s = open(t, dir)
		m.S = s
		m.Reset(t)
		m.Check(t, true)
		m.MustUpdateHeadCheckpoint(t, 5000)
		closeStore(t, s)
		s = open(t, dir)
		m.S = s
		m.Reset(t)
		m.Check(t, true)
		closeStore(t, s)
	})
	t.Run("ReopenTransitions", func(t *testing.T) {
		dir := t.TempDir()
		s := open(t, dir)
		m := NewModel(t, s, 103)
		m.MustCommit(t, Spec{NewLabels: 10, Tenants: 1})
		m.MustCommit(t, Spec{Updates: 2, Transition: true})
		m.MustUpdateHeadCheckpoint(t, 3000)
		m.MustUpdateHeadCheckpoint(t, 200)
		m.MustCommit(t, Spec{Updates: 2, Transition: true})
		m.MustCommit(t, Spec{Updates: 2})
		m.MustUpdateHeadCheckpoint(t, 50)
		m.MustUpdateHeadCheckpoint(t, 60)
		closeStore(t, s)
		s = open(t, dir)
		m.S = s
		m.Reset(t)
		m.Check(t, true)
		m.MustCommit(t, Spec{Updates: 2, Transition: true})
		m.MustUpdateHeadCheckpoint(t, 70)
		closeStore(t, s)
		s = open(t, dir)
		m.S = s
		m.Reset(t)
		m.Check(t, true)
		m.MustCommit(t, Spec{Updates: 1})
		m.Check(t, false)
		closeStore(t, s)
	})
	t.Run("ReopenPending", func(t *testing.T) { testReopenPending(t, open) })
	t.Run("ReopenAfterFault", func(t *testing.T) {
		dir := t.TempDir()
		s := open(t, dir)
		m := NewModel(t, s, 101)
		m.MustCommit(t, Spec{NewLabels: 100, Tenants: 1})
		for n := int64(1); n < 4; n++ {
			c := m.Build(t, Spec{NewLabels: 2000, Updates: 50, RecordSize: 1500, Tenants: 2})
			if err := m.Commit(t, countdown(n), c); err == nil {
				break
			}
			m.Check(t, false)
		}
		closeStore(t, s)
		s = open(t, dir)
		m.S = s
		m.Reset(t)
		m.Check(t, true)
		m.MustCommit(t, Spec{NewLabels: 10, Updates: 30, Tenants: 2})
		m.Check(t, false)
		closeStore(t, s)
	})
}

func closeStore(t *testing.T, s store.DirectoryStore) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// countdownCtx is a context whose Err fails after n calls.
type countdownCtx struct {
	context.Context
	left atomic.Int64
}

func countdown(n int64) *countdownCtx {
	c := &countdownCtx{Context: context.Background()}
	c.left.Store(n)
	return c
}

func (c *countdownCtx) Err() error {
	if c.left.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

func testEmpty(t *testing.T, s store.DirectoryStore) {
	ctx := context.Background()
	if _, err := s.Head(ctx); !errors.Is(err, store.ErrEmpty) {
		t.Errorf("Head = %v, want ErrEmpty", err)
	}
	if _, err := s.GetNodes([]vmap.NodeKey{vmap.RootKey(0)}); !errors.Is(err, vmap.ErrNodeNotFound) {
		t.Errorf("GetNodes(root 0) = %v, want ErrNodeNotFound", err)
	}
	if ns, err := s.GetNodes(nil); err != nil || len(ns) != 0 {
		t.Errorf("GetNodes(nil) = %v, %v", ns, err)
	}
	if _, err := s.ReadNodes(ctx, []tlog.NodeID{{}}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ReadNodes = %v, want ErrNotFound", err)
	}
	if hs, err := s.ReadNodes(ctx, nil); err != nil || len(hs) != 0 {
		t.Errorf("ReadNodes(nil) = %v, %v", hs, err)
	}
	var l vmap.Label
	if v, err := s.LatestVersion(ctx, l); err != nil || v != 0 {
		t.Errorf("LatestVersion = %d, %v; want 0, nil", v, err)
	}
	if _, err := s.Values(ctx, l, 1, 1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Values = %v, want ErrNotFound", err)
	}
	if v, rec, err := s.LatestValue(ctx, l); err != nil || v != 0 || rec != nil {
		t.Errorf("LatestValue = %d, %x, %v; want 0, nil, nil", v, rec, err)
	}
	if v, sum, err := s.LatestSummary(ctx, l); err != nil || v != 0 || sum != nil {
		t.Errorf("LatestSummary = %d, %x, %v; want 0, nil, nil", v, sum, err)
	}
	if err := s.TenantRecords(ctx, [16]byte{1}, func(store.TenantKey, []byte) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TenantRecords = %v, want ErrNotFound", err)
	}
	if trs, err := s.Transitions(ctx); err != nil || len(trs) != 0 {
		t.Errorf("Transitions = %d, %v; want none", len(trs), err)
	}
	NewModel(t, s, 0).Check(t, true)
}

func testRoundTrip(t *testing.T, s store.DirectoryStore) {
	m := NewModel(t, s, 1)
	m.MustCommit(t, Spec{NewLabels: 100, Tenants: 2})
	m.Check(t, true)
	m.MustCommit(t, Spec{NewLabels: 20, Updates: 50, Versions: 3, Tenants: 3})
	m.Check(t, true)
	m.MustCommit(t, Spec{}) // an epoch that changes nothing but the log
	m.Check(t, true)
	m.MustCommit(t, Spec{SkipLogLeaf: true, Updates: 5}) // nor the log
	m.Check(t, true)
	ctx := context.Background()
	l := m.Labels()[0]
	v, _ := s.LatestVersion(ctx, l)
	if v > 1 {
		got, err := s.Values(ctx, l, 2, v)
		if err != nil || len(got) != int(v-1) {
			t.Errorf("Values(2, %d) = %d records, %v", v, len(got), err)
		}
	}
	for _, r := range [][2]uint32{{0, 1}, {2, 1}, {1, v + 1}} {
		if _, err := s.Values(ctx, l, r[0], r[1]); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Values(%d, %d) = %v, want ErrNotFound", r[0], r[1], err)
		}
	}
}

func testPastEpochs(t *testing.T, s store.DirectoryStore) {
	m := NewModel(t, s, 2)
	for e := 0; e < 8; e++ {
		m.MustCommit(t, Spec{NewLabels: 60, Updates: 40, Tenants: e % 3})
	}
	m.Check(t, true)
}

func testNoAliasing(t *testing.T, s store.DirectoryStore) {
	ctx := context.Background()
	m := NewModel(t, s, 3)
	c := m.Build(t, Spec{NewLabels: 10, Tenants: 1})
	if err := m.Commit(t, ctx, c); err != nil {
		t.Fatal(err)
	}
	// Scribble over everything the commit held.
	for i := range c.Values {
		clear(c.Values[i].Record)
	}
	for i := range c.Tenants {
		for j := range c.Tenants[i].Records {
			clear(c.Tenants[i].Records[j].Value)
		}
	}
	clear(c.Head.Checkpoint)
	for i := range c.Map.Nodes {
		c.Map.Nodes[i].Node = vmap.NewLeaf(vmap.Label{1}, vmap.Commitment{2})
	}
	m.Check(t, true)
	// And over everything a read returned.
	h, _ := s.Head(ctx)
	clear(h.Checkpoint)
	l := m.Labels()[0]
	vs, _ := s.Values(ctx, l, 1, 1)
	clear(vs[0])
	m.Check(t, true)
	keys := []vmap.NodeKey{vmap.RootKey(0)}
	saved := slices.Clone(keys)
	if _, err := s.GetNodes(keys); err != nil || keys[0] != saved[0] {
		t.Fatalf("GetNodes: %v, or modified its keys", err)
	}
}

func testEpochOrder(t *testing.T, s store.DirectoryStore) {
	ctx := context.Background()
	m := NewModel(t, s, 4)
	// Epoch 1 on an empty store.
	c := m.Build(t, Spec{NewLabels: 3})
	c1 := *c
	c1.Epoch, c1.Head.Epoch, c1.Map = 1, 1, &vmap.Batch{Epoch: 1, Root: c.Map.Root, Nodes: relabel(c.Map.Nodes, 1)}
	if err := s.CommitEpoch(ctx, &c1); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("epoch 1 on an empty store = %v, want ErrConflict", err)
	}
	m.Abort(t)
	m.Check(t, false)
	m.MustCommit(t, Spec{NewLabels: 3})
	first := m.Build(t, Spec{NewLabels: 3})
	m.Abort(t)
	m.MustCommit(t, Spec{NewLabels: 3})
	// Epoch 1 again (it was built against epoch 0, so it is well formed).
	if err := s.CommitEpoch(ctx, first); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("committing epoch 1 twice = %v, want ErrConflict", err)
	}
	// Epoch 0 again.
	c = m.Build(t, Spec{NewLabels: 1})
	m.Abort(t)
	c0 := *c
	c0.Epoch, c0.Head.Epoch = 0, 0
	if err := s.CommitEpoch(ctx, &c0); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("committing epoch 0 again = %v, want ErrConflict", err)
	}
	// Epoch 3 after 1.
	c3 := *c
	c3.Epoch, c3.Head.Epoch, c3.Map = 3, 3, &vmap.Batch{Epoch: 3, Root: c.Map.Root, Nodes: relabel(c.Map.Nodes, 3)}
	if err := s.CommitEpoch(ctx, &c3); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("skipping an epoch = %v, want ErrConflict", err)
	}
	m.Check(t, true)
	m.MustCommit(t, Spec{NewLabels: 3, Updates: 3})
	m.Check(t, true)
}

// relabel returns nodes with their keys moved to version epoch (a batch
// that passes the epoch check's neighbours but is refused for its epoch).
func relabel(nodes []vmap.KeyedNode, epoch uint64) []vmap.KeyedNode {
	out := slices.Clone(nodes)
	for i := range out {
		out[i].Key.Version = epoch
	}
	return out
}

func testValueVersions(t *testing.T, s store.DirectoryStore) {
	ctx := context.Background()
	m := NewModel(t, s, 5)
	m.MustCommit(t, Spec{NewLabels: 5})
	l := m.Labels()[0]
	try := func(name string, mutate func(c *store.EpochCommit), want error) {
		t.Helper()
		c := m.Build(t, Spec{NewLabels: 1})
		mutate(c)
		if err := m.Commit(t, ctx, c); !errors.Is(err, want) {
			t.Errorf("%s: CommitEpoch = %v, want %v", name, err, want)
		}
		m.Check(t, false)
	}
	rec := []byte("record")
	try("first version 2", func(c *store.EpochCommit) {
		c.Values = append(c.Values, store.ValueWrite{Label: vmap.Label{9}, Version: 2, Record: rec})
	}, store.ErrConflict)
	try("version 1 again", func(c *store.EpochCommit) {
		c.Values = append(c.Values, store.ValueWrite{Label: l, Version: 1, Record: rec})
	}, store.ErrConflict)
	try("skipping a version", func(c *store.EpochCommit) {
		c.Values = append(c.Values, store.ValueWrite{Label: l, Version: 3, Record: rec})
	}, store.ErrConflict)
	try("version 0", func(c *store.EpochCommit) {
		c.Values = append(c.Values, store.ValueWrite{Label: vmap.Label{9}, Version: 0, Record: rec})
	}, store.ErrInvalidCommit)
	try("duplicate version", func(c *store.EpochCommit) {
		c.Values = append(c.Values, store.ValueWrite{Label: vmap.Label{9}, Version: 1, Record: rec}, store.ValueWrite{Label: vmap.Label{9}, Version: 1, Record: rec})
	}, store.ErrInvalidCommit)
	try("gap inside the commit", func(c *store.EpochCommit) {
		c.Values = append(c.Values, store.ValueWrite{Label: vmap.Label{9}, Version: 1, Record: rec}, store.ValueWrite{Label: vmap.Label{9}, Version: 3, Record: rec})
	}, store.ErrInvalidCommit)
	try("empty record", func(c *store.EpochCommit) {
		c.Values = append(c.Values, store.ValueWrite{Label: vmap.Label{9}, Version: 1})
	}, store.ErrInvalidCommit)
	// Several versions in one commit, in any order.
	c := m.Build(t, Spec{})
	c.Values = append(c.Values,
		store.ValueWrite{Label: l, Version: 4, Record: []byte("v4"), Summary: summaryOf([]byte("v4"))},
		store.ValueWrite{Label: l, Version: 2, Record: []byte("v2"), Summary: summaryOf([]byte("v2"))},
		store.ValueWrite{Label: l, Version: 3, Record: []byte("v3"), Summary: summaryOf([]byte("v3"))})
	if err := m.Commit(t, ctx, c); err != nil {
		t.Fatalf("versions 2..4 in one commit: %v", err)
	}
	vs, err := s.Values(ctx, l, 2, 4)
	if err != nil || len(vs) != 3 || string(vs[0]) != "v2" || string(vs[2]) != "v4" {
		t.Fatalf("Values(2, 4) = %q, %v", vs, err)
	}
	if v, _ := s.LatestVersion(ctx, l); v != 4 {
		t.Fatalf("LatestVersion = %d, want 4", v)
	}
	if v, sum, err := s.LatestSummary(ctx, l); err != nil || v != 4 || !bytes.Equal(sum, summaryOf([]byte("v4"))) {
		t.Fatalf("LatestSummary = %d, %x, %v; want 4 and v4's summary", v, sum, err)
	}
	m.Check(t, false)
}

func testInvalidCommits(t *testing.T, s store.DirectoryStore) {
	ctx := context.Background()
	m := NewModel(t, s, 6)
	m.MustCommit(t, Spec{NewLabels: 20, Tenants: 1})
	cases := []struct {
		name   string
		mutate func(c *store.EpochCommit)
		want   error
	}{
		{"nil map", func(c *store.EpochCommit) { c.Map = nil }, store.ErrInvalidCommit},
		{"map of another epoch", func(c *store.EpochCommit) { c.Map.Epoch++ }, store.ErrInvalidCommit},
		{"invalid map batch", func(c *store.EpochCommit) { c.Map.Root[0] ^= 1 }, vmap.ErrInvalidBatch},
		{"map nodes out of order", func(c *store.EpochCommit) {
			n := c.Map.Nodes
			n[len(n)-1], n[len(n)-2] = n[len(n)-2], n[len(n)-1]
		}, vmap.ErrInvalidBatch},
		{"head of another epoch", func(c *store.EpochCommit) { c.Head.Epoch++ }, store.ErrInvalidCommit},
		{"log shrinks", func(c *store.EpochCommit) { c.Head.LogSize = 0 }, store.ErrInvalidCommit},
		{"log node outside the head", func(c *store.EpochCommit) { c.Head.LogSize-- }, store.ErrInvalidCommit},
		{"log node missing", func(c *store.EpochCommit) { c.LogNodes = c.LogNodes[:len(c.LogNodes)-1] }, store.ErrInvalidCommit},
		{"log node twice", func(c *store.EpochCommit) {
			n := c.LogNodes[0]
			n.Hash[0] ^= 1
			c.LogNodes = append(c.LogNodes, n)
		}, store.ErrInvalidCommit},
		{"stored log node rewritten", func(c *store.EpochCommit) {
			c.LogNodes = append(c.LogNodes, tlog.Node{ID: tlog.NodeID{Level: 0, Index: 0}, Hash: tlog.Hash{1}})
		}, store.ErrConflict},
		{"tenant twice", func(c *store.EpochCommit) { c.Tenants = append(c.Tenants, c.Tenants[0]) }, store.ErrInvalidCommit},
		{"tenant write without records", func(c *store.EpochCommit) { c.Tenants[0].Records = nil }, store.ErrInvalidCommit},
		{"tenant record twice", func(c *store.EpochCommit) {
			c.Tenants[0].Records = append(c.Tenants[0].Records, store.TenantRecord{Key: c.Tenants[0].Records[0].Key})
		}, store.ErrInvalidCommit},
		{"oversized summary", func(c *store.EpochCommit) { c.Values[0].Summary = make([]byte, store.MaxSummarySize+1) }, store.ErrInvalidCommit},
		{"oversized tenant record", func(c *store.EpochCommit) {
			c.Tenants[0].Records[0].Value = make([]byte, store.MaxTenantRecordSize+1)
		}, store.ErrInvalidCommit},
		{"record too large", func(c *store.EpochCommit) {
			c.Values[len(c.Values)-1].Record = make([]byte, store.MaxRecordSize+1)
		}, store.ErrInvalidCommit},
		{"checkpoint too large", func(c *store.EpochCommit) {
			c.Head.Checkpoint = make([]byte, store.MaxCheckpointSize+1)
		}, store.ErrInvalidCommit},
		{"transition without a checkpoint", func(c *store.EpochCommit) {
			c.Transition, c.Head.Checkpoint = true, nil
		}, store.ErrInvalidCommit},
	}
	for _, tc := range cases {
		c := m.Build(t, Spec{NewLabels: 5, Updates: 5, Tenants: 2})
		tc.mutate(c)
		if err := m.Commit(t, ctx, c); !errors.Is(err, tc.want) {
			t.Errorf("%s: CommitEpoch = %v, want %v", tc.name, err, tc.want)
		}
		m.Check(t, false)
	}
	if err := s.CommitEpoch(ctx, nil); !errors.Is(err, store.ErrInvalidCommit) {
		t.Errorf("CommitEpoch(nil) = %v, want ErrInvalidCommit", err)
	}
	m.MustCommit(t, Spec{NewLabels: 5, Updates: 5, Tenants: 2})
	m.Check(t, true)
}

// testLateConflict: a commit whose only fault is its last value write
// leaves nothing visible, and a different commit of the same epoch then
// succeeds without any trace of the first.
func testLateConflict(t *testing.T, s store.DirectoryStore) {
	ctx := context.Background()
	m := NewModel(t, s, 7)
	m.MustCommit(t, Spec{NewLabels: 50, Tenants: 2})
	c := m.Build(t, Spec{NewLabels: 500, Updates: 20, Tenants: 2})
	c.Values = append(c.Values, store.ValueWrite{Label: vmap.Label{0x42}, Version: 2, Record: []byte("late")})
	if err := m.Commit(t, ctx, c); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CommitEpoch = %v, want ErrConflict", err)
	}
	m.Check(t, false)
	for _, w := range c.Values[:len(c.Values)-1] {
		if v, err := s.LatestVersion(ctx, w.Label); err != nil || v >= w.Version {
			t.Fatalf("a value of the failed commit is visible: LatestVersion = %d, %v", v, err)
		}
	}
	m.MustCommit(t, Spec{NewLabels: 10, Tenants: 1})
	m.Check(t, true)
	for _, w := range c.Values {
		if slices.Contains(m.Labels(), w.Label) {
			continue
		}
		if v, err := s.LatestVersion(ctx, w.Label); err != nil || v != 0 {
			t.Fatalf("a label of the failed commit appeared later: LatestVersion = %d, %v", v, err)
		}
	}
}

// testMidCommitFault fails a large commit at every point where the store
// checks its context, and checks that nothing is visible after each.
func testMidCommitFault(t *testing.T, newStore func(t *testing.T) store.DirectoryStore) {
	s := newStore(t)
	m := NewModel(t, s, 8)
	m.MustCommit(t, Spec{NewLabels: 200, Tenants: 2})
	sp := Spec{NewLabels: 2500, Updates: 100, RecordSize: 1200, Tenants: 3, TenantSize: 300 << 10}
	ok := false
	for n := int64(0); n < 200; n++ {
		c := m.Build(t, sp)
		err := m.Commit(t, countdown(n), c)
		if err == nil {
			ok = true
			t.Logf("the commit checked its context %d times", n)
			break
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("commit failing at check %d: %v, want context.Canceled", n, err)
		}
		m.Check(t, false)
		for _, w := range c.Values {
			if v, err := s.LatestVersion(context.Background(), w.Label); err != nil || v >= w.Version {
				t.Fatalf("after a fault at check %d, a value of the failed commit is visible", n)
			}
		}
	}
	if !ok {
		t.Fatal("the commit never succeeded")
	}
	m.Check(t, true)
	m.MustCommit(t, Spec{NewLabels: 5, Updates: 5, Tenants: 1})
	m.Check(t, false)
}

func testLargeBlobs(t *testing.T, s store.DirectoryStore) {
	m := NewModel(t, s, 9)
	m.MustCommit(t, Spec{NewLabels: 3, RecordSize: 700 << 10, Tenants: 2, TenantSize: 2<<20 + 3})
	m.MustCommit(t, Spec{Updates: 2, RecordSize: 257 << 10, Tenants: 1, TenantSize: 5})
	m.Check(t, true)
}

// testTenantRecords: a commit writes only the records it names; the others
// keep their latest version; deleted records disappear, and a tenant whose
// records are all deleted is not found.
func testTenantRecords(t *testing.T, s store.DirectoryStore) {
	ctx := context.Background()
	m := NewModel(t, s, 13)
	m.MustCommit(t, Spec{NewLabels: 5, Tenants: 2, TenantRecords: 40, TenantSize: 3000})
	for e := range 6 {
		m.MustCommit(t, Spec{Updates: 2, Tenants: 1 + e%2, TenantRecords: 4, TenantDeletes: 3, TenantSize: 10 + 500*e})
		m.Check(t, false)
	}
	// Delete a key never written, and rewrite one deleted in this epoch's
	// predecessor: both are plain record writes.
	c := m.Build(t, Spec{Tenants: 1, TenantRecords: 1})
	c.Tenants[0].Records = append(c.Tenants[0].Records, store.TenantRecord{Key: store.TenantKey{3, 0xde, 0xad}})
	if err := m.Commit(t, ctx, c); err != nil {
		t.Fatal(err)
	}
	m.Check(t, true)
	// Delete every record of tenant 2.
	id := [16]byte{2}
	c = m.Build(t, Spec{})
	tw := store.TenantWrite{ID: id}
	for k := range m.Tenant(id) {
		tw.Records = append(tw.Records, store.TenantRecord{Key: k})
	}
	c.Tenants = append(c.Tenants, tw)
	if err := m.Commit(t, ctx, c); err != nil {
		t.Fatal(err)
	}
	m.Check(t, false)
	if _, err := ReadTenant(ctx, s, id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("TenantRecords of a tenant whose records were all deleted = %v, want ErrNotFound", err)
	}
	// An error from fn stops the walk and is returned.
	stop := errors.New("stop")
	calls := 0
	err := s.TenantRecords(ctx, [16]byte{1}, func(store.TenantKey, []byte) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("TenantRecords with a failing fn = %v after %d calls, want stop after 1", err, calls)
	}
}

// testConcurrentReaders commits epochs while readers check that what they
// see is the state of one head: the root of the head's epoch is there, a
// label written at every epoch e with version e+1 has a version between
// the heads read before and after, and so does a tenant state.
func testConcurrentReaders(t *testing.T, s store.DirectoryStore) {
	ctx := context.Background()
	m := NewModel(t, s, 10)
	clock := vmap.Label{0xc1, 0x0c}
	tenant := [16]byte{1}
	commit := func(big bool) {
		sp := Spec{NewLabels: 20, Updates: 10, Tenants: 1}
		if big {
			sp = Spec{NewLabels: 1500, Updates: 200, RecordSize: 900, Tenants: 1, TenantSize: 200 << 10}
		}
		c := m.Build(t, sp)
		c.Values = slices.DeleteFunc(c.Values, func(w store.ValueWrite) bool { return w.Label == clock })
		rec := fmt.Appendf(nil, "%d", c.Epoch)
		c.Values = append(c.Values, store.ValueWrite{Label: clock, Version: uint32(c.Epoch + 1), Record: rec, Summary: summaryOf(rec)})
		c.Tenants[0].Records = append(c.Tenants[0].Records, store.TenantRecord{Key: tenantClock, Value: epochBytes(c.Epoch)})
		if err := m.Commit(t, ctx, c); err != nil {
			t.Error(err)
		}
	}
	commit(false)
	const epochs = 14
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 8)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := readConsistent(ctx, s, clock, tenant); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for e := 1; e < epochs; e++ {
		commit(e%4 == 2)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	m.Check(t, true)
}

// tenantClock is the tenant record testConcurrentReaders rewrites every
// epoch (the model's random keys have a first byte below 4).
var tenantClock = store.TenantKey{0xff, 0xc1}

func readConsistent(ctx context.Context, s store.DirectoryStore, clock vmap.Label, tenant [16]byte) error {
	h1, err := s.Head(ctx)
	if err != nil {
		return err
	}
	if _, err := s.GetNodes([]vmap.NodeKey{vmap.RootKey(h1.Epoch)}); err != nil {
		return fmt.Errorf("root of head epoch %d: %w", h1.Epoch, err)
	}
	if h1.LogSize > 0 {
		if _, err := s.ReadNodes(ctx, []tlog.NodeID{{Level: 0, Index: h1.LogSize - 1}}); err != nil {
			return fmt.Errorf("last leaf of head %d: %w", h1.Epoch, err)
		}
	}
	v, err := s.LatestVersion(ctx, clock)
	if err != nil {
		return err
	}
	vs, err := s.Values(ctx, clock, v, v)
	if err != nil {
		return fmt.Errorf("latest version %d: %w", v, err)
	}
	lv, lrec, err := s.LatestValue(ctx, clock)
	if err != nil {
		return fmt.Errorf("latest value: %w", err)
	}
	// The clock record is rewritten every epoch, so at one head no
	// record is newer than it.
	clockE, maxE := uint64(0), uint64(0)
	err = s.TenantRecords(ctx, tenant, func(k store.TenantKey, v []byte) error {
		if k == tenantClock {
			clockE = binaryEpoch(v)
		}
		maxE = max(maxE, binaryEpoch(v))
		return nil
	})
	if err != nil {
		return fmt.Errorf("tenant records: %w", err)
	}
	next, nerr := s.GetNodes([]vmap.NodeKey{vmap.RootKey(h1.Epoch + 1)})
	h2, err := s.Head(ctx)
	if err != nil {
		return err
	}
	if h2.Epoch < h1.Epoch {
		return fmt.Errorf("head went back from %d to %d", h1.Epoch, h2.Epoch)
	}
	if uint64(v) < h1.Epoch+1 || uint64(v) > h2.Epoch+1 {
		return fmt.Errorf("latest version %d outside heads %d..%d", v, h1.Epoch, h2.Epoch)
	}
	if string(vs[0]) != fmt.Sprint(v-1) {
		return fmt.Errorf("version %d holds %q", v, vs[0])
	}
	if lv < v || uint64(lv) > h2.Epoch+1 || string(lrec) != fmt.Sprint(lv-1) {
		return fmt.Errorf("latest value %d (%q) after latest version %d, head %d", lv, lrec, v, h2.Epoch)
	}
	if clockE < h1.Epoch || clockE > h2.Epoch {
		return fmt.Errorf("tenant records of epoch %d outside heads %d..%d", clockE, h1.Epoch, h2.Epoch)
	}
	if maxE != clockE {
		return fmt.Errorf("tenant records of epochs %d and %d read together", clockE, maxE)
	}
	if nerr == nil && len(next) == 1 && h2.Epoch <= h1.Epoch {
		return fmt.Errorf("root of epoch %d visible while the head stayed at %d", h1.Epoch+1, h2.Epoch)
	}
	if nerr != nil && !errors.Is(nerr, vmap.ErrNodeNotFound) {
		return nerr
	}
	return nil
}

func epochBytes(e uint64) []byte {
	b := make([]byte, 8)
	for i := range b {
		b[i] = byte(e >> (56 - 8*i))
	}
	return b
}

func binaryEpoch(b []byte) uint64 {
	var e uint64
	for _, x := range b[:8] {
		e = e<<8 | uint64(x)
	}
	return e
}

func testTreeStore(t *testing.T, s store.DirectoryStore) {
	ctx := context.Background()
	m := NewModel(t, s, 11)
	m.MustCommit(t, Spec{NewLabels: 5})
	m.MustCommit(t, Spec{NewLabels: 5})
	ts := m.TS
	if err := ts.WriteNodes(ctx, []tlog.Node{{ID: tlog.NodeID{Level: 0, Index: 9}}}); !errors.Is(err, store.ErrNoEpoch) {
		t.Errorf("WriteNodes outside an epoch = %v, want ErrNoEpoch", err)
	}
	if err := ts.Commit(ctx); !errors.Is(err, store.ErrNoEpoch) {
		t.Errorf("Commit without Begin = %v, want ErrNoEpoch", err)
	}
	// The pending append is readable through the TreeStore, not the store.
	c := m.Build(t, Spec{NewLabels: 5})
	size := m.Tree.Size()
	if _, err := m.Tree.Root(ctx, size); err != nil {
		t.Fatalf("root of the pending tree: %v", err)
	}
	if _, err := s.ReadNodes(ctx, []tlog.NodeID{{Level: 0, Index: size - 1}}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("pending log node visible in the store: %v", err)
	}
	if len(c.LogNodes) == 0 {
		t.Fatal("the append wrote no log nodes into the commit")
	}
	// A stored node rewritten with another hash is refused.
	if err := ts.WriteNodes(ctx, []tlog.Node{{ID: tlog.NodeID{Level: 0, Index: 0}, Hash: tlog.Hash{7}}}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("rewriting a stored log node = %v, want ErrConflict", err)
	}
	// So is a pending one.
	last := c.LogNodes[len(c.LogNodes)-1]
	last.Hash[0] ^= 1
	if err := ts.WriteNodes(ctx, []tlog.Node{last}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("rewriting a pending log node = %v, want ErrConflict", err)
	}
	// Abort: the store is unchanged and a rebuilt tree continues.
	m.Abort(t)
	m.Check(t, false)
	m.MustCommit(t, Spec{NewLabels: 5, Updates: 5})
	m.Check(t, true)
	// A failed commit through the TreeStore also leaves the store as it
	// was; the model rebuilds its tree, as the directory must.
	c = m.Build(t, Spec{NewLabels: 5})
	c.Head.Epoch++
	if err := m.Commit(t, ctx, c); !errors.Is(err, store.ErrInvalidCommit) {
		t.Fatalf("CommitEpoch = %v, want ErrInvalidCommit", err)
	}
	m.Check(t, false)
	m.MustCommit(t, Spec{NewLabels: 5})
	m.Check(t, true)
	// Appends of several leaves in one epoch.
	c = m.Build(t, Spec{NewLabels: 1})
	for i := range 5 {
		if _, err := m.Tree.Append(ctx, []byte{byte(i)}, []byte{byte(i), 1}); err != nil {
			t.Fatal(err)
		}
	}
	c.Head.LogSize = m.Tree.Size()
	if err := m.Commit(t, ctx, c); err != nil {
		t.Fatal(err)
	}
	m.Check(t, false)
}

func testClosed(t *testing.T, s store.DirectoryStore) {
	ctx := context.Background()
	m := NewModel(t, s, 12)
	c := m.MustCommit(t, Spec{NewLabels: 2})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	l := m.Labels()[0]
	checks := map[string]error{}
	_, checks["Head"] = s.Head(ctx)
	_, checks["GetNodes"] = s.GetNodes([]vmap.NodeKey{vmap.RootKey(0)})
	_, checks["ReadNodes"] = s.ReadNodes(ctx, []tlog.NodeID{{}})
	_, checks["Values"] = s.Values(ctx, l, 1, 1)
	_, checks["LatestVersion"] = s.LatestVersion(ctx, l)
	_, _, checks["LatestValue"] = s.LatestValue(ctx, l)
	_, _, checks["LatestSummary"] = s.LatestSummary(ctx, l)
	checks["TenantRecords"] = s.TenantRecords(ctx, [16]byte{1}, func(store.TenantKey, []byte) error { return nil })
	checks["PendingRecords"] = s.PendingRecords(ctx, [16]byte{1}, func(store.TenantKey, []byte) error { return nil })
	checks["WritePending"] = s.WritePending(ctx, c.Epoch, store.TenantWrite{ID: [16]byte{1}, Records: []store.TenantRecord{{Key: tkey(6, 1), Value: []byte("x")}}})
	_, checks["Transitions"] = s.Transitions(ctx)
	next := *c
	next.Epoch++
	checks["CommitEpoch"] = s.CommitEpoch(ctx, &next)
	checks["UpdateHeadCheckpoint"] = s.UpdateHeadCheckpoint(ctx, c.Epoch, []byte("x"))
	for name, err := range checks {
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

// testHeadCheckpoint: UpdateHeadCheckpoint replaces the head's checkpoint
// and nothing else, refuses an empty store, another epoch, an empty or
// oversized checkpoint and a cancelled context without changing the head,
// does not alias the caller's slice, and is superseded by the next commit.
func testHeadCheckpoint(t *testing.T, s store.DirectoryStore) {
	ctx := context.Background()
	if err := s.UpdateHeadCheckpoint(ctx, 0, []byte("cp\n")); !errors.Is(err, store.ErrEmpty) {
		t.Fatalf("update of an empty store = %v, want ErrEmpty", err)
	}
	m := NewModel(t, s, 13)
	m.MustCommit(t, Spec{NewLabels: 20, Tenants: 1})
	m.MustCommit(t, Spec{NewLabels: 5, Updates: 5})
	e := m.Head().Epoch
	for name, tc := range map[string]struct {
		epoch uint64
		cp    []byte
		want  error
	}{
		"previous epoch": {e - 1, []byte("x"), store.ErrConflict},
		"next epoch":     {e + 1, []byte("x"), store.ErrConflict},
		"empty":          {e, nil, store.ErrInvalidCommit},
		"too large":      {e, make([]byte, store.MaxCheckpointSize+1), store.ErrInvalidCommit},
	} {
		if err := s.UpdateHeadCheckpoint(ctx, tc.epoch, tc.cp); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", name, err, tc.want)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.UpdateHeadCheckpoint(cctx, e, []byte("x")); err == nil {
		t.Error("update with a cancelled context succeeded")
	}
	m.Check(t, true)
	cp := m.MustUpdateHeadCheckpoint(t, 1500)
	cp[0] ^= 1 // the store keeps its own copy
	m.Check(t, true)
	m.MustUpdateHeadCheckpoint(t, store.MaxCheckpointSize)
	m.Check(t, true)
	m.MustCommit(t, Spec{Updates: 3})
	m.Check(t, true)
	m.MustUpdateHeadCheckpoint(t, 10)
	m.Check(t, false)
}

// testTransitions: the checkpoints of transition epochs are kept for good:
// as committed, or as the last UpdateHeadCheckpoint of their head, while
// later heads' checkpoint updates come and go; a failed commit of a
// transition keeps nothing; Transitions does not alias.
func testTransitions(t *testing.T, s store.DirectoryStore) {
	ctx := context.Background()
	m := NewModel(t, s, 14)
	m.MustCommit(t, Spec{NewLabels: 10, Tenants: 1})
	m.Check(t, false)
	m.MustCommit(t, Spec{Updates: 3, Transition: true}) // kept as committed
	m.Check(t, false)
	m.MustCommit(t, Spec{Updates: 3})
	m.MustUpdateHeadCheckpoint(t, 300)
	m.MustCommit(t, Spec{Updates: 3, Transition: true}) // kept as updated
	m.MustUpdateHeadCheckpoint(t, 2500)
	m.Check(t, false)
	m.MustUpdateHeadCheckpoint(t, 400)
	m.Check(t, false)
	for range 3 {
		m.MustCommit(t, Spec{Updates: 2})
		m.MustUpdateHeadCheckpoint(t, 100)
		m.MustUpdateHeadCheckpoint(t, 120)
		m.Check(t, false)
	}
	// A transition whose commit fails is not kept.
	c := m.Build(t, Spec{Updates: 2, Transition: true})
	c.Map = nil
	if err := m.Commit(t, ctx, c); !errors.Is(err, store.ErrInvalidCommit) {
		t.Fatalf("invalid transition commit = %v", err)
	}
	m.Check(t, false)
	m.MustCommit(t, Spec{Updates: 1, Transition: true})
	m.MustCommit(t, Spec{Updates: 1})
	m.Check(t, true)
	trs, err := s.Transitions(ctx)
	if err != nil || len(trs) != 3 {
		t.Fatalf("Transitions = %d, %v; want 3", len(trs), err)
	}
	trs[0].Checkpoint[0] ^= 1 // the store keeps its own copy
	m.Check(t, false)
}
