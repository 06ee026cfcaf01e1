package keys

// BenchmarkMLKEMThenSHA256 checks that circl's ML-KEM (and ML-DSA) leaves the vector
// unit clean (docs/performance.md "circl and the vector unit"): its AVX2
// assembly returns without VZEROUPPER, and until the upper YMM state is
// cleared every later legacy-SSE instruction (SHA-NI, AES-NI) on the thread
// runs far slower. Each "+hkdf" sub-benchmark is an ML-KEM operation
// followed by the 20 HKDF-SHA-256 extractions of "hkdf"; without the
// clean-up its time is several times the sum of the two alone. Only the
// wall clock shows this: instruction counts are the same either way.

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"testing"
)

func hkdf20(b *testing.B, secret []byte) {
	for range 20 {
		if _, err := hkdf.Extract(sha256.New, secret, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMLKEMThenSHA256(b *testing.B) {
	priv, err := GenerateKEMPrekeyKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	ct, _, err := priv.Public().Encapsulate(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	seed := priv.Seed()
	org, err := GenerateOrgKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	msg := []byte("message")
	sig, err := org.Sign(msg)
	if err != nil {
		b.Fatal(err)
	}
	secret := make([]byte, 32)
	ops := []struct {
		name string
		f    func()
	}{
		{"decapsulate", func() {
			if _, err := priv.Decapsulate(ct); err != nil {
				b.Fatal(err)
			}
		}},
		{"encapsulate", func() {
			if _, _, err := priv.Public().Encapsulate(rand.Reader); err != nil {
				b.Fatal(err)
			}
		}},
		{"keygen", func() {
			if _, err := NewKEMPrekeyPrivateKey(seed); err != nil {
				b.Fatal(err)
			}
		}},
		// The hybrid signatures' ML-DSA-65 half is circl's too.
		{"hybrid-verify", func() {
			if err := org.Public().Verify(msg, sig); err != nil {
				b.Fatal(err)
			}
		}},
	}
	b.Run("hkdf", func(b *testing.B) {
		for b.Loop() {
			hkdf20(b, secret)
		}
	})
	for _, op := range ops {
		b.Run(op.name, func(b *testing.B) {
			for b.Loop() {
				op.f()
			}
		})
		b.Run(op.name+"+hkdf", func(b *testing.B) {
			for b.Loop() {
				op.f()
				hkdf20(b, secret)
			}
		})
	}
}
