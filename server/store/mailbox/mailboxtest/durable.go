package mailboxtest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moat-im/moat/server/store/mailbox"
)

// RunDurable runs the durability tests of a persistent backend.
func RunDurable(t *testing.T, open OpenStore) {
	t.Run("Reopen", func(t *testing.T) { testReopen(t, open) })
	t.Run("SeqNeverReused", func(t *testing.T) { testSeqNeverReused(t, open) })
	t.Run("ConcurrentThenReopen", func(t *testing.T) { testConcurrentReopen(t, open) })
	t.Run("ExpiryAcrossReopen", func(t *testing.T) { testExpiryReopen(t, open) })
	t.Run("AckFloorAcrossReopen", func(t *testing.T) { testAckFloorReopen(t, open) })
	t.Run("BatchThenReopen", func(t *testing.T) { testBatchReopen(t, open) })
}

func closeStore(t *testing.T, s mailbox.Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// snapshot reads every message and the status of the mailboxes.
func snapshot(t *testing.T, s mailbox.Store, boxes []mailbox.ID) map[mailbox.ID]mailbox.Page {
	t.Helper()
	out := make(map[mailbox.ID]mailbox.Page)
	for _, mb := range boxes {
		p := fetchAll(t, s, mb, 0)
		st := status(t, s, mb)
		if st.Head != p.Head {
			t.Fatalf("mailbox %v: Status head %d, page head %d", mb, st.Head, p.Head)
		}
		out[mb] = p
	}
	return out
}

func checkSnapshot(t *testing.T, s mailbox.Store, want map[mailbox.ID]mailbox.Page) {
	t.Helper()
	for mb, w := range want {
		g := fetchAll(t, s, mb, 0)
		if g.Head != w.Head {
			t.Fatalf("mailbox %v: head %d after reopen, want %d", mb, g.Head, w.Head)
		}
		checkMessages(t, g.Messages, w.Messages)
	}
}

func testReopen(t *testing.T, open OpenStore) {
	dir := t.TempDir()
	clock := NewClock()
	cfg := Config{Now: clock.Now}
	s := open(t, dir, cfg)
	var boxes []mailbox.ID
	sent := map[mailbox.ID][]mailbox.Stored{}
	for n := range 5 {
		mb := Box(n)
		boxes = append(boxes, mb)
		for i := range 20 + n {
			m := Msg(mb, i, 0, 50+10*i, clock.Now(), time.Hour)
			sent[mb] = append(sent[mb], mailbox.Stored{Seq: enqueue(t, s, mb, m).Seq, Message: m})
		}
		if err := s.Ack(ctx, mb, sent[mb][n*3].Seq); err != nil {
			t.Fatal(err)
		}
	}
	want := snapshot(t, s, boxes)
	closeStore(t, s)
	for round := range 2 {
		s = open(t, dir, cfg)
		checkSnapshot(t, s, want)
		for _, mb := range boxes {
			// A retry after the reopen is recognised.
			last := sent[mb][len(sent[mb])-1]
			if r := enqueue(t, s, mb, last.Message); !dup(r, last.Seq) {
				t.Fatalf("round %d: retry after reopen: %+v, want seq %d", round, r, last.Seq)
			}
			m := Msg(mb, 1000+round, 0, 77, clock.Now(), time.Hour)
			r := enqueue(t, s, mb, m)
			if r.Seq <= want[mb].Head {
				t.Fatalf("round %d: seq %d at or below the head %d before reopen", round, r.Seq, want[mb].Head)
			}
			sent[mb] = append(sent[mb], mailbox.Stored{Seq: r.Seq, Message: m})
		}
		want = snapshot(t, s, boxes)
		closeStore(t, s)
	}
}

func testSeqNeverReused(t *testing.T, open OpenStore) {
	dir := t.TempDir()
	clock := NewClock()
	cfg := Config{Now: clock.Now}
	mb := Box(1)
	var head, acked uint64
	for round := range 4 {
		s := open(t, dir, cfg)
		if st := status(t, s, mb); st.Head != head {
			t.Fatalf("round %d: head %d after reopen, want %d", round, st.Head, head)
		}
		for i := range 5 {
			r := enqueue(t, s, mb, Msg(mb, round*100+i, 0, 30, clock.Now(), time.Minute))
			if r.Seq <= head {
				t.Fatalf("round %d: seq %d at or below the previous head %d", round, r.Seq, head)
			}
			head = r.Seq
		}
		switch round % 2 {
		case 0: // everything acknowledged
			if err := s.Ack(ctx, mb, head); err != nil {
				t.Fatal(err)
			}
		case 1: // everything expired and swept
			clock.Advance(time.Hour)
			if _, err := s.Sweep(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if round%2 == 0 {
			acked = head
		}
		if st := status(t, s, mb); st != (mailbox.Status{Head: head, Acked: acked}) {
			t.Fatalf("round %d: Status %+v, want empty at head %d, floor %d", round, st, head, acked)
		}
		closeStore(t, s)
	}
}

// testAckFloorReopen checks that the acknowledgement floor is durable
// (T40): after a reopen, with messages still held, with none held, and
// raised by an ack of swept messages that wrote nothing else.
func testAckFloorReopen(t *testing.T, open OpenStore) {
	dir := t.TempDir()
	clock := NewClock()
	cfg := Config{Now: clock.Now}
	mb := Box(3)
	s := open(t, dir, cfg)
	for i := range 4 {
		enqueue(t, s, mb, Msg(mb, i, 0, 40, clock.Now(), time.Minute))
	}
	if err := s.Ack(ctx, mb, 2); err != nil {
		t.Fatal(err)
	}
	closeStore(t, s)
	s = open(t, dir, cfg)
	if st := status(t, s, mb); st.Head != 4 || st.Acked != 2 || st.Messages != 2 {
		t.Fatalf("after reopen: %+v, want head 4, floor 2, 2 messages", st)
	}
	if p := fetchAll(t, s, mb, 0); p.Acked != 2 || len(p.Messages) != 2 || p.Messages[0].Seq != 3 {
		t.Fatalf("fetch after reopen: floor %d, %d messages", p.Acked, len(p.Messages))
	}
	clock.Advance(time.Hour)
	if _, err := s.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(ctx, mb, 3); err != nil {
		t.Fatal(err)
	}
	closeStore(t, s)
	s = open(t, dir, cfg)
	if st := status(t, s, mb); st != (mailbox.Status{Head: 4, Acked: 3}) {
		t.Fatalf("after an ack of swept messages and a reopen: %+v, want head 4, floor 3", st)
	}
	if p := fetchAll(t, s, mb, 0); p.Head != 4 || p.Acked != 3 || len(p.Messages) != 0 {
		t.Fatalf("fetch: head %d, floor %d, %d messages", p.Head, p.Acked, len(p.Messages))
	}
	closeStore(t, s)
}

func testConcurrentReopen(t *testing.T, open OpenStore) {
	dir := t.TempDir()
	clock := NewClock()
	cfg := Config{Now: clock.Now}
	s := open(t, dir, cfg)
	const workers, per = 16, 25
	var wg sync.WaitGroup
	var mu sync.Mutex
	sent := map[mailbox.ID][]mailbox.Stored{}
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				mb := Box(w % 3)
				m := Msg(mb, w*per+i, 0, 100, clock.Now(), time.Hour)
				r, err := s.Enqueue(ctx, mb, m)
				if err != nil {
					errs <- fmt.Errorf("worker %d: %w", w, err)
					return
				}
				mu.Lock()
				sent[mb] = append(sent[mb], mailbox.Stored{Seq: r.Seq, Message: m})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	closeStore(t, s)
	s = open(t, dir, cfg)
	defer closeStore(t, s)
	for mb, msgs := range sent {
		got := fetchAll(t, s, mb, 0).Messages
		if len(got) != len(msgs) {
			t.Fatalf("mailbox %v: %d messages after reopen, want %d", mb, len(got), len(msgs))
		}
		bySeq := map[uint64]mailbox.Stored{}
		for _, m := range msgs {
			bySeq[m.Seq] = m
		}
		for _, g := range got {
			w, ok := bySeq[g.Seq]
			if !ok {
				t.Fatalf("mailbox %v: unexpected seq %d", mb, g.Seq)
			}
			checkMessages(t, []mailbox.Stored{g}, []mailbox.Stored{w})
			delete(bySeq, g.Seq)
		}
	}
}

func testExpiryReopen(t *testing.T, open OpenStore) {
	dir := t.TempDir()
	clock := NewClock()
	cfg := Config{Now: clock.Now, Limits: mailbox.Limits{MaxMessages: 2}}
	mb := Box(1)
	s := open(t, dir, cfg)
	enqueue(t, s, mb, Msg(mb, 1, 0, 10, clock.Now(), time.Minute))
	keep := Msg(mb, 2, 0, 10, clock.Now(), time.Hour)
	rk := enqueue(t, s, mb, keep)
	closeStore(t, s)
	clock.Advance(2 * time.Minute)
	s = open(t, dir, cfg)
	defer closeStore(t, s)
	checkMessages(t, fetchAll(t, s, mb, 0).Messages, []mailbox.Stored{{Seq: rk.Seq, Message: keep}})
	// The expired message does not count against the quota.
	enqueue(t, s, mb, Msg(mb, 3, 0, 10, clock.Now(), time.Hour))
	if n, err := s.Sweep(ctx); err != nil || n != 0 {
		// Making room removed the expired message already.
		t.Fatalf("Sweep = %d, %v", n, err)
	}
}

// testBatchReopen: what EnqueueBatch acknowledged, from concurrent
// batches, is there after a reopen, and retries of it are recognised.
func testBatchReopen(t *testing.T, open OpenStore) {
	dir := t.TempDir()
	clock := NewClock()
	cfg := Config{Now: clock.Now}
	s := open(t, dir, cfg)
	const workers, batches, size = 8, 5, 16
	var mu sync.Mutex
	sent := map[mailbox.ID][]mailbox.Stored{}
	var all []mailbox.Item
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for k := range batches {
				items := make([]mailbox.Item, size)
				for i := range items {
					mb := Box((w + i) % 3)
					items[i] = mailbox.Item{Mailbox: mb, Message: Msg(mb, (w*batches+k)*size+i, 0, 80+i, clock.Now(), time.Hour)}
				}
				out := make([]mailbox.Result, size)
				mailbox.EnqueueBatch(ctx, s, items, out)
				mu.Lock()
				for i, r := range out {
					if r.Err != nil {
						errs <- fmt.Errorf("worker %d: %w", w, r.Err)
						mu.Unlock()
						return
					}
					sent[items[i].Mailbox] = append(sent[items[i].Mailbox], mailbox.Stored{Seq: r.Receipt.Seq, Message: items[i].Message})
				}
				all = append(all, items...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	closeStore(t, s)
	s = open(t, dir, cfg)
	defer closeStore(t, s)
	for mb, want := range sent {
		slices.SortFunc(want, func(a, b mailbox.Stored) int { return compareSeq(a.Seq, b.Seq) })
		checkMessages(t, fetchAll(t, s, mb, 0).Messages, want)
	}
	out := make([]mailbox.Result, len(all))
	mailbox.EnqueueBatch(ctx, s, all, out)
	for i, r := range out {
		if r.Err != nil || !r.Receipt.Duplicate {
			t.Fatalf("retry %d after reopen: %+v", i, r)
		}
	}
}
