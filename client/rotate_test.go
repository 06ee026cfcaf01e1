package client_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-im/moat/client"
	"github.com/moat-im/moat/client/clienttest"
)

// holdSends is a transport that fails every send to the relay while held:
// the envelope stays in the sender's outbox, sealed and encrypted with
// the keys it was made with, and goes at a later Sync.
type holdSends struct {
	mu   sync.Mutex
	held bool
}

func (h *holdSends) set(v bool) {
	h.mu.Lock()
	h.held = v
	h.mu.Unlock()
}

func (h *holdSends) RoundTrip(r *http.Request) (*http.Response, error) {
	h.mu.Lock()
	held := h.held
	h.mu.Unlock()
	if held && r.Method == http.MethodPost && r.URL.Path == "/relay/v1/send" {
		return nil, errors.New("held")
	}
	return http.DefaultTransport.RoundTrip(r)
}

func recordKey(kind string, id uint32) string {
	return "\x00" + kind + "\x00" + string(binary.BigEndian.AppendUint32(nil, id))
}

// TestKeyRotation (docs/spec/bundle.md §Rotation): Alice's device rotates
// its signed prekey, last-resort KEM prekey and sealed-sender key when
// they are a week old (an injected time). An initial message Bob made
// with the old keys before the rotation and delivers after it still
// decrypts during the grace period; once it is over the old keys are
// erased from the store and the keyring, and Dave's message made with
// them is refused; a new sender, served the new keys, gets through.
func TestKeyRotation(t *testing.T) {
	s := clienttest.New(t)
	ctx := context.Background()
	alice, bob, dave, eve := s.AddUser("Alice"), s.AddUser("Bob"), s.AddUser("Dave"), s.AddUser("Eve")
	a := enrol(t, s, alice, nil)
	hb, hd := &holdSends{}, &holdSends{}
	b := enrol(t, s, bob, nil, func(c *client.Config) { c.HTTP = &http.Client{Transport: hb} })
	d := enrol(t, s, dave, nil, func(c *client.Config) { c.HTTP = &http.Client{Transport: hd} })
	s.Publish()
	spk1, kem1, ssk1, _, seed1 := a.MediumTermKeys()

	hb.set(true)
	hd.set(true)
	_, err := b.SendText(ctx, alice, "made before, delivered during the grace period")
	ok(t, err)
	_, err = d.SendText(ctx, alice, "made before, delivered after the grace period")
	ok(t, err)

	t0 := time.Now()
	ok(t, a.RotateKeysAt(ctx, t0.Add(6*24*time.Hour)))
	if spk, _, _, _, _ := a.MediumTermKeys(); spk != spk1 {
		t.Fatal("rotated before a week")
	}
	ok(t, a.RotateKeysAt(ctx, t0.Add(8*24*time.Hour)))
	spk2, kem2, ssk2, ring, _ := a.MediumTermKeys()
	if spk2 == spk1 || kem2 == kem1 || ssk2 == ssk1 || !slices.Equal(ring, []uint32{ssk1, ssk2}) {
		t.Fatalf("after the rotation: spk %d→%d kem %d→%d sealed %d→%d ring %v", spk1, spk2, kem1, kem2, ssk1, ssk2, ring)
	}
	snap := a.st.Snapshot()
	for _, k := range []string{recordKey("spk", spk1), recordKey("kem", kem1), recordKey("spk", spk2), recordKey("kem", kem2)} {
		if _, ok := snap[k]; !ok {
			t.Fatalf("record %q missing during the grace period", k)
		}
	}

	hb.set(false)
	syncAll(t, b, a)
	if h := history(t, a, bob); len(h) != 1 || !strings.HasPrefix(h[0].Text, "made before, delivered during") {
		t.Fatalf("Alice's history with Bob: %+v", h)
	}

	// Past the grace period of the signed prekey (30 days after the
	// rotation) and of the sealed-sender key (30 days after its expiry,
	// 30 days after its creation).
	ok(t, a.RotateKeysAt(ctx, t0.Add(70*24*time.Hour)))
	_, _, _, ring, _ = a.MediumTermKeys()
	if slices.Contains(ring, ssk1) {
		t.Fatalf("the old sealed-sender key is still in the keyring: %v", ring)
	}
	snap = a.st.Snapshot()
	for _, k := range []string{recordKey("spk", spk1), recordKey("kem", kem1)} {
		if _, ok := snap[k]; ok {
			t.Fatalf("record %q not erased after the grace period", k)
		}
	}
	if _, ok := snap[recordKey("spk", spk2)]; !ok {
		t.Fatal("the second signed prekey erased within its grace period")
	}
	old := base64.StdEncoding.EncodeToString(seed1)
	for k, v := range snap {
		if strings.Contains(v, old) {
			t.Fatalf("the old sealed-sender seed is still in record %q", k)
		}
	}

	events := a.Events()
	discardEvents(events)
	hd.set(false)
	syncAll(t, d, a)
	if h := history(t, a, dave); len(h) != 0 {
		t.Fatalf("a message made with erased keys decrypted: %+v", h)
	}
	if !anyEvent(events, func(e client.Event) bool { return e.Kind == client.EventError }) {
		t.Fatal("no refusal of the message made with erased keys")
	}

	e := enrol(t, s, eve, nil)
	s.Publish()
	_, err = e.SendText(ctx, alice, "to the new keys")
	ok(t, err)
	syncAll(t, a)
	if h := history(t, a, eve); len(h) != 1 {
		t.Fatalf("Alice's history with Eve: %+v", h)
	}
}

// failUploads is a transport that fails prekey uploads while set.
type failUploads struct{ fail atomic.Bool }

func (f *failUploads) RoundTrip(r *http.Request) (*http.Response, error) {
	if f.fail.Load() && r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/prekeys") {
		return nil, errors.New("upload lost")
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestKeyRotationFailures: a rotation whose store commit fails changes
// nothing, in the store or in memory; one whose upload fails keeps the
// new keys (the old ones in their grace period) and uploads the same
// keys at the next attempt, generating none; an erasure whose commit
// fails erases nothing and is done at the next attempt.
func TestKeyRotationFailures(t *testing.T) {
	s := clienttest.New(t)
	ctx := context.Background()
	alice, bob := s.AddUser("Alice"), s.AddUser("Bob")
	st := &failingStore{Store: clienttest.NewStore()}
	fu := &failUploads{}
	cfg := s.Config()
	cfg.HTTP = &http.Client{Transport: fu}
	sameTransport(&cfg)
	a, err := client.Enrol(ctx, cfg, st, s.IssueCode(alice))
	ok(t, err)
	defer a.Close()
	b := enrol(t, s, bob, nil)
	s.Publish()
	spk1, kem1, ssk1, ring1, _ := a.MediumTermKeys()
	t0 := time.Now()

	before := st.Snapshot()
	st.fail.Store(true)
	if err := a.RotateKeysAt(ctx, t0.Add(8*24*time.Hour)); !errors.Is(err, errInjected) {
		t.Fatalf("rotation with a failing store: %v", err)
	}
	st.fail.Store(false)
	spk, kem, ssk, ring, _ := a.MediumTermKeys()
	if !maps.Equal(before, st.Snapshot()) || spk != spk1 || kem != kem1 || ssk != ssk1 || !slices.Equal(ring, ring1) {
		t.Fatal("a rotation whose commit failed changed something")
	}

	fu.fail.Store(true)
	if err := a.RotateKeysAt(ctx, t0.Add(8*24*time.Hour)); err == nil {
		t.Fatal("rotation with a lost upload succeeded")
	}
	fu.fail.Store(false)
	spk2, kem2, ssk2, _, _ := a.MediumTermKeys()
	if spk2 == spk1 || kem2 == kem1 || ssk2 == ssk1 {
		t.Fatal("the new keys were not kept after a lost upload")
	}
	// The relay still serves the old keys: a message made with them
	// decrypts (grace period).
	_, err = b.SendText(ctx, alice, "to the old keys")
	ok(t, err)
	ok(t, a.Sync(ctx)) // uploads the pending keys, at the real time
	if h, err := a.History(bob, 0); err != nil || len(h) != 1 {
		t.Fatalf("Alice's history: %+v %v", h, err)
	}
	if spk, kem, ssk, _, _ := a.MediumTermKeys(); spk != spk2 || kem != kem2 || ssk != ssk2 {
		t.Fatal("the retried upload generated other keys")
	}

	st.fail.Store(true)
	if err := a.RotateKeysAt(ctx, t0.Add(70*24*time.Hour)); !errors.Is(err, errInjected) {
		t.Fatalf("erasure with a failing store: %v", err)
	}
	st.fail.Store(false)
	if _, ok := st.Snapshot()[recordKey("spk", spk1)]; !ok {
		t.Fatal("an erasure whose commit failed erased the signed prekey")
	}
	if _, _, _, ring, _ := a.MediumTermKeys(); !slices.Contains(ring, ssk1) {
		t.Fatal("an erasure whose commit failed removed the sealed-sender key")
	}
	ok(t, a.RotateKeysAt(ctx, t0.Add(70*24*time.Hour)))
	if _, ok := st.Snapshot()[recordKey("spk", spk1)]; ok {
		t.Fatal("the signed prekey not erased at the next attempt")
	}
}
