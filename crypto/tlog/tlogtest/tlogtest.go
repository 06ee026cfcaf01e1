// Package tlogtest holds the conformance suites of crypto/tlog's storage
// interfaces (STYLE 8): every implementation of tlog.WitnessStore and
// tlog.NodeStore runs them from its own tests.
//
//	func TestStore(t *testing.T) {
//		tlogtest.TestWitnessStore(t, func(t *testing.T) tlog.WitnessStore { return newMyStore(t) })
//	}
package tlogtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/moat-im/moat/crypto/tlog"
)

// TestWitnessStore checks the WitnessStore contract on fresh stores from
// newStore: absent records, compare-and-swap semantics, isolation between
// origins, no aliasing of the caller's slices, and that of many concurrent
// swaps from the same record exactly one wins.
func TestWitnessStore(t *testing.T, newStore func(t *testing.T) tlog.WitnessStore) {
	ctx := context.Background()
	const o1, o2 = "log.example/one", "log.example/two"
	a, b, c := []byte("record a"), []byte("record b"), []byte("record c")

	t.Run("Absent", func(t *testing.T) {
		s := newStore(t)
		got, err := s.Load(ctx, o1)
		if err != nil || got != nil {
			t.Fatalf("Load of an absent record = %q, %v; want nil, nil", got, err)
		}
	})

	t.Run("CompareAndSwap", func(t *testing.T) {
		s := newStore(t)
		mustCAS(t, s, o1, nil, a)
		mustLoad(t, s, o1, a)
		mustFail(t, s, o1, nil, b) // a record exists
		mustFail(t, s, o1, b, c)   // not the stored record
		mustFail(t, s, o1, a[:len(a)-1], c)
		mustFail(t, s, o1, []byte{}, c)
		mustLoad(t, s, o1, a)
		mustCAS(t, s, o1, a, b)
		mustLoad(t, s, o1, b)
		mustFail(t, s, o1, a, c) // a is stale now
		mustCAS(t, s, o1, b, b)  // swapping in the same bytes is a success
		mustLoad(t, s, o1, b)
	})

	t.Run("Origins", func(t *testing.T) {
		s := newStore(t)
		mustCAS(t, s, o1, nil, a)
		if got, _ := s.Load(ctx, o2); got != nil {
			t.Fatalf("record of %q visible under %q", o1, o2)
		}
		mustFail(t, s, o2, a, b)
		mustCAS(t, s, o2, nil, b)
		mustLoad(t, s, o1, a)
		mustLoad(t, s, o2, b)
	})

	t.Run("NoAliasing", func(t *testing.T) {
		s := newStore(t)
		in := bytes.Clone(a)
		mustCAS(t, s, o1, nil, in)
		in[0] ^= 0xff
		mustLoad(t, s, o1, a)
		out, _ := s.Load(ctx, o1)
		out[0] ^= 0xff
		mustLoad(t, s, o1, a)
	})

	t.Run("Concurrent", func(t *testing.T) {
		s := newStore(t)
		mustCAS(t, s, o1, nil, a)
		const n = 16
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.CompareAndSwap(ctx, o1, a, []byte(fmt.Sprintf("writer %d", i)))
				if err != nil && !errors.Is(err, tlog.ErrRecordChanged) {
					t.Errorf("CompareAndSwap: %v", err)
				}
				if err == nil {
					mu.Lock()
					wins++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("%d of %d concurrent swaps from the same record won, want 1", wins, n)
		}
	})
}

func mustCAS(t *testing.T, s tlog.WitnessStore, origin string, old, new []byte) {
	t.Helper()
	if err := s.CompareAndSwap(context.Background(), origin, old, new); err != nil {
		t.Fatalf("CompareAndSwap(%q, %q → %q): %v", origin, old, new, err)
	}
}

func mustFail(t *testing.T, s tlog.WitnessStore, origin string, old, new []byte) {
	t.Helper()
	if err := s.CompareAndSwap(context.Background(), origin, old, new); !errors.Is(err, tlog.ErrRecordChanged) {
		t.Fatalf("CompareAndSwap(%q, %q → %q) = %v, want ErrRecordChanged", origin, old, new, err)
	}
}

func mustLoad(t *testing.T, s tlog.WitnessStore, origin string, want []byte) {
	t.Helper()
	got, err := s.Load(context.Background(), origin)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Load(%q) = %q, %v; want %q", origin, got, err, want)
	}
}

// TestNodeStore checks the NodeStore contract on fresh stores from
// newStore, by driving a tlog.Tree over it and comparing with a tree over
// a tlog.MemoryNodeStore: batches of nodes are read back, a tree resumes
// from the store, and a rewrite with another hash fails.
func TestNodeStore(t *testing.T, newStore func(t *testing.T) tlog.NodeStore) {
	ctx := context.Background()

	t.Run("Tree", func(t *testing.T) {
		s := newStore(t)
		tr, err := tlog.NewTree(ctx, s, 0)
		if err != nil {
			t.Fatal(err)
		}
		ref, _ := tlog.NewTree(ctx, tlog.NewMemoryNodeStore(), 0)
		for batch := 0; batch < 20; batch++ {
			var leaves [][]byte
			for i := 0; i < batch*3%11; i++ {
				leaves = append(leaves, []byte(fmt.Sprintf("leaf %d/%d", batch, i)))
			}
			if _, err := tr.Append(ctx, leaves...); err != nil {
				t.Fatal(err)
			}
			ref.Append(ctx, leaves...)
		}
		size := tr.Size()
		for n := uint64(0); n <= size; n++ {
			got, err := tr.Root(ctx, n)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := ref.Root(ctx, n)
			if got != want {
				t.Fatalf("Root(%d) differs from the in-memory reference", n)
			}
		}
		resumed, err := tlog.NewTree(ctx, s, size)
		if err != nil {
			t.Fatalf("resuming: %v", err)
		}
		if _, err := resumed.Append(ctx, []byte("after resume")); err != nil {
			t.Fatal(err)
		}
		ref.Append(ctx, []byte("after resume"))
		got, _ := resumed.Root(ctx, size+1)
		want, _ := ref.Root(ctx, size+1)
		if got != want {
			t.Fatal("resumed tree differs from the reference")
		}
		p, err := resumed.InclusionProof(ctx, 0, size+1)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.VerifyInclusion(tlog.LeafHash([]byte("leaf 1/0")), 0, size+1, p, want); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Immutable", func(t *testing.T) {
		s := newStore(t)
		id := tlog.NodeID{Level: 0, Index: 0}
		if err := s.WriteNodes(ctx, []tlog.Node{{ID: id, Hash: tlog.Hash{1}}}); err != nil {
			t.Fatal(err)
		}
		if err := s.WriteNodes(ctx, []tlog.Node{{ID: id, Hash: tlog.Hash{1}}}); err != nil {
			t.Fatalf("rewriting a node with the same hash: %v", err)
		}
		if err := s.WriteNodes(ctx, []tlog.Node{{ID: id, Hash: tlog.Hash{2}}}); err == nil {
			t.Fatal("rewriting a node with another hash succeeded")
		}
		got, err := s.ReadNodes(ctx, []tlog.NodeID{id})
		if err != nil || len(got) != 1 || got[0] != (tlog.Hash{1}) {
			t.Fatalf("ReadNodes = %v, %v", got, err)
		}
		if _, err := s.ReadNodes(ctx, []tlog.NodeID{{Level: 3, Index: 9}}); err == nil {
			t.Fatal("reading a missing node succeeded")
		}
	})
}
