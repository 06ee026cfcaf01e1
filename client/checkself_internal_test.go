package client

import (
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/moat-im/moat/client/localstore"
	"github.com/moat-im/moat/client/localstore/memstore"
	"github.com/moat-im/moat/keyserver/org"
)

// TestCheckSelfWipes checks the decision a verified lookup of this
// device's own user leads to (the directory refuses a revoked device's
// requests at once, so the end-to-end tests reach the wipe through the
// wipe instruction instead): another device's revocation changes nothing;
// this device's wipes the store, also inside a transaction (the wipe then
// waits for its end), and the client refuses further use.
func TestCheckSelfWipes(t *testing.T) {
	self, other := DeviceID{1}, DeviceID{2}
	revoking := func(d DeviceID) *org.UserValue {
		return &org.UserValue{Entries: []*org.Entry{{Action: &org.DeviceRevoked{Device: d}}}}
	}
	for _, inTx := range []bool{false, true} {
		st := memstore.New()
		ok := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		ok(st.Update(func(tx localstore.Tx) error { return tx.Put("", "k", []byte("id"), []byte("v")) }))
		c := &Client{st: st, dev: &deviceState{Device: self}, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			events: make(chan Event, 4), done: make(chan struct{})}
		ok(c.checkSelf(revoking(other), nil))
		ok(st.View(func(tx localstore.Tx) error { _, err := tx.Get("", "k", []byte("id")); return err }))

		var err error
		if inTx {
			c.inTx = true
			err = c.checkSelf(revoking(self), nil)
			c.inTx = false
			if !c.wipePending {
				t.Fatal("no wipe pending after a revocation inside a transaction")
			}
			err = c.update(func(localstore.Tx) error { return err })
		} else {
			err = c.checkSelf(revoking(self), nil)
		}
		if !errors.Is(err, ErrRevoked) {
			t.Fatalf("inTx %v: %v", inTx, err)
		}
		if err := st.View(func(localstore.Tx) error { return nil }); !errors.Is(err, localstore.ErrClosed) {
			t.Fatalf("inTx %v: store not wiped: %v", inTx, err)
		}
		if err := c.lock(); !errors.Is(err, ErrRevoked) {
			t.Fatalf("inTx %v: client still usable: %v", inTx, err)
		}
		if e := <-c.events; e.Kind != EventRevoked {
			t.Fatalf("event %v", e.Kind)
		}
	}
}
