package vrf

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"filippo.io/edwards25519"
)

// addVectorSeeds adds each RFC 9381 vector, and mutations of it, to f.
func addVectorSeeds(f *testing.F) {
	for _, v := range loadRFCVectors(f) {
		pk, alpha, pi := mustHex(f, v.PK), mustHex(f, v.Alpha), mustHex(f, v.Pi)
		f.Add(pk, alpha, pi)
		f.Add(pk, alpha, pi[:ProofSize-1])
		bad := bytes.Clone(pi)
		bad[ptLen+cLen+qLen-1] |= 0xf0 // s >= q
		f.Add(pk, alpha, bad)
	}
}

// FuzzVerify runs arbitrary keys, inputs and proofs through NewPublicKey,
// Verify and ProofToHash. None may panic, and:
//
//   - every rejection satisfies ErrInvalidKey or ErrInvalidProof;
//   - a proof that verifies is the canonical encoding of what it decodes to
//     (decode then encode gives the same bytes), and Verify's beta equals
//     ProofToHash's;
//   - under the key whose seed is pk's bytes, a proof that verifies for
//     alpha has the same beta as that key's own proof (full uniqueness).
func FuzzVerify(f *testing.F) {
	addVectorSeeds(f)
	f.Add(make([]byte, 32), []byte{}, make([]byte, ProofSize))
	f.Fuzz(func(t *testing.T, pkBytes, alpha, pi []byte) {
		if beta, err := ProofToHash(pi); err != nil {
			if !errors.Is(err, ErrInvalidProof) || !errors.Is(err, ErrMalformed) || beta != nil {
				t.Fatalf("ProofToHash = %x, %v", beta, err)
			}
		} else {
			d, ok := decodeProof(pi)
			if !ok || !bytes.Equal(encodeProof(d.gammaString, &d.cString, d.s), pi) {
				t.Fatalf("decode_proof accepted a non-canonical proof %x", pi)
			}
		}

		if pk, err := NewPublicKey(pkBytes); err != nil {
			if !errors.Is(err, ErrInvalidKey) || pk != nil {
				t.Fatalf("NewPublicKey = %v, %v", pk, err)
			}
		} else {
			beta, err := Verify(pk, alpha, pi)
			checkVerified(t, pi, beta, err)
		}

		if len(pkBytes) == SeedSize {
			sk, err := NewPrivateKey(pkBytes)
			if err != nil {
				t.Fatal(err)
			}
			own := Prove(sk, alpha)
			ownBeta, err := Verify(sk.Public(), alpha, own)
			if err != nil {
				t.Fatalf("own proof rejected: %v", err)
			}
			beta, err := Verify(sk.Public(), alpha, pi)
			checkVerified(t, pi, beta, err)
			if err == nil && !bytes.Equal(beta, ownBeta) {
				t.Fatalf("two outputs verify for one key and input: %x, %x", beta, ownBeta)
			}
		}
	})
}

func checkVerified(t *testing.T, pi, beta []byte, err error) {
	t.Helper()
	if err != nil {
		if !errors.Is(err, ErrInvalidProof) || beta != nil {
			t.Fatalf("Verify = %x, %v", beta, err)
		}
		return
	}
	if len(beta) != OutputSize {
		t.Fatalf("len(beta) = %d", len(beta))
	}
	if b, err := ProofToHash(pi); err != nil || !bytes.Equal(b, beta) {
		t.Fatalf("ProofToHash = %x, %v; Verify gave %x", b, err, beta)
	}
}

// FuzzDecodePublicKey checks NewPublicKey against its specification: it
// accepts exactly the canonical encodings of points not of small order,
// and Bytes gives back the input (parse then marshal is the identity).
func FuzzDecodePublicKey(f *testing.F) {
	for _, v := range loadRFCVectors(f) {
		f.Add(mustHex(f, v.PK))
	}
	for _, b := range smallOrderPoints(f) {
		f.Add(b)
	}
	for _, b := range nonCanonicalEncodings() {
		f.Add(b)
	}
	if b, err := os.ReadFile("testdata/cctv/ed25519/ed25519vectors.json"); err == nil {
		var vectors []struct{ Key string }
		if json.Unmarshal(b, &vectors) == nil {
			for _, v := range vectors {
				if k, err := hex.DecodeString(v.Key); err == nil {
					f.Add(k)
				}
			}
		}
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		pk, err := NewPublicKey(b)
		if !bytes.Equal(b, in) {
			t.Fatal("NewPublicKey modified its input")
		}

		// The specification, evaluated independently of NewPublicKey.
		wantMalformed, wantSmallOrder := true, false
		if len(b) == PublicKeySize {
			if P, err := new(edwards25519.Point).SetBytes(b); err == nil && bytes.Equal(P.Bytes(), b) {
				wantMalformed = false
				wantSmallOrder = new(edwards25519.Point).MultByCofactor(P).Equal(edwards25519.NewIdentityPoint()) == 1
			}
		}

		switch {
		case wantMalformed:
			if !errors.Is(err, ErrMalformed) || !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("NewPublicKey(%x) = %v, want ErrMalformed", b, err)
			}
		case wantSmallOrder:
			if !errors.Is(err, ErrInvalidKey) || errors.Is(err, ErrMalformed) {
				t.Fatalf("NewPublicKey(%x) = %v, want ErrInvalidKey", b, err)
			}
		default:
			if err != nil {
				t.Fatalf("NewPublicKey(%x) = %v", b, err)
			}
			if !bytes.Equal(pk.Bytes(), b) {
				t.Fatalf("Bytes() = %x, want %x", pk.Bytes(), b)
			}
			again, err := NewPublicKey(pk.Bytes())
			if err != nil || !again.Equal(pk) {
				t.Fatalf("re-decoding failed: %v", err)
			}
		}
	})
}
