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
