package tlog

import (
	"bytes"
	"crypto/ed25519"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"filippo.io/edwards25519"
	"github.com/moat-im/moat/internal/pqc"
)

// Witness keys (docs/spec/tlog.md §Witness keys). A witness key is a
// cosigner name and a public key of one cosignature type; its text encoding
// is the C2SP signed-note verifier key (vkey):
//
//	<name>+hex(key ID)+base64(signature type || public key)

// CosignatureType is a C2SP tlog-cosignature type: its signature type byte.
type CosignatureType byte

const (
	// CosignatureEd25519 is the timestamped Ed25519 cosignature/v1, type 0x04.
	CosignatureEd25519 CosignatureType = 0x04
	// CosignatureMLDSA44 is the timestamped ML-DSA-44 subtree/v1
	// cosignature, type 0x06.
	CosignatureMLDSA44 CosignatureType = 0x06
)

func (t CosignatureType) String() string {
	switch t {
	case CosignatureEd25519:
		return "Ed25519 cosignature/v1"
	case CosignatureMLDSA44:
		return "ML-DSA-44 subtree/v1 cosignature"
	}
	return fmt.Sprintf("CosignatureType(%#02x)", byte(t))
}

func (t CosignatureType) publicKeySize() int {
	switch t {
	case CosignatureEd25519:
		return ed25519.PublicKeySize
	case CosignatureMLDSA44:
		return pqc.MLDSA44PublicKeySize
	}
	return -1
}

func (t CosignatureType) signatureSize() int {
	switch t {
	case CosignatureEd25519:
		return ed25519.SignatureSize
	case CosignatureMLDSA44:
		return pqc.MLDSA44SignatureSize
	}
	return -1
}

// MaxWitnessNameSize is the longest cosigner name, in bytes: the ML-DSA-44
// cosigned message encodes it with a one-byte length.
const MaxWitnessNameSize = 255

// WitnessSeedSize is the size of a witness private key's seed, for both
// types: the Ed25519 seed or the ML-DSA-44 seed ξ.
const WitnessSeedSize = 32

// WitnessPublicKey is a witness's cosigning public key. Values are not
// comparable with ==; use Equal.
type WitnessPublicKey struct {
	_    [0]func()
	name string
	typ  CosignatureType
	ed   ed25519.PublicKey
	pq   *pqc.MLDSA44PublicKey
	id   uint32
	raw  []byte // type || public key
}

func checkWitnessName(name string) error {
	if len(name) > MaxWitnessNameSize || !validKeyName(name) {
		return fmt.Errorf("%w: invalid witness name", ErrMalformed)
	}
	return nil
}

// NewWitnessPublicKey returns the witness key of the given name, type and
// raw public key (32 bytes for Ed25519, 1312 for ML-DSA-44).
func NewWitnessPublicKey(name string, typ CosignatureType, pub []byte) (*WitnessPublicKey, error) {
	if err := checkWitnessName(name); err != nil {
		return nil, err
	}
	if typ.publicKeySize() < 0 {
		return nil, fmt.Errorf("%w: unknown cosignature type %#02x", ErrMalformed, byte(typ))
	}
	if len(pub) != typ.publicKeySize() {
		return nil, fmt.Errorf("%w: %v public key of %d bytes", ErrMalformed, typ, len(pub))
	}
	k := &WitnessPublicKey{name: name, typ: typ, raw: append([]byte{byte(typ)}, pub...)}
	switch typ {
	case CosignatureEd25519:
		if _, err := new(edwards25519.Point).SetBytes(pub); err != nil {
			return nil, fmt.Errorf("%w: Ed25519 public key is not a point", ErrMalformed)
		}
		k.ed = bytes.Clone(pub)
	case CosignatureMLDSA44:
		pq, err := pqc.ParseMLDSA44PublicKey(pub)
		if errors.Is(err, pqc.ErrNonCanonical) {
			return nil, fmt.Errorf("%w: non-canonical ML-DSA-44 public key", ErrMalformed)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: ML-DSA-44 public key", ErrMalformed)
		}
		k.pq = pq
	}
	k.id = keyID(name, string(k.raw[:1]), pub)
	return k, nil
}

// ParseWitnessPublicKey parses a vkey. It is strict: a valid key name, a
// lowercase 8-digit hex key ID equal to the computed one, canonical padded
// base64, a known cosignature type and a valid public key.
func ParseWitnessPublicKey(vkey string) (*WitnessPublicKey, error) {
	name, rest, ok1 := strings.Cut(vkey, "+")
	id16, key64, ok2 := strings.Cut(rest, "+")
	if !ok1 || !ok2 || len(id16) != 8 || strings.ToLower(id16) != id16 {
		return nil, fmt.Errorf("%w: vkey", ErrMalformed)
	}
	idb, err := hex.DecodeString(id16)
	if err != nil {
		return nil, fmt.Errorf("%w: vkey key ID", ErrMalformed)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(key64)
	if err != nil || len(raw) < 1 || base64.StdEncoding.EncodeToString(raw) != key64 {
		return nil, fmt.Errorf("%w: vkey key", ErrMalformed)
	}
	k, err := NewWitnessPublicKey(name, CosignatureType(raw[0]), raw[1:])
	if err != nil {
		return nil, err
	}
	if k.id != uint32(idb[0])<<24|uint32(idb[1])<<16|uint32(idb[2])<<8|uint32(idb[3]) {
		return nil, fmt.Errorf("%w: vkey key ID does not match the key", ErrMalformed)
	}
	return k, nil
}

// String returns the vkey.
func (k *WitnessPublicKey) String() string {
	return fmt.Sprintf("%s+%08x+%s", k.name, k.id, base64.StdEncoding.EncodeToString(k.raw))
}

// Name returns the cosigner name.
func (k *WitnessPublicKey) Name() string { return k.name }

// Type returns the cosignature type.
func (k *WitnessPublicKey) Type() CosignatureType { return k.typ }

// KeyID returns the signed-note key ID.
func (k *WitnessPublicKey) KeyID() uint32 { return k.id }

// Bytes returns the raw public key, without the type byte.
func (k *WitnessPublicKey) Bytes() []byte { return bytes.Clone(k.raw[1:]) }

// Equal reports whether k and o are the same name, type and key.
func (k *WitnessPublicKey) Equal(o *WitnessPublicKey) bool {
	return k.name == o.name && bytes.Equal(k.raw, o.raw)
}

// WitnessPrivateKey is a witness's cosigning key. It prints without its
// secret. Values are not comparable with ==.
type WitnessPrivateKey struct {
	_    [0]func()
	seed *[WitnessSeedSize]byte
	ed   ed25519.PrivateKey
	pq   *pqc.MLDSA44PrivateKey
	pub  WitnessPublicKey
}

// GenerateWitnessKey returns a new witness key.
func GenerateWitnessKey(rand io.Reader, name string, typ CosignatureType) (*WitnessPrivateKey, error) {
	seed := make([]byte, WitnessSeedSize)
	if _, err := io.ReadFull(rand, seed); err != nil {
		return nil, err
	}
	return NewWitnessPrivateKey(name, typ, seed)
}

// NewWitnessPrivateKey derives a witness key from its 32-byte seed.
func NewWitnessPrivateKey(name string, typ CosignatureType, seed []byte) (*WitnessPrivateKey, error) {
	if len(seed) != WitnessSeedSize {
		return nil, fmt.Errorf("%w: witness seed of %d bytes", ErrMalformed, len(seed))
	}
	k := &WitnessPrivateKey{seed: (*[WitnessSeedSize]byte)(bytes.Clone(seed))}
	var pub []byte
	switch typ {
	case CosignatureEd25519:
		k.ed = ed25519.NewKeyFromSeed(seed)
		pub = k.ed.Public().(ed25519.PublicKey)
	case CosignatureMLDSA44:
		var pk *pqc.MLDSA44PublicKey
		pk, k.pq = pqc.NewMLDSA44Key(k.seed)
		pub = pk.Bytes()
	default:
		return nil, fmt.Errorf("%w: unknown cosignature type %#02x", ErrMalformed, byte(typ))
	}
	p, err := NewWitnessPublicKey(name, typ, pub)
	if err != nil {
		return nil, err
	}
	k.pub = *p
	return k, nil
}

// Public returns the public half.
func (k *WitnessPrivateKey) Public() *WitnessPublicKey { return &k.pub }

// Seed returns a copy of the private seed, for an encrypted store. Callers
// must not log it.
func (k *WitnessPrivateKey) Seed() []byte { return bytes.Clone(k.seed[:]) }

// Equal reports, in constant time for the seed, whether k and o are the
// same key.
func (k *WitnessPrivateKey) Equal(o *WitnessPrivateKey) bool {
	return k.pub.name == o.pub.name && k.pub.typ == o.pub.typ &&
		subtle.ConstantTimeCompare(k.seed[:], o.seed[:]) == 1
}

// String and GoString omit the secret.
func (k *WitnessPrivateKey) String() string {
	return "tlog.WitnessPrivateKey(" + k.pub.String() + ")"
}

// GoString omits the secret.
func (k *WitnessPrivateKey) GoString() string { return k.String() }
