package suite

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha3"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/cloudflare/circl/dh/x25519"
	circlhpke "github.com/cloudflare/circl/hpke"

	"github.com/moat-im/moat/internal/pqc"
	"github.com/moat-im/moat/internal/vecstate"
)

// The X-Wing backend is circl's (xwing.go). These tests hold it to the
// standard library's crypto/hpke MLKEM768X25519 with HKDF-SHA256 and
// ChaCha20-Poly1305, the backend it replaced: same key pairs from the same
// seeds, ciphertexts that open on the other side in both directions, and
// the same refusals.

func stdXWingHPKE() (hpke.KEM, hpke.KDF, hpke.AEAD) {
	return hpke.MLKEM768X25519(), hpke.HKDFSHA256(), hpke.ChaCha20Poly1305()
}

func TestXWingMatchesStdlib(t *testing.T) {
	s := xwingSuite(t)
	kem, kdf, aead := stdXWingHPKE()
	info := []byte("info")
	for i := range 8 {
		ikm := bytes.Repeat([]byte{byte(i)}, 32+i)
		priv, pub, err := s.DeriveKeyPair(ikm)
		if err != nil {
			t.Fatal(err)
		}
		// DeriveKeyPair: seed = SHAKE256(ikm, 32), expanded as the
		// standard library expands a private key.
		seed := make([]byte, 32)
		h := sha3.NewSHAKE256()
		h.Write(ikm)
		h.Read(seed)
		sk, err := kem.NewPrivateKey(seed)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(priv, seed) || !bytes.Equal(pub, sk.PublicKey().Bytes()) {
			t.Fatalf("%d: key pair differs from crypto/hpke", i)
		}
		if p2, err := s.HPKEPublicKeyOf(priv); err != nil || !bytes.Equal(p2, pub) {
			t.Fatalf("%d: HPKEPublicKeyOf differs", i)
		}
		// The decryption key (circl's ML-KEM and X25519 inside crypto/hpke)
		// is the same key: it opens crypto/hpke's seals (below), which an
		// ML-KEM key that differed could not (implicit rejection yields
		// another secret).

		// circl seals, the standard library opens.
		pt := []byte("path secret " + string(rune('a'+i)))
		enc, c, err := s.kem.setupS(pub, info)
		if err != nil {
			t.Fatal(err)
		}
		ct, _ := c.Seal([]byte("aad"), pt)
		r, err := hpke.NewRecipient(enc, sk, kdf, aead, info)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := r.Open([]byte("aad"), ct); err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("%d: crypto/hpke cannot open circl's seal: %v", i, err)
		}
		e1, _ := c.Export("exp", 40)
		e2, _ := r.Export("exp", 40)
		if !bytes.Equal(e1, e2) {
			t.Fatalf("%d: exports differ", i)
		}

		// The standard library seals, circl opens.
		enc, snd, err := hpke.NewSender(sk.PublicKey(), kdf, aead, info)
		if err != nil {
			t.Fatal(err)
		}
		ct, _ = snd.Seal(nil, pt)
		rc, err := s.kem.setupR(priv, enc, info)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := rc.Open(nil, ct); err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("%d: circl cannot open crypto/hpke's seal: %v", i, err)
		}
		// The same with the decapsulation done ahead.
		skAhead, err := s.kem.(*xwingKEM).privateKeyFor(priv, enc)
		if err != nil {
			t.Fatal(err)
		}
		ra, err := hpke.NewRecipient(enc, skAhead, kdf, aead, info)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := ra.Open(nil, ct); err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("%d: the key prepared ahead cannot open crypto/hpke's seal: %v", i, err)
		}
	}
}

// TestXWingRefusesWhatStdlibRefuses checks the refusals crypto/hpke makes:
// a public key or encapsulation whose X25519 share is a low-order point
// (circl alone would accept both), an ML-KEM key with an unreduced
// coefficient, and wrong sizes.
func TestXWingRefusesWhatStdlibRefuses(t *testing.T) {
	s := xwingSuite(t)
	kem, kdf, aead := stdXWingHPKE()
	priv, pub, err := s.GenerateHPKEKey()
	if err != nil {
		t.Fatal(err)
	}
	sk, err := kem.NewPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	lowOrder := [][]byte{
		make([]byte, 32),                       // 0
		append([]byte{1}, make([]byte, 31)...), // 1
		// p-1, p, p+1 (little-endian).
		append([]byte{0xec}, append(bytes.Repeat([]byte{0xff}, 30), 0x7f)...),
		append([]byte{0xed}, append(bytes.Repeat([]byte{0xff}, 30), 0x7f)...),
		append([]byte{0xee}, append(bytes.Repeat([]byte{0xff}, 30), 0x7f)...),
		// The two points of order 8.
		unhex(t, "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
		unhex(t, "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
	}
	for i, u := range lowOrder {
		for _, high := range []bool{false, true} {
			u := bytes.Clone(u)
			if high {
				u[31] |= 0x80
			}
			bad := append(bytes.Clone(pub[:len(pub)-32]), u...)
			_, stdErr := kem.NewPublicKey(bad)
			if stdErr == nil {
				var pk hpke.PublicKey
				pk, _ = kem.NewPublicKey(bad)
				_, _, stdErr = hpke.NewSender(pk, kdf, aead, nil)
			}
			if stdErr == nil {
				t.Fatalf("%d: crypto/hpke accepts the low-order key", i)
			}
			if _, _, err := s.EncryptWithLabel(bad, "x", nil, []byte("m")); !errors.Is(err, ErrInvalidPublicKey) {
				t.Errorf("%d (high bit %v): seal to a low-order X25519 share: got %v", i, high, err)
			}
			seed := make([]byte, s.EncapSeedSize())
			if _, _, err := s.EncryptWithLabelDerand(bad, "x", nil, []byte("m"), seed); !errors.Is(err, ErrInvalidPublicKey) {
				t.Errorf("%d (high bit %v): derandomised seal to a low-order X25519 share: got %v", i, high, err)
			}

			// An encapsulation whose X25519 part is low order.
			enc, ct, err := s.EncryptWithLabel(pub, "x", nil, []byte("m"))
			if err != nil {
				t.Fatal(err)
			}
			enc = append(enc[:len(enc)-32:len(enc)-32], u...)
			if _, err := hpke.NewRecipient(enc, sk, kdf, aead, nil); err == nil {
				t.Fatalf("%d: crypto/hpke accepts the low-order encapsulation", i)
			}
			// (The AEAD would fail anyway; SetupBaseR itself must refuse,
			// since ML-KEM decapsulation never does.)
			if _, err := s.kem.setupR(priv, enc, nil); !errors.Is(err, ErrDecrypt) {
				t.Errorf("%d (high bit %v): SetupBaseR with a low-order encapsulation: got %v", i, high, err)
			}
			if _, err := s.DecryptWithLabel(priv, "x", nil, enc, ct); !errors.Is(err, ErrDecrypt) {
				t.Errorf("%d (high bit %v): open with a low-order encapsulation: got %v", i, high, err)
			}
			// The same with the decapsulation done ahead (PrepareDecryption).
			dk, err := s.PrepareDecryption(priv, enc)
			if err != nil {
				t.Fatalf("%d: PrepareDecryption: %v", i, err)
			}
			if _, err := s.DecryptWithLabelKey(dk, "x", nil, enc, ct); !errors.Is(err, ErrDecrypt) {
				t.Errorf("%d (high bit %v): open ahead with a low-order encapsulation: got %v", i, high, err)
			}
		}
	}

	// An ML-KEM coefficient of q = 3329 (not reduced) in the first slot.
	bad := bytes.Clone(pub)
	bad[0], bad[1] = 0x01, bad[1]&0xf0|0x0d
	if _, err := kem.NewPublicKey(bad); err == nil {
		t.Fatal("crypto/hpke accepts an unreduced ML-KEM key")
	}
	if _, _, err := s.EncryptWithLabel(bad, "x", nil, []byte("m")); !errors.Is(err, ErrInvalidPublicKey) {
		t.Errorf("unreduced ML-KEM key: got %v", err)
	}
	for _, n := range []int{0, len(pub) - 1, len(pub) + 1} {
		if _, _, err := s.EncryptWithLabel(make([]byte, n), "x", nil, []byte("m")); !errors.Is(err, ErrInvalidPublicKey) {
			t.Errorf("public key of %d bytes: got %v", n, err)
		}
	}
	enc, ct, _ := s.EncryptWithLabel(pub, "x", nil, []byte("m"))
	if _, err := s.DecryptWithLabel(priv, "x", nil, enc[1:], ct); !errors.Is(err, ErrDecrypt) {
		t.Errorf("short encapsulation: got %v", err)
	}
	if _, err := s.DecryptWithLabel(priv[1:], "x", nil, enc, ct); !errors.Is(err, ErrDecrypt) {
		t.Errorf("short private key: got %v", err)
	}
	if _, err := s.HPKEPublicKeyOf(priv[1:]); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("short private key: got %v", err)
	}
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// BenchmarkXWingBackend compares the X-Wing operations of an UpdatePath in
// the standard library and in circl (the reasons for xwing.go's split;
// docs/performance.md §MLS). The circl variants clear the vector state
// afterwards, as the package does.
func BenchmarkXWingBackend(b *testing.B) {
	s, err := Get(XWING_CHACHA20POLY1305_SHA256_Ed25519)
	if err != nil {
		b.Fatal(err)
	}
	k := s.kem.(*xwingKEM)
	priv, pub, _ := s.GenerateHPKEKey()
	ikm := bytes.Repeat([]byte{1}, 32)
	info := bytes.Repeat([]byte{2}, 120)
	pt := make([]byte, 32)
	enc, ct, _ := s.EncryptWithLabel(pub, "UpdatePathNode", nil, pt)
	seal := func(b *testing.B, setup func() (senderCtx, error)) {
		for b.Loop() {
			c, err := setup()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.Seal(nil, pt); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("derive/stdlib", func(b *testing.B) {
		for b.Loop() {
			seed := make([]byte, 32)
			h := sha3.NewSHAKE256()
			h.Write(ikm)
			h.Read(seed)
			sk, err := k.kem.NewPrivateKey(seed)
			if err != nil {
				b.Fatal(err)
			}
			_ = sk.PublicKey().Bytes()
		}
	})
	b.Run("derive/circl", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := s.DeriveKeyPair(ikm); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("seal/stdlib", func(b *testing.B) {
		seal(b, func() (senderCtx, error) {
			_, c, err := k.setupS(pub, info)
			return c, err
		})
	})
	b.Run("seal/circl", func(b *testing.B) {
		seed := make([]byte, k.encapSeedSize())
		seal(b, func() (senderCtx, error) {
			rand.Read(seed)
			_, c, err := k.setupSDerand(pub, info, seed)
			return c, err
		})
	})
	open := func(b *testing.B, setup func() (receiverCtx, error)) {
		for b.Loop() {
			r, err := setup()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := r.Open(nil, ct); err != nil {
				b.Fatal(err)
			}
		}
	}
	info2, _ := labelledContent("UpdatePathNode", nil)
	b.Run("open/stdlib", func(b *testing.B) {
		open(b, func() (receiverCtx, error) { return k.setupR(priv, enc, info2) })
	})
	b.Run("open/circl", func(b *testing.B) {
		open(b, func() (receiverCtx, error) {
			defer vecstate.Clean()
			sk, err := circlhpke.KEM_XWING.Scheme().UnmarshalBinaryPrivateKey(priv)
			if err != nil {
				return nil, err
			}
			r, err := k.circl.NewReceiver(sk, info2)
			if err != nil {
				return nil, err
			}
			o, err := r.Setup(enc)
			return circlOpener{o}, err
		})
	})
}

// TestXWingAhead checks that a decapsulation done ahead is what the next
// Decapsulate or ECDH of the same input returns, once, and that other
// inputs are computed in full.
func TestXWingAhead(t *testing.T) {
	s := xwingSuite(t)
	_, pub, err := s.GenerateHPKEKey()
	if err != nil {
		t.Fatal(err)
	}
	enc, _, err := s.EncryptWithLabel(pub, "x", nil, []byte("m"))
	if err != nil {
		t.Fatal(err)
	}
	var seed [pqc.MLKEM768SeedSize]byte
	_, skm := pqc.NewMLKEM768Key(seed[:])
	ct := enc[:pqc.MLKEM768CiphertextSize]
	d := &circlDecapsulator{sk: skm}
	full, _ := d.Decapsulate(ct)
	d.ahead(ct)
	if !bytes.Equal(d.aheadSS, full) {
		t.Fatal("ahead decapsulation differs")
	}
	marker := bytes.Repeat([]byte{0xaa}, len(full))
	d.aheadSS = marker
	other := bytes.Clone(ct)
	other[0] ^= 1
	if got, _ := d.Decapsulate(other); bytes.Equal(got, marker) {
		t.Fatal("ahead result used for another ciphertext")
	}
	if got, _ := d.Decapsulate(ct); !bytes.Equal(got, marker) {
		t.Fatal("ahead result not used")
	}
	if got, _ := d.Decapsulate(ct); !bytes.Equal(got, full) {
		t.Fatal("ahead result used twice")
	}

	x := &circlX25519{sk: x25519.Key{1, 2, 3}}
	peer, err := ecdh.X25519().NewPublicKey(enc[pqc.MLKEM768CiphertextSize:])
	if err != nil {
		t.Fatal(err)
	}
	fullX, err := x.ECDH(peer)
	if err != nil {
		t.Fatal(err)
	}
	x.ahead(peer.Bytes())
	if !x.aheadOK || !bytes.Equal(x.aheadOut[:], fullX) {
		t.Fatal("ahead exchange differs")
	}
	x.aheadOut = x25519.Key{0xaa}
	otherPeer, err := ecdh.X25519().NewPublicKey(append([]byte{9}, make([]byte, 31)...))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := x.ECDH(otherPeer); err != nil || got[0] == 0xaa {
		t.Fatalf("ahead exchange used for another peer value: %v", err)
	}
	if got, err := x.ECDH(peer); err != nil || got[0] != 0xaa {
		t.Fatalf("ahead exchange not used: %v", err)
	}
	if x.aheadOut != (x25519.Key{}) {
		t.Fatal("ahead exchange not wiped after use")
	}
	if got, err := x.ECDH(peer); err != nil || !bytes.Equal(got, fullX) {
		t.Fatalf("ahead exchange used twice: %v", err)
	}
	x.ahead(make([]byte, 32)) // low order: refused, also ahead
	if x.aheadOK {
		t.Fatal("low-order exchange accepted ahead")
	}
	zero, _ := ecdh.X25519().NewPublicKey(make([]byte, 32))
	if _, err := x.ECDH(zero); err == nil {
		t.Fatal("low-order exchange accepted")
	}
}
