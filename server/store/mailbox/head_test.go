package mailbox

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
)

type edSigner ed25519.PrivateKey

func (k edSigner) Sign(msg []byte) ([]byte, error) {
	return ed25519.Sign(ed25519.PrivateKey(k), msg), nil
}

type edVerifier ed25519.PublicKey

func (k edVerifier) Verify(msg, sig []byte) error {
	if !ed25519.Verify(ed25519.PublicKey(k), msg, sig) {
		return errors.New("bad signature")
	}
	return nil
}

func testKey() (edSigner, edVerifier) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	return edSigner(priv), edVerifier(priv.Public().(ed25519.PublicKey))
}

func TestSignedHeadRoundTrip(t *testing.T) {
	sk, vk := testKey()
	mb := ID{1, 2, 3}
	now := time.UnixMilli(1_800_000_000_123)
	h, err := SignHead(sk, mb, 42, 17, now.Add(456*time.Microsecond))
	if err != nil {
		t.Fatal(err)
	}
	if !h.Time.Equal(now) {
		t.Fatalf("time %v, want %v (milliseconds)", h.Time, now)
	}
	if err := h.Verify(vk); err != nil {
		t.Fatal(err)
	}
	b, err := h.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 1+16+8+8+8+2+ed25519.SignatureSize {
		t.Fatalf("encoding of %d bytes", len(b))
	}
	g, err := ParseSignedHead(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Verify(vk); err != nil {
		t.Fatal(err)
	}
	if g.Mailbox != mb || g.Head != 42 || g.Acked != 17 || !g.Time.Equal(now) {
		t.Fatalf("parsed %+v", g)
	}
	// The statement binds every field.
	for name, mut := range map[string]func(*SignedHead){
		"mailbox": func(h *SignedHead) { h.Mailbox[15] ^= 1 },
		"head":    func(h *SignedHead) { h.Head++ },
		"acked":   func(h *SignedHead) { h.Acked-- },
		"time":    func(h *SignedHead) { h.Time = h.Time.Add(time.Millisecond) },
		"sig":     func(h *SignedHead) { h.Signature[3] ^= 1 },
	} {
		x := *g
		x.Signature = bytes.Clone(g.Signature)
		mut(&x)
		if err := x.Verify(vk); err == nil {
			t.Errorf("head with modified %s verifies", name)
		}
	}
	// Strict parsing.
	for name, bad := range map[string][]byte{
		"empty":        nil,
		"truncated":    b[:len(b)-1],
		"trailing":     append(bytes.Clone(b), 0),
		"no sig":       append(bytes.Clone(b[:41]), 0, 0),
		"time 2^63":    append(append(bytes.Clone(b[:33]), 0x80, 0, 0, 0, 0, 0, 0, 0), b[41:]...),
		"version 1":    append([]byte{1}, b[1:]...),
		"v1 layout":    b[1:25:25],
		"acked > head": append(append(bytes.Clone(b[:25]), 0, 0, 0, 0, 0, 0, 0, 43), b[33:]...),
	} {
		if _, err := ParseSignedHead(bad); !errors.Is(err, ErrMalformedHead) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestCheckProgress(t *testing.T) {
	mb := ID{9}
	t0 := time.UnixMilli(1_800_000_000_000)
	prev := &SignedHead{Mailbox: mb, Head: 10, Acked: 4, Time: t0}
	for _, tc := range []struct {
		next *SignedHead
		ok   bool
	}{
		{&SignedHead{Mailbox: mb, Head: 10, Acked: 4, Time: t0}, true},
		{&SignedHead{Mailbox: mb, Head: 11, Acked: 6, Time: t0.Add(time.Second)}, true},
		{&SignedHead{Mailbox: mb, Head: 9, Acked: 4, Time: t0.Add(time.Second)}, false},
		{&SignedHead{Mailbox: mb, Head: 12, Acked: 4, Time: t0.Add(-time.Millisecond)}, false},
		// A floor that went back: the relay forgot an ack (T40).
		{&SignedHead{Mailbox: mb, Head: 12, Acked: 3, Time: t0.Add(time.Second)}, false},
	} {
		err := CheckProgress(prev, tc.next)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrRollback)) {
			t.Errorf("head %d floor %d at %v after 10, 4: %v", tc.next.Head, tc.next.Acked, tc.next.Time.Sub(t0), err)
		}
	}
	if err := CheckProgress(prev, &SignedHead{Mailbox: ID{8}, Head: 20, Time: t0}); err == nil {
		t.Error("a head for another mailbox was accepted")
	}
	if err := CheckProgress(nil, prev); err != nil {
		t.Error(err)
	}
}

func TestCheckAcked(t *testing.T) {
	h := &SignedHead{Mailbox: ID{9}, Head: 5, Acked: 1}
	if err := CheckAcked(h, 1); err != nil {
		t.Fatal(err)
	}
	if err := CheckAcked(h, 0); err != nil {
		t.Fatal(err)
	}
	if err := CheckAcked(h, 3); !errors.Is(err, ErrRollback) {
		t.Fatalf("floor 1 after a confirmed ack of 3: %v, want ErrRollback", err)
	}
	sk, _ := testKey()
	if _, err := SignHead(sk, ID{9}, 2, 3, time.UnixMilli(1)); err == nil {
		t.Fatal("signed a floor above the head")
	}
}

func FuzzParseSignedHead(f *testing.F) {
	sk, _ := testKey()
	h, _ := SignHead(sk, ID{1}, 5, 3, time.UnixMilli(1))
	b, _ := h.MarshalBinary()
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseSignedHead(b)
		if err != nil {
			return
		}
		out, err := h.MarshalBinary()
		if err != nil {
			t.Fatalf("parsed head does not marshal: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip changed %x to %x", b, out)
		}
	})
}

// The relay's signing key signs and verifies heads.
var (
	_ Signer   = (*keys.RelaySigningPrivateKey)(nil)
	_ Verifier = (*keys.RelaySigningPublicKey)(nil)
)

func TestSignedHeadRelayKey(t *testing.T) {
	k, err := keys.NewRelaySigningKeyFromSeed(bytes.Repeat([]byte{3}, 32))
	if err != nil {
		t.Fatal(err)
	}
	h, err := SignHead(k, ID{4}, 7, 7, time.UnixMilli(1_800_000_000_000))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Verify(k.Public()); err != nil {
		t.Fatal(err)
	}
	other, _ := keys.NewRelaySigningKeyFromSeed(bytes.Repeat([]byte{4}, 32))
	if err := h.Verify(other.Public()); err == nil {
		t.Fatal("a head verifies under another relay's key")
	}
}
