package badgermailbox

// Key schema 3 (STYLE 14: one key-schema file per backend;
// docs/spec/relay-storage.md §Badger schema). Every key starts with one
// prefix byte; integers are big-endian, so byte order is numeric order.
//
//	key                                  value
//	"m"                                  schemaVersion (ASCII)
//	"t"                                  commit: 0x01 || uint64 ts || crc
//	"Q" || mailbox[16]                   meta: 0x01 || uint64 head || uint64 acked
//	                                         || crc
//	"M" || mailbox[16] || uint64 seq     held message: 0x01 || 0x01 || id[16]
//	                                         || int64 expires_ms || int64 until_ms
//	                                         || body || crc
//	                                     acknowledged: 0x01 || 0x02 || id[16]
//	                                         || int64 until_ms || digest[32] || crc
//	                                         (badger TTL a second past until_ms)
//
// crc is the CRC-32C (Castagnoli) of the key and of the value before it:
// a record read under another key fails its check as surely as a flipped
// bit does. Badger checksums its blocks and log entries too; ours catches
// what a badger read path might pass (an empty value from an unreadable
// value-log entry, a record moved between keys).
//
// An enqueue writes one entry, its held message. Everything else the
// writer needs to decide (the head, occupancy, earliest expiry and the
// deduplication entries of a mailbox) it keeps in memory (index.go) and
// rebuilds at Open from the "M" records and the "Q" records of their
// mailboxes. until_ms is the message's deduplication time (the earlier of
// its expiry and the enqueue time plus the deduplication window).
//
// The head of a mailbox is the highest of its "Q" head and its "M"
// sequence numbers. Every batch that deletes an "M" record or writes an
// acknowledged one (which badger's TTL deletes later) writes the
// mailbox's "Q" with its head, so the head never decreases and a sequence
// number is never reused. "Q" is never deleted. "Q" also holds the
// mailbox's acknowledgement floor, the highest upTo of an applied Ack,
// which every signed head carries (T40); a batch with an Ack that raises
// it writes "Q".
//
// Ack turns each held message up to its sequence number into an
// acknowledged record while its until_ms is ahead, else deletes it; the
// sweep and an enqueue at a full mailbox delete expired messages (their
// until_ms has passed: it is at most the expiry).
//
// "t" names the commit timestamp of the latest batch: badger runs in
// managed mode, every batch is one transaction at the next timestamp, and
// readers read at the latest timestamp that is durable.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/moat-im/moat/server/store/mailbox"
)

const schemaVersion = "moat relay mailbox store, badger schema 3"

// oldSchemas are the schemas this version refuses with ErrOldSchema.
// Schema 2 had no acknowledgement floor in "Q".
var oldSchemas = map[string]bool{
	"moat relay mailbox store, badger schema 1": true,
	"moat relay mailbox store, badger schema 2": true,
}

// ErrOldSchema is returned by Open for a store written by an earlier
// version in a schema this one does not read (docs/spec/relay-storage.md
// §Badger schema, Older schemas). Drain the relay with the version that
// wrote it, or create the store anew.
var ErrOldSchema = errors.New("badgermailbox: the store has an old schema")

// Key prefixes.
const (
	prefixSchema = 'm'
	prefixCommit = 't'
	prefixMeta   = 'Q'
	prefixMsg    = 'M'
)

// Kinds of "M" records.
const (
	kindHeld  = 1
	kindAcked = 2
)

var (
	keySchema = []byte{prefixSchema}
	keyCommit = []byte{prefixCommit}
)

const recordVersion = 1

// Sizes.
const (
	crcSize     = 4
	metaKeySize = 1 + 16
	msgKeySize  = 1 + 16 + 8

	commitValSize = 1 + 8 + crcSize
	metaValSize   = 1 + 8 + 8 + crcSize
	// heldOverhead is a held message's value without the body.
	heldOverhead = 1 + 1 + 16 + 8 + 8 + crcSize
	ackedValSize = 1 + 1 + 16 + 8 + 32 + crcSize
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// seal appends the CRC of key and v to v.
func seal(key, v []byte) []byte {
	c := crc32.Update(crc32.Checksum(key, castagnoli), castagnoli, v)
	return binary.BigEndian.AppendUint32(v, c)
}

// open checks the CRC and version of a value stored under key, and
// returns its contents between the version byte and the CRC.
func open(key, v []byte, what string) ([]byte, error) {
	if len(v) < 1+crcSize {
		// Badger returns an empty value (and logs why) when it cannot read
		// a value-log entry.
		return nil, fmt.Errorf("%w: %s %x: value of %d bytes", mailbox.ErrCorrupt, what, key, len(v))
	}
	body, sum := v[:len(v)-crcSize], binary.BigEndian.Uint32(v[len(v)-crcSize:])
	if crc32.Update(crc32.Checksum(key, castagnoli), castagnoli, body) != sum {
		return nil, fmt.Errorf("%w: %s %x: checksum mismatch", mailbox.ErrCorrupt, what, key)
	}
	if body[0] != recordVersion {
		return nil, fmt.Errorf("%w: %s %x: record version %d", mailbox.ErrCorrupt, what, key, body[0])
	}
	return body[1:], nil
}

func metaKey(mb mailbox.ID) []byte { return append([]byte{prefixMeta}, mb[:]...) }

func msgPrefix(mb mailbox.ID) []byte { return append([]byte{prefixMsg}, mb[:]...) }

func msgKey(mb mailbox.ID, seq uint64) []byte {
	k := make([]byte, 0, msgKeySize)
	k = append(k, prefixMsg)
	k = append(k, mb[:]...)
	return binary.BigEndian.AppendUint64(k, seq)
}

// parseMsgKey returns the mailbox and sequence number of a message key.
func parseMsgKey(k []byte) (mb mailbox.ID, seq uint64, err error) {
	if len(k) != msgKeySize || k[0] != prefixMsg {
		return mb, 0, fmt.Errorf("%w: message key %x", mailbox.ErrCorrupt, k)
	}
	copy(mb[:], k[1:17])
	seq = binary.BigEndian.Uint64(k[17:])
	if seq == 0 {
		return mb, 0, fmt.Errorf("%w: message key %x: sequence number 0", mailbox.ErrCorrupt, k)
	}
	return mb, seq, nil
}

func encodeMeta(key []byte, head, acked uint64) []byte {
	v := make([]byte, 0, metaValSize)
	v = append(v, recordVersion)
	v = binary.BigEndian.AppendUint64(v, head)
	v = binary.BigEndian.AppendUint64(v, acked)
	return seal(key, v)
}

// decodeMeta parses a "Q" value: a head and an acknowledgement floor at
// most the head.
func decodeMeta(key, v []byte) (head, acked uint64, err error) {
	b, err := open(key, v, "meta")
	if err != nil {
		return 0, 0, err
	}
	if len(b) != 16 {
		return 0, 0, fmt.Errorf("%w: meta %x: %d bytes", mailbox.ErrCorrupt, key, len(v))
	}
	head, acked = binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])
	if acked > head {
		return 0, 0, fmt.Errorf("%w: meta %x: acknowledgement floor %d above head %d", mailbox.ErrCorrupt, key, acked, head)
	}
	return head, acked, nil
}

// encodeHeld returns a held message's value without its CRC, which seal
// adds once the key (the sequence number) is known. It has room for the
// CRC.
func encodeHeld(id mailbox.MessageID, expiresMs, untilMs int64, body []byte) []byte {
	return appendHeld(make([]byte, 0, heldOverhead+len(body)), id, expiresMs, untilMs, body)
}

// appendHeld is encodeHeld appending to v.
func appendHeld(v []byte, id mailbox.MessageID, expiresMs, untilMs int64, body []byte) []byte {
	v = append(v, recordVersion, kindHeld)
	v = append(v, id[:]...)
	v = binary.BigEndian.AppendUint64(v, uint64(expiresMs))
	v = binary.BigEndian.AppendUint64(v, uint64(untilMs))
	return append(v, body...)
}

// record is an "M" record: a held message (body non-empty) or an
// acknowledged one (digest set).
type record struct {
	kind      byte
	id        mailbox.MessageID
	expiresMs int64 // held only
	untilMs   int64
	body      []byte // held only; aliases the value
	digest    [32]byte
}

// decodeRecord parses an "M" value.
func decodeRecord(key, v []byte) (record, error) {
	var r record
	b, err := open(key, v, "message")
	if err != nil {
		return r, err
	}
	if len(b) < 1 {
		return r, fmt.Errorf("%w: message %x: %d bytes", mailbox.ErrCorrupt, key, len(v))
	}
	r.kind, b = b[0], b[1:]
	switch r.kind {
	case kindHeld:
		if len(b) < 16+8+8+1 || len(b)-32 > mailbox.MaxBodySize {
			return r, fmt.Errorf("%w: message %x: %d bytes", mailbox.ErrCorrupt, key, len(v))
		}
		copy(r.id[:], b)
		r.expiresMs = int64(binary.BigEndian.Uint64(b[16:]))
		r.untilMs = int64(binary.BigEndian.Uint64(b[24:]))
		r.body = b[32:]
		if r.untilMs > r.expiresMs || r.expiresMs <= 0 {
			return r, fmt.Errorf("%w: message %x: deduplication time %d past expiry %d", mailbox.ErrCorrupt, key, r.untilMs, r.expiresMs)
		}
	case kindAcked:
		if len(b) != 16+8+32 {
			return r, fmt.Errorf("%w: acknowledged message %x: %d bytes", mailbox.ErrCorrupt, key, len(v))
		}
		copy(r.id[:], b)
		r.untilMs = int64(binary.BigEndian.Uint64(b[16:]))
		copy(r.digest[:], b[24:])
	default:
		return r, fmt.Errorf("%w: message %x: kind %d", mailbox.ErrCorrupt, key, r.kind)
	}
	return r, nil
}

func encodeAcked(key []byte, id mailbox.MessageID, untilMs int64, digest *[32]byte) []byte {
	v := make([]byte, 0, ackedValSize)
	v = append(v, recordVersion, kindAcked)
	v = append(v, id[:]...)
	v = binary.BigEndian.AppendUint64(v, uint64(untilMs))
	v = append(v, digest[:]...)
	return seal(key, v)
}

// dedupTTL returns the badger expiry, in Unix seconds, of an acknowledged
// record kept until untilMs: a second past it, rounded up.
func dedupTTL(untilMs int64) uint64 { return uint64((untilMs+999)/1000 + 1) }

func encodeCommit(ts uint64) []byte {
	v := binary.BigEndian.AppendUint64([]byte{recordVersion}, ts)
	return seal(keyCommit, v)
}

func decodeCommit(v []byte) (uint64, error) {
	b, err := open(keyCommit, v, "commit")
	if err != nil {
		return 0, err
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: commit record of %d bytes", mailbox.ErrCorrupt, len(v))
	}
	return binary.BigEndian.Uint64(b), nil
}
