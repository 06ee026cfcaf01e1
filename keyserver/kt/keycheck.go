package kt

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/vmap"
)

// Keys received elsewhere (docs/spec/directory.md §Keys received
// elsewhere): a device identity in a prekey bundle or an initial message
// the relay delivers, or an MLS signature key in a credential, is used
// only if a verified lookup of its user lists it in a usable certificate
// (T26); otherwise the client alerts, with the evidence.

// ErrKeyNotInDirectory is matched (with errors.Is) by every
// *KeyNotInDirectoryError: a key received outside the key directory is not
// a usable key of its user there (T26). The key MUST NOT be used, and the
// error SHOULD be shown to the user and reported.
var ErrKeyNotInDirectory = errors.New("kt: key not in the key directory")

// KeyRole says which of a device's certified keys a check was about.
type KeyRole uint8

// Key roles.
const (
	// KeyIdentity is a device identity: its identity signing key and
	// identity DH key together (IKsig, IKdh; docs/spec/keys.md §Device
	// identity).
	KeyIdentity KeyRole = iota + 1
	// KeyMLSSignature is the MLS signature key of a device's credential.
	KeyMLSSignature
)

func (r KeyRole) String() string {
	switch r {
	case KeyIdentity:
		return "device identity"
	case KeyMLSSignature:
		return "MLS signature key"
	}
	return fmt.Sprintf("KeyRole(%d)", uint8(r))
}

// IdentityFingerprint returns the fingerprint of a device identity:
// SHA-256 of the tagged encodings of its signing key and its DH key
// (docs/spec/directory.md §Keys received elsewhere).
func IdentityFingerprint(id keys.DeviceIdentity) [32]byte {
	h := sha256.New()
	h.Write(id.Signing.Bytes())
	h.Write(id.DH.Bytes())
	return [32]byte(h.Sum(nil))
}

// MLSKeyFingerprint returns the fingerprint of an MLS signature key:
// SHA-256 of its scheme (uint16) and the raw key.
func MLSKeyFingerprint(k *org.MLSSignatureKey) [32]byte {
	h := sha256.New()
	h.Write(binary.BigEndian.AppendUint16(nil, k.Scheme()))
	h.Write(k.Raw())
	return [32]byte(h.Sum(nil))
}

// Reasons of a *KeyNotInDirectoryError.
const (
	// KeyNoDevice: no certificate of the user's value has the key (and,
	// if a device was named, the user has no such device).
	KeyNoDevice = "no device of the user has this key"
	// KeyOtherKeys: the device named is the user's, with other keys.
	KeyOtherKeys = "the device is certified with other keys"
	// KeyUnusable: the key is certified, but its certificate is expired,
	// not yet valid or revoked (Unusable says which).
	KeyUnusable = "the key's certificate is not usable"
)

// KeyNotInDirectoryError is the evidence of a key that a verified lookup
// does not list (T26): what the key was presented as, its fingerprint,
// and the lookup it was checked against. It matches ErrKeyNotInDirectory,
// and unwraps to Unusable when there is one, so that errors.Is finds
// org.ErrRevoked, org.ErrExpired or org.ErrNotYetValid.
type KeyNotInDirectoryError struct {
	Role        KeyRole
	Fingerprint [32]byte
	Tenant      org.TenantID
	User        org.UserID
	// Device is the device the key was presented for; zero if none was
	// named.
	Device org.DeviceID
	// Label, Epoch and Version identify the verified lookup: the user's
	// label, the epoch it was proven at and the label's version.
	Label   vmap.Label
	Epoch   uint64
	Version uint32
	// Reason is one of KeyNoDevice, KeyOtherKeys, KeyUnusable.
	Reason string
	// Unusable is the certificate error, for KeyUnusable.
	Unusable *org.CertificateError
}

func (e *KeyNotInDirectoryError) Error() string {
	s := fmt.Sprintf("kt: %v %x of user %s (device %s) not in the key directory at epoch %d (version %d): %s",
		e.Role, e.Fingerprint[:8], e.User, e.Device, e.Epoch, e.Version, e.Reason)
	if e.Unusable != nil {
		s += ": " + e.Unusable.Error()
	}
	return s
}

// Is makes errors.Is(err, ErrKeyNotInDirectory) true.
func (e *KeyNotInDirectoryError) Is(target error) bool { return target == ErrKeyNotInDirectory }

// Unwrap returns the certificate error, if any.
func (e *KeyNotInDirectoryError) Unwrap() error {
	if e.Unusable == nil {
		return nil
	}
	return e.Unusable
}

// CheckIdentity checks a device identity received outside the directory
// (a prekey bundle's or an initial message's IKsig and IKdh,
// docs/spec/pqxdh.md §Bundle checks and §Responder) against the verified
// lookup r of the user it claims to be: it returns the usable certificate
// that certifies exactly id, for device if device is not zero, or for any
// device of the user otherwise. Anything else is a
// *KeyNotInDirectoryError.
func (r *LookupResult) CheckIdentity(device org.DeviceID, id keys.DeviceIdentity) (*org.DeviceCertificate, error) {
	if id.Signing == nil || id.DH == nil {
		return nil, fmt.Errorf("kt: key check: no identity: %w", org.ErrInvalidArgument)
	}
	return r.checkKey(KeyIdentity, IdentityFingerprint(id), device, func(c *org.DeviceCertificate) bool {
		return c.Identity.Equal(id)
	})
}

// CheckMLSKey checks an MLS signature key received outside the directory
// (in a member's credential) against the verified lookup r of the user it
// claims to be, as CheckIdentity does.
func (r *LookupResult) CheckMLSKey(device org.DeviceID, key *org.MLSSignatureKey) (*org.DeviceCertificate, error) {
	if key == nil {
		return nil, fmt.Errorf("kt: key check: no MLS key: %w", org.ErrInvalidArgument)
	}
	return r.checkKey(KeyMLSSignature, MLSKeyFingerprint(key), device, func(c *org.DeviceCertificate) bool {
		return c.MLSKey.Equal(key)
	})
}

// checkKey applies §Keys received elsewhere to the key with fingerprint
// fp, which match recognises in a certificate.
func (r *LookupResult) checkKey(role KeyRole, fp [32]byte, device org.DeviceID, match func(*org.DeviceCertificate) bool) (*org.DeviceCertificate, error) {
	if r == nil || r.Value == nil || r.Record == nil {
		return nil, fmt.Errorf("kt: key check: no verified lookup: %w", org.ErrInvalidArgument)
	}
	fail := func(reason string, ce *org.CertificateError) error {
		return &KeyNotInDirectoryError{
			Role: role, Fingerprint: fp, Tenant: r.Value.Tenant, User: r.Value.User, Device: device,
			Label: r.Label, Epoch: r.Epoch, Version: r.Record.Version, Reason: reason, Unusable: ce,
		}
	}
	named := func(c *org.DeviceCertificate) bool { return device.IsZero() || c.Device == device }
	for _, c := range r.Devices {
		if named(c) && match(c) {
			return c, nil
		}
	}
	// Not usable: say why, from the whole value.
	known := false
	for _, c := range r.Value.Certificates {
		if !named(c) {
			continue
		}
		known = true
		if !match(c) {
			continue
		}
		for _, ce := range r.Unusable {
			if ce.Device == c.Device && ce.Serial == c.Serial {
				return nil, fail(KeyUnusable, ce)
			}
		}
	}
	if known && !device.IsZero() {
		return nil, fail(KeyOtherKeys, nil)
	}
	return nil, fail(KeyNoDevice, nil)
}
