package suite

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// hexBytes decodes a hex JSON string.
type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	*h = v
	return err
}

func loadJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

type cryptoBasicsVector struct {
	CipherSuite uint16 `json:"cipher_suite"`
	RefHash     struct {
		Label string   `json:"label"`
		Value hexBytes `json:"value"`
		Out   hexBytes `json:"out"`
	} `json:"ref_hash"`
	ExpandWithLabel struct {
		Secret  hexBytes `json:"secret"`
		Label   string   `json:"label"`
		Context hexBytes `json:"context"`
		Length  int      `json:"length"`
		Out     hexBytes `json:"out"`
	} `json:"expand_with_label"`
	DeriveSecret struct {
		Secret hexBytes `json:"secret"`
		Label  string   `json:"label"`
		Out    hexBytes `json:"out"`
	} `json:"derive_secret"`
	DeriveTreeSecret struct {
		Secret     hexBytes `json:"secret"`
		Label      string   `json:"label"`
		Generation uint32   `json:"generation"`
		Length     int      `json:"length"`
		Out        hexBytes `json:"out"`
	} `json:"derive_tree_secret"`
	SignWithLabel struct {
		Priv      hexBytes `json:"priv"`
		Pub       hexBytes `json:"pub"`
		Content   hexBytes `json:"content"`
		Label     string   `json:"label"`
		Signature hexBytes `json:"signature"`
	} `json:"sign_with_label"`
	EncryptWithLabel struct {
		Priv       hexBytes `json:"priv"`
		Pub        hexBytes `json:"pub"`
		Label      string   `json:"label"`
		Context    hexBytes `json:"context"`
		Plaintext  hexBytes `json:"plaintext"`
		KEMOutput  hexBytes `json:"kem_output"`
		Ciphertext hexBytes `json:"ciphertext"`
	} `json:"encrypt_with_label"`
}

// TestCryptoBasicsVectors runs crypto-basics.json (FORMAT.md "Crypto
// Basics") for every suite in it. Each of the eight checks counts once per
// suite; a suite in the file that Get rejects is a failure, not a skip.
func TestCryptoBasicsVectors(t *testing.T) {
	var vs []cryptoBasicsVector
	loadJSON(t, filepath.Join("..", "..", "testdata", "crypto-basics.json"), &vs)
	ran := 0
	for _, v := range vs {
		s, err := Get(ID(v.CipherSuite))
		if err != nil {
			t.Errorf("suite %d: %v", v.CipherSuite, err)
			continue
		}
		passed, total := 0, 0
		check := func(name string, ok bool) {
			total++
			if ok {
				passed++
			} else {
				t.Errorf("suite %d: %s failed", v.CipherSuite, name)
			}
		}

		check("ref_hash", bytes.Equal(s.RefHash(v.RefHash.Label, v.RefHash.Value), v.RefHash.Out))

		e := v.ExpandWithLabel
		out, err := s.ExpandWithLabel(e.Secret, e.Label, e.Context, e.Length)
		check("expand_with_label", err == nil && bytes.Equal(out, e.Out))

		d := v.DeriveSecret
		out, err = s.DeriveSecret(d.Secret, d.Label)
		check("derive_secret", err == nil && bytes.Equal(out, d.Out))

		dt := v.DeriveTreeSecret
		out, err = s.DeriveTreeSecret(dt.Secret, dt.Label, dt.Generation, dt.Length)
		check("derive_tree_secret", err == nil && bytes.Equal(out, dt.Out))

		sw := v.SignWithLabel
		sigPriv, sigPub := SignaturePrivateKey(sw.Priv), SignaturePublicKey(sw.Pub)
		check("sign_with_label verify", s.VerifyWithLabel(sigPub, sw.Label, sw.Content, sw.Signature) == nil)
		sig, err := s.SignWithLabel(sigPriv, sw.Label, sw.Content)
		check("sign_with_label round trip", err == nil && s.VerifyWithLabel(sigPub, sw.Label, sw.Content, sig) == nil)
		pub, err := s.SignaturePublicKeyOf(sigPriv)
		check("signature public key", err == nil && bytes.Equal(pub, sw.Pub))

		ew := v.EncryptWithLabel
		encPriv, encPub := HPKEPrivateKey(ew.Priv), HPKEPublicKey(ew.Pub)
		pt, err := s.DecryptWithLabel(encPriv, ew.Label, ew.Context, ew.KEMOutput, ew.Ciphertext)
		check("encrypt_with_label decrypt", err == nil && bytes.Equal(pt, ew.Plaintext))
		kemOut, ct, err := s.EncryptWithLabel(encPub, ew.Label, ew.Context, ew.Plaintext)
		if err == nil {
			pt, err = s.DecryptWithLabel(encPriv, ew.Label, ew.Context, kemOut, ct)
		}
		check("encrypt_with_label round trip", err == nil && bytes.Equal(pt, ew.Plaintext))
		hpub, err := s.HPKEPublicKeyOf(encPriv)
		check("hpke public key", err == nil && bytes.Equal(hpub, ew.Pub))

		t.Logf("crypto-basics.json: suite %d: %d/%d passed", v.CipherSuite, passed, total)
		if passed == total {
			ran++
		}
	}
	if ran == 0 {
		t.Fatal("crypto-basics.json: no vector ran")
	}
	// Every RFC 9420 suite we claim must be covered by the file.
	covered := map[ID]bool{}
	for _, v := range vs {
		covered[ID(v.CipherSuite)] = true
	}
	for _, id := range Supported {
		if id != XWING_CHACHA20POLY1305_SHA256_Ed25519 && !covered[id] {
			t.Errorf("supported suite %v has no crypto-basics vector", id)
		}
	}
}

// TestSupportedSuites pins the suite list, so a suite that silently drops
// out of Get (or of Supported) fails here.
func TestSupportedSuites(t *testing.T) {
	want := []ID{1, 2, 3, 4, 5, 6, 7, 0x4D}
	if len(Supported) != len(want) {
		t.Fatalf("Supported has %d suites, want %d", len(Supported), len(want))
	}
	for i, id := range want {
		if Supported[i] != id {
			t.Errorf("Supported[%d] = %v, want %v", i, Supported[i], id)
		}
		s, err := Get(id)
		if err != nil {
			t.Errorf("Get(%v): %v", id, err)
			continue
		}
		if s.ID() != id {
			t.Errorf("Get(%v).ID() = %v", id, s.ID())
		}
	}
	if Default != XWING_CHACHA20POLY1305_SHA256_Ed25519 {
		t.Errorf("Default = %v", Default)
	}
	for _, id := range []ID{0, 8, 0x4C, 0x4E, 0xffff} {
		_, err := Get(id)
		var ue *UnsupportedSuiteError
		if err == nil || !asUnsupported(err, &ue) || ue.ID != id {
			t.Errorf("Get(%#x) = %v, want *UnsupportedSuiteError", uint16(id), err)
		}
	}
}

func asUnsupported(err error, target **UnsupportedSuiteError) bool {
	if !errors.Is(err, ErrUnsupportedSuite) {
		return false
	}
	return errors.As(err, target)
}
