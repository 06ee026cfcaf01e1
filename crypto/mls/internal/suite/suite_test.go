package suite

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/moat-im/moat/crypto/mls/internal/wire"
	"golang.org/x/crypto/cryptobyte"
)

func forEachSuite(t *testing.T, f func(t *testing.T, s *Suite)) {
	for _, id := range Supported {
		s, err := Get(id)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(id.String(), func(t *testing.T) { f(t, s) })
	}
}

func TestSignRoundTrip(t *testing.T) {
	forEachSuite(t, func(t *testing.T, s *Suite) {
		priv, pub, err := s.GenerateSignatureKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := s.SignaturePublicKeyOf(priv); err != nil || !bytes.Equal(got, pub) {
			t.Fatalf("SignaturePublicKeyOf: %v", err)
		}
		content := []byte("content")
		sig, err := s.SignWithLabel(priv, "LeafNodeTBS", content)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.VerifyWithLabel(pub, "LeafNodeTBS", content, sig); err != nil {
			t.Fatal(err)
		}
		// Wrong label, content, signature bit, key: all ErrVerify.
		if err := s.VerifyWithLabel(pub, "KeyPackageTBS", content, sig); err != ErrVerify {
			t.Errorf("wrong label: %v", err)
		}
		if err := s.VerifyWithLabel(pub, "LeafNodeTBS", []byte("contenT"), sig); err != ErrVerify {
			t.Errorf("wrong content: %v", err)
		}
		bad := bytes.Clone(sig)
		bad[len(bad)/2] ^= 1
		if err := s.VerifyWithLabel(pub, "LeafNodeTBS", content, bad); err != ErrVerify {
			t.Errorf("flipped signature bit: %v", err)
		}
		_, pub2, _ := s.GenerateSignatureKey(rand.Reader)
		if err := s.VerifyWithLabel(pub2, "LeafNodeTBS", content, sig); err != ErrVerify {
			t.Errorf("other key: %v", err)
		}
		for _, p := range [][]byte{nil, pub[:len(pub)-1], append(bytes.Clone(pub), 0)} {
			if err := s.VerifyWithLabel(p, "LeafNodeTBS", content, sig); err != ErrVerify {
				t.Errorf("malformed public key (len %d): %v", len(p), err)
			}
		}
		if _, err := s.SignWithLabel(priv[:len(priv)-1], "LeafNodeTBS", content); err == nil {
			t.Error("truncated private key signed")
		}
	})
}

func TestEncryptRoundTrip(t *testing.T) {
	forEachSuite(t, func(t *testing.T, s *Suite) {
		priv, pub, err := s.GenerateHPKEKey()
		if err != nil {
			t.Fatal(err)
		}
		if got, err := s.HPKEPublicKeyOf(priv); err != nil || !bytes.Equal(got, pub) {
			t.Fatalf("HPKEPublicKeyOf: %v", err)
		}
		ctx, pt := []byte("group context"), []byte("path secret")
		enc, ct, err := s.EncryptWithLabel(pub, "UpdatePathNode", ctx, pt)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.DecryptWithLabel(priv, "UpdatePathNode", ctx, enc, ct)
		if err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("decrypt: %v", err)
		}
		fails := map[string]func() ([]byte, error){
			"wrong label": func() ([]byte, error) { return s.DecryptWithLabel(priv, "Welcome", ctx, enc, ct) },
			"wrong context": func() ([]byte, error) {
				return s.DecryptWithLabel(priv, "UpdatePathNode", []byte("x"), enc, ct)
			},
			"flipped ct": func() ([]byte, error) {
				c := bytes.Clone(ct)
				c[0] ^= 1
				return s.DecryptWithLabel(priv, "UpdatePathNode", ctx, enc, c)
			},
			"truncated ct": func() ([]byte, error) {
				return s.DecryptWithLabel(priv, "UpdatePathNode", ctx, enc, ct[:len(ct)-1])
			},
			"truncated enc": func() ([]byte, error) {
				return s.DecryptWithLabel(priv, "UpdatePathNode", ctx, enc[:len(enc)-1], ct)
			},
			"empty enc": func() ([]byte, error) { return s.DecryptWithLabel(priv, "UpdatePathNode", ctx, nil, ct) },
			"bad private key": func() ([]byte, error) {
				return s.DecryptWithLabel(priv[:len(priv)-1], "UpdatePathNode", ctx, enc, ct)
			},
		}
		for name, f := range fails {
			if _, err := f(); err != ErrDecrypt {
				t.Errorf("%s: got %v, want ErrDecrypt", name, err)
			}
		}
		// The same with a key prepared ahead (DecryptWithLabelKey).
		key, err := s.PrepareDecryptionKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := s.DecryptWithLabelKey(key, "UpdatePathNode", ctx, enc, ct); err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("decrypt with a prepared key: %v", err)
		}
		other, _, err := s.GenerateHPKEKey()
		if err != nil {
			t.Fatal(err)
		}
		otherKey, err := s.PrepareDecryptionKey(other)
		if err != nil {
			t.Fatal(err)
		}
		for name, f := range map[string]func() ([]byte, error){
			"prepared, wrong label": func() ([]byte, error) { return s.DecryptWithLabelKey(key, "Welcome", ctx, enc, ct) },
			"prepared, wrong context": func() ([]byte, error) {
				return s.DecryptWithLabelKey(key, "UpdatePathNode", []byte("x"), enc, ct)
			},
			"prepared, truncated enc": func() ([]byte, error) {
				return s.DecryptWithLabelKey(key, "UpdatePathNode", ctx, enc[:len(enc)-1], ct)
			},
			"prepared, other key": func() ([]byte, error) { return s.DecryptWithLabelKey(otherKey, "UpdatePathNode", ctx, enc, ct) },
			"prepared, nil key":   func() ([]byte, error) { return s.DecryptWithLabelKey(nil, "UpdatePathNode", ctx, enc, ct) },
			"prepared, bad private key": func() ([]byte, error) {
				k, err := s.PrepareDecryptionKey(priv[:len(priv)-1])
				if err != nil {
					return nil, ErrDecrypt // refused when prepared
				}
				return s.DecryptWithLabelKey(k, "UpdatePathNode", ctx, enc, ct)
			},
		} {
			if _, err := f(); err != ErrDecrypt {
				t.Errorf("%s: got %v, want ErrDecrypt", name, err)
			}
		}
		// PrepareDecryption: the decapsulation of one enc done ahead. It
		// opens that enc (once ahead, then again in full), and other encs.
		encB, ctB, err := s.EncryptWithLabel(pub, "UpdatePathNode", ctx, pt)
		if err != nil {
			t.Fatal(err)
		}
		for name, f := range map[string]func() (*DecryptionKey, error){
			"ahead":           func() (*DecryptionKey, error) { return s.PrepareDecryption(priv, enc) },
			"ahead, nil enc":  func() (*DecryptionKey, error) { return s.PrepareDecryption(priv, nil) },
			"ahead, long enc": func() (*DecryptionKey, error) { return s.PrepareDecryption(priv, append(bytes.Clone(enc), 0)) },
		} {
			k, err := f()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			for _, c := range []struct{ enc, ct []byte }{{enc, ct}, {enc, ct}, {encB, ctB}, {enc, ct}} {
				if got, err := s.DecryptWithLabelKey(k, "UpdatePathNode", ctx, c.enc, c.ct); err != nil || !bytes.Equal(got, pt) {
					t.Fatalf("%s: decrypt: %v", name, err)
				}
			}
		}
		aheadFails := map[string]func() ([]byte, error){
			"ahead, wrong context": func() ([]byte, error) {
				k, _ := s.PrepareDecryption(priv, enc)
				return s.DecryptWithLabelKey(k, "UpdatePathNode", []byte("x"), enc, ct)
			},
			"ahead, flipped enc": func() ([]byte, error) {
				e := bytes.Clone(enc)
				e[0] ^= 1
				k, _ := s.PrepareDecryption(priv, e)
				return s.DecryptWithLabelKey(k, "UpdatePathNode", ctx, e, ct)
			},
			"ahead, other key": func() ([]byte, error) {
				k, _ := s.PrepareDecryption(other, enc)
				return s.DecryptWithLabelKey(k, "UpdatePathNode", ctx, enc, ct)
			},
		}
		for name, f := range aheadFails {
			if _, err := f(); err != ErrDecrypt {
				t.Errorf("%s: got %v, want ErrDecrypt", name, err)
			}
		}
		if k, err := s.PrepareDecryption(priv[:len(priv)-1], enc); err == nil {
			if _, err := s.DecryptWithLabelKey(k, "UpdatePathNode", ctx, enc, ct); err != ErrDecrypt {
				t.Errorf("truncated key prepared ahead: got %v, want ErrDecrypt", err)
			}
		} else if err != ErrInvalidKey {
			t.Errorf("PrepareDecryption of a truncated key: %v", err)
		}
		if _, _, err := s.EncryptWithLabel(pub[:len(pub)-1], "UpdatePathNode", ctx, pt); err != ErrInvalidPublicKey {
			t.Errorf("encrypting to a truncated public key: %v", err)
		}

		// Derandomised encapsulation is deterministic and decrypts normally.
		seed := make([]byte, s.EncapSeedSize())
		rand.Read(seed)
		enc1, ct1, err := s.EncryptWithLabelDerand(pub, "Escrow", ctx, pt, seed)
		if err != nil {
			t.Fatal(err)
		}
		enc2, ct2, _ := s.EncryptWithLabelDerand(pub, "Escrow", ctx, pt, seed)
		if !bytes.Equal(enc1, enc2) || !bytes.Equal(ct1, ct2) {
			t.Error("EncryptWithLabelDerand is not deterministic")
		}
		if got, err := s.DecryptWithLabel(priv, "Escrow", ctx, enc1, ct1); err != nil || !bytes.Equal(got, pt) {
			t.Errorf("decrypting derandomised output: %v", err)
		}
		if _, _, err := s.EncryptWithLabelDerand(pub, "Escrow", ctx, pt, seed[1:]); err != ErrLength {
			t.Errorf("short seed: %v", err)
		}
	})
}

func TestDeriveKeyPair(t *testing.T) {
	forEachSuite(t, func(t *testing.T, s *Suite) {
		ikm := bytes.Repeat([]byte{7}, s.Nh())
		priv1, pub1, err := s.DeriveKeyPair(ikm)
		if err != nil {
			t.Fatal(err)
		}
		priv2, pub2, _ := s.DeriveKeyPair(ikm)
		if !bytes.Equal(priv1, priv2) || !bytes.Equal(pub1, pub2) {
			t.Fatal("DeriveKeyPair is not deterministic")
		}
		if got, _ := s.HPKEPublicKeyOf(priv1); !bytes.Equal(got, pub1) {
			t.Fatal("derived private key does not match derived public key")
		}
		ikm[0] ^= 1
		_, pub3, _ := s.DeriveKeyPair(ikm)
		if bytes.Equal(pub1, pub3) {
			t.Fatal("DeriveKeyPair ignores its input")
		}
	})
}

// TestExternalInit is the §8.3 export round trip.
func TestExternalInit(t *testing.T) {
	forEachSuite(t, func(t *testing.T, s *Suite) {
		priv, pub, err := s.DeriveKeyPair(bytes.Repeat([]byte{1}, s.Nh()))
		if err != nil {
			t.Fatal(err)
		}
		const label = "MLS 1.0 external init secret"
		enc, secret, err := s.ExportSend(pub, nil, label, s.Nh())
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.ExportReceive(priv, enc, nil, label, s.Nh())
		if err != nil || !bytes.Equal(got, secret) || len(secret) != s.Nh() {
			t.Fatalf("ExportReceive: %v", err)
		}
		if got, _ := s.ExportReceive(priv, enc, nil, "other", s.Nh()); bytes.Equal(got, secret) {
			t.Error("exporter context ignored")
		}
		if _, err := s.ExportReceive(priv, enc[:len(enc)-1], nil, label, s.Nh()); err == nil {
			t.Error("truncated kem_output accepted")
		}
		if _, _, err := s.ExportSend(pub, nil, label, 1<<16); err != ErrLength {
			t.Errorf("oversized export: %v", err)
		}
	})
}

func TestAEAD(t *testing.T) {
	forEachSuite(t, func(t *testing.T, s *Suite) {
		key := make([]byte, s.Nk())
		nonce := make([]byte, s.Nn())
		rand.Read(key)
		aad, pt := []byte("aad"), []byte("hello")
		ct, err := s.Seal(key, nonce, aad, pt)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := s.Open(key, nonce, aad, ct); err != nil || !bytes.Equal(got, pt) {
			t.Fatalf("Open: %v", err)
		}
		for i := range ct {
			c := bytes.Clone(ct)
			c[i] ^= 0x80
			if _, err := s.Open(key, nonce, aad, c); err != ErrDecrypt {
				t.Fatalf("flipped byte %d: %v", i, err)
			}
		}
		if _, err := s.Open(key, nonce, []byte("aaD"), ct); err != ErrDecrypt {
			t.Error("wrong aad accepted")
		}
		if _, err := s.Open(key[1:], nonce, aad, ct); err != ErrDecrypt {
			t.Error("short key not ErrDecrypt")
		}
		if _, err := s.Open(key, nonce[1:], aad, ct); err != ErrDecrypt {
			t.Error("short nonce not ErrDecrypt")
		}
		if _, err := s.Seal(key, nonce[1:], aad, pt); err != ErrLength {
			t.Error("Seal with short nonce")
		}
		if _, err := s.Seal(key[1:], nonce, aad, pt); err != ErrLength {
			t.Error("Seal with short key")
		}
	})
}

func TestSizes(t *testing.T) {
	want := map[ID][3]int{ // Nh, Nk, Nn
		1: {32, 16, 12}, 2: {32, 16, 12}, 3: {32, 32, 12}, 4: {64, 32, 12},
		5: {64, 32, 12}, 6: {64, 32, 12}, 7: {48, 32, 12}, 0x4D: {32, 32, 12},
	}
	forEachSuite(t, func(t *testing.T, s *Suite) {
		w := want[s.ID()]
		if s.Nh() != w[0] || s.Nk() != w[1] || s.Nn() != w[2] {
			t.Errorf("Nh, Nk, Nn = %d, %d, %d; want %v", s.Nh(), s.Nk(), s.Nn(), w)
		}
		if len(s.Hash(nil)) != s.Nh() || len(s.MAC([]byte("k"), nil)) != s.Nh() || len(s.Extract(nil, nil)) != s.Nh() {
			t.Error("hash, MAC or Extract output is not Nh bytes")
		}
	})
}

func TestExpandBounds(t *testing.T) {
	forEachSuite(t, func(t *testing.T, s *Suite) {
		prk := s.Extract(nil, []byte("ikm"))
		if _, err := s.Expand(prk, nil, 255*s.Nh()); err != nil {
			t.Errorf("255*Nh: %v", err)
		}
		if _, err := s.Expand(prk, nil, 255*s.Nh()+1); err != ErrLength {
			t.Errorf("255*Nh+1: %v", err)
		}
		if _, err := s.ExpandWithLabel(prk, "l", nil, -1); err != ErrLength {
			t.Errorf("negative: %v", err)
		}
		if _, err := s.ExpandWithLabel(prk, "l", nil, 1<<16); err != ErrLength {
			t.Errorf("2^16: %v", err)
		}
		out, err := s.ExpandWithLabel(prk, "l", nil, 0)
		if err != nil || len(out) != 0 {
			t.Errorf("zero length: %v", err)
		}
	})
}

func TestVerifyMACAndEqual(t *testing.T) {
	s, _ := Get(X25519_AES128GCM_SHA256_Ed25519)
	key, data := []byte("key"), []byte("data")
	mac := s.MAC(key, data)
	if !s.VerifyMAC(key, data, mac) {
		t.Fatal("VerifyMAC rejected a good MAC")
	}
	mac[0] ^= 1
	if s.VerifyMAC(key, data, mac) || s.VerifyMAC(key, data, mac[:5]) {
		t.Fatal("VerifyMAC accepted a bad MAC")
	}
	if !Equal([]byte{1, 2}, []byte{1, 2}) || Equal([]byte{1, 2}, []byte{1, 3}) || Equal([]byte{1}, []byte{1, 0}) {
		t.Fatal("Equal")
	}
	b := []byte{1, 2, 3}
	Zero(b)
	if !bytes.Equal(b, []byte{0, 0, 0}) {
		t.Fatal("Zero")
	}
}

func TestPrivateKeysRedacted(t *testing.T) {
	sp := SignaturePrivateKey{0xde, 0xad, 0xbe, 0xef}
	hp := HPKEPrivateKey{0xde, 0xad, 0xbe, 0xef}
	for _, s := range []string{
		fmt.Sprint(sp), fmt.Sprintf("%v %s %#v", sp, sp, sp),
		fmt.Sprint(hp), fmt.Sprintf("%v %s %#v", hp, hp, hp),
	} {
		if strings.Contains(strings.ToLower(s), "dead") || strings.Contains(s, "222") {
			t.Errorf("private key printed: %q", s)
		}
	}
}

func TestUnsupportedSuiteError(t *testing.T) {
	_, err := Get(0x00ff)
	if !errors.Is(err, ErrUnsupportedSuite) {
		t.Fatalf("errors.Is: %v", err)
	}
	if !strings.Contains(err.Error(), "0x00ff") {
		t.Errorf("error text %q lacks the code point", err)
	}
}

// parseLabelled parses the label/content pair that labelledContent builds,
// checking the label prefix.
func parseLabelled(b []byte) (label string, content []byte, ok bool) {
	s := cryptobyte.String(b)
	var l, c []byte
	if !wire.ReadVarBytes(&s, &l) || !wire.ReadVarBytes(&s, &c) || !s.Empty() {
		return "", nil, false
	}
	if !bytes.HasPrefix(l, []byte(labelPrefix)) {
		return "", nil, false
	}
	return string(l[len(labelPrefix):]), c, true
}

// FuzzLabelledContent checks that the SignContent/EncryptContext and
// KDFLabel encoders produce what a strict RFC 9420 parser reads back.
func FuzzLabelledContent(f *testing.F) {
	f.Add("LeafNodeTBS", []byte("content"), uint16(32))
	f.Add("", []byte{}, uint16(0))
	f.Add(strings.Repeat("l", 100), bytes.Repeat([]byte{1}, 20000), uint16(65535))
	f.Fuzz(func(t *testing.T, label string, content []byte, length uint16) {
		b, err := labelledContent(label, content)
		if err != nil {
			t.Fatal(err)
		}
		l, c, ok := parseLabelled(b)
		if !ok || l != label || !bytes.Equal(c, content) {
			t.Fatalf("labelledContent round trip failed")
		}
		k, err := kdfLabel(length, label, content)
		if err != nil {
			t.Fatal(err)
		}
		s := cryptobyte.String(k)
		var n uint16
		if !s.ReadUint16(&n) || n != length {
			t.Fatal("KDFLabel length")
		}
		l, c, ok = parseLabelled(s)
		if !ok || l != label || !bytes.Equal(c, content) {
			t.Fatal("KDFLabel round trip failed")
		}
	})
}

// FuzzDecrypt feeds arbitrary KEM outputs, ciphertexts, keys and signatures
// to every suite: nothing may panic, and every failure must be the uniform
// error. When the top bit of which is set, key and enc are stretched or cut
// to the suite's real sizes, so that short fuzz inputs reach the KEM
// (ML-KEM decapsulation, curve arithmetic) rather than the length checks.
func FuzzDecrypt(f *testing.F) {
	f.Add(uint8(0), []byte{}, []byte{}, []byte{}, []byte{})
	f.Add(uint8(0x87), []byte{0xff}, []byte{1}, []byte{2}, []byte{3})
	f.Add(uint8(0x81), []byte{0x01}, []byte{4}, []byte{5}, []byte{6})
	sizes := map[ID][2]int{}
	for _, id := range Supported {
		s, _ := Get(id)
		priv, pub, _ := s.GenerateHPKEKey()
		enc, _, _ := s.EncryptWithLabel(pub, "x", nil, nil)
		sizes[id] = [2]int{len(priv), len(enc)}
	}
	f.Fuzz(func(t *testing.T, which uint8, key, enc, ct, sig []byte) {
		s, err := Get(Supported[int(which&0x7f)%len(Supported)])
		if err != nil {
			t.Fatal(err)
		}
		if which&0x80 != 0 {
			key = resize(key, sizes[s.ID()][0])
			enc = resize(enc, sizes[s.ID()][1])
		}
		if _, err := s.DecryptWithLabel(HPKEPrivateKey(key), "x", nil, enc, ct); err != nil && err != ErrDecrypt {
			t.Fatalf("DecryptWithLabel: %v", err)
		}
		if _, err := s.ExportReceive(HPKEPrivateKey(key), enc, nil, "x", 32); err != nil && err != ErrDecrypt {
			t.Fatalf("ExportReceive: %v", err)
		}
		if err := s.VerifyWithLabel(SignaturePublicKey(key), "x", ct, sig); err == nil {
			t.Fatal("random signature verified")
		}
		if _, err := s.Open(key, enc, nil, ct); err != ErrDecrypt {
			t.Fatalf("Open: %v", err)
		}
		_, _, _ = s.EncryptWithLabel(HPKEPublicKey(key), "x", nil, ct)
		_, _ = s.SignWithLabel(SignaturePrivateKey(key), "x", ct)
	})
}

// resize repeats or cuts b to n bytes.
func resize(b []byte, n int) []byte {
	if len(b) == 0 {
		b = []byte{0}
	}
	out := make([]byte, n)
	for i := range out {
		out[i] = b[i%len(b)] + byte(i/len(b))
	}
	return out
}

// TestT16LabelSeparation is adversarial case T16 at the primitive level: a
// signature or ciphertext made for one purpose (label, context) is rejected
// for any other, including when bytes move between label and content (the
// fields are length-prefixed, so "ab"+"c" and "a"+"bc" differ).
func TestT16LabelSeparation(t *testing.T) {
	forEachSuite(t, func(t *testing.T, s *Suite) {
		sigPriv, sigPub, err := s.GenerateSignatureKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := s.SignWithLabel(sigPriv, "FramedContentTBS", []byte("abc"))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			label   string
			content string
		}{
			{"LeafNodeTBS", "abc"}, {"KeyPackageTBS", "abc"}, {"GroupInfoTBS", "abc"},
			{"FramedContentTB", "Sabc"}, {"FramedContentTBSa", "bc"}, {"", "FramedContentTBSabc"},
		} {
			if err := s.VerifyWithLabel(sigPub, c.label, []byte(c.content), sig); err != ErrVerify {
				t.Errorf("signature for FramedContentTBS accepted as %q/%q", c.label, c.content)
			}
		}
		priv, pub, err := s.GenerateHPKEKey()
		if err != nil {
			t.Fatal(err)
		}
		enc, ct, err := s.EncryptWithLabel(pub, "UpdatePathNode", []byte("ctx"), []byte("secret"))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			label   string
			context string
		}{
			{"Welcome", "ctx"}, {"UpdatePathNod", "ectx"}, {"UpdatePathNodec", "tx"}, {"UpdatePathNode", ""},
		} {
			if _, err := s.DecryptWithLabel(priv, c.label, []byte(c.context), enc, ct); err != ErrDecrypt {
				t.Errorf("ciphertext for UpdatePathNode opened as %q/%q", c.label, c.context)
			}
		}
		// Same for the KDF: the label and context of ExpandWithLabel are
		// separated, and RefHash labels are distinct.
		secret := make([]byte, s.Nh())
		a, _ := s.ExpandWithLabel(secret, "ab", []byte("c"), 32)
		b, _ := s.ExpandWithLabel(secret, "a", []byte("bc"), 32)
		if bytes.Equal(a, b) {
			t.Error("ExpandWithLabel label/context boundary not separated")
		}
		if bytes.Equal(s.RefHash("MLS 1.0 KeyPackage Reference", []byte("v")), s.RefHash("MLS 1.0 Proposal Reference", []byte("v"))) {
			t.Error("RefHash ignores its label")
		}
	})
}
