package localstore

// The store's wire formats (docs/spec/client-store.md §Key table,
// §Records): the key-table header, key slots, record values and record
// keys. Parsing is strict: fixed sizes, known values only, reserved bytes
// zero.

import (
	"encoding/binary"
	"fmt"
)

// Sizes of the key-table file (docs/spec/client-store.md §Key table).
const (
	headerSize = 128
	// slotSize is a sealed record key: nonce || ciphertext of 32 bytes || tag.
	slotSize    = nonceSize + keySize + tagSize
	nonceSize   = 24 // XChaCha20-Poly1305
	tagSize     = 16
	keySize     = 32
	saltSize    = 32
	wrappedSize = nonceSize + keySize + tagSize

	// Offsets in the header.
	offKDF     = 8
	offTime    = 9
	offMemory  = 13
	offThreads = 17
	offSalt    = 18
	offSlotLen = 50
	offWrapped = 54 // the header bytes before it are the wrapping AD
	offState   = offWrapped + wrappedSize
	offPad     = offState + 1
)

var headerMagic = [8]byte{'m', 'o', 'a', 't', 'l', 's', 'k', 1}

// KDF identifiers (docs/spec/client-store.md §Key table).
const (
	kdfArgon2id = 1
	kdfKeyFile  = 2
)

// State byte values: a store left open (crashed) is recovered at the next
// Open (docs/spec/client-store.md §Recovery).
const (
	stateClean = 0
	stateOpen  = 1
)

// Bounds on Argon2id parameters accepted from a header, so that a damaged
// header cannot make Open allocate without limit.
const (
	maxArgonTime    = 16
	maxArgonMemory  = 1 << 20 // KiB: 1 GiB
	maxArgonThreads = 16
)

// header is the parsed key-table header.
type header struct {
	kdf     byte
	argon   Argon2Params
	salt    [saltSize]byte
	wrapped [wrappedSize]byte
	state   byte
}

func (h *header) marshal() []byte {
	b := make([]byte, headerSize)
	copy(b, headerMagic[:])
	b[offKDF] = h.kdf
	binary.BigEndian.PutUint32(b[offTime:], h.argon.Time)
	binary.BigEndian.PutUint32(b[offMemory:], h.argon.MemoryKiB)
	b[offThreads] = h.argon.Threads
	copy(b[offSalt:], h.salt[:])
	binary.BigEndian.PutUint32(b[offSlotLen:], slotSize)
	copy(b[offWrapped:], h.wrapped[:])
	b[offState] = h.state
	return b
}

// wrapAD is the associated data of the wrapped table key: every header
// field before it.
func wrapAD(b []byte) []byte {
	return append([]byte(labelTableKey), b[:offWrapped]...)
}

func parseHeader(b []byte) (*header, error) {
	if len(b) != headerSize {
		return nil, fmt.Errorf("%w: key table header of %d bytes", ErrCorrupt, len(b))
	}
	if [8]byte(b[:8]) != headerMagic {
		return nil, fmt.Errorf("%w: not a key table (bad magic)", ErrCorrupt)
	}
	h := &header{kdf: b[offKDF], state: b[offState]}
	h.argon.Time = binary.BigEndian.Uint32(b[offTime:])
	h.argon.MemoryKiB = binary.BigEndian.Uint32(b[offMemory:])
	h.argon.Threads = b[offThreads]
	copy(h.salt[:], b[offSalt:])
	copy(h.wrapped[:], b[offWrapped:])
	switch h.kdf {
	case kdfArgon2id:
		if err := h.argon.check(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
	case kdfKeyFile:
		if h.argon != (Argon2Params{}) {
			return nil, fmt.Errorf("%w: key-file header with Argon2id parameters", ErrCorrupt)
		}
	default:
		return nil, fmt.Errorf("%w: unknown KDF %d", ErrCorrupt, h.kdf)
	}
	if n := binary.BigEndian.Uint32(b[offSlotLen:]); n != slotSize {
		return nil, fmt.Errorf("%w: slot size %d", ErrCorrupt, n)
	}
	if h.state != stateClean && h.state != stateOpen {
		return nil, fmt.Errorf("%w: unknown state %d", ErrCorrupt, h.state)
	}
	for _, c := range b[offPad:] {
		if c != 0 {
			return nil, fmt.Errorf("%w: reserved header bytes not zero", ErrCorrupt)
		}
	}
	return h, nil
}

// Argon2Params are the Argon2id parameters of a passphrase-protected
// store ([RFC 9106]), recorded in its key-table header.
//
// [RFC 9106]: https://www.rfc-editor.org/rfc/rfc9106
type Argon2Params struct {
	Time      uint32 // passes
	MemoryKiB uint32
	Threads   uint8
}

// DefaultArgon2 is RFC 9106's second recommended option (§4): t=3, 64 MiB,
// p=4.
var DefaultArgon2 = Argon2Params{Time: 3, MemoryKiB: 64 << 10, Threads: 4}

func (p Argon2Params) check() error {
	switch {
	case p.Time < 1 || p.Time > maxArgonTime:
		return fmt.Errorf("argon2id time %d out of [1, %d]", p.Time, maxArgonTime)
	case p.Threads < 1 || p.Threads > maxArgonThreads:
		return fmt.Errorf("argon2id threads %d out of [1, %d]", p.Threads, maxArgonThreads)
	case p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxArgonMemory:
		return fmt.Errorf("argon2id memory %d KiB out of [8×threads, %d]", p.MemoryKiB, maxArgonMemory)
	}
	return nil
}

// slotOffset is the file offset of slot i.
func slotOffset(i uint32) int64 { return headerSize + int64(i)*slotSize }

// slotAD is the associated data of slot i.
func slotAD(i uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte(labelSlot), i)
}

// Record values (docs/spec/client-store.md §Records):
//
//	struct {
//	    uint8 version = 1;
//	    uint32 slot;
//	    opaque nonce[24];
//	    opaque sealed<16..>;   // the rest of the value
//	} RecordValue;
const recordVersion = 1

const recordOverhead = 1 + 4 + nonceSize + tagSize

type recordValue struct {
	slot   uint32
	nonce  []byte
	sealed []byte
}

func (r *recordValue) marshal() []byte {
	b := make([]byte, 0, 1+4+nonceSize+len(r.sealed))
	b = append(b, recordVersion)
	b = binary.BigEndian.AppendUint32(b, r.slot)
	b = append(b, r.nonce...)
	return append(b, r.sealed...)
}

// parseRecordValue parses b; the result aliases b.
func parseRecordValue(b []byte) (*recordValue, error) {
	if len(b) < recordOverhead || len(b) > recordOverhead+MaxValueLen {
		return nil, fmt.Errorf("%w: record value of %d bytes", ErrCorrupt, len(b))
	}
	if b[0] != recordVersion {
		return nil, fmt.Errorf("%w: record version %d", ErrCorrupt, b[0])
	}
	return &recordValue{
		slot:   binary.BigEndian.Uint32(b[1:]),
		nonce:  b[5 : 5+nonceSize],
		sealed: b[5+nonceSize:],
	}, nil
}

// recordAD is the associated data of a record: its full name and slot.
func recordAD(scope Scope, kind string, id []byte, slot uint32) []byte {
	b := make([]byte, 0, len(labelRecord)+1+len(scope)+1+len(kind)+2+len(id)+4)
	b = append(b, labelRecord...)
	b = append(b, byte(len(scope)))
	b = append(b, scope...)
	b = append(b, byte(len(kind)))
	b = append(b, kind...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(id)))
	b = append(b, id...)
	return binary.BigEndian.AppendUint32(b, slot)
}

// Keys in badger (docs/spec/client-store.md §Records):
//
//	record:  'r' || scope tag (16) || generation (8) || kind tag (16) || id
//	scope:   's' || scope tag (16)                    -> generation (8)
//	garbage: 'g' || scope tag (16) || generation (8)  -> empty
//
// DeleteScope moves a scope to its next generation; the records of older
// generations are garbage, their keys erased, and are removed in batches.
const (
	prefixRecord  = 'r'
	prefixScope   = 's'
	prefixGarbage = 'g'
	tagLen        = 16
	genLen        = 8
	// recordPrefixLen is the length of a record key before the id.
	recordPrefixLen = 1 + tagLen + genLen + tagLen
)

func scopeMetaKey(scopeTag []byte) []byte {
	return append([]byte{prefixScope}, scopeTag...)
}

func genPrefix(scopeTag []byte, gen uint64) []byte {
	b := append([]byte{prefixRecord}, scopeTag...)
	return binary.BigEndian.AppendUint64(b, gen)
}

func garbageKey(scopeTag []byte, gen uint64) []byte {
	b := append([]byte{prefixGarbage}, scopeTag...)
	return binary.BigEndian.AppendUint64(b, gen)
}

// parseGen parses a scope's generation value.
func parseGen(b []byte) (uint64, error) {
	if len(b) != genLen {
		return 0, fmt.Errorf("%w: scope generation of %d bytes", ErrCorrupt, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// tagInput is the HMAC input of a scope tag (kind == nil) or kind tag.
func tagInput(scope Scope, kind *string) []byte {
	b := make([]byte, 0, 8+len(scope)+2+MaxKindLen)
	if kind == nil {
		b = append(b, "scope"...)
	} else {
		b = append(b, "kind"...)
	}
	b = append(b, byte(len(scope)))
	b = append(b, scope...)
	if kind != nil {
		b = append(b, byte(len(*kind)))
		b = append(b, *kind...)
	}
	return b
}

// Domain-separation labels (docs/spec/client-store.md §Labels).
const (
	labelTableKey = "moat localstore v1 table key"
	labelSlot     = "moat localstore v1 slot"
	labelRecord   = "moat localstore v1 record"
	labelKeyFile  = "moat localstore v1 key file"
	labelSlotKey  = "moat localstore v1 slot key"
	labelIndexKey = "moat localstore v1 index key"
)
