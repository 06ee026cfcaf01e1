package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"testing"

	"github.com/moat-im/moat/keyserver/store"
)

// ReadPending returns a tenant's pending records (PendingRecords), a
// deletion as an empty, non-nil value, and checks that they come by
// increasing key.
func ReadPending(ctx context.Context, s store.DirectoryStore, id [16]byte) (map[store.TenantKey][]byte, error) {
	out := map[store.TenantKey][]byte{}
	var last *store.TenantKey
	err := s.PendingRecords(ctx, id, func(k store.TenantKey, v []byte) error {
		if last != nil && bytes.Compare(last[:], k[:]) >= 0 {
			return fmt.Errorf("pending record %x after %x", k[:], last[:])
		}
		kk := k
		last = &kk
		out[k] = append([]byte{}, v...)
		return nil
	})
	return out, err
}

func checkPending(t *testing.T, s store.DirectoryStore, id [16]byte, want map[store.TenantKey][]byte) {
	t.Helper()
	got, err := ReadPending(context.Background(), s, id)
	if err != nil {
		t.Fatalf("PendingRecords: %v", err)
	}
	if !maps.EqualFunc(got, want, bytes.Equal) {
		t.Fatalf("PendingRecords of tenant %x: %d records, want %d (or values differ)", id[:1], len(got), len(want))
	}
}

func tkey(kind, n byte) store.TenantKey { return store.TenantKey{kind, n} }

// testPendingRecords: WritePending refuses an empty store, another epoch
// than the head's, malformed writes and a cancelled context without
// writing anything; pending records replace each other by key, keep
// deletions, never show in TenantRecords, do not alias the caller's
// slices, and are superseded by the next commit.
func testPendingRecords(t *testing.T, s store.DirectoryStore) {
	ctx := context.Background()
	id, other := [16]byte{1}, [16]byte{2}
	one := store.TenantWrite{ID: id, Records: []store.TenantRecord{{Key: tkey(6, 1), Value: []byte("x")}}}
	if err := s.WritePending(ctx, 0, one); !errors.Is(err, store.ErrEmpty) {
		t.Fatalf("WritePending on an empty store = %v, want ErrEmpty", err)
	}
	m := NewModel(t, s, 21)
	m.MustCommit(t, Spec{NewLabels: 3, Tenants: 2, TenantRecords: 5})
	m.MustCommit(t, Spec{Updates: 1, Tenants: 1, TenantRecords: 2})
	head := m.Head().Epoch
	checkPending(t, s, id, map[store.TenantKey][]byte{})

	bad := map[string]struct {
		after uint64
		w     store.TenantWrite
		want  error
	}{
		"past epoch":  {head - 1, one, store.ErrConflict},
		"next epoch":  {head + 1, one, store.ErrConflict},
		"no records":  {head, store.TenantWrite{ID: id}, store.ErrInvalidCommit},
		"key twice":   {head, store.TenantWrite{ID: id, Records: []store.TenantRecord{one.Records[0], one.Records[0]}}, store.ErrInvalidCommit},
		"record size": {head, store.TenantWrite{ID: id, Records: []store.TenantRecord{{Key: tkey(6, 2), Value: make([]byte, store.MaxTenantRecordSize+1)}}}, store.ErrInvalidCommit},
	}
	for name, b := range bad {
		if err := s.WritePending(ctx, b.after, b.w); !errors.Is(err, b.want) {
			t.Errorf("WritePending, %s = %v, want %v", name, err, b.want)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.WritePending(cancelled, head, one); err == nil {
		t.Error("WritePending with a cancelled context succeeded")
	}
	checkPending(t, s, id, map[store.TenantKey][]byte{})

	big := bytes.Repeat([]byte{0xb1}, 3000) // several fragments in badger
	w := store.TenantWrite{ID: id, Records: []store.TenantRecord{
		{Key: tkey(6, 1), Value: []byte("first")},
		{Key: tkey(6, 2)}, // a pending deletion
		{Key: tkey(7, 1), Value: big},
	}}
	if err := s.WritePending(ctx, head, w); err != nil {
		t.Fatal(err)
	}
	w.Records[0].Value[0] = 'F' // not aliased
	want := map[store.TenantKey][]byte{tkey(6, 1): []byte("first"), tkey(6, 2): {}, tkey(7, 1): big}
	checkPending(t, s, id, want)
	checkPending(t, s, other, map[store.TenantKey][]byte{})
	// Replace by key: a shorter value over a fragmented one, a value over
	// a deletion, a deletion over a value.
	w2 := store.TenantWrite{ID: id, Records: []store.TenantRecord{
		{Key: tkey(6, 1)},
		{Key: tkey(6, 2), Value: []byte("back")},
		{Key: tkey(7, 1), Value: []byte("short")},
	}}
	if err := s.WritePending(ctx, head, w2); err != nil {
		t.Fatal(err)
	}
	want = map[store.TenantKey][]byte{tkey(6, 1): {}, tkey(6, 2): []byte("back"), tkey(7, 1): []byte("short")}
	checkPending(t, s, id, want)
	if err := s.WritePending(ctx, head, store.TenantWrite{ID: other, Records: []store.TenantRecord{{Key: tkey(5, 5), Value: []byte("o")}}}); err != nil {
		t.Fatal(err)
	}
	checkPending(t, s, other, map[store.TenantKey][]byte{tkey(5, 5): []byte("o")})
	checkPending(t, s, id, want)
	// Pending records are not the published state.
	m.Check(t, false)

	stop := errors.New("stop")
	calls := 0
	if err := s.PendingRecords(ctx, id, func(store.TenantKey, []byte) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("PendingRecords with a failing fn = %v after %d calls, want stop after 1", err, calls)
	}

	// The next epoch supersedes them, for every tenant; writes for the
	// old head then conflict.
	m.MustCommit(t, Spec{Updates: 1, Tenants: 1, TenantRecords: 1})
	checkPending(t, s, id, map[store.TenantKey][]byte{})
	checkPending(t, s, other, map[store.TenantKey][]byte{})
	m.Check(t, false)
	if err := s.WritePending(ctx, head, one); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("WritePending after the next commit = %v, want ErrConflict", err)
	}
	if err := s.WritePending(ctx, head+1, one); err != nil {
		t.Fatal(err)
	}
	checkPending(t, s, id, map[store.TenantKey][]byte{tkey(6, 1): []byte("x")})

	// Pending writes racing a commit: each lands before it (and is
	// superseded) or fails with ErrConflict after it; none survives it.
	after := m.Head().Epoch
	done := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			w := store.TenantWrite{ID: other, Records: []store.TenantRecord{{Key: tkey(6, byte(i)), Value: []byte("r")}}}
			err := s.WritePending(ctx, after, w)
			if errors.Is(err, store.ErrConflict) {
				done <- nil
				return
			}
			if err != nil {
				done <- err
				return
			}
		}
	}()
	m.MustCommit(t, Spec{Updates: 1})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkPending(t, s, id, map[store.TenantKey][]byte{})
	checkPending(t, s, other, map[store.TenantKey][]byte{})
}

// testReopenPending: pending records survive a reopen, and the commit
// after it supersedes them, also after another reopen.
func testReopenPending(t *testing.T, open func(t *testing.T, dir string) store.DirectoryStore) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	m := NewModel(t, s, 103)
	m.MustCommit(t, Spec{NewLabels: 10, Tenants: 1})
	id := [16]byte{1}
	big := bytes.Repeat([]byte{7}, 5000)
	w := store.TenantWrite{ID: id, Records: []store.TenantRecord{{Key: tkey(6, 1), Value: []byte("a")}, {Key: tkey(6, 2)}, {Key: tkey(6, 3), Value: big}}}
	if err := s.WritePending(ctx, m.Head().Epoch, w); err != nil {
		t.Fatal(err)
	}
	want := map[store.TenantKey][]byte{tkey(6, 1): []byte("a"), tkey(6, 2): {}, tkey(6, 3): big}
	closeStore(t, s)
	s = open(t, dir)
	m.S = s
	m.Reset(t)
	m.Check(t, true)
	checkPending(t, s, id, want)
	m.MustCommit(t, Spec{Updates: 1, Tenants: 1})
	closeStore(t, s)
	s = open(t, dir)
	m.S = s
	m.Reset(t)
	m.Check(t, true)
	checkPending(t, s, id, map[store.TenantKey][]byte{})
	closeStore(t, s)
}
