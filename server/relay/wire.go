package relay

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"

	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/server/store/mailbox"
	"golang.org/x/crypto/cryptobyte"
)

// Wire formats of docs/spec/api.md §Relay API (type bytes 0x60-0x62).

const (
	typeMailboxPage = 0x60
	typeSendReceipt = 0x61
	typePushAck     = 0x62
	wireVersion     = 1
)

// Bounds of the wire formats.
const (
	// MaxPageMessages bounds the messages of a MailboxPage.
	MaxPageMessages = mailbox.MaxFetch
	// MaxPageSize bounds a MailboxPage encoding: a page stops after the
	// message that brings it to mailbox.FetchBytes, and a message is at
	// most sealed.MaxBucket.
	MaxPageSize = mailbox.FetchBytes + sealed.MaxBucket + MaxPageMessages*(8+3) + 2 + 2 + mailbox.MaxHeadSignatureSize + 64 + 4
	// PushAckSize is the size of a PushAck.
	PushAckSize = 2 + 8
)

// ErrMalformed is returned for an encoding that breaks the rules of
// docs/spec/api.md §Relay API.
var ErrMalformed = errors.New("relay: malformed encoding")

// mailboxIDLabel separates the derivation of store mailbox ids.
const mailboxIDLabel = "moat/v1/relay/mailbox-id"

// StoreMailboxID returns the 16-byte id under which the relay keeps the
// mailbox mb in its mailbox store, and which its signed heads name:
// the first 16 bytes of SHA-256("moat/v1/relay/mailbox-id" || 0x00 ||
// tenant || device) (docs/spec/api.md §Mailbox ids). Distinct tenants'
// devices with the same device id get distinct ids (T44).
func StoreMailboxID(mb sealed.MailboxID) mailbox.ID {
	var in [len(mailboxIDLabel) + 1 + len(mb)]byte
	b := append(in[:0], mailboxIDLabel...)
	b = append(b, 0)
	b = append(b, mb[:]...)
	sum := sha256.Sum256(b)
	return mailbox.ID(sum[:len(mailbox.ID{})])
}

// Message is a message of a MailboxPage: its sequence number and the
// sealed envelope.
type Message struct {
	Seq      uint64
	Envelope []byte
}

// Page is a MailboxPage: a signed head of the mailbox and messages in
// increasing sequence order, each at most the head.
//
//	struct {
//	    uint64 seq;
//	    opaque envelope<1..2^24-1>;
//	} MailboxMessage;
//
//	struct {
//	    uint8  type = 0x60;
//	    uint8  version = 1;
//	    opaque signed_head<1..2^16-1>;      /* SignedMailboxHead */
//	    MailboxMessage messages<0..2^24-1>;
//	} MailboxPage;
type Page struct {
	Head     *mailbox.SignedHead
	Messages []Message
}

// Marshal returns the MailboxPage encoding.
func (p *Page) Marshal() ([]byte, error) {
	head, err := p.Head.MarshalBinary()
	if err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddUint8(typeMailboxPage)
	b.AddUint8(wireVersion)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(head) })
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, m := range p.Messages {
			if len(m.Envelope) == 0 {
				b.SetError(ErrMalformed)
				return
			}
			b.AddUint64(m.Seq)
			b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.Envelope) })
		}
	})
	return b.Bytes()
}

// ParsePage parses a MailboxPage strictly: at most MaxPageSize bytes and
// MaxPageMessages messages, sequence numbers strictly increasing, above
// the head's acknowledgement floor and at most the head, non-empty
// envelopes, no trailing bytes. It does not verify the head's signature
// (Client does).
func ParsePage(data []byte) (*Page, error) {
	if len(data) > MaxPageSize {
		return nil, ErrMalformed
	}
	s := cryptobyte.String(data)
	var typ, ver uint8
	var head, msgs cryptobyte.String
	if !s.ReadUint8(&typ) || typ != typeMailboxPage || !s.ReadUint8(&ver) || ver != wireVersion ||
		!s.ReadUint16LengthPrefixed(&head) || !s.ReadUint24LengthPrefixed(&msgs) || !s.Empty() {
		return nil, ErrMalformed
	}
	h, err := mailbox.ParseSignedHead(head)
	if err != nil {
		return nil, ErrMalformed
	}
	p := &Page{Head: h}
	var last uint64
	for !msgs.Empty() {
		var m Message
		var env cryptobyte.String
		if !msgs.ReadUint64(&m.Seq) || !msgs.ReadUint24LengthPrefixed(&env) || len(env) == 0 ||
			m.Seq <= max(last, h.Acked) || m.Seq > h.Head || len(p.Messages) == MaxPageMessages {
			return nil, ErrMalformed
		}
		last = m.Seq
		m.Envelope = append([]byte(nil), env...)
		p.Messages = append(p.Messages, m)
	}
	return p, nil
}

// Receipt is a SendReceipt: the message's sequence number in the
// recipient's mailbox, whether the relay already held it, and a batched
// signed head of that mailbox at least the sequence number.
//
//	struct {
//	    uint8  type = 0x61;
//	    uint8  version = 2;
//	    uint64 seq;
//	    uint8  duplicate;                   /* 0 or 1 */
//	    opaque batched_head<1..2^16-1>;     /* BatchedMailboxHead */
//	} SendReceipt;
type Receipt struct {
	Seq       uint64
	Duplicate bool
	Head      *mailbox.BatchedHead
}

// receiptVersion is the SendReceipt version: 2 carries a batched head.
const receiptVersion = 2

// Marshal returns the SendReceipt encoding.
func (r *Receipt) Marshal() ([]byte, error) {
	// One allocation of the exact size (every send answers with one).
	return r.AppendBinary(make([]byte, 0, r.EncodedLen()))
}

// receiptFixed is the size of a SendReceipt without its head.
const receiptFixed = 2 + 8 + 1 + 2

// EncodedLen is the length of r's Marshal encoding.
func (r *Receipt) EncodedLen() int { return receiptFixed + r.Head.EncodedLen() }

// AppendBinary appends r's Marshal encoding to b: the head is appended in
// place, then its length filled in.
func (r *Receipt) AppendBinary(b []byte) ([]byte, error) {
	start := len(b)
	b = append(b, typeSendReceipt, receiptVersion)
	b = binary.BigEndian.AppendUint64(b, r.Seq)
	dup := byte(0)
	if r.Duplicate {
		dup = 1
	}
	b = append(b, dup, 0, 0)
	b, err := r.Head.AppendBinary(b)
	if err != nil {
		return nil, err
	}
	n := len(b) - start - receiptFixed
	if n > 0xffff {
		return nil, ErrMalformed
	}
	binary.BigEndian.PutUint16(b[start+receiptFixed-2:], uint16(n))
	return b, nil
}

// ParseReceipt parses a SendReceipt strictly; the sequence number must be
// at least 1 and at most the head's. It does not verify the head's
// inclusion path or signature (Client.Send does).
func ParseReceipt(data []byte) (*Receipt, error) {
	s := cryptobyte.String(data)
	var typ, ver, dup uint8
	var r Receipt
	var head cryptobyte.String
	if !s.ReadUint8(&typ) || typ != typeSendReceipt || !s.ReadUint8(&ver) || ver != receiptVersion ||
		!s.ReadUint64(&r.Seq) || !s.ReadUint8(&dup) || dup > 1 ||
		!s.ReadUint16LengthPrefixed(&head) || !s.Empty() {
		return nil, ErrMalformed
	}
	h, err := mailbox.ParseBatchedHead(head)
	if err != nil || r.Seq == 0 || r.Seq > h.Head {
		return nil, ErrMalformed
	}
	r.Duplicate, r.Head = dup == 1, h
	return &r, nil
}

// MarshalPushAck returns a PushAck, which a device sends on its push
// channel to acknowledge its messages up to upTo:
//
//	struct {
//	    uint8  type = 0x62;
//	    uint8  version = 1;
//	    uint64 up_to;
//	} PushAck;
func MarshalPushAck(upTo uint64) []byte {
	var b cryptobyte.Builder
	b.AddUint8(typePushAck)
	b.AddUint8(wireVersion)
	b.AddUint64(upTo)
	return b.BytesOrPanic()
}

// ParsePushAck parses a PushAck strictly.
func ParsePushAck(data []byte) (uint64, error) {
	s := cryptobyte.String(data)
	var typ, ver uint8
	var upTo uint64
	if len(data) != PushAckSize || !s.ReadUint8(&typ) || typ != typePushAck || !s.ReadUint8(&ver) ||
		ver != wireVersion || !s.ReadUint64(&upTo) || !s.Empty() {
		return 0, ErrMalformed
	}
	return upTo, nil
}
