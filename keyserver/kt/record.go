package kt

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/vmap"
)

// Sizes and bounds (docs/spec/directory.md).
const (
	// NonceSize is the size of a value record's nonce.
	NonceSize = 32
	// MaxValueSize is the largest value a record carries.
	MaxValueSize = 1<<24 - 1
	// MinSecretSize is the shortest directory secret DeriveNonce accepts.
	MinSecretSize = 32
	// MaxEpoch bounds epochs and times, as tlog bounds tree sizes.
	MaxEpoch = tlog.MaxTreeSize
	// EpochEntrySize is the size of an EpochEntry encoding.
	EpochEntrySize = 1 + 1 + 8 + 8 + vmap.HashSize
	// RecordOverhead is the size of a ValueRecord encoding without its
	// value bytes.
	RecordOverhead = 1 + 1 + 8 + 4 + vmap.CommitmentSize + NonceSize + 3
)

// ValueRecord is one version of a label's value (docs/spec/directory.md
// §Value records). A label's records form a hash chain: each names the
// commitment of the one before, and the map holds the commitment of the
// latest.
type ValueRecord struct {
	// Epoch is the epoch that published this version.
	Epoch uint64
	// Version numbers the label's values from 1.
	Version uint32
	// Prev is the commitment of version Version-1, zero for version 1.
	Prev vmap.Commitment
	// Nonce makes the commitment hiding (§Commitments).
	Nonce [NonceSize]byte
	// Value is the org.Update value: an org.UserValue encoding under a
	// user label, an org statement under an org label.
	Value []byte
}

//	struct {
//	    uint8  type = 0x50;
//	    uint8  format = 1;
//	    uint64 epoch;                 /* ≤ 2^63-1 */
//	    uint32 version;               /* ≥ 1 */
//	    opaque prev_hash[32];         /* zero iff version = 1 */
//	    opaque nonce[32];
//	    opaque value<0..2^24-1>;
//	} ValueRecord;

func (r *ValueRecord) check() error {
	if r.Epoch > MaxEpoch || r.Version == 0 || (r.Version == 1) != (r.Prev == vmap.Commitment{}) || len(r.Value) > MaxValueSize {
		return ErrMalformed
	}
	return nil
}

// Marshal returns the ValueRecord encoding.
func (r *ValueRecord) Marshal() ([]byte, error) {
	return r.appendTo(make([]byte, 0, RecordOverhead+len(r.Value)))
}

func (r *ValueRecord) appendTo(b []byte) ([]byte, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	b = append(b, typeValueRecord, format1)
	b = binary.BigEndian.AppendUint64(b, r.Epoch)
	b = binary.BigEndian.AppendUint32(b, r.Version)
	b = append(b, r.Prev[:]...)
	b = append(b, r.Nonce[:]...)
	b = append(b, byte(len(r.Value)>>16), byte(len(r.Value)>>8), byte(len(r.Value)))
	return append(b, r.Value...), nil
}

// ParseValueRecord parses a ValueRecord encoding strictly.
func ParseValueRecord(data []byte) (*ValueRecord, error) {
	s := newReader(data)
	r, err := readRecord(s)
	if err != nil || !s.Empty() {
		return nil, fmt.Errorf("%w: value record", ErrMalformed)
	}
	return r, nil
}

// Commit returns the commitment of a record under label, the value the map
// stores (docs/spec/directory.md §Commitments):
//
//	SHA-256("moat/v1/kt/commitment" || 0x00 || label[32] || ValueRecord)
func Commit(label vmap.Label, r *ValueRecord) (vmap.Commitment, error) {
	b := make([]byte, 0, len(labelCommitment)+1+len(label)+RecordOverhead+len(r.Value))
	b = append(append(append(b, labelCommitment...), 0), label[:]...)
	b, err := r.appendTo(b)
	if err != nil {
		return vmap.Commitment{}, err
	}
	return vmap.Commitment(sha256Sum(b)), nil
}

// DeriveNonce returns the nonce of version of label, derived from the
// directory's secret (docs/spec/directory.md §Commitments):
//
//	HMAC-SHA256(secret, "moat/v1/kt/nonce" || 0x00 || label[32] || uint32 version)
//
// The secret must be at least MinSecretSize bytes of secret randomness and
// never leave the directory; deriving the nonce lets the directory rebuild
// a record from its inputs, and store none.
func DeriveNonce(secret []byte, label vmap.Label, version uint32) ([NonceSize]byte, error) {
	if len(secret) < MinSecretSize {
		return [NonceSize]byte{}, errors.New("kt: directory secret shorter than 32 bytes")
	}
	m := hmac.New(sha256.New, secret)
	var v [4]byte
	binary.BigEndian.PutUint32(v[:], version)
	m.Write(labelled(labelNonce, label[:], v[:]))
	return [NonceSize]byte(m.Sum(nil)), nil
}

// NextRecord is the directory's side of §Value records: it returns the
// record that makes value the next version of label at epoch, after prev
// (nil for the first version), with its nonce derived from secret, and the
// record's commitment.
func NextRecord(secret []byte, label vmap.Label, epoch uint64, prev *ValueRecord, value []byte) (*ValueRecord, vmap.Commitment, error) {
	r := &ValueRecord{Epoch: epoch, Version: 1, Value: value}
	if prev != nil {
		if prev.Version == math.MaxUint32 || epoch <= prev.Epoch {
			return nil, vmap.Commitment{}, errors.New("kt: next record: version overflow or epoch not after the previous record's")
		}
		c, err := Commit(label, prev)
		if err != nil {
			return nil, vmap.Commitment{}, err
		}
		r.Version, r.Prev = prev.Version+1, c
	}
	var err error
	if r.Nonce, err = DeriveNonce(secret, label, r.Version); err != nil {
		return nil, vmap.Commitment{}, err
	}
	c, err := Commit(label, r)
	if err != nil {
		return nil, vmap.Commitment{}, err
	}
	return r, c, nil
}

// EpochEntry is the log's leaf for one epoch (docs/spec/directory.md §Epoch
// entries): the leaf with index Epoch commits to the map root of Epoch.
type EpochEntry struct {
	Epoch   uint64
	Time    time.Time // the publication time, whole seconds
	MapRoot vmap.Hash
}

//	struct {
//	    uint8  type = 0x51;
//	    uint8  format = 1;
//	    uint64 epoch;                 /* = the leaf index, ≤ 2^63-1 */
//	    uint64 time;                  /* POSIX seconds, ≤ 2^63-1 */
//	    opaque map_root[32];
//	} EpochEntry;

// Marshal returns the EpochEntry encoding.
func (e *EpochEntry) Marshal() ([]byte, error) { return e.appendTo(make([]byte, 0, EpochEntrySize)) }

func (e *EpochEntry) appendTo(b []byte) ([]byte, error) {
	t := e.Time.Unix()
	if e.Epoch > MaxEpoch || t < 0 || e.Time.Nanosecond() != 0 {
		return nil, ErrMalformed
	}
	b = append(b, typeEpochEntry, format1)
	b = binary.BigEndian.AppendUint64(b, e.Epoch)
	b = binary.BigEndian.AppendUint64(b, uint64(t))
	return append(b, e.MapRoot[:]...), nil
}

// ParseEpochEntry parses an EpochEntry encoding strictly.
func ParseEpochEntry(data []byte) (*EpochEntry, error) {
	s := newReader(data)
	e, err := readEpochEntry(s)
	if err != nil || !s.Empty() {
		return nil, fmt.Errorf("%w: epoch entry", ErrMalformed)
	}
	return e, nil
}

// LeafHash returns the RFC 6962 leaf hash of the entry, as the log holds it.
func (e *EpochEntry) LeafHash() (tlog.Hash, error) {
	enc, err := e.Marshal()
	if err != nil {
		return tlog.Hash{}, err
	}
	return tlog.LeafHash(enc), nil
}
