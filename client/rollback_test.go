package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/moat-im/moat/client"
)

// TestT40RelayRollbackAfterRestart (adversarial case T40, at the SDK):
// Bob's device syncs, closes, and the relay is restarted on an old copy of
// its mailboxes; Alice sends again (the old copy reuses a sequence
// number). Bob's device, reopened from its store, refuses the relay's
// lower signed head: Sync returns ErrRollback, the event stream carries
// it, and nothing the rolled-back relay serves is accepted.
func TestT40RelayRollbackAfterRestart(t *testing.T) {
	s, alice, bob, a, b := twoUsers(t)
	ctx := context.Background()
	for _, text := range []string{"one", "two", "three"} {
		if text == "two" {
			s.BackupMailboxes()
		}
		_, err := a.SendText(ctx, bob, text)
		ok(t, err)
	}
	syncAll(t, b)
	ok(t, b.Close())
	s.RestoreMailboxes()
	_, err := a.SendText(ctx, bob, "served by the rolled-back relay")
	ok(t, err)

	c, err := client.Open(ctx, b.cfg, b.st)
	ok(t, err)
	defer c.Close()
	b2 := &device{c, b.st, b.cfg}
	if err := b2.Sync(ctx); !errors.Is(err, client.ErrRollback) {
		t.Fatalf("Sync from a rolled-back relay: %v", err)
	}
	rolled := false
	for _, e := range drain(b2) {
		if e.Kind == client.EventError && errors.Is(e.Err, client.ErrRollback) {
			rolled = true
		}
		if e.Kind == client.EventMessage {
			t.Fatalf("accepted %+v", e.Record)
		}
	}
	if !rolled {
		t.Fatal("no rollback on the event stream")
	}
	h := history(t, b2, alice)
	if len(h) != 3 || h[2].Text != "three" {
		t.Fatalf("history %+v", h)
	}
	// Run stops with it too (instead of reconnecting for ever); the
	// deadline only guards against a hang.
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := b2.Run(rctx); !errors.Is(err, client.ErrRollback) {
		t.Fatalf("Run from a rolled-back relay: %v", err)
	}
	if h := history(t, b2, alice); len(h) != 3 {
		t.Fatalf("history after Run %+v", h)
	}
}

// TestT40RollbackCatchUp (adversarial case T40, review of #4): the relay
// is restored from a backup taken after Alice's first message, and Alice
// sends four more, so the restored relay's head (5) is above the one Bob's
// device saw (3): the head check alone passes, and the messages the
// restored relay stored at sequence numbers 2 and 3 would be skipped,
// since Bob's device acknowledged through 3. The relay's signed
// acknowledgement floor (0) is below the ack it confirmed, which the
// device keeps in its store: Sync returns ErrRollback, the event stream
// carries it, and nothing the restored relay serves is accepted.
func TestT40RollbackCatchUp(t *testing.T) {
	s, alice, bob, a, b := twoUsers(t)
	ctx := context.Background()
	for _, text := range []string{"one", "two", "three"} {
		if text == "two" {
			s.BackupMailboxes()
		}
		_, err := a.SendText(ctx, bob, text)
		ok(t, err)
	}
	syncAll(t, b)
	ok(t, b.Close())
	s.RestoreMailboxes()
	for _, text := range []string{"four", "five", "six", "seven"} {
		_, err := a.SendText(ctx, bob, text)
		ok(t, err)
	}

	c, err := client.Open(ctx, b.cfg, b.st)
	ok(t, err)
	defer c.Close()
	b2 := &device{c, b.st, b.cfg}
	if err := b2.Sync(ctx); !errors.Is(err, client.ErrRollback) {
		t.Fatalf("Sync from a restored relay that caught up: %v, want ErrRollback", err)
	}
	rolled := false
	for _, e := range drain(b2) {
		if e.Kind == client.EventError && errors.Is(e.Err, client.ErrRollback) {
			rolled = true
		}
		if e.Kind == client.EventMessage {
			t.Fatalf("accepted %+v", e.Record)
		}
	}
	if !rolled {
		t.Fatal("no rollback on the event stream")
	}
	if h := history(t, b2, alice); len(h) != 3 || h[2].Text != "three" {
		t.Fatalf("history %+v", h)
	}
	// Again: the refusal left the device's state as it was.
	if err := b2.Sync(ctx); !errors.Is(err, client.ErrRollback) {
		t.Fatalf("second Sync: %v, want ErrRollback", err)
	}
	if h := history(t, b2, alice); len(h) != 3 {
		t.Fatalf("history after a second Sync %+v", h)
	}
}

// TestT40RollbackUnconfirmedAck (T40): as TestT40RollbackCatchUp, but the
// relay fails Bob's acks, so the device processed messages 1 to 3 without
// a confirmed ack and the floor check has nothing to compare. The device
// remembers the ids of what it processed: its next Sync fetches again
// after its last confirmed ack, finds other messages at sequence numbers
// 2 and 3 on the restored relay, and refuses with ErrRollback instead of
// skipping them.
func TestT40RollbackUnconfirmedAck(t *testing.T) {
	s, alice, bob, a, b := twoUsers(t)
	ctx := context.Background()
	for _, text := range []string{"one", "two", "three"} {
		if text == "two" {
			s.BackupMailboxes()
		}
		_, err := a.SendText(ctx, bob, text)
		ok(t, err)
	}
	s.FailAcks(true)
	syncAll(t, b)
	ok(t, b.Close())
	s.FailAcks(false)
	s.RestoreMailboxes()
	for _, text := range []string{"four", "five", "six", "seven"} {
		_, err := a.SendText(ctx, bob, text)
		ok(t, err)
	}

	c, err := client.Open(ctx, b.cfg, b.st)
	ok(t, err)
	defer c.Close()
	b2 := &device{c, b.st, b.cfg}
	if err := b2.Sync(ctx); !errors.Is(err, client.ErrRollback) {
		t.Fatalf("Sync from a restored relay that caught up: %v, want ErrRollback", err)
	}
	for _, e := range drain(b2) {
		if e.Kind == client.EventMessage {
			t.Fatalf("accepted %+v", e.Record)
		}
	}
	if h := history(t, b2, alice); len(h) != 3 {
		t.Fatalf("history %+v", h)
	}
}

// An ack that failed once is not a rollback: the relay serves the same
// messages again, the device recognises them and acknowledges them.
func TestUnconfirmedAckRetried(t *testing.T) {
	s, alice, bob, a, b := twoUsers(t)
	ctx := context.Background()
	_, err := a.SendText(ctx, bob, "one")
	ok(t, err)
	s.FailAcks(true)
	syncAll(t, b)
	s.FailAcks(false)
	_, err = a.SendText(ctx, bob, "two")
	ok(t, err)
	ok(t, b.Sync(ctx))
	if h := history(t, b, alice); len(h) != 2 || h[1].Text != "two" {
		t.Fatalf("history %+v", h)
	}
}
