package relay_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/store/mailbox"
)

// corruptStore fails Fetch as a store that found a corrupt record does,
// naming the record's key (which holds the mailbox id) in its error.
type corruptStore struct {
	mailbox.Store
}

func (c *corruptStore) Fetch(_ context.Context, mb mailbox.ID, after uint64, _ int) (mailbox.Page, error) {
	return mailbox.Page{}, fmt.Errorf("%w: message key %x", mailbox.ErrCorrupt, append(mb[:], 0, 0, 0, 0, 0, 0, 0, 1))
}

func (c *corruptStore) Enqueue(_ context.Context, mb mailbox.ID, _ mailbox.Message) (mailbox.Receipt, error) {
	return mailbox.Receipt{}, fmt.Errorf("%w: message key %x", mailbox.ErrCorrupt, append(mb[:], 0, 0, 0, 0, 0, 0, 0, 1))
}

// failingStore fails Enqueue with an error the relay does not classify,
// naming the mailbox id in it.
type failingStore struct {
	mailbox.Store
}

func (f *failingStore) Enqueue(_ context.Context, mb mailbox.ID, _ mailbox.Message) (mailbox.Receipt, error) {
	return mailbox.Receipt{}, fmt.Errorf("disk trouble under key %x", mb[:])
}

// TestStoreErrorLogsNoMailbox: a mailbox store error that names a key is
// logged as corrupt, without the mailbox id in any form.
func TestStoreErrorLogsNoMailbox(t *testing.T) {
	w := newWorld(t, worldOptions{})
	a := w.newDevice([16]byte{3}, 0, 0)
	w.opts.Mailboxes = &corruptStore{Store: w.mbox}
	w.srv.Close()
	w.relay.Close()
	w.start()
	a.c = w.client(a)
	_, err := a.c.Fetch(context.Background(), 0, 10)
	wantStatus(t, err, 500)
	logs := w.logs.String()
	if !strings.Contains(logs, "corrupt") {
		t.Fatalf("the corruption was not logged:\n%s", logs)
	}
	mb := a.mailbox()
	id := relay.StoreMailboxID(mb)
	for _, s := range []string{hex.EncodeToString(mb[:]), hex.EncodeToString(id[:]), hex.EncodeToString(a.id[:])} {
		if strings.Contains(strings.ToLower(logs), s) {
			t.Fatalf("the log names the mailbox (%s):\n%s", s, logs)
		}
	}
}

// TestSendBatchStoreErrorLogsNoMailbox: a batch item's store error, corrupt
// or unclassified, is logged without the mailbox id in any form.
func TestSendBatchStoreErrorLogsNoMailbox(t *testing.T) {
	for _, tc := range []struct {
		name string
		wrap func(mailbox.Store) mailbox.Store
		want string
	}{
		{"corrupt", func(s mailbox.Store) mailbox.Store { return &corruptStore{Store: s} }, "ALARM: corrupt"},
		{"other", func(s mailbox.Store) mailbox.Store { return &failingStore{Store: s} }, "disk trouble"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, worldOptions{})
			a, b := w.newDevice([16]byte{3}, 0, 0), w.newDevice([16]byte{3}, 0, 0)
			w.opts.Mailboxes = tc.wrap(w.mbox)
			w.srv.Close()
			w.relay.Close()
			w.start()
			a.c, b.c = w.client(a), w.client(b)
			rs, err := w.anon().SendBatch(context.Background(), []relay.BatchItem{{w.token(b, 1), envelope(t, a, b, []byte("x"))}})
			ok(t, err)
			wantStatus(t, rs[0].Err, 500)
			logs := w.logs.String()
			if !strings.Contains(logs, tc.want) || !strings.Contains(logs, "[redacted]") {
				t.Fatalf("the store error was not logged redacted:\n%s", logs)
			}
			mb := b.mailbox()
			id := relay.StoreMailboxID(mb)
			for _, s := range []string{hex.EncodeToString(mb[:]), hex.EncodeToString(id[:]), hex.EncodeToString(b.id[:])} {
				if strings.Contains(strings.ToLower(logs), s) {
					t.Fatalf("the log names the mailbox (%s):\n%s", s, logs)
				}
			}
		})
	}
}
