// Package prekeytest is the conformance suite of prekey.Store.
package prekeytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/moat-im/moat/server/store/prekey"
)

// Opener opens a fresh store whose pools hold at most maxPool items each.
type Opener func(t *testing.T, maxPool int) prekey.Store

// Reopener opens the same persistent store again after Close.
type Reopener func(t *testing.T) prekey.Store

var ctx = context.Background()

func dev(b byte) prekey.ID { return prekey.ID{0: 1, 16: b} }

func rec(k prekey.Kind, id uint32) []byte {
	return fmt.Appendf(nil, "record kind %d id %d", k, id)
}

func item(k prekey.Kind, id uint32) prekey.Item {
	return prekey.Item{Kind: k, ID: id, Record: rec(k, id)}
}

// Run runs the suite against fresh stores from open.
func Run(t *testing.T, open Opener) {
	t.Run("Singletons", func(t *testing.T) { testSingletons(t, open(t, 10)) })
	t.Run("PoolOrder", func(t *testing.T) { testPoolOrder(t, open(t, 10)) })
	t.Run("Exhausted", func(t *testing.T) { testExhausted(t, open(t, 10)) })
	t.Run("Quota", func(t *testing.T) { testQuota(t, open(t, 3)) })
	t.Run("Invalid", func(t *testing.T) { testInvalid(t, open(t, 10)) })
	t.Run("Isolation", func(t *testing.T) { testIsolation(t, open(t, 10)) })
	t.Run("ConcurrentTake", func(t *testing.T) { testConcurrentTake(t, open(t, 1000)) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, open(t, 10)) })
	t.Run("Aliasing", func(t *testing.T) { testAliasing(t, open(t, 10)) })
	t.Run("Closed", func(t *testing.T) {
		s := open(t, 10)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, dev(1), []prekey.Item{item(prekey.SignedPrekey, 1)}); !errors.Is(err, prekey.ErrClosed) {
			t.Fatalf("Put after Close: %v", err)
		}
		if _, err := s.Take(ctx, dev(1), nil, []prekey.Kind{prekey.OneTimePrekey}); !errors.Is(err, prekey.ErrClosed) {
			t.Fatalf("Take after Close: %v", err)
		}
	})
}

// RunDurable checks that what a store acknowledged survives Close and
// reopening, and that a taken item stays taken.
func RunDurable(t *testing.T, open Reopener) {
	s := open(t)
	must(t, s.Put(ctx, dev(1), []prekey.Item{item(prekey.SignedPrekey, 7), item(prekey.OneTimePrekey, 1), item(prekey.OneTimePrekey, 2)}))
	got, err := s.Take(ctx, dev(1), nil, []prekey.Kind{prekey.OneTimePrekey, prekey.OneTimeKEM})
	must(t, err)
	if len(got) != 1 || got[0].ID != 1 {
		t.Fatalf("took %v", got)
	}
	must(t, s.Close())
	s = open(t)
	defer s.Close()
	st, err := s.Status(ctx, dev(1))
	must(t, err)
	if st.Pools[prekey.OneTimePrekey] != 1 || !st.Has[prekey.SignedPrekey] || st.Exhausted[prekey.OneTimeKEM] != 1 {
		t.Fatalf("after reopening: %+v", st)
	}
	got, err = s.Take(ctx, dev(1), []prekey.Kind{prekey.SignedPrekey}, []prekey.Kind{prekey.OneTimePrekey})
	must(t, err)
	if len(got) != 2 || got[0].ID != 7 || got[1].ID != 2 || !bytes.Equal(got[1].Record, rec(prekey.OneTimePrekey, 2)) {
		t.Fatalf("after reopening, took %v", got)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testSingletons(t *testing.T, s prekey.Store) {
	defer s.Close()
	must(t, s.Put(ctx, dev(1), []prekey.Item{item(prekey.SignedPrekey, 1), item(prekey.LastResortKEM, 2), item(prekey.SealedSenderKey, 3)}))
	must(t, s.Put(ctx, dev(1), []prekey.Item{item(prekey.SignedPrekey, 4)}))
	for range 2 { // reading a singleton does not remove it
		got, err := s.Take(ctx, dev(1), []prekey.Kind{prekey.SignedPrekey, prekey.LastResortKEM, prekey.SealedSenderKey}, nil)
		must(t, err)
		if len(got) != 3 || got[0].ID != 4 || got[1].ID != 2 || got[2].ID != 3 ||
			!bytes.Equal(got[0].Record, rec(prekey.SignedPrekey, 4)) || got[0].Kind != prekey.SignedPrekey {
			t.Fatalf("singletons %v", got)
		}
	}
	st, err := s.Status(ctx, dev(1))
	must(t, err)
	if len(st.Has) != 3 || len(st.Pools) != 0 {
		t.Fatalf("status %+v", st)
	}
}

func testPoolOrder(t *testing.T, s prekey.Store) {
	defer s.Close()
	must(t, s.Put(ctx, dev(1), []prekey.Item{item(prekey.OneTimePrekey, 30), item(prekey.OneTimePrekey, 10), item(prekey.KeyPackage, 5)}))
	must(t, s.Put(ctx, dev(1), []prekey.Item{item(prekey.OneTimePrekey, 20), {Kind: prekey.OneTimePrekey, ID: 30, Record: []byte("replaced")}}))
	want := []struct {
		id  uint32
		rec []byte
	}{{10, rec(prekey.OneTimePrekey, 10)}, {20, rec(prekey.OneTimePrekey, 20)}, {30, []byte("replaced")}}
	for _, w := range want {
		got, err := s.Take(ctx, dev(1), nil, []prekey.Kind{prekey.OneTimePrekey})
		must(t, err)
		if len(got) != 1 || got[0].ID != w.id || !bytes.Equal(got[0].Record, w.rec) || got[0].Kind != prekey.OneTimePrekey {
			t.Fatalf("took %v, want id %d", got, w.id)
		}
	}
	st, err := s.Status(ctx, dev(1))
	must(t, err)
	if st.Pools[prekey.OneTimePrekey] != 0 || st.Pools[prekey.KeyPackage] != 1 {
		t.Fatalf("status %+v", st)
	}
}

func testExhausted(t *testing.T, s prekey.Store) {
	defer s.Close()
	must(t, s.Put(ctx, dev(1), []prekey.Item{item(prekey.LastResortKEM, 1), item(prekey.OneTimeKEM, 2)}))
	for i, want := range []int{1, 0, 0} {
		got, err := s.Take(ctx, dev(1), []prekey.Kind{prekey.LastResortKEM}, []prekey.Kind{prekey.OneTimeKEM})
		must(t, err)
		if len(got) != 1+want {
			t.Fatalf("take %d: %v", i, got)
		}
	}
	st, err := s.Status(ctx, dev(1))
	must(t, err)
	if st.Exhausted[prekey.OneTimeKEM] != 2 || st.Exhausted[prekey.KeyPackage] != 0 {
		t.Fatalf("exhausted %v", st.Exhausted)
	}
	// Replenishing resets the flag.
	must(t, s.Put(ctx, dev(1), []prekey.Item{item(prekey.OneTimeKEM, 3)}))
	st, err = s.Status(ctx, dev(1))
	must(t, err)
	if st.Exhausted[prekey.OneTimeKEM] != 0 || st.Pools[prekey.OneTimeKEM] != 1 {
		t.Fatalf("after replenishing: %+v", st)
	}
}

func testQuota(t *testing.T, s prekey.Store) {
	defer s.Close()
	must(t, s.Put(ctx, dev(1), []prekey.Item{item(prekey.OneTimePrekey, 1), item(prekey.OneTimePrekey, 2)}))
	err := s.Put(ctx, dev(1), []prekey.Item{item(prekey.SignedPrekey, 9), item(prekey.OneTimePrekey, 3), item(prekey.OneTimePrekey, 4)})
	if !errors.Is(err, prekey.ErrQuota) {
		t.Fatalf("past the bound: %v", err)
	}
	st, _ := s.Status(ctx, dev(1))
	if st.Has[prekey.SignedPrekey] || st.Pools[prekey.OneTimePrekey] != 2 {
		t.Fatalf("a refused Put changed the store: %+v", st)
	}
	// Replacing an id already held does not count; filling to the bound is fine.
	must(t, s.Put(ctx, dev(1), []prekey.Item{item(prekey.OneTimePrekey, 2), item(prekey.OneTimePrekey, 3)}))
	// Other pools have bounds of their own.
	must(t, s.Put(ctx, dev(1), []prekey.Item{item(prekey.KeyPackage, 1), item(prekey.KeyPackage, 2), item(prekey.KeyPackage, 3)}))
}

func testInvalid(t *testing.T, s prekey.Store) {
	defer s.Close()
	bad := [][]prekey.Item{
		nil,
		{{Kind: 0, ID: 1, Record: []byte("x")}},
		{{Kind: 7, ID: 1, Record: []byte("x")}},
		{{Kind: prekey.OneTimePrekey, ID: 1}},
		{{Kind: prekey.OneTimePrekey, ID: 1, Record: make([]byte, prekey.MaxRecordSize+1)}},
		{item(prekey.SignedPrekey, 1), item(prekey.SignedPrekey, 2)},
		make([]prekey.Item, prekey.MaxItemsPerPut+1),
	}
	for i, items := range bad {
		if err := s.Put(ctx, dev(1), items); !errors.Is(err, prekey.ErrInvalid) {
			t.Errorf("bad put %d: %v", i, err)
		}
	}
	for i, k := range [][2][]prekey.Kind{
		{{prekey.OneTimePrekey}, nil},
		{nil, {prekey.SignedPrekey}},
		{nil, {prekey.OneTimePrekey, prekey.OneTimePrekey}},
		{{9}, nil},
	} {
		if _, err := s.Take(ctx, dev(1), k[0], k[1]); !errors.Is(err, prekey.ErrInvalid) {
			t.Errorf("bad take %d: %v", i, err)
		}
	}
	st, _ := s.Status(ctx, dev(1))
	if len(st.Has)+len(st.Pools)+len(st.Exhausted) != 0 {
		t.Fatalf("refused calls changed the store: %+v", st)
	}
}

// testIsolation: devices differing in one byte of either half share
// nothing (T44).
func testIsolation(t *testing.T, s prekey.Store) {
	defer s.Close()
	a, b := dev(1), dev(1)
	b[0] = 2 // same device id, another tenant
	must(t, s.Put(ctx, a, []prekey.Item{item(prekey.OneTimePrekey, 1), item(prekey.SignedPrekey, 1)}))
	got, err := s.Take(ctx, b, []prekey.Kind{prekey.SignedPrekey}, []prekey.Kind{prekey.OneTimePrekey})
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("another tenant's device got %v", got)
	}
	st, _ := s.Status(ctx, a)
	if st.Pools[prekey.OneTimePrekey] != 1 {
		t.Fatalf("status %+v", st)
	}
}

// testConcurrentTake: each one-time item is handed out at most once, and
// every one is handed out, whatever the concurrency (T09).
func testConcurrentTake(t *testing.T, s prekey.Store) {
	defer s.Close()
	const n = 200
	var items []prekey.Item
	for i := range n {
		items = append(items, item(prekey.OneTimePrekey, uint32(i)))
	}
	must(t, s.Put(ctx, dev(1), items))
	var mu sync.Mutex
	seen := map[uint32]int{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range n/8 + 5 {
				got, err := s.Take(ctx, dev(1), nil, []prekey.Kind{prekey.OneTimePrekey})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, it := range got {
					seen[it.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != n {
		t.Fatalf("%d distinct items handed out, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Fatalf("item %d handed out %d times", id, c)
		}
	}
}

func testDelete(t *testing.T, s prekey.Store) {
	defer s.Close()
	must(t, s.Put(ctx, dev(1), []prekey.Item{item(prekey.OneTimePrekey, 1), item(prekey.SignedPrekey, 1)}))
	must(t, s.Put(ctx, dev(2), []prekey.Item{item(prekey.OneTimePrekey, 1)}))
	must(t, s.Delete(ctx, dev(1)))
	got, err := s.Take(ctx, dev(1), []prekey.Kind{prekey.SignedPrekey}, []prekey.Kind{prekey.OneTimePrekey})
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("after Delete: %v", got)
	}
	st, _ := s.Status(ctx, dev(2))
	if st.Pools[prekey.OneTimePrekey] != 1 {
		t.Fatal("Delete touched another device")
	}
}

// testAliasing: the store keeps no reference to the caller's records.
func testAliasing(t *testing.T, s prekey.Store) {
	defer s.Close()
	r := []byte("original")
	must(t, s.Put(ctx, dev(1), []prekey.Item{{Kind: prekey.SignedPrekey, ID: 1, Record: r}}))
	r[0] = 'X'
	got, err := s.Take(ctx, dev(1), []prekey.Kind{prekey.SignedPrekey}, nil)
	must(t, err)
	if string(got[0].Record) != "original" {
		t.Fatalf("stored record changed with the caller's buffer: %q", got[0].Record)
	}
	got[0].Record[0] = 'Y'
	got, _ = s.Take(ctx, dev(1), []prekey.Kind{prekey.SignedPrekey}, nil)
	if string(got[0].Record) != "original" {
		t.Fatalf("stored record changed with a returned buffer: %q", got[0].Record)
	}
}
