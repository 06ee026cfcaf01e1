package keys

import (
	"encoding/binary"
	"errors"
	"io"
	"time"

	"github.com/moat-im/moat/crypto/internal/label"
)

// ErrUnsignedPrekey is returned for a prekey whose identity signature does
// not verify. PQXDH treats it exactly as a missing prekey: an error, never a
// fallback (docs/spec/pqxdh.md §Bundle checks).
var ErrUnsignedPrekey = errors.New("keys: prekey signature does not verify")

// SignedPrekey is a rotating X25519 prekey signed by the device identity key,
// with the time it was made (docs/spec/keys.md §Signed prekeys). The org CA
// does not certify it, so the CA can stay offline.
type SignedPrekey struct {
	ID        uint32
	Created   time.Time // whole seconds, UTC
	Key       *SignedPrekeyPublicKey
	Signature []byte // Ed25519 over SignedPrekeySigningMessage
}

// SignedPrekeySigningMessage is the message the identity key signs:
//
//	"moat/v1/signed-prekey" || 0x00 || uint32 id || uint64 created || tagged key
func SignedPrekeySigningMessage(id uint32, created time.Time, k *SignedPrekeyPublicKey) []byte {
	m := make([]byte, 0, len(label.SignedPrekey)+1+4+8+1+x25519Len)
	m = append(m, label.SignedPrekey...)
	m = append(m, 0)
	m = binary.BigEndian.AppendUint32(m, id)
	m = binary.BigEndian.AppendUint64(m, uint64(created.Unix()))
	return append(m, k.Bytes()...)
}

// SignSignedPrekey certifies k under the identity signing key.
func SignSignedPrekey(id uint32, created time.Time, k *SignedPrekeyPublicKey, by *IdentitySigningPrivateKey) *SignedPrekey {
	created = time.Unix(created.Unix(), 0).UTC()
	return &SignedPrekey{ID: id, Created: created, Key: k, Signature: by.Sign(SignedPrekeySigningMessage(id, created, k))}
}

// Verify checks the signature under the device's identity signing key.
func (p *SignedPrekey) Verify(by *IdentitySigningPublicKey) error {
	if p == nil || p.Key == nil || by.Verify(SignedPrekeySigningMessage(p.ID, p.Created, p.Key), p.Signature) != nil {
		return ErrUnsignedPrekey
	}
	return nil
}

// KEMPrekey is an ML-KEM-768 prekey signed by the device identity key
// (docs/spec/keys.md §KEM prekeys). A device publishes many one-time KEM
// prekeys and one last-resort KEM prekey, flagged, which is reused until
// replaced.
type KEMPrekey struct {
	ID         uint32
	Created    time.Time // whole seconds, UTC
	LastResort bool
	Key        *KEMPrekeyPublicKey
	Signature  []byte // Ed25519 over KEMPrekeySigningMessage
}

// KEMPrekeySigningMessage is the message the identity key signs:
//
//	"moat/v1/kem-prekey" || 0x00 || uint32 id || uint64 created ||
//	uint8 last_resort || tagged key
func KEMPrekeySigningMessage(id uint32, created time.Time, lastResort bool, k *KEMPrekeyPublicKey) []byte {
	m := make([]byte, 0, len(label.KEMPrekey)+1+4+8+1+1+KEMPublicKeySize)
	m = append(m, label.KEMPrekey...)
	m = append(m, 0)
	m = binary.BigEndian.AppendUint32(m, id)
	m = binary.BigEndian.AppendUint64(m, uint64(created.Unix()))
	if lastResort {
		m = append(m, 1)
	} else {
		m = append(m, 0)
	}
	return append(m, k.Bytes()...)
}

// SignKEMPrekey certifies k under the identity signing key.
func SignKEMPrekey(id uint32, created time.Time, lastResort bool, k *KEMPrekeyPublicKey, by *IdentitySigningPrivateKey) *KEMPrekey {
	created = time.Unix(created.Unix(), 0).UTC()
	return &KEMPrekey{ID: id, Created: created, LastResort: lastResort, Key: k,
		Signature: by.Sign(KEMPrekeySigningMessage(id, created, lastResort, k))}
}

// Verify checks the signature under the device's identity signing key.
func (p *KEMPrekey) Verify(by *IdentitySigningPublicKey) error {
	if p == nil || p.Key == nil || by.Verify(KEMPrekeySigningMessage(p.ID, p.Created, p.LastResort, p.Key), p.Signature) != nil {
		return ErrUnsignedPrekey
	}
	return nil
}

// DeviceIdentity is a device's identity: an Ed25519 signing key and an
// X25519 DH key, both certified by the org CA. Moat deliberately differs
// from Signal's single XEdDSA identity key (docs/spec/keys.md §Device
// identity gives the reasons).
type DeviceIdentity struct {
	_       noCompare
	Signing *IdentitySigningPublicKey
	DH      *IdentityDHPublicKey
}

// DeviceIdentityPrivate is the private half of a DeviceIdentity.
type DeviceIdentityPrivate struct {
	_       noCompare
	Signing *IdentitySigningPrivateKey
	DH      *IdentityDHPrivateKey
}

// GenerateDeviceIdentity returns a new identity with keys read from rand.
func GenerateDeviceIdentity(rand io.Reader) (*DeviceIdentityPrivate, error) {
	s, err := GenerateIdentitySigningKey(rand)
	if err != nil {
		return nil, err
	}
	d, err := GenerateIdentityDHKey(rand)
	if err != nil {
		return nil, err
	}
	return &DeviceIdentityPrivate{Signing: s, DH: d}, nil
}

// Public returns the public identity.
func (d *DeviceIdentityPrivate) Public() DeviceIdentity {
	return DeviceIdentity{Signing: d.Signing.Public(), DH: d.DH.Public()}
}

// Equal reports whether d and o are the same identity.
func (d DeviceIdentity) Equal(o DeviceIdentity) bool {
	return d.Signing.Equal(o.Signing) && d.DH.Equal(o.DH)
}

// SignedOneTimePrekey is a one-time X25519 prekey signed by the device
// identity key, as the relay stores and serves it (docs/spec/keys.md
// §One-time prekeys), so that a relay cannot substitute a key of its own.
type SignedOneTimePrekey struct {
	ID        uint32
	Key       *OneTimePrekeyPublicKey
	Signature []byte // Ed25519 over OneTimePrekeySigningMessage
}

// OneTimePrekeySigningMessage is the message the identity key signs:
//
//	"moat/v1/one-time-prekey" || 0x00 || uint32 id || tagged key
func OneTimePrekeySigningMessage(id uint32, k *OneTimePrekeyPublicKey) []byte {
	m := make([]byte, 0, len(label.OneTimePrekey)+1+4+1+x25519Len)
	m = append(m, label.OneTimePrekey...)
	m = append(m, 0)
	m = binary.BigEndian.AppendUint32(m, id)
	return append(m, k.Bytes()...)
}

// SignOneTimePrekey certifies k under the identity signing key.
func SignOneTimePrekey(id uint32, k *OneTimePrekeyPublicKey, by *IdentitySigningPrivateKey) *SignedOneTimePrekey {
	return &SignedOneTimePrekey{ID: id, Key: k, Signature: by.Sign(OneTimePrekeySigningMessage(id, k))}
}

// Verify checks the signature under the device's identity signing key.
func (p *SignedOneTimePrekey) Verify(by *IdentitySigningPublicKey) error {
	if p == nil || p.Key == nil || by.Verify(OneTimePrekeySigningMessage(p.ID, p.Key), p.Signature) != nil {
		return ErrUnsignedPrekey
	}
	return nil
}
