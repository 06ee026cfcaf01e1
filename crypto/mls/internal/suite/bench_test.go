package suite

import (
	"bytes"
	"crypto/rand"
	"testing"
)

func benchSuites(b *testing.B, f func(b *testing.B, s *Suite)) {
	for _, id := range []ID{X25519_AES128GCM_SHA256_Ed25519, P256_AES128GCM_SHA256_P256, XWING_CHACHA20POLY1305_SHA256_Ed25519} {
		s, _ := Get(id)
		b.Run(id.String(), func(b *testing.B) { f(b, s) })
	}
}

// BenchmarkPathNode is one node of an UpdatePath: DeriveKeyPair from a path
// secret plus one EncryptWithLabel (the per-node crypto floor of a commit).
func BenchmarkPathNode(b *testing.B) {
	benchSuites(b, func(b *testing.B, s *Suite) {
		_, pub, _ := s.GenerateHPKEKey()
		ikm := bytes.Repeat([]byte{1}, s.Nh())
		ctx := make([]byte, 100)
		for b.Loop() {
			if _, _, err := s.DeriveKeyPair(ikm); err != nil {
				b.Fatal(err)
			}
			if _, _, err := s.EncryptWithLabel(pub, "UpdatePathNode", ctx, ikm); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkDecryptWithLabel(b *testing.B) {
	benchSuites(b, func(b *testing.B, s *Suite) {
		priv, pub, _ := s.GenerateHPKEKey()
		enc, ct, _ := s.EncryptWithLabel(pub, "UpdatePathNode", nil, make([]byte, 32))
		for b.Loop() {
			if _, err := s.DecryptWithLabel(priv, "UpdatePathNode", nil, enc, ct); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkSignWithLabel(b *testing.B) {
	benchSuites(b, func(b *testing.B, s *Suite) {
		priv, _, _ := s.GenerateSignatureKey(rand.Reader)
		msg := make([]byte, 200)
		for b.Loop() {
			s.SignWithLabel(priv, "FramedContentTBS", msg)
		}
	})
}

func BenchmarkVerifyWithLabel(b *testing.B) {
	benchSuites(b, func(b *testing.B, s *Suite) {
		priv, pub, _ := s.GenerateSignatureKey(rand.Reader)
		msg := make([]byte, 200)
		sig, _ := s.SignWithLabel(priv, "FramedContentTBS", msg)
		for b.Loop() {
			if err := s.VerifyWithLabel(pub, "FramedContentTBS", msg, sig); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSealOpen100 is the AEAD part of one 100-byte application message.
func BenchmarkSealOpen100(b *testing.B) {
	benchSuites(b, func(b *testing.B, s *Suite) {
		key, nonce := make([]byte, s.Nk()), make([]byte, s.Nn())
		pt := make([]byte, 100)
		for b.Loop() {
			ct, _ := s.Seal(key, nonce, nil, pt)
			if _, err := s.Open(key, nonce, nil, ct); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkDeriveTreeSecret(b *testing.B) {
	s, _ := Get(XWING_CHACHA20POLY1305_SHA256_Ed25519)
	secret := make([]byte, s.Nh())
	for b.Loop() {
		s.DeriveTreeSecret(secret, "secret", 7, s.Nh())
	}
}
