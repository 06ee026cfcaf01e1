package client

import (
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/moat-im/moat/client/localstore"
	"github.com/moat-im/moat/client/localstore/memstore"
)

// TestT14NoteDevices checks the comparison behind contact key changes
// (T14), including an identity key replaced under the same device id,
// which the directory tests cannot make: each difference is one change,
// stored and announced once the transaction commits; a failed
// transaction stores and announces nothing; a refused bundle is stored
// and announced although its transaction failed.
func TestT14NoteDevices(t *testing.T) {
	st := memstore.New()
	c := &Client{st: st, dev: &deviceState{}, cfg: Config{Now: time.Now}, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		events: make(chan Event, 16), done: make(chan struct{})}
	user := UserID{9}
	d1, d2, d3 := DeviceID{1}, DeviceID{2}, DeviceID{3}
	ok := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	note := func(devs []ContactDevice, fail error) error {
		err := st.Update(func(tx localstore.Tx) error {
			if err := c.noteDevices(tx, user, devs, 7); err != nil {
				return err
			}
			return fail
		})
		c.flushChanges(err == nil)
		return err
	}
	events := func() []ContactChange {
		var out []ContactChange
		for len(c.events) > 0 {
			if e := <-c.events; e.Kind == EventContactChanged {
				out = append(out, *e.Change)
			}
		}
		return out
	}
	// A first contact: nothing.
	ok(note([]ContactDevice{{d1, "aa"}}, nil))
	if got := events(); len(got) != 0 {
		t.Fatalf("first contact: %+v", got)
	}
	ok(st.Update(func(tx localstore.Tx) error {
		return putJSON(tx, kindContact, user[:], &contactRecord{Contact: Contact{User: user, Devices: []ContactDevice{{d1, "aa"}, {d2, "bb"}}}})
	}))
	newDevs := []ContactDevice{{d1, "a2"}, {d3, "cc"}}
	boom := errors.New("boom")
	if err := note(newDevs, boom); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if got := events(); len(got) != 0 {
		t.Fatalf("announced from a failed transaction: %+v", got)
	}
	if h, err := c.ContactChanges(user); err != nil || len(h) != 0 {
		t.Fatalf("stored from a failed transaction: %+v %v", h, err)
	}
	ok(note(newDevs, nil))
	want := []ContactChange{
		{Kind: ContactIdentityChanged, Device: d1, OldFingerprint: "aa", NewFingerprint: "a2"},
		{Kind: ContactDeviceAdded, Device: d3, NewFingerprint: "cc"},
		{Kind: ContactDeviceRemoved, Device: d2, OldFingerprint: "bb"},
	}
	same := func(got []ContactChange) bool {
		if len(got) != len(want) {
			return false
		}
		for i, g := range got {
			w := want[i]
			if g.User != user || g.Epoch != 7 || g.Kind != w.Kind || g.Device != w.Device || g.OldFingerprint != w.OldFingerprint || g.NewFingerprint != w.NewFingerprint {
				return false
			}
		}
		return true
	}
	if got := events(); !same(got) {
		t.Fatalf("events %+v", got)
	}
	h, err := c.ContactChanges(user)
	ok(err)
	if !same(h) {
		t.Fatalf("history %+v", h)
	}

	c.noteSubstitution(user, d3, "cc")
	c.flushChanges(false)
	if got := events(); len(got) != 1 || got[0].Kind != ContactKeySubstitution || got[0].Device != d3 || got[0].OldFingerprint != "cc" {
		t.Fatalf("substitution events %+v", got)
	}
	h, err = c.ContactChanges(user)
	ok(err)
	if len(h) != 4 || h[3].Kind != ContactKeySubstitution {
		t.Fatalf("history %+v", h)
	}
}
