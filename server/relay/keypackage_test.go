package relay_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/bundle"
	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/mls"
)

var (
	kpOnce  sync.Once
	kpBytes [][]byte
)

// testKeyPackages returns n KeyPackageItems signed by id: MLS
// KeyPackages in Moat's default suite, made once per test binary (the
// relay checks their form and own signature, not whose they are).
func testKeyPackages(id *keys.IdentitySigningPrivateKey, n int) []*bundle.KeyPackageItem {
	kpOnce.Do(func() {
		cs := mls.CipherSuite(0x004D)
		for range 4 {
			sig, _, err := mls.GenerateSignatureKey(cs)
			if err != nil {
				panic(err)
			}
			now := uint64(time.Now().Unix())
			kp, _, err := mls.NewKeyPackage(mls.KeyPackageOptions{CipherSuite: cs, SignatureKey: sig,
				Credential: mls.Credential{Type: mls.CredentialTypeBasic, Identity: []byte("device")},
				Lifetime:   mls.Lifetime{NotBefore: now - 60, NotAfter: now + 86400}})
			if err != nil {
				panic(err)
			}
			kpBytes = append(kpBytes, must(kp.Encode()))
		}
	})
	var out []*bundle.KeyPackageItem
	for i := range n {
		out = append(out, bundle.SignKeyPackage(kpBytes[i%len(kpBytes)], id))
	}
	return out
}

// TestKeyPackageUploadChecked: the relay refuses, storing nothing of the
// upload, a KeyPackage signed by another device's identity key, one whose
// own MLS signature fails, and one that is not an MLS KeyPackage; it
// stores a good one and hands it out as a KeyPackageItem that verifies
// under the device's identity (docs/spec/bundle.md §KeyPackages).
func TestKeyPackageUploadChecked(t *testing.T) {
	w := newWorld(t, worldOptions{})
	ctx := context.Background()
	a, other, asker := w.newDevice([16]byte{1}, 1, 1), w.newDevice([16]byte{1}, 1, 1), w.newDevice([16]byte{1}, 1, 1)
	good := testKeyPackages(a.idk.Signing, 1)[0]
	badMLS := bytes.Clone(good.KeyPackage)
	badMLS[len(badMLS)-1] ^= 1
	for name, item := range map[string]*bundle.KeyPackageItem{
		"another identity's signature": testKeyPackages(other.idk.Signing, 1)[0],
		"bad MLS signature":            bundle.SignKeyPackage(badMLS, a.idk.Signing),
		"not a KeyPackage":             bundle.SignKeyPackage([]byte("key package one"), a.idk.Signing),
	} {
		u := &bundle.Upload{KeyPackages: []*bundle.KeyPackageItem{good, item}}
		wantStatus(t, a.c.UploadPrekeys(ctx, must(u.Marshal())), http.StatusBadRequest)
		st, err := a.c.PrekeyStatus(ctx)
		ok(t, err)
		if st.KeyPackages != 0 {
			t.Fatalf("%s: the relay stored %d KeyPackages of a refused upload", name, st.KeyPackages)
		}
		_ = name
	}
	ok(t, a.c.UploadPrekeys(ctx, must((&bundle.Upload{KeyPackages: []*bundle.KeyPackageItem{good}}).Marshal())))
	b, err := asker.c.FetchKeyPackage(ctx, a.mailbox())
	ok(t, err)
	item, err := bundle.ParseKeyPackageItem(b)
	ok(t, err)
	ok(t, item.Verify(a.idk.Public().Signing))
	if !bytes.Equal(item.KeyPackage, good.KeyPackage) {
		t.Fatal("the relay handed out another KeyPackage")
	}
	if err := item.Verify(other.idk.Public().Signing); !errors.Is(err, keys.ErrUnsignedPrekey) {
		t.Fatalf("verifies under another identity: %v", err)
	}
}
