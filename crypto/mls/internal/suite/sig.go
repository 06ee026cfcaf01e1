package suite

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"io"

	"github.com/cloudflare/circl/sign/ed448"
)

// signer is one MLS signature scheme over raw keys (RFC 9420 §5.1.2:
// signatures encoded as in TLS 1.3, i.e. DER for ECDSA and R || S for
// EdDSA).
type signer interface {
	generate(rand io.Reader) (SignaturePrivateKey, SignaturePublicKey, error)
	sign(priv SignaturePrivateKey, msg []byte) ([]byte, error)
	verify(pub SignaturePublicKey, msg, sig []byte) bool
	public(priv SignaturePrivateKey) (SignaturePublicKey, error)
}

// GenerateSignatureKey returns a new signature key pair read from rand.
func (s *Suite) GenerateSignatureKey(rand io.Reader) (SignaturePrivateKey, SignaturePublicKey, error) {
	return s.sig.generate(rand)
}

// SignaturePublicKeyOf returns the public key for priv.
func (s *Suite) SignaturePublicKeyOf(priv SignaturePrivateKey) (SignaturePublicKey, error) {
	return s.sig.public(priv)
}

// SigningKey returns priv in the form that signs fastest, for a caller
// that signs many times with one key (a group member): for Ed25519 the
// 64-byte RFC 8032 expanded key (seed || public key), which SignWithLabel
// and SignaturePublicKeyOf also accept; for the other schemes priv
// unchanged. The result is a new slice; keep it to benefit from
// crypto/ed25519's per-key cache.
func (s *Suite) SigningKey(priv SignaturePrivateKey) (SignaturePrivateKey, error) {
	if e, ok := s.sig.(ed25519Signer); ok {
		return e.signingKey(priv)
	}
	if _, err := s.sig.public(priv); err != nil {
		return nil, err
	}
	return append(SignaturePrivateKey(nil), priv...), nil
}

// SignWithLabel is RFC 9420 §5.1.2 SignWithLabel: it signs
// SignContent{"MLS 1.0 " + label, content}.
func (s *Suite) SignWithLabel(priv SignaturePrivateKey, label string, content []byte) ([]byte, error) {
	msg, err := labelledContent(label, content)
	if err != nil {
		return nil, err
	}
	return s.sig.sign(priv, msg)
}

// VerifyWithLabel is RFC 9420 §5.1.2 VerifyWithLabel. Every failure,
// including a malformed public key, is ErrVerify.
func (s *Suite) VerifyWithLabel(pub SignaturePublicKey, label string, content, sig []byte) error {
	msg, err := labelledContent(label, content)
	if err != nil {
		return ErrVerify
	}
	if !s.sig.verify(pub, msg, sig) {
		return ErrVerify
	}
	return nil
}

type ed25519Signer struct{}

func (ed25519Signer) generate(r io.Reader) (SignaturePrivateKey, SignaturePublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(r)
	if err != nil {
		return nil, nil, err
	}
	return SignaturePrivateKey(priv.Seed()), SignaturePublicKey(pub), nil
}

func (ed25519Signer) sign(priv SignaturePrivateKey, msg []byte) ([]byte, error) {
	switch len(priv) {
	case ed25519.SeedSize:
		return ed25519.Sign(ed25519.NewKeyFromSeed(priv), msg), nil
	case ed25519.PrivateKeySize:
		// The expanded form SigningKey returns: crypto/ed25519 caches
		// the key schedule for a private key it has seen, so a caller
		// that keeps this slice pays one scalar multiplication per
		// signature instead of two.
		return ed25519.Sign(ed25519.PrivateKey(priv), msg), nil
	}
	return nil, ErrInvalidKey
}

func (ed25519Signer) verify(pub SignaturePublicKey, msg, sig []byte) bool {
	// ed25519.Verify panics on a wrong-length key.
	if len(pub) != ed25519.PublicKeySize {
		return false
	}
	return ed25519.Verify(ed25519.PublicKey(pub), msg, sig)
}

func (ed25519Signer) public(priv SignaturePrivateKey) (SignaturePublicKey, error) {
	switch len(priv) {
	case ed25519.SeedSize:
		return SignaturePublicKey(ed25519.NewKeyFromSeed(priv).Public().(ed25519.PublicKey)), nil
	case ed25519.PrivateKeySize:
		return SignaturePublicKey(append([]byte(nil), priv[ed25519.SeedSize:]...)), nil
	}
	return nil, ErrInvalidKey
}

// signingKey returns the RFC 8032 expanded form seed || public key.
func (ed25519Signer) signingKey(priv SignaturePrivateKey) (SignaturePrivateKey, error) {
	if len(priv) == ed25519.PrivateKeySize {
		return append(SignaturePrivateKey(nil), priv...), nil
	}
	if len(priv) != ed25519.SeedSize {
		return nil, ErrInvalidKey
	}
	return SignaturePrivateKey(ed25519.NewKeyFromSeed(priv)), nil
}

// ed448Signer is pure Ed448 with an empty context string (RFC 8032 §5.2),
// from circl: the standard library has no Ed448.
type ed448Signer struct{}

func (ed448Signer) generate(r io.Reader) (SignaturePrivateKey, SignaturePublicKey, error) {
	pub, priv, err := ed448.GenerateKey(r)
	if err != nil {
		return nil, nil, err
	}
	return SignaturePrivateKey(priv.Seed()), SignaturePublicKey(pub), nil
}

func (ed448Signer) sign(priv SignaturePrivateKey, msg []byte) ([]byte, error) {
	if len(priv) != ed448.SeedSize {
		return nil, ErrInvalidKey
	}
	return ed448.Sign(ed448.NewKeyFromSeed(priv), msg, ""), nil
}

func (ed448Signer) verify(pub SignaturePublicKey, msg, sig []byte) bool {
	if len(pub) != ed448.PublicKeySize || len(sig) != ed448.SignatureSize {
		return false
	}
	return ed448.Verify(ed448.PublicKey(pub), msg, sig, "")
}

func (ed448Signer) public(priv SignaturePrivateKey) (SignaturePublicKey, error) {
	if len(priv) != ed448.SeedSize {
		return nil, ErrInvalidKey
	}
	return SignaturePublicKey(ed448.NewKeyFromSeed(priv).Public().(ed448.PublicKey)), nil
}

// ecdsaSigner is ECDSA over a NIST curve with the suite hash, DER-encoded
// signatures, uncompressed-point public keys and big-endian scalar private
// keys.
type ecdsaSigner struct {
	curve elliptic.Curve
	hash  crypto.Hash
}

var (
	ecdsaP256 = ecdsaSigner{elliptic.P256(), crypto.SHA256}
	ecdsaP384 = ecdsaSigner{elliptic.P384(), crypto.SHA384}
	ecdsaP521 = ecdsaSigner{elliptic.P521(), crypto.SHA512}
)

func (e ecdsaSigner) generate(r io.Reader) (SignaturePrivateKey, SignaturePublicKey, error) {
	k, err := ecdsa.GenerateKey(e.curve, r)
	if err != nil {
		return nil, nil, err
	}
	priv, err := k.Bytes()
	if err != nil {
		return nil, nil, err
	}
	pub, err := k.PublicKey.Bytes()
	if err != nil {
		return nil, nil, err
	}
	return priv, pub, nil
}

func (e ecdsaSigner) digest(msg []byte) []byte {
	h := e.hash.New()
	h.Write(msg)
	return h.Sum(nil)
}

func (e ecdsaSigner) sign(priv SignaturePrivateKey, msg []byte) ([]byte, error) {
	k, err := ecdsa.ParseRawPrivateKey(e.curve, priv)
	if err != nil {
		return nil, ErrInvalidKey
	}
	return ecdsa.SignASN1(rand.Reader, k, e.digest(msg))
}

func (e ecdsaSigner) verify(pub SignaturePublicKey, msg, sig []byte) bool {
	k, err := ecdsa.ParseUncompressedPublicKey(e.curve, pub)
	if err != nil {
		return false
	}
	return ecdsa.VerifyASN1(k, e.digest(msg), sig)
}

func (e ecdsaSigner) public(priv SignaturePrivateKey) (SignaturePublicKey, error) {
	k, err := ecdsa.ParseRawPrivateKey(e.curve, priv)
	if err != nil {
		return nil, ErrInvalidKey
	}
	return k.PublicKey.Bytes()
}
