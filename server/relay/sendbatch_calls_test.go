package relay_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/store/mailbox"
	"github.com/moat-im/moat/server/store/mailbox/memmailbox"
)

// countingVerifiers counts the lookups of a verifier registry.
type countingVerifiers struct {
	*deliverytoken.MemoryVerifiers
	single, batch atomic.Int64
}

func (c *countingVerifiers) HasVerifier(mb sealed.MailboxID, v deliverytoken.Verifier) (bool, error) {
	c.single.Add(1)
	return c.MemoryVerifiers.HasVerifier(mb, v)
}

func (c *countingVerifiers) HasVerifiers(qs []deliverytoken.VerifierQuery, found []bool) error {
	c.batch.Add(1)
	return c.MemoryVerifiers.HasVerifiers(qs, found)
}

// countingMailboxes counts the enqueue calls into a mailbox store.
type countingMailboxes struct {
	*memmailbox.Store
	single, batch, items atomic.Int64
}

func (c *countingMailboxes) Enqueue(ctx context.Context, mb mailbox.ID, m mailbox.Message) (mailbox.Receipt, error) {
	c.single.Add(1)
	return c.Store.Enqueue(ctx, mb, m)
}

func (c *countingMailboxes) EnqueueBatch(ctx context.Context, items []mailbox.Item, out []mailbox.Result) {
	c.batch.Add(1)
	c.items.Add(int64(len(items)))
	c.Store.EnqueueBatch(ctx, items, out)
}

// TestSendBatchOneCallPerStore: a send-batch request checks the MAC
// tokens of all its items in one verifier-store lookup and hands the
// items that pass to the mailbox store in one EnqueueBatch call, with no
// per-item lookup or enqueue; each item still gets its own answer.
func TestSendBatchOneCallPerStore(t *testing.T) {
	vs := &countingVerifiers{MemoryVerifiers: deliverytoken.NewMemoryVerifiers()}
	mbs := &countingMailboxes{Store: must(memmailbox.New(memmailbox.Options{}))}
	w := newWorld(t, worldOptions{verifiers: vs, mbox: mbs})
	a, b, c := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0)
	tb, tc := w.token(b, 1), w.token(c, 1)
	var items []relay.BatchItem
	want := []int{}
	for i := range 12 {
		switch i % 4 {
		case 3:
			items = append(items, relay.BatchItem{Auth: macAuth(deliverytoken.Token{byte(i)}), Envelope: envelope(t, a, b, []byte("unregistered"))})
			want = append(want, 403)
		case 2:
			items = append(items, relay.BatchItem{Auth: tc, Envelope: envelope(t, a, c, []byte("to c"))})
			want = append(want, 200)
		default:
			items = append(items, relay.BatchItem{Auth: tb, Envelope: envelope(t, a, b, []byte("to b"))})
			want = append(want, 200)
		}
	}
	vs.single.Store(0)
	code, rs := w.postBatch(items)
	if code != 200 {
		t.Fatalf("send-batch: %d", code)
	}
	for i, r := range rs {
		if r.Status != want[i] {
			t.Fatalf("item %d: %d, want %d", i, r.Status, want[i])
		}
	}
	if s, n := vs.single.Load(), vs.batch.Load(); s != 0 || n != 1 {
		t.Fatalf("verifier store: %d single and %d batch lookups, want 0 and 1", s, n)
	}
	if s, n, k := mbs.single.Load(), mbs.batch.Load(), mbs.items.Load(); s != 0 || n != 1 || k != 9 {
		t.Fatalf("mailbox store: %d Enqueue and %d EnqueueBatch calls (%d items), want 0, 1 and 9", s, n, k)
	}
	for _, d := range []*device{b, c} {
		st := must(mbs.Status(context.Background(), relay.StoreMailboxID(d.mailbox())))
		if want := map[*device]int{b: 6, c: 3}[d]; st.Messages != want {
			t.Fatalf("mailbox holds %d messages, want %d", st.Messages, want)
		}
	}
}
