// Package suite implements the cryptographic dependencies of MLS cipher
// suites as specified in RFC 9420 §5.1, §5.2, §8 and §9: the labelled KDF,
// signature and public-key encryption functions, hash references and the
// AEAD used for message protection.
//
// Every primitive comes from the Go standard library (crypto/hpke,
// crypto/ecdsa, crypto/ed25519, crypto/hkdf, crypto/hmac, crypto/aes) and
// golang.org/x/crypto/chacha20poly1305, except X448 and Ed448 (suites 4 and
// 6), which come from github.com/cloudflare/circl because the standard
// library has neither, and X-Wing key pairs (suite 0x004D), which come from
// circl because its ML-KEM-768 key generation is about twice as fast
// (xwing.go).
//
// Keys are carried as their MLS serialisations (RFC 9420 §5.1.1 and the
// interop test-vector conventions): Ed25519 and Ed448 private keys are the
// RFC 8032 seeds, ECDSA private keys are fixed-length big-endian scalars,
// ECDSA public keys are uncompressed points, and HPKE keys are the RFC 9180
// SerializePrivateKey / SerializePublicKey outputs (for X-Wing, the 32-byte
// seed and the 1216-byte encapsulation key).
package suite

import (
	"crypto"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"

	// Register the hash functions the suites use with crypto.Hash.
	_ "crypto/sha256"
	_ "crypto/sha512"
)

// ID is an MLS cipher suite code point (RFC 9420 §17.1).
type ID uint16

// Cipher suite code points. The names drop the "MLS_128_DHKEM" /
// "MLS_256_DHKEM" prefixes of RFC 9420 §17.1.
const (
	X25519_AES128GCM_SHA256_Ed25519        ID = 0x0001
	P256_AES128GCM_SHA256_P256             ID = 0x0002
	X25519_CHACHA20POLY1305_SHA256_Ed25519 ID = 0x0003
	X448_AES256GCM_SHA512_Ed448            ID = 0x0004
	P521_AES256GCM_SHA512_P521             ID = 0x0005
	X448_CHACHA20POLY1305_SHA512_Ed448     ID = 0x0006
	P384_AES256GCM_SHA384_P384             ID = 0x0007
	// XWING_CHACHA20POLY1305_SHA256_Ed25519 is
	// MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519, with the code point
	// OpenMLS uses (an expired individual draft that preceded
	// draft-ietf-mls-pq-ciphersuites; docs/spec/mls-profile.md): the
	// X-Wing hybrid KEM (ML-KEM-768 + X25519, HPKE KEM 0x647a), HKDF-SHA256,
	// ChaCha20-Poly1305 and Ed25519. It is Moat's default suite.
	XWING_CHACHA20POLY1305_SHA256_Ed25519 ID = 0x004D
)

// String returns the suite's RFC 9420 / draft name, or its code point.
func (id ID) String() string {
	switch id {
	case X25519_AES128GCM_SHA256_Ed25519:
		return "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519"
	case P256_AES128GCM_SHA256_P256:
		return "MLS_128_DHKEMP256_AES128GCM_SHA256_P256"
	case X25519_CHACHA20POLY1305_SHA256_Ed25519:
		return "MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519"
	case X448_AES256GCM_SHA512_Ed448:
		return "MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448"
	case P521_AES256GCM_SHA512_P521:
		return "MLS_256_DHKEMP521_AES256GCM_SHA512_P521"
	case X448_CHACHA20POLY1305_SHA512_Ed448:
		return "MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448"
	case P384_AES256GCM_SHA384_P384:
		return "MLS_256_DHKEMP384_AES256GCM_SHA384_P384"
	case XWING_CHACHA20POLY1305_SHA256_Ed25519:
		return "MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519"
	}
	return fmt.Sprintf("cipher suite 0x%04x", uint16(id))
}

// Supported lists every suite Get accepts, in code-point order.
var Supported = []ID{
	X25519_AES128GCM_SHA256_Ed25519,
	P256_AES128GCM_SHA256_P256,
	X25519_CHACHA20POLY1305_SHA256_Ed25519,
	X448_AES256GCM_SHA512_Ed448,
	P521_AES256GCM_SHA512_P521,
	X448_CHACHA20POLY1305_SHA512_Ed448,
	P384_AES256GCM_SHA384_P384,
	XWING_CHACHA20POLY1305_SHA256_Ed25519,
}

// Default is the suite Moat uses for new groups (docs/spec/mls-profile.md).
const Default = XWING_CHACHA20POLY1305_SHA256_Ed25519

// SignaturePrivateKey, SignaturePublicKey, HPKEPrivateKey and HPKEPublicKey
// hold the MLS serialisations of keys (see the package documentation).
type (
	SignaturePrivateKey []byte
	SignaturePublicKey  []byte
	HPKEPrivateKey      []byte
	HPKEPublicKey       []byte
)

// String redacts the key so it never reaches a log.
func (SignaturePrivateKey) String() string { return "SignaturePrivateKey(REDACTED)" }

// String redacts the key so it never reaches a log.
func (HPKEPrivateKey) String() string { return "HPKEPrivateKey(REDACTED)" }

// GoString redacts the key for %#v.
func (SignaturePrivateKey) GoString() string { return "SignaturePrivateKey(REDACTED)" }

// GoString redacts the key for %#v.
func (HPKEPrivateKey) GoString() string { return "HPKEPrivateKey(REDACTED)" }

// UnsupportedSuiteError is returned by Get for a code point this package does
// not implement. errors.Is(err, ErrUnsupportedSuite) holds for it.
type UnsupportedSuiteError struct{ ID ID }

func (e *UnsupportedSuiteError) Error() string {
	return fmt.Sprintf("mls/suite: unsupported cipher suite 0x%04x", uint16(e.ID))
}

// Is makes errors.Is(err, ErrUnsupportedSuite) true.
func (e *UnsupportedSuiteError) Is(target error) bool { return target == ErrUnsupportedSuite }

// Errors. Every decryption and verification failure is one sentinel so that
// callers cannot leak which step failed.
var (
	ErrUnsupportedSuite = errors.New("mls/suite: unsupported cipher suite")
	// ErrDecrypt is returned by Open, DecryptWithLabel and ExportReceive for
	// any failure to decrypt (bad key, tag, KEM output or lengths).
	ErrDecrypt = errors.New("mls/suite: decryption failed")
	// ErrVerify is returned by VerifyWithLabel for any invalid signature or
	// malformed public key.
	ErrVerify = errors.New("mls/suite: invalid signature")
	// ErrInvalidKey is returned when a private key does not parse.
	ErrInvalidKey = errors.New("mls/suite: invalid key")
	// ErrInvalidPublicKey is returned by EncryptWithLabel and ExportSend
	// when the HPKE public key does not parse.
	ErrInvalidPublicKey = errors.New("mls/suite: invalid HPKE public key")
	// ErrLength is returned for a KDF output length the suite cannot
	// produce, or a label or context too long to encode.
	ErrLength = errors.New("mls/suite: invalid length")
)

// Suite is one MLS cipher suite. A *Suite is immutable and safe for
// concurrent use.
type Suite struct {
	id   ID
	hash crypto.Hash
	aead aeadKind
	kem  kemImpl
	sig  signer
}

var suites = func() map[ID]*Suite {
	m := make(map[ID]*Suite, len(Supported))
	for _, id := range Supported {
		s, err := newSuite(id)
		if err != nil {
			panic(err) // a programming error in this file
		}
		m[id] = s
	}
	return m
}()

func newSuite(id ID) (*Suite, error) {
	switch id {
	case X25519_AES128GCM_SHA256_Ed25519:
		return &Suite{id, crypto.SHA256, aesGCM128, stdDHKEMX25519(aesGCM128), ed25519Signer{}}, nil
	case P256_AES128GCM_SHA256_P256:
		return &Suite{id, crypto.SHA256, aesGCM128, stdDHKEMP256(aesGCM128), ecdsaP256}, nil
	case X25519_CHACHA20POLY1305_SHA256_Ed25519:
		return &Suite{id, crypto.SHA256, chacha20Poly1305, stdDHKEMX25519(chacha20Poly1305), ed25519Signer{}}, nil
	case X448_AES256GCM_SHA512_Ed448:
		return &Suite{id, crypto.SHA512, aesGCM256, circlX448(aesGCM256), ed448Signer{}}, nil
	case P521_AES256GCM_SHA512_P521:
		return &Suite{id, crypto.SHA512, aesGCM256, stdDHKEMP521(aesGCM256), ecdsaP521}, nil
	case X448_CHACHA20POLY1305_SHA512_Ed448:
		return &Suite{id, crypto.SHA512, chacha20Poly1305, circlX448(chacha20Poly1305), ed448Signer{}}, nil
	case P384_AES256GCM_SHA384_P384:
		return &Suite{id, crypto.SHA384, aesGCM256, stdDHKEMP384(aesGCM256), ecdsaP384}, nil
	case XWING_CHACHA20POLY1305_SHA256_Ed25519:
		return &Suite{id, crypto.SHA256, chacha20Poly1305, newXWing(chacha20Poly1305), ed25519Signer{}}, nil
	}
	return nil, &UnsupportedSuiteError{id}
}

// Get returns the suite for id, or an *UnsupportedSuiteError.
func Get(id ID) (*Suite, error) {
	if s, ok := suites[id]; ok {
		return s, nil
	}
	return nil, &UnsupportedSuiteError{id}
}

// ID returns the suite's code point.
func (s *Suite) ID() ID { return s.id }

// Nh is the output size of the suite's hash and KDF.Extract (KDF.Nh).
func (s *Suite) Nh() int { return s.hash.Size() }

// Nk is the AEAD key size (AEAD.Nk).
func (s *Suite) Nk() int { return s.aead.keySize() }

// Nn is the AEAD nonce size (AEAD.Nn).
func (s *Suite) Nn() int { return s.aead.nonceSize() }

func (s *Suite) newHash() hash.Hash { return s.hash.New() }

// Hash returns the suite hash of data.
func (s *Suite) Hash(data []byte) []byte {
	h := s.hash.New()
	h.Write(data)
	return h.Sum(nil)
}

// MAC returns HMAC with the suite hash (RFC 9420 §5.1: the MAC algorithm is
// HMAC with the KDF's hash).
func (s *Suite) MAC(key, data []byte) []byte {
	m := hmac.New(s.newHash, key)
	m.Write(data)
	return m.Sum(nil)
}

// VerifyMAC reports in constant time whether mac is MAC(key, data).
func (s *Suite) VerifyMAC(key, data, mac []byte) bool {
	return hmac.Equal(s.MAC(key, data), mac)
}

// Extract is KDF.Extract(salt, ikm) (HKDF-Extract with the suite hash).
func (s *Suite) Extract(salt, ikm []byte) []byte {
	prk, err := hkdf.Extract(s.newHash, ikm, salt)
	if err != nil {
		// hkdf.Extract only fails in FIPS-only mode for short keys.
		panic("mls/suite: HKDF-Extract: " + err.Error())
	}
	return prk
}

// Expand is KDF.Expand(prk, info, length) (HKDF-Expand with the suite
// hash). length must be at most 255*Nh.
func (s *Suite) Expand(prk, info []byte, length int) ([]byte, error) {
	if length < 0 || length > 255*s.Nh() {
		return nil, ErrLength
	}
	return hkdf.Expand(s.newHash, prk, string(info), length)
}

// ExpandWithLabel is RFC 9420 §8 ExpandWithLabel: KDF.Expand(secret,
// KDFLabel{length, "MLS 1.0 " + label, context}, length).
func (s *Suite) ExpandWithLabel(secret []byte, label string, context []byte, length int) ([]byte, error) {
	if length < 0 || length > 0xffff {
		return nil, ErrLength
	}
	info, err := kdfLabel(uint16(length), label, context)
	if err != nil {
		return nil, err
	}
	return s.Expand(secret, info, length)
}

// DeriveSecret is RFC 9420 §8 DeriveSecret: ExpandWithLabel(secret, label,
// "", Nh).
func (s *Suite) DeriveSecret(secret []byte, label string) ([]byte, error) {
	return s.ExpandWithLabel(secret, label, nil, s.Nh())
}

// DeriveTreeSecret is RFC 9420 §9.1 DeriveTreeSecret: ExpandWithLabel with
// the generation as a big-endian uint32 context.
func (s *Suite) DeriveTreeSecret(secret []byte, label string, generation uint32, length int) ([]byte, error) {
	ctx := [4]byte{byte(generation >> 24), byte(generation >> 16), byte(generation >> 8), byte(generation)}
	return s.ExpandWithLabel(secret, label, ctx[:], length)
}

// RefHash is RFC 9420 §5.2 RefHash: Hash(RefHashInput{label, value}). Unlike
// the other labelled functions, the label is used as given (callers pass
// "MLS 1.0 KeyPackage Reference" and so on).
func (s *Suite) RefHash(label string, value []byte) []byte {
	h := s.hash.New()
	writeVarBytes(h, []byte(label))
	writeVarBytes(h, value)
	return h.Sum(nil)
}

// Equal reports in constant time whether two secrets are equal. Lengths are
// not secret.
func Equal(a, b []byte) bool {
	return subtle.ConstantTimeCompare(a, b) == 1
}

// Zero overwrites b with zeros. It is best effort: Go may have copied the
// bytes elsewhere (stack growth, garbage collection), and the primitives
// underneath keep their own copies.
func Zero(b []byte) {
	clear(b)
}
