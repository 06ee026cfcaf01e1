package keys

import (
	"crypto/ed25519"
	"crypto/subtle"
	"io"

	"github.com/moat-im/moat/crypto/internal/edpoint"
)

// IdentitySigningPublicKey is a device's Ed25519 identity signing key, one
// half of its identity, certified by the org CA (docs/spec/keys.md §Device
// identity).
type IdentitySigningPublicKey struct {
	_ noCompare
	k ed25519.PublicKey
}

// IdentitySigningPrivateKey is the private half of IdentitySigningPublicKey.
type IdentitySigningPrivateKey struct {
	_ noCompare
	secret
	k   *ed25519.PrivateKey // a pointer: see the note on secret in encoding.go
	pub IdentitySigningPublicKey
}

// GenerateIdentitySigningKey returns a new key from 32 bytes of rand.
func GenerateIdentitySigningKey(rand io.Reader) (*IdentitySigningPrivateKey, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := io.ReadFull(rand, seed); err != nil {
		return nil, err
	}
	return NewIdentitySigningKeyFromSeed(seed)
}

// NewIdentitySigningKeyFromSeed returns the key of an RFC 8032 seed.
func NewIdentitySigningKeyFromSeed(seed []byte) (*IdentitySigningPrivateKey, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, ErrMalformed
	}
	k := ed25519.NewKeyFromSeed(seed)
	return &IdentitySigningPrivateKey{k: &k, pub: IdentitySigningPublicKey{k: k.Public().(ed25519.PublicKey)}}, nil
}

// Public returns the public half.
func (k *IdentitySigningPrivateKey) Public() *IdentitySigningPublicKey { return &k.pub }

// Seed returns the RFC 8032 seed, for serialising the key into an encrypted
// store. Callers must not log it.
func (k *IdentitySigningPrivateKey) Seed() []byte { return k.k.Seed() }

// Sign returns an Ed25519 signature of msg. Callers domain-separate msg with
// a label from crypto/internal/label.
func (k *IdentitySigningPrivateKey) Sign(msg []byte) []byte { return ed25519.Sign(*k.k, msg) }

// Equal reports in constant time whether k and o are the same key.
func (k *IdentitySigningPrivateKey) Equal(o *IdentitySigningPrivateKey) bool {
	return subtle.ConstantTimeCompare(*k.k, *o.k) == 1
}

// Verify checks sig over msg under the rule of docs/spec/keys.md §Ed25519
// verification: Go crypto/ed25519 semantics (cofactorless equation, S < L
// required, R compared by its encoding, so non-canonical R fails), with the
// key itself already checked canonical and not of small order at parse time.
func (k *IdentitySigningPublicKey) Verify(msg, sig []byte) error {
	if len(sig) != ed25519.SignatureSize || !ed25519.Verify(k.k, msg, sig) {
		return ErrBadSignature
	}
	return nil
}

// Raw returns the 32-byte RFC 8032 encoding.
func (k *IdentitySigningPublicKey) Raw() []byte { return append([]byte(nil), k.k...) }

// Bytes returns the tagged binary encoding.
func (k *IdentitySigningPublicKey) Bytes() []byte { return encodeBinary(TagIdentitySigning, k.k) }

// String returns the text encoding.
func (k *IdentitySigningPublicKey) String() string { return encodeText(TagIdentitySigning, k.k) }

// Equal reports whether k and o are the same key.
func (k *IdentitySigningPublicKey) Equal(o *IdentitySigningPublicKey) bool {
	return subtle.ConstantTimeCompare(k.k, o.k) == 1
}

// ParseIdentitySigningPublicKey parses the tagged binary encoding.
func ParseIdentitySigningPublicKey(b []byte) (*IdentitySigningPublicKey, error) {
	raw, err := decodeBinary(TagIdentitySigning, b, ed25519.PublicKeySize)
	if err != nil {
		return nil, err
	}
	return NewIdentitySigningPublicKey(raw)
}

// ParseIdentitySigningPublicKeyText parses the text encoding.
func ParseIdentitySigningPublicKeyText(s string) (*IdentitySigningPublicKey, error) {
	raw, err := decodeText(TagIdentitySigning, s, ed25519.PublicKeySize)
	if err != nil {
		return nil, err
	}
	return NewIdentitySigningPublicKey(raw)
}

// NewIdentitySigningPublicKey checks a raw 32-byte Ed25519 public key: it
// must be the canonical encoding of a point that is not of small order
// (docs/spec/keys.md §Ed25519 keys).
func NewIdentitySigningPublicKey(raw []byte) (*IdentitySigningPublicKey, error) {
	if err := checkEd25519Point(raw); err != nil {
		return nil, err
	}
	return &IdentitySigningPublicKey{k: append(ed25519.PublicKey(nil), raw...)}, nil
}

// checkEd25519Point rejects non-canonical encodings and points of small
// order (including the identity).
func checkEd25519Point(raw []byte) error {
	if len(raw) != ed25519.PublicKeySize {
		return ErrMalformed
	}
	p, err := edpoint.Decode(raw)
	switch err {
	case nil:
	case edpoint.ErrNonCanonical:
		return ErrNonCanonical
	default:
		return ErrMalformed
	}
	if edpoint.SmallOrder(p) {
		return ErrLowOrder
	}
	return nil
}
