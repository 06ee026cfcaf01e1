package badgermailbox

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/moat-im/moat/internal/faultfs"
	"github.com/moat-im/moat/server/store/mailbox"
	"github.com/moat-im/moat/server/store/mailbox/mailboxtest"
)

// TestBatchSplitAcrossCommits: a batch larger than the transaction's
// soft bound is applied in two commits; when the second one's sync fails,
// the items it carried are not acknowledged, and what was acknowledged
// survives recovery and a reopen.
func TestBatchSplitAcrossCommits(t *testing.T) {
	dir := t.TempDir()
	clock := mailboxtest.NewClock()
	inj := faultfs.New()
	opts := testOptions(dir, mailboxtest.Config{Now: clock.Now})
	opts.Faults = inj
	s := openTest(t, opts)
	defer func() { s.Close() }()
	m := newModel()
	boxes := []mailbox.ID{mailboxtest.Box(0), mailboxtest.Box(1)}
	const n = 40
	items := make([]mailbox.Item, n)
	for i := range items {
		mb := boxes[i%2]
		items[i] = mailbox.Item{Mailbox: mb, Message: mailboxtest.Msg(mb, i, 0, 60<<10, clock.Now(), time.Hour)}
	}
	inj.FailSyncsAfter(1, 1) // the first part's sync succeeds, the second's fails
	out := make([]mailbox.Result, n)
	s.EnqueueBatch(context.Background(), items, out)
	ok, failed := 0, 0
	for i, r := range out {
		if r.Err != nil {
			if !errors.Is(r.Err, mailbox.ErrUnavailable) {
				t.Fatalf("item %d: %v", i, r.Err)
			}
			failed++
			continue
		}
		m.enqueued(t, items[i].Mailbox, items[i].Message, r.Receipt)
		ok++
	}
	t.Logf("%d acknowledged, %d failed", ok, failed)
	if failed == 0 {
		t.Fatalf("all %d items acknowledged though the sync of the batch's second commit failed", n)
	}
	waitUp(t, s)
	m.check(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, opts)
	m.check(t, s)
}

// TestBatchSplitAnsweredAfterLastSync: a batch that spans two commits
// is answered only once the sync of the last commit succeeds: when the
// second commit's sync is requested, the batch's caller is still waiting.
func TestBatchSplitAnsweredAfterLastSync(t *testing.T) {
	clock := mailboxtest.NewClock()
	s := openTest(t, testOptions(t.TempDir(), mailboxtest.Config{Now: clock.Now}))
	defer s.Close()
	commits, premature := 0, 0
	s.beforeSync = func(reqs []*request) {
		grouped := false
		for _, r := range reqs {
			if r.grp == nil {
				continue
			}
			grouped = true
			select {
			case <-r.grp.done:
				premature++
			default:
			}
		}
		if grouped {
			commits++
		}
	}
	mb := mailboxtest.Box(0)
	items := make([]mailbox.Item, 40)
	for i := range items {
		items[i] = mailbox.Item{Mailbox: mb, Message: mailboxtest.Msg(mb, i, 0, 60<<10, clock.Now(), time.Hour)}
	}
	out := make([]mailbox.Result, len(items))
	s.EnqueueBatch(context.Background(), items, out)
	for i, r := range out {
		if r.Err != nil {
			t.Fatalf("item %d: %v", i, r.Err)
		}
	}
	if commits < 2 {
		t.Fatalf("the batch took %d commits; the test needs it split", commits)
	}
	if premature != 0 {
		t.Fatalf("the batch was answered before the sync of its last commit (%d items seen answered)", premature)
	}
}

// TestBatchCancelledInFlight: a batch whose context ends after the
// writer took it fails every item with the context's error; the items
// may be stored all the same, and a retry finds each (a duplicate) or
// stores it, once.
func TestBatchCancelledInFlight(t *testing.T) {
	clock := mailboxtest.NewClock()
	s := openTest(t, testOptions(t.TempDir(), mailboxtest.Config{Now: clock.Now}))
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	s.beforeSync = func([]*request) { cancel() }
	mb := mailboxtest.Box(0)
	items := make([]mailbox.Item, 8)
	for i := range items {
		items[i] = mailbox.Item{Mailbox: mb, Message: mailboxtest.Msg(mb, i, 0, 100, clock.Now(), time.Hour)}
	}
	out := make([]mailbox.Result, len(items))
	s.EnqueueBatch(ctx, items, out)
	for i, r := range out {
		if !errors.Is(r.Err, context.Canceled) {
			t.Logf("item %d: %+v (answered before the cancellation was seen)", i, r)
		}
	}
	s.beforeSync = nil
	s.EnqueueBatch(context.Background(), items, out)
	dups := 0
	for i, r := range out {
		if r.Err != nil {
			t.Fatalf("retry %d: %v", i, r.Err)
		}
		if r.Receipt.Duplicate {
			dups++
		}
	}
	t.Logf("%d of %d retries were duplicates", dups, len(items))
	if st, _ := s.Status(context.Background(), mb); st.Messages != len(items) {
		t.Fatalf("%+v, want %d messages", st, len(items))
	}
}
