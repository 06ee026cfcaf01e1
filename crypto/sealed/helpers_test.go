package sealed

import (
	"bytes"
	"crypto/hpke"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
)

// testNow is the clock of every test.
var testNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func detRand(seed byte) io.Reader {
	var s [32]byte
	s[0] = seed
	return rand.NewChaCha8(s)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// device is one enrolled device: its identity, its certificate reference,
// its mailbox and a sealed-sender key, signed and in its keyring.
type device struct {
	id      *keys.DeviceIdentityPrivate
	sender  Sender
	mailbox MailboxID
	ssk     *keys.SealedSenderPrivateKey
	record  *keys.SealedSenderKey
	keyring *Keyring
}

func newDevice(t testing.TB, seed byte) *device {
	t.Helper()
	r := detRand(seed)
	id, err := keys.GenerateDeviceIdentity(r)
	must(t, err)
	ssk, err := keys.GenerateSealedSenderKey(r)
	must(t, err)
	tenant, user, dev := [16]byte{1, seed}, [16]byte{2, seed}, [16]byte{3, seed}
	d := &device{
		id:      id,
		sender:  Sender{Tenant: tenant, User: user, Device: dev, Serial: uint64(seed) + 100, Identity: id.Public()},
		mailbox: NewMailboxID(tenant, dev),
		ssk:     ssk,
		record:  keys.SignSealedSenderKey(uint32(seed)+10, testNow.Add(-time.Hour), testNow.Add(14*24*time.Hour), ssk.Public(), id.Signing),
	}
	d.keyring = NewKeyring(d.mailbox)
	d.keyring.Add(d.record.ID, ssk)
	return d
}

// recipient returns a Recipient for d, as a sender that verified d's
// identity would make it.
func (d *device) recipient(t testing.TB) *Recipient {
	t.Helper()
	r, err := NewRecipient(d.mailbox, d.id.Public().Signing, d.record, testNow)
	must(t, err)
	return r
}

// message returns a message from sender with the given content.
func message(sender *device, content []byte) *Message {
	return &Message{
		MessageID:   NewMessageID(),
		TTL:         7 * 24 * 3600,
		Sender:      sender.sender,
		Timestamp:   testNow.Add(1234 * time.Millisecond),
		ContentType: ContentRatchetMessage,
		Content:     content,
	}
}

func sameMessage(t testing.TB, got *Opened, want *Message, h Header) {
	t.Helper()
	if got.Header != h || got.MessageID != want.MessageID || got.TTL != want.TTL ||
		got.Sender.Tenant != want.Sender.Tenant || got.Sender.User != want.Sender.User ||
		got.Sender.Device != want.Sender.Device || got.Sender.Serial != want.Sender.Serial ||
		!got.Sender.Identity.Equal(want.Sender.Identity) ||
		!got.Timestamp.Equal(want.Timestamp.Truncate(time.Millisecond)) ||
		got.ContentType != want.ContentType || !bytes.Equal(got.Content, want.Content) {
		t.Fatalf("opened message differs from the sealed one")
	}
}

// sealRaw seals an arbitrary inner plaintext with header h to key, as a
// malicious sender could: the envelope layer authenticates nobody.
func sealRaw(t testing.TB, key *keys.SealedSenderPublicKey, h *Header, pt []byte) []byte {
	t.Helper()
	env := appendHeader(nil, h)
	enc, ctx, err := hpke.NewSender(key.HPKE(), suiteKDF, suiteAEAD, info)
	must(t, err)
	ct, err := ctx.Seal(env, pt)
	must(t, err)
	return append(append(env, enc...), ct...)
}
