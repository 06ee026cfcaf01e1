package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"

	"github.com/moat-im/moat/client"
	"github.com/moat-im/moat/client/clienttest"
	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/server/relay"
)

// drain returns the events d's stream holds now.
func drain(d *device) []client.Event {
	var out []client.Event
	for ch := d.Events(); len(ch) > 0; {
		out = append(out, <-ch)
	}
	return out
}

// changesIn returns the contact changes among evs.
func changesIn(evs []client.Event) []client.ContactChange {
	var out []client.ContactChange
	for _, e := range evs {
		if e.Kind == client.EventContactChanged {
			if e.Change == nil || e.Conversation != e.Change.User {
				panic("contact-changed event without its change")
			}
			out = append(out, *e.Change)
		}
	}
	return out
}

func sameChanges(got []client.ContactChange, want ...client.ContactChange) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.User != w.User || g.Kind != w.Kind || g.Device != w.Device {
			return false
		}
	}
	return true
}

// TestT14ContactKeyChangeAlert (adversarial case T14, "user alerted"):
// Bob verified Alice's one device; a device added for her (approved by
// her device), an admin revoking her first device, and a device the
// admins re-enrol for her are published in the directory. Bob's next
// verified lookups (before a send, a contact lookup, the sender check of
// a new session) record each change in Alice's change history and
// announce it (EventContactChanged), once; a first contact raises
// nothing.
func TestT14ContactKeyChangeAlert(t *testing.T) {
	s, alice, bob, a1, b := twoUsers(t)
	ctx := context.Background()
	ct, err := b.Contact(ctx, alice)
	ok(t, err)
	if len(ct.Devices) != 1 {
		t.Fatalf("contact %+v", ct)
	}
	if ch := changesIn(drain(b)); len(ch) != 0 {
		t.Fatalf("a first contact raised %+v", ch)
	}

	a2 := enrol(t, s, alice, a1)
	s.Publish()
	_, err = b.SendText(ctx, alice, "hello")
	ok(t, err)
	added := client.ContactChange{User: alice, Kind: client.ContactDeviceAdded, Device: a2.Self().Device}
	if got := changesIn(drain(b)); !sameChanges(got, added) || got[0].NewFingerprint != a2.Self().Fingerprint {
		t.Fatalf("after a device was added: %+v", got)
	}

	s.RevokeDevice(alice, a1.Self().Device)
	s.Publish()
	_, err = b.Contact(ctx, alice)
	ok(t, err)
	removed := client.ContactChange{User: alice, Kind: client.ContactDeviceRemoved, Device: a1.Self().Device}
	if got := changesIn(drain(b)); !sameChanges(got, removed) || got[0].OldFingerprint != a1.Self().Fingerprint {
		t.Fatalf("after a revocation: %+v", got)
	}
	// Nothing changed since: nothing is announced again.
	_, err = b.SendText(ctx, alice, "still there?")
	ok(t, err)
	if got := changesIn(drain(b)); len(got) != 0 {
		t.Fatalf("a change announced twice: %+v", got)
	}

	// The admins re-enrol a device for Alice (recovery under dual
	// control); its first message to Bob shows it to him.
	st := clienttest.NewStore()
	code := s.IssueCode(alice)
	_, err = client.Enrol(ctx, s.Config(), st, code)
	var are *client.ApprovalRequiredError
	if !errors.As(err, &are) {
		t.Fatalf("enrolment without approval: %v", err)
	}
	s.ApproveAsAdmins(alice, are.Request)
	a3, err := client.Enrol(ctx, s.Config(), st, code)
	ok(t, err)
	defer a3.Close()
	s.Publish()
	_, err = a3.SendText(ctx, bob, "my new device")
	ok(t, err)
	syncAll(t, b)
	recovered := client.ContactChange{User: alice, Kind: client.ContactDeviceAdded, Device: a3.Self().Device}
	if got := changesIn(drain(b)); !sameChanges(got, recovered) {
		t.Fatalf("after a recovery: %+v", got)
	}
	if h := history(t, b, alice); len(h) != 3 || h[2].Text != "my new device" {
		t.Fatalf("history %+v", h)
	}
	hist, err := b.ContactChanges(alice)
	ok(t, err)
	if !sameChanges(hist, added, removed, recovered) || hist[0].Epoch == 0 || hist[1].Epoch <= hist[0].Epoch {
		t.Fatalf("change history %+v", hist)
	}
}

// bundleSwap is a relay that serves, for the bundle of one device, the
// bundle it served before for another (recorded from a real fetch): a key
// substitution.
type bundleSwap struct {
	mu         sync.Mutex
	from, to   string // bundle paths: the one recorded, the one substituted
	recorded   []byte
	substitute int
}

func bundlePath(self client.Self) string {
	return "/relay/v1/devices/" + relay.MailboxText(sealed.NewMailboxID(self.Tenant, self.Device)) + "/bundle"
}

func (b *bundleSwap) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil || r.Method != http.MethodGet || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case r.URL.Path == b.from && b.recorded == nil:
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		b.recorded = body
		resp.Body = io.NopCloser(bytes.NewReader(body))
	case r.URL.Path == b.to && b.recorded != nil:
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(b.recorded))
		resp.ContentLength = int64(len(b.recorded))
		resp.Header.Set("Content-Length", strconv.Itoa(len(b.recorded)))
		b.substitute++
	}
	return resp, nil
}

// TestT14SubstitutedBundleRefused (adversarial case T14): the relay
// answers Bob's fetch of Alice's prekey bundle with Carol's (validly
// signed, by a key that is not Alice's in the directory). The send is
// refused with an *UnverifiedContactError naming Alice's device, and a
// ContactKeySubstitution change is announced and kept in Alice's change
// history; no session with Alice is stored.
func TestT14SubstitutedBundleRefused(t *testing.T) {
	s := clienttest.New(t)
	ctx := context.Background()
	alice, bob, carol := s.AddUser("Alice"), s.AddUser("Bob"), s.AddUser("Carol")
	a := enrol(t, s, alice, nil)
	c := enrol(t, s, carol, nil)
	swap := &bundleSwap{from: bundlePath(c.Self()), to: bundlePath(a.Self())}
	b := enrol(t, s, bob, nil, func(cfg *client.Config) { cfg.HTTP = &http.Client{Transport: swap} })
	s.Publish()
	_, err := b.SendText(ctx, carol, "hi Carol") // the relay keeps Carol's bundle
	ok(t, err)
	drain(b)
	_, err = b.SendText(ctx, alice, "hi Alice")
	var ue *client.UnverifiedContactError
	if !errors.As(err, &ue) || ue.User != alice || ue.Device != a.Self().Device {
		t.Fatalf("send over a substituted bundle: %v", err)
	}
	if swap.substitute != 1 {
		t.Fatalf("%d substitutions", swap.substitute)
	}
	want := client.ContactChange{User: alice, Kind: client.ContactKeySubstitution, Device: a.Self().Device}
	if got := changesIn(drain(b)); !sameChanges(got, want) || got[0].OldFingerprint != a.Self().Fingerprint {
		t.Fatalf("events: %+v", got)
	}
	hist, err := b.ContactChanges(alice)
	ok(t, err)
	if !sameChanges(hist, want) {
		t.Fatalf("change history %+v", hist)
	}
	syncAll(t, a)
	if h := history(t, a, bob); len(h) != 0 {
		t.Fatalf("Alice got %+v", h)
	}
}
