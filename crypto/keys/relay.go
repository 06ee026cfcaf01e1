package keys

import (
	"crypto/ed25519"
	"crypto/subtle"
	"io"
)

// RelaySigningPublicKey is a relay's Ed25519 signing key (docs/spec/keys.md
// §Relay signing key). The relay signs mailbox heads with it
// (docs/spec/relay-storage.md §Signed head); devices learn it from their
// organisation, never from the relay.
type RelaySigningPublicKey struct {
	_ noCompare
	k ed25519.PublicKey
}

// RelaySigningPrivateKey is the private half of RelaySigningPublicKey.
type RelaySigningPrivateKey struct {
	_ noCompare
	secret
	k   *ed25519.PrivateKey // a pointer: see the note on secret in encoding.go
	pub RelaySigningPublicKey
}

// GenerateRelaySigningKey returns a new key from 32 bytes of rand.
func GenerateRelaySigningKey(rand io.Reader) (*RelaySigningPrivateKey, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := io.ReadFull(rand, seed); err != nil {
		return nil, err
	}
	return NewRelaySigningKeyFromSeed(seed)
}

// NewRelaySigningKeyFromSeed returns the key of an RFC 8032 seed.
func NewRelaySigningKeyFromSeed(seed []byte) (*RelaySigningPrivateKey, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, ErrMalformed
	}
	k := ed25519.NewKeyFromSeed(seed)
	return &RelaySigningPrivateKey{k: &k, pub: RelaySigningPublicKey{k: k.Public().(ed25519.PublicKey)}}, nil
}

// Public returns the public half.
func (k *RelaySigningPrivateKey) Public() *RelaySigningPublicKey { return &k.pub }

// Seed returns the RFC 8032 seed, for a key file or an encrypted store.
// Callers must not log it.
func (k *RelaySigningPrivateKey) Seed() []byte { return k.k.Seed() }

// Sign returns an Ed25519 signature of msg. Callers domain-separate msg
// with a context of their own (a mailbox head starts with
// "moat/v1/relay/mailbox-head"). The error is always nil; it is there so
// that the key is a signer of the relay's stores.
func (k *RelaySigningPrivateKey) Sign(msg []byte) ([]byte, error) {
	return ed25519.Sign(*k.k, msg), nil
}

// Equal reports in constant time whether k and o are the same key.
func (k *RelaySigningPrivateKey) Equal(o *RelaySigningPrivateKey) bool {
	return subtle.ConstantTimeCompare(*k.k, *o.k) == 1
}

// Verify checks sig over msg under the rule of docs/spec/keys.md §Ed25519
// verification.
func (k *RelaySigningPublicKey) Verify(msg, sig []byte) error {
	if len(sig) != ed25519.SignatureSize || !ed25519.Verify(k.k, msg, sig) {
		return ErrBadSignature
	}
	return nil
}

// Raw returns the 32-byte RFC 8032 encoding.
func (k *RelaySigningPublicKey) Raw() []byte { return append([]byte(nil), k.k...) }

// Bytes returns the tagged binary encoding.
func (k *RelaySigningPublicKey) Bytes() []byte { return encodeBinary(TagRelaySigning, k.k) }

// String returns the text encoding.
func (k *RelaySigningPublicKey) String() string { return encodeText(TagRelaySigning, k.k) }

// Equal reports whether k and o are the same key.
func (k *RelaySigningPublicKey) Equal(o *RelaySigningPublicKey) bool {
	return subtle.ConstantTimeCompare(k.k, o.k) == 1
}

// ParseRelaySigningPublicKey parses the tagged binary encoding.
func ParseRelaySigningPublicKey(b []byte) (*RelaySigningPublicKey, error) {
	raw, err := decodeBinary(TagRelaySigning, b, ed25519.PublicKeySize)
	if err != nil {
		return nil, err
	}
	return NewRelaySigningPublicKey(raw)
}

// ParseRelaySigningPublicKeyText parses the text encoding.
func ParseRelaySigningPublicKeyText(s string) (*RelaySigningPublicKey, error) {
	raw, err := decodeText(TagRelaySigning, s, ed25519.PublicKeySize)
	if err != nil {
		return nil, err
	}
	return NewRelaySigningPublicKey(raw)
}

// NewRelaySigningPublicKey checks a raw 32-byte Ed25519 public key as
// docs/spec/keys.md §Ed25519 keys requires.
func NewRelaySigningPublicKey(raw []byte) (*RelaySigningPublicKey, error) {
	if err := checkEd25519Point(raw); err != nil {
		return nil, err
	}
	return &RelaySigningPublicKey{k: append(ed25519.PublicKey(nil), raw...)}, nil
}
