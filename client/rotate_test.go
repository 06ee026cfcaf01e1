package client_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
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
	for len(events) > 0 {
		<-events
	}
	hd.set(false)
	syncAll(t, d, a)
	if h := history(t, a, dave); len(h) != 0 {
		t.Fatalf("a message made with erased keys decrypted: %+v", h)
	}
	refused := false
	for len(events) > 0 {
		if e := <-events; e.Kind == client.EventError {
			refused = true
		}
	}
	if !refused {
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
