package schedule

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/moat-im/moat/crypto/mls/internal/suite"
	"github.com/moat-im/moat/crypto/mls/internal/treemath"
	"github.com/moat-im/moat/crypto/mls/internal/wire"
	"golang.org/x/crypto/cryptobyte"
)

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

func loadVectors(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// tally counts checks per suite and reports them as the issue asks:
// "<file>: suite N: k/k passed".
type tally struct {
	t      *testing.T
	file   string
	order  []uint16
	passed map[uint16]int
	total  map[uint16]int
}

func newTally(t *testing.T, file string) *tally {
	return &tally{t: t, file: file, passed: map[uint16]int{}, total: map[uint16]int{}}
}

func (c *tally) check(cs uint16, name string, ok bool) {
	c.t.Helper()
	if _, seen := c.total[cs]; !seen {
		c.order = append(c.order, cs)
	}
	c.total[cs]++
	if ok {
		c.passed[cs]++
	} else {
		c.t.Errorf("%s: suite %d: %s failed", c.file, cs, name)
	}
}

func (c *tally) report() {
	c.t.Helper()
	ran := 0
	for _, cs := range c.order {
		c.t.Logf("%s: suite %d: %d/%d passed", c.file, cs, c.passed[cs], c.total[cs])
		ran += c.total[cs]
	}
	if ran == 0 {
		c.t.Fatalf("%s: no vector ran", c.file)
	}
	// Every RFC 9420 suite the suite package supports must be in the file.
	for _, id := range suite.Supported {
		if id == suite.XWING_CHACHA20POLY1305_SHA256_Ed25519 {
			continue
		}
		if c.total[uint16(id)] == 0 {
			c.t.Errorf("%s: supported suite %v not covered", c.file, id)
		}
	}
}

func getSuite(t *testing.T, cs uint16) *suite.Suite {
	t.Helper()
	s, err := suite.Get(suite.ID(cs))
	if err != nil {
		t.Fatalf("suite %d: %v", cs, err)
	}
	return s
}

// encodeGroupContext encodes a GroupContext with empty extensions (§8.1).
func encodeGroupContext(cs uint16, groupID []byte, epoch uint64, treeHash, cth []byte) []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddUint16(1) // mls10
	b.AddUint16(cs)
	wire.AddVarBytes(b, groupID)
	b.AddUint64(epoch)
	wire.AddVarBytes(b, treeHash)
	wire.AddVarBytes(b, cth)
	wire.AddVarBytes(b, nil) // extensions
	return b.BytesOrPanic()
}

func TestKeyScheduleVectors(t *testing.T) {
	var vs []struct {
		CipherSuite       uint16   `json:"cipher_suite"`
		GroupID           hexBytes `json:"group_id"`
		InitialInitSecret hexBytes `json:"initial_init_secret"`
		Epochs            []struct {
			TreeHash                hexBytes `json:"tree_hash"`
			CommitSecret            hexBytes `json:"commit_secret"`
			PSKSecret               hexBytes `json:"psk_secret"`
			ConfirmedTranscriptHash hexBytes `json:"confirmed_transcript_hash"`
			GroupContext            hexBytes `json:"group_context"`
			JoinerSecret            hexBytes `json:"joiner_secret"`
			WelcomeSecret           hexBytes `json:"welcome_secret"`
			InitSecret              hexBytes `json:"init_secret"`
			SenderDataSecret        hexBytes `json:"sender_data_secret"`
			EncryptionSecret        hexBytes `json:"encryption_secret"`
			ExporterSecret          hexBytes `json:"exporter_secret"`
			EpochAuthenticator      hexBytes `json:"epoch_authenticator"`
			ExternalSecret          hexBytes `json:"external_secret"`
			ConfirmationKey         hexBytes `json:"confirmation_key"`
			MembershipKey           hexBytes `json:"membership_key"`
			ResumptionPSK           hexBytes `json:"resumption_psk"`
			ExternalPub             hexBytes `json:"external_pub"`
			Exporter                struct {
				Label   string   `json:"label"`
				Context hexBytes `json:"context"`
				Length  int      `json:"length"`
				Secret  hexBytes `json:"secret"`
			} `json:"exporter"`
		} `json:"epochs"`
	}
	loadVectors(t, "key-schedule.json", &vs)
	c := newTally(t, "key-schedule.json")
	for _, v := range vs {
		s := getSuite(t, v.CipherSuite)
		cs := v.CipherSuite
		initSecret := []byte(v.InitialInitSecret)
		for i, ep := range v.Epochs {
			gc := encodeGroupContext(cs, v.GroupID, uint64(i), ep.TreeHash, ep.ConfirmedTranscriptHash)
			c.check(cs, "group_context", bytes.Equal(gc, ep.GroupContext))
			e, err := Next(s, initSecret, ep.CommitSecret, ep.PSKSecret, gc)
			if err != nil {
				t.Fatalf("suite %d epoch %d: %v", cs, i, err)
			}
			for _, f := range []struct {
				name      string
				got, want []byte
			}{
				{"joiner_secret", e.JoinerSecret, ep.JoinerSecret},
				{"welcome_secret", e.WelcomeSecret, ep.WelcomeSecret},
				{"init_secret", e.InitSecret, ep.InitSecret},
				{"sender_data_secret", e.SenderDataSecret, ep.SenderDataSecret},
				{"encryption_secret", e.EncryptionSecret, ep.EncryptionSecret},
				{"exporter_secret", e.ExporterSecret, ep.ExporterSecret},
				{"epoch_authenticator", e.EpochAuthenticator, ep.EpochAuthenticator},
				{"external_secret", e.ExternalSecret, ep.ExternalSecret},
				{"confirmation_key", e.ConfirmationKey, ep.ConfirmationKey},
				{"membership_key", e.MembershipKey, ep.MembershipKey},
				{"resumption_psk", e.ResumptionPSK, ep.ResumptionPSK},
			} {
				c.check(cs, f.name, bytes.Equal(f.got, f.want))
			}
			ws, err := WelcomeSecretFromJoiner(s, ep.JoinerSecret, ep.PSKSecret)
			c.check(cs, "welcome_secret from joiner", err == nil && bytes.Equal(ws, ep.WelcomeSecret))
			_, pub, err := e.ExternalKeyPair()
			c.check(cs, "external_pub", err == nil && bytes.Equal(pub, ep.ExternalPub))
			x := ep.Exporter
			out, err := e.Exporter(x.Label, x.Context, x.Length)
			c.check(cs, "exporter", err == nil && bytes.Equal(out, x.Secret))
			initSecret = bytes.Clone(e.InitSecret)
			e.Destroy()
		}
	}
	c.report()
}

// encodeExternalPSKID encodes PreSharedKeyID with psktype external (§8.4).
func encodeExternalPSKID(id, nonce []byte) []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddUint8(1) // external
	wire.AddVarBytes(b, id)
	wire.AddVarBytes(b, nonce)
	return b.BytesOrPanic()
}

func TestPSKSecretVectors(t *testing.T) {
	var vs []struct {
		CipherSuite uint16 `json:"cipher_suite"`
		PSKs        []struct {
			PSKID    hexBytes `json:"psk_id"`
			PSK      hexBytes `json:"psk"`
			PSKNonce hexBytes `json:"psk_nonce"`
		} `json:"psks"`
		PSKSecret hexBytes `json:"psk_secret"`
	}
	loadVectors(t, "psk_secret.json", &vs)
	c := newTally(t, "psk_secret.json")
	for _, v := range vs {
		s := getSuite(t, v.CipherSuite)
		var psks []PSK
		for _, p := range v.PSKs {
			psks = append(psks, PSK{ID: encodeExternalPSKID(p.PSKID, p.PSKNonce), Value: p.PSK})
		}
		got, err := PSKSecret(s, psks)
		c.check(v.CipherSuite, "psk_secret", err == nil && bytes.Equal(got, v.PSKSecret))
	}
	c.report()
}

func TestSecretTreeVectors(t *testing.T) {
	var vs []struct {
		CipherSuite uint16 `json:"cipher_suite"`
		SenderData  struct {
			SenderDataSecret hexBytes `json:"sender_data_secret"`
			Ciphertext       hexBytes `json:"ciphertext"`
			Key              hexBytes `json:"key"`
			Nonce            hexBytes `json:"nonce"`
		} `json:"sender_data"`
		EncryptionSecret hexBytes `json:"encryption_secret"`
		Leaves           [][]struct {
			Generation       uint32   `json:"generation"`
			HandshakeKey     hexBytes `json:"handshake_key"`
			HandshakeNonce   hexBytes `json:"handshake_nonce"`
			ApplicationKey   hexBytes `json:"application_key"`
			ApplicationNonce hexBytes `json:"application_nonce"`
		} `json:"leaves"`
	}
	loadVectors(t, "secret-tree.json", &vs)
	c := newTally(t, "secret-tree.json")
	for _, v := range vs {
		s := getSuite(t, v.CipherSuite)
		cs := v.CipherSuite
		sd := v.SenderData
		k, n, err := SenderDataKeyNonce(s, sd.SenderDataSecret, sd.Ciphertext)
		c.check(cs, "sender_data", err == nil && bytes.Equal(k, sd.Key) && bytes.Equal(n, sd.Nonce))

		tree, err := NewSecretTree(s, v.EncryptionSecret, uint32(len(v.Leaves)))
		if err != nil {
			t.Fatalf("suite %d: %v", cs, err)
		}
		for i, gens := range v.Leaves {
			leaf := treemath.LeafIndex(i)
			for _, g := range gens {
				for _, want := range []struct {
					kind       Kind
					key, nonce []byte
				}{
					{Handshake, g.HandshakeKey, g.HandshakeNonce},
					{Application, g.ApplicationKey, g.ApplicationNonce},
				} {
					p, err := tree.Prepare(leaf, want.kind, g.Generation)
					ok := err == nil && bytes.Equal(p.Key(), want.key) && bytes.Equal(p.Nonce(), want.nonce)
					c.check(cs, "leaf "+want.kind.String(), ok)
					if err == nil {
						if err := tree.Commit(p); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
		}
		tree.Destroy()
	}
	c.report()
}

func TestTranscriptHashVectors(t *testing.T) {
	var vs []struct {
		CipherSuite                  uint16   `json:"cipher_suite"`
		ConfirmationKey              hexBytes `json:"confirmation_key"`
		AuthenticatedContent         hexBytes `json:"authenticated_content"`
		InterimTranscriptHashBefore  hexBytes `json:"interim_transcript_hash_before"`
		ConfirmedTranscriptHashAfter hexBytes `json:"confirmed_transcript_hash_after"`
		InterimTranscriptHashAfter   hexBytes `json:"interim_transcript_hash_after"`
	}
	loadVectors(t, "transcript-hashes.json", &vs)
	c := newTally(t, "transcript-hashes.json")
	for _, v := range vs {
		s := getSuite(t, v.CipherSuite)
		cs := v.CipherSuite
		// A commit's AuthenticatedContent ends with confirmation_tag<V>, a
		// MAC of Nh bytes; everything before it is the
		// ConfirmedTranscriptHashInput. (Package mls's transcript test
		// decodes the full structure instead.)
		ac := v.AuthenticatedContent
		tagField := cryptobyte.NewBuilder(nil)
		wire.AddVarBytes(tagField, make([]byte, s.Nh()))
		prefix := tagField.BytesOrPanic()[:len(tagField.BytesOrPanic())-s.Nh()]
		split := len(ac) - s.Nh() - len(prefix)
		if split < 0 || !bytes.Equal(ac[split:split+len(prefix)], prefix) {
			t.Fatalf("suite %d: authenticated_content does not end with an Nh-byte tag", cs)
		}
		confirmedInput, tag := ac[:split], ac[split+len(prefix):]

		confirmed := ConfirmedTranscriptHash(s, v.InterimTranscriptHashBefore, confirmedInput)
		c.check(cs, "confirmed_transcript_hash_after", bytes.Equal(confirmed, v.ConfirmedTranscriptHashAfter))
		c.check(cs, "confirmation_tag", s.VerifyMAC(v.ConfirmationKey, v.ConfirmedTranscriptHashAfter, tag))
		interim, err := InterimTranscriptHash(s, confirmed, tag)
		c.check(cs, "interim_transcript_hash_after", err == nil && bytes.Equal(interim, v.InterimTranscriptHashAfter))
	}
	c.report()
}
