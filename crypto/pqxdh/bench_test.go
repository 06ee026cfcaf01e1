package pqxdh

// Benchmarks of docs/performance.md: each side of PQXDH next to the sum of
// its primitive operations, measured in the same run.

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/cloudflare/circl/kem/mlkem/mlkem768"
	"github.com/moat-im/moat/crypto/keys"
)

type benchFixture struct {
	alice, bob *keys.DeviceIdentityPrivate
	bundle     *Bundle
	rk         ResponderKeys
}

func newBenchFixture(b *testing.B) *benchFixture {
	f := &benchFixture{}
	var err error
	if f.alice, err = keys.GenerateDeviceIdentity(rand.Reader); err != nil {
		b.Fatal(err)
	}
	if f.bob, err = keys.GenerateDeviceIdentity(rand.Reader); err != nil {
		b.Fatal(err)
	}
	spk, _ := keys.GenerateSignedPrekeyKey(rand.Reader)
	opk, _ := keys.GenerateOneTimePrekey(rand.Reader)
	kpk, _ := keys.GenerateKEMPrekeyKey(rand.Reader)
	now := time.Now()
	f.bundle = &Bundle{
		Identity:      f.bob.Public(),
		SignedPrekey:  keys.SignSignedPrekey(1, now, spk.Public(), f.bob.Signing),
		OneTimePrekey: &OneTimePrekey{ID: 2, Key: opk.Public()},
		KEMPrekey:     keys.SignKEMPrekey(3, now, false, kpk.Public(), f.bob.Signing),
	}
	f.rk = ResponderKeys{SignedPrekey: spk, OneTimePrekey: opk, KEMPrekey: kpk}
	return f
}

// BenchmarkInitiate: 2 Ed25519 verifications, 1 X25519 key generation,
// 4 X25519 agreements, 1 ML-KEM-768 encapsulation, plus hashing.
func BenchmarkInitiate(b *testing.B) {
	f := newBenchFixture(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Initiate(rand.Reader, f.alice, f.bundle); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRespond: 4 X25519 agreements and 1 ML-KEM-768 decapsulation.
func BenchmarkRespond(b *testing.B) {
	f := newBenchFixture(b)
	m, _, err := Initiate(rand.Reader, f.alice, f.bundle)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Respond(f.bob, m, f.rk); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPrimitivesInitiator runs exactly the primitive operations of
// Initiate, back to back, as its floor.
func BenchmarkPrimitivesInitiator(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	msg := make([]byte, 1200)
	sig := ed25519.Sign(priv, msg)
	k, _ := ecdh.X25519().GenerateKey(rand.Reader)
	peer, _ := ecdh.X25519().GenerateKey(rand.Reader)
	var seed [32]byte
	pk, _, _ := mlkem768.GenerateKeyPair(rand.Reader)
	ct := make([]byte, mlkem768.CiphertextSize)
	ss := make([]byte, mlkem768.SharedKeySize)
	for b.Loop() {
		ed25519.Verify(pub, msg, sig)
		ed25519.Verify(pub, msg, sig)
		e, _ := ecdh.X25519().NewPrivateKey(seed[:])
		_ = e.PublicKey()
		for range 4 {
			_, _ = k.ECDH(peer.PublicKey())
		}
		pk.EncapsulateTo(ct, ss, seed[:])
	}
}

// BenchmarkPrimitivesResponder runs exactly the primitive operations of
// Respond.
func BenchmarkPrimitivesResponder(b *testing.B) {
	k, _ := ecdh.X25519().GenerateKey(rand.Reader)
	peer, _ := ecdh.X25519().GenerateKey(rand.Reader)
	pk, sk, _ := mlkem768.GenerateKeyPair(rand.Reader)
	ct := make([]byte, mlkem768.CiphertextSize)
	ss := make([]byte, mlkem768.SharedKeySize)
	pk.EncapsulateTo(ct, ss, nil)
	for b.Loop() {
		for range 4 {
			_, _ = k.ECDH(peer.PublicKey())
		}
		sk.DecapsulateTo(ss, ct)
	}
}
