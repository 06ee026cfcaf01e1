package client_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"

	"github.com/moat-im/moat/client"
	"github.com/moat-im/moat/client/clienttest"
)

func ok(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type device struct {
	*client.Client
	st  *clienttest.Store
	cfg client.Config
}

// enrol enrols a new device of user; approver, if not nil, approves it
// (dual control for a user's second device).
func enrol(t testing.TB, s *clienttest.Server, user client.UserID, approver *device, opts ...func(*client.Config)) *device {
	t.Helper()
	ctx := context.Background()
	st := clienttest.NewStore()
	code := s.IssueCode(user)
	cfg := s.Config()
	for _, o := range opts {
		o(&cfg)
	}
	sameTransport(&cfg)
	c, err := client.Enrol(ctx, cfg, st, code)
	if approver != nil {
		var are *client.ApprovalRequiredError
		if !errors.As(err, &are) {
			t.Fatalf("second device enrolled without approval: %v", err)
		}
		ap, err := approver.ApproveDevice(are.Request)
		ok(t, err)
		c, err = client.Enrol(ctx, cfg, st, code, ap)
		ok(t, err)
	} else {
		ok(t, err)
	}
	t.Cleanup(func() { c.Close() })
	return &device{c, st, cfg}
}

// sameTransport lets a test's wrapping transport see the anonymous
// requests too: it uses it for Config.AnonymousHTTP, which the SDK cannot
// derive from a wrapper. Such a test shares one connection pool between
// the two; TestSealedSendsOwnConnections checks the SDK's default.
func sameTransport(cfg *client.Config) {
	if cfg.HTTP == nil || cfg.AnonymousHTTP != nil {
		return
	}
	if _, ok := cfg.HTTP.Transport.(*http.Transport); !ok && cfg.HTTP.Transport != nil {
		cfg.AnonymousHTTP = &http.Client{Transport: cfg.HTTP.Transport, Timeout: cfg.HTTP.Timeout}
	}
}

// world is two users, Alice with two devices and Bob with one, enrolled
// and published.
type world struct {
	s          *clienttest.Server
	alice, bob client.UserID
	a1, a2, b1 *device
}

func newWorld(t *testing.T) *world { return newWorldTB(t) }

func newWorldTB(t testing.TB) *world {
	s := clienttest.New(t)
	w := &world{s: s, alice: s.AddUser("Alice Liddell"), bob: s.AddUser("Bob Dobbs")}
	w.a1 = enrol(t, s, w.alice, nil)
	w.b1 = enrol(t, s, w.bob, nil)
	w.a2 = enrol(t, s, w.alice, w.a1)
	s.Publish()
	return w
}

// twoUsers enrols one device each for users Alice and Bob and publishes
// them.
func twoUsers(t testing.TB) (s *clienttest.Server, alice, bob client.UserID, a, b *device) {
	s = clienttest.New(t)
	alice, bob = s.AddUser("Alice"), s.AddUser("Bob")
	a, b = enrol(t, s, alice, nil), enrol(t, s, bob, nil)
	s.Publish()
	return s, alice, bob, a, b
}

func syncAll(t testing.TB, ds ...*device) {
	t.Helper()
	for _, d := range ds {
		ok(t, d.Sync(context.Background()))
	}
}

// discardEvents discards the events queued on events.
func discardEvents(events <-chan client.Event) {
	for len(events) > 0 {
		<-events
	}
}

// anyEvent takes the events queued on events and reports whether match
// picks any of them.
func anyEvent(events <-chan client.Event, match func(client.Event) bool) bool {
	found := false
	for len(events) > 0 {
		if match(<-events) {
			found = true
		}
	}
	return found
}

func history(t testing.TB, d *device, conv client.UserID) []client.Record {
	t.Helper()
	h, err := d.History(conv, 0)
	ok(t, err)
	return h
}

func only(t *testing.T, h []client.Record) client.Record {
	t.Helper()
	if len(h) != 1 {
		t.Fatalf("history has %d records, want 1: %+v", len(h), h)
	}
	return h[0]
}

// TestEndToEnd runs three devices (Alice's two, Bob's one) over HTTP on
// loopback against a directory and relay in process: dual-control
// enrolment, contact verification with display names, a first message
// on an anonymous token, fan-out to the sender's other device, delivered
// and read receipts, replies on MAC tokens, mentions, edit, reaction,
// delete for everyone and search.
func TestEndToEnd(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()

	ct, err := w.a1.Contact(ctx, w.bob)
	ok(t, err)
	if ct.DisplayName != "Bob Dobbs" || len(ct.Devices) != 1 || ct.Devices[0].Device != w.b1.Self().Device {
		t.Fatalf("contact %+v", ct)
	}
	own, err := w.b1.Contact(ctx, w.alice)
	ok(t, err)
	if len(own.Devices) != 2 {
		t.Fatalf("Alice has %d devices, want 2", len(own.Devices))
	}

	id, err := w.a1.Send(ctx, w.bob, client.Message{Kind: client.KindText, Text: "hello Bob", Mentions: []client.UserID{w.bob}})
	ok(t, err)
	syncAll(t, w.b1, w.a2)
	got := only(t, history(t, w.b1, w.alice))
	if got.ID != id || got.Text != "hello Bob" || got.From != w.alice || got.Outgoing || !slices.Equal(got.Mentions, []client.UserID{w.bob}) {
		t.Fatalf("Bob got %+v", got)
	}
	// The sync transcript on Alice's other device.
	tr := only(t, history(t, w.a2, w.bob))
	if tr.ID != id || tr.Text != "hello Bob" || !tr.Outgoing || tr.FromDevice != w.a1.Self().Device {
		t.Fatalf("Alice's second device has %+v", tr)
	}
	// Bob's device sent a delivered receipt on receipt.
	syncAll(t, w.a1)
	if r := only(t, history(t, w.a1, w.bob)); !slices.Equal(r.Delivered, []client.UserID{w.bob}) || len(r.Read) != 0 {
		t.Fatalf("after delivery: %+v", r)
	}
	ok(t, w.b1.MarkRead(ctx, w.alice, id))
	syncAll(t, w.a1)
	if r := only(t, history(t, w.a1, w.bob)); !slices.Equal(r.Read, []client.UserID{w.bob}) {
		t.Fatalf("after read receipt: %+v", r)
	}

	// Bob replies: both of Alice's devices get it.
	rid, err := w.b1.Send(ctx, w.alice, client.Message{Kind: client.KindReply, Target: id, Text: "hi Alice"})
	ok(t, err)
	syncAll(t, w.a1, w.a2)
	for _, d := range []*device{w.a1, w.a2} {
		h := history(t, d, w.bob)
		if len(h) != 2 || h[1].ID != rid || h[1].ReplyTo != id || h[1].Text != "hi Alice" {
			t.Fatalf("Alice's device %s: %+v", d.Self().Device, h)
		}
	}

	// Alice edits, Bob reacts, Alice deletes for everyone.
	_, err = w.a1.Send(ctx, w.bob, client.Message{Kind: client.KindEdit, Target: id, Text: "hello, Bob"})
	ok(t, err)
	syncAll(t, w.b1, w.a2)
	for _, d := range []*device{w.b1, w.a2} {
		conv := w.alice
		if d == w.a2 {
			conv = w.bob
		}
		if r := history(t, d, conv)[0]; r.Text != "hello, Bob" || !r.Edited {
			t.Fatalf("after edit: %+v", r)
		}
	}
	_, err = w.b1.Send(ctx, w.alice, client.Message{Kind: client.KindReaction, Target: id, Reaction: "👍"})
	ok(t, err)
	syncAll(t, w.a1, w.a2)
	if r := history(t, w.a2, w.bob)[0]; r.Reactions[w.bob] != "👍" {
		t.Fatalf("after reaction: %+v", r)
	}
	res, err := w.a1.Search("HELLO, bob")
	ok(t, err)
	if len(res) != 1 || res[0].ID != id {
		t.Fatalf("search: %+v", res)
	}
	// Bob cannot delete Alice's message.
	if _, err := w.b1.Send(ctx, w.alice, client.Message{Kind: client.KindDelete, Target: id}); !errors.Is(err, client.ErrUnknownMessage) {
		t.Fatalf("Bob deleting Alice's message: %v", err)
	}
	_, err = w.a1.Send(ctx, w.bob, client.Message{Kind: client.KindDelete, Target: id})
	ok(t, err)
	syncAll(t, w.b1, w.a2)
	for _, d := range []*device{w.a1, w.a2, w.b1} {
		conv := w.bob
		if d == w.b1 {
			conv = w.alice
		}
		h := history(t, d, conv)
		if len(h) != 1 || h[0].ID != rid {
			t.Fatalf("after delete for everyone: %+v", h)
		}
	}
	if res, _ := w.b1.Search("hello"); len(res) != 0 {
		t.Fatalf("a deleted message is still found: %+v", res)
	}
}
