package ratchet

// Benchmarks of docs/performance.md. Each protocol figure is reported next
// to the raw primitives it is built from, measured in the same run
// (BenchmarkPrimitive*), so the report can give ratios.

import (
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/rand"
	"testing"

	"github.com/cloudflare/circl/kem/mlkem/mlkem768"
	"github.com/moat-im/moat/crypto/internal/prim"
	"golang.org/x/crypto/chacha20"
)

// steadyPair returns a pair that has completed one round trip, so that
// both sides are past the PQXDH preamble.
func steadyPair(b *testing.B) *pair {
	p := newPair(b)
	recvOK(b, p.b, send(b, p.a, "x"), "x")
	recvOK(b, p.a, send(b, p.b, "y"), "y")
	recvOK(b, p.b, send(b, p.a, "z"), "z")
	return p
}

// BenchmarkEncrypt256 measures the steady-state symmetric step: a 256-byte
// message on an established chain, whose header carries the 48-byte chain
// establishment block (the receiver has not answered yet) but no KEM
// material. The first message of each chain (a DH ratchet or KEM step,
// measured separately) runs with the timer stopped, and KEM steps are kept
// out of the measured chains.
func BenchmarkEncrypt256(b *testing.B) {
	p := steadyPair(b)
	pt := make([]byte, 256)
	b.ReportAllocs()
	b.SetBytes(256)
	for b.Loop() {
		if p.a.needNewChain(p.clk.now()) {
			b.StopTimer()
			p.a.peerKEM, p.a.pqCount = nil, 0
			recvOK(b, p.b, send(b, p.a, string(pt)), string(pt))
			b.StartTimer()
		}
		if _, err := p.a.Encrypt(pt); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecrypt256 measures the receiving side of BenchmarkEncrypt256:
// in-order 256-byte messages on an established chain, same headers.
func BenchmarkDecrypt256(b *testing.B) {
	p := steadyPair(b)
	pt := make([]byte, 256)
	var batch [][]byte
	b.ReportAllocs()
	b.SetBytes(256)
	for b.Loop() {
		if len(batch) == 0 {
			b.StopTimer()
			batch = batch[:0]
			p.a.peerKEM, p.a.pqCount = nil, 0
			for range MaxChainMessages {
				batch = append(batch, send(b, p.a, string(pt)))
			}
			recvOK(b, p.b, batch[0], string(pt)) // chain establishment, not timed
			batch = batch[1:]
			b.StartTimer()
		}
		if _, err := p.b.Decrypt(batch[0]); err != nil {
			b.Fatal(err)
		}
		batch = batch[1:]
	}
}

// BenchmarkEncryptAmortized is a one-way stream of 256-byte messages with
// every chain rollover and KEM step included.
func BenchmarkEncryptAmortized(b *testing.B) {
	p := steadyPair(b)
	pt := make([]byte, 256)
	b.ReportAllocs()
	for b.Loop() {
		ct, err := p.a.Encrypt(pt)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if _, err := p.b.Decrypt(ct); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkDHRatchetStep measures one DH ratchet step as a pair of
// messages: the receiver establishes the peer's new chain (one X25519
// agreement) and answers on a new chain of its own (one key generation and
// one agreement) — three X25519 operations in all. KEM steps are disabled
// for this measurement (see BenchmarkKEMRatchetStep).
func BenchmarkDHRatchetStep(b *testing.B) {
	p := steadyPair(b)
	pt := make([]byte, 16)
	msg := send(b, p.b, "w")
	b.ReportAllocs()
	for b.Loop() {
		p.a.peerKEM, p.b.peerKEM = nil, nil
		p.a.pqCount, p.b.pqCount = 0, 0
		if _, err := p.a.Decrypt(msg); err != nil {
			b.Fatal(err)
		}
		out, err := p.a.Encrypt(pt)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		p.a, p.b = p.b, p.a
		msg = out
		b.StartTimer()
	}
}

// BenchmarkKEMRatchetStep measures a sender-initiated KEM step end to end:
// the sender begins a new chain with an ML-KEM-768 encapsulation (and a
// fresh X25519 key) and the receiver establishes it.
func BenchmarkKEMRatchetStep(b *testing.B) {
	p := steadyPair(b)
	pt := make([]byte, 16)
	b.ReportAllocs()
	for b.Loop() {
		p.a.ForceKEMStep()
		ct, err := p.a.Encrypt(pt)
		if err != nil {
			b.Fatal(err)
		}
		r, err := p.b.Decrypt(ct)
		if err != nil || !r.KEMStep {
			b.Fatal("no KEM step", err)
		}
	}
}

// Raw primitives, measured in the same run for the ratios.

func BenchmarkPrimitiveX25519KeyGen(b *testing.B) {
	var seed [32]byte
	rand.Read(seed[:])
	for b.Loop() {
		k, _ := ecdh.X25519().NewPrivateKey(seed[:])
		_ = k.PublicKey()
	}
}

func BenchmarkPrimitiveX25519(b *testing.B) {
	k, _ := ecdh.X25519().GenerateKey(rand.Reader)
	peer, _ := ecdh.X25519().GenerateKey(rand.Reader)
	for b.Loop() {
		if _, err := k.ECDH(peer.PublicKey()); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPrimitiveChaCha20Poly1305Seal256(b *testing.B) {
	key := make([]byte, 32)
	pt := make([]byte, 256)
	out := make([]byte, 0, 256+16)
	var nonce [12]byte
	b.ReportAllocs()
	b.SetBytes(256)
	for b.Loop() {
		a, _ := prim.NewChaCha20Poly1305(key)
		out = a.Seal(out[:0], nonce[:], pt, nil)
	}
}

func BenchmarkPrimitiveHChaCha20(b *testing.B) {
	key := make([]byte, 32)
	in := make([]byte, 16)
	for b.Loop() {
		_, _ = chacha20.HChaCha20(key, in)
	}
}

func BenchmarkPrimitiveMLKEM768Circl(b *testing.B) {
	pk, sk, _ := mlkem768.GenerateKeyPair(rand.Reader)
	ct := make([]byte, mlkem768.CiphertextSize)
	ss := make([]byte, mlkem768.SharedKeySize)
	seed := make([]byte, mlkem768.EncapsulationSeedSize)
	b.Run("Encapsulate", func(b *testing.B) {
		for b.Loop() {
			pk.EncapsulateTo(ct, ss, seed)
		}
	})
	b.Run("Decapsulate", func(b *testing.B) {
		for b.Loop() {
			sk.DecapsulateTo(ss, ct)
		}
	})
	b.Run("KeyGen", func(b *testing.B) {
		s := make([]byte, mlkem768.KeySeedSize)
		for b.Loop() {
			mlkem768.NewKeyFromSeed(s)
		}
	})
}

func BenchmarkPrimitiveMLKEM768Stdlib(b *testing.B) {
	dk, _ := mlkem.GenerateKey768()
	ek := dk.EncapsulationKey()
	_, ct := ek.Encapsulate()
	b.Run("Encapsulate", func(b *testing.B) {
		for b.Loop() {
			ek.Encapsulate()
		}
	})
	b.Run("Decapsulate", func(b *testing.B) {
		for b.Loop() {
			_, _ = dk.Decapsulate(ct)
		}
	})
	b.Run("KeyGen", func(b *testing.B) {
		for b.Loop() {
			_, _ = mlkem.GenerateKey768()
		}
	})
}

// BenchmarkOverhead reports the average bytes a message adds to its
// plaintext (header, establishment and KEM material, tag) in three traffic
// shapes, as the metric "B/msg". ns/op is the cost of the whole scenario.
func BenchmarkOverhead(b *testing.B) {
	pt := make([]byte, 100)
	for _, sc := range []struct {
		name  string
		burst int // messages each side sends per turn
		turns int
	}{
		{"PingPong", 1, 200},
		{"Bursts10", 10, 40},
		{"OneWay400", 400, 1},
	} {
		b.Run(sc.name, func(b *testing.B) {
			var total, count int
			for b.Loop() {
				p := newPair(b)
				from, to := p.a, p.b
				for range sc.turns {
					for range sc.burst {
						ct, err := from.Encrypt(pt)
						if err != nil {
							b.Fatal(err)
						}
						if _, err := to.Decrypt(ct); err != nil {
							b.Fatal(err)
						}
						total += len(ct) - len(pt)
						count++
					}
					from, to = to, from
				}
			}
			b.ReportMetric(float64(total)/float64(count), "B/msg")
		})
	}
}

// BenchmarkEncrypt256SameChain and BenchmarkDecrypt256SameChain repeat the
// symmetric step on one chain, with no untimed work in the loop, so that
// an instruction count of the whole run (docs/performance.md, measured
// with callgrind) divides evenly among the operations. They rewind only
// the message counter (sender) or the chain record (receiver); the work
// done per operation is exactly that of a steady-state message.
func BenchmarkEncrypt256SameChain(b *testing.B) {
	p := steadyPair(b)
	p.a.peerKEM = nil
	pt := make([]byte, 256)
	recvOK(b, p.b, send(b, p.a, "first"), "first") // opens the chain measured
	b.ReportAllocs()
	for b.Loop() {
		p.a.send.n, p.a.pqCount = 1, 1
		if _, err := p.a.Encrypt(pt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecrypt256SameChain(b *testing.B) {
	p := steadyPair(b)
	p.a.peerKEM = nil
	pt := make([]byte, 256)
	r := recvOK(b, p.b, send(b, p.a, "first"), "first")
	msg := send(b, p.a, string(pt))
	saved := *p.b.recv[r.Chain]
	b.ReportAllocs()
	for b.Loop() {
		c := p.b.recv[r.Chain]
		*c = saved
		if _, err := p.b.Decrypt(msg); err != nil {
			b.Fatal(err)
		}
	}
}
