package org

import (
	"crypto/ed25519"
	"crypto/subtle"
	"fmt"
	"io"

	"github.com/moat-im/moat/internal/pqc"
	"golang.org/x/crypto/cryptobyte"
)

// AdminScheme is the signature scheme of an admin key (docs/spec/org.md
// §Admin keys).
type AdminScheme uint8

const (
	// AdminEd25519 is a plain Ed25519 key.
	AdminEd25519 AdminScheme = 0x01
	// AdminHybrid is an Ed25519 key and an ML-DSA-65 key that both sign.
	AdminHybrid AdminScheme = 0x02
)

// AdminKey is an admin's public key in the tenant's roster. Admins sign
// dual-control approvals with it; it is distinct from the org CA key and
// from any device key.
type AdminKey struct {
	_      [0]func()
	id     AdminID
	scheme AdminScheme
	raw    []byte
	ed     ed25519.PublicKey
	pq     *pqc.MLDSA65PublicKey
}

// NewAdminKey checks raw as a public key of scheme for admin id: 32 bytes
// for AdminEd25519, 32 + 1952 for AdminHybrid (Ed25519 then ML-DSA-65), the
// Ed25519 part canonical and not of small order.
func NewAdminKey(id AdminID, scheme AdminScheme, raw []byte) (*AdminKey, error) {
	if id.IsZero() {
		return nil, ErrMalformed
	}
	k := &AdminKey{id: id, scheme: scheme, raw: clone(raw)}
	switch scheme {
	case AdminEd25519:
		if err := checkEd25519(raw); err != nil {
			return nil, err
		}
		k.ed = ed25519.PublicKey(clone(raw))
	case AdminHybrid:
		var err error
		if k.ed, k.pq, err = parseHybridPublic(raw); err != nil {
			return nil, err
		}
	default:
		return nil, ErrMalformed
	}
	return k, nil
}

// ID returns the admin's identifier.
func (k *AdminKey) ID() AdminID { return k.id }

// Scheme returns the key's scheme.
func (k *AdminKey) Scheme() AdminScheme { return k.scheme }

// Raw returns the raw public key.
func (k *AdminKey) Raw() []byte { return clone(k.raw) }

// Equal reports whether k and o are the same admin with the same key.
func (k *AdminKey) Equal(o *AdminKey) bool {
	return k.id == o.id && k.scheme == o.scheme && subtle.ConstantTimeCompare(k.raw, o.raw) == 1
}

// Verify checks an admin signature over msg (§Admin keys): Ed25519 over msg
// for AdminEd25519; for AdminHybrid, Ed25519 then ML-DSA-65 (empty context),
// both over "moat/v1/org/admin-hybrid-signature" || 0x00 || msg, both
// required.
func (k *AdminKey) Verify(msg, sig []byte) error {
	switch k.scheme {
	case AdminEd25519:
		if len(sig) != ed25519.SignatureSize || !ed25519.Verify(k.ed, msg, sig) {
			return ErrBadSignature
		}
		return nil
	case AdminHybrid:
		if !verifyHybrid(k.ed, k.pq, labelled(labelHybridAdmin, msg), sig) {
			return ErrBadSignature
		}
		return nil
	}
	return ErrBadSignature
}

//	enum { ed25519(0x01), hybrid(0x02), (255) } AdminScheme;
//	struct {
//	    opaque id[16];
//	    AdminScheme scheme;
//	    opaque public_key<1..2^16-1>;
//	} AdminKey;

func addAdminKey(b *cryptobyte.Builder, k *AdminKey) {
	if k == nil {
		b.SetError(errEncode)
		return
	}
	addID(b, k.id[:])
	b.AddUint8(uint8(k.scheme))
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(k.raw) })
}

func readAdminKey(s *cryptobyte.String) (*AdminKey, error) {
	var id AdminID
	var scheme uint8
	var raw cryptobyte.String
	if !readID(s, (*[16]byte)(&id)) || !s.ReadUint8(&scheme) || !s.ReadUint16LengthPrefixed(&raw) {
		return nil, ErrMalformed
	}
	return NewAdminKey(id, AdminScheme(scheme), raw)
}

// AdminPrivateKey is an admin's signing key. Admin tools hold it; the
// directory service never does.
type AdminPrivateKey struct {
	_    [0]func()
	ed   *ed25519.PrivateKey
	pq   *pqc.MLDSA65PrivateKey
	pub  *AdminKey
	seed *[]byte
}

// Format prints nothing secret, whatever the verb.
func (k *AdminPrivateKey) Format(f fmt.State, _ rune) {
	_, _ = f.Write([]byte("[secret key redacted]"))
}

// GenerateAdminKey returns a new admin key of scheme for id, with seeds
// read from rand (32 bytes for Ed25519, 64 for hybrid).
func GenerateAdminKey(rand io.Reader, id AdminID, scheme AdminScheme) (*AdminPrivateKey, error) {
	n := ed25519.SeedSize
	if scheme == AdminHybrid {
		n += pqc.MLDSASeedSize
	}
	seed := make([]byte, n)
	if _, err := io.ReadFull(rand, seed); err != nil {
		return nil, err
	}
	return NewAdminPrivateKey(id, scheme, seed)
}

// NewAdminPrivateKey derives an admin key from its seed: the Ed25519 seed,
// followed for AdminHybrid by the ML-DSA-65 seed ξ.
func NewAdminPrivateKey(id AdminID, scheme AdminScheme, seed []byte) (*AdminPrivateKey, error) {
	var want int
	switch scheme {
	case AdminEd25519:
		want = ed25519.SeedSize
	case AdminHybrid:
		want = ed25519.SeedSize + pqc.MLDSASeedSize
	default:
		return nil, ErrInvalidArgument
	}
	if len(seed) != want {
		return nil, ErrInvalidArgument
	}
	ed := ed25519.NewKeyFromSeed(seed[:ed25519.SeedSize])
	k := &AdminPrivateKey{ed: &ed}
	raw := clone(ed.Public().(ed25519.PublicKey))
	if scheme == AdminHybrid {
		var xi [pqc.MLDSASeedSize]byte
		copy(xi[:], seed[ed25519.SeedSize:])
		pqPub, pq := pqc.NewMLDSA65Key(&xi)
		k.pq = pq
		raw = append(raw, pqPub.Bytes()...)
	}
	pub, err := NewAdminKey(id, scheme, raw)
	if err != nil {
		return nil, err
	}
	k.pub = pub
	s := clone(seed)
	k.seed = &s
	return k, nil
}

// Public returns the public key.
func (k *AdminPrivateKey) Public() *AdminKey { return k.pub }

// Seed returns the private seed, for an encrypted store. Callers must not
// log it.
func (k *AdminPrivateKey) Seed() []byte { return clone(*k.seed) }

// Sign signs msg as AdminKey.Verify expects. ML-DSA signing is hedged.
func (k *AdminPrivateKey) Sign(msg []byte) ([]byte, error) {
	if k.pub.scheme == AdminEd25519 {
		return ed25519.Sign(*k.ed, msg), nil
	}
	return signHybrid(*k.ed, k.pq, labelled(labelHybridAdmin, msg))
}
