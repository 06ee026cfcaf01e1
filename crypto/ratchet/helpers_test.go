package ratchet

import (
	"bytes"
	"crypto/rand"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/pqxdh"
)

// clock is a settable test clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock                   { return &clock{t: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)} }

// handshake runs PQXDH between a fresh initiator and responder and returns
// the initiator's session, the responder's identity and prekeys, and the
// PQXDH preamble; the responder's session is made on first receipt.
type pair struct {
	a, b *Session
	aID  *keys.DeviceIdentityPrivate
	bID  *keys.DeviceIdentityPrivate
	clk  *clock
	bSPK *keys.SignedPrekeyPrivateKey
	bRes *pqxdh.Result
}

func newPairWith(t testing.TB, rnd interface{ Read([]byte) (int, error) }, attributable bool) *pair {
	t.Helper()
	clk := newClock()
	aID, err := keys.GenerateDeviceIdentity(rnd)
	must(t, err)
	bID, err := keys.GenerateDeviceIdentity(rnd)
	must(t, err)
	spk, err := keys.GenerateSignedPrekeyKey(rnd)
	must(t, err)
	opk, err := keys.GenerateOneTimePrekey(rnd)
	must(t, err)
	kpk, err := keys.GenerateKEMPrekeyKey(rnd)
	must(t, err)
	bundle := &pqxdh.Bundle{
		Identity:      bID.Public(),
		SignedPrekey:  keys.SignSignedPrekey(1, clk.t, spk.Public(), bID.Signing),
		OneTimePrekey: &pqxdh.OneTimePrekey{ID: 7, Key: opk.Public()},
		KEMPrekey:     keys.SignKEMPrekey(9, clk.t, false, kpk.Public(), bID.Signing),
	}
	im, ar, err := pqxdh.Initiate(rnd, aID, bundle)
	must(t, err)
	pre, err := im.Marshal()
	must(t, err)
	br, err := pqxdh.Respond(bID, im, pqxdh.ResponderKeys{SignedPrekey: spk, OneTimePrekey: opk, KEMPrekey: kpk})
	must(t, err)
	if !ar.Equal(br) {
		t.Fatal("PQXDH results differ")
	}
	a, err := NewInitiator(Config{Rand: rnd, Now: clk.now, SigningKey: aID.Signing},
		Params{SharedKey: ar.SharedKey, AD: ar.AD, Self: aID.Public(), Peer: bID.Public(), Attributable: attributable},
		bundle.SignedPrekey.Key, bundle.KEMPrekey.Key, pre)
	must(t, err)
	b, err := NewResponder(Config{Rand: rnd, Now: clk.now, SigningKey: bID.Signing},
		Params{SharedKey: br.SharedKey, AD: br.AD, Self: bID.Public(), Peer: aID.Public(), Attributable: attributable}, spk, kpk)
	must(t, err)
	return &pair{a: a, b: b, aID: aID, bID: bID, clk: clk, bSPK: spk, bRes: br}
}

func newPair(t testing.TB) *pair { return newPairWith(t, rand.Reader, false) }

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func send(t testing.TB, s *Session, msg string) []byte {
	t.Helper()
	ct, err := s.Encrypt([]byte(msg))
	must(t, err)
	return ct
}

func recvOK(t testing.TB, s *Session, ct []byte, want string) Received {
	t.Helper()
	r, err := s.Decrypt(ct)
	if err != nil {
		t.Fatalf("decrypt %q: %v", want, err)
	}
	if !bytes.Equal(r.Plaintext, []byte(want)) {
		t.Fatalf("got %q, want %q", r.Plaintext, want)
	}
	return r
}
