package mailbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// Signed mailbox heads (docs/spec/relay-storage.md §Signed head, T40). The
// relay signs, for a mailbox, its head (a value at least every sequence
// number it has assigned there), its acknowledgement floor (the highest
// sequence number the device has acknowledged) and the time. A device
// keeps the highest head and latest time it has verified for its own
// mailbox and refuses a later signed head that is lower or older, or whose
// floor is below an acknowledgement the relay confirmed to it: a relay
// restored from an old backup cannot hide that it forgot messages, even
// once new messages have taken its head past the device's.

// HeadContext starts every signed mailbox-head statement (the
// MailboxHeadTBS of the spec), followed by a zero byte.
const HeadContext = "moat/v1/relay/mailbox-head"

// HeadVersion is the version of the SignedMailboxHead encoding and of
// its MailboxHeadTBS. Version 1 (no acknowledgement floor) is rejected.
const HeadVersion = 2

// MaxHeadSignatureSize bounds the signature of a signed head (a hybrid
// Ed25519 + ML-DSA-65 signature is 3,373 bytes).
const MaxHeadSignatureSize = 1<<16 - 1

var (
	// ErrMalformedHead is returned by ParseSignedHead.
	ErrMalformedHead = errors.New("mailbox: malformed signed head")
	// ErrRollback is returned by CheckProgress when a signed head is
	// lower or older than one verified before: the relay has lost state
	// it had acknowledged (T40). Clients surface it to the user.
	ErrRollback = errors.New("mailbox: relay rolled back")
)

// A Signer signs a head statement with the relay's key. Its signature
// scheme domain-separates by key role; HeadContext separates the
// statement from the relay's other signed objects.
type Signer interface {
	Sign(msg []byte) ([]byte, error)
}

// A Verifier checks a signature of the relay's key.
type Verifier interface {
	Verify(msg, sig []byte) error
}

// A SignedHead is a relay's signed statement of a mailbox head.
type SignedHead struct {
	Mailbox ID
	Head    uint64
	// Acked is the mailbox's acknowledgement floor: at least every upTo
	// of an Ack the store confirmed, at most Head (§Acknowledgement
	// floor).
	Acked uint64
	// Time is the relay's clock when it signed, at millisecond precision.
	Time      time.Time
	Signature []byte
}

// headTBS returns the signed statement (MailboxHeadTBS):
//
//	HeadContext || 0x00 || uint8 version (2) || mailbox[16] || uint64 head
//	    || uint64 acked || uint64 time_ms
func headTBS(mb ID, head, acked, ms uint64) []byte {
	b := make([]byte, 0, len(HeadContext)+1+1+16+8+8+8)
	b = append(b, HeadContext...)
	b = append(b, 0, HeadVersion)
	b = append(b, mb[:]...)
	b = binary.BigEndian.AppendUint64(b, head)
	b = binary.BigEndian.AppendUint64(b, acked)
	return binary.BigEndian.AppendUint64(b, ms)
}

// timeMs returns t in Unix milliseconds, or an error if it is before 1970
// or does not fit.
func timeMs(t time.Time) (uint64, error) {
	ms := t.UnixMilli()
	if ms < 0 {
		return 0, fmt.Errorf("mailbox: head time %v before 1970", t)
	}
	return uint64(ms), nil
}

// SignHead signs the head and acknowledgement floor (at most head) of
// mailbox mb at time t.
func SignHead(s Signer, mb ID, head, acked uint64, t time.Time) (*SignedHead, error) {
	if acked > head {
		return nil, fmt.Errorf("mailbox: acknowledgement floor %d above head %d", acked, head)
	}
	ms, err := timeMs(t)
	if err != nil {
		return nil, err
	}
	sig, err := s.Sign(headTBS(mb, head, acked, ms))
	if err != nil {
		return nil, fmt.Errorf("mailbox: signing head: %w", err)
	}
	if len(sig) == 0 || len(sig) > MaxHeadSignatureSize {
		return nil, fmt.Errorf("mailbox: signer returned a signature of %d bytes", len(sig))
	}
	return &SignedHead{Mailbox: mb, Head: head, Acked: acked, Time: time.UnixMilli(int64(ms)), Signature: sig}, nil
}

// Verify checks h's signature with v.
func (h *SignedHead) Verify(v Verifier) error {
	ms, err := timeMs(h.Time)
	if err != nil {
		return err
	}
	if h.Acked > h.Head {
		return ErrMalformedHead
	}
	return v.Verify(headTBS(h.Mailbox, h.Head, h.Acked, ms), h.Signature)
}

// CheckProgress returns ErrRollback unless next is for the same mailbox
// as prev, with a head, an acknowledgement floor and a time at least
// prev's. prev nil accepts any. Both must have been verified.
func CheckProgress(prev, next *SignedHead) error {
	if prev == nil {
		return nil
	}
	if next.Mailbox != prev.Mailbox {
		return fmt.Errorf("mailbox: signed head for mailbox %v, want %v", next.Mailbox, prev.Mailbox)
	}
	if next.Head < prev.Head {
		return fmt.Errorf("%w: mailbox head %d after %d", ErrRollback, next.Head, prev.Head)
	}
	if next.Acked < prev.Acked {
		return fmt.Errorf("%w: acknowledgement floor %d after %d", ErrRollback, next.Acked, prev.Acked)
	}
	if next.Time.Before(prev.Time) {
		return fmt.Errorf("%w: head signed at %v after one signed at %v", ErrRollback, next.Time, prev.Time)
	}
	return nil
}

// CheckAcked returns ErrRollback if the acknowledgement floor of h, a
// verified head signed after the relay confirmed the device's Ack up to
// confirmed, is below confirmed: the relay forgot an acknowledgement, and
// may hand out new messages under sequence numbers the device believes
// it acknowledged (relay-storage.md §Signed head, step 4).
func CheckAcked(h *SignedHead, confirmed uint64) error {
	if h.Acked < confirmed {
		return fmt.Errorf("%w: acknowledgement floor %d below the confirmed ack of %d", ErrRollback, h.Acked, confirmed)
	}
	return nil
}

// MarshalBinary returns the SignedMailboxHead encoding:
//
//	struct {
//	    uint8  version = 2;
//	    opaque mailbox[16];
//	    uint64 head;
//	    uint64 acked;                      /* <= head */
//	    uint64 time;                       /* Unix milliseconds */
//	    opaque signature<1..2^16-1>;
//	} SignedMailboxHead;
func (h *SignedHead) MarshalBinary() ([]byte, error) {
	ms, err := timeMs(h.Time)
	if err != nil {
		return nil, err
	}
	if len(h.Signature) == 0 || len(h.Signature) > MaxHeadSignatureSize {
		return nil, fmt.Errorf("mailbox: signature of %d bytes", len(h.Signature))
	}
	if h.Acked > h.Head {
		return nil, fmt.Errorf("mailbox: acknowledgement floor %d above head %d", h.Acked, h.Head)
	}
	var b cryptobyte.Builder
	b.AddUint8(HeadVersion)
	b.AddBytes(h.Mailbox[:])
	b.AddUint64(h.Head)
	b.AddUint64(h.Acked)
	b.AddUint64(ms)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(h.Signature) })
	return b.Bytes()
}

// ParseSignedHead parses a SignedMailboxHead strictly: version 2, exact
// lengths, a floor at most the head, a non-empty signature, a time below
// 2^63 ms, no trailing bytes. It does not verify the signature.
func ParseSignedHead(b []byte) (*SignedHead, error) {
	s := cryptobyte.String(b)
	var h SignedHead
	var ver uint8
	var mb []byte
	var ms uint64
	var sig cryptobyte.String
	if !s.ReadUint8(&ver) || ver != HeadVersion || !s.ReadBytes(&mb, 16) || !s.ReadUint64(&h.Head) ||
		!s.ReadUint64(&h.Acked) || !s.ReadUint64(&ms) || !s.ReadUint16LengthPrefixed(&sig) || !s.Empty() ||
		len(sig) == 0 || ms > math.MaxInt64 || h.Acked > h.Head {
		return nil, ErrMalformedHead
	}
	copy(h.Mailbox[:], mb)
	h.Time = time.UnixMilli(int64(ms))
	h.Signature = append([]byte(nil), sig...)
	return &h, nil
}
