package suite

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"path/filepath"
	"testing"

	circlhpke "github.com/cloudflare/circl/hpke"
)

// The X-Wing suite (0x004D) has no official MLS vectors. It is covered by
// the X-Wing KEM vectors (key expansion), Go's HPKE X-Wing vectors (the HPKE
// layer with the suite's exact KEM/KDF/AEAD), a differential check of
// DeriveKeyPair against circl, and the round trips in suite_test.go.

func xwingSuite(t *testing.T) *Suite {
	t.Helper()
	s, err := Get(XWING_CHACHA20POLY1305_SHA256_Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestXWingKEMVectors checks that a 32-byte X-Wing seed expands to the
// draft's public key (the serialisation this package uses for X-Wing
// private keys is the seed).
func TestXWingKEMVectors(t *testing.T) {
	var vs []struct {
		Seed hexBytes `json:"seed"`
		SK   hexBytes `json:"sk"`
		PK   hexBytes `json:"pk"`
	}
	loadJSON(t, filepath.Join("testdata", "xwing-test-vectors.json"), &vs)
	s := xwingSuite(t)
	passed := 0
	for i, v := range vs {
		if !bytes.Equal(v.SK, v.Seed) || len(v.Seed) != xwingSeedSize {
			t.Errorf("vector %d: unexpected shape (sk is not the 32-byte seed)", i)
			continue
		}
		pub, err := s.HPKEPublicKeyOf(HPKEPrivateKey(v.Seed))
		if err != nil || !bytes.Equal(pub, v.PK) {
			t.Errorf("vector %d: public key mismatch (err %v)", i, err)
			continue
		}
		passed++
	}
	t.Logf("xwing-test-vectors.json: suite 0x004D: %d/%d passed", passed, len(vs))
	if passed == 0 {
		t.Fatal("no X-Wing KEM vector ran")
	}
}

// TestXWingHPKEVectors runs Go's X-Wing HPKE vectors whose KDF and AEAD are
// the suite's (HKDF-SHA256, ChaCha20-Poly1305): key parsing, SetupBaseR,
// every Open in sequence, every Export, and a derandomised SetupBaseS that
// must reproduce enc.
func TestXWingHPKEVectors(t *testing.T) {
	var vs []struct {
		Mode        int      `json:"mode"`
		KEMID       uint16   `json:"kem_id"`
		KDFID       uint16   `json:"kdf_id"`
		AEADID      uint16   `json:"aead_id"`
		Info        hexBytes `json:"info"`
		IKME        hexBytes `json:"ikmE"`
		SKRm        hexBytes `json:"skRm"`
		PKRm        hexBytes `json:"pkRm"`
		Enc         hexBytes `json:"enc"`
		Encryptions []struct {
			AAD hexBytes `json:"aad"`
			CT  hexBytes `json:"ct"`
			PT  hexBytes `json:"pt"`
		} `json:"encryptions"`
		Exports []struct {
			Context hexBytes `json:"exporter_context"`
			L       int      `json:"L"`
			Value   hexBytes `json:"exported_value"`
		} `json:"exports"`
	}
	loadJSON(t, filepath.Join("testdata", "hpke-pq.json"), &vs)
	s := xwingSuite(t)
	ran, passed, total := 0, 0, 0
	check := func(name string, ok bool) {
		total++
		if ok {
			passed++
		} else {
			t.Errorf("%s failed", name)
		}
	}
	for _, v := range vs {
		if v.KEMID != 0x647a || v.KDFID != 0x0001 || v.AEADID != 0x0003 || v.Mode != 0 {
			continue
		}
		ran++
		pub, err := s.HPKEPublicKeyOf(HPKEPrivateKey(v.SKRm))
		check("public key", err == nil && bytes.Equal(pub, v.PKRm))

		r, err := s.kem.setupR(HPKEPrivateKey(v.SKRm), v.Enc, v.Info)
		if err != nil {
			t.Fatalf("setupR: %v", err)
		}
		for i, e := range v.Encryptions {
			pt, err := r.Open(e.AAD, e.CT)
			check("open "+string(rune('0'+i)), err == nil && bytes.Equal(pt, e.PT))
		}
		for _, e := range v.Exports {
			out, err := r.Export(string(e.Context), e.L)
			check("export", err == nil && bytes.Equal(out, e.Value))
		}

		enc, sc, err := s.kem.setupSDerand(HPKEPublicKey(v.PKRm), v.Info, v.IKME)
		check("derandomised encapsulation", err == nil && bytes.Equal(enc, v.Enc))
		if err == nil && len(v.Encryptions) > 0 {
			ct, err := sc.Seal(v.Encryptions[0].AAD, v.Encryptions[0].PT)
			check("derandomised seal", err == nil && bytes.Equal(ct, v.Encryptions[0].CT))
		}
	}
	t.Logf("hpke-pq.json: suite 0x004D (X-Wing, HKDF-SHA256, ChaCha20-Poly1305): %d/%d checks passed in %d vectors", passed, total, ran)
	if ran == 0 {
		t.Fatal("no X-Wing HPKE vector ran")
	}
}

// TestXWingDeriveKeyPairMatchesCircl checks DeriveKeyPair against circl's
// independent X-Wing HPKE KEM, whose DeriveKeyPair is also
// draft-connolly-cfrg-xwing-kem-06's SHAKE256(ikm, 32), for ikm of several
// lengths (MLS uses KDF.Nh = 32 bytes).
func TestXWingDeriveKeyPairMatchesCircl(t *testing.T) {
	s := xwingSuite(t)
	scheme := circlhpke.KEM_XWING.Scheme()
	for _, n := range []int{0, 1, 31, 32, 33, 64, 200} {
		for j := range 4 {
			ikm := make([]byte, n)
			seed := sha256.Sum256(binary.BigEndian.AppendUint32(nil, uint32(n<<8|j)))
			for i := range ikm {
				ikm[i] = seed[i%32] ^ byte(i>>5)
			}
			priv, pub, err := s.DeriveKeyPair(ikm)
			if err != nil {
				t.Fatal(err)
			}
			cpk, csk := scheme.DeriveKeyPair(ikm)
			cpub, _ := cpk.MarshalBinary()
			cpriv, _ := csk.MarshalBinary()
			if !bytes.Equal(pub, cpub) || !bytes.Equal(priv, cpriv) {
				t.Fatalf("len %d: DeriveKeyPair differs from circl", n)
			}
		}
	}
}
