package bundle

import (
	"errors"
	"fmt"

	"github.com/moat-im/moat/crypto/internal/label"
	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/mls"
	"golang.org/x/crypto/cryptobyte"
)

// ErrKeyPackage is returned by ParseUpload, ParseKeyPackageItem and
// Upload.Verify for a KeyPackage that is not a well-formed, self-signed
// MLS KeyPackage (docs/spec/bundle.md §KeyPackages).
var ErrKeyPackage = errors.New("bundle: not a valid MLS KeyPackage")

// MaxKeyPackageSize bounds one KeyPackage (docs/spec/bundle.md
// §KeyPackages): 60 KiB, so that the relay's stored item, with its
// signature and framing, fits a prekey store record (64 KiB - 1).
const MaxKeyPackageSize = 60 << 10

// KeyPackageItem is an MLS KeyPackage as a device publishes it on the
// relay: the KeyPackage and the device identity signing key's signature
// over it (docs/spec/bundle.md §KeyPackages).
type KeyPackageItem struct {
	KeyPackage []byte // an MLS KeyPackage (RFC 9420 §10)
	Signature  []byte // Ed25519 over KeyPackageSigningMessage
}

// KeyPackageSigningMessage is the message the identity key signs:
//
//	"moat/v1/key-package" || 0x00 || key_package
func KeyPackageSigningMessage(kp []byte) []byte {
	m := make([]byte, 0, len(label.KeyPackage)+1+len(kp))
	m = append(m, label.KeyPackage...)
	m = append(m, 0)
	return append(m, kp...)
}

// SignKeyPackage certifies the encoded MLS KeyPackage kp under the
// identity signing key.
func SignKeyPackage(kp []byte, by *keys.IdentitySigningPrivateKey) *KeyPackageItem {
	return &KeyPackageItem{KeyPackage: clone(kp), Signature: by.Sign(KeyPackageSigningMessage(kp))}
}

// Verify checks the item's identity signature (keys.ErrUnsignedPrekey)
// and the KeyPackage's own MLS signature (ErrKeyPackage). It does not
// check the KeyPackage's credential against the key directory, its
// lifetime or its suite against a group: the MLS profile does (issue #6).
func (p *KeyPackageItem) Verify(by *keys.IdentitySigningPublicKey) error {
	if p == nil || by == nil || by.Verify(KeyPackageSigningMessage(p.KeyPackage), p.Signature) != nil {
		return keys.ErrUnsignedPrekey
	}
	kp, err := checkKeyPackage(p.KeyPackage)
	if err != nil {
		return err
	}
	if err := kp.VerifySignature(); err != nil {
		return fmt.Errorf("%w: %w", ErrKeyPackage, err)
	}
	return nil
}

// checkKeyPackage parses an MLS KeyPackage strictly and checks what needs
// no key: version mls10 and a LeafNode made for a KeyPackage.
func checkKeyPackage(b []byte) (*mls.KeyPackage, error) {
	if len(b) == 0 || len(b) > MaxKeyPackageSize {
		return nil, ErrKeyPackage
	}
	kp, err := mls.DecodeKeyPackage(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyPackage, err)
	}
	if kp.Version != mls.ProtocolVersionMLS10 || kp.LeafNode.Source != mls.LeafNodeSourceKeyPackage {
		return nil, ErrKeyPackage
	}
	return kp, nil
}

// Marshal returns the KeyPackageItem encoding.
func (p *KeyPackageItem) Marshal() ([]byte, error) {
	if p == nil || len(p.KeyPackage) == 0 || len(p.KeyPackage) > MaxKeyPackageSize || len(p.Signature) != sigSize {
		return nil, ErrMalformed
	}
	var b cryptobyte.Builder
	p.marshal(&b)
	return b.Bytes()
}

func (p *KeyPackageItem) marshal(b *cryptobyte.Builder) {
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(p.KeyPackage) })
	b.AddBytes(p.Signature)
}

// ParseKeyPackageItem parses a KeyPackageItem strictly, the KeyPackage
// included (ErrKeyPackage); it does not verify the signatures: Verify
// does. It does not retain data.
func ParseKeyPackageItem(data []byte) (*KeyPackageItem, error) {
	s := cryptobyte.String(data)
	p, err := readKeyPackageItem(&s)
	if err != nil {
		return nil, err
	}
	if !s.Empty() {
		return nil, ErrMalformed
	}
	return p, nil
}

func readKeyPackageItem(s *cryptobyte.String) (*KeyPackageItem, error) {
	var kp cryptobyte.String
	var sig []byte
	if !s.ReadUint16LengthPrefixed(&kp) || len(kp) == 0 || !s.ReadBytes(&sig, sigSize) {
		return nil, ErrMalformed
	}
	if _, err := checkKeyPackage(kp); err != nil {
		return nil, err
	}
	return &KeyPackageItem{KeyPackage: clone(kp), Signature: clone(sig)}, nil
}
