package keys

import (
	"bytes"
	"crypto/ecdh"
	"crypto/subtle"
	"encoding/hex"
	"io"
)

// X25519 keys (docs/spec/keys.md §X25519 keys). All Moat X25519 keys share
// one checked core, x25519Public / x25519Private, embedded in a distinct type
// per role.

const x25519Len = 32

// lowOrderX25519 lists the canonical encodings (u < p, top bit clear) of
// every point of order dividing 8 on Curve25519 and its twist: 0, 1, the two
// points of order 8, and p−1. Non-canonical encodings are rejected first.
var lowOrderX25519 = func() [][]byte {
	var out [][]byte
	for _, h := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	} {
		b, _ := hex.DecodeString(h)
		out = append(out, b)
	}
	return out
}()

// checkX25519 enforces the rules of docs/spec/keys.md §X25519 keys: exactly
// 32 bytes, the top bit clear, u < 2^255−19, and not a low-order point.
func checkX25519(raw []byte) error {
	if len(raw) != x25519Len {
		return ErrMalformed
	}
	if raw[31]&0x80 != 0 {
		return ErrNonCanonical
	}
	// u ≥ p = 2^255−19 iff the encoding is ed ff … ff 7f or larger.
	if raw[31] == 0x7f && raw[0] >= 0xed && allFF(raw[1:31]) {
		return ErrNonCanonical
	}
	for _, lo := range lowOrderX25519 {
		if bytes.Equal(raw, lo) {
			return ErrLowOrder
		}
	}
	return nil
}

func allFF(b []byte) bool {
	for _, c := range b {
		if c != 0xff {
			return false
		}
	}
	return true
}

// X25519PublicKey is implemented by every X25519 public key type, so that a
// private key of one role can agree with a public key of another, as PQXDH
// requires. It cannot be implemented outside this package.
type X25519PublicKey interface {
	x25519() *ecdh.PublicKey
	// Raw returns the 32-byte RFC 7748 encoding.
	Raw() []byte
}

type x25519Public struct {
	_ noCompare
	k *ecdh.PublicKey
}

func newX25519Public(raw []byte) (x25519Public, error) {
	if err := checkX25519(raw); err != nil {
		return x25519Public{}, err
	}
	k, err := ecdh.X25519().NewPublicKey(raw)
	if err != nil {
		return x25519Public{}, ErrMalformed
	}
	return x25519Public{k: k}, nil
}

func (p *x25519Public) x25519() *ecdh.PublicKey { return p.k }

// Raw returns the 32-byte RFC 7748 encoding.
func (p *x25519Public) Raw() []byte { return p.k.Bytes() }

// Equal reports whether p and o encode the same point.
func (p *x25519Public) equal(o *x25519Public) bool { return p.k.Equal(o.k) }

type x25519Private struct {
	_ noCompare
	secret
	k *ecdh.PrivateKey
}

func generateX25519(rand io.Reader) (x25519Private, error) {
	var seed [x25519Len]byte
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return x25519Private{}, err
	}
	return newX25519Private(seed[:])
}

func newX25519Private(raw []byte) (x25519Private, error) {
	if len(raw) != x25519Len {
		return x25519Private{}, ErrMalformed
	}
	k, err := ecdh.X25519().NewPrivateKey(raw)
	if err != nil {
		return x25519Private{}, ErrMalformed
	}
	return x25519Private{k: k}, nil
}

// DH returns the X25519 shared secret with pub. An all-zero result (which
// checked public keys cannot produce) is ErrLowOrder.
func (k *x25519Private) DH(pub X25519PublicKey) ([]byte, error) {
	ss, err := k.k.ECDH(pub.x25519())
	if err != nil {
		return nil, ErrLowOrder
	}
	return ss, nil
}

// Bytes returns the 32-byte private scalar, for serialising into an
// encrypted store. Callers must not log it.
func (k *x25519Private) Bytes() []byte { return k.k.Bytes() }

func (k *x25519Private) publicCore() x25519Public { return x25519Public{k: k.k.PublicKey()} }

// Equal reports in constant time whether k and o are the same key.
func (k *x25519Private) equal(o *x25519Private) bool {
	return subtle.ConstantTimeCompare(k.k.Bytes(), o.k.Bytes()) == 1
}
