package badgermailbox

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/moat-im/moat/server/store/mailbox"
	"github.com/moat-im/moat/server/store/mailbox/mailboxtest"
)

// fill enqueues n messages of size bytes in each of boxes, one goroutine
// a mailbox, and returns them by mailbox.
func fill(t *testing.T, s *Store, clock *mailboxtest.Clock, boxes, n, size int) map[mailbox.ID][]mailbox.Stored {
	t.Helper()
	out := make([][]mailbox.Stored, boxes)
	errs := make([]error, boxes)
	var wg sync.WaitGroup
	for b := range boxes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mb := mailboxtest.Box(b)
			for i := range n {
				m := mailboxtest.Msg(mb, i, 0, size, clock.Now(), time.Hour)
				r, err := s.Enqueue(context.Background(), mb, m)
				if err != nil {
					errs[b] = err
					return
				}
				out[b] = append(out[b], mailbox.Stored{Seq: r.Seq, Message: m})
			}
		}()
	}
	wg.Wait()
	m := map[mailbox.ID][]mailbox.Stored{}
	for b := range boxes {
		if errs[b] != nil {
			t.Fatal(errs[b])
		}
		m[mailboxtest.Box(b)] = out[b]
	}
	return m
}

// readAll fetches every mailbox of want and checks that nothing returned
// differs from what was written. It returns the first read error.
func readAll(t *testing.T, s *Store, want map[mailbox.ID][]mailbox.Stored) error {
	t.Helper()
	for mb, msgs := range want {
		bySeq := map[uint64]mailbox.Stored{}
		for _, m := range msgs {
			bySeq[m.Seq] = m
		}
		after := uint64(0)
		for {
			p, err := s.Fetch(context.Background(), mb, after, mailbox.MaxFetch)
			if err != nil {
				return err
			}
			if len(p.Messages) == 0 {
				break
			}
			for _, g := range p.Messages {
				w, ok := bySeq[g.Seq]
				if !ok || g.ID != w.ID || !bytes.Equal(g.Body, w.Body) {
					t.Fatalf("mailbox %v seq %d: returned bytes that were not written", mb, g.Seq)
				}
				after = g.Seq
			}
		}
	}
	return nil
}

// flipIn flips one bit in the middle of the first occurrence of needle in
// the files matching pattern in dir, and reports whether it found one.
func flipIn(t *testing.T, dir, pattern string, needle []byte) bool {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, pattern))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		at := bytes.Index(b, needle)
		if at < 0 {
			continue
		}
		b[at+len(needle)/2] ^= 0x10
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return true
	}
	return false
}

// crashImage copies the files of an open store's directory, as a crash
// would leave them (badger's logs not flushed to tables).
func crashImage(t *testing.T, s *Store) string {
	t.Helper()
	if err := s.writeWatermark(s.readTs.Load()); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "LOCK" || !e.Type().IsRegular() {
			continue
		}
		in, err := os.Open(filepath.Join(s.dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(filepath.Join(dst, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			t.Fatal(err)
		}
		in.Close()
		out.Close()
	}
	return dst
}

func openErr(dir string, clock *mailboxtest.Clock, skipVerify bool) (*Store, error) {
	opts := testOptions(dir, mailboxtest.Config{Now: clock.Now})
	opts.SkipVerify = skipVerify
	return Open(context.Background(), opts)
}

func wantCorrupt(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, mailbox.ErrCorrupt) {
		t.Fatalf("%s: %v, want ErrCorrupt", what, err)
	}
	t.Logf("%s: %v", what, err)
}

// TestT39Corruption damages the data directory (flipped bits, truncated
// files, records changed under badger) and checks that Open or the read
// fails with ErrCorrupt, and that no read ever returns bytes other than
// those written.
func TestT39Corruption(t *testing.T) {
	clock := mailboxtest.NewClock()
	newStore := func(t *testing.T) (*Store, string, map[mailbox.ID][]mailbox.Stored) {
		dir := t.TempDir()
		s := openTest(t, testOptions(dir, mailboxtest.Config{Now: clock.Now}))
		return s, dir, fill(t, s, clock, 4, 50, 700)
	}

	t.Run("table bit flip", func(t *testing.T) {
		s, dir, want := newStore(t)
		s.Close() // flushes the memtable to a table
		victim := want[mailboxtest.Box(2)][17].Body
		if !flipIn(t, dir, "*.sst", victim[100:140]) {
			t.Fatal("record not found in the tables")
		}
		_, err := openErr(dir, clock, false)
		wantCorrupt(t, "Open", err)
		// Without the check at Open, reads never return the damaged
		// bytes, and Verify reports the damage.
		s, err = openErr(dir, clock, true)
		if err != nil {
			t.Fatalf("Open without Verify: %v", err)
		}
		defer s.Close()
		if err := readAll(t, s, want); err != nil {
			wantCorrupt(t, "read", err)
		}
		wantCorrupt(t, "Verify", s.Verify(context.Background()))
	})

	t.Run("table truncated", func(t *testing.T) {
		s, dir, _ := newStore(t)
		s.Close()
		files, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
		if len(files) == 0 {
			t.Fatal("no table")
		}
		fi, _ := os.Stat(files[0])
		if err := os.Truncate(files[0], fi.Size()/2); err != nil {
			t.Fatal(err)
		}
		_, err := openErr(dir, clock, false)
		wantCorrupt(t, "Open", err)
	})

	t.Run("log bit flip", func(t *testing.T) {
		s, _, want := newStore(t)
		img := crashImage(t, s)
		s.Close()
		victim := want[mailboxtest.Box(1)][30].Body
		if !flipIn(t, img, "*.mem", victim[100:140]) {
			t.Fatal("record not found in the write-ahead log")
		}
		_, err := openErr(img, clock, false)
		wantCorrupt(t, "Open", err)
	})

	t.Run("log truncated", func(t *testing.T) {
		s, _, _ := newStore(t)
		img := crashImage(t, s)
		s.Close()
		files, _ := filepath.Glob(filepath.Join(img, "*.mem"))
		if len(files) == 0 {
			t.Fatal("no log")
		}
		// Cut the log in the middle of its data: badger mmaps a log at its
		// full size, so find where the entries end first.
		b, _ := os.ReadFile(files[0])
		end := len(bytes.TrimRight(b, "\x00"))
		if err := os.Truncate(files[0], int64(end/2)); err != nil {
			t.Fatal(err)
		}
		_, err := openErr(img, clock, false)
		wantCorrupt(t, "Open", err)
	})

	t.Run("crash image opens", func(t *testing.T) {
		// The control: an undamaged crash image opens with everything.
		s, _, want := newStore(t)
		img := crashImage(t, s)
		s.Close()
		s, err := openErr(img, clock, false)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := readAll(t, s, want); err != nil {
			t.Fatal(err)
		}
		for mb, msgs := range want {
			p, err := s.Fetch(context.Background(), mb, 0, mailbox.MaxFetch)
			if err != nil || len(p.Messages) != len(msgs) {
				t.Fatalf("crash image: %d messages, %v", len(p.Messages), err)
			}
		}
	})

	t.Run("watermark damaged", func(t *testing.T) {
		s, dir, _ := newStore(t)
		s.Close()
		p := filepath.Join(dir, WatermarkFile)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)-6] ^= 1
		os.WriteFile(p, b, 0o600)
		_, err = openErr(dir, clock, false)
		wantCorrupt(t, "Open", err)
	})

	// Records changed under badger, whose checksums are then intact: the
	// store's own checks catch them.
	rawCases := []struct {
		name   string
		change func(t *testing.T, txn *badger.Txn, want map[mailbox.ID][]mailbox.Stored)
		read   bool // a read of the mailbox fails too
	}{
		{"record checksum", func(t *testing.T, txn *badger.Txn, want map[mailbox.ID][]mailbox.Stored) {
			k := msgKey(mailboxtest.Box(0), want[mailboxtest.Box(0)][5].Seq)
			v := getRaw(t, txn, k)
			v[40] ^= 1
			txn.Set(k, v)
		}, true},
		{"record moved to another key", func(t *testing.T, txn *badger.Txn, want map[mailbox.ID][]mailbox.Stored) {
			a, b := want[mailboxtest.Box(0)][5].Seq, want[mailboxtest.Box(0)][6].Seq
			txn.Set(msgKey(mailboxtest.Box(0), b), getRaw(t, txn, msgKey(mailboxtest.Box(0), a)))
		}, true},
		{"meta lost under acknowledged records", func(t *testing.T, txn *badger.Txn, want map[mailbox.ID][]mailbox.Stored) {
			txn.Delete(metaKey(mailboxtest.Box(3)))
		}, false},
		{"meta below acknowledged records", func(t *testing.T, txn *badger.Txn, want map[mailbox.ID][]mailbox.Stored) {
			txn.Set(metaKey(mailboxtest.Box(3)), encodeMeta(metaKey(mailboxtest.Box(3)), 2, 0))
		}, false},
		{"unknown record kind", func(t *testing.T, txn *badger.Txn, want map[mailbox.ID][]mailbox.Stored) {
			k := msgKey(mailboxtest.Box(1), want[mailboxtest.Box(1)][7].Seq)
			v := getRaw(t, txn, k)
			v = v[:len(v)-crcSize]
			v[1] = 9
			txn.Set(k, seal(k, v))
		}, true},
		{"deduplication time past expiry", func(t *testing.T, txn *badger.Txn, want map[mailbox.ID][]mailbox.Stored) {
			k := msgKey(mailboxtest.Box(2), want[mailboxtest.Box(2)][3].Seq)
			m := want[mailboxtest.Box(2)][3]
			exp := m.Expires.UnixMilli()
			txn.Set(k, seal(k, encodeHeld(m.ID, exp, exp+1, m.Body)))
		}, true},
		{"empty value", func(t *testing.T, txn *badger.Txn, want map[mailbox.ID][]mailbox.Stored) {
			txn.Set(msgKey(mailboxtest.Box(2), want[mailboxtest.Box(2)][0].Seq), nil)
		}, true},
	}
	for _, tc := range rawCases {
		t.Run(tc.name, func(t *testing.T) {
			s, dir, want := newStore(t)
			ackBox3(t, s, want)
			rawUpdate(t, s, func(txn *badger.Txn) { tc.change(t, txn, want) })
			if tc.read {
				wantCorrupt(t, "read", readAll(t, s, want))
			}
			wantCorrupt(t, "Verify", s.Verify(context.Background()))
			s.Close()
			_, err := openErr(dir, clock, false)
			wantCorrupt(t, "Open", err)
		})
	}

	t.Run("meta lost, no reuse", func(t *testing.T) {
		// Without the check at Open, a mailbox whose meta record is gone
		// still numbers above its acknowledged records, which outlive the
		// acknowledgement by the deduplication window.
		s, dir, want := newStore(t)
		mb := mailboxtest.Box(3)
		msgs := want[mb]
		if err := s.Ack(context.Background(), mb, msgs[len(msgs)-1].Seq); err != nil {
			t.Fatal(err)
		}
		rawUpdate(t, s, func(txn *badger.Txn) { txn.Delete(metaKey(mb)) })
		s.Close()
		s, err := openErr(dir, clock, true)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		r, err := s.Enqueue(context.Background(), mb, mailboxtest.Msg(mb, 999, 0, 10, clock.Now(), time.Hour))
		if err != nil || r.Seq != msgs[len(msgs)-1].Seq+1 {
			t.Fatalf("Enqueue after the meta record was lost: %+v, %v; want seq %d", r, err, msgs[len(msgs)-1].Seq+1)
		}
	})

	t.Run("version past the commit record", func(t *testing.T) {
		s, dir, _ := newStore(t)
		txn := s.db.NewTransactionAt(s.ts, true)
		txn.Set(metaKey(mailboxtest.Box(9)), encodeMeta(metaKey(mailboxtest.Box(9)), 5, 0))
		if err := txn.CommitAt(s.ts+1, nil); err != nil {
			t.Fatal(err)
		}
		s.Close()
		_, err := openErr(dir, clock, false)
		wantCorrupt(t, "Open", err)
		if !strings.Contains(err.Error(), "last commit") {
			t.Fatalf("unexpected error: %v", err)
		}
	})
}

func getRaw(t *testing.T, txn *badger.Txn, k []byte) []byte {
	t.Helper()
	item, err := txn.Get(k)
	if err != nil {
		t.Fatal(err)
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// rawUpdate changes the database under the store, as a batch would
// (next timestamp, commit record), bypassing its checks.
func rawUpdate(t *testing.T, s *Store, fn func(txn *badger.Txn)) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := s.ts + 1
	txn := s.db.NewTransactionAt(s.ts, true)
	defer txn.Discard()
	fn(txn)
	if err := txn.Set(keyCommit, encodeCommit(ts)); err != nil {
		t.Fatal(err)
	}
	if err := txn.CommitAt(ts, nil); err != nil {
		t.Fatal(err)
	}
	s.ts = ts
	s.readTs.Store(ts)
}

// ackBox3 acknowledges the first ten messages of mailbox 3, so that it
// has acknowledged records and a "Q" record.
func ackBox3(t *testing.T, s *Store, want map[mailbox.ID][]mailbox.Stored) {
	t.Helper()
	mb := mailboxtest.Box(3)
	if err := s.Ack(context.Background(), mb, want[mb][9].Seq); err != nil {
		t.Fatal(err)
	}
	want[mb] = want[mb][10:]
}
