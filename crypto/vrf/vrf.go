package vrf

import (
	"crypto/sha512"
	"crypto/subtle"
	"fmt"
	"io"

	"filippo.io/edwards25519"
)

// noCompare makes a struct type incomparable, so that keys cannot be
// compared with == (which would compare pointers, and not in constant time).
type noCompare [0]func()

// PrivateKey is an ECVRF secret key SK: a 32-byte RFC 8032 secret key (an
// Ed25519 seed), with the secret scalar x and the public key derived from it
// (RFC 9381, Section 5.5; RFC 8032, Section 5.1.5; docs/spec/vrf.md §Private
// keys).
//
// A PrivateKey is safe for concurrent use. It prints as "[secret key
// redacted]" with any fmt verb, and holds its secret material only behind
// pointers, so that it also stays unprinted as a field of another struct.
type PrivateKey struct {
	_ noCompare
	// sk is SK, kept for Seed and Equal.
	sk *[SeedSize]byte
	// x is the secret scalar: the clamped first half of SHA-512(SK),
	// reduced modulo q. Gamma = x*H and Y = x*B are unchanged by the
	// reduction, since H and B lie in the subgroup of order q.
	x *edwards25519.Scalar
	// truncatedHashedSK is the second half of SHA-512(SK), the nonce key
	// of ECVRF_nonce_generation_RFC8032 (RFC 9381, Section 5.4.2.2).
	truncatedHashedSK *[32]byte
	pub               PublicKey
}

// Format writes a fixed placeholder, never key material.
func (*PrivateKey) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte("[secret key redacted]")) }

// PublicKey is an ECVRF public key Y, held with its encoding PK_string. A
// PublicKey has passed ECVRF_validate_key; the zero value is not a valid key.
// A PublicKey is safe for concurrent use.
type PublicKey struct {
	_    noCompare
	y    *edwards25519.Point
	negY *edwards25519.Point
	// pkString is PK_string, also encode_to_curve_salt.
	pkString [PublicKeySize]byte
}

// GenerateKey returns a new private key from SeedSize bytes of rand.
func GenerateKey(rand io.Reader) (*PrivateKey, error) {
	var seed [SeedSize]byte
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, fmt.Errorf("vrf: generating key: %w", err)
	}
	sk, err := NewPrivateKey(seed[:])
	clear(seed[:]) // best effort
	return sk, err
}

// NewPrivateKey returns the private key whose SK is seed, a 32-byte RFC 8032
// secret key. The VRF public key of a seed equals its Ed25519 public key;
// the same seed MUST NOT also be used as an Ed25519 signing key (RFC 9381
// does not analyse that reuse).
func NewPrivateKey(seed []byte) (*PrivateKey, error) {
	if len(seed) != SeedSize {
		return nil, ErrMalformed
	}
	sk := &PrivateKey{
		sk:                new([SeedSize]byte),
		truncatedHashedSK: new([32]byte),
	}
	copy(sk.sk[:], seed)
	// RFC 8032, Section 5.1.5, steps 1–3: hash SK with SHA-512, prune the
	// first half to the secret scalar, keep the second half as the prefix.
	h := sha512.Sum512(seed)
	x, err := edwards25519.NewScalar().SetBytesWithClamping(h[:32])
	if err != nil {
		panic("vrf: internal error: " + err.Error())
	}
	sk.x = x
	copy(sk.truncatedHashedSK[:], h[32:])
	clear(h[:]) // best effort
	// Step 4: Y = x*B and PK_string = point_to_string(Y).
	y := new(edwards25519.Point).ScalarBaseMult(x)
	sk.pub = PublicKey{y: y, negY: new(edwards25519.Point).Negate(y)}
	copy(sk.pub.pkString[:], y.Bytes())
	return sk, nil
}

// Public returns the public key.
func (sk *PrivateKey) Public() *PublicKey { return &sk.pub }

// Seed returns SK, for storing the key in an encrypted store. Callers must
// not log it.
func (sk *PrivateKey) Seed() []byte { return append([]byte(nil), sk.sk[:]...) }

// Equal reports in constant time whether sk and o are the same key.
func (sk *PrivateKey) Equal(o *PrivateKey) bool {
	return subtle.ConstantTimeCompare(sk.sk[:], o.sk[:]) == 1
}

// NewPublicKey decodes PK_string, the 32-byte encoding of RFC 8032, Section
// 5.1.2, and validates it (docs/spec/vrf.md §Public keys): it returns an
// error satisfying both ErrInvalidKey and ErrMalformed for a wrong length,
// bytes that are not a point, or a point not in its canonical encoding, and
// ErrInvalidKey for one of the eight points of small order (RFC 9381,
// Section 5.4.5). These are steps 1–3 of ECVRF_verify with validate_key =
// TRUE, run once per key.
func NewPublicKey(pkString []byte) (*PublicKey, error) {
	y, ok := stringToPoint(pkString)
	if !ok {
		return nil, errMalformedKey
	}
	if !validateKey(y) {
		return nil, ErrInvalidKey
	}
	pk := &PublicKey{y: y, negY: new(edwards25519.Point).Negate(y)}
	copy(pk.pkString[:], pkString)
	return pk, nil
}

// Bytes returns PK_string, the 32-byte encoding of the key, or nil for the
// zero PublicKey.
func (pk *PublicKey) Bytes() []byte {
	if pk.y == nil {
		return nil
	}
	return append([]byte(nil), pk.pkString[:]...)
}

// Equal reports whether pk and o are the same key.
func (pk *PublicKey) Equal(o *PublicKey) bool {
	return pk.y != nil && o.y != nil && subtle.ConstantTimeCompare(pk.pkString[:], o.pkString[:]) == 1
}

// Prove returns pi_string, the ProofSize-byte proof of the VRF on alpha
// under sk: ECVRF_prove (RFC 9381, Section 5.1). The output beta is
// ProofToHash(pi). Prove runs in time independent of the secret scalar and
// the nonce; its time depends on alpha (Section 7.5).
//
// Prove panics if encode_to_curve finds no point in 256 attempts, which
// happens with probability about 2^-256.
func Prove(sk *PrivateKey, alpha []byte) []byte {
	// Step 1: x and Y were derived with the key.
	Y := sk.pub.pkString[:]
	// Step 2: encode_to_curve_salt = PK_string (Section 5.5).
	H, _, ok := encodeToCurveTryAndIncrement(Y, alpha)
	if !ok {
		panic("vrf: encode_to_curve found no point in 256 attempts")
	}
	// Step 3.
	hString := H.Bytes()
	// Step 4.
	gamma := new(edwards25519.Point).ScalarMult(sk.x, H)
	// Step 5.
	k := nonceGeneration(sk.truncatedHashedSK, hString)
	// Step 6.
	kB := new(edwards25519.Point).ScalarBaseMult(k)
	kH := new(edwards25519.Point).ScalarMult(k, H)
	gammaString := gamma.Bytes()
	cString := challengeGeneration(Y, hString, gammaString, kB.Bytes(), kH.Bytes())
	c := challengeToScalar(&cString)
	// Step 7: s = (k + c*x) mod q.
	s := edwards25519.NewScalar().MultiplyAdd(c, sk.x, k)
	k.Set(edwards25519.NewScalar()) // best effort
	// Steps 8–9.
	return encodeProof(gammaString, &cString, s)
}

// ProofToHash returns beta_string, the OutputSize-byte VRF output of a proof:
// ECVRF_proof_to_hash (RFC 9381, Section 5.2). It checks only that pi
// decodes, not that it verifies: run it only on proofs from Prove. To check
// a proof received from elsewhere, use Verify, which returns beta.
func ProofToHash(pi []byte) ([]byte, error) {
	// Steps 1–3.
	d, ok := decodeProof(pi)
	if !ok {
		return nil, errMalformedProof
	}
	// Steps 4–7.
	return proofToHash(d.gamma), nil
}

// Verify checks that pi is a valid proof for alpha under pk and returns
// beta_string, the VRF output: ECVRF_verify (RFC 9381, Section 5.3) with
// validate_key = TRUE. Any failure returns an error satisfying
// errors.Is(err, ErrInvalidProof), which also satisfies ErrMalformed if pi
// does not decode; a nil or zero pk gives ErrInvalidKey. Verify does not
// modify or retain its inputs.
func Verify(pk *PublicKey, alpha, pi []byte) ([]byte, error) {
	// Steps 1–3 ran in NewPublicKey.
	if pk == nil || pk.y == nil {
		return nil, ErrInvalidKey
	}
	// Steps 4–6.
	d, ok := decodeProof(pi)
	if !ok {
		return nil, errMalformedProof
	}
	// Step 7.
	H, _, ok := encodeToCurveTryAndIncrement(pk.pkString[:], alpha)
	if !ok {
		return nil, ErrInvalidProof
	}
	// Steps 8–9.
	U, V := verifierPoints(pk.negY, H, d)
	// Step 10.
	cPrime := challengeGeneration(pk.pkString[:], H.Bytes(), d.gammaString, U.Bytes(), V.Bytes())
	// Step 11.
	if subtle.ConstantTimeCompare(d.cString[:], cPrime[:]) != 1 {
		return nil, ErrInvalidProof
	}
	return proofToHash(d.gamma), nil
}
