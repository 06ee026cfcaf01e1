package badgermailbox

// Key schema (STYLE 14: one key-schema file per backend;
// docs/spec/relay-storage.md §Badger schema). Every key starts with one
// prefix byte; integers are big-endian, so byte order is numeric order.
//
//	key                                          value
//	"m"                                          schemaVersion (ASCII)
//	"t"                                          commit: 0x01 || uint64 ts || crc
//	"Q" || mailbox[16]                           meta: 0x01 || uint64 head || uint32 count
//	                                                 || uint64 bytes || int64 low_expiry_ms || crc
//	"M" || mailbox[16] || uint64 seq             message: 0x01 || id[16] || int64 expires_ms
//	                                                 || body || crc
//	"D" || mailbox[16] || id[16]                 dedup: 0x01 || uint64 seq || int64 until_ms
//	                                                 || digest[32] || crc   (badger TTL)
//	"E" || int64 at_ms || mailbox[16]            expiry: 0x01 || crc
//
// crc is the CRC-32C (Castagnoli) of the key and of the value before it:
// a record read under another key fails its check as surely as a flipped
// bit does. Badger checksums its blocks and log entries too; ours catches
// what a badger read path might pass (an empty value from an unreadable
// value-log entry, a record moved between keys) and costs about 100 ns a
// message.
//
// Meta "Q" exists for every mailbox ever written and is never deleted: its
// head is the highest sequence number ever assigned in the mailbox, so a
// sequence number is never reused, whatever is acknowledged or expires.
// count and bytes are the messages "M" of the mailbox and their body
// bytes. low_expiry_ms is at most the earliest expiry of those messages,
// and non-zero while there are any: the mailbox then has exactly one
// expiry entry "E", at low_expiry_ms. The sweep finds the mailboxes whose
// entry is due, deletes their expired messages and moves the entry to the
// earliest remaining expiry. An enqueue moves it only if the new message
// expires earlier, so most enqueues write no expiry entry; an ack leaves
// it (a lower bound stays a lower bound) unless the mailbox is empty.
//
// Message "M" is deleted by Ack, by expiry at a full mailbox, and by the
// sweep. Dedup "D" outlives its message until until_ms (the earlier of the
// expiry and the enqueue time plus the deduplication window): reads treat
// it as absent from then on, and badger drops it by itself, for it is
// written with a badger TTL a second past until_ms (badger counts whole
// seconds of the real clock), so no index or sweep is needed for it.
//
// "t" names the commit timestamp of the latest batch: badger runs in
// managed mode, every batch is one transaction at the next timestamp, and
// readers read at the latest timestamp that is durable. A version above
// "t" at Open comes from a batch that was never acknowledged and is
// rolled back (recover.go).

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/moat-im/moat/server/store/mailbox"
)

const schemaVersion = "moat relay mailbox store, badger schema 1"

// Key prefixes.
const (
	prefixSchema = 'm'
	prefixCommit = 't'
	prefixMeta   = 'Q'
	prefixMsg    = 'M'
	prefixDedup  = 'D'
	prefixExpiry = 'E'
)

var (
	keySchema = []byte{prefixSchema}
	keyCommit = []byte{prefixCommit}
)

const recordVersion = 1

// Sizes.
const (
	crcSize       = 4
	metaKeySize   = 1 + 16
	msgKeySize    = 1 + 16 + 8
	dedupKeySize  = 1 + 16 + 16
	expiryKeySize = 1 + 8 + 16

	commitValSize = 1 + 8 + crcSize
	metaValSize   = 1 + 8 + 4 + 8 + 8 + crcSize
	msgOverhead   = 1 + 16 + 8 + crcSize // message value without the body
	dedupValSize  = 1 + 8 + 8 + 32 + crcSize
	expiryValSize = 1 + crcSize
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
	return mb, binary.BigEndian.Uint64(k[17:]), nil
}

func dedupKey(mb mailbox.ID, id mailbox.MessageID) []byte {
	k := make([]byte, 0, dedupKeySize)
	k = append(k, prefixDedup)
	k = append(k, mb[:]...)
	return append(k, id[:]...)
}

func expiryKey(atMs int64, mb mailbox.ID) []byte {
	k := make([]byte, 0, expiryKeySize)
	k = append(k, prefixExpiry)
	k = binary.BigEndian.AppendUint64(k, uint64(atMs))
	return append(k, mb[:]...)
}

func parseExpiryKey(k []byte) (atMs int64, mb mailbox.ID, err error) {
	if len(k) != expiryKeySize || k[0] != prefixExpiry {
		return 0, mb, fmt.Errorf("%w: expiry key %x", mailbox.ErrCorrupt, k)
	}
	atMs = int64(binary.BigEndian.Uint64(k[1:]))
	copy(mb[:], k[9:25])
	return atMs, mb, nil
}

// meta is a mailbox's meta record.
type meta struct {
	head      uint64
	count     uint32
	bytes     uint64
	lowExpiry int64 // Unix ms; 0: no message
}

func encodeMeta(key []byte, m meta) []byte {
	v := make([]byte, 0, metaValSize)
	v = append(v, recordVersion)
	v = binary.BigEndian.AppendUint64(v, m.head)
	v = binary.BigEndian.AppendUint32(v, m.count)
	v = binary.BigEndian.AppendUint64(v, m.bytes)
	v = binary.BigEndian.AppendUint64(v, uint64(m.lowExpiry))
	return seal(key, v)
}

func decodeMeta(key, v []byte) (meta, error) {
	b, err := open(key, v, "meta")
	if err != nil {
		return meta{}, err
	}
	if len(b) != metaValSize-1-crcSize {
		return meta{}, fmt.Errorf("%w: meta %x: %d bytes", mailbox.ErrCorrupt, key, len(v))
	}
	m := meta{
		head:      binary.BigEndian.Uint64(b),
		count:     binary.BigEndian.Uint32(b[8:]),
		bytes:     binary.BigEndian.Uint64(b[12:]),
		lowExpiry: int64(binary.BigEndian.Uint64(b[20:])),
	}
	if uint64(m.count) > m.head || m.lowExpiry < 0 {
		return meta{}, fmt.Errorf("%w: meta %x: %d messages under head %d", mailbox.ErrCorrupt, key, m.count, m.head)
	}
	return m, nil
}

// encodeMsgValue returns a message value without its CRC, which seal adds
// once the key (the sequence number) is known.
func encodeMsgValue(id mailbox.MessageID, expiresMs int64, body []byte) []byte {
	v := make([]byte, 0, msgOverhead+len(body))
	v = append(v, recordVersion)
	v = append(v, id[:]...)
	v = binary.BigEndian.AppendUint64(v, uint64(expiresMs))
	return append(v, body...)
}

// decodeMsg parses a message value. The body aliases v.
func decodeMsg(key, v []byte) (id mailbox.MessageID, expiresMs int64, body []byte, err error) {
	b, err := open(key, v, "message")
	if err != nil {
		return id, 0, nil, err
	}
	if len(b) < 16+8+1 || len(b)-24 > mailbox.MaxBodySize {
		return id, 0, nil, fmt.Errorf("%w: message %x: %d bytes", mailbox.ErrCorrupt, key, len(v))
	}
	copy(id[:], b)
	expiresMs = int64(binary.BigEndian.Uint64(b[16:]))
	return id, expiresMs, b[24:], nil
}

// msgBodySize returns the body size of a message value of n bytes.
func msgBodySize(n int) int { return n - msgOverhead }

// dedup is a dedup record.
type dedup struct {
	seq     uint64
	untilMs int64
	digest  [32]byte
}

func encodeDedup(key []byte, d dedup) []byte {
	v := make([]byte, 0, dedupValSize)
	v = append(v, recordVersion)
	v = binary.BigEndian.AppendUint64(v, d.seq)
	v = binary.BigEndian.AppendUint64(v, uint64(d.untilMs))
	v = append(v, d.digest[:]...)
	return seal(key, v)
}

func decodeDedup(key, v []byte) (dedup, error) {
	b, err := open(key, v, "dedup")
	if err != nil {
		return dedup{}, err
	}
	if len(b) != dedupValSize-1-crcSize {
		return dedup{}, fmt.Errorf("%w: dedup %x: %d bytes", mailbox.ErrCorrupt, key, len(v))
	}
	d := dedup{seq: binary.BigEndian.Uint64(b), untilMs: int64(binary.BigEndian.Uint64(b[8:]))}
	copy(d.digest[:], b[16:])
	return d, nil
}

func encodeExpiry(key []byte) []byte { return seal(key, []byte{recordVersion}) }

func decodeExpiry(key, v []byte) error {
	b, err := open(key, v, "expiry")
	if err != nil {
		return err
	}
	if len(b) != 0 {
		return fmt.Errorf("%w: expiry %x", mailbox.ErrCorrupt, key)
	}
	return nil
}

// dedupTTL returns the badger expiry, in Unix seconds, of a dedup record
// kept until untilMs: a second past it, rounded up.
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
