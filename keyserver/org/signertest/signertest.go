// Package signertest is the conformance suite for implementations of
// org.Signer (docs/spec/org.md §Signer): an HSM- or KMS-backed signer runs
// TestSigner from its own tests.
package signertest

import (
	"bytes"
	"crypto/ed25519"
	"sync"
	"testing"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/keyserver/org"
)

// TestSigner checks a Signer against the contract of org.Signer. newSigner
// returns a fresh signer; it is called twice, and the two signers must hold
// different keys.
func TestSigner(t *testing.T, newSigner func(t *testing.T) org.Signer) {
	t.Helper()
	s := newSigner(t)
	pub := s.Public()
	if pub == nil {
		t.Fatal("Public returned nil")
	}

	t.Run("PublicIsStable", func(t *testing.T) {
		for range 3 {
			if p := s.Public(); p == nil || !p.Equal(pub) {
				t.Fatal("Public returned a different key")
			}
		}
		// The key must be a well-formed org key: it round-trips.
		p2, err := keys.ParseOrgPublicKey(pub.Bytes())
		if err != nil || !p2.Equal(pub) {
			t.Fatalf("Public key does not round-trip: %v", err)
		}
	})

	msgs := [][]byte{nil, {}, []byte("moat/v1/org/test\x00message"), bytes.Repeat([]byte{0xa5}, 1<<16)}

	t.Run("SignaturesVerify", func(t *testing.T) {
		for _, m := range msgs {
			sig, err := s.Sign(m)
			if err != nil {
				t.Fatalf("Sign(%d bytes): %v", len(m), err)
			}
			if len(sig) != keys.HybridSignatureSize {
				t.Fatalf("signature is %d bytes, want %d", len(sig), keys.HybridSignatureSize)
			}
			if err := pub.Verify(m, sig); err != nil {
				t.Fatalf("signature over %d bytes does not verify: %v", len(m), err)
			}
		}
	})

	t.Run("BothHalvesUseTheOrgRole", func(t *testing.T) {
		// Each half must cover "moat/v1/hybrid-signature/org" || 0x00 || msg;
		// checking the halves separately catches a signer that signs the raw
		// message with one of them.
		m := []byte("halves")
		sig, err := s.Sign(m)
		if err != nil {
			t.Fatal(err)
		}
		tbs := append([]byte("moat/v1/hybrid-signature/org\x00"), m...)
		if !ed25519.Verify(pub.Ed25519(), tbs, sig[:ed25519.SignatureSize]) {
			t.Error("Ed25519 half does not cover the org-role message")
		}
		if !pub.MLDSA65().Verify(tbs, nil, sig[ed25519.SignatureSize:]) {
			t.Error("ML-DSA-65 half does not cover the org-role message (empty context)")
		}
	})

	t.Run("SignatureBindsMessage", func(t *testing.T) {
		sig, err := s.Sign([]byte("message one"))
		if err != nil {
			t.Fatal(err)
		}
		if pub.Verify([]byte("message two"), sig) == nil {
			t.Fatal("signature verifies over another message")
		}
		bad := bytes.Clone(sig)
		bad[len(bad)-1] ^= 1
		if pub.Verify([]byte("message one"), bad) == nil {
			t.Fatal("modified signature verifies")
		}
	})

	t.Run("InputNotModified", func(t *testing.T) {
		m := []byte("do not touch")
		orig := bytes.Clone(m)
		sig, err := s.Sign(m)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(m, orig) {
			t.Fatal("Sign modified its input")
		}
		m[0] ^= 1 // mutating the input afterwards must not change the signature
		if pub.Verify(orig, sig) != nil {
			t.Fatal("signature changed after the input was modified")
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m := []byte{byte(i)}
				sig, err := s.Sign(m)
				if err == nil {
					err = pub.Verify(m, sig)
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("concurrent Sign: %v", err)
			}
		}
	})

	t.Run("DistinctKeys", func(t *testing.T) {
		other := newSigner(t)
		if other.Public().Equal(pub) {
			t.Fatal("two signers share a key")
		}
		sig, err := other.Sign([]byte("m"))
		if err != nil {
			t.Fatal(err)
		}
		if pub.Verify([]byte("m"), sig) == nil {
			t.Fatal("another signer's signature verifies under this key")
		}
	})
}
