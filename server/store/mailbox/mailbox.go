// Package mailbox defines the relay's mailbox storage seam, as specified
// in docs/spec/relay-storage.md §Mailboxes: one mailbox per device, holding
// sealed envelopes the relay cannot read until the device acknowledges
// them.
//
// A Store enqueues idempotently on a client-chosen message id, numbers the
// messages of each mailbox with sequence numbers that never repeat, serves
// them after a cursor, deletes them up to a sequence number when the
// device acknowledges, expires them, and wakes streaming readers. Nothing
// it acknowledges is lost: a call that returns nil has made its effect
// durable (§Durability).
//
// Backends: memmailbox (in memory, for tests) and badgermailbox (the
// embedded default). Every backend runs the conformance suite in
// mailboxtest. The interface is shaped so that a NATS JetStream backend
// (one subject per mailbox, message-id deduplication, per-message TTL,
// direct get, purge up to a sequence as the ack) can implement it later
// (§JetStream mapping).
package mailbox

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Errors. Backends wrap them with context; callers test with errors.Is.
// Every error leaves the store as it was, except where noted.
var (
	// ErrInvalid is returned for a request that is malformed in itself:
	// an empty or oversized body, an expiry in the past or beyond the
	// maximum TTL, a fetch limit out of range.
	ErrInvalid = errors.New("mailbox: invalid request")
	// ErrIDConflict is returned by Enqueue when the mailbox already holds
	// (or remembers, within the deduplication window) the message id with
	// a different body.
	ErrIDConflict = errors.New("mailbox: message id already used with a different body")
	// ErrQuota is returned by Enqueue when the message would take the
	// mailbox past its message or byte limit.
	ErrQuota = errors.New("mailbox: mailbox full")
	// ErrBeyondHead is returned by Ack for a sequence number above the
	// mailbox head: the client has seen a sequence number the store never
	// assigned, so the store may have been rolled back (T40).
	ErrBeyondHead = errors.New("mailbox: ack beyond the mailbox head")
	// ErrUnavailable is returned when the store cannot make writes durable
	// now (disk full, a failed write or sync, recovery in progress). The
	// call had no acknowledged effect; retry later (HTTP 503 with
	// Retry-After).
	ErrUnavailable = errors.New("mailbox: storage unavailable")
	// ErrCorrupt is returned when stored data fails an integrity check.
	// Never ignore it.
	ErrCorrupt = errors.New("mailbox: stored data is corrupt")
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("mailbox: store closed")
)

// ID names a mailbox: 16 opaque bytes the relay chooses (for example the
// device id).
type ID [16]byte

// MessageID is the client-chosen id of a message, random 16 bytes, that
// makes Enqueue idempotent.
type MessageID [16]byte

func (id ID) String() string        { return fmt.Sprintf("%x", id[:]) }
func (id MessageID) String() string { return fmt.Sprintf("%x", id[:]) }

// Hard limits, the most any Limits may allow.
const (
	// MaxBodySize bounds one message body (a sealed envelope; attachments
	// go to the blob store): the largest envelope size bucket, 512 KiB
	// (docs/spec/envelope.md §Size buckets), which the ratchet's largest
	// message needs.
	MaxBodySize = 512 << 10
	// MaxFetch bounds the number of messages one Fetch returns.
	MaxFetch = 1000
	// FetchBytes is the soft byte bound of one Fetch: a page stops after
	// the first message that brings its bodies to FetchBytes or more.
	FetchBytes = 4 << 20
)

// A Message is what a sender enqueues.
type Message struct {
	ID MessageID
	// Expires is when the store drops the message if it is still there;
	// the store keeps it at millisecond precision (Unix milliseconds).
	Expires time.Time
	// Body is the sealed envelope, opaque to the store.
	Body []byte
}

// Stored is a message as a mailbox holds it.
type Stored struct {
	Seq uint64
	Message
}

// A Receipt acknowledges an Enqueue: the message's sequence number,
// whether the message was already stored (a retry), and a head of the
// mailbox read when the write was applied: at least Seq, durable, and
// never lower than a head the store returned before
// (docs/spec/relay-storage.md §Sequence numbers). The relay signs it as
// the receipt's head without reading the mailbox again.
type Receipt struct {
	Seq       uint64
	Duplicate bool
	Head      uint64
}

// A Page is what Fetch returns: messages in increasing sequence order, and
// the mailbox head read in the same snapshot (at least every Seq in
// Messages) and its acknowledgement floor (below every Seq in Messages).
type Page struct {
	Messages []Stored
	Head     uint64
	Acked    uint64
}

// Status describes a mailbox: its head, its acknowledgement floor, and the
// messages and body bytes it holds (expired messages count until they are
// removed).
type Status struct {
	Head uint64
	// Acked is the acknowledgement floor: the highest upTo of an Ack the
	// store applied, durable, never decreasing, at most Head
	// (docs/spec/relay-storage.md §Acknowledgement and expiry).
	Acked    uint64
	Messages int
	Bytes    int64
}

// Store is the mailbox storage seam (docs/spec/relay-storage.md
// §Interface). Implementations are safe for concurrent use and run
// mailboxtest.Run.
type Store interface {
	// Enqueue stores m in mailbox mb and returns its sequence number,
	// once the message is durable. A retry with the same message id and
	// body returns the original receipt (Duplicate set) and stores
	// nothing; the same id with another body is ErrIDConflict. Both hold
	// while the message or its deduplication record is kept (§Idempotence).
	// The store keeps no reference to m.Body once Enqueue returns: the
	// caller may reuse its memory.
	Enqueue(ctx context.Context, mb ID, m Message) (Receipt, error)

	// Fetch returns up to limit (1 ≤ limit ≤ MaxFetch) unexpired
	// messages of mb with sequence numbers above after and above the
	// acknowledgement floor, in order.
	Fetch(ctx context.Context, mb ID, after uint64, limit int) (Page, error)

	// Ack deletes the messages of mb with sequence numbers up to upTo and
	// raises mb's acknowledgement floor to upTo, durably. Acking again is
	// a no-op; upTo above the head is ErrBeyondHead.
	Ack(ctx context.Context, mb ID, upTo uint64) error

	// Status returns mb's head and occupancy; a mailbox never written has
	// the zero Status.
	Status(ctx context.Context, mb ID) (Status, error)

	// Subscribe returns a subscription that is signalled whenever messages
	// are enqueued in mb after the call. It does not survive Close.
	Subscribe(mb ID) *Subscription

	// Sweep removes the expired messages of every mailbox and returns how
	// many it removed. Backends may also sweep on their own schedule, and
	// remove deduplication records past their time by their own means.
	Sweep(ctx context.Context) (int, error)

	// Close releases the store, waiting for running calls. Subscriptions
	// are closed. Calls after Close return ErrClosed. Close is idempotent.
	Close() error
}

// Limits bound what a store accepts. The zero value of a field selects
// its default.
type Limits struct {
	// MaxMessages bounds the messages one mailbox holds. Default 10,000.
	MaxMessages int
	// MaxBytes bounds the sum of the body sizes of one mailbox. Default
	// 64 MiB.
	MaxBytes int64
	// MaxBodySize bounds one body; at most the constant MaxBodySize,
	// which is the default.
	MaxBodySize int
	// MaxTTL bounds how far in the future Expires may be. Default 30 days.
	MaxTTL time.Duration
	// DedupWindow is how long after an Enqueue a retry is still
	// recognised, if the message expires later than that. Default 24 h.
	DedupWindow time.Duration
}

// Default limits.
const (
	DefaultMaxMessages = 10_000
	DefaultMaxBytes    = 64 << 20
	DefaultMaxTTL      = 30 * 24 * time.Hour
	DefaultDedupWindow = 24 * time.Hour
)

// WithDefaults returns l with defaults for its zero fields, or an error
// matching ErrInvalid for a negative or out-of-range field.
func (l Limits) WithDefaults() (Limits, error) {
	if l.MaxMessages < 0 || l.MaxBytes < 0 || l.MaxBodySize < 0 || l.MaxBodySize > MaxBodySize || l.MaxTTL < 0 || l.DedupWindow < 0 {
		return l, fmt.Errorf("%w: limits %+v", ErrInvalid, l)
	}
	if l.MaxMessages == 0 {
		l.MaxMessages = DefaultMaxMessages
	}
	if l.MaxBytes == 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxBodySize == 0 {
		l.MaxBodySize = MaxBodySize
	}
	if l.MaxTTL == 0 {
		l.MaxTTL = DefaultMaxTTL
	}
	if l.DedupWindow == 0 {
		l.DedupWindow = DefaultDedupWindow
	}
	return l, nil
}

// Check validates m against l at time now, and returns its expiry in Unix
// milliseconds. l must have its defaults set.
func (l *Limits) Check(m *Message, now time.Time) (expiresMs int64, err error) {
	if len(m.Body) == 0 || len(m.Body) > l.MaxBodySize {
		return 0, fmt.Errorf("%w: body of %d bytes (1..%d)", ErrInvalid, len(m.Body), l.MaxBodySize)
	}
	exp := m.Expires.UnixMilli()
	nowMs := now.UnixMilli()
	if exp <= nowMs {
		return 0, fmt.Errorf("%w: message expires at or before now", ErrInvalid)
	}
	if exp-nowMs > l.MaxTTL.Milliseconds() {
		return 0, fmt.Errorf("%w: message expires beyond the maximum TTL of %v", ErrInvalid, l.MaxTTL)
	}
	return exp, nil
}

// DedupUntil returns, in Unix milliseconds, until when a message enqueued
// at now (milliseconds) and expiring at expiresMs is deduplicated: the
// earlier of its expiry and now + DedupWindow.
func (l *Limits) DedupUntil(nowMs, expiresMs int64) int64 {
	return min(expiresMs, nowMs+l.DedupWindow.Milliseconds())
}

// CheckFetch validates Fetch's limit.
func CheckFetch(limit int) error {
	if limit < 1 || limit > MaxFetch {
		return fmt.Errorf("%w: fetch limit %d (1..%d)", ErrInvalid, limit, MaxFetch)
	}
	return nil
}
