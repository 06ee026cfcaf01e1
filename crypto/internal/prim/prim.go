// Package prim wraps the symmetric primitives Moat's protocols use, so that
// every protocol reaches them through one audited seam with uniform errors:
// ChaCha20-Poly1305 and AES-256-GCM (RFC 8439, NIST SP 800-38D) and
// HKDF-SHA-256 (RFC 5869). The wrappers are checked against Wycheproof.
//
// It implements no primitive: the AEADs come from golang.org/x/crypto and
// the standard library, HKDF from crypto/hkdf.
package prim

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"

	"golang.org/x/crypto/chacha20poly1305"
)

// ErrOpen is the one error every AEAD open failure returns, whatever the
// cause (tag, length, nonce), so that callers cannot leak which.
var ErrOpen = errors.New("prim: message authentication failed")

// ErrKeySize is returned for a key of the wrong length.
var ErrKeySize = errors.New("prim: wrong key size")

const (
	// KeySize is the key size of both AEADs.
	KeySize = 32
	// NonceSize is the nonce size of both AEADs.
	NonceSize = 12
	// Overhead is the tag size of both AEADs.
	Overhead = 16
)

// AEAD is an authenticated cipher with a fixed 32-byte key, 12-byte nonce
// and 16-byte tag.
type AEAD struct{ c cipher.AEAD }

// NewChaCha20Poly1305 returns ChaCha20-Poly1305 (RFC 8439) keyed with key.
func NewChaCha20Poly1305(key []byte) (AEAD, error) {
	if len(key) != KeySize {
		return AEAD{}, ErrKeySize
	}
	c, err := chacha20poly1305.New(key)
	if err != nil {
		return AEAD{}, ErrKeySize
	}
	return AEAD{c}, nil
}

// NewAES256GCM returns AES-256-GCM with a 12-byte nonce and 16-byte tag.
func NewAES256GCM(key []byte) (AEAD, error) {
	if len(key) != KeySize {
		return AEAD{}, ErrKeySize
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return AEAD{}, ErrKeySize
	}
	c, err := cipher.NewGCM(b)
	if err != nil {
		return AEAD{}, ErrKeySize
	}
	return AEAD{c}, nil
}

// Seal appends the encryption of plaintext to dst. It panics on a nonce of
// the wrong length, which is a programming error, never input.
func (a AEAD) Seal(dst, nonce, plaintext, ad []byte) []byte {
	return a.c.Seal(dst, nonce, plaintext, ad)
}

// Open appends the decryption of ciphertext to dst, or returns ErrOpen.
func (a AEAD) Open(dst, nonce, ciphertext, ad []byte) ([]byte, error) {
	if len(nonce) != NonceSize || len(ciphertext) < Overhead {
		return nil, ErrOpen
	}
	out, err := a.c.Open(dst, nonce, ciphertext, ad)
	if err != nil {
		return nil, ErrOpen
	}
	return out, nil
}

// HKDF returns length bytes of HKDF-SHA-256 (RFC 5869) of secret, salt and
// info. It fails only for a length over 255·32 bytes.
func HKDF(secret, salt []byte, info string, length int) ([]byte, error) {
	return hkdf.Key(sha256.New, secret, salt, info, length)
}
