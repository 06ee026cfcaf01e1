package vrf

import (
	"bytes"

	"filippo.io/edwards25519"
	"github.com/moat-im/moat/crypto/internal/edpoint"
)

// Sizes of the suite's encodings (RFC 9381, Section 5.5; docs/spec/vrf.md
// §Proofs and outputs).
const (
	// SeedSize is the size of a private key: the RFC 8032 secret key SK.
	SeedSize = 32
	// PublicKeySize is ptLen, the size of PK_string.
	PublicKeySize = ptLen
	// ProofSize is ptLen + cLen + qLen, the size of pi_string.
	ProofSize = ptLen + cLen + qLen
	// OutputSize is hLen, the size of beta_string.
	OutputSize = hLen
)

// Fixed options of ECVRF-EDWARDS25519-SHA512-TAI (RFC 9381, Section 5.5).
const (
	suiteString = 0x03
	ptLen       = 32 // point_to_string output length (fLen)
	qLen        = 32 // length of q in octets
	cLen        = 16 // challenge length
	hLen        = 64 // SHA-512 output length
)

// Domain separators (RFC 9381, Sections 5.2, 5.4.1.1 and 5.4.3). They are
// the suite's own constants, not Moat labels, so they live here rather than
// in crypto/internal/label.
const (
	encodeToCurveDomainSeparatorFront       = 0x01
	encodeToCurveDomainSeparatorBack        = 0x00
	challengeGenerationDomainSeparatorFront = 0x02
	challengeGenerationDomainSeparatorBack  = 0x00
	proofToHashDomainSeparatorFront         = 0x03
	proofToHashDomainSeparatorBack          = 0x00
)

// stringToPoint is string_to_point: the decoding of RFC 8032, Section 5.1.3,
// which "MUST output INVALID if the octet string does not decode to a point
// on the curve" (RFC 9381, Section 5.5; docs/spec/vrf.md §Point decoding).
//
// RFC 8032 decoding fails for a y coordinate that is not reduced modulo p
// and for x = 0 with the sign bit set. edwards25519.Point.SetBytes accepts
// both; edpoint.Decode rejects them, which is the same as requiring the
// canonical re-encoding to equal the input, without its field inversion.
func stringToPoint(s []byte) (*edwards25519.Point, bool) {
	p, err := edpoint.Decode(s)
	return p, err == nil
}

// challengeToScalar is string_to_int on a cLen-octet challenge, as a scalar.
// c < 2^128 < q, so the scalar is the integer c itself, unreduced.
func challengeToScalar(cString *[cLen]byte) *edwards25519.Scalar {
	var buf [qLen]byte
	copy(buf[:], cString[:])
	c, err := edwards25519.NewScalar().SetCanonicalBytes(buf[:])
	if err != nil {
		panic("vrf: internal error: 128-bit challenge not canonical")
	}
	return c
}

// proof is a decoded pi_string.
type proof struct {
	gamma       *edwards25519.Point
	gammaString []byte // point_to_string(Gamma): canonical, so the input bytes
	cString     [cLen]byte
	c           *edwards25519.Scalar
	s           *edwards25519.Scalar
}

// decodeProof is ECVRF_decode_proof (RFC 9381, Section 5.4.4; docs/spec/vrf.md
// §Proofs and outputs). It does not retain piString.
func decodeProof(piString []byte) (*proof, bool) {
	if len(piString) != ProofSize {
		return nil, false
	}
	// Steps 1–3.
	gammaString := piString[:ptLen]
	cString := piString[ptLen : ptLen+cLen]
	sString := piString[ptLen+cLen:]
	// Steps 4–5.
	gamma, ok := stringToPoint(gammaString)
	if !ok {
		return nil, false
	}
	d := &proof{gamma: gamma, gammaString: bytes.Clone(gammaString)}
	// Step 6.
	copy(d.cString[:], cString)
	d.c = challengeToScalar(&d.cString)
	// Steps 7–8: SetCanonicalBytes rejects s >= q.
	s, err := edwards25519.NewScalar().SetCanonicalBytes(sString)
	if err != nil {
		return nil, false
	}
	d.s = s
	return d, true
}

// encodeProof is step 8 of ECVRF_prove (RFC 9381, Section 5.1):
// pi_string = point_to_string(Gamma) || int_to_string(c, cLen) ||
// int_to_string(s, qLen). int_to_string is little-endian (Section 5.5).
func encodeProof(gammaString []byte, cString *[cLen]byte, s *edwards25519.Scalar) []byte {
	pi := make([]byte, 0, ProofSize)
	pi = append(pi, gammaString...)
	pi = append(pi, cString[:]...)
	pi = append(pi, s.Bytes()...)
	return pi
}
