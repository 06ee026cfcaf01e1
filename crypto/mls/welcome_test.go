package mls

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/moat-im/moat/crypto/mls/internal/schedule"
)

type welcomeFileVector struct {
	CipherSuite uint16 `json:"cipher_suite"`
	InitPriv    string `json:"init_priv"`
	SignerPub   string `json:"signer_pub"`
	KeyPackage  string `json:"key_package"`
	Welcome     string `json:"welcome"`
}

// TestWelcomeVectors runs testdata/welcome.json (FORMAT.md "Welcome"):
// find our entry, decrypt GroupSecrets and GroupInfo, verify the GroupInfo
// signature with signer_pub and its confirmation tag with the key schedule
// started from the joiner secret.
func TestWelcomeVectors(t *testing.T) {
	raw, err := os.ReadFile("testdata/welcome.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []welcomeFileVector
	if err := json.Unmarshal(raw, &vs); err != nil {
		t.Fatal(err)
	}
	passed, total := map[uint16]int{}, map[uint16]int{}
	for i, v := range vs {
		total[v.CipherSuite]++
		t.Run(fmt.Sprintf("%d/suite%d", i, v.CipherSuite), func(t *testing.T) {
			s, err := getSuite(CipherSuite(v.CipherSuite))
			if err != nil {
				t.Fatal(err)
			}
			kpm, err := DecodeMLSMessage(unhex(t, v.KeyPackage))
			if err != nil || kpm.KeyPackage == nil {
				t.Fatalf("key_package: %v", err)
			}
			wm, err := DecodeMLSMessage(unhex(t, v.Welcome))
			if err != nil || wm.Welcome == nil {
				t.Fatalf("welcome: %v", err)
			}
			noPSK := func(*PreSharedKeyID) ([]byte, error) { return nil, ErrMissingPSK }
			js, err := openWelcome(s, wm.Welcome, kpm.KeyPackage, HPKEPrivateKey(unhex(t, v.InitPriv)), noPSK)
			if err != nil {
				t.Fatal(err)
			}
			gi := js.groupInfo
			if err := gi.VerifySignature(SignaturePublicKey(unhex(t, v.SignerPub))); err != nil {
				t.Fatalf("group info signature: %v", err)
			}
			gc, err := gi.GroupContext.Encode()
			if err != nil {
				t.Fatal(err)
			}
			ep, err := schedule.NewEpoch(s, js.secrets.JoinerSecret, js.pskSecret, gc)
			if err != nil {
				t.Fatal(err)
			}
			if !ep.VerifyConfirmationTag(gi.GroupContext.ConfirmedTranscriptHash, gi.ConfirmationTag) {
				t.Fatal("confirmation tag does not verify")
			}

			// Negative: a flipped bit in the GroupInfo ciphertext, a wrong
			// init key and a wrong signer all fail.
			bad := *wm.Welcome
			bad.EncryptedGroupInfo = flipBit(bad.EncryptedGroupInfo, 3)
			if _, err := openWelcome(s, &bad, kpm.KeyPackage, HPKEPrivateKey(unhex(t, v.InitPriv)), noPSK); !errors.Is(err, ErrInvalidWelcome) {
				t.Errorf("flipped group info ciphertext: %v", err)
			}
			wrongPriv := flipBit(unhex(t, v.InitPriv), 9)
			if _, err := openWelcome(s, wm.Welcome, kpm.KeyPackage, HPKEPrivateKey(wrongPriv), noPSK); err == nil {
				t.Error("wrong init key accepted")
			}
			if err := gi.VerifySignature(SignaturePublicKey(kpm.KeyPackage.LeafNode.SignatureKey)); err == nil {
				t.Error("group info signature verifies under the joiner's key")
			}
			passed[v.CipherSuite]++
		})
	}
	logPassCounts(t, "welcome.json", passed, total)
}

// flipBit returns a copy of b with bit i (mod its length) flipped.
func flipBit(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	if len(c) > 0 {
		c[(i/8)%len(c)] ^= 1 << (i % 8)
	}
	return c
}
