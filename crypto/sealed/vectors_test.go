package sealed

import (
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
)

var update = flag.Bool("update", false, "regenerate testdata/envelope.json")

// vector is testdata/envelope.json (docs/spec/envelope.md §Test vectors).
type vector struct {
	Notes            string `json:"notes"`
	SealedSenderSeed string `json:"sealed_sender_seed"`
	SealedSenderKey  string `json:"sealed_sender_public_key"`
	Mailbox          string `json:"mailbox"`
	KeyID            uint32 `json:"key_id"`
	MessageID        string `json:"message_id"`
	TTL              uint32 `json:"ttl"`
	SenderTenant     string `json:"sender_tenant"`
	SenderUser       string `json:"sender_user"`
	SenderDevice     string `json:"sender_device"`
	SenderSerial     uint64 `json:"sender_serial"`
	SenderSigning    string `json:"sender_signing"`
	SenderDH         string `json:"sender_dh"`
	TimestampMS      int64  `json:"timestamp_ms"`
	ContentType      uint8  `json:"content_type"`
	Content          string `json:"content"`
	Envelope         string `json:"envelope"`
}

const vectorNotes = "An envelope sealed by crypto/sealed (docs/spec/envelope.md). sealed_sender_seed is the recipient's " +
	"32-byte X-Wing seed, sealed_sender_public_key its tagged public key; mailbox, key_id, message_id and ttl are the " +
	"header; the sender_* fields, timestamp_ms, content_type and content are what the envelope opens to. All byte " +
	"strings are hexadecimal. HPKE sealing is randomised, so regenerating the file (go test ./crypto/sealed -run " +
	"TestVector -update) changes envelope; opening it must always give these fields."

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	must(t, err)
	return b
}

func TestVector(t *testing.T) {
	path := filepath.Join("testdata", "envelope.json")
	if *update {
		writeVector(t, path)
	}
	data, err := os.ReadFile(path)
	must(t, err)
	var v vector
	must(t, json.Unmarshal(data, &v))
	sk, err := keys.NewSealedSenderPrivateKey(unhex(t, v.SealedSenderSeed))
	must(t, err)
	if hex.EncodeToString(sk.Public().Bytes()) != v.SealedSenderKey {
		t.Fatal("the seed does not derive the recorded public key")
	}
	var mb MailboxID
	copy(mb[:], unhex(t, v.Mailbox))
	k := NewKeyring(mb)
	k.Add(v.KeyID, sk)
	env := unhex(t, v.Envelope)
	o, err := k.Open(env)
	must(t, err)
	got := vector{
		Notes: v.Notes, SealedSenderSeed: v.SealedSenderSeed, SealedSenderKey: v.SealedSenderKey, Envelope: v.Envelope,
		Mailbox: hex.EncodeToString(o.Header.Mailbox[:]), KeyID: o.Header.KeyID,
		MessageID: hex.EncodeToString(o.MessageID[:]), TTL: o.TTL,
		SenderTenant: hex.EncodeToString(o.Sender.Tenant[:]), SenderUser: hex.EncodeToString(o.Sender.User[:]),
		SenderDevice: hex.EncodeToString(o.Sender.Device[:]), SenderSerial: o.Sender.Serial,
		SenderSigning: hex.EncodeToString(o.Sender.Identity.Signing.Bytes()), SenderDH: hex.EncodeToString(o.Sender.Identity.DH.Bytes()),
		TimestampMS: o.Timestamp.UnixMilli(), ContentType: uint8(o.ContentType), Content: hex.EncodeToString(o.Content),
	}
	if got != v {
		t.Fatalf("the vector opens to\n%+v\nwant\n%+v", got, v)
	}
	if v.Notes != vectorNotes {
		t.Error("notes differ from the generator's")
	}
}

func writeVector(t *testing.T, path string) {
	a, b := newDevice(t, 1), newDevice(t, 2)
	m := message(a, []byte("a ratchet message would go here"))
	m.MessageID = MessageID{0x4d, 0x6f, 0x61, 0x74, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	m.Timestamp = time.UnixMilli(1795348800123)
	env, err := b.recipient(t).Seal(m)
	must(t, err)
	v := vector{
		Notes: vectorNotes, SealedSenderSeed: hex.EncodeToString(b.ssk.Seed()), SealedSenderKey: hex.EncodeToString(b.ssk.Public().Bytes()),
		Mailbox: hex.EncodeToString(b.mailbox[:]), KeyID: b.record.ID, MessageID: hex.EncodeToString(m.MessageID[:]), TTL: m.TTL,
		SenderTenant: hex.EncodeToString(a.sender.Tenant[:]), SenderUser: hex.EncodeToString(a.sender.User[:]),
		SenderDevice: hex.EncodeToString(a.sender.Device[:]), SenderSerial: a.sender.Serial,
		SenderSigning: hex.EncodeToString(a.id.Public().Signing.Bytes()), SenderDH: hex.EncodeToString(a.id.Public().DH.Bytes()),
		TimestampMS: m.Timestamp.UnixMilli(), ContentType: uint8(m.ContentType), Content: hex.EncodeToString(m.Content),
		Envelope: hex.EncodeToString(env),
	}
	out, err := json.MarshalIndent(v, "", "  ")
	must(t, err)
	must(t, os.MkdirAll(filepath.Dir(path), 0o755))
	must(t, os.WriteFile(path, append(out, '\n'), 0o644))
}
