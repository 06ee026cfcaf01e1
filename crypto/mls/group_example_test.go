package mls_test

import (
	"bytes"
	"fmt"
	"time"

	"github.com/moat-im/moat/crypto/mls"
)

// client makes a signature key and a KeyPackage in Moat's default suite.
func client(name string) (mls.SignaturePrivateKey, *mls.KeyPackage, *mls.KeyPackageSecrets) {
	cs := mls.CipherSuite(0x004D) // Moat's default, X-Wing
	sig, _, err := mls.GenerateSignatureKey(cs)
	if err != nil {
		panic(err)
	}
	now := uint64(time.Now().Unix())
	kp, kps, err := mls.NewKeyPackage(mls.KeyPackageOptions{
		CipherSuite:  cs,
		SignatureKey: sig,
		Credential:   mls.Credential{Type: mls.CredentialTypeBasic, Identity: []byte(name)},
		Lifetime:     mls.Lifetime{NotBefore: now - 60, NotAfter: now + 86400},
	})
	if err != nil {
		panic(err)
	}
	return sig, kp, kps
}

// Alice creates a group, adds Bob and sends him a message.
func Example() {
	cfg := mls.Config{
		// A real client checks the org certificate and KT proof here.
		Credentials: mls.CredentialValidatorFunc(func(mls.Credential, mls.SignaturePublicKey) error { return nil }),
	}
	aliceSig, aliceKP, aliceSecrets := client("alice")
	bobSig, bobKP, bobSecrets := client("bob")

	alice, err := mls.NewGroup(cfg, aliceKP, aliceSecrets, aliceSig, mls.NewGroupOptions{})
	if err != nil {
		panic(err)
	}
	res, err := alice.Commit(mls.CommitOptions{Add: []*mls.KeyPackage{bobKP}})
	if err != nil {
		panic(err)
	}
	// The delivery service echoes the Commit; Alice's group advances.
	if _, err := alice.Process(res.Message); err != nil {
		panic(err)
	}
	// Bob joins from the Welcome, with the tree served out of band.
	bob, err := mls.Join(cfg, res.Welcome, bobKP, bobSecrets, bobSig, mls.JoinOptions{RatchetTree: alice.RatchetTree()})
	if err != nil {
		panic(err)
	}
	fmt.Println("same epoch authenticator:", bytes.Equal(alice.EpochAuthenticator(), bob.EpochAuthenticator()))

	msg, err := alice.Encrypt([]byte("hello, Bob"), nil)
	if err != nil {
		panic(err)
	}
	pt, sender, err := bob.Decrypt(msg)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s (from leaf %d)\n", pt, sender)
	// Output:
	// same epoch authenticator: true
	// hello, Bob (from leaf 0)
}
