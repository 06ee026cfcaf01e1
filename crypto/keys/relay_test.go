package keys

import (
	"bytes"
	"testing"
)

// TestRelaySigningKey: a relay key signs and verifies, re-derives from its
// seed, refuses another key's or another message's signature, and does not
// verify an identity key's signature of the same bytes (role separation is
// by key, and by the context each caller puts in msg).
func TestRelaySigningKey(t *testing.T) {
	s := newSampleKeys(t, 11)
	msg := []byte("moat/v1/relay/mailbox-head\x00test")
	sig, err := s.relay.Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.relay.Public().Verify(msg, sig); err != nil {
		t.Fatal(err)
	}
	if err := s.relay.Public().Verify(append(bytes.Clone(msg), 0), sig); err != ErrBadSignature {
		t.Errorf("other message: %v", err)
	}
	if err := s.relay.Public().Verify(msg, s.idSig.Sign(msg)); err != ErrBadSignature {
		t.Errorf("identity key's signature: %v", err)
	}
	k, err := NewRelaySigningKeyFromSeed(s.relay.Seed())
	if err != nil || !k.Equal(s.relay) || !k.Public().Equal(s.relay.Public()) {
		t.Fatalf("from seed: %v", err)
	}
	if _, err := NewRelaySigningKeyFromSeed(make([]byte, 31)); err != ErrMalformed {
		t.Errorf("short seed: %v", err)
	}
	// An identity signing key's encoding is not a relay key.
	if _, err := ParseRelaySigningPublicKey(s.idSig.Public().Bytes()); err != ErrWrongType {
		t.Errorf("identity key as relay key: %v", err)
	}
}

func FuzzParseRelaySigningPublicKey(f *testing.F)     { fuzzBinary(f, codecRelay) }
func FuzzParseRelaySigningPublicKeyText(f *testing.F) { fuzzText(f, codecRelay) }
