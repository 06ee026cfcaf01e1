package org

import (
	"crypto/sha256"
	"crypto/subtle"

	"github.com/moat-im/moat/crypto/keys"
	"golang.org/x/crypto/cryptobyte"
)

// MLS signature schemes (RFC 9420 §17.1, the TLS SignatureScheme registry)
// that a certificate may carry (docs/spec/org.md §MLS signature keys). Only
// Ed25519 is defined for now; a post-quantum scheme will add a value here.
const (
	MLSSchemeEd25519 uint16 = 0x0807
)

// MLSSignatureKey is a device's MLS signature public key (the
// signature_key of its MLS LeafNodes), tagged with its MLS signature
// scheme. It is a type of its own, distinct from the device identity keys.
type MLSSignatureKey struct {
	_      [0]func()
	scheme uint16
	raw    []byte
}

// NewMLSSignatureKey checks raw as a public key of scheme: for Ed25519, 32
// bytes, a canonical point not of small order (docs/spec/keys.md §Ed25519
// keys).
func NewMLSSignatureKey(scheme uint16, raw []byte) (*MLSSignatureKey, error) {
	switch scheme {
	case MLSSchemeEd25519:
		if err := checkEd25519(raw); err != nil {
			return nil, err
		}
	default:
		return nil, ErrMalformed
	}
	return &MLSSignatureKey{scheme: scheme, raw: clone(raw)}, nil
}

// Scheme returns the MLS SignatureScheme value.
func (k *MLSSignatureKey) Scheme() uint16 { return k.scheme }

// Raw returns the raw public key, as MLS carries it in signature_key.
func (k *MLSSignatureKey) Raw() []byte { return clone(k.raw) }

// Equal reports whether k and o are the same key of the same scheme.
func (k *MLSSignatureKey) Equal(o *MLSSignatureKey) bool {
	return k.scheme == o.scheme && subtle.ConstantTimeCompare(k.raw, o.raw) == 1
}

//	struct {
//	    uint16 scheme;                  /* MLS SignatureScheme */
//	    opaque public_key<1..2^16-1>;
//	} MLSSignatureKey;

func addMLSKey(b *cryptobyte.Builder, k *MLSSignatureKey) {
	if k == nil {
		b.SetError(errEncode)
		return
	}
	b.AddUint16(k.scheme)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(k.raw) })
}

func readMLSKey(s *cryptobyte.String) (*MLSSignatureKey, error) {
	var scheme uint16
	var raw cryptobyte.String
	if !s.ReadUint16(&scheme) || !s.ReadUint16LengthPrefixed(&raw) {
		return nil, ErrMalformed
	}
	return NewMLSSignatureKey(scheme, raw)
}

// checkEd25519 applies docs/spec/keys.md §Ed25519 keys to a raw key:
// 32 bytes, a point, canonical, not of small order. The rule is the one
// keys applies to identity signing keys, so it is checked by keys.
func checkEd25519(raw []byte) error {
	switch _, err := keys.NewIdentitySigningPublicKey(raw); err {
	case nil:
		return nil
	case keys.ErrNonCanonical, keys.ErrLowOrder:
		return &KeyError{err}
	default:
		return ErrMalformed
	}
}

func sha256Sum(parts ...[]byte) [32]byte {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}
