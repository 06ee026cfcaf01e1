package mailboxtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/moat-im/moat/server/store/mailbox"
)

// onlyStore hides a store's EnqueueBatch: mailbox.EnqueueBatch then falls
// back to concurrent Enqueues, which the batch tests check as well.
type onlyStore struct{ mailbox.Store }

// forBatch runs fn on the store itself and on it without its
// EnqueueBatch (each on a store of its own).
func forBatch(t *testing.T, newStore NewStore, cfg func() Config, fn func(t *testing.T, s mailbox.Store, c Config)) {
	for _, native := range []bool{true, false} {
		name := "fallback"
		if native {
			name = "native"
		}
		t.Run(name, func(t *testing.T) {
			c := cfg()
			s := newStore(t, c)
			if native {
				if _, ok := s.(mailbox.BatchStore); !ok {
					t.Skip("the store has no EnqueueBatch of its own")
				}
			} else {
				s = onlyStore{s}
			}
			fn(t, s, c)
		})
	}
}

// enqueueBatch runs mailbox.EnqueueBatch and checks every receipt's head
// against Status (as enqueue does).
func enqueueBatch(t *testing.T, s mailbox.Store, items []mailbox.Item) []mailbox.Result {
	t.Helper()
	out := make([]mailbox.Result, len(items))
	mailbox.EnqueueBatch(ctx, s, items, out)
	for i, r := range out {
		if r.Err != nil {
			continue
		}
		if r.Receipt.Seq == 0 || r.Receipt.Head < r.Receipt.Seq {
			t.Fatalf("item %d: receipt %+v", i, r.Receipt)
		}
		if st := status(t, s, items[i].Mailbox); st.Head < r.Receipt.Head {
			t.Fatalf("item %d: receipt head %d above the head %d Status reports", i, r.Receipt.Head, st.Head)
		}
	}
	return out
}

// testBatch checks EnqueueBatch (docs/spec/relay-storage.md §Batch
// enqueue): each item is enqueued as by Enqueue, with its own result.
func testBatch(t *testing.T, newStore NewStore) {
	clock := NewClock()
	cfg := func() Config {
		return Config{Now: clock.Now, Limits: mailbox.Limits{MaxMessages: 5, MaxBodySize: 1000}}
	}
	forBatch(t, newStore, cfg, func(t *testing.T, s mailbox.Store, _ Config) {
		a, b, full := Box(1), Box(2), Box(3)
		stored := enqueue(t, s, a, Msg(a, 1, 0, 100, clock.Now(), time.Hour))
		for i := range 5 {
			enqueue(t, s, full, Msg(full, i, 0, 10, clock.Now(), time.Hour))
		}
		m2, m3 := Msg(a, 2, 0, 200, clock.Now(), time.Hour), Msg(b, 3, 0, 300, clock.Now(), time.Hour)
		items := []mailbox.Item{
			{Mailbox: a, Message: Msg(a, 1, 0, 100, clock.Now(), time.Hour)}, // 0: retry of a stored message
			{Mailbox: a, Message: m2}, // 1: new
			{Mailbox: a, Message: Msg(a, 1, 1, 100, clock.Now(), time.Hour)}, // 2: stored id, other body
			{Mailbox: b, Message: m3},                                             // 3: new, other mailbox
			{Mailbox: b, Message: Msg(b, 4, 0, 0, clock.Now(), time.Hour)},        // 4: empty body
			{Mailbox: a, Message: m2},                                             // 5: the same message as 1
			{Mailbox: full, Message: Msg(full, 9, 0, 10, clock.Now(), time.Hour)}, // 6: mailbox full
			{Mailbox: b, Message: Msg(b, 5, 0, 1001, clock.Now(), time.Hour)},     // 7: body over the limit
			{Mailbox: b, Message: Msg(b, 6, 0, 10, clock.Now(), -time.Second)},    // 8: expired
		}
		before := bytes.Clone(items[1].Body)
		out := enqueueBatch(t, s, items)
		wantErr := map[int]error{2: mailbox.ErrIDConflict, 4: mailbox.ErrInvalid, 6: mailbox.ErrQuota, 7: mailbox.ErrInvalid, 8: mailbox.ErrInvalid}
		for i, r := range out {
			if w := wantErr[i]; w != nil {
				if !errors.Is(r.Err, w) {
					t.Errorf("item %d: %v, want %v", i, r.Err, w)
				}
			} else if r.Err != nil {
				t.Errorf("item %d: %v", i, r.Err)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
		if !dup(out[0].Receipt, stored.Seq) {
			t.Fatalf("retry in a batch: %+v, want a duplicate of seq %d", out[0].Receipt, stored.Seq)
		}
		// Items 1 and 5 are one message: one stored, the other its retry.
		r1, r5 := out[1].Receipt, out[5].Receipt
		if r1.Seq != r5.Seq || r1.Duplicate == r5.Duplicate || r1.Seq <= stored.Seq {
			t.Fatalf("the same message twice in a batch: %+v and %+v", r1, r5)
		}
		// The store keeps no reference to the items' bodies.
		for i := range items {
			if len(items[i].Body) > 0 {
				items[i].Body[0] ^= 0xff
			}
		}
		checkMessages(t, fetchAll(t, s, a, 0).Messages, []mailbox.Stored{
			{Seq: stored.Seq, Message: Msg(a, 1, 0, 100, clock.Now(), time.Hour)},
			{Seq: r1.Seq, Message: mailbox.Message{ID: m2.ID, Expires: m2.Expires, Body: before}},
		})
		checkMessages(t, fetchAll(t, s, b, 0).Messages, []mailbox.Stored{{Seq: out[3].Receipt.Seq, Message: Msg(b, 3, 0, 300, clock.Now(), time.Hour)}})
		if st := status(t, s, full); st.Messages != 5 || st.Head != 5 {
			t.Fatalf("the full mailbox: %+v", st)
		}
		// An empty batch does nothing.
		mailbox.EnqueueBatch(ctx, s, nil, nil)
		if st := status(t, s, a); st.Head != r1.Seq || st.Messages != 2 {
			t.Fatalf("after an empty batch: %+v", st)
		}
	})
}

// testBatchOrder: the items of one mailbox in a batch get distinct
// sequence numbers above the head before the call, and a batch that
// stores n new messages raises the head by n.
func testBatchOrder(t *testing.T, newStore NewStore) {
	clock := NewClock()
	cfg := func() Config { return Config{Now: clock.Now} }
	forBatch(t, newStore, cfg, func(t *testing.T, s mailbox.Store, _ Config) {
		_, native := s.(mailbox.BatchStore)
		boxes := []mailbox.ID{Box(1), Box(2), Box(3)}
		sent := map[mailbox.ID][]mailbox.Stored{}
		for round := range 4 {
			var items []mailbox.Item
			for i := range 16 {
				mb := boxes[i%len(boxes)]
				items = append(items, mailbox.Item{Mailbox: mb, Message: Msg(mb, round*100+i, 0, 64+i, clock.Now(), time.Hour)})
			}
			heads := map[mailbox.ID]uint64{}
			for _, mb := range boxes {
				heads[mb] = status(t, s, mb).Head
			}
			last := maps.Clone(heads)
			for i, r := range enqueueBatch(t, s, items) {
				if r.Err != nil {
					t.Fatalf("round %d item %d: %v", round, i, r.Err)
				}
				mb := items[i].Mailbox
				if r.Receipt.Duplicate || r.Receipt.Seq <= heads[mb] {
					t.Fatalf("round %d item %d: receipt %+v after head %d", round, i, r.Receipt, heads[mb])
				}
				// A store's own EnqueueBatch applies the items in order
				// (relay-storage.md §Batch enqueue); the fallback's
				// concurrent Enqueues need not.
				if native && r.Receipt.Seq != last[mb]+1 {
					t.Fatalf("round %d item %d: seq %d after %d: not in item order", round, i, r.Receipt.Seq, last[mb])
				}
				last[mb] = r.Receipt.Seq
				sent[mb] = append(sent[mb], mailbox.Stored{Seq: r.Receipt.Seq, Message: items[i].Message})
			}
		}
		for _, mb := range boxes {
			want := sent[mb]
			sortStored(want)
			checkMessages(t, fetchAll(t, s, mb, 0).Messages, want)
			if st := status(t, s, mb); st.Head != want[len(want)-1].Seq || st.Messages != len(want) {
				t.Fatalf("mailbox %v: %+v with %d messages", mb, st, len(want))
			}
		}
	})
}

func sortStored(ms []mailbox.Stored) {
	for i := 1; i < len(ms); i++ {
		for j := i; j > 0 && ms[j].Seq < ms[j-1].Seq; j-- {
			ms[j], ms[j-1] = ms[j-1], ms[j]
		}
	}
}

// testBatchConcurrent runs batches and single enqueues of the same
// messages concurrently: each message is stored once, and every receipt
// names it.
func testBatchConcurrent(t *testing.T, newStore NewStore) {
	clock := NewClock()
	cfg := func() Config { return Config{Now: clock.Now} }
	forBatch(t, newStore, cfg, func(t *testing.T, s mailbox.Store, _ Config) {
		const workers, batches, size = 8, 10, 16
		mb := Box(7)
		msg := func(n int) mailbox.Message { return Msg(mb, n, 0, 50+n%40, clock.Now(), time.Hour) }
		var mu sync.Mutex
		seqOf := map[mailbox.MessageID]uint64{}
		stored := map[mailbox.MessageID]int{}
		record := func(m mailbox.Message, r mailbox.Receipt) error {
			mu.Lock()
			defer mu.Unlock()
			if old, ok := seqOf[m.ID]; ok && old != r.Seq {
				return fmt.Errorf("message %v: seq %d and %d", m.ID, old, r.Seq)
			}
			seqOf[m.ID] = r.Seq
			if !r.Duplicate {
				stored[m.ID]++
			}
			return nil
		}
		errs := make(chan error, 2*workers)
		var wg sync.WaitGroup
		for w := range workers {
			// Workers w and w^1 send the same messages, one in batches,
			// the other (odd) one by one.
			wg.Go(func() {
				for k := range batches {
					base := (w/2)*batches*size + k*size
					if w%2 == 0 {
						items := make([]mailbox.Item, size)
						for i := range items {
							items[i] = mailbox.Item{Mailbox: mb, Message: msg(base + i)}
						}
						out := make([]mailbox.Result, size)
						mailbox.EnqueueBatch(ctx, s, items, out)
						for i, r := range out {
							if r.Err == nil {
								r.Err = record(items[i].Message, r.Receipt)
							}
							if r.Err != nil {
								errs <- r.Err
								return
							}
						}
						continue
					}
					for i := range size {
						m := msg(base + i)
						r, err := s.Enqueue(ctx, mb, m)
						if err == nil {
							err = record(m, r)
						}
						if err != nil {
							errs <- err
							return
						}
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for id, n := range stored {
			if n != 1 {
				t.Fatalf("message %v stored %d times", id, n)
			}
		}
		if want := workers / 2 * batches * size; len(stored) != want {
			t.Fatalf("%d messages stored, want %d", len(stored), want)
		}
		var want []mailbox.Stored
		for n := range workers / 2 * batches * size {
			m := msg(n)
			want = append(want, mailbox.Stored{Seq: seqOf[m.ID], Message: m})
		}
		sortStored(want)
		checkMessages(t, fetchAll(t, s, mb, 0).Messages, want)
	})
}

// testBatchContextClosed: a batch with a cancelled context or on a closed
// store fails every item and stores nothing.
func testBatchContextClosed(t *testing.T, newStore NewStore) {
	clock := NewClock()
	cfg := func() Config { return Config{Now: clock.Now} }
	forBatch(t, newStore, cfg, func(t *testing.T, s mailbox.Store, _ Config) {
		mb := Box(1)
		items := []mailbox.Item{{Mailbox: mb, Message: Msg(mb, 1, 0, 10, clock.Now(), time.Hour)}, {Mailbox: mb, Message: Msg(mb, 2, 0, 10, clock.Now(), time.Hour)}}
		out := make([]mailbox.Result, len(items))
		c, cancel := context.WithCancel(ctx)
		cancel()
		mailbox.EnqueueBatch(c, s, items, out)
		for i, r := range out {
			if !errors.Is(r.Err, context.Canceled) {
				t.Fatalf("item %d with a cancelled context: %+v", i, r)
			}
		}
		if st := status(t, s, mb); st != (mailbox.Status{}) {
			t.Fatalf("a cancelled batch changed the status: %+v", st)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		mailbox.EnqueueBatch(ctx, s, items, out)
		for i, r := range out {
			if !errors.Is(r.Err, mailbox.ErrClosed) {
				t.Fatalf("item %d after Close: %+v", i, r)
			}
		}
	})
}
