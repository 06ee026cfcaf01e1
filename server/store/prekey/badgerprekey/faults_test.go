package badgerprekey_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/moat-im/moat/internal/faultfs"
	"github.com/moat-im/moat/server/store/prekey"
	"github.com/moat-im/moat/server/store/prekey/badgerprekey"
)

// TestT38DiskFull: with free space below the reserve, Put fails with
// ErrUnavailable and stores nothing while Take still hands out items;
// with writes failing (ENOSPC) Put and Take fail and change nothing (no
// item is handed out or lost); with syncs failing Put and Take fail, a
// Put is retried idempotently, and the item a failed Take removed is
// never handed out. After each fault, and after a restart, the store
// serves what was acknowledged.
func TestT38DiskFull(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	inj := faultfs.New()
	openStore := func() *badgerprekey.Store {
		s, err := badgerprekey.Open(ctx, badgerprekey.Options{
			Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), DiskReserve: 1 << 30, Faults: inj,
		})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := openStore()
	defer func() { s.Close() }()
	dev := prekey.ID{1}
	opk := func(id uint32) prekey.Item {
		return prekey.Item{Kind: prekey.OneTimePrekey, ID: id, Record: []byte{byte(id), 'o', 'p', 'k'}}
	}
	spk := prekey.Item{Kind: prekey.SignedPrekey, ID: 1, Record: []byte("signed prekey")}
	unavailable := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, prekey.ErrUnavailable) {
			t.Fatalf("%s: %v, want ErrUnavailable", what, err)
		}
	}
	pool := func() int {
		t.Helper()
		st, err := s.Status(ctx, dev)
		if err != nil {
			t.Fatal(err)
		}
		return st.Pools[prekey.OneTimePrekey]
	}
	take := func() (uint32, error) {
		items, err := s.Take(ctx, dev, []prekey.Kind{prekey.SignedPrekey}, []prekey.Kind{prekey.OneTimePrekey})
		if err != nil {
			return 0, err
		}
		for _, it := range items {
			if it.Kind == prekey.OneTimePrekey {
				return it.ID, nil
			}
		}
		return 0, nil
	}
	handed := map[uint32]bool{}
	takeOK := func(want uint32) {
		t.Helper()
		id, err := take()
		if err != nil || id != want {
			t.Fatalf("Take: %d, %v; want item %d", id, err, want)
		}
		if handed[id] {
			t.Fatalf("item %d handed out twice", id)
		}
		handed[id] = true
	}
	if err := s.Put(ctx, dev, []prekey.Item{spk, opk(1), opk(2), opk(3)}); err != nil {
		t.Fatal(err)
	}

	// 1. Below the reserve: Put refused before it writes; Take (which
	// frees space) still served.
	inj.SetFree(1 << 20)
	unavailable("Put below the reserve", s.Put(ctx, dev, []prekey.Item{opk(4)}))
	takeOK(1)
	if pool() != 2 {
		t.Fatalf("pool %d after a refused Put", pool())
	}
	inj.SetFree(-1)

	// 2. Writes fail (ENOSPC): nothing changes.
	inj.SetFull(true)
	unavailable("Put on a full disk", s.Put(ctx, dev, []prekey.Item{opk(4)}))
	_, err := take()
	unavailable("Take on a full disk", err)
	if pool() != 2 {
		t.Fatalf("pool %d after failed writes", pool())
	}
	inj.SetFull(false)
	takeOK(2)
	if err := s.Put(ctx, dev, []prekey.Item{opk(4), opk(5)}); err != nil {
		t.Fatal(err)
	}

	// 3. Syncs fail after badger took the write.
	inj.FailSyncs(2)
	unavailable("Put with a failing sync", s.Put(ctx, dev, []prekey.Item{opk(6)}))
	_, err = take() // removes item 3 without handing it out
	unavailable("Take with a failing sync", err)
	if err := s.Put(ctx, dev, []prekey.Item{opk(6)}); err != nil { // retried: idempotent
		t.Fatal(err)
	}
	takeOK(4) // not 3: the failed Take removed it

	// A restart serves what was acknowledged; item 3 stays gone.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore()
	takeOK(5)
	takeOK(6)
	if id, err := take(); err != nil || id != 0 {
		t.Fatalf("Take of an empty pool: %d, %v (item 3, removed by the failed Take, must not come back)", id, err)
	}
}
