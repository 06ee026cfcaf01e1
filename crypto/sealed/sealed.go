package sealed

import (
	"crypto/hpke"
	"sync"
	"time"

	"github.com/moat-im/moat/crypto/internal/label"
	"github.com/moat-im/moat/crypto/keys"
)

// The HPKE ciphersuite of docs/spec/envelope.md §Sealing: mode_base,
// X-Wing (the KEM comes with the recipient's key), HKDF-SHA256,
// ChaCha20Poly1305, info "moat/v1/sealed-envelope".
var (
	suiteKDF  = hpke.HKDFSHA256()
	suiteAEAD = hpke.ChaCha20Poly1305()
	info      = []byte(label.SealedEnvelope)
)

// Recipient is a recipient device's mailbox and sealed-sender key, whose
// record has been verified (docs/spec/envelope.md §Sealed-sender key
// records). It is safe for concurrent use.
type Recipient struct {
	mailbox MailboxID
	keyID   uint32
	key     *keys.SealedSenderPublicKey
	expires time.Time
}

// NewRecipient checks a recipient's sealed-sender key record: its signature
// under identity, which the caller MUST have verified against the device's
// certificate and the key directory, and now < rec.Expires. It returns
// keys.ErrUnsignedPrekey or ErrKeyExpired on failure.
func NewRecipient(mailbox MailboxID, identity *keys.IdentitySigningPublicKey, rec *keys.SealedSenderKey, now time.Time) (*Recipient, error) {
	if !mailbox.Valid() || identity == nil {
		return nil, ErrMalformed
	}
	if err := rec.Verify(identity); err != nil {
		return nil, err
	}
	if !now.Before(rec.Expires) {
		return nil, ErrKeyExpired
	}
	return &Recipient{mailbox: mailbox, keyID: rec.ID, key: rec.Key, expires: rec.Expires}, nil
}

// Mailbox returns the recipient's mailbox.
func (r *Recipient) Mailbox() MailboxID { return r.mailbox }

// Expires returns when the recipient's key record expires; a sender
// fetches a new record before then.
func (r *Recipient) Expires() time.Time { return r.expires }

// Message is what a sender seals, and what Open returns.
type Message struct {
	MessageID   MessageID // NewMessageID; never reuse one
	TTL         uint32    // seconds, 1..MaxTTL
	Sender      Sender    // the sealing device
	Timestamp   time.Time // millisecond precision, not before 1970
	ContentType ContentType
	Content     []byte // 1..MaxContentSize bytes, never compressed (T35)
}

// Seal seals m to r (docs/spec/envelope.md §Sealing) and returns the
// envelope, whose length is the bucket of len(m.Content).
func (r *Recipient) Seal(m *Message) ([]byte, error) {
	bucket, err := BucketFor(len(m.Content))
	if err != nil {
		return nil, err
	}
	h := Header{Mailbox: r.mailbox, MessageID: m.MessageID, TTL: m.TTL, KeyID: r.keyID}
	if !h.valid() || !m.Sender.valid() || !m.ContentType.known() || m.Timestamp.UnixMilli() < 0 {
		return nil, ErrMalformed
	}
	in := &inner{contentType: m.ContentType, sender: m.Sender, timestampMS: uint64(m.Timestamp.UnixMilli()), content: m.Content}
	innerSize := bucket - HeaderSize - EncSize - tagSize
	pt := appendInner(make([]byte, 0, innerSize), in, innerSize)

	env := appendHeader(make([]byte, 0, bucket), &h)
	enc, ctx, err := hpke.NewSender(r.key.HPKE(), suiteKDF, suiteAEAD, info)
	if err != nil {
		return nil, err
	}
	ct, err := ctx.Seal(env[:HeaderSize], pt)
	if err != nil {
		return nil, err
	}
	env = append(env, enc...)
	env = append(env, ct...)
	if len(env) != bucket {
		panic("sealed: envelope is not its bucket") // unreachable: sizes are constants
	}
	return env, nil
}

// Keyring holds a device's sealed-sender private keys by id, and opens the
// envelopes addressed to its mailbox. Open only reads it; it is safe for
// concurrent use.
type Keyring struct {
	mailbox MailboxID
	mu      sync.RWMutex
	keys    map[uint32]*keys.SealedSenderPrivateKey
}

// NewKeyring returns an empty keyring for mailbox.
func NewKeyring(mailbox MailboxID) *Keyring {
	return &Keyring{mailbox: mailbox, keys: map[uint32]*keys.SealedSenderPrivateKey{}}
}

// Add stores key under id, replacing any key with that id.
func (k *Keyring) Add(id uint32, key *keys.SealedSenderPrivateKey) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys[id] = key
}

// Remove deletes the key with id. A device removes a key at its record's
// expiry plus MaxTTL (docs/spec/envelope.md §Sealed-sender key records).
func (k *Keyring) Remove(id uint32) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.keys, id)
}

// IDs returns the ids of the keys held, in no particular order.
func (k *Keyring) IDs() []uint32 {
	k.mu.RLock()
	defer k.mu.RUnlock()
	ids := make([]uint32, 0, len(k.keys))
	for id := range k.keys {
		ids = append(ids, id)
	}
	return ids
}

// Opened is an opened envelope. Nothing in it is yet known to come from
// the sender it names: the recipient binds that sender to its session with
// CheckPeer before it decrypts Content (docs/spec/envelope.md §Sender
// binding).
type Opened struct {
	Header Header
	Message
}

// Open opens an envelope addressed to the keyring's mailbox
// (docs/spec/envelope.md §Opening). It returns ErrMalformed,
// ErrWrongMailbox, ErrUnknownKey or ErrDecrypt; it neither modifies nor
// retains envelope, and changes nothing in the keyring.
func (k *Keyring) Open(envelope []byte) (*Opened, error) {
	h, err := ParseHeader(envelope)
	if err != nil {
		return nil, err
	}
	if h.Mailbox != k.mailbox {
		return nil, ErrWrongMailbox
	}
	k.mu.RLock()
	sk := k.keys[h.KeyID]
	k.mu.RUnlock()
	if sk == nil {
		return nil, ErrUnknownKey
	}
	enc := envelope[HeaderSize : HeaderSize+EncSize]
	ctx, err := hpke.NewRecipient(enc, sk.HPKE(), suiteKDF, suiteAEAD, info)
	if err != nil {
		return nil, ErrDecrypt
	}
	pt, err := ctx.Open(envelope[:HeaderSize], envelope[HeaderSize+EncSize:])
	if err != nil {
		return nil, ErrDecrypt
	}
	in, err := parseInner(pt)
	if err != nil {
		return nil, err
	}
	return &Opened{Header: *h, Message: Message{
		MessageID:   h.MessageID,
		TTL:         h.TTL,
		Sender:      in.sender,
		Timestamp:   time.UnixMilli(int64(in.timestampMS)).UTC(),
		ContentType: in.contentType,
		Content:     in.content,
	}}, nil
}

// CheckPeer checks that the sender named inside the envelope is peer: the
// peer of the ratchet session the recipient is about to decrypt with, or
// the initiator of the PQXDH initial message the content carries
// (docs/spec/envelope.md §Sender binding). It returns ErrSenderMismatch
// otherwise. The caller must still have found that session by the sender's
// tenant, user and device, and, for a new session, verified the sender's
// certificate and key-transparency inclusion.
func (o *Opened) CheckPeer(peer keys.DeviceIdentity) error {
	if peer.Signing == nil || peer.DH == nil || !o.Sender.Identity.Equal(peer) {
		return ErrSenderMismatch
	}
	return nil
}
