package suite

import (
	"crypto/aes"
	"crypto/cipher"

	"golang.org/x/crypto/chacha20poly1305"
)

// aeadKind is the suite's AEAD (RFC 9420 §5.1, RFC 9180 §7.3 identifiers).
type aeadKind uint16

const (
	aesGCM128        aeadKind = 0x0001
	aesGCM256        aeadKind = 0x0002
	chacha20Poly1305 aeadKind = 0x0003
)

func (a aeadKind) keySize() int {
	switch a {
	case aesGCM128:
		return 16
	case aesGCM256, chacha20Poly1305:
		return 32
	}
	panic("mls/suite: unknown AEAD")
}

func (a aeadKind) nonceSize() int { return 12 }

func (a aeadKind) new(key []byte) (cipher.AEAD, error) {
	if len(key) != a.keySize() {
		return nil, ErrLength
	}
	switch a {
	case aesGCM128, aesGCM256:
		b, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		return cipher.NewGCM(b)
	case chacha20Poly1305:
		return chacha20poly1305.New(key)
	}
	panic("mls/suite: unknown AEAD")
}

// Seal encrypts plaintext with the suite AEAD. key must be Nk bytes and
// nonce Nn bytes (ErrLength otherwise). The result is ciphertext || tag in a
// fresh slice.
func (s *Suite) Seal(key, nonce, aad, plaintext []byte) ([]byte, error) {
	if len(nonce) != s.Nn() {
		return nil, ErrLength
	}
	a, err := s.aead.new(key)
	if err != nil {
		return nil, ErrLength
	}
	return a.Seal(make([]byte, 0, len(plaintext)+a.Overhead()), nonce, plaintext, aad), nil
}

// Open decrypts ciphertext with the suite AEAD. Every failure, including
// wrong key or nonce lengths, is ErrDecrypt.
func (s *Suite) Open(key, nonce, aad, ciphertext []byte) ([]byte, error) {
	if len(nonce) != s.Nn() {
		return nil, ErrDecrypt
	}
	a, err := s.aead.new(key)
	if err != nil {
		return nil, ErrDecrypt
	}
	pt, err := a.Open(nil, nonce, ciphertext, aad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}
