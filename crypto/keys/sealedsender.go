package keys

import (
	"crypto/hpke"
	"crypto/subtle"
	"encoding/binary"
	"io"
	"time"

	"github.com/moat-im/moat/crypto/internal/label"
)

// Sealed-sender keys (docs/spec/keys.md §Sealed-sender keys): the X-Wing
// (ML-KEM-768 + X25519) key pair to which senders seal envelopes
// (docs/spec/envelope.md). The implementation is the standard library's
// crypto/hpke MLKEM768X25519, whose public key is the ML-KEM-768
// encapsulation key followed by the X25519 public key, and whose private
// key is a 32-byte seed.

const (
	// SealedSenderPublicKeySize is the size of a raw X-Wing public key.
	SealedSenderPublicKeySize = KEMPublicKeySize + x25519Len
	// SealedSenderSeedSize is the size of an X-Wing private key seed.
	SealedSenderSeedSize = 32
)

// xwing is the HPKE KEM of the sealed-sender role (HPKE KEM id 0x647a).
var xwing = hpke.MLKEM768X25519()

// SealedSenderPublicKey is a device's X-Wing sealed-sender key, signed by
// its identity signing key (SealedSenderKey).
type SealedSenderPublicKey struct {
	_   noCompare
	k   hpke.PublicKey
	raw []byte
}

// SealedSenderPrivateKey is the private half of SealedSenderPublicKey.
type SealedSenderPrivateKey struct {
	_ noCompare
	secret
	k    hpke.PrivateKey
	seed *[SealedSenderSeedSize]byte // a pointer: see the note on secret in encoding.go
	pub  SealedSenderPublicKey
}

// GenerateSealedSenderKey returns a new key pair whose 32-byte seed is read
// from rand.
func GenerateSealedSenderKey(rand io.Reader) (*SealedSenderPrivateKey, error) {
	seed := make([]byte, SealedSenderSeedSize)
	if _, err := io.ReadFull(rand, seed); err != nil {
		return nil, err
	}
	return NewSealedSenderPrivateKey(seed)
}

// NewSealedSenderPrivateKey derives the key pair of a 32-byte X-Wing seed.
func NewSealedSenderPrivateKey(seed []byte) (*SealedSenderPrivateKey, error) {
	if len(seed) != SealedSenderSeedSize {
		return nil, ErrMalformed
	}
	k, err := xwing.NewPrivateKey(seed)
	if err != nil {
		return nil, ErrMalformed
	}
	raw := k.PublicKey().Bytes()
	// The derived X25519 half is a clamped scalar times the base point, so
	// it always passes checkX25519; check anyway rather than assume.
	if err := checkX25519(raw[KEMPublicKeySize:]); err != nil {
		return nil, err
	}
	s := new([SealedSenderSeedSize]byte)
	copy(s[:], seed)
	return &SealedSenderPrivateKey{k: k, seed: s, pub: SealedSenderPublicKey{k: k.PublicKey(), raw: raw}}, nil
}

// NewSealedSenderPublicKey checks and imports a raw 1216-byte X-Wing public
// key: the ML-KEM-768 half must pass the FIPS 203 modulus check and the
// X25519 half the checks of docs/spec/keys.md §X25519 keys.
func NewSealedSenderPublicKey(raw []byte) (*SealedSenderPublicKey, error) {
	if len(raw) != SealedSenderPublicKeySize {
		return nil, ErrMalformed
	}
	if err := checkX25519(raw[KEMPublicKeySize:]); err != nil {
		return nil, err
	}
	k, err := xwing.NewPublicKey(raw)
	if err != nil {
		// The length is right and the X25519 half is checked: only the
		// ML-KEM modulus check is left to fail.
		return nil, ErrInvalidKEMKey
	}
	return &SealedSenderPublicKey{k: k, raw: append([]byte(nil), raw...)}, nil
}

// ParseSealedSenderPublicKey parses the tagged binary encoding.
func ParseSealedSenderPublicKey(b []byte) (*SealedSenderPublicKey, error) {
	raw, err := decodeBinary(TagSealedSender, b, SealedSenderPublicKeySize)
	if err != nil {
		return nil, err
	}
	return NewSealedSenderPublicKey(raw)
}

// ParseSealedSenderPublicKeyText parses the text encoding.
func ParseSealedSenderPublicKeyText(s string) (*SealedSenderPublicKey, error) {
	raw, err := decodeText(TagSealedSender, s, SealedSenderPublicKeySize)
	if err != nil {
		return nil, err
	}
	return NewSealedSenderPublicKey(raw)
}

// Public returns the public half.
func (k *SealedSenderPrivateKey) Public() *SealedSenderPublicKey { return &k.pub }

// Seed returns the 32-byte seed, for serialising into an encrypted store.
// Callers must not log it.
func (k *SealedSenderPrivateKey) Seed() []byte { return append([]byte(nil), k.seed[:]...) }

// Equal reports in constant time whether k and o are the same key.
func (k *SealedSenderPrivateKey) Equal(o *SealedSenderPrivateKey) bool {
	return subtle.ConstantTimeCompare(k.seed[:], o.seed[:]) == 1
}

// HPKE returns the key as a crypto/hpke private key, for
// docs/spec/envelope.md. Callers must not print or log it.
func (k *SealedSenderPrivateKey) HPKE() hpke.PrivateKey { return k.k }

// HPKE returns the key as a crypto/hpke public key.
func (k *SealedSenderPublicKey) HPKE() hpke.PublicKey { return k.k }

// Raw returns the 1216-byte X-Wing public key.
func (k *SealedSenderPublicKey) Raw() []byte { return append([]byte(nil), k.raw...) }

// Bytes returns the tagged binary encoding.
func (k *SealedSenderPublicKey) Bytes() []byte { return encodeBinary(TagSealedSender, k.raw) }

// String returns the text encoding.
func (k *SealedSenderPublicKey) String() string { return encodeText(TagSealedSender, k.raw) }

// Equal reports whether k and o are the same key.
func (k *SealedSenderPublicKey) Equal(o *SealedSenderPublicKey) bool {
	return subtle.ConstantTimeCompare(k.raw, o.raw) == 1
}

// SealedSenderKey is a sealed-sender public key signed by the device
// identity key, with an identifier and a validity period
// (docs/spec/keys.md §Sealed-sender keys). The relay serves it; a sender
// checks the signature under the device's KT-verified identity signing key.
type SealedSenderKey struct {
	ID        uint32
	Created   time.Time // whole seconds, UTC
	Expires   time.Time // whole seconds, UTC; exclusive
	Key       *SealedSenderPublicKey
	Signature []byte // Ed25519 over SealedSenderKeySigningMessage
}

// SealedSenderKeySigningMessage is the message the identity key signs:
//
//	"moat/v1/sealed-sender-key" || 0x00 || uint32 id || uint64 created ||
//	uint64 expires || tagged key
func SealedSenderKeySigningMessage(id uint32, created, expires time.Time, k *SealedSenderPublicKey) []byte {
	m := make([]byte, 0, len(label.SealedSenderKey)+1+4+8+8+1+SealedSenderPublicKeySize)
	m = append(m, label.SealedSenderKey...)
	m = append(m, 0)
	m = binary.BigEndian.AppendUint32(m, id)
	m = binary.BigEndian.AppendUint64(m, uint64(created.Unix()))
	m = binary.BigEndian.AppendUint64(m, uint64(expires.Unix()))
	return append(m, k.Bytes()...)
}

// SignSealedSenderKey certifies k under the identity signing key, valid
// from created until expires (exclusive), both truncated to whole seconds.
func SignSealedSenderKey(id uint32, created, expires time.Time, k *SealedSenderPublicKey, by *IdentitySigningPrivateKey) *SealedSenderKey {
	created = time.Unix(created.Unix(), 0).UTC()
	expires = time.Unix(expires.Unix(), 0).UTC()
	return &SealedSenderKey{ID: id, Created: created, Expires: expires, Key: k,
		Signature: by.Sign(SealedSenderKeySigningMessage(id, created, expires, k))}
}

// Verify checks the signature under the device's identity signing key. It
// does not check the validity period.
func (p *SealedSenderKey) Verify(by *IdentitySigningPublicKey) error {
	if p == nil || p.Key == nil || by.Verify(SealedSenderKeySigningMessage(p.ID, p.Created, p.Expires, p.Key), p.Signature) != nil {
		return ErrUnsignedPrekey
	}
	return nil
}
