package edpoint

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"testing"

	"filippo.io/edwards25519"
)

// reference is the decoding Decode replaces: SetBytes, then require the
// canonical re-encoding to equal the input.
func reference(s []byte) error {
	if len(s) != Size {
		return ErrNotPoint
	}
	p, err := new(edwards25519.Point).SetBytes(s)
	if err != nil {
		return ErrNotPoint
	}
	if !bytes.Equal(p.Bytes(), s) {
		return ErrNonCanonical
	}
	return nil
}

func check(t *testing.T, s []byte) {
	t.Helper()
	p, err := Decode(s)
	if want := reference(s); err != want {
		t.Fatalf("Decode(%x): %v, reference %v", s, err, want)
	}
	if err == nil && !bytes.Equal(p.Bytes(), s) {
		t.Fatalf("Decode(%x) returned another point", s)
	}
}

// edgeCases are the encodings around the two non-canonical forms: y near
// p and near 2^255, y = ±1 (x = 0) with either sign bit, y = 0, and the
// small-order points.
func edgeCases() [][]byte {
	var out [][]byte
	le := func(h string) []byte { b, _ := hex.DecodeString(h); return b }
	// p - 1 = 2^255 - 20, as the base: ec ff .. 7f; p = ed ff .. 7f.
	for v := 0xe0; v <= 0xff; v++ {
		for _, top := range []byte{0x7f, 0xff} {
			b := bytes.Repeat([]byte{0xff}, 32)
			b[0], b[31] = byte(v), top
			out = append(out, b)
		}
	}
	for _, y := range []byte{0, 1, 2, 3, 4, 5, 0x12, 0x13} {
		for _, top := range []byte{0x00, 0x80} {
			b := make([]byte, 32)
			b[0], b[31] = y, top
			out = append(out, b)
		}
	}
	// Small-order points (canonical encodings) and their sign flips.
	for _, h := range []string{
		"0100000000000000000000000000000000000000000000000000000000000000",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0000000000000000000000000000000000000000000000000000000000000080",
		"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
		"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
		"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
		"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
	} {
		out = append(out, le(h))
	}
	out = append(out, edwards25519.NewGeneratorPoint().Bytes())
	return out
}

func TestDecodeEdgeCases(t *testing.T) {
	nonCanonical := 0
	for _, s := range edgeCases() {
		check(t, s)
		if reference(s) == ErrNonCanonical {
			nonCanonical++
		}
	}
	if nonCanonical < 10 {
		t.Fatalf("%d edge cases are non-canonical: the test barely tests", nonCanonical)
	}
	for _, n := range []int{0, 31, 33} {
		if _, err := Decode(make([]byte, n)); err != ErrNotPoint {
			t.Fatalf("%d bytes accepted", n)
		}
	}
}

func TestDecodeRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	s := make([]byte, 32)
	for range 3000 {
		for i := range s {
			s[i] = byte(r.Uint32())
		}
		check(t, s)
		// Also points: a random multiple of the base, with both signs.
		var w [64]byte
		for i := range w {
			w[i] = byte(r.Uint32())
		}
		k, _ := edwards25519.NewScalar().SetUniformBytes(w[:])
		p := new(edwards25519.Point).ScalarBaseMult(k).Bytes()
		check(t, p)
		p[31] ^= 0x80
		check(t, p)
	}
}

func TestSmallOrder(t *testing.T) {
	for _, s := range edgeCases() {
		p, err := new(edwards25519.Point).SetBytes(s)
		if err != nil {
			continue
		}
		want := new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1
		if SmallOrder(p) != want {
			t.Fatalf("SmallOrder(%x)", s)
		}
	}
	if SmallOrder(edwards25519.NewGeneratorPoint()) || !SmallOrder(edwards25519.NewIdentityPoint()) {
		t.Fatal("SmallOrder")
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range edgeCases() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s []byte) { check(t, s) })
}

func BenchmarkDecode(b *testing.B) {
	s := edwards25519.NewGeneratorPoint().Bytes()
	for b.Loop() {
		Decode(s)
	}
}

func BenchmarkDecodeReference(b *testing.B) {
	s := edwards25519.NewGeneratorPoint().Bytes()
	for b.Loop() {
		reference(s)
	}
}
