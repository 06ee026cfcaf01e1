package mls

import "testing"

// TestDefaultCipherSuite: a caller that picks no suite gets 0x004D, for
// the signature key, the KeyPackage and the group created from it.
func TestDefaultCipherSuite(t *testing.T) {
	if DefaultCipherSuite != 0x004D {
		t.Fatalf("DefaultCipherSuite = 0x%04x", uint16(DefaultCipherSuite))
	}
	sig, _, err := GenerateSignatureKey(0)
	if err != nil {
		t.Fatal(err)
	}
	kp, kps, err := NewKeyPackage(KeyPackageOptions{SignatureKey: sig, Credential: Credential{Type: CredentialTypeBasic, Identity: []byte("a")},
		Lifetime: Lifetime{NotBefore: uint64(groupTestNow.Unix()) - 60, NotAfter: uint64(groupTestNow.Unix()) + 86400}})
	if err != nil {
		t.Fatal(err)
	}
	if kp.CipherSuite != DefaultCipherSuite {
		t.Fatalf("KeyPackage suite 0x%04x", uint16(kp.CipherSuite))
	}
	g, err := NewGroup(testGroupConfig(), kp, kps, sig, NewGroupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if g.CipherSuite() != DefaultCipherSuite {
		t.Fatalf("group suite %v", g.CipherSuite())
	}
	if s := DefaultCipherSuite.String(); s != "MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519" {
		t.Fatalf("String() = %q", s)
	}
}
