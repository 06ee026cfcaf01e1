package vrf

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"filippo.io/edwards25519"
)

// testRand returns a deterministic source, so failures reproduce.
func testRand(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	return rand.NewChaCha8(s)
}

func mustKey(t testing.TB, r *rand.ChaCha8) *PrivateKey {
	t.Helper()
	sk, err := GenerateKey(r)
	if err != nil {
		t.Fatal(err)
	}
	return sk
}

// TestRoundTrip proves and verifies under random keys and inputs of many
// lengths, and checks that the three functions agree.
func TestRoundTrip(t *testing.T) {
	r := testRand(1)
	for i := range 200 {
		sk := mustKey(t, r)
		alpha := make([]byte, i%70)
		if i == 199 {
			alpha = make([]byte, 10000)
		}
		_, _ = r.Read(alpha)
		alphaCopy := slices.Clone(alpha)

		pi := Prove(sk, alpha)
		if len(pi) != ProofSize {
			t.Fatalf("len(pi) = %d", len(pi))
		}
		if !bytes.Equal(alpha, alphaCopy) {
			t.Fatal("Prove modified alpha")
		}
		if again := Prove(sk, alpha); !bytes.Equal(again, pi) {
			t.Fatal("Prove is not deterministic")
		}
		beta, err := ProofToHash(pi)
		if err != nil || len(beta) != OutputSize {
			t.Fatalf("ProofToHash: %x, %v", beta, err)
		}
		piCopy := slices.Clone(pi)
		pk, err := NewPublicKey(sk.Public().Bytes())
		if err != nil {
			t.Fatal(err)
		}
		got, err := Verify(pk, alpha, pi)
		if err != nil || !bytes.Equal(got, beta) {
			t.Fatalf("Verify = %x, %v, want %x", got, err, beta)
		}
		if !bytes.Equal(pi, piCopy) || !bytes.Equal(alpha, alphaCopy) {
			t.Fatal("Verify modified its inputs")
		}
		// The key Prove used and the key decoded from its bytes agree.
		if got, err := Verify(sk.Public(), alpha, pi); err != nil || !bytes.Equal(got, beta) {
			t.Fatalf("Verify(sk.Public()) = %x, %v", got, err)
		}
		// The output does not alias the proof.
		beta[0] ^= 0xff
		if !bytes.Equal(pi, piCopy) {
			t.Fatal("beta aliases pi")
		}
	}
}

// TestAccumulated pins a hash of many proofs, as a regression check. The
// pinned value was computed by this package after it passed the RFC 9381
// vectors; it is not an independent vector.
func TestAccumulated(t *testing.T) {
	r := testRand(2)
	acc := sha256.New()
	n := 1000
	if testing.Short() {
		n = 100
	}
	for i := range n {
		sk := mustKey(t, r)
		alpha := make([]byte, i%100)
		_, _ = r.Read(alpha)
		pi := Prove(sk, alpha)
		acc.Write(pi)
	}
	want := map[int]string{
		100:  "a0516191086e2306cfce31885afeeec2ccb25ae0fad1b2f1c3dd0203070ea6ba",
		1000: "7e27d73307b47fa78567401f3482d2ec34703f63da80f5146c0a1d1ce8a32031",
	}[n]
	if got := hex.EncodeToString(acc.Sum(nil)); got != want {
		t.Errorf("accumulated hash of %d proofs = %s, want %s", n, got, want)
	}
}

// TestEncodeToCurveCounters exercises try-and-increment past the first few
// counter values, and checks that each H is 8 times a decoded hash.
func TestEncodeToCurveCounters(t *testing.T) {
	pk := mustKey(t, testRand(3)).Public().Bytes()
	seen := map[int]bool{}
	for i := range 2000 {
		alpha := []byte(fmt.Sprint(i))
		H, ctr, ok := encodeToCurveTryAndIncrement(pk, alpha)
		if !ok {
			t.Fatal("encode_to_curve failed")
		}
		seen[ctr] = true
		if H.Equal(identity) == 1 {
			t.Fatal("H is the identity")
		}
		// H is the cofactor multiple of the candidate of counter ctr,
		// and every earlier candidate was INVALID.
		for j := 0; j <= ctr; j++ {
			hash := sha512Sum(append(append(append([]byte{0x03, 0x01}, pk...), alpha...), byte(j), 0x00))
			P, ok := stringToPoint(hash[:32])
			if j < ctr {
				if ok && new(edwards25519.Point).MultByCofactor(P).Equal(identity) != 1 {
					t.Fatalf("alpha %q: counter %d was valid but %d was used", alpha, j, ctr)
				}
				continue
			}
			if !ok || new(edwards25519.Point).MultByCofactor(P).Equal(H) != 1 {
				t.Fatalf("alpha %q: H is not 8 * candidate %d", alpha, ctr)
			}
		}
	}
	for ctr := range 6 {
		if !seen[ctr] {
			t.Errorf("no alpha succeeded on ctr = %d", ctr)
		}
	}
}

func sha512Sum(b []byte) []byte { h := sha512.Sum512(b); return h[:] }

// p is the field prime 2^255 - 19 and q the group order.
var (
	bigP    = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	bigQ, _ = new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
)

// le encodes n as 32 little-endian bytes.
func le(n *big.Int) []byte {
	b := n.FillBytes(make([]byte, 32))
	slices.Reverse(b)
	return b
}

// nonCanonicalEncodings returns every 32-byte string that RFC 8032 decoding
// rejects for not being canonical although edwards25519.Point.SetBytes may
// accept it: y = p + i for i in 0..18 (y not reduced) with either sign bit,
// and x = 0 with the sign bit set (y = 1 and y = p - 1).
func nonCanonicalEncodings() [][]byte {
	var out [][]byte
	for i := range int64(19) {
		y := le(new(big.Int).Add(bigP, big.NewInt(i)))
		out = append(out, y)
		neg := slices.Clone(y)
		neg[31] |= 0x80
		out = append(out, neg)
	}
	for _, y := range []*big.Int{big.NewInt(1), new(big.Int).Sub(bigP, big.NewInt(1))} {
		b := le(y)
		b[31] |= 0x80
		out = append(out, b)
	}
	return out
}

// TestStringToPointStrict checks that string_to_point rejects every
// non-canonical encoding, that some of them are ones SetBytes accepts (so
// the check matters), and that it accepts what it encodes.
func TestStringToPointStrict(t *testing.T) {
	laxAccepted := 0
	for _, b := range nonCanonicalEncodings() {
		if _, err := new(edwards25519.Point).SetBytes(b); err == nil {
			laxAccepted++
		}
		if _, ok := stringToPoint(b); ok {
			t.Errorf("string_to_point accepted non-canonical %x", b)
		}
		if _, err := NewPublicKey(b); !errors.Is(err, ErrMalformed) || !errors.Is(err, ErrInvalidKey) {
			t.Errorf("NewPublicKey(%x) = %v, want ErrMalformed and ErrInvalidKey", b, err)
		}
	}
	if laxAccepted == 0 {
		t.Fatal("no non-canonical encoding decodes with SetBytes; the test is vacuous")
	}
	r := testRand(4)
	for range 100 {
		var s [64]byte
		_, _ = r.Read(s[:])
		x, _ := edwards25519.NewScalar().SetUniformBytes(s[:])
		P := new(edwards25519.Point).ScalarBaseMult(x)
		Q, ok := stringToPoint(P.Bytes())
		if !ok || Q.Equal(P) != 1 {
			t.Fatal("string_to_point rejected a canonical encoding")
		}
	}
	for _, n := range []int{0, 1, 31, 33, 64} {
		if _, ok := stringToPoint(make([]byte, n)); ok {
			t.Errorf("string_to_point accepted %d bytes", n)
		}
	}
}

// smallOrderPoints returns the eight points of small order, from the y
// coordinates RFC 9381, Section 5.4.5 lists: 0, 1, bad_y2, p - bad_y2 and
// p - 1, each with both signs of x where x != 0.
func smallOrderPoints(t testing.TB) [][]byte {
	t.Helper()
	badY2, _ := new(big.Int).SetString("2707385501144840649318225287225658788936804267575313519463743609750303402022", 10)
	var out [][]byte
	for _, y := range []*big.Int{big.NewInt(0), big.NewInt(1), badY2, new(big.Int).Sub(bigP, badY2), new(big.Int).Sub(bigP, big.NewInt(1))} {
		for _, sign := range []byte{0, 0x80} {
			b := le(y)
			b[31] |= sign
			P, ok := stringToPoint(b)
			if !ok {
				continue // x = 0: the sign bit must be clear
			}
			if new(edwards25519.Point).MultByCofactor(P).Equal(identity) != 1 {
				t.Fatalf("%x is not of small order", b)
			}
			out = append(out, b)
		}
	}
	if len(out) != 8 {
		t.Fatalf("%d small-order points, want 8", len(out))
	}
	return out
}

// TestSmallOrderKeysRejected checks validate_key on the eight small-order
// points: each is a canonical point, rejected with ErrInvalidKey only.
func TestSmallOrderKeysRejected(t *testing.T) {
	for _, b := range smallOrderPoints(t) {
		_, err := NewPublicKey(b)
		if !errors.Is(err, ErrInvalidKey) || errors.Is(err, ErrMalformed) {
			t.Errorf("NewPublicKey(%x) = %v, want ErrInvalidKey only", b, err)
		}
	}
}

func TestPublicKeyEncoding(t *testing.T) {
	for _, n := range []int{0, 1, 31, 33, 64} {
		if _, err := NewPublicKey(make([]byte, n)); !errors.Is(err, ErrMalformed) || !errors.Is(err, ErrInvalidKey) {
			t.Errorf("NewPublicKey(%d bytes) = %v", n, err)
		}
	}
	// y = 2 is not on the curve.
	notOnCurve := le(big.NewInt(2))
	if _, err := new(edwards25519.Point).SetBytes(notOnCurve); err == nil {
		t.Fatal("y = 2 decodes; pick another")
	}
	if _, err := NewPublicKey(notOnCurve); !errors.Is(err, ErrMalformed) {
		t.Errorf("NewPublicKey(not on curve) = %v", err)
	}
	sk := mustKey(t, testRand(5))
	b := sk.Public().Bytes()
	pk, err := NewPublicKey(b)
	if err != nil {
		t.Fatal(err)
	}
	if !pk.Equal(sk.Public()) || !bytes.Equal(pk.Bytes(), b) {
		t.Error("decoded key differs")
	}
	b[0] ^= 1
	if !bytes.Equal(pk.Bytes(), sk.Public().Bytes()) {
		t.Error("Bytes aliases the key")
	}
	var zero PublicKey
	if zero.Bytes() != nil || zero.Equal(pk) || pk.Equal(&zero) {
		t.Error("zero PublicKey behaves as a key")
	}
}

func TestPrivateKey(t *testing.T) {
	for _, n := range []int{0, 31, 33, 64} {
		if _, err := NewPrivateKey(make([]byte, n)); !errors.Is(err, ErrMalformed) {
			t.Errorf("NewPrivateKey(%d bytes) = %v", n, err)
		}
	}
	r := testRand(6)
	sk := mustKey(t, r)
	seed := sk.Seed()
	sk2, err := NewPrivateKey(seed)
	if err != nil {
		t.Fatal(err)
	}
	if !sk.Equal(sk2) || sk.Equal(mustKey(t, r)) {
		t.Error("Equal")
	}
	// The VRF key of a seed is its Ed25519 key.
	if !bytes.Equal(sk.Public().Bytes(), ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)) {
		t.Error("public key differs from crypto/ed25519's")
	}
	seed[0] ^= 1
	if !bytes.Equal(sk.Seed(), sk2.Seed()) {
		t.Error("Seed aliases the key")
	}
	// Printing never shows key material, also as a field of a struct.
	hexSeed := hex.EncodeToString(sk.Seed())
	wrapped := struct{ K *PrivateKey }{sk}
	for _, s := range []string{
		fmt.Sprint(sk), fmt.Sprintf("%v %+v %#v %s %x %q", sk, sk, sk, sk, sk, sk),
		fmt.Sprintf("%v %+v %#v %x", wrapped, wrapped, wrapped, wrapped),
	} {
		if strings.Contains(s, hexSeed) || strings.Contains(s, hexSeed[:16]) {
			t.Errorf("printed key material: %s", s)
		}
	}
	if _, err := GenerateKey(bytes.NewReader(make([]byte, 31))); err == nil {
		t.Error("GenerateKey with a short reader succeeded")
	}
}

// TestVerifyNilKey checks that Verify refuses a nil or zero key without
// panicking.
func TestVerifyNilKey(t *testing.T) {
	sk := mustKey(t, testRand(7))
	pi := Prove(sk, nil)
	for _, pk := range []*PublicKey{nil, {}} {
		if beta, err := Verify(pk, nil, pi); beta != nil || !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Verify(%v) = %x, %v", pk, beta, err)
		}
	}
}

type negCase struct {
	pk    *PublicKey
	alpha []byte
	pi    []byte
}

func vectorCases(t *testing.T) []negCase {
	var cases []negCase
	for _, v := range loadRFCVectors(t) {
		pk, err := NewPublicKey(mustHex(t, v.PK))
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, negCase{pk, mustHex(t, v.Alpha), mustHex(t, v.Pi)})
	}
	return cases
}

func wantInvalid(t *testing.T, name string, beta []byte, err error) {
	t.Helper()
	if beta != nil || !errors.Is(err, ErrInvalidProof) {
		t.Errorf("%s: Verify = %x, %v, want ErrInvalidProof", name, beta, err)
	}
}

// TestBitFlips flips every bit of each vector's proof in turn.
func TestBitFlips(t *testing.T) {
	for i, c := range vectorCases(t) {
		for bit := range 8 * ProofSize {
			pi := slices.Clone(c.pi)
			pi[bit/8] ^= 1 << (bit % 8)
			beta, err := Verify(c.pk, c.alpha, pi)
			wantInvalid(t, fmt.Sprintf("vector %d bit %d", i, bit), beta, err)
		}
	}
}

func TestWrongAlphaAndKey(t *testing.T) {
	cases := vectorCases(t)
	for i, c := range cases {
		for _, alpha := range [][]byte{
			append(slices.Clone(c.alpha), 0), {0}, []byte("moat"),
			cases[(i+1)%len(cases)].alpha,
		} {
			if bytes.Equal(alpha, c.alpha) {
				continue
			}
			beta, err := Verify(c.pk, alpha, c.pi)
			wantInvalid(t, fmt.Sprintf("vector %d alpha %x", i, alpha), beta, err)
		}
		if len(c.alpha) > 0 {
			alpha := slices.Clone(c.alpha)
			alpha[0] ^= 1
			beta, err := Verify(c.pk, alpha, c.pi)
			wantInvalid(t, fmt.Sprintf("vector %d flipped alpha", i), beta, err)
		}
		for j, o := range cases {
			if j != i {
				beta, err := Verify(o.pk, c.alpha, c.pi)
				wantInvalid(t, fmt.Sprintf("vector %d under key %d", i, j), beta, err)
			}
		}
	}
}

// TestMalformedProofs covers every wrong length, s >= q and a non-canonical
// or invalid Gamma: each is ErrMalformed as well as ErrInvalidProof, from
// both Verify and ProofToHash.
func TestMalformedProofs(t *testing.T) {
	c := vectorCases(t)[1]
	check := func(name string, pi []byte) {
		t.Helper()
		beta, err := Verify(c.pk, c.alpha, pi)
		wantInvalid(t, name, beta, err)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Verify error %v, want ErrMalformed", name, err)
		}
		if beta, err := ProofToHash(pi); beta != nil || !errors.Is(err, ErrMalformed) || !errors.Is(err, ErrInvalidProof) {
			t.Errorf("%s: ProofToHash = %x, %v", name, beta, err)
		}
	}
	for n := range ProofSize {
		check(fmt.Sprintf("truncated to %d", n), c.pi[:n])
	}
	check("extended", append(slices.Clone(c.pi), 0))
	check("nil", nil)

	// s + q, q and 2^256 - 1 in place of s.
	s := fromLE(c.pi[ptLen+cLen:])
	for name, bad := range map[string]*big.Int{
		"s+q":     new(big.Int).Add(s, bigQ),
		"q":       bigQ,
		"2^256-1": new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1)),
		"2^255+s": new(big.Int).Add(s, new(big.Int).Lsh(big.NewInt(1), 255)),
		"q+1":     new(big.Int).Add(bigQ, big.NewInt(1)),
	} {
		pi := slices.Clone(c.pi)
		copy(pi[ptLen+cLen:], le(bad))
		check("s = "+name, pi)
	}
	// s = q - 1 is in range, so the proof is well formed but wrong.
	pi := slices.Clone(c.pi)
	copy(pi[ptLen+cLen:], le(new(big.Int).Sub(bigQ, big.NewInt(1))))
	if beta, err := Verify(c.pk, c.alpha, pi); !errors.Is(err, ErrInvalidProof) || errors.Is(err, ErrMalformed) {
		t.Errorf("s = q-1: Verify = %x, %v, want ErrInvalidProof only", beta, err)
	}

	// Gamma not canonical, or not a point.
	for _, g := range append(nonCanonicalEncodings(), le(big.NewInt(2))) {
		pi := slices.Clone(c.pi)
		copy(pi, g)
		check(fmt.Sprintf("Gamma = %x", g), pi)
	}
}

// fromLE decodes a little-endian integer.
func fromLE(b []byte) *big.Int {
	be := slices.Clone(b)
	slices.Reverse(be)
	return new(big.Int).SetBytes(be)
}

// orderEightPoint returns a point of order 8.
func orderEightPoint(t testing.TB) *edwards25519.Point {
	t.Helper()
	for _, b := range smallOrderPoints(t) {
		T, _ := stringToPoint(b)
		T4 := new(edwards25519.Point).Add(T, T)
		T4.Add(T4, T4)
		if T4.Equal(identity) != 1 {
			return T
		}
	}
	t.Fatal("no point of order 8")
	return nil
}

// forgeWithTorsion builds a proof the way ECVRF_prove does, but with
// torsion added to Gamma or Y, grinding the nonce until the challenge is (or
// is not) a multiple of 8. It reproduces the RFC's verification equations
// for points outside the prime-order subgroup.
func forgeWithTorsion(t *testing.T, sk *PrivateKey, pkString, alpha []byte, gammaTorsion *edwards25519.Point, wantMultipleOf8 bool) []byte {
	t.Helper()
	H, _, _ := encodeToCurveTryAndIncrement(pkString, alpha)
	gamma := new(edwards25519.Point).ScalarMult(sk.x, H)
	gamma.Add(gamma, gammaTorsion)
	r := testRand(8)
	for range 1000 {
		var ks [64]byte
		_, _ = r.Read(ks[:])
		k, _ := edwards25519.NewScalar().SetUniformBytes(ks[:])
		kB := new(edwards25519.Point).ScalarBaseMult(k)
		kH := new(edwards25519.Point).ScalarMult(k, H)
		cString := challengeGeneration(pkString, H.Bytes(), gamma.Bytes(), kB.Bytes(), kH.Bytes())
		if (cString[0]%8 == 0) != wantMultipleOf8 {
			continue
		}
		s := edwards25519.NewScalar().MultiplyAdd(challengeToScalar(&cString), sk.x, k)
		return encodeProof(gamma.Bytes(), &cString, s)
	}
	t.Fatal("no suitable nonce")
	return nil
}

// TestTorsionFollowsSpec checks that Verify computes U = s*B - c*Y and
// V = s*H - c*Gamma exactly as RFC 9381, Section 5.3 specifies when Gamma
// or Y has a component of small order T: c*T vanishes exactly when 8 | c,
// so the RFC accepts such a proof if and only if 8 | c, with the same beta
// as the honest proof (beta hashes 8*Gamma). An implementation that
// negated c modulo q would get these cases wrong.
func TestTorsionFollowsSpec(t *testing.T) {
	T := orderEightPoint(t)
	sk := mustKey(t, testRand(9))
	alpha := []byte("torsion")
	honestBeta, _ := ProofToHash(Prove(sk, alpha))

	// Torsion in Gamma.
	pkString := sk.Public().Bytes()
	pi := forgeWithTorsion(t, sk, pkString, alpha, T, true)
	if beta, err := Verify(sk.Public(), alpha, pi); err != nil || !bytes.Equal(beta, honestBeta) {
		t.Errorf("Gamma + T, 8 | c: Verify = %x, %v, want the honest beta", beta, err)
	}
	pi = forgeWithTorsion(t, sk, pkString, alpha, T, false)
	beta, err := Verify(sk.Public(), alpha, pi)
	wantInvalid(t, "Gamma + T, 8 ∤ c", beta, err)

	// Torsion in Y: a mixed-order key passes validate_key.
	Y := new(edwards25519.Point).Add(sk.pub.y, T)
	pk, err := NewPublicKey(Y.Bytes())
	if err != nil {
		t.Fatalf("mixed-order key rejected: %v", err)
	}
	noTorsion := edwards25519.NewIdentityPoint()
	for _, multipleOf8 := range []bool{true, false} {
		// The prover's U is k*B; the verifier computes
		// s*B - c*(Y + T) = k*B - c*T.
		pi := forgeWithTorsion(t, sk, Y.Bytes(), alpha, noTorsion, multipleOf8)
		beta, err := Verify(pk, alpha, pi)
		if multipleOf8 && err != nil {
			t.Errorf("Y + T, 8 | c: %v", err)
		}
		if !multipleOf8 {
			wantInvalid(t, "Y + T, 8 ∤ c", beta, err)
		}
	}
}

// TestConcurrentUse proves and verifies with shared keys from several
// goroutines (run with -race).
func TestConcurrentUse(t *testing.T) {
	sk := mustKey(t, testRand(14))
	pk := sk.Public()
	want := Prove(sk, []byte("shared"))
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 20 {
				alpha := []byte{byte(i), byte(j)}
				pi := Prove(sk, alpha)
				if _, err := Verify(pk, alpha, pi); err != nil {
					t.Error(err)
				}
				if got := Prove(sk, []byte("shared")); !bytes.Equal(got, want) {
					t.Error("concurrent Prove differs")
				}
			}
		})
	}
	wg.Wait()
}
