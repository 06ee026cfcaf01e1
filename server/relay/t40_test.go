package relay_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"testing"

	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/store/mailbox"
	"github.com/moat-im/moat/server/store/mailbox/badgermailbox"
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

// TestT40RollbackCatchUp (adversarial case T40, review of #4): a relay
// restored from an old backup whose head has caught up again. The device
// saw head 3 and acknowledged through 3; the relay comes back on a copy of
// its badger directory taken at head 1 (floor 0), and four new sends take
// its head to 5, so the head alone passes the device's check while the
// two messages stored at sequence numbers 2 and 3 would be skipped (the
// device believes it acknowledged them). The signed acknowledgement floor
// gives it away: 0 is below the ack of 3 the relay confirmed, and the
// device refuses the page (mailbox.ErrRollback), on fetch and on its push
// channel, keeping its head and its confirmed ack.
func TestT40RollbackCatchUp(t *testing.T) {
	ctx := context.Background()
	live, backup := t.TempDir(), t.TempDir()
	open := func(dir string) *badgermailbox.Store {
		return must(badgermailbox.Open(ctx, badgermailbox.Options{Dir: dir}))
	}
	st := open(live)
	// Verifiers outlive the restarts; only the mailbox store is restored.
	w := newWorld(t, worldOptions{mbox: st, verifiers: deliverytoken.NewMemoryVerifiers()})
	a, b := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0)
	w.publish(b)
	tok := w.token(b, 1)
	send := func(n int) {
		t.Helper()
		for range n {
			_, err := w.anon().Send(ctx, tok, envelope(t, a, b, []byte("m")))
			ok(t, err)
		}
	}
	restart := func(dir string) {
		t.Helper()
		w.srv.Close()
		w.relay.Close()
		ok(t, st.Close())
		if dir != "" {
			st = open(dir)
		}
		w.opts.Mailboxes = st
		w.start()
		b.c.BaseURL = w.srv.URL
	}
	t.Cleanup(func() { st.Close() })

	send(1)
	// The backup: a copy of the store's directory at head 1.
	restart("")
	ok(t, os.CopyFS(backup, os.DirFS(live)))
	st = open(live)
	restart(live)

	send(2)
	pg, err := b.c.Fetch(ctx, 0, 10)
	ok(t, err)
	if pg.Head.Head != 3 || len(pg.Messages) != 3 {
		t.Fatalf("live relay: head %d, %d messages", pg.Head.Head, len(pg.Messages))
	}
	ok(t, b.c.Ack(ctx, 3))
	if b.c.Acked() != 3 {
		t.Fatalf("confirmed ack %d, want 3", b.c.Acked())
	}
	seen := b.c.Head()

	// The operator restores the backup; new sends take the head past 3.
	restart(backup)
	send(4)
	if s := must(st.Status(ctx, relay.StoreMailboxID(b.mailbox()))); s.Head != 5 || s.Acked != 0 {
		t.Fatalf("restored store: %+v, want head 5, floor 0", s)
	}
	for _, after := range []uint64{3, 0} {
		if _, err := b.c.Fetch(ctx, after, 10); !errors.Is(err, mailbox.ErrRollback) {
			t.Fatalf("fetch after %d from the caught-up restored relay: %v, want ErrRollback", after, err)
		}
		if b.c.Head() != seen || b.c.Acked() != 3 {
			t.Fatal("a refused page moved the client's head or confirmed ack")
		}
	}
	p, err := b.c.Push(ctx, 3)
	ok(t, err)
	if _, err := p.Next(ctx); !errors.Is(err, mailbox.ErrRollback) {
		t.Fatalf("push from the caught-up restored relay: %v, want ErrRollback", err)
	}
	p.Close()
	if b.c.Head() != seen || b.c.Acked() != 3 {
		t.Fatal("a refused push page moved the client's head or confirmed ack")
	}
}
