package mls

import "github.com/moat-im/moat/crypto/mls/internal/suite"

// Cipher suites this package implements (RFC 9420 §17.1; the X-Wing suite
// with the code point OpenMLS uses, from the expired individual draft that
// preceded draft-ietf-mls-pq-ciphersuites: docs/spec/mls-profile.md).
// The names drop the "MLS_128_DHKEM" / "MLS_256_DHKEM" prefixes.
const (
	X25519_AES128GCM_SHA256_Ed25519        = CipherSuite(suite.X25519_AES128GCM_SHA256_Ed25519)
	P256_AES128GCM_SHA256_P256             = CipherSuite(suite.P256_AES128GCM_SHA256_P256)
	X25519_CHACHA20POLY1305_SHA256_Ed25519 = CipherSuite(suite.X25519_CHACHA20POLY1305_SHA256_Ed25519)
	X448_AES256GCM_SHA512_Ed448            = CipherSuite(suite.X448_AES256GCM_SHA512_Ed448)
	P521_AES256GCM_SHA512_P521             = CipherSuite(suite.P521_AES256GCM_SHA512_P521)
	X448_CHACHA20POLY1305_SHA512_Ed448     = CipherSuite(suite.X448_CHACHA20POLY1305_SHA512_Ed448)
	P384_AES256GCM_SHA384_P384             = CipherSuite(suite.P384_AES256GCM_SHA384_P384)
	// XWING_CHACHA20POLY1305_SHA256_Ed25519 is
	// MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519 (0x004D): X-Wing
	// (ML-KEM-768 + X25519), HKDF-SHA256, ChaCha20-Poly1305, Ed25519.
	XWING_CHACHA20POLY1305_SHA256_Ed25519 = CipherSuite(suite.XWING_CHACHA20POLY1305_SHA256_Ed25519)
)

// DefaultCipherSuite is the suite of new groups when the caller picks none
// (docs/spec/mls-profile.md "Default cipher suite"): the post-quantum
// hybrid XWING_CHACHA20POLY1305_SHA256_Ed25519. NewKeyPackage and
// GenerateSignatureKey use it for a zero CipherSuite (0x0000 is reserved,
// §17.1), and NewGroup takes its suite from the creator's KeyPackage.
const DefaultCipherSuite = CipherSuite(suite.Default)

// orDefault returns cs, or DefaultCipherSuite if cs is zero.
func (cs CipherSuite) orDefault() CipherSuite {
	if cs == 0 {
		return DefaultCipherSuite
	}
	return cs
}

// String returns the suite's name, or its code point.
func (cs CipherSuite) String() string { return suite.ID(cs).String() }
