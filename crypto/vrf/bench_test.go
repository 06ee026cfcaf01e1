package vrf

import (
	"testing"
)

// benchAlpha is the size of a typical directory input: a tenant id and a
// user id.
var benchAlpha = make([]byte, 48)

func BenchmarkProve(b *testing.B) {
	sk := mustKey(b, testRand(10))
	b.ReportAllocs()
	for b.Loop() {
		Prove(sk, benchAlpha)
	}
}

func BenchmarkProofToHash(b *testing.B) {
	pi := Prove(mustKey(b, testRand(11)), benchAlpha)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ProofToHash(pi); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	sk := mustKey(b, testRand(12))
	pi := Prove(sk, benchAlpha)
	pk, err := NewPublicKey(sk.Public().Bytes())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Verify(pk, benchAlpha, pi); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewPublicKey(b *testing.B) {
	pkBytes := mustKey(b, testRand(13)).Public().Bytes()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewPublicKey(pkBytes); err != nil {
			b.Fatal(err)
		}
	}
}
