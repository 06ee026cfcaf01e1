package badgermailbox

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/moat-im/moat/server/store/mailbox"
	"github.com/moat-im/moat/server/store/mailbox/mailboxtest"
)

// testMemTable is the smallest memtable the default limits fit.
const testMemTable = 16 << 20

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testOptions(dir string, cfg mailboxtest.Config) Options {
	return Options{Dir: dir, Limits: cfg.Limits, Now: cfg.Now, Logger: quietLogger(), MemTableSize: testMemTable, SweepInterval: -1}
}

func openTest(t testing.TB, opts Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	mailboxtest.Run(t, func(t *testing.T, cfg mailboxtest.Config) mailbox.Store {
		s := openTest(t, testOptions(t.TempDir(), cfg))
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestDurable(t *testing.T) {
	mailboxtest.RunDurable(t, func(t *testing.T, dir string, cfg mailboxtest.Config) mailbox.Store {
		s := openTest(t, testOptions(dir, cfg))
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestOldSchema checks that Open refuses a store of schema 1 or 2 with
// ErrOldSchema, every time (the refused Open changes nothing).
func TestOldSchema(t *testing.T) {
	for _, old := range []string{"schema 1", "schema 2"} {
		dir := t.TempDir()
		s := openTest(t, testOptions(dir, mailboxtest.Config{}))
		rawUpdate(t, s, func(txn *badger.Txn) {
			if err := txn.Set(keySchema, []byte("moat relay mailbox store, badger "+old)); err != nil {
				t.Fatal(err)
			}
		})
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			_, err := Open(context.Background(), testOptions(dir, mailboxtest.Config{}))
			if !errors.Is(err, ErrOldSchema) || !strings.Contains(err.Error(), old) {
				t.Fatalf("Open of a %s store: %v, want ErrOldSchema naming it", old, err)
			}
		}
	}
}

// TestOneBatch applies enqueues, an ack of them and retries in ONE batch,
// so that the ack finds the batch's own messages (not yet in badger) and
// the retries find their acknowledged records. The results must be the
// same however the writer splits the requests into batches; the test
// repeats, in fresh mailboxes, until one attempt ran as one batch.
func TestOneBatch(t *testing.T) {
	clock := mailboxtest.NewClock()
	s := openTest(t, testOptions(t.TempDir(), mailboxtest.Config{Now: clock.Now}))
	defer s.Close()
	oneBatch := false
	for attempt := 0; attempt < 20 && !oneBatch; attempt++ {
		mb := mailboxtest.Box(100 + attempt)
		m1 := mailboxtest.Msg(mb, 1, 0, 100, clock.Now(), time.Hour)
		m2 := mailboxtest.Msg(mb, 2, 0, 200, clock.Now(), time.Hour)
		m3 := mailboxtest.Msg(mb, 3, 0, 300, clock.Now(), time.Hour)
		conflict := mailboxtest.Msg(mb, 1, 1, 100, clock.Now(), time.Hour) // m1's id, another body
		var reqs []*request
		for _, m := range []mailbox.Message{m1, m2} {
			r, err := s.enqueueRequest(mb, &m)
			if err != nil {
				t.Fatal(err)
			}
			reqs = append(reqs, r)
		}
		reqs = append(reqs, &request{kind: reqAck, mb: mb, upTo: 2})
		for _, m := range []mailbox.Message{m1, conflict, m3} {
			r, err := s.enqueueRequest(mb, &m)
			if err != nil {
				t.Fatal(err)
			}
			reqs = append(reqs, r)
		}
		// Hold the writer at its next batch with a request of its own
		// (which writes nothing), queue the others, then let it go: it
		// drains them into one batch unless it drained some with the
		// first.
		s.mu.Lock()
		first := &request{kind: reqAck, mb: mailboxtest.Box(2), done: make(chan struct{})}
		s.reqs <- first
		for _, r := range reqs {
			r.done = make(chan struct{})
			s.reqs <- r
		}
		ts := s.ts
		s.mu.Unlock()
		<-first.done
		for _, r := range reqs {
			<-r.done
		}
		oneBatch = s.ts == ts+1
		want := []struct {
			rc  mailbox.Receipt
			err error
		}{{mailbox.Receipt{Seq: 1, Head: 1}, nil}, {mailbox.Receipt{Seq: 2, Head: 2}, nil}, {}, {mailbox.Receipt{Seq: 1, Duplicate: true, Head: 2}, nil}, {mailbox.Receipt{}, mailbox.ErrIDConflict}, {mailbox.Receipt{Seq: 3, Head: 3}, nil}}
		for i, r := range reqs {
			if r.receipt != want[i].rc || !errors.Is(r.err, want[i].err) || (want[i].err == nil && r.err != nil) {
				t.Errorf("request %d: %+v, %v; want %+v, %v", i, r.receipt, r.err, want[i].rc, want[i].err)
			}
		}
		st, err := s.Status(context.Background(), mb)
		if err != nil || st != (mailbox.Status{Head: 3, Acked: 2, Messages: 1, Bytes: 300}) {
			t.Fatalf("Status: %+v, %v", st, err)
		}
		p, err := s.Fetch(context.Background(), mb, 0, 10)
		if err != nil || len(p.Messages) != 1 || p.Messages[0].Seq != 3 || p.Head != 3 {
			t.Fatalf("Fetch: %+v, %v", p, err)
		}
	}
	if !oneBatch {
		t.Fatal("no attempt ran as one batch")
	}
	if err := s.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	// After a reopen, the acknowledged records still deduplicate.
	dir := s.dir
	s.Close()
	s = openTest(t, testOptions(dir, mailboxtest.Config{Now: clock.Now}))
	defer s.Close()
	mb := mailboxtest.Box(100)
	m2 := mailboxtest.Msg(mb, 2, 0, 200, clock.Now(), time.Hour)
	if r, err := s.Enqueue(context.Background(), mb, m2); err != nil || r != (mailbox.Receipt{Seq: 2, Duplicate: true, Head: 3}) {
		t.Fatalf("retry of an acknowledged message after reopen: %+v, %v", r, err)
	}
}

// TestRecordBuffersReused: the value buffers of synced batches go back to
// recordBufs and later enqueues write into them; every message keeps its
// own body, read from the store before and after a reopen.
func TestRecordBuffersReused(t *testing.T) {
	dir := t.TempDir()
	opts := testOptions(dir, mailboxtest.Config{})
	s := openTest(t, opts)
	ctx := context.Background()
	mb := mailboxtest.Box(1)
	const n, size = 400, 1000
	body := func(i int) []byte {
		b := make([]byte, size)
		for j := range b {
			b[j] = byte(i*7 + j)
		}
		return b
	}
	exp := time.Now().Add(time.Hour)
	var wg sync.WaitGroup
	for i := range n {
		if i%4 == 0 {
			wg.Wait() // some batches sync before the next enqueues take their buffers
		}
		wg.Go(func() {
			var id mailbox.MessageID
			binary.BigEndian.PutUint64(id[:], uint64(i))
			if _, err := s.Enqueue(ctx, mb, mailbox.Message{ID: id, Expires: exp, Body: body(i)}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	check := func(s *Store) {
		t.Helper()
		seen := 0
		for after := uint64(0); ; {
			p, err := s.Fetch(ctx, mb, after, mailbox.MaxFetch)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Messages) == 0 {
				break
			}
			for _, m := range p.Messages {
				i := int(binary.BigEndian.Uint64(m.ID[:]))
				if !bytes.Equal(m.Body, body(i)) {
					t.Fatalf("message %d (seq %d) has another body", i, m.Seq)
				}
				seen++
				after = m.Seq
			}
		}
		if seen != n {
			t.Fatalf("%d messages, want %d", seen, n)
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, opts)
	defer s.Close()
	check(s)
}
