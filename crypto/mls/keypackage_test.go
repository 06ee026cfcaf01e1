package mls

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/mls/internal/suite"
)

var acceptAll = CredentialValidatorFunc(func(Credential, SignaturePublicKey) error { return nil })

func newSigner(t testing.TB, cs CipherSuite) SignaturePrivateKey {
	t.Helper()
	s, err := suite.Get(suite.ID(cs))
	if err != nil {
		t.Fatal(err)
	}
	priv, _, err := s.GenerateSignatureKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return SignaturePrivateKey(priv)
}

var testNow = time.Unix(1_800_000_000, 0)

func testKeyPackageOptions(t testing.TB, cs CipherSuite) KeyPackageOptions {
	return KeyPackageOptions{
		CipherSuite:  cs,
		SignatureKey: newSigner(t, cs),
		Credential:   Credential{Type: CredentialTypeMoatOrg, Data: []byte("org cert + KT proof")},
		Capabilities: Capabilities{
			CipherSuites: []CipherSuite{0x0a0a},
			Extensions:   []ExtensionType{0x1a1a},
			Credentials:  []CredentialType{CredentialTypeBasic},
		},
		Lifetime:       Lifetime{NotBefore: uint64(testNow.Unix()) - 3600, NotAfter: uint64(testNow.Unix()) + 30*86400},
		LeafExtensions: Extensions{{Type: ExtensionTypeApplicationID, Data: []byte{3, 'd', 'e', 'v'}}, {Type: 0xff00, Data: []byte{1}}},
		Extensions:     Extensions{{Type: 0x2a2a, Data: []byte("grease")}},
	}
}

func testGroupParams(cs CipherSuite) *GroupParams {
	return &GroupParams{CipherSuite: cs, GroupID: []byte("group"), Now: testNow, Credentials: acceptAll}
}

func TestNewKeyPackageValidates(t *testing.T) {
	for _, id := range suite.Supported {
		cs := CipherSuite(id)
		t.Run(id.String(), func(t *testing.T) {
			kp, secrets, err := NewKeyPackage(testKeyPackageOptions(t, cs))
			if err != nil {
				t.Fatal(err)
			}
			if err := ValidateKeyPackage(kp, testGroupParams(cs)); err != nil {
				t.Fatal(err)
			}
			// The secrets match the public keys.
			s, _ := suite.Get(id)
			if pub, err := s.HPKEPublicKeyOf(suite.HPKEPrivateKey(secrets.InitKey)); err != nil || !bytes.Equal(pub, kp.InitKey) {
				t.Error("init key does not match its secret")
			}
			if pub, err := s.HPKEPublicKeyOf(suite.HPKEPrivateKey(secrets.EncryptionKey)); err != nil || !bytes.Equal(pub, kp.LeafNode.EncryptionKey) {
				t.Error("encryption key does not match its secret")
			}
			// It survives an MLSMessage round trip with valid signatures.
			enc := mustEncode(t, (&MLSMessage{WireFormat: WireFormatKeyPackage, KeyPackage: kp}).Encode)
			m, err := DecodeMLSMessage(enc)
			if err != nil {
				t.Fatal(err)
			}
			if err := ValidateKeyPackage(m.KeyPackage, testGroupParams(cs)); err != nil {
				t.Fatal(err)
			}
			ref1, err := kp.Ref()
			if err != nil || len(ref1) != s.Nh() {
				t.Fatalf("ref %x %v", ref1, err)
			}
			ref2, _ := m.KeyPackage.Ref()
			if !bytes.Equal(ref1, ref2) {
				t.Error("ref changed over a round trip")
			}
		})
	}
}

// TestValidateKeyPackageRejects mutates a valid KeyPackage or the group's
// parameters one check at a time; each must be refused with
// ErrInvalidKeyPackage.
func TestValidateKeyPackageRejects(t *testing.T) {
	const cs = CipherSuite(suite.X25519_AES128GCM_SHA256_Ed25519)
	opts := testKeyPackageOptions(t, cs)
	kp, _, err := NewKeyPackage(opts)
	if err != nil {
		t.Fatal(err)
	}
	resign := func(k *KeyPackage) {
		if err := k.LeafNode.Sign(cs, opts.SignatureKey, nil, 0); err != nil {
			t.Fatal(err)
		}
		if err := k.Sign(opts.SignatureKey); err != nil {
			t.Fatal(err)
		}
	}
	rc := func(r RequiredCapabilities) Extensions {
		return Extensions{{Type: ExtensionTypeRequiredCapabilities, Data: mustEncode(t, r.Encode)}}
	}
	errCred := errors.New("unknown org")
	cases := []struct {
		name   string
		kp     func(*KeyPackage)
		group  func(*GroupParams)
		target error
	}{
		{name: "version", kp: func(k *KeyPackage) { k.Version = 2; resign(k) }},
		{name: "suite differs from group", group: func(g *GroupParams) { g.CipherSuite = 3 }},
		{name: "init key equals encryption key", kp: func(k *KeyPackage) { k.InitKey = slices.Clone(k.LeafNode.EncryptionKey); resign(k) }},
		{name: "KeyPackage signature", kp: func(k *KeyPackage) { k.Signature[3] ^= 1 }, target: ErrInvalidSignature},
		{name: "KeyPackage signed by another key", kp: func(k *KeyPackage) {
			if err := k.Sign(newSigner(t, cs)); err != nil {
				t.Fatal(err)
			}
		}, target: ErrInvalidSignature},
		{name: "LeafNode signature", kp: func(k *KeyPackage) { k.LeafNode.Signature[0] ^= 1; resign2(t, k, opts.SignatureKey) }, target: ErrInvalidSignature},
		{name: "extension field changed after signing", kp: func(k *KeyPackage) { k.Extensions[0].Data = []byte("other") }, target: ErrInvalidSignature},
		{name: "leaf_node_source", kp: func(k *KeyPackage) {
			k.LeafNode.Source, k.LeafNode.Lifetime = LeafNodeSourceUpdate, nil
			resign(k)
		}},
		{name: "credential not in capabilities", kp: func(k *KeyPackage) {
			k.LeafNode.Capabilities.Credentials = []CredentialType{CredentialTypeBasic}
			resign(k)
		}},
		{name: "leaf extension not in capabilities", kp: func(k *KeyPackage) {
			k.LeafNode.Capabilities.Extensions = []ExtensionType{0x1a1a}
			resign(k)
		}},
		{name: "credential rejected", group: func(g *GroupParams) {
			g.Credentials = CredentialValidatorFunc(func(Credential, SignaturePublicKey) error { return errCred })
		}, target: errCred},
		{name: "no credential validator", group: func(g *GroupParams) { g.Credentials = nil }},
		{name: "lifetime over default maximum", kp: func(k *KeyPackage) {
			k.LeafNode.Lifetime.NotAfter = k.LeafNode.Lifetime.NotBefore + uint64(DefaultMaxLifetime/time.Second) + 1
			resign(k)
		}},
		{name: "lifetime over group maximum", group: func(g *GroupParams) { g.MaxLifetime = 24 * time.Hour }},
		{name: "lifetime inverted", kp: func(k *KeyPackage) {
			k.LeafNode.Lifetime.NotBefore, k.LeafNode.Lifetime.NotAfter = k.LeafNode.Lifetime.NotAfter, k.LeafNode.Lifetime.NotBefore
			resign(k)
		}},
		{name: "not yet valid", group: func(g *GroupParams) { g.Now = testNow.Add(-2 * time.Hour) }},
		{name: "expired", group: func(g *GroupParams) { g.Now = testNow.Add(31 * 24 * time.Hour) }},
		{name: "group extension unsupported", group: func(g *GroupParams) { g.Extensions = Extensions{{Type: 0xff77}} }},
		{name: "required extension unsupported", group: func(g *GroupParams) {
			g.Extensions = rc(RequiredCapabilities{ExtensionTypes: []ExtensionType{0xff01}})
		}},
		{name: "required proposal unsupported", group: func(g *GroupParams) {
			g.Extensions = rc(RequiredCapabilities{ProposalTypes: []ProposalType{0xff02}})
		}},
		{name: "required credential unsupported", group: func(g *GroupParams) {
			g.Extensions = rc(RequiredCapabilities{CredentialTypes: []CredentialType{CredentialTypeX509}})
		}},
		{name: "malformed required_capabilities", group: func(g *GroupParams) {
			g.Extensions = Extensions{{Type: ExtensionTypeRequiredCapabilities, Data: []byte{1}}}
		}, target: ErrMalformed},
		{name: "credential type in use unsupported", group: func(g *GroupParams) {
			g.CredentialTypesInUse = []CredentialType{CredentialTypeX509}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k, err := DecodeKeyPackage(mustEncode(t, kp.Encode))
			if err != nil {
				t.Fatal(err)
			}
			g := testGroupParams(cs)
			if c.kp != nil {
				c.kp(k)
			}
			if c.group != nil {
				c.group(g)
			}
			err = ValidateKeyPackage(k, g)
			if !errors.Is(err, ErrInvalidKeyPackage) {
				t.Fatalf("err = %v, want ErrInvalidKeyPackage", err)
			}
			if c.target != nil && !errors.Is(err, c.target) {
				t.Fatalf("err = %v, want %v", err, c.target)
			}
		})
	}
	// The unmodified KeyPackage passes with the same parameters, and with
	// what the group may legitimately require.
	g := testGroupParams(cs)
	g.Extensions = append(rc(RequiredCapabilities{ExtensionTypes: []ExtensionType{0xff00, ExtensionTypeExternalSenders},
		ProposalTypes: []ProposalType{ProposalTypeAdd}, CredentialTypes: []CredentialType{CredentialTypeMoatOrg}}),
		Extension{Type: 0xff00}, Extension{Type: ExtensionTypeExternalSenders})
	g.CredentialTypesInUse = []CredentialType{CredentialTypeBasic, CredentialTypeMoatOrg}
	if err := ValidateKeyPackage(kp, g); err != nil {
		t.Fatal(err)
	}
	g.Now = time.Time{} // received late: window not checked
	g.MaxLifetime = 31 * 24 * time.Hour
	if err := ValidateKeyPackage(kp, g); err != nil {
		t.Fatal(err)
	}
}

// resign2 re-signs only the KeyPackage, leaving a tampered LeafNode
// signature in place.
func resign2(t *testing.T, k *KeyPackage, priv SignaturePrivateKey) {
	if err := k.Sign(priv); err != nil {
		t.Fatal(err)
	}
}

func TestLeafNodeSignatureCoversGroup(t *testing.T) {
	const cs = CipherSuite(suite.X25519_CHACHA20POLY1305_SHA256_Ed25519)
	priv := newSigner(t, cs)
	s, _ := suite.Get(suite.ID(cs))
	pub, _ := s.SignaturePublicKeyOf(suite.SignaturePrivateKey(priv))
	for _, src := range []LeafNodeSource{LeafNodeSourceUpdate, LeafNodeSourceCommit} {
		ln := testLeafNode(src)
		ln.SignatureKey = SignaturePublicKey(pub)
		ln.Credential = Credential{Type: CredentialTypeBasic, Identity: []byte("alice")}
		if err := ln.Sign(cs, priv, []byte("g1"), 5); err != nil {
			t.Fatal(err)
		}
		if err := ln.VerifySignature(cs, []byte("g1"), 5); err != nil {
			t.Fatal(err)
		}
		for _, wrong := range []struct {
			g    string
			leaf uint32
		}{{"g2", 5}, {"g1", 4}} {
			if err := ln.VerifySignature(cs, []byte(wrong.g), wrong.leaf); !errors.Is(err, ErrInvalidSignature) {
				t.Errorf("source %d verified under group %q leaf %d: %v", src, wrong.g, wrong.leaf, err)
			}
		}
		g := testGroupParams(cs)
		g.GroupID = []byte("g1")
		if err := ValidateLeafNode(&ln, src, 5, g); err != nil {
			t.Errorf("source %d: %v", src, err)
		}
		other := LeafNodeSourceUpdate + LeafNodeSourceCommit - src
		if err := ValidateLeafNode(&ln, other, 5, g); !errors.Is(err, ErrLeafNodeValidation) {
			t.Errorf("source %d accepted as %d: %v", src, other, err)
		}
		if err := ValidateLeafNode(&ln, src, 6, g); !errors.Is(err, ErrInvalidSignature) {
			t.Errorf("source %d accepted at another leaf: %v", src, err)
		}
	}
	ln := testLeafNode(LeafNodeSourceUpdate)
	if err := ln.Sign(0x0a0a, priv, nil, 0); !errors.Is(err, ErrUnsupportedCipherSuite) {
		t.Errorf("unsupported suite: %v", err)
	}
}

func TestGroupInfoSignature(t *testing.T) {
	const cs = CipherSuite(suite.P256_AES128GCM_SHA256_P256)
	priv := newSigner(t, cs)
	s, _ := suite.Get(suite.ID(cs))
	pub, _ := s.SignaturePublicKeyOf(suite.SignaturePrivateKey(priv))
	gi := &GroupInfo{GroupContext: GroupContext{CipherSuite: cs, GroupID: []byte("g"), Epoch: 7}, ConfirmationTag: []byte{1}, Signer: 2}
	if err := gi.Sign(priv); err != nil {
		t.Fatal(err)
	}
	if err := gi.VerifySignature(SignaturePublicKey(pub)); err != nil {
		t.Fatal(err)
	}
	gi.Signer = 3
	if err := gi.VerifySignature(SignaturePublicKey(pub)); !errors.Is(err, ErrInvalidSignature) {
		t.Errorf("signer changed: %v", err)
	}
}

// welcomeVector is the part of welcome.json and the passive-client files
// this file checks.
type welcomeVector struct {
	CipherSuite uint16   `json:"cipher_suite"`
	InitPriv    hexBytes `json:"init_priv"`
	SignerPub   hexBytes `json:"signer_pub"`
	KeyPackage  hexBytes `json:"key_package"`
	Welcome     hexBytes `json:"welcome"`
}

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

// TestKeyPackageVectors checks, for every KeyPackage in welcome.json and
// the passive-client files: the KeyPackage and LeafNode signatures verify,
// §10.1 validation passes (lifetime window aside: the vectors are old), and
// the KeyPackageRef names exactly one of the Welcome's recipients, whose
// GroupSecrets then decrypt with init_priv and decode.
func TestKeyPackageVectors(t *testing.T) {
	for _, file := range []string{"welcome.json", "passive-client-welcome.json", "passive-client-handling-commit.json", "passive-client-random.json"} {
		raw, err := os.ReadFile("testdata/" + file)
		if err != nil {
			t.Fatal(err)
		}
		var vs []welcomeVector
		if err := json.Unmarshal(raw, &vs); err != nil {
			t.Fatal(err)
		}
		passed := map[uint16]int{}
		total := map[uint16]int{}
		for i, v := range vs {
			total[v.CipherSuite]++
			if err := checkKeyPackageVector(&v); err != nil {
				t.Errorf("%s #%d (suite %d): %v", file, i, v.CipherSuite, err)
				continue
			}
			passed[v.CipherSuite]++
		}
		for _, cs := range slices.Sorted(func(yield func(uint16) bool) {
			for k := range total {
				if !yield(k) {
					return
				}
			}
		}) {
			t.Logf("%s: suite %d: %d/%d KeyPackages (signatures, validation, ref, GroupSecrets) passed", file, cs, passed[cs], total[cs])
		}
	}
}

func checkKeyPackageVector(v *welcomeVector) error {
	m, err := DecodeMLSMessage(v.KeyPackage)
	if err != nil {
		return err
	}
	kp := m.KeyPackage
	if kp == nil {
		return errors.New("not a KeyPackage")
	}
	cs := CipherSuite(v.CipherSuite)
	if kp.CipherSuite != cs {
		return fmt.Errorf("KeyPackage suite %d", kp.CipherSuite)
	}
	g := &GroupParams{CipherSuite: cs, Credentials: acceptAll, MaxLifetime: -1}
	if err := ValidateKeyPackage(kp, g); err != nil {
		return err
	}
	ref, err := kp.Ref()
	if err != nil {
		return err
	}
	w, err := DecodeMLSMessage(v.Welcome)
	if err != nil {
		return err
	}
	if w.Welcome == nil || w.Welcome.CipherSuite != cs {
		return errors.New("not a Welcome for the suite")
	}
	var mine *EncryptedGroupSecrets
	for i := range w.Welcome.Secrets {
		if bytes.Equal(w.Welcome.Secrets[i].NewMember, ref) {
			if mine != nil {
				return errors.New("KeyPackageRef listed twice")
			}
			mine = &w.Welcome.Secrets[i]
		}
	}
	if mine == nil {
		return fmt.Errorf("KeyPackageRef %x not among the Welcome's recipients", ref)
	}
	s, _ := suite.Get(suite.ID(cs))
	initPriv := padP521Scalar(cs, v.InitPriv)
	pt, err := s.DecryptWithLabel(suite.HPKEPrivateKey(initPriv), labelWelcome, w.Welcome.EncryptedGroupInfo,
		mine.EncryptedGroupSecrets.KEMOutput, mine.EncryptedGroupSecrets.Ciphertext)
	if err != nil {
		return fmt.Errorf("GroupSecrets: %w", err)
	}
	gs, err := DecodeGroupSecrets(pt)
	if err != nil {
		return err
	}
	if len(gs.JoinerSecret) != s.Nh() {
		return fmt.Errorf("joiner_secret of %d bytes", len(gs.JoinerSecret))
	}
	return nil
}

// padP521Scalar restores the leading zero octets some P-521 interop vectors
// drop from private scalars: RFC 9180 SerializePrivateKey and the
// Field-Element-to-Octet-String encoding FORMAT.md names are always 66
// octets, and the suite package parses exactly that.
func padP521Scalar(cs CipherSuite, priv []byte) []byte {
	if cs != CipherSuite(suite.P521_AES256GCM_SHA512_P521) || len(priv) >= 66 {
		return priv
	}
	return append(make([]byte, 66-len(priv)), priv...)
}
