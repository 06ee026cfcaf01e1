package bundle

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/mls"
)

// testKeyPackage makes an encoded MLS KeyPackage in Moat's default suite.
func testKeyPackage(t testing.TB) []byte {
	t.Helper()
	cs := mls.CipherSuite(0x004D)
	sig, _, err := mls.GenerateSignatureKey(cs)
	must(t, err)
	now := uint64(time.Now().Unix())
	kp, _, err := mls.NewKeyPackage(mls.KeyPackageOptions{CipherSuite: cs, SignatureKey: sig,
		Credential: mls.Credential{Type: mls.CredentialTypeBasic, Identity: []byte("device")},
		Lifetime:   mls.Lifetime{NotBefore: now - 60, NotAfter: now + 86400}})
	must(t, err)
	b, err := kp.Encode()
	must(t, err)
	return b
}

// TestKeyPackageItem: an item signed by the device's identity key over a
// self-signed MLS KeyPackage verifies and round-trips; another identity's
// signature, a KeyPackage that is not one (ErrMalformed in an upload) and
// a KeyPackage whose own MLS signature fails are refused, in an item and
// in an upload.
func TestKeyPackageItem(t *testing.T) {
	d, other := newDevice(t, 1, 1, 0), newDevice(t, 2, 1, 0)
	id := d.id.Public().Signing
	kp := testKeyPackage(t)
	item := SignKeyPackage(kp, d.id.Signing)
	must(t, item.Verify(id))
	enc, err := item.Marshal()
	must(t, err)
	got, err := ParseKeyPackageItem(enc)
	must(t, err)
	if !bytes.Equal(got.KeyPackage, kp) || !bytes.Equal(got.Signature, item.Signature) {
		t.Fatal("item does not round-trip")
	}
	if _, err := ParseKeyPackageItem(append(enc, 0)); err != ErrMalformed {
		t.Fatalf("trailing byte: %v", err)
	}
	must(t, d.upload.Verify(id))

	upload := func(items ...*KeyPackageItem) error {
		u := &Upload{KeyPackages: items}
		b, err := u.Marshal()
		if err != nil {
			return err
		}
		p, err := ParseUpload(b)
		if err != nil {
			return err
		}
		return p.Verify(id)
	}
	must(t, upload(item))

	// Signed by another device's identity.
	foreign := SignKeyPackage(kp, other.id.Signing)
	if err := foreign.Verify(id); !errors.Is(err, keys.ErrUnsignedPrekey) {
		t.Fatalf("foreign identity: %v", err)
	}
	if err := upload(item, foreign); !errors.Is(err, keys.ErrUnsignedPrekey) {
		t.Fatalf("upload with a foreign item: %v", err)
	}
	// A signature over other bytes.
	swapped := &KeyPackageItem{KeyPackage: kp, Signature: SignKeyPackage(testKeyPackage(t), d.id.Signing).Signature}
	if err := upload(swapped); !errors.Is(err, keys.ErrUnsignedPrekey) {
		t.Fatalf("signature over another KeyPackage: %v", err)
	}
	// Not an MLS KeyPackage, though signed.
	junk := SignKeyPackage([]byte("key package one"), d.id.Signing)
	if err := upload(junk); err != ErrMalformed {
		t.Fatalf("junk KeyPackage: %v", err)
	}
	if err := junk.Verify(id); !errors.Is(err, ErrKeyPackage) {
		t.Fatalf("junk KeyPackage, Verify: %v", err)
	}
	// The KeyPackage's own MLS signature broken (its last byte), though
	// the identity signed the result.
	bad := bytes.Clone(kp)
	bad[len(bad)-1] ^= 1
	if err := upload(SignKeyPackage(bad, d.id.Signing)); !errors.Is(err, ErrKeyPackage) {
		t.Fatalf("bad MLS signature: %v", err)
	}
	// Trailing bytes after the KeyPackage.
	if err := upload(SignKeyPackage(append(bytes.Clone(kp), 0), d.id.Signing)); err != ErrMalformed {
		t.Fatalf("KeyPackage with a trailing byte: %v", err)
	}
}

func FuzzParseKeyPackageItem(f *testing.F) {
	d := newDevice(f, 1, 1, 0)
	enc, err := d.upload.KeyPackages[0].Marshal()
	must(f, err)
	f.Add(enc)
	f.Add(enc[:10])
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		p, err := ParseKeyPackageItem(in)
		if err != nil {
			if err != ErrMalformed && !errors.Is(err, ErrKeyPackage) {
				t.Fatal(err)
			}
			return
		}
		clear(in)
		re, err := p.Marshal()
		if err != nil || !bytes.Equal(re, b) {
			t.Fatalf("item does not re-encode: %v", err)
		}
	})
}
