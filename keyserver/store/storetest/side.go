package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/moat-im/moat/keyserver/store"
)

// lodgedRec is a lodged record as LodgedRecords returns it.
type lodgedRec struct {
	value   []byte
	expires time.Time
}

// ReadLodged returns a tenant's lodged records not expired at now, and
// checks that they come by increasing key.
func ReadLodged(ctx context.Context, s store.DirectoryStore, id [16]byte, now time.Time) (map[store.LodgedKey]lodgedRec, error) {
	out := map[store.LodgedKey]lodgedRec{}
	var last *store.LodgedKey
	err := s.LodgedRecords(ctx, id, now, func(k store.LodgedKey, v []byte, exp time.Time) error {
		if last != nil && bytes.Compare(last[:], k[:]) >= 0 {
			return fmt.Errorf("lodged record %x after %x", k[:], last[:])
		}
		kk := k
		last = &kk
		out[k] = lodgedRec{bytes.Clone(v), exp}
		return nil
	})
	return out, err
}

func checkLodged(t *testing.T, s store.DirectoryStore, id [16]byte, now time.Time, want map[store.LodgedKey]lodgedRec) {
	t.Helper()
	got, err := ReadLodged(context.Background(), s, id, now)
	if err != nil {
		t.Fatalf("LodgedRecords: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("LodgedRecords of tenant %x at %v: %d records, want %d", id[:1], now, len(got), len(want))
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok || !bytes.Equal(g.value, w.value) || !g.expires.Equal(w.expires) {
			t.Fatalf("lodged record %x: got %q until %v (present %v), want %q until %v", k[:2], g.value, g.expires, ok, w.value, w.expires)
		}
	}
}

func lkey(kind, n byte) store.LodgedKey { return store.LodgedKey{kind, n} }

// lodgedT0 is the time the lodged tests start at.
var lodgedT0 = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

// testLodged: PutLodged works on an empty store and beside epochs, which
// neither write nor supersede lodged records; a write replaces the record
// of its key, an empty value deletes it; records are per tenant, come by
// key, do not alias the caller's slices, are not returned once expired and
// are deleted by the next write after they expired; invalid writes and a
// cancelled context change nothing.
func testLodged(t *testing.T, s store.DirectoryStore) {
	ctx := context.Background()
	id, other := [16]byte{1}, [16]byte{2}
	now := lodgedT0
	hour := now.Add(time.Hour)
	val := []byte("approvals 1")
	if err := s.PutLodged(ctx, id, lkey(1, 2), val, hour, now); err != nil {
		t.Fatalf("PutLodged on an empty store: %v", err)
	}
	val[0] = 'X' // the store holds its own copy
	want := map[store.LodgedKey]lodgedRec{lkey(1, 2): {[]byte("approvals 1"), hour}}
	checkLodged(t, s, id, now, want)
	checkLodged(t, s, other, now, map[store.LodgedKey]lodgedRec{})

	// Epochs do not touch them.
	m := NewModel(t, s, 31)
	m.MustCommit(t, Spec{NewLabels: 3, Tenants: 1, TenantRecords: 3})
	if err := s.PutLodged(ctx, id, lkey(1, 1), []byte("first"), now.Add(2*time.Hour), now); err != nil {
		t.Fatal(err)
	}
	if err := s.PutLodged(ctx, other, lkey(1, 1), []byte("other"), hour, now); err != nil {
		t.Fatal(err)
	}
	m.MustCommit(t, Spec{Updates: 2, Tenants: 1})
	want[lkey(1, 1)] = lodgedRec{[]byte("first"), now.Add(2 * time.Hour)}
	checkLodged(t, s, id, now, want)

	// Replace, delete, and deleting what is not there.
	if err := s.PutLodged(ctx, id, lkey(1, 2), []byte("approvals 2"), now.Add(3*time.Hour), now); err != nil {
		t.Fatal(err)
	}
	want[lkey(1, 2)] = lodgedRec{[]byte("approvals 2"), now.Add(3 * time.Hour)}
	checkLodged(t, s, id, now, want)
	if err := s.PutLodged(ctx, id, lkey(1, 1), nil, time.Time{}, now); err != nil {
		t.Fatal(err)
	}
	if err := s.PutLodged(ctx, id, lkey(9, 9), nil, time.Time{}, now); err != nil {
		t.Fatal(err)
	}
	delete(want, lkey(1, 1))
	checkLodged(t, s, id, now, want)

	// Refused, changing nothing.
	for name, put := range map[string]func() error{
		"too large": func() error {
			return s.PutLodged(ctx, id, lkey(1, 2), make([]byte, store.MaxLodgedSize+1), hour, now)
		},
		"expired": func() error { return s.PutLodged(ctx, id, lkey(1, 2), []byte("x"), now, now) },
	} {
		if err := put(); !errors.Is(err, store.ErrInvalidCommit) {
			t.Fatalf("%s: PutLodged = %v, want ErrInvalidCommit", name, err)
		}
		checkLodged(t, s, id, now, want)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.PutLodged(cctx, id, lkey(1, 2), []byte("cancelled"), hour, now); err == nil {
		t.Fatal("PutLodged with a cancelled context succeeded")
	}
	checkLodged(t, s, id, now, want)

	// Expiry: the other tenant's record expires at hour; exactly then it
	// is gone, and a write at a later time deletes it for good.
	checkLodged(t, s, other, hour.Add(-time.Nanosecond), map[store.LodgedKey]lodgedRec{lkey(1, 1): {[]byte("other"), hour}})
	checkLodged(t, s, other, hour, map[store.LodgedKey]lodgedRec{})
	later := now.Add(4 * time.Hour)
	if err := s.PutLodged(ctx, other, lkey(2, 0), []byte("new"), later.Add(time.Hour), later); err != nil {
		t.Fatal(err)
	}
	checkLodged(t, s, other, now, map[store.LodgedKey]lodgedRec{lkey(2, 0): {[]byte("new"), later.Add(time.Hour)}})
	// id's records are not touched by the other tenant's write.
	checkLodged(t, s, id, now, want)

	// An error from fn stops the walk.
	stop := errors.New("stop")
	if err := s.LodgedRecords(ctx, id, now, func(store.LodgedKey, []byte, time.Time) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("LodgedRecords = %v, want fn's error", err)
	}
}

func vrfIn(n int) [32]byte { return [32]byte{byte(n >> 8), byte(n), 0xee} }

func vrfOut(key byte, n int) []byte {
	return bytes.Repeat([]byte{key, byte(n)}, 56)
}

// ReadVRFOutputs returns the outputs stored under key for inputs, nil
// where none is.
func ReadVRFOutputs(ctx context.Context, s store.DirectoryStore, key [32]byte, inputs [][32]byte) ([][]byte, error) {
	out := make([][]byte, len(inputs))
	last := -1
	var order error
	err := s.GetVRFOutputs(ctx, key, inputs, func(i int, o []byte) {
		if i <= last || i >= len(inputs) {
			order = fmt.Errorf("GetVRFOutputs: index %d after %d", i, last)
		}
		last = i
		out[i] = bytes.Clone(o)
	})
	return out, errors.Join(err, order)
}

// testVRFOutputs: outputs are stored by key and input, replaced by a
// later write, found in input order with the missing ones skipped, not
// aliased, kept beside epochs, and dropped for every key but the one
// kept; invalid writes are refused.
func testVRFOutputs(t *testing.T, s store.DirectoryStore) {
	ctx := context.Background()
	k1, k2 := [32]byte{1}, [32]byte{2}
	var outs []store.VRFOutput
	for n := range 300 {
		outs = append(outs, store.VRFOutput{Input: vrfIn(n), Output: vrfOut(1, n)})
	}
	if err := s.PutVRFOutputs(ctx, k1, outs); err != nil {
		t.Fatalf("PutVRFOutputs on an empty store: %v", err)
	}
	outs[0].Output[0] = 0xff // the store holds its own copy
	m := NewModel(t, s, 32)
	m.MustCommit(t, Spec{NewLabels: 3, Tenants: 1})
	if err := s.PutVRFOutputs(ctx, k2, []store.VRFOutput{{Input: vrfIn(5), Output: vrfOut(2, 5)}}); err != nil {
		t.Fatal(err)
	}
	// Replaced.
	if err := s.PutVRFOutputs(ctx, k1, []store.VRFOutput{{Input: vrfIn(7), Output: []byte("short")}}); err != nil {
		t.Fatal(err)
	}
	inputs := [][32]byte{vrfIn(299), vrfIn(1000), vrfIn(0), vrfIn(7), vrfIn(5)}
	got, err := ReadVRFOutputs(ctx, s, k1, inputs)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]byte{vrfOut(1, 299), nil, vrfOut(1, 0), []byte("short"), vrfOut(1, 5)}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("output %d: %x, want %x", i, got[i], want[i])
		}
	}
	got, err = ReadVRFOutputs(ctx, s, k2, inputs)
	if err != nil {
		t.Fatal(err)
	}
	if got[4] == nil || !bytes.Equal(got[4], vrfOut(2, 5)) || got[0] != nil || got[2] != nil {
		t.Fatal("outputs of another key")
	}
	for name, bad := range map[string][]store.VRFOutput{
		"empty":     {{Input: vrfIn(1)}},
		"too large": {{Input: vrfIn(1), Output: make([]byte, store.MaxVRFOutputSize+1)}},
	} {
		if err := s.PutVRFOutputs(ctx, k1, bad); !errors.Is(err, store.ErrInvalidCommit) {
			t.Fatalf("%s: PutVRFOutputs = %v, want ErrInvalidCommit", name, err)
		}
	}
	if got, _ := ReadVRFOutputs(ctx, s, k1, inputs[:1]); !bytes.Equal(got[0], vrfOut(1, 299)) {
		t.Fatal("a refused write changed an output")
	}
	// Dropping: k2's go, k1's stay.
	if err := s.DropVRFOutputs(ctx, k1); err != nil {
		t.Fatal(err)
	}
	if got, _ := ReadVRFOutputs(ctx, s, k2, inputs); got[4] != nil {
		t.Fatal("DropVRFOutputs kept another key's output")
	}
	if got, _ := ReadVRFOutputs(ctx, s, k1, inputs); !bytes.Equal(got[2], vrfOut(1, 0)) {
		t.Fatal("DropVRFOutputs dropped the kept key's output")
	}
	if err := s.GetVRFOutputs(ctx, k1, make([][32]byte, store.MaxVRFOutputs+1), func(int, []byte) {}); !errors.Is(err, store.ErrInvalidCommit) {
		t.Fatalf("GetVRFOutputs of too many inputs = %v", err)
	}
}

// testReopenSide: lodged records survive a reopen (with their expiry),
// VRF outputs written before a clean close too.
func testReopenSide(t *testing.T, open func(t *testing.T, dir string) store.DirectoryStore) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	id := [16]byte{7}
	now := lodgedT0
	m := NewModel(t, s, 104)
	m.MustCommit(t, Spec{NewLabels: 5, Tenants: 1})
	want := map[store.LodgedKey]lodgedRec{}
	for n := range 5 {
		v := bytes.Repeat([]byte{byte(n)}, 100+n*3000) // one over the value threshold
		exp := now.Add(time.Duration(n+1) * time.Hour)
		if err := s.PutLodged(ctx, id, lkey(3, byte(n)), v, exp, now); err != nil {
			t.Fatal(err)
		}
		want[lkey(3, byte(n))] = lodgedRec{v, exp}
	}
	if err := s.PutLodged(ctx, id, lkey(3, 2), nil, time.Time{}, now); err != nil {
		t.Fatal(err)
	}
	delete(want, lkey(3, 2))
	key := [32]byte{9}
	if err := s.PutVRFOutputs(ctx, key, []store.VRFOutput{{Input: vrfIn(1), Output: vrfOut(9, 1)}}); err != nil {
		t.Fatal(err)
	}
	closeStore(t, s)
	s = open(t, dir)
	checkLodged(t, s, id, now, want)
	// The first record (1 hour) has expired 90 minutes later.
	delete(want, lkey(3, 0))
	checkLodged(t, s, id, now.Add(90*time.Minute), want)
	got, err := ReadVRFOutputs(ctx, s, key, [][32]byte{vrfIn(1)})
	if err != nil || !bytes.Equal(got[0], vrfOut(9, 1)) {
		t.Fatalf("VRF output after reopen: %x, %v", got[0], err)
	}
	m.S = s
	m.Reset(t)
	m.Check(t, true)
	closeStore(t, s)
}
