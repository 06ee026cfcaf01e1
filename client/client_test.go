package client_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-im/moat/client"
	"github.com/moat-im/moat/client/clienttest"
	"github.com/moat-im/moat/crypto/deliverytoken"
)

// clock is the real clock moved ahead by Advance (a frozen clock would
// be behind certificates and checkpoints issued after it was set).
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// TestDisappearingMessages sets a timer in a conversation: later messages
// carry it and are destroyed on both sides once it has run out, through
// the store (whose deletion destroys each record's key).
func TestDisappearingMessages(t *testing.T) {
	s := clienttest.New(t)
	ctx := context.Background()
	alice, bob := s.AddUser("Alice"), s.AddUser("Bob")
	ca, cb := &clock{}, &clock{}
	a := enrol(t, s, alice, nil, func(c *client.Config) { c.Now = ca.Now })
	b := enrol(t, s, bob, nil, func(c *client.Config) { c.Now = cb.Now })
	s.Publish()

	_, err := a.Send(ctx, bob, client.Message{Kind: client.KindTimer, Timer: time.Minute})
	ok(t, err)
	syncAll(t, b)
	id, err := a.SendText(ctx, bob, "this disappears")
	ok(t, err)
	syncAll(t, b)
	h := history(t, b, alice)
	if len(h) != 2 || h[0].Kind != client.KindTimer || h[0].Timer != time.Minute || h[1].ID != id || h[1].ExpiresAt.IsZero() {
		t.Fatalf("Bob's history: %+v", h)
	}
	if h := history(t, a, bob); len(h) != 2 || h[1].ExpiresAt.IsZero() {
		t.Fatalf("Alice's history: %+v", h)
	}
	cb.Advance(2 * time.Minute)
	ca.Advance(2 * time.Minute)
	for _, d := range []struct {
		d    *device
		conv client.UserID
	}{{b, alice}, {a, bob}} {
		h := history(t, d.d, d.conv)
		if len(h) != 1 || h[0].Kind != client.KindTimer {
			t.Fatalf("after the timer: %+v", h)
		}
		for k, v := range d.d.st.Snapshot() {
			if strings.Contains(v, "this disappears") {
				t.Fatalf("the store still holds the message under %q", k)
			}
		}
	}
}

// TestOfflineDeliveryAndCatchUp runs Bob's push loop: a message arrives
// while he is online; after he goes offline, two more are waiting and
// arrive on reconnection, in order, exactly once.
func TestOfflineDeliveryAndCatchUp(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	events := w.b1.Events()
	run := func() (stop func()) {
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- w.b1.Run(rctx) }()
		return func() {
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("Run: %v", err)
			}
		}
	}
	// next waits for the next message event (a generous bound guards
	// against a hang; it is no timing assertion).
	next := func() client.Event {
		t.Helper()
		for {
			select {
			case e := <-events:
				if e.Kind == client.EventMessage {
					return e
				}
			case <-time.After(30 * time.Second):
				t.Fatal("no message event")
			}
		}
	}
	stop := run()
	_, err := w.a1.SendText(ctx, w.bob, "online")
	ok(t, err)
	if e := next(); e.Record.Text != "online" || e.Conversation != w.alice {
		t.Fatalf("event %+v", e)
	}
	stop()
	_, err = w.a1.SendText(ctx, w.bob, "while away 1")
	ok(t, err)
	_, err = w.a2.SendText(ctx, w.bob, "while away 2")
	ok(t, err)
	stop = run()
	defer stop()
	if e := next(); e.Record.Text != "while away 1" {
		t.Fatalf("first caught-up event %+v", e.Record)
	}
	if e := next(); e.Record.Text != "while away 2" {
		t.Fatalf("second caught-up event %+v", e.Record)
	}
	h := history(t, w.b1, w.alice)
	if len(h) != 3 {
		t.Fatalf("history %+v", h)
	}
}

// TestT26UnverifiedContactRefused (adversarial case T26): a user whose
// device the directory has not published yet cannot be sent to, and its
// messages are refused with the reason (an error event, nothing in the
// history); they are kept, and accepted once the directory publishes it.
func TestT26UnverifiedContactRefused(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	carol := w.s.AddUser("Carol")
	c1 := enrol(t, w.s, carol, nil)
	_, err := w.a1.SendText(ctx, carol, "hi Carol")
	var ue *client.UnverifiedContactError
	if !errors.As(err, &ue) || ue.User != carol || ue.Reason == "" {
		t.Fatalf("sending to an unpublished user: %v", err)
	}
	v, err := w.a1.Verify(ctx, carol)
	ok(t, err)
	if v.Verified || v.Reason == "" {
		t.Fatalf("verification of an unpublished user: %+v", v)
	}
	// Carol's message to Bob is refused: her key is not in the directory.
	_, err = c1.SendText(ctx, w.bob, "from an unverified device")
	ok(t, err)
	events := w.b1.Events()
	syncAll(t, w.b1)
	if h := history(t, w.b1, carol); len(h) != 0 {
		t.Fatalf("Bob accepted %+v", h)
	}
	if !anyEvent(events, func(e client.Event) bool {
		return e.Kind == client.EventError && errors.As(e.Err, &ue) && ue.User == carol
	}) {
		t.Fatal("no refusal event naming Carol")
	}
	w.s.Publish()
	_, err = c1.SendText(ctx, w.bob, "now verified")
	ok(t, err)
	syncAll(t, w.b1)
	// The refused message was kept and is accepted now, before the new one.
	if h := history(t, w.b1, carol); len(h) != 2 || h[0].Text != "from an unverified device" || h[1].Text != "now verified" {
		t.Fatalf("after publication: %+v", h)
	}
	v, err = w.a1.Verify(ctx, carol)
	ok(t, err)
	if !v.Verified || len(v.Devices) != 1 {
		t.Fatalf("verification after publication: %+v", v)
	}
}

// TestRevocationWipe: an admin revokes Alice's second device; the wipe
// instruction the organisation signed makes that device wipe its store
// and refuse further use; an instruction for another device changes
// nothing; Alice's other device stops fanning out to it.
func TestRevocationWipe(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	dave := w.s.AddUser("Dave")
	d1 := enrol(t, w.s, dave, nil)
	other := w.s.RevokeDevice(dave, d1.Self().Device)
	before := w.a2.st.Snapshot()
	if err := w.a2.Wipe(other); err == nil || errors.Is(err, client.ErrRevoked) {
		t.Fatalf("a wipe instruction for another device: %v", err)
	}
	if !maps.Equal(before, w.a2.st.Snapshot()) || w.a2.st.Wiped() {
		t.Fatal("a refused wipe instruction changed the store")
	}
	if err := w.a2.Wipe(bytes.Repeat([]byte{1}, 100)); err == nil {
		t.Fatal("garbage accepted as a wipe instruction")
	}

	instr := w.s.RevokeDevice(w.alice, w.a2.Self().Device)
	if err := w.a2.Wipe(instr); !errors.Is(err, client.ErrRevoked) {
		t.Fatalf("Wipe: %v", err)
	}
	if !w.a2.st.Wiped() {
		t.Fatal("store not wiped")
	}
	if err := w.a2.Sync(ctx); !errors.Is(err, client.ErrRevoked) {
		t.Fatalf("Sync after the wipe: %v", err)
	}
	if _, err := w.a2.SendText(ctx, w.bob, "x"); !errors.Is(err, client.ErrRevoked) {
		t.Fatalf("Send after the wipe: %v", err)
	}
	if _, err := client.Open(ctx, w.a2.cfg, w.a2.st); err == nil {
		t.Fatal("a wiped store opened")
	}
	w.s.Publish()
	// Alice's remaining device sees one device of her own now.
	own, err := w.a1.Contact(ctx, w.alice)
	ok(t, err)
	if len(own.Devices) != 1 || own.Devices[0].Device != w.a1.Self().Device {
		t.Fatalf("Alice's devices after the revocation: %+v", own.Devices)
	}
	tl, err := w.a1.Timeline(ctx)
	ok(t, err)
	var actions []string
	for _, e := range tl {
		actions = append(actions, e.Action)
	}
	if got := strings.Join(actions, ","); got != "user_added,device_added,device_added,device_revoked" {
		t.Fatalf("timeline %s", got)
	}
	_, err = w.a1.SendText(ctx, w.bob, "still here")
	ok(t, err)
}

// TestBadEnvelopeLeavesStateUnchanged delivers a tampered copy of a real
// envelope: Bob refuses it with an event, acknowledges it, and changes no
// session, prekey or history record.
func TestBadEnvelopeLeavesStateUnchanged(t *testing.T) {
	s := clienttest.New(t)
	ctx := context.Background()
	alice, bob := s.AddUser("Alice"), s.AddUser("Bob")
	capture := &clienttest.Capture{}
	a := enrol(t, s, alice, nil, func(c *client.Config) { c.HTTP = &http.Client{Transport: capture} })
	b := enrol(t, s, bob, nil)
	s.Publish()
	_, err := a.SendText(ctx, bob, "first")
	ok(t, err)
	first := capture.Last()
	syncAll(t, b)
	_, err = a.SendText(ctx, bob, "second")
	ok(t, err)
	second := capture.Last()
	syncAll(t, b)

	for name, bad := range map[string][]byte{
		"flipped ciphertext": flip(second, len(second)-1),
		"altered header":     first,
	} {
		before := stateOf(b.st)
		events := b.Events()
		discardEvents(events)
		ok(t, s.Send(resealID(bad), s.AnonymousAuthorization()))
		syncAll(t, b)
		if !maps.Equal(before, stateOf(b.st)) {
			t.Fatalf("%s: Bob's state changed", name)
		}
		if !anyEvent(events, func(e client.Event) bool { return e.Kind == client.EventError }) {
			t.Fatalf("%s: no refusal event", name)
		}
	}
	syncAll(t, b)
	if h := history(t, b, alice); len(h) != 2 || h[1].Text != "second" {
		t.Fatalf("history %+v", h)
	}
}

func flip(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 1
	return b
}

// resealID gives a copy of an envelope a new header message id
// (docs/spec/envelope.md §Header: bytes 34..50), so that the relay takes
// it as a new message; the header is the AEAD's associated data, so the
// copy no longer opens.
func resealID(env []byte) []byte {
	env = bytes.Clone(env)
	rand.Read(env[34:50])
	return env
}

// stateOf is every record of the store but the device record and the
// directory state, which a processed message moves on (cursor, head).
func stateOf(st *clienttest.Store) map[string]string {
	m := st.Snapshot()
	for k := range m {
		if strings.HasPrefix(k, "\x00device\x00") || strings.HasPrefix(k, "\x00kt\x00") {
			delete(m, k)
		}
	}
	return m
}

// TestTokensAndRestart: the first message to a device goes on an
// anonymous token, later ones on the MAC token the device sent back; a
// device closed and opened again from its store carries on its sessions;
// a message committed but not acknowledged (a crash before the ack) comes
// again and is recognised, not applied twice.
func TestTokensAndRestart(t *testing.T) {
	s := clienttest.New(t)
	ctx := context.Background()
	alice, bob := s.AddUser("Alice"), s.AddUser("Bob")
	ca, cb := &clienttest.Capture{}, &clienttest.Capture{}
	a := enrol(t, s, alice, nil, func(c *client.Config) { c.HTTP = &http.Client{Transport: ca} })
	b := enrol(t, s, bob, nil, func(c *client.Config) { c.HTTP = &http.Client{Transport: cb} })
	s.Publish()

	_, err := a.SendText(ctx, bob, "one")
	ok(t, err)
	if k := ca.LastKind(); k != deliverytoken.KindAnonymous {
		t.Fatalf("first message on token kind %v", k)
	}
	syncAll(t, b) // Bob also sends a delivered receipt, with his token
	_, err = b.SendText(ctx, alice, "two")
	ok(t, err)
	if k := cb.LastKind(); k != deliverytoken.KindMAC {
		t.Fatalf("Bob's message after Alice's on token kind %v", k)
	}
	syncAll(t, a)
	_, err = a.SendText(ctx, bob, "three")
	ok(t, err)
	if k := ca.LastKind(); k != deliverytoken.KindMAC {
		t.Fatalf("Alice's second message on token kind %v", k)
	}

	// Bob's device stops; his store stays.
	ok(t, b.Close())
	if _, err := b.SendText(ctx, alice, "x"); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Send after Close: %v", err)
	}
	b2, err := client.Open(ctx, b.cfg, b.st)
	ok(t, err)
	defer b2.Close()
	bb := &device{b2, b.st, b.cfg}
	cb.SetFailAcks(true)
	ok(t, bb.Sync(ctx)) // processed and committed, not acknowledged
	cb.SetFailAcks(false)
	events := bb.Events()
	discardEvents(events)
	ok(t, bb.Sync(ctx)) // the relay sends it again
	for len(events) > 0 {
		if e := <-events; e.Kind == client.EventMessage || e.Kind == client.EventError {
			t.Fatalf("a redelivered message was processed again: %+v", e)
		}
	}
	h := history(t, bb, alice)
	if len(h) != 3 || h[2].Text != "three" {
		t.Fatalf("Bob's history after the restart: %+v", h)
	}
	_, err = bb.SendText(ctx, alice, "four")
	ok(t, err)
	syncAll(t, a)
	if h := history(t, a, bob); len(h) != 4 || h[3].Text != "four" {
		t.Fatalf("Alice's history: %+v", h)
	}
	// Opening with another relay key is refused.
	other := b.cfg
	other.RelayKey = s.AnotherRelayKey()
	if _, err := client.Open(ctx, other, b.st); !errors.Is(err, client.ErrRelayKeyMismatch) {
		t.Fatalf("Open with another relay key: %v", err)
	}
}

// TestInvalidMessageLeavesStateUnchanged: a Send the content format
// refuses stores nothing and sends nothing.
func TestInvalidMessageLeavesStateUnchanged(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	_, err := w.a1.SendText(ctx, w.bob, "hello")
	ok(t, err)
	before := w.a1.st.Snapshot()
	for name, m := range map[string]client.Message{
		"empty text":       {Kind: client.KindText},
		"invalid utf-8":    {Kind: client.KindText, Text: "\xff"},
		"reply no target":  {Kind: client.KindReply, Text: "x"},
		"unknown kind":     {Kind: 42, Text: "x"},
		"receipt no ids":   {Kind: client.KindRead},
		"negative timer":   {Kind: client.KindTimer, Timer: -time.Second},
		"fractional timer": {Kind: client.KindTimer, Timer: time.Millisecond},
		"attachment":       {Kind: client.KindAttachment},
		"edit unknown":     {Kind: client.KindEdit, Target: client.MessageID{1}, Text: "x"},
	} {
		_, err := w.a1.Send(ctx, w.bob, m)
		if !errors.Is(err, client.ErrInvalidMessage) && !errors.Is(err, client.ErrUnknownMessage) {
			t.Errorf("%s: %v", name, err)
		}
		if !maps.Equal(before, w.a1.st.Snapshot()) {
			t.Fatalf("%s: the store changed", name)
		}
	}
	if _, err := w.a1.SendText(ctx, w.alice, "to myself"); !errors.Is(err, client.ErrInvalidMessage) {
		t.Fatalf("a conversation with oneself: %v", err)
	}
}

// TestAttachment carries an attachment reference to the other user and
// the sender's other device.
func TestAttachment(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	att := &client.Attachment{Name: "report.pdf", MediaType: "application/pdf", Size: 1 << 20, Ref: []byte("opaque attach reference")}
	id, err := w.a1.Send(ctx, w.bob, client.Message{Kind: client.KindAttachment, Attachment: att, Text: "the report"})
	ok(t, err)
	syncAll(t, w.b1, w.a2)
	for _, r := range []client.Record{only(t, history(t, w.b1, w.alice)), only(t, history(t, w.a2, w.bob))} {
		if r.ID != id || r.Kind != client.KindAttachment || r.Text != "the report" || r.Attachment == nil ||
			r.Attachment.Name != att.Name || r.Attachment.Size != att.Size || !bytes.Equal(r.Attachment.Ref, att.Ref) {
			t.Fatalf("record %+v", r)
		}
	}
	res, err := w.b1.Search("REPORT.pdf")
	ok(t, err)
	if len(res) != 1 {
		t.Fatalf("search by file name: %+v", res)
	}
}

// TestT45RevokedDeviceMessagesRefused (adversarial case T45): once a
// device's revocation is published, its messages are refused, even on a
// session it established before, with the reason; the user's other
// device is still accepted.
func TestT45RevokedDeviceMessagesRefused(t *testing.T) {
	s := clienttest.New(t)
	ctx := context.Background()
	alice, bob := s.AddUser("Alice"), s.AddUser("Bob")
	a1 := enrol(t, s, alice, nil)
	a2 := enrol(t, s, alice, a1)
	b := enrol(t, s, bob, nil, func(c *client.Config) { c.RecheckAfter = -1 })
	s.Publish()
	_, err := a2.SendText(ctx, bob, "before")
	ok(t, err)
	syncAll(t, b)
	_, err = a2.SendText(ctx, bob, "after") // what a thief of the device could still make
	ok(t, err)
	s.RevokeDevice(alice, a2.Self().Device)
	s.Publish()
	_, err = a1.SendText(ctx, bob, "from the other device")
	ok(t, err)
	events := b.Events()
	discardEvents(events)
	syncAll(t, b)
	h := history(t, b, alice)
	if len(h) != 2 || h[0].Text != "before" || h[1].Text != "from the other device" {
		t.Fatalf("history %+v", h)
	}
	if !anyEvent(events, func(e client.Event) bool {
		var ue *client.UnverifiedContactError
		return e.Kind == client.EventError && errors.As(e.Err, &ue) && ue.Device == a2.Self().Device
	}) {
		t.Fatal("no refusal naming the revoked device")
	}
}

// TestT29Monitor (adversarial case T29): Alice's first device monitors her
// label; the second device, which it approved, raises no alert; an admin
// revoking it does, once; so does a device the admins enrol for her
// without her devices (dual control by admins: the recovery path of
// Enrol's ApprovalRequiredError).
func TestT29Monitor(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	alerts, err := w.a1.Monitor(ctx)
	ok(t, err)
	if len(alerts) != 0 {
		t.Fatalf("alerts for approved changes: %+v", alerts)
	}
	w.s.RevokeDevice(w.alice, w.a2.Self().Device)
	w.s.Publish()
	alerts, err = w.a1.Monitor(ctx)
	ok(t, err)
	if len(alerts) != 1 || alerts[0].Device != w.a2.Self().Device || alerts[0].Kind != "device revoked" {
		t.Fatalf("alerts after an admin revocation: %+v", alerts)
	}
	alerts, err = w.a1.Monitor(ctx)
	ok(t, err)
	if len(alerts) != 0 {
		t.Fatalf("an alert reported twice: %+v", alerts)
	}

	st := clienttest.NewStore()
	code := w.s.IssueCode(w.alice)
	_, err = client.Enrol(ctx, w.s.Config(), st, code)
	var are *client.ApprovalRequiredError
	if !errors.As(err, &are) || len(are.Fingerprint) != 64 {
		t.Fatalf("enrolment without approval: %v", err)
	}
	w.s.ApproveAsAdmins(w.alice, are.Request)
	a3, err := client.Enrol(ctx, w.s.Config(), st, code)
	ok(t, err)
	defer a3.Close()
	w.s.Publish()
	alerts, err = w.a1.Monitor(ctx)
	ok(t, err)
	if len(alerts) != 1 || alerts[0].Device != a3.Self().Device || alerts[0].Kind != "device recovered by admins" {
		t.Fatalf("alerts after an admin recovery: %+v", alerts)
	}
}

// TestLostSendAnswer: the relay accepts a first message (on an anonymous
// token) but its answer is lost; the envelope stays in the outbox, its
// retry meets the spent token (403) and goes again with a fresh one,
// which the relay takes as the duplicate it is; Bob gets it once.
func TestLostSendAnswer(t *testing.T) {
	s := clienttest.New(t)
	ctx := context.Background()
	alice, bob := s.AddUser("Alice"), s.AddUser("Bob")
	capture := &clienttest.Capture{}
	a := enrol(t, s, alice, nil, func(c *client.Config) { c.HTTP = &http.Client{Transport: capture} })
	b := enrol(t, s, bob, nil)
	s.Publish()
	capture.SetDropSendAnswers(true)
	_, err := a.SendText(ctx, bob, "once")
	ok(t, err) // stored; the send is retried later
	capture.SetDropSendAnswers(false)
	events := a.Events()
	discardEvents(events)
	ok(t, a.Sync(ctx)) // flushes the outbox
	for len(events) > 0 {
		if e := <-events; e.Kind == client.EventError {
			t.Fatalf("the retry failed: %v", e.Err)
		}
	}
	n := len(capture.Envelopes)
	if n != 3 {
		t.Fatalf("%d sends, want 3: lost answer, spent token, fresh token", n)
	}
	ok(t, a.Sync(ctx))
	if len(capture.Envelopes) != n {
		t.Fatal("the outbox still held the envelope")
	}
	syncAll(t, b)
	if h := history(t, b, alice); len(h) != 1 || h[0].Text != "once" {
		t.Fatalf("Bob's history %+v", h)
	}
}

// TestRunMonitors: Run monitors this user's label on connecting and
// reports an admin's revocation of the user's other device as an alert.
func TestRunMonitors(t *testing.T) {
	w := newWorld(t)
	w.s.RevokeDevice(w.alice, w.a2.Self().Device)
	w.s.Publish()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.a1.Run(ctx) }()
	stopped := false
	defer func() {
		cancel()
		if !stopped {
			<-done
		}
	}()
	for {
		select {
		case e := <-w.a1.Events():
			if e.Kind == client.EventAlert {
				if e.Alert.Device != w.a2.Self().Device || e.Alert.Kind != "device revoked" {
					t.Fatalf("alert %+v", e.Alert)
				}
				return
			}
		case err := <-done:
			stopped = true
			t.Fatalf("Run: %v", err)
		case <-time.After(30 * time.Second): // a hang guard, not a timing assertion
			t.Fatal("no alert")
		}
	}
}
