package mls

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"testing"
)

// passiveClientVector is one scenario of the passive-client-*.json files
// (testdata/FORMAT.md "Passive Client Scenarios").
type passiveClientVector struct {
	CipherSuite  uint16 `json:"cipher_suite"`
	ExternalPSKs []struct {
		PSKID string `json:"psk_id"`
		PSK   string `json:"psk"`
	} `json:"external_psks"`
	KeyPackage                string  `json:"key_package"`
	SignaturePriv             string  `json:"signature_priv"`
	EncryptionPriv            string  `json:"encryption_priv"`
	InitPriv                  string  `json:"init_priv"`
	Welcome                   string  `json:"welcome"`
	RatchetTree               *string `json:"ratchet_tree"`
	InitialEpochAuthenticator string  `json:"initial_epoch_authenticator"`
	Epochs                    []struct {
		Proposals          []string `json:"proposals"`
		Commit             string   `json:"commit"`
		EpochAuthenticator string   `json:"epoch_authenticator"`
	} `json:"epochs"`
}

// acceptAllCredentials is the credential validator of the interop vectors,
// whose basic credentials carry no proof.
var acceptAllCredentials = CredentialValidatorFunc(func(Credential, SignaturePublicKey) error { return nil })

// vectorConfig is the Config for the interop vectors: their lifetimes are
// [0, 2^64-1] and their credentials basic.
func vectorConfig() Config {
	return Config{Credentials: acceptAllCredentials, IgnoreLifetimeOnReceive: true, MaxLifetime: -1}
}

// padScalar left-pads a NIST-curve private key to its field length. FORMAT.md
// says ECDSA and DHKEM private keys are fixed-length big-endian scalars
// (Field-Element-to-Octet-String, SerializePrivateKey), but the
// passive-client files drop leading zero octets of some P-521 keys; the
// suite code parses the specified form only, so the test restores it.
func padScalar(cs CipherSuite, k []byte) []byte {
	n := map[CipherSuite]int{2: 32, 5: 66, 7: 48}[cs]
	if len(k) >= n {
		return k
	}
	return append(make([]byte, n-len(k)), k...)
}

// runPassiveClient joins from the Welcome, applies every epoch's proposals
// and commit, and checks every epoch authenticator.
func runPassiveClient(t *testing.T, v *passiveClientVector) error {
	kpm, err := DecodeMLSMessage(unhex(t, v.KeyPackage))
	if err != nil || kpm.KeyPackage == nil {
		return fmt.Errorf("key_package: %v", err)
	}
	kp := kpm.KeyPackage
	cfg := vectorConfig()
	psks := map[string][]byte{}
	for _, p := range v.ExternalPSKs {
		psks[string(unhex(t, p.PSKID))] = unhex(t, p.PSK)
	}
	cfg.ExternalPSK = func(id []byte) ([]byte, bool) { v, ok := psks[string(id)]; return v, ok }
	var opts JoinOptions
	if v.RatchetTree != nil {
		if opts.RatchetTree, err = DecodeRatchetTree(unhex(t, *v.RatchetTree)); err != nil {
			return fmt.Errorf("ratchet_tree: %v", err)
		}
	}
	cs := CipherSuite(v.CipherSuite)
	kps := &KeyPackageSecrets{InitKey: padScalar(cs, unhex(t, v.InitPriv)), EncryptionKey: padScalar(cs, unhex(t, v.EncryptionPriv))}
	g, err := Join(cfg, unhex(t, v.Welcome), kp, kps, padScalar(cs, unhex(t, v.SignaturePriv)), opts)
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	if !bytes.Equal(g.EpochAuthenticator(), unhex(t, v.InitialEpochAuthenticator)) {
		return fmt.Errorf("initial epoch authenticator differs")
	}
	for i, e := range v.Epochs {
		for j, p := range e.Proposals {
			if _, err := g.Process(unhex(t, p)); err != nil {
				return fmt.Errorf("epoch %d (group epoch %d): proposal %d: %w", i, g.Epoch(), j, err)
			}
		}
		r, err := g.Process(unhex(t, e.Commit))
		if err != nil {
			return fmt.Errorf("epoch %d (group epoch %d): commit: %w", i, g.Epoch(), err)
		}
		if r.Kind != ProcessedCommit {
			return fmt.Errorf("epoch %d: commit processed as %d", i, r.Kind)
		}
		if !bytes.Equal(g.EpochAuthenticator(), unhex(t, e.EpochAuthenticator)) {
			return fmt.Errorf("epoch %d (group epoch %d): epoch authenticator differs", i, g.Epoch())
		}
	}
	return nil
}

func testPassiveClientFile(t *testing.T, file string) {
	raw, err := os.ReadFile("testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	var vs []passiveClientVector
	if err := json.Unmarshal(raw, &vs); err != nil {
		t.Fatal(err)
	}
	passed, total := map[uint16]int{}, map[uint16]int{}
	for i := range vs {
		v := &vs[i]
		total[v.CipherSuite]++
		if err := runPassiveClient(t, v); err != nil {
			t.Errorf("%s #%d (suite %d, %d epochs): %v", file, i, v.CipherSuite, len(v.Epochs), err)
			continue
		}
		passed[v.CipherSuite]++
	}
	logPassCounts(t, file, passed, total)
}

// TestPassiveClientWelcome joins from each Welcome of
// passive-client-welcome.json (tree in the Welcome or out of band).
func TestPassiveClientWelcome(t *testing.T) { testPassiveClientFile(t, "passive-client-welcome.json") }

// TestPassiveClientHandlingCommit follows the commits of
// passive-client-handling-commit.json.
func TestPassiveClientHandlingCommit(t *testing.T) {
	testPassiveClientFile(t, "passive-client-handling-commit.json")
}

// TestPassiveClientRandom follows the long random scenario of
// passive-client-random.json.
func TestPassiveClientRandom(t *testing.T) { testPassiveClientFile(t, "passive-client-random.json") }
