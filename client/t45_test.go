package client_test

import (
	"context"
	"errors"
	"testing"

	"github.com/moat-im/moat/client"
	"github.com/moat-im/moat/client/clienttest"
)

// TestT45NewSessionFromRevokedDeviceRefused (adversarial case T45, "its
// later messages rejected"): Alice's second device starts a session with
// Carol, who never heard from it, with a first (PQXDH-initiating)
// message; Alice's admin revokes the device before Carol fetches it. The
// message is refused (the initiator's key is not among Alice's usable
// devices in the directory); Alice's other device is accepted.
func TestT45NewSessionFromRevokedDeviceRefused(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	carol := w.s.AddUser("Carol")
	c := enrol(t, w.s, carol, nil)
	w.s.Publish()
	_, err := w.a2.SendText(ctx, carol, "first message of a device about to be revoked")
	ok(t, err)
	w.s.RevokeDevice(w.alice, w.a2.Self().Device)
	w.s.Publish()
	_, err = w.a1.SendText(ctx, carol, "from the other device")
	ok(t, err)
	drain(c)
	syncAll(t, c)
	h := history(t, c, w.alice)
	if len(h) != 1 || h[0].Text != "from the other device" {
		t.Fatalf("Carol's history %+v", h)
	}
	if !refusedDevice(drain(c), w.a2.Self().Device) {
		t.Fatal("no refusal naming the revoked device")
	}
}

// TestT45NewSessionFromUnpublishedDeviceRefused (adversarial case T45):
// a device the CA certified for Alice, a published user, but that is not
// in the directory yet starts a session with Carol: the message is
// refused (and kept) until the directory publishes the device, then
// accepted.
func TestT45NewSessionFromUnpublishedDeviceRefused(t *testing.T) {
	s := clienttest.New(t)
	ctx := context.Background()
	alice, carol := s.AddUser("Alice"), s.AddUser("Carol")
	a1 := enrol(t, s, alice, nil)
	c := enrol(t, s, carol, nil)
	s.Publish()
	a2 := enrol(t, s, alice, a1) // certified, not yet published
	_, err := a2.SendText(ctx, carol, "from a device not in the directory")
	ok(t, err)
	drain(c)
	syncAll(t, c)
	if h := history(t, c, alice); len(h) != 0 {
		t.Fatalf("Carol accepted %+v", h)
	}
	if !refusedDevice(drain(c), a2.Self().Device) {
		t.Fatal("no refusal naming the unpublished device")
	}
	s.Publish()
	syncAll(t, c)
	if h := history(t, c, alice); len(h) != 1 || h[0].FromDevice != a2.Self().Device {
		t.Fatalf("after publication: %+v", h)
	}
}

func refusedDevice(evs []client.Event, d client.DeviceID) bool {
	for _, e := range evs {
		var ue *client.UnverifiedContactError
		if e.Kind == client.EventError && errors.As(e.Err, &ue) && ue.Device == d {
			return true
		}
	}
	return false
}
