package badgertokens_test

import (
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/moat-im/moat/server/store/tokens/badgertokens"
)

// add adds d to the 8-byte counters of keys and returns their new values.
func add(t *testing.T, s *badgertokens.Store, d uint64, keys ...string) []uint64 {
	t.Helper()
	var got []uint64
	ks := make([][]byte, len(keys))
	for i, k := range keys {
		ks[i] = []byte(k)
	}
	ok(t, s.Charge(ks, func(old [][]byte) ([][]byte, time.Duration, error) {
		out := make([][]byte, len(old))
		got = got[:0]
		for i, v := range old {
			var n uint64
			if v != nil {
				n = binary.BigEndian.Uint64(v)
			}
			out[i] = binary.BigEndian.AppendUint64(nil, n+d)
			got = append(got, n+d)
		}
		return out, time.Hour, nil
	}))
	return got
}

// TestQuotaCharge: counters survive a reopen; concurrent charges of one
// key, run in shared group commits, all count; a refused charge and
// invalid charges store nothing.
func TestQuotaCharge(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	add(t, s, 5, "dev", "ten")
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			err := s.Charge([][]byte{[]byte("ten")}, func(old [][]byte) ([][]byte, time.Duration, error) {
				return [][]byte{binary.BigEndian.AppendUint64(nil, binary.BigEndian.Uint64(old[0])+1)}, time.Hour, nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	refused := errors.New("over quota")
	if err := s.Charge([][]byte{[]byte("dev")}, func([][]byte) ([][]byte, time.Duration, error) {
		return nil, 0, refused
	}); err != refused {
		t.Fatalf("refused charge: %v", err)
	}
	for name, c := range map[string]struct {
		keys [][]byte
		vals [][]byte
		ttl  time.Duration
	}{
		"no key":      {nil, nil, time.Hour},
		"empty key":   {[][]byte{{}}, [][]byte{{1}}, time.Hour},
		"long key":    {[][]byte{make([]byte, badgertokens.MaxQuotaKey+1)}, [][]byte{{1}}, time.Hour},
		"many keys":   {[][]byte{{1}, {2}, {3}, {4}, {5}}, [][]byte{{1}, {1}, {1}, {1}, {1}}, time.Hour},
		"empty value": {[][]byte{[]byte("dev")}, [][]byte{{}}, time.Hour},
		"long value":  {[][]byte{[]byte("dev")}, [][]byte{make([]byte, badgertokens.MaxQuotaValue+1)}, time.Hour},
		"few values":  {[][]byte{[]byte("dev"), []byte("ten")}, [][]byte{{1}}, time.Hour},
		"no ttl":      {[][]byte{[]byte("dev")}, [][]byte{{1}}, 0},
	} {
		err := s.Charge(c.keys, func([][]byte) ([][]byte, time.Duration, error) { return c.vals, c.ttl, nil })
		if !errors.Is(err, badgertokens.ErrQuotaRequest) {
			t.Errorf("%s: %v", name, err)
		}
	}
	ok(t, s.Close())
	s = open(t, dir)
	if got := add(t, s, 0, "dev", "ten"); got[0] != 5 || got[1] != 5+64 {
		t.Fatalf("after reopen: %v, want [5 69]", got)
	}
}

// TestQuotaExpiry: a counter reads as absent once its TTL has passed.
func TestQuotaExpiry(t *testing.T) {
	s := open(t, t.TempDir())
	k := [][]byte{[]byte("k")}
	ok(t, s.Charge(k, func([][]byte) ([][]byte, time.Duration, error) {
		return [][]byte{{7}}, time.Second, nil
	}))
	// Badger's TTL has a resolution of one second: wait until the
	// record has certainly expired.
	time.Sleep(2100 * time.Millisecond)
	ok(t, s.Charge(k, func(old [][]byte) ([][]byte, time.Duration, error) {
		if old[0] != nil {
			t.Errorf("expired record read as %x", old[0])
		}
		return [][]byte{{1}}, time.Hour, nil
	}))
}
