package vrf

// Upstream vectors (provenance in testdata/README.md) run through the
// package: RFC 9381 Appendix B.3 with every intermediate value, and the
// C2SP CCTV Ed25519 edge-case public keys.

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"

	"filippo.io/edwards25519"
)

// TestVectorPins checks that the vector files are the pinned bytes.
func TestVectorPins(t *testing.T) {
	pins := map[string]string{
		"rfc9381-tai.json":                 "6bbf1bd775baeb21eb9c0a1b9646721efb6bc43224f3ddb75ee0d70b57bcd74a",
		"cctv/ed25519/ed25519vectors.json": "b38e84caf3e7e89170ff520292dbeae421b0a794c27408ce5ce973018fe3d7f9",
		"cctv/ed25519/LICENSE":             "9fe727c21f00a770a683a4c8491bf24203ec839628bad09b026258c5afc17076",
	}
	for name, want := range pins {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprintf("%x", sha256.Sum256(b)); got != want {
			t.Errorf("testdata/%s: SHA-256 %s, pinned %s", name, got, want)
		}
	}
}

// rfcVector is one example of RFC 9381 Appendix B.3, with the RFC's names.
type rfcVector struct {
	Example int    `json:"example"`
	SK      string `json:"SK"`
	PK      string `json:"PK"`
	Alpha   string `json:"alpha"`
	X       string `json:"x"`
	Ctr     int    `json:"ctr"`
	H       string `json:"H"`
	KString string `json:"k_string"`
	K       string `json:"k"`
	U       string `json:"U"`
	V       string `json:"V"`
	Pi      string `json:"pi"`
	Beta    string `json:"beta"`
}

func loadRFCVectors(t testing.TB) []rfcVector {
	t.Helper()
	b, err := os.ReadFile("testdata/rfc9381-tai.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Suite   string      `json:"suite"`
		Vectors []rfcVector `json:"vectors"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if f.Suite != "ECVRF-EDWARDS25519-SHA512-TAI" || len(f.Vectors) != 3 {
		t.Fatalf("unexpected vector file: suite %q, %d vectors", f.Suite, len(f.Vectors))
	}
	return f.Vectors
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRFC9381Vectors checks Prove, ProofToHash and Verify, and every
// intermediate value the RFC publishes: x, the try-and-increment counter,
// H, k_string, k, U = k*B, V = k*H, and U and V as the verifier recomputes
// them.
func TestRFC9381Vectors(t *testing.T) {
	for _, v := range loadRFCVectors(t) {
		t.Run(fmt.Sprintf("Example%d", v.Example), func(t *testing.T) {
			skString, pkString, alpha := mustHex(t, v.SK), mustHex(t, v.PK), mustHex(t, v.Alpha)
			pi, beta := mustHex(t, v.Pi), mustHex(t, v.Beta)

			sk, err := NewPrivateKey(skString)
			if err != nil {
				t.Fatal(err)
			}
			// PK, and independently crypto/ed25519's key for the same seed.
			if got := sk.Public().Bytes(); !bytes.Equal(got, pkString) {
				t.Errorf("PK = %x, want %x", got, pkString)
			}
			if got := ed25519.NewKeyFromSeed(skString).Public().(ed25519.PublicKey); !bytes.Equal(got, pkString) {
				t.Errorf("crypto/ed25519 public key = %x, want %x", got, pkString)
			}

			// x: RFC 8032, Section 5.1.5 pruning spelled out here, and the
			// package's scalar equal to x mod q.
			h := sha512.Sum512(skString)
			xString := slices.Clone(h[:32])
			xString[0] &= 248
			xString[31] &= 127
			xString[31] |= 64
			if want := mustHex(t, v.X); !bytes.Equal(xString, want) {
				t.Errorf("x = %x, want %x", xString, want)
			}
			xWide := append(mustHex(t, v.X), make([]byte, 32)...)
			xModQ, err := edwards25519.NewScalar().SetUniformBytes(xWide)
			if err != nil {
				t.Fatal(err)
			}
			if sk.x.Equal(xModQ) != 1 {
				t.Errorf("secret scalar is not x mod q")
			}

			// H and ctr (Section 5.4.1.1).
			H, ctr, ok := encodeToCurveTryAndIncrement(pkString, alpha)
			if !ok {
				t.Fatal("encode_to_curve failed")
			}
			if ctr != v.Ctr {
				t.Errorf("try_and_increment succeeded on ctr = %d, want %d", ctr, v.Ctr)
			}
			hString := H.Bytes()
			if want := mustHex(t, v.H); !bytes.Equal(hString, want) {
				t.Errorf("H = %x, want %x", hString, want)
			}

			// k_string and k (Section 5.4.2.2).
			kString := nonceString(sk.truncatedHashedSK, hString)
			if want := mustHex(t, v.KString); !bytes.Equal(kString[:], want) {
				t.Errorf("k_string = %x, want %x", kString, want)
			}
			k := nonceGeneration(sk.truncatedHashedSK, hString)
			if want := mustHex(t, v.K); !bytes.Equal(k.Bytes(), want) {
				t.Errorf("k = %x, want %x", k.Bytes(), want)
			}

			// U = k*B and V = k*H, as the prover computes them.
			U := new(edwards25519.Point).ScalarBaseMult(k)
			V := new(edwards25519.Point).ScalarMult(k, H)
			if want := mustHex(t, v.U); !bytes.Equal(U.Bytes(), want) {
				t.Errorf("k*B = %x, want %x", U.Bytes(), want)
			}
			if want := mustHex(t, v.V); !bytes.Equal(V.Bytes(), want) {
				t.Errorf("k*H = %x, want %x", V.Bytes(), want)
			}

			// Gamma = x*H is the first part of pi.
			gamma := new(edwards25519.Point).ScalarMult(sk.x, H)
			if !bytes.Equal(gamma.Bytes(), pi[:ptLen]) {
				t.Errorf("Gamma = %x, want %x", gamma.Bytes(), pi[:ptLen])
			}

			// The whole proof and output.
			if got := Prove(sk, alpha); !bytes.Equal(got, pi) {
				t.Errorf("Prove = %x, want %x", got, pi)
			}
			if got, err := ProofToHash(pi); err != nil || !bytes.Equal(got, beta) {
				t.Errorf("ProofToHash = %x, %v, want %x", got, err, beta)
			}
			pk, err := NewPublicKey(pkString)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := Verify(pk, alpha, pi); err != nil || !bytes.Equal(got, beta) {
				t.Errorf("Verify = %x, %v, want %x", got, err, beta)
			}

			// The verifier's U = s*B - c*Y and V = s*H - c*Gamma equal k*B
			// and k*H, and hash to the proof's c.
			d, ok := decodeProof(pi)
			if !ok {
				t.Fatal("decode_proof failed")
			}
			vU, vV := verifierPoints(pk.negY, H, d)
			if vU.Equal(U) != 1 || vV.Equal(V) != 1 {
				t.Errorf("verifier U, V = %x, %x, want %x, %x", vU.Bytes(), vV.Bytes(), U.Bytes(), V.Bytes())
			}
			c := challengeGeneration(pkString, hString, pi[:ptLen], U.Bytes(), V.Bytes())
			if !bytes.Equal(c[:], pi[ptLen:ptLen+cLen]) {
				t.Errorf("c = %x, want %x", c, pi[ptLen:ptLen+cLen])
			}
		})
	}
}

// TestCCTVPublicKeys runs the distinct public keys of the C2SP CCTV Ed25519
// edge-case vectors through NewPublicKey. Keys flagged low_order_A are of
// small order and fail ECVRF_validate_key (ErrInvalidKey); keys flagged
// non_canonical_A fail the strict string_to_point (also ErrMalformed). Keys
// flagged only low_order_component_A are of mixed order: RFC 9381's
// validate_key accepts them, and so does this package.
func TestCCTVPublicKeys(t *testing.T) {
	b, err := os.ReadFile("testdata/cctv/ed25519/ed25519vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vectors []struct {
		Key   string   `json:"key"`
		Flags []string `json:"flags"`
	}
	if err := json.Unmarshal(b, &vectors); err != nil {
		t.Fatal(err)
	}
	flags := map[string]map[string]bool{}
	for _, v := range vectors {
		if flags[v.Key] == nil {
			flags[v.Key] = map[string]bool{}
		}
		for _, f := range v.Flags {
			flags[v.Key][f] = true
		}
	}
	var accepted, smallOrder, nonCanonical int
	for key, f := range flags {
		_, err := NewPublicKey(mustHex(t, key))
		switch {
		case f["non_canonical_A"]:
			nonCanonical++
			if !errors.Is(err, ErrMalformed) || !errors.Is(err, ErrInvalidKey) {
				t.Errorf("non-canonical key %s: err = %v, want ErrMalformed and ErrInvalidKey", key, err)
			}
		case f["low_order_A"]:
			smallOrder++
			if !errors.Is(err, ErrInvalidKey) || errors.Is(err, ErrMalformed) {
				t.Errorf("small-order key %s: err = %v, want ErrInvalidKey only", key, err)
			}
		default:
			accepted++
			if err != nil {
				t.Errorf("key %s (flags %v): %v, want accepted", key, f, err)
			}
		}
	}
	// 22 distinct keys: 6 non-canonical, 8 canonical small-order, 8 others.
	if accepted != 8 || smallOrder != 8 || nonCanonical != 6 {
		t.Errorf("accepted %d, small order %d, non-canonical %d; want 8, 8, 6", accepted, smallOrder, nonCanonical)
	}
}
