package suite

import (
	"bytes"
	"crypto/rand"
	"testing"
)

// TestSigningKey checks the fast signing form of every suite's keys: it
// signs what the seed form verifies, has the same public key, and for
// Ed25519 is the 64-byte expanded key.
func TestSigningKey(t *testing.T) {
	for _, id := range Supported {
		s, _ := Get(id)
		priv, pub, err := s.GenerateSignatureKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		fast, err := s.SigningKey(priv)
		if err != nil {
			t.Fatalf("%v: %v", id, err)
		}
		if p, err := s.SignaturePublicKeyOf(fast); err != nil || !bytes.Equal(p, pub) {
			t.Fatalf("%v: public key of the signing key differs: %v", id, err)
		}
		for range 2 {
			sig, err := s.SignWithLabel(fast, "label", []byte("content"))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.VerifyWithLabel(pub, "label", []byte("content"), sig); err != nil {
				t.Fatalf("%v: %v", id, err)
			}
		}
		if _, ed := s.sig.(ed25519Signer); ed && len(fast) != 64 {
			t.Fatalf("%v: signing key of %d bytes", id, len(fast))
		}
		if _, err := s.SigningKey(priv[:len(priv)-1]); err == nil {
			t.Fatalf("%v: truncated key accepted", id)
		}
	}
}
