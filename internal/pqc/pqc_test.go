package pqc

import (
	"bytes"
	"crypto"
	"errors"
	"runtime"
	"testing"

	circlhpke "github.com/cloudflare/circl/hpke"
	"github.com/cloudflare/circl/kem/mlkem/mlkem768"

	"github.com/moat-im/moat/internal/vecstate"
)

// clean runs f on one OS thread and fails if it leaves the upper YMM state
// in use. Where the processor cannot tell, it only runs f.
func clean(t *testing.T, what string, f func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	f()
	if dirty, known := vecstate.Dirty(); known && dirty {
		t.Errorf("%s left the upper YMM state in use", what)
	}
}

// TestDirtyDetects shows that clean can fail: circl's ML-KEM called
// directly leaves the upper YMM state in use (on processors with AVX2 and
// XINUSE).
func TestDirtyDetects(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	vecstate.Clean()
	if _, known := vecstate.Dirty(); !known {
		t.Skip("this processor does not report XINUSE") // nothing to detect with
	}
	mlkem768.NewKeyFromSeed(make([]byte, mlkem768.KeySeedSize))
	dirty, _ := vecstate.Dirty()
	vecstate.Clean()
	after, _ := vecstate.Dirty()
	if !dirty || after {
		t.Fatalf("dirty after circl: %v, after Clean: %v", dirty, after)
	}
}

func seed(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

func TestMLKEM768(t *testing.T) {
	var (
		pk  *MLKEM768PublicKey
		sk  *MLKEM768PrivateKey
		raw []byte
		pk2 *MLKEM768PublicKey
		err error
	)
	ct := make([]byte, MLKEM768CiphertextSize)
	ss1 := make([]byte, MLKEM768SharedSecretSize)
	ss2 := make([]byte, MLKEM768SharedSecretSize)
	clean(t, "NewMLKEM768Key", func() { pk, sk = NewMLKEM768Key(seed(1, MLKEM768SeedSize)) })
	clean(t, "Bytes", func() { raw = pk.Bytes() })
	clean(t, "ParseMLKEM768PublicKey", func() { pk2, err = ParseMLKEM768PublicKey(raw) })
	if err != nil {
		t.Fatal(err)
	}
	clean(t, "EncapsulateTo", func() { pk2.EncapsulateTo(ct, ss1, seed(2, MLKEM768EncapsulationSeedSize)) })
	clean(t, "DecapsulateTo", func() { sk.DecapsulateTo(ss2, ct) })
	if !bytes.Equal(ss1, ss2) {
		t.Fatal("shared secrets differ")
	}
	// A coefficient ≥ q fails the FIPS 203 §7.2 modulus check.
	bad := bytes.Clone(raw)
	bad[0], bad[1] = 0xff, 0x0f
	if _, err := ParseMLKEM768PublicKey(bad); !errors.Is(err, ErrMalformed) {
		t.Errorf("key with a coefficient ≥ q: %v", err)
	}
	if _, err := ParseMLKEM768PublicKey(raw[1:]); !errors.Is(err, ErrMalformed) {
		t.Errorf("short key: %v", err)
	}
}

func TestMLDSA(t *testing.T) {
	var xi [MLDSASeedSize]byte
	xi[0] = 7
	m, ctx := []byte("message"), []byte("ctx")

	var (
		pk44 *MLDSA44PublicKey
		sk44 *MLDSA44PrivateKey
		ok   bool
		err  error
	)
	sig44 := make([]byte, MLDSA44SignatureSize)
	clean(t, "NewMLDSA44Key", func() { pk44, sk44 = NewMLDSA44Key(&xi) })
	clean(t, "MLDSA44 SignTo", func() { err = sk44.SignTo(m, ctx, sig44) })
	if err != nil {
		t.Fatal(err)
	}
	clean(t, "MLDSA44 Verify", func() { ok = pk44.Verify(m, ctx, sig44) })
	if !ok || pk44.Verify(m, nil, sig44) || pk44.Verify(m, ctx, sig44[1:]) {
		t.Fatal("ML-DSA-44 verification wrong")
	}
	var raw44 []byte
	clean(t, "MLDSA44 Bytes", func() { raw44 = pk44.Bytes() })
	clean(t, "ParseMLDSA44PublicKey", func() { _, err = ParseMLDSA44PublicKey(raw44) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseMLDSA44PublicKey(raw44[1:]); !errors.Is(err, ErrMalformed) {
		t.Errorf("short ML-DSA-44 key: %v", err)
	}

	var (
		pk65 *MLDSA65PublicKey
		sk65 *MLDSA65PrivateKey
		sig  []byte
	)
	sig65 := make([]byte, MLDSA65SignatureSize)
	clean(t, "NewMLDSA65Key", func() { pk65, sk65 = NewMLDSA65Key(&xi) })
	clean(t, "MLDSA65 SignTo", func() { err = sk65.SignTo(m, nil, sig65) })
	if err != nil {
		t.Fatal(err)
	}
	clean(t, "MLDSA65 Verify", func() { ok = pk65.Verify(m, nil, sig65) })
	if !ok || pk65.Verify([]byte("other"), nil, sig65) {
		t.Fatal("ML-DSA-65 verification wrong")
	}
	clean(t, "MLDSA65 Signer", func() { sig, err = sk65.Signer().Sign(nil, m, crypto.Hash(0)) })
	if err != nil || !pk65.Verify(m, nil, sig) {
		t.Fatalf("Signer: %v", err)
	}
	raw65 := pk65.Bytes()
	clean(t, "ParseMLDSA65PublicKey", func() { _, err = ParseMLDSA65PublicKey(raw65) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseMLDSA65PublicKey(append(raw65, 0)); !errors.Is(err, ErrMalformed) {
		t.Errorf("long ML-DSA-65 key: %v", err)
	}
	// t1 coefficients are 10 bits packed exactly, so every 1952-byte string
	// decodes canonically: ErrNonCanonical is circl's encoding changing
	// under us, checked here by re-encoding.
	if got, _ := ParseMLDSA65PublicKey(raw65); !bytes.Equal(got.Bytes(), raw65) {
		t.Error("re-encoding differs")
	}
}

func TestXWing(t *testing.T) {
	var priv, pub, enc []byte
	var err error
	clean(t, "XWingDeriveKeyPair", func() { priv, pub = XWingDeriveKeyPair(seed(3, XWingSeedSize)) })
	if !bytes.Equal(priv, seed(3, XWingSeedSize)) || len(pub) != XWingPublicKeySize {
		t.Fatal("X-Wing key pair: the private key is the seed")
	}
	s := circlhpke.NewSuite(circlhpke.KEM_XWING, circlhpke.KDF_HKDF_SHA256, circlhpke.AEAD_ChaCha20Poly1305)
	clean(t, "XWingSetupSender", func() { enc, _, err = XWingSetupSender(s, pub, []byte("info"), seed(4, XWingEncapsulationSeedSize)) })
	if err != nil || len(enc) != XWingCiphertextSize {
		t.Fatalf("XWingSetupSender: %v", err)
	}
	if _, _, err := XWingSetupSender(s, pub[1:], nil, seed(4, XWingEncapsulationSeedSize)); !errors.Is(err, ErrMalformed) {
		t.Errorf("short public key: %v", err)
	}
}
