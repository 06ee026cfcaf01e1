// Package suite implements the cryptographic dependencies of MLS cipher
// suites as specified in RFC 9420 §5.1 and §5.2, on top of the standard
// library (and circl where the standard library has no primitive).
package suite

import (
	"errors"
	"io"
)

// ID is an MLS cipher suite code point (RFC 9420 §17.1).
type ID uint16

// Cipher suite code points.
const (
	X25519_AES128GCM_SHA256_Ed25519        ID = 0x0001
	P256_AES128GCM_SHA256_P256             ID = 0x0002
	X25519_CHACHA20POLY1305_SHA256_Ed25519 ID = 0x0003
	X448_AES256GCM_SHA512_Ed448            ID = 0x0004
	P521_AES256GCM_SHA512_P521             ID = 0x0005
	X448_CHACHA20POLY1305_SHA512_Ed448     ID = 0x0006
	P384_AES256GCM_SHA384_P384             ID = 0x0007
	// XWING_CHACHA20POLY1305_SHA256_Ed25519 is
	// MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519 from
	// draft-ietf-mls-pq-ciphersuites (the code point OpenMLS uses). It is
	// Moat's default suite.
	XWING_CHACHA20POLY1305_SHA256_Ed25519 ID = 0x004D
)

// SignaturePrivateKey and the other key types hold the MLS serialisations
// of keys (crypto/mls/testdata/FORMAT.md "Representation").
type (
	SignaturePrivateKey []byte
	SignaturePublicKey  []byte
	HPKEPrivateKey      []byte
	HPKEPublicKey       []byte
)

// ErrUnsupportedSuite is returned by Get for a code point this package does
// not implement.
var ErrUnsupportedSuite = errors.New("mls/suite: unsupported cipher suite")

// Suite is one MLS cipher suite.
type Suite struct {
	id ID
}

// Get returns the suite for id.
func Get(id ID) (*Suite, error) { return nil, ErrUnsupportedSuite }

func (s *Suite) ID() ID   { return s.id }
func (s *Suite) Nh() int  { return 0 }
func (s *Suite) Nk() int  { return 0 }
func (s *Suite) Nn() int  { return 0 }
func (s *Suite) Hash(data []byte) []byte { return nil }
func (s *Suite) MAC(key, data []byte) []byte { return nil }
func (s *Suite) Extract(salt, ikm []byte) []byte { return nil }
func (s *Suite) Expand(prk, info []byte, length int) ([]byte, error) { return nil, errStub }
func (s *Suite) ExpandWithLabel(secret []byte, label string, context []byte, length int) ([]byte, error) {
	return nil, errStub
}
func (s *Suite) DeriveSecret(secret []byte, label string) ([]byte, error) { return nil, errStub }
func (s *Suite) DeriveTreeSecret(secret []byte, label string, generation uint32, length int) ([]byte, error) {
	return nil, errStub
}
func (s *Suite) RefHash(label string, value []byte) []byte { return nil }
func (s *Suite) Seal(key, nonce, aad, plaintext []byte) ([]byte, error) { return nil, errStub }
func (s *Suite) Open(key, nonce, aad, ciphertext []byte) ([]byte, error) { return nil, errStub }
func (s *Suite) GenerateSignatureKey(rand io.Reader) (SignaturePrivateKey, SignaturePublicKey, error) {
	return nil, nil, errStub
}
func (s *Suite) SignWithLabel(priv SignaturePrivateKey, label string, content []byte) ([]byte, error) {
	return nil, errStub
}
func (s *Suite) VerifyWithLabel(pub SignaturePublicKey, label string, content, sig []byte) error {
	return errStub
}
func (s *Suite) GenerateHPKEKey() (HPKEPrivateKey, HPKEPublicKey, error) { return nil, nil, errStub }
func (s *Suite) DeriveKeyPair(ikm []byte) (HPKEPrivateKey, HPKEPublicKey, error) {
	return nil, nil, errStub
}
func (s *Suite) EncryptWithLabel(pub HPKEPublicKey, label string, context, plaintext []byte) (kemOutput, ciphertext []byte, err error) {
	return nil, nil, errStub
}
func (s *Suite) DecryptWithLabel(priv HPKEPrivateKey, label string, context, kemOutput, ciphertext []byte) ([]byte, error) {
	return nil, errStub
}
func (s *Suite) ExportSend(pub HPKEPublicKey, info []byte, exporterContext string, length int) (kemOutput, secret []byte, err error) {
	return nil, nil, errStub
}
func (s *Suite) ExportReceive(priv HPKEPrivateKey, kemOutput, info []byte, exporterContext string, length int) ([]byte, error) {
	return nil, errStub
}

var errStub = errors.New("mls/suite: not implemented yet")
