package client_test

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/moat-im/moat/client"
	"github.com/moat-im/moat/client/clienttest"
	"github.com/moat-im/moat/client/localstore"
)

var errInjected = errors.New("injected commit failure")

// failingStore fails the commit of every Update while fail is set, after
// the transaction's function ran (a crash before the commit).
type failingStore struct {
	*clienttest.Store
	fail atomic.Bool
}

func (s *failingStore) Update(fn func(localstore.Tx) error) error {
	return s.Store.Update(func(tx localstore.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		if s.fail.Load() {
			return errInjected
		}
		return nil
	})
}

// TestFailedCommitChangesNothing: when the store cannot commit a send,
// nothing is sent and nothing is stored; when it cannot commit a received
// message, the message is not acknowledged and comes again; afterwards
// both sides carry on and every message arrives exactly once.
func TestFailedCommitChangesNothing(t *testing.T) {
	s := clienttest.New(t)
	ctx := context.Background()
	alice, bob := s.AddUser("Alice"), s.AddUser("Bob")
	capture := &clienttest.Capture{}
	cfgA := s.Config()
	cfgA.HTTP = &http.Client{Transport: capture}
	sameTransport(&cfgA)
	sa, sb := &failingStore{Store: clienttest.NewStore()}, &failingStore{Store: clienttest.NewStore()}
	a, err := client.Enrol(ctx, cfgA, sa, s.IssueCode(alice))
	ok(t, err)
	defer a.Close()
	b, err := client.Enrol(ctx, s.Config(), sb, s.IssueCode(bob))
	ok(t, err)
	defer b.Close()
	s.Publish()
	_, err = a.SendText(ctx, bob, "one")
	ok(t, err)
	ok(t, b.Sync(ctx))

	before, sent := sa.Snapshot(), len(capture.Envelopes)
	sa.fail.Store(true)
	if _, err := a.SendText(ctx, bob, "lost in the crash"); !errors.Is(err, errInjected) {
		t.Fatalf("Send with a failing store: %v", err)
	}
	sa.fail.Store(false)
	if !maps.Equal(before, sa.Snapshot()) || len(capture.Envelopes) != sent {
		t.Fatal("a send whose commit failed stored or sent something")
	}
	_, err = a.SendText(ctx, bob, "two")
	ok(t, err)

	sb.fail.Store(true)
	if err := b.Sync(ctx); !errors.Is(err, errInjected) {
		t.Fatalf("Sync with a failing store: %v", err)
	}
	sb.fail.Store(false)
	ok(t, b.Sync(ctx))
	h, err := b.History(alice, 0)
	ok(t, err)
	if len(h) != 2 || h[0].Text != "one" || h[1].Text != "two" {
		t.Fatalf("Bob's history %+v", h)
	}
	_, err = b.SendText(ctx, alice, "three")
	ok(t, err)
	ok(t, a.Sync(ctx))
	if h, _ := a.History(bob, 0); len(h) != 3 || h[2].Text != "three" {
		t.Fatalf("Alice's history %+v", h)
	}
}
