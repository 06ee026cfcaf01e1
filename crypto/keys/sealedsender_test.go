package keys

import (
	"bytes"
	"crypto/hpke"
	"errors"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/internal/label"
)

// TestSealedSenderKeyChecks: the X25519 half of an X-Wing public key gets
// the checks of docs/spec/keys.md §X25519 keys and the ML-KEM half the FIPS
// 203 modulus check (§Sealed-sender keys).
func TestSealedSenderKeyChecks(t *testing.T) {
	s := newSampleKeys(t, 9)
	raw := s.ssk.Public().Raw()
	if len(raw) != SealedSenderPublicKeySize || SealedSenderPublicKeySize != 1216 {
		t.Fatalf("raw key is %d bytes", len(raw))
	}
	withX := func(x []byte) []byte {
		return append(bytes.Clone(raw[:KEMPublicKeySize]), x...)
	}
	for i, lo := range lowOrderX25519 {
		if _, err := NewSealedSenderPublicKey(withX(lo)); err != ErrLowOrder {
			t.Errorf("low-order X25519 half %d: %v, want ErrLowOrder", i, err)
		}
	}
	top := bytes.Clone(raw[KEMPublicKeySize:])
	top[31] |= 0x80
	if _, err := NewSealedSenderPublicKey(withX(top)); err != ErrNonCanonical {
		t.Errorf("X25519 half with the top bit set: %v, want ErrNonCanonical", err)
	}
	p := bytes.Repeat([]byte{0xff}, 32)
	p[0], p[31] = 0xed, 0x7f // u = p
	if _, err := NewSealedSenderPublicKey(withX(p)); err != ErrNonCanonical {
		t.Errorf("X25519 half u = p: %v, want ErrNonCanonical", err)
	}
	bad := bytes.Clone(raw)
	setCoefficient12(bad, 100, 3329)
	if _, err := NewSealedSenderPublicKey(bad); err != ErrInvalidKEMKey {
		t.Errorf("ML-KEM coefficient q: %v, want ErrInvalidKEMKey", err)
	}
	if _, err := ParseSealedSenderPublicKey(append([]byte{byte(TagSealedSender)}, bad...)); err != ErrInvalidKEMKey {
		t.Errorf("tagged, ML-KEM coefficient q: %v, want ErrInvalidKEMKey", err)
	}
	// Another role's ML-KEM key with an X25519 key appended is a valid
	// X-Wing key only through the raw constructor: its tag stops it.
	if _, err := ParseSealedSenderPublicKey(append(s.kem.Public().Bytes(), s.idDH.Public().Raw()...)); err != ErrWrongType {
		t.Errorf("KEM prekey tag: %v, want ErrWrongType", err)
	}
}

// TestSealedSenderKeySeed: a private key re-derived from its seed is the
// same key, and its HPKE form opens what the public key's HPKE form seals.
func TestSealedSenderKeySeed(t *testing.T) {
	s := newSampleKeys(t, 10)
	k, err := NewSealedSenderPrivateKey(s.ssk.Seed())
	if err != nil || !k.Equal(s.ssk) || !k.Public().Equal(s.ssk.Public()) {
		t.Fatalf("re-derived key differs: %v", err)
	}
	seed := s.ssk.Seed()
	seed[0] ^= 1
	if s.ssk.Seed()[0] == seed[0] {
		t.Fatal("Seed returned an alias")
	}
	ct, err := hpke.Seal(s.ssk.Public().HPKE(), hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), []byte("info"), []byte("plaintext"))
	if err != nil {
		t.Fatal(err)
	}
	pt, err := hpke.Open(k.HPKE(), hpke.HKDFSHA256(), hpke.ChaCha20Poly1305(), []byte("info"), ct)
	if err != nil || string(pt) != "plaintext" {
		t.Fatalf("open: %q, %v", pt, err)
	}
	if k.HPKE().KEM().ID() != 0x647a {
		t.Fatalf("KEM id %#x, want X-Wing 0x647a", k.HPKE().KEM().ID())
	}
}

// TestSealedSenderKeySignature: the identity key's signature covers the
// id, both times and the key, under its own label.
func TestSealedSenderKeySignature(t *testing.T) {
	s, o := newSampleKeys(t, 11), newSampleKeys(t, 12)
	created := time.Unix(1_700_000_000, 0)
	expires := created.Add(30 * 24 * time.Hour)
	k := SignSealedSenderKey(7, created, expires, s.ssk.Public(), s.idSig)
	if err := k.Verify(s.idSig.Public()); err != nil {
		t.Fatalf("honest signature: %v", err)
	}
	m := SealedSenderKeySigningMessage(7, created, expires, s.ssk.Public())
	if !bytes.HasPrefix(m, append([]byte(label.SealedSenderKey), 0)) || len(m) != len(label.SealedSenderKey)+1+4+8+8+1+SealedSenderPublicKeySize {
		t.Fatalf("signing message layout: %d bytes", len(m))
	}
	kp := SignKEMPrekey(7, created, false, s.kem.Public(), s.idSig)
	for name, bad := range map[string]*SealedSenderKey{
		"other id":             {ID: 8, Created: k.Created, Expires: k.Expires, Key: k.Key, Signature: k.Signature},
		"other created":        {ID: 7, Created: k.Created.Add(time.Second), Expires: k.Expires, Key: k.Key, Signature: k.Signature},
		"other expires":        {ID: 7, Created: k.Created, Expires: k.Expires.Add(time.Second), Key: k.Key, Signature: k.Signature},
		"other key":            {ID: 7, Created: k.Created, Expires: k.Expires, Key: o.ssk.Public(), Signature: k.Signature},
		"KEM prekey signature": {ID: 7, Created: k.Created, Expires: k.Expires, Key: k.Key, Signature: kp.Signature},
		"short signature":      {ID: 7, Created: k.Created, Expires: k.Expires, Key: k.Key, Signature: k.Signature[:63]},
		"no key":               {ID: 7, Created: k.Created, Expires: k.Expires, Signature: k.Signature},
	} {
		if err := bad.Verify(s.idSig.Public()); !errors.Is(err, ErrUnsignedPrekey) {
			t.Errorf("%s: %v, want ErrUnsignedPrekey", name, err)
		}
	}
	if err := k.Verify(o.idSig.Public()); !errors.Is(err, ErrUnsignedPrekey) {
		t.Errorf("another identity: %v", err)
	}
	var nilKey *SealedSenderKey
	if err := nilKey.Verify(s.idSig.Public()); !errors.Is(err, ErrUnsignedPrekey) {
		t.Errorf("nil record: %v", err)
	}
}

func FuzzParseSealedSenderPublicKey(f *testing.F)     { fuzzBinary(f, codecSealedSender) }
func FuzzParseSealedSenderPublicKeyText(f *testing.F) { fuzzText(f, codecSealedSender) }
