package badgermailbox

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/moat-im/moat/internal/faultfs"
	"github.com/moat-im/moat/server/store/mailbox"
	"github.com/moat-im/moat/server/store/mailbox/mailboxtest"
)

// model records what the store acknowledged: every enqueue that returned
// a receipt and every ack that returned nil.
type model struct {
	mu    sync.Mutex
	msgs  map[mailbox.ID]map[mailbox.MessageID]ackedMsg
	acked map[mailbox.ID]uint64
}

type ackedMsg struct {
	seq  uint64
	body []byte
}

func newModel() *model {
	return &model{msgs: map[mailbox.ID]map[mailbox.MessageID]ackedMsg{}, acked: map[mailbox.ID]uint64{}}
}

func (m *model) enqueued(t testing.TB, mb mailbox.ID, msg mailbox.Message, r mailbox.Receipt) {
	m.mu.Lock()
	defer m.mu.Unlock()
	box := m.msgs[mb]
	if box == nil {
		box = map[mailbox.MessageID]ackedMsg{}
		m.msgs[mb] = box
	}
	if old, ok := box[msg.ID]; ok && old.seq != r.Seq {
		t.Errorf("mailbox %v message %v: receipt seq %d, earlier %d", mb, msg.ID, r.Seq, old.seq)
	}
	box[msg.ID] = ackedMsg{r.Seq, msg.Body}
}

func (m *model) ackedUpTo(mb mailbox.ID, upTo uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.acked[mb] = max(m.acked[mb], upTo)
}

// check verifies that every acknowledged message not acknowledged away is
// in the store exactly once, with its sequence number and body, and that
// no message id appears twice.
func (m *model) check(t testing.TB, s mailbox.Store) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	ctx := context.Background()
	for mb, box := range m.msgs {
		seen := map[mailbox.MessageID]uint64{}
		after := uint64(0)
		for {
			p, err := s.Fetch(ctx, mb, after, mailbox.MaxFetch)
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if len(p.Messages) == 0 {
				break
			}
			for _, st := range p.Messages {
				if prev, dup := seen[st.ID]; dup {
					t.Fatalf("mailbox %v: message %v stored twice (seq %d and %d)", mb, st.ID, prev, st.Seq)
				}
				seen[st.ID] = st.Seq
				if w, ok := box[st.ID]; ok && (w.seq != st.Seq || !bytes.Equal(w.body, st.Body)) {
					t.Fatalf("mailbox %v message %v: stored at seq %d, acknowledged at %d (bodies equal: %v)", mb, st.ID, st.Seq, w.seq, bytes.Equal(w.body, st.Body))
				}
				after = st.Seq
			}
		}
		lost := 0
		for id, w := range box {
			if w.seq <= m.acked[mb] {
				continue
			}
			if _, ok := seen[id]; !ok {
				lost++
			}
		}
		if lost > 0 {
			t.Fatalf("mailbox %v: %d acknowledged messages lost", mb, lost)
		}
		st, err := s.Status(ctx, mb)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range box {
			if w.seq > st.Head {
				t.Fatalf("mailbox %v: head %d below acknowledged seq %d", mb, st.Head, w.seq)
			}
		}
	}
}

// producers enqueues n messages in each of boxes from workers goroutines,
// recording what is acknowledged, and returns the messages that failed
// and the errors.
func producers(s mailbox.Store, m *model, t testing.TB, clock *mailboxtest.Clock, round, workers, n int, boxes []mailbox.ID) (failed map[mailbox.ID][]mailbox.Message, errs []error) {
	var mu sync.Mutex
	failed = map[mailbox.ID][]mailbox.Message{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				mb := boxes[(w+i)%len(boxes)]
				msg := mailboxtest.Msg(mb, round*1_000_000+w*1000+i, 0, 200+i%50, clock.Now(), time.Hour)
				r, err := s.Enqueue(context.Background(), mb, msg)
				if err != nil {
					mu.Lock()
					failed[mb] = append(failed[mb], msg)
					errs = append(errs, err)
					mu.Unlock()
					continue
				}
				m.enqueued(t, mb, msg, r)
			}
		}()
	}
	wg.Wait()
	return failed, errs
}

func allUnavailable(t *testing.T, errs []error, what string) {
	t.Helper()
	for _, err := range errs {
		if !errors.Is(err, mailbox.ErrUnavailable) {
			t.Fatalf("%s: error %v, want ErrUnavailable", what, err)
		}
	}
}

// waitUp waits until the store serves again after a failure.
func waitUp(t *testing.T, s *Store) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := s.Status(context.Background(), mailboxtest.Box(0))
		if err == nil {
			return
		}
		if !errors.Is(err, mailbox.ErrUnavailable) {
			t.Fatalf("while recovering: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the store did not recover")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// retry re-sends failed messages until they are acknowledged.
func retry(t *testing.T, s mailbox.Store, m *model, failed map[mailbox.ID][]mailbox.Message) (dups int) {
	t.Helper()
	for mb, msgs := range failed {
		for _, msg := range msgs {
			r, err := s.Enqueue(context.Background(), mb, msg)
			if err != nil {
				t.Fatalf("retry: %v", err)
			}
			if r.Duplicate {
				dups++
			}
			m.enqueued(t, mb, msg, r)
		}
	}
	return dups
}

// TestT38DiskFull injects a full disk and failing syncs under concurrent
// enqueues (never skipped): writes fail closed with ErrUnavailable, no
// acknowledged message is lost or duplicated, acks and reads go on where
// they can, and the store serves again once the condition clears, across
// a reopen too.
func TestT38DiskFull(t *testing.T) {
	dir := t.TempDir()
	clock := mailboxtest.NewClock()
	inj := faultfs.New()
	opts := testOptions(dir, mailboxtest.Config{Now: clock.Now})
	opts.Faults = inj
	opts.DiskReserve = 1 << 30
	s := openTest(t, opts)
	defer func() { s.Close() }()
	ctx := context.Background()
	m := newModel()
	boxes := []mailbox.ID{mailboxtest.Box(0), mailboxtest.Box(1), mailboxtest.Box(2)}

	if failed, errs := producers(s, m, t, clock, 0, 16, 20, boxes); len(errs) > 0 {
		t.Fatalf("healthy store: %d failures: %v (%d mailboxes)", len(errs), errs[0], len(failed))
	}
	m.check(t, s)

	// 1. Free space below the reserve: enqueues refused before any write;
	// acks and reads still served.
	inj.SetFree(1 << 20)
	failed, errs := producers(s, m, t, clock, 1, 8, 10, boxes)
	if len(errs) != 80 {
		t.Fatalf("below the reserve: %d of 80 enqueues failed", len(errs))
	}
	allUnavailable(t, errs, "below the reserve")
	st, err := s.Status(ctx, boxes[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(ctx, boxes[0], st.Head/2); err != nil {
		t.Fatalf("ack below the reserve: %v", err)
	}
	m.ackedUpTo(boxes[0], st.Head/2)
	m.check(t, s)
	inj.SetFree(-1)
	if dups := retry(t, s, m, failed); dups != 0 {
		t.Fatalf("%d refused enqueues were stored anyway", dups)
	}
	m.check(t, s)

	// 2. Writes fail (ENOSPC) before badger sees them: every enqueue of
	// the batch fails, nothing is stored, and the store serves reads.
	inj.SetFull(true)
	failed, errs = producers(s, m, t, clock, 2, 8, 10, boxes)
	if len(errs) != 80 {
		t.Fatalf("disk full: %d of 80 enqueues failed", len(errs))
	}
	allUnavailable(t, errs, "disk full")
	if err := s.Ack(ctx, boxes[1], 1); !errors.Is(err, mailbox.ErrUnavailable) {
		t.Fatalf("ack on a full disk: %v", err)
	}
	m.check(t, s)
	inj.SetFull(false)
	if dups := retry(t, s, m, failed); dups != 0 {
		t.Fatalf("%d failed enqueues were stored anyway", dups)
	}
	m.check(t, s)

	// 3. Syncs fail after badger took the batch: the store goes down,
	// refuses everything, keeps failing to recover while syncs fail, and
	// serves again once they succeed. The failed batch is then durable:
	// retries find it or store it, once.
	before := inj.Injected()
	inj.FailSyncs(-1)
	failed, errs = producers(s, m, t, clock, 3, 8, 10, boxes)
	if len(errs) != 80 {
		t.Fatalf("failing syncs: %d of 80 enqueues failed", len(errs))
	}
	allUnavailable(t, errs, "failing syncs")
	if _, err := s.Fetch(ctx, boxes[0], 0, 10); !errors.Is(err, mailbox.ErrUnavailable) {
		t.Fatalf("Fetch while down: %v", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for inj.Injected() < before+3 { // recovery attempts keep failing
		if time.Now().After(deadline) {
			t.Fatal("no recovery attempt")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := s.Status(ctx, boxes[0]); !errors.Is(err, mailbox.ErrUnavailable) {
		t.Fatalf("Status while syncs fail: %v", err)
	}
	inj.FailSyncs(0)
	waitUp(t, s)
	dups := retry(t, s, m, failed)
	t.Logf("after recovery: %d of %d failed enqueues had been stored by the failed batch", dups, len(errs))
	if dups == 0 {
		t.Fatal("the failed batch was not rewritten by recovery")
	}
	m.check(t, s)

	// 4. A single failed sync in the middle of a load.
	inj.FailSyncs(1)
	failed, errs = producers(s, m, t, clock, 4, 16, 20, boxes)
	allUnavailable(t, errs, "one failed sync")
	if len(errs) == 0 {
		t.Fatal("no enqueue saw the failed sync")
	}
	waitUp(t, s)
	retry(t, s, m, failed)
	m.check(t, s)

	// Everything acknowledged survives a reopen.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, opts)
	m.check(t, s)
	if failed, errs := producers(s, m, t, clock, 5, 8, 10, boxes); len(errs) > 0 {
		t.Fatalf("after reopen: %d failures: %v (%v)", len(errs), errs[0], failed)
	}
	m.check(t, s)
	if err := s.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestClosedWhileDown: Close returns while recovery keeps failing.
func TestClosedWhileDown(t *testing.T) {
	clock := mailboxtest.NewClock()
	inj := faultfs.New()
	opts := testOptions(t.TempDir(), mailboxtest.Config{Now: clock.Now})
	opts.Faults = inj
	s := openTest(t, opts)
	inj.FailSyncs(-1)
	mb := mailboxtest.Box(1)
	if _, err := s.Enqueue(context.Background(), mb, mailboxtest.Msg(mb, 1, 0, 10, clock.Now(), time.Hour)); !errors.Is(err, mailbox.ErrUnavailable) {
		t.Fatalf("Enqueue with failing syncs: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Logf("Close while down: %v", err)
	}
	if _, err := s.Status(context.Background(), mb); !errors.Is(err, mailbox.ErrClosed) {
		t.Fatalf("Status after Close: %v", err)
	}
	inj.FailSyncs(0)
	s = openTest(t, opts)
	defer s.Close()
	// The failed message may or may not be there; the store is whole.
	if st, err := s.Status(context.Background(), mb); err != nil || st.Head > 1 {
		t.Fatalf("Status after reopen = %+v, %v", st, err)
	}
	if err := s.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestBatchFailedSync: a batch whose group commit fails acknowledges
// none of its items (written before the sync, so an answer before the
// sync would succeed), whether the write or the sync fails; after
// recovery, retries find or store each item once, and what the store
// acknowledged survives a reopen.
func TestBatchFailedSync(t *testing.T) {
	dir := t.TempDir()
	clock := mailboxtest.NewClock()
	inj := faultfs.New()
	opts := testOptions(dir, mailboxtest.Config{Now: clock.Now})
	opts.Faults = inj
	s := openTest(t, opts)
	defer func() { s.Close() }()
	m := newModel()
	boxes := []mailbox.ID{mailboxtest.Box(0), mailboxtest.Box(1), mailboxtest.Box(2)}
	batch := func(round int) []mailbox.Item {
		items := make([]mailbox.Item, 16)
		for i := range items {
			mb := boxes[i%len(boxes)]
			items[i] = mailbox.Item{Mailbox: mb, Message: mailboxtest.Msg(mb, round*100+i, 0, 300+i, clock.Now(), time.Hour)}
		}
		return items
	}
	run := func(items []mailbox.Item) (ok, failed int) {
		out := make([]mailbox.Result, len(items))
		s.EnqueueBatch(context.Background(), items, out)
		for i, r := range out {
			if r.Err != nil {
				if !errors.Is(r.Err, mailbox.ErrUnavailable) {
					t.Fatalf("item %d: %v, want ErrUnavailable", i, r.Err)
				}
				failed++
				continue
			}
			m.enqueued(t, items[i].Mailbox, items[i].Message, r.Receipt)
			ok++
		}
		return ok, failed
	}
	if ok, _ := run(batch(0)); ok != 16 {
		t.Fatalf("healthy store: %d of 16 acknowledged", ok)
	}
	for _, tc := range []struct {
		name   string
		inject func()
	}{
		{"failing sync", func() { inj.FailSyncs(1) }},
		{"disk full", func() { inj.SetFull(true) }},
	} {
		tc.inject()
		items := batch(1 + len(tc.name))
		if ok, failed := run(items); ok != 0 || failed != 16 {
			t.Fatalf("%s: %d items acknowledged, %d failed; want 0 and 16", tc.name, ok, failed)
		}
		inj.SetFull(false)
		waitUp(t, s)
		m.check(t, s)
		if ok, _ := run(items); ok != 16 {
			t.Fatalf("%s: retry: %d of 16 acknowledged", tc.name, ok)
		}
		m.check(t, s)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, opts)
	m.check(t, s)
	if err := s.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
}
