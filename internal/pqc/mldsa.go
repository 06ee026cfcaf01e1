package pqc

import (
	"bytes"
	"crypto"
	"io"

	"github.com/cloudflare/circl/sign/mldsa/mldsa44"
	"github.com/cloudflare/circl/sign/mldsa/mldsa65"

	"github.com/moat-im/moat/internal/vecstate"
)

// ML-DSA sizes (FIPS 204 Table 2).
const (
	MLDSA44PublicKeySize = mldsa44.PublicKeySize
	MLDSA44SignatureSize = mldsa44.SignatureSize
	MLDSA65PublicKeySize = mldsa65.PublicKeySize
	MLDSA65SignatureSize = mldsa65.SignatureSize
	// MLDSASeedSize is the size of the seed ξ of ML-DSA.KeyGen_internal.
	MLDSASeedSize = mldsa65.SeedSize
)

// MLDSA44PublicKey is an ML-DSA-44 verification key.
type MLDSA44PublicKey struct{ k *mldsa44.PublicKey }

// MLDSA44PrivateKey is an ML-DSA-44 signing key.
type MLDSA44PrivateKey struct{ k *mldsa44.PrivateKey }

// NewMLDSA44Key derives the key pair of seed ξ (FIPS 204 ML-DSA.KeyGen_internal).
func NewMLDSA44Key(seed *[MLDSASeedSize]byte) (*MLDSA44PublicKey, *MLDSA44PrivateKey) {
	defer vecstate.Clean()
	pk, sk := mldsa44.NewKeyFromSeed(seed)
	return &MLDSA44PublicKey{pk}, &MLDSA44PrivateKey{sk}
}

// ParseMLDSA44PublicKey decodes a FIPS 204 pkEncode encoding, which must be
// canonical.
func ParseMLDSA44PublicKey(raw []byte) (*MLDSA44PublicKey, error) {
	defer vecstate.Clean()
	if len(raw) != MLDSA44PublicKeySize {
		return nil, ErrMalformed
	}
	pk := new(mldsa44.PublicKey)
	if pk.UnmarshalBinary(raw) != nil {
		return nil, ErrMalformed
	}
	if !bytes.Equal(pk.Bytes(), raw) {
		return nil, ErrNonCanonical
	}
	return &MLDSA44PublicKey{pk}, nil
}

// Bytes returns the FIPS 204 pkEncode encoding.
func (k *MLDSA44PublicKey) Bytes() []byte {
	defer vecstate.Clean()
	return k.k.Bytes()
}

// Verify reports whether sig is a valid signature of m under context ctx.
func (k *MLDSA44PublicKey) Verify(m, ctx, sig []byte) bool {
	defer vecstate.Clean()
	return len(sig) == MLDSA44SignatureSize && mldsa44.Verify(k.k, m, ctx, sig)
}

// SignTo writes a hedged (FIPS 204 §3.4) signature of m under context ctx
// into sig, which must be MLDSA44SignatureSize bytes.
func (k *MLDSA44PrivateKey) SignTo(m, ctx, sig []byte) error {
	defer vecstate.Clean()
	return mldsa44.SignTo(k.k, m, ctx, true, sig)
}

// MLDSA65PublicKey is an ML-DSA-65 verification key.
type MLDSA65PublicKey struct{ k *mldsa65.PublicKey }

// MLDSA65PrivateKey is an ML-DSA-65 signing key.
type MLDSA65PrivateKey struct{ k *mldsa65.PrivateKey }

// NewMLDSA65Key derives the key pair of seed ξ (FIPS 204 ML-DSA.KeyGen_internal).
func NewMLDSA65Key(seed *[MLDSASeedSize]byte) (*MLDSA65PublicKey, *MLDSA65PrivateKey) {
	defer vecstate.Clean()
	pk, sk := mldsa65.NewKeyFromSeed(seed)
	return &MLDSA65PublicKey{pk}, &MLDSA65PrivateKey{sk}
}

// ParseMLDSA65PublicKey decodes a FIPS 204 pkEncode encoding, which must be
// canonical.
func ParseMLDSA65PublicKey(raw []byte) (*MLDSA65PublicKey, error) {
	defer vecstate.Clean()
	if len(raw) != MLDSA65PublicKeySize {
		return nil, ErrMalformed
	}
	pk := new(mldsa65.PublicKey)
	if pk.UnmarshalBinary(raw) != nil {
		return nil, ErrMalformed
	}
	if !bytes.Equal(pk.Bytes(), raw) {
		return nil, ErrNonCanonical
	}
	return &MLDSA65PublicKey{pk}, nil
}

// Bytes returns the FIPS 204 pkEncode encoding.
func (k *MLDSA65PublicKey) Bytes() []byte {
	defer vecstate.Clean()
	return k.k.Bytes()
}

// Verify reports whether sig is a valid signature of m under context ctx.
func (k *MLDSA65PublicKey) Verify(m, ctx, sig []byte) bool {
	defer vecstate.Clean()
	return len(sig) == MLDSA65SignatureSize && mldsa65.Verify(k.k, m, ctx, sig)
}

// SignTo writes a hedged (FIPS 204 §3.4) signature of m under context ctx
// into sig, which must be MLDSA65SignatureSize bytes.
func (k *MLDSA65PrivateKey) SignTo(m, ctx, sig []byte) error {
	defer vecstate.Clean()
	return mldsa65.SignTo(k.k, m, ctx, true, sig)
}

// Bytes returns the FIPS 204 skEncode encoding, for tests. It is secret.
func (k *MLDSA65PrivateKey) Bytes() []byte {
	defer vecstate.Clean()
	return k.k.Bytes()
}

// Signer returns k as a crypto.Signer for formats that define their own
// signed message, such as a signed-note line. circl's Signer signs
// deterministically with an empty context and ignores its rand argument.
func (k *MLDSA65PrivateKey) Signer() crypto.Signer { return mldsa65Signer{k.k} }

type mldsa65Signer struct{ k *mldsa65.PrivateKey }

func (s mldsa65Signer) Public() crypto.PublicKey {
	defer vecstate.Clean()
	return s.k.Public()
}

func (s mldsa65Signer) Sign(rand io.Reader, m []byte, opts crypto.SignerOpts) ([]byte, error) {
	defer vecstate.Clean()
	return s.k.Sign(rand, m, opts)
}
