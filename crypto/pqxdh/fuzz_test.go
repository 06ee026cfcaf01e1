package pqxdh

// Decoder fuzz targets (STYLE items 3, 11): ParseBundle and
// ParseInitialMessage never panic, and what they accept re-encodes to the
// same bytes (parse(x) ok ⇒ marshal(parse(x)) == x). Every identifier here
// starts with "fz" so that it cannot collide with other test files.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
)

func fzRand(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	binary.BigEndian.PutUint64(s[:8], seed)
	copy(s[8:], "moat pqxdh fuzz seed ..........")
	return rand.NewChaCha8(s)
}

func fzMust(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// fzEncodings returns real bundle and initial-message encodings, with and
// without a one-time prekey, with one-time and last-resort KEM prekeys.
func fzEncodings(t testing.TB) (bundles, initials [][]byte) {
	for i, c := range []struct{ opk, lastResort bool }{{true, false}, {false, false}, {true, true}, {false, true}} {
		rnd := fzRand(uint64(i))
		created := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Hour)
		alice, err := keys.GenerateDeviceIdentity(rnd)
		fzMust(t, err)
		bob, err := keys.GenerateDeviceIdentity(rnd)
		fzMust(t, err)
		spk, err := keys.GenerateSignedPrekeyKey(rnd)
		fzMust(t, err)
		kpk, err := keys.GenerateKEMPrekeyKey(rnd)
		fzMust(t, err)
		b := &Bundle{
			Identity:     bob.Public(),
			SignedPrekey: keys.SignSignedPrekey(uint32(i+1), created, spk.Public(), bob.Signing),
			KEMPrekey:    keys.SignKEMPrekey(uint32(100+i), created, c.lastResort, kpk.Public(), bob.Signing),
		}
		if c.opk {
			opk, err := keys.GenerateOneTimePrekey(rnd)
			fzMust(t, err)
			b.OneTimePrekey = &OneTimePrekey{ID: uint32(1000 + i), Key: opk.Public()}
		}
		enc, err := b.Marshal()
		fzMust(t, err)
		bundles = append(bundles, enc)
		m, _, err := Initiate(rnd, alice, b)
		fzMust(t, err)
		enc, err = m.Marshal()
		fzMust(t, err)
		initials = append(initials, enc)
	}
	return bundles, initials
}

// fzDiff describes where got first differs from want.
func fzDiff(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	return fmt.Sprintf("%d and %d bytes, first difference at offset %d: got %x…, want %x…",
		len(got), len(want), i, got[i:min(len(got), i+16)], want[i:min(len(want), i+16)])
}

// fzCheckParseError requires a typed decoding error.
func fzCheckParseError(t *testing.T, err error) {
	t.Helper()
	var ke *KeyError
	if !errors.Is(err, ErrMalformed) && !errors.As(err, &ke) {
		t.Fatalf("unexpected error type %T: %v", err, err)
	}
}

// FuzzParseBundle checks ParseBundle by exact round trip.
func FuzzParseBundle(f *testing.F) {
	bundles, initials := fzEncodings(f)
	for _, b := range bundles {
		f.Add(b)
	}
	f.Add(initials[0]) // the other type byte
	f.Add([]byte{typeBundle, version})
	f.Fuzz(func(t *testing.T, data []byte) {
		in := bytes.Clone(data)
		b, err := ParseBundle(in)
		if err != nil {
			fzCheckParseError(t, err)
			return
		}
		if b.SignedPrekey == nil || b.SignedPrekey.Key == nil || b.KEMPrekey == nil || b.KEMPrekey.Key == nil ||
			b.Identity.Signing == nil || b.Identity.DH == nil || (b.OneTimePrekey != nil && b.OneTimePrekey.Key == nil) {
			t.Fatal("ParseBundle returned a bundle with a missing key")
		}
		enc, err := b.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed bundle: %v", err)
		}
		if !bytes.Equal(enc, data) {
			t.Fatalf("Marshal(ParseBundle(x)) != x: %s", fzDiff(enc, data))
		}
		// The parsed bundle owns its bytes: changing the input changes
		// nothing in it.
		clear(in)
		if again, err := b.Marshal(); err != nil || !bytes.Equal(again, enc) {
			t.Fatal("parsed bundle aliases its input")
		}
	})
}

// FuzzParseInitialMessage checks ParseInitialMessage by exact round trip.
func FuzzParseInitialMessage(f *testing.F) {
	bundles, initials := fzEncodings(f)
	for _, m := range initials {
		f.Add(m)
	}
	f.Add(bundles[0]) // the other type byte
	f.Add([]byte{typeInitialMessage, version})
	f.Fuzz(func(t *testing.T, data []byte) {
		in := bytes.Clone(data)
		m, err := ParseInitialMessage(in)
		if err != nil {
			fzCheckParseError(t, err)
			return
		}
		if m.Identity.Signing == nil || m.Identity.DH == nil || m.Ephemeral == nil || len(m.KEMCiphertext) != keys.KEMCiphertextSize {
			t.Fatal("ParseInitialMessage returned a message with a missing part")
		}
		enc, err := m.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed initial message: %v", err)
		}
		if !bytes.Equal(enc, data) {
			t.Fatalf("Marshal(ParseInitialMessage(x)) != x: %s", fzDiff(enc, data))
		}
		clear(in)
		if again, err := m.Marshal(); err != nil || !bytes.Equal(again, enc) {
			t.Fatal("parsed initial message aliases its input")
		}
	})
}
