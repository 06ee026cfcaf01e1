package relay_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/store/mailbox"
	"github.com/moat-im/moat/server/store/mailbox/memmailbox"
)

// TestT40Rollback: a device that has seen its mailbox at head N detects a
// relay restored from an older backup: the restored relay signs a lower
// head, which the client refuses (mailbox.ErrRollback) on fetch and on
// its push channel, and an ack of a sequence number the restored store
// never assigned is refused with 409. A head signed by another key is
// refused too.
func TestT40Rollback(t *testing.T) {
	ctx := context.Background()
	backup := must(memmailbox.New(memmailbox.Options{}))
	live := must(memmailbox.New(memmailbox.Options{}))
	w := newWorld(t, worldOptions{mbox: live})
	a, b := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0)
	w.publish(b)
	tok := w.token(b, 1)
	// The backup was taken after the first message; the live store got
	// three.
	for i := range 3 {
		env := envelope(t, a, b, []byte{byte(i)})
		if i == 0 {
			h := must(mailboxHeader(env))
			_, err := backup.Enqueue(ctx, relay.StoreMailboxID(h), mailbox.Message{ID: mailbox.MessageID(env[34:50]), Expires: farFuture(), Body: env})
			ok(t, err)
		}
		_, err := w.anon().Send(ctx, tok, env)
		ok(t, err)
	}
	pg, err := b.c.Fetch(ctx, 0, 10)
	ok(t, err)
	if pg.Head.Head != 3 || len(pg.Messages) != 3 {
		t.Fatalf("live relay: head %d, %d messages", pg.Head.Head, len(pg.Messages))
	}
	seen := b.c.Head()

	// The operator restores the backup: same key, older store.
	w.srv.Close()
	w.relay.Close()
	w.opts.Mailboxes = backup
	w.start()
	b.c.BaseURL = w.srv.URL
	_, err = b.c.Fetch(ctx, 0, 10)
	if !errors.Is(err, mailbox.ErrRollback) {
		t.Fatalf("fetch from the restored relay: %v, want ErrRollback", err)
	}
	if b.c.Head() != seen {
		t.Fatal("the client moved its head back")
	}
	p, err := b.c.Push(ctx, 3)
	ok(t, err)
	if _, err := p.Next(ctx); !errors.Is(err, mailbox.ErrRollback) {
		t.Fatalf("push from the restored relay: %v, want ErrRollback", err)
	}
	p.Close()
	wantStatus(t, b.c.Ack(ctx, 3), http.StatusConflict)

	// A head signed by another relay key is refused whatever it says.
	other := newWorld(t, worldOptions{})
	other.dir.Add(b.tenant, b.id, b.user, b.idk.Public(), farFuture())
	c2 := other.client(b)
	c2.RelayKey = w.key.Public()
	if _, err := c2.Fetch(ctx, 0, 10); err == nil {
		t.Fatal("a head signed by another key was accepted")
	}
}
