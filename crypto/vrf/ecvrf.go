package vrf

import (
	"crypto/sha512"

	"filippo.io/edwards25519"
)

// This file holds the ECVRF auxiliary functions of RFC 9381, Section 5.4,
// with the options of ECVRF-EDWARDS25519-SHA512-TAI (Section 5.5).

var identity = edwards25519.NewIdentityPoint()

// encodeToCurveTryAndIncrement is
// ECVRF_encode_to_curve_try_and_increment(encode_to_curve_salt,
// alpha_string) (RFC 9381, Section 5.4.1.1), with
// interpret_hash_value_as_a_point(s) = string_to_point(s[0]...s[31]) and
// cofactor = 8 (Section 5.5). For this suite encode_to_curve_salt is
// PK_string.
//
// It also returns the value of ctr that succeeded, which the RFC's test
// vectors record. It returns ok = false only if ctr would reach 256, where
// int_to_string(ctr, 1) fails; the RFC puts the probability of that at
// about 2^-256.
//
// Its running time depends on alpha_string (Section 7.5).
func encodeToCurveTryAndIncrement(encodeToCurveSalt, alphaString []byte) (H *edwards25519.Point, ctr int, ok bool) {
	h := sha512.New()
	var hashString [hLen]byte
	// Steps 1–5: ctr = 0; loop while H is INVALID or the identity.
	for ctr = 0; ctr < 256; ctr++ {
		// Step 5a–b.
		h.Reset()
		h.Write([]byte{suiteString, encodeToCurveDomainSeparatorFront})
		h.Write(encodeToCurveSalt)
		h.Write(alphaString)
		h.Write([]byte{byte(ctr), encodeToCurveDomainSeparatorBack})
		h.Sum(hashString[:0])
		// Step 5c.
		H, ok = stringToPoint(hashString[:ptLen])
		if !ok {
			continue
		}
		// Step 5d.
		H.MultByCofactor(H)
		if H.Equal(identity) == 1 {
			continue
		}
		// Step 6.
		return H, ctr, true
	}
	return nil, ctr, false
}

// nonceString is steps 1–3 of ECVRF_nonce_generation_RFC8032 (RFC 9381,
// Section 5.4.2.2): k_string = Hash(truncated_hashed_sk_string ||
// h_string). truncatedHashedSK is hashed_sk_string[32]...[63], which the
// private key keeps from its derivation.
func nonceString(truncatedHashedSK *[32]byte, hString []byte) [hLen]byte {
	h := sha512.New()
	h.Write(truncatedHashedSK[:])
	h.Write(hString)
	var kString [hLen]byte
	h.Sum(kString[:0])
	return kString
}

// nonceGeneration is ECVRF_nonce_generation_RFC8032 (RFC 9381, Section
// 5.4.2.2): step 4, k = string_to_int(k_string) mod q, little-endian.
func nonceGeneration(truncatedHashedSK *[32]byte, hString []byte) *edwards25519.Scalar {
	kString := nonceString(truncatedHashedSK, hString)
	k, err := edwards25519.NewScalar().SetUniformBytes(kString[:])
	if err != nil {
		panic("vrf: internal error: " + err.Error())
	}
	clear(kString[:]) // best effort: the compiler may have made copies
	return k
}

// challengeGeneration is ECVRF_challenge_generation(P1, P2, P3, P4, P5)
// (RFC 9381, Section 5.4.3), taking each point as point_to_string(PJ). It
// returns truncated_c_string; c = string_to_int(truncated_c_string) is
// challengeToScalar.
func challengeGeneration(p1, p2, p3, p4, p5 []byte) [cLen]byte {
	h := sha512.New()
	// Steps 1–2.
	h.Write([]byte{suiteString, challengeGenerationDomainSeparatorFront})
	// Step 3.
	for _, pj := range [...][]byte{p1, p2, p3, p4, p5} {
		h.Write(pj)
	}
	// Steps 4–5.
	h.Write([]byte{challengeGenerationDomainSeparatorBack})
	// Steps 6–7.
	var cString [hLen]byte
	h.Sum(cString[:0])
	var truncated [cLen]byte
	copy(truncated[:], cString[:cLen])
	return truncated
}

// proofToHash is steps 4–7 of ECVRF_proof_to_hash (RFC 9381, Section 5.2):
// beta_string = Hash(suite_string || proof_to_hash_domain_separator_front ||
// point_to_string(cofactor * Gamma) || proof_to_hash_domain_separator_back).
func proofToHash(gamma *edwards25519.Point) []byte {
	h := sha512.New()
	h.Write([]byte{suiteString, proofToHashDomainSeparatorFront})
	h.Write(new(edwards25519.Point).MultByCofactor(gamma).Bytes())
	h.Write([]byte{proofToHashDomainSeparatorBack})
	return h.Sum(make([]byte, 0, hLen))
}

// validateKey is ECVRF_validate_key(Y) (RFC 9381, Section 5.4.5): Y is
// INVALID if cofactor*Y is the identity, that is if Y is one of the eight
// points of small order.
func validateKey(Y *edwards25519.Point) bool {
	return new(edwards25519.Point).MultByCofactor(Y).Equal(identity) != 1
}

// verifierPoints computes steps 8–9 of ECVRF_verify (RFC 9381, Section
// 5.3): U = s*B - c*Y and V = s*H - c*Gamma (docs/spec/vrf.md §Cofactor).
// negY is -Y.
//
// c and s are used as the integers they are (c < 2^128 and s < q), and the
// minus signs are applied to the points, not to the scalars: Gamma, and in
// principle Y, may have a component of small order, on which -c and q - c do
// not act alike, so negating c modulo q would compute a different U or V
// from the one the RFC specifies. All inputs are public; the arithmetic is
// variable time.
func verifierPoints(negY, H *edwards25519.Point, d *proof) (U, V *edwards25519.Point) {
	U = new(edwards25519.Point).VarTimeDoubleScalarBaseMult(d.c, negY, d.s)
	negGamma := new(edwards25519.Point).Negate(d.gamma)
	V = new(edwards25519.Point).VarTimeMultiScalarMult(
		[]*edwards25519.Scalar{d.s, d.c}, []*edwards25519.Point{H, negGamma})
	return U, V
}
