package sealed

import (
	"crypto/hpke"
	"testing"
)

// Benchmarks of docs/performance.md §Sealed sender. A 1 KiB content goes
// in a 4 KiB envelope; the primitive floors are the HPKE single-shot seal
// and open of the same 2,902-byte inner plaintext with the same suite.

func benchSeal(b *testing.B, n int) {
	a, r := newDevice(b, 1), newDevice(b, 2)
	rec := r.recipient(b)
	m := message(a, make([]byte, n))
	bucket, _ := BucketFor(n)
	b.SetBytes(int64(bucket))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rec.Seal(m); err != nil {
			b.Fatal(err)
		}
	}
}

func benchOpen(b *testing.B, n int) {
	a, r := newDevice(b, 1), newDevice(b, 2)
	env, err := r.recipient(b).Seal(message(a, make([]byte, n)))
	must(b, err)
	b.SetBytes(int64(len(env)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.keyring.Open(env); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSeal1KiB(b *testing.B) { benchSeal(b, 1024) }
func BenchmarkOpen1KiB(b *testing.B) { benchOpen(b, 1024) }
func BenchmarkSeal100(b *testing.B)  { benchSeal(b, 100) }
func BenchmarkOpen100(b *testing.B)  { benchOpen(b, 100) }

// BenchmarkNewRecipient is the sender's one-off check of a key record: one
// Ed25519 verification.
func BenchmarkNewRecipient(b *testing.B) {
	r := newDevice(b, 2)
	for b.Loop() {
		if _, err := NewRecipient(r.mailbox, r.id.Public().Signing, r.record, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseHeader is the relay's only work on an envelope.
func BenchmarkParseHeader(b *testing.B) {
	a, r := newDevice(b, 1), newDevice(b, 2)
	env, err := r.recipient(b).Seal(message(a, make([]byte, 1024)))
	must(b, err)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseHeader(env); err != nil {
			b.Fatal(err)
		}
	}
}

const inner1KiB = 4096 - HeaderSize - EncSize - tagSize

func BenchmarkPrimitiveHPKESeal(b *testing.B) {
	r := newDevice(b, 2)
	pt, aad := make([]byte, inner1KiB), make([]byte, HeaderSize)
	b.ReportAllocs()
	for b.Loop() {
		_, ctx, err := hpke.NewSender(r.ssk.Public().HPKE(), suiteKDF, suiteAEAD, info)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ctx.Seal(aad, pt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPrimitiveHPKEOpen(b *testing.B) {
	r := newDevice(b, 2)
	pt, aad := make([]byte, inner1KiB), make([]byte, HeaderSize)
	enc, ctx, err := hpke.NewSender(r.ssk.Public().HPKE(), suiteKDF, suiteAEAD, info)
	must(b, err)
	ct, err := ctx.Seal(aad, pt)
	must(b, err)
	b.ReportAllocs()
	for b.Loop() {
		rc, err := hpke.NewRecipient(enc, r.ssk.HPKE(), suiteKDF, suiteAEAD, info)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := rc.Open(aad, ct); err != nil {
			b.Fatal(err)
		}
	}
}
