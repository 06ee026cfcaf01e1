package tlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/moat-im/moat/crypto/keys"
	"golang.org/x/crypto/cryptobyte"
)

// WitnessStore persists a witness's per-log record: the latest checkpoint
// it cosigned. Records are opaque bytes to the store, which only needs an
// atomic compare-and-swap (tlog-witness §add-checkpoint: checking the old
// size and persisting the new checkpoint must be atomic).
// tlogtest.TestWitnessStore checks an implementation.
type WitnessStore interface {
	// Load returns the record stored for origin, or nil and no error if
	// there is none. The caller may modify the returned slice.
	Load(ctx context.Context, origin string) ([]byte, error)
	// CompareAndSwap stores new for origin if the stored record is
	// byte-for-byte old, where a nil old means no record. Otherwise it
	// stores nothing and returns an error wrapping ErrRecordChanged. new
	// is never empty, and the store must not retain the caller's slices.
	CompareAndSwap(ctx context.Context, origin string, old, new []byte) error
}

// witnessRecord is the record a witness keeps per log
// (docs/spec/tlog.md §Witness record):
//
//	struct {
//	    opaque label[27] = "moat/v1/tlog/witness-record";
//	    uint64 size;
//	    opaque root[32];
//	    uint64 time;                    /* timestamp of the latest cosignature */
//	    opaque checkpoint<1..2^24-1>;   /* that checkpoint: log and own signatures */
//	    opaque log_key<0..2^16-1>;      /* the log key in force: empty for the
//	                                       configured one, else a PublicKey
//	                                       (keys.md, tag log_signing) */
//	} WitnessRecord;
type witnessRecord struct {
	size       uint64
	root       Hash
	time       uint64
	checkpoint []byte
	logKey     *keys.LogPublicKey // nil: the configured key
}

func (r *witnessRecord) marshal() ([]byte, error) {
	var b cryptobyte.Builder
	b.AddBytes([]byte(labelWitnessRecord))
	b.AddUint64(r.size)
	b.AddBytes(r.root[:])
	b.AddUint64(r.time)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(r.checkpoint) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		if r.logKey != nil {
			b.AddBytes(r.logKey.Bytes())
		}
	})
	return b.Bytes()
}

// parseWitnessRecord is strict: no trailing bytes, size and time at most
// 2^63-1, the checkpoint parses with the same size and root, and the log
// key, if any, is a valid log key.
func parseWitnessRecord(b []byte) (*witnessRecord, error) {
	r, err := parseWitnessRecordInner(b)
	if err != nil {
		return nil, fmt.Errorf("%w: witness record: %v", ErrMalformed, err)
	}
	return r, nil
}

func parseWitnessRecordInner(b []byte) (*witnessRecord, error) {
	s := cryptobyte.String(b)
	var label, root []byte
	var cp, lk cryptobyte.String
	r := &witnessRecord{}
	if !s.ReadBytes(&label, len(labelWitnessRecord)) || string(label) != labelWitnessRecord ||
		!s.ReadUint64(&r.size) || !s.ReadBytes(&root, HashSize) || !s.ReadUint64(&r.time) ||
		!s.ReadUint24LengthPrefixed(&cp) || !s.ReadUint16LengthPrefixed(&lk) || !s.Empty() {
		return nil, errors.New("bad encoding")
	}
	if len(lk) > 0 {
		k, err := keys.ParseLogPublicKey(lk)
		if err != nil {
			return nil, fmt.Errorf("log key: %v", err)
		}
		r.logKey = k
	}
	if r.size > MaxTreeSize || r.time > MaxTreeSize || len(cp) == 0 {
		return nil, errors.New("out of range")
	}
	r.root = Hash(root)
	r.checkpoint = bytes.Clone(cp)
	c, err := checkpointOfNote(r.checkpoint)
	if err != nil {
		return nil, err
	}
	if c.Size != r.size || c.Root != r.root {
		return nil, errors.New("checkpoint does not match")
	}
	return r, nil
}

// MemoryWitnessStore is an in-memory WitnessStore.
type MemoryWitnessStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

// NewMemoryWitnessStore returns an empty in-memory witness store.
func NewMemoryWitnessStore() *MemoryWitnessStore {
	return &MemoryWitnessStore{m: make(map[string][]byte)}
}

// Load implements WitnessStore.
func (s *MemoryWitnessStore) Load(_ context.Context, origin string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.m[origin]), nil
}

// CompareAndSwap implements WitnessStore.
func (s *MemoryWitnessStore) CompareAndSwap(_ context.Context, origin string, old, new []byte) error {
	if len(new) == 0 {
		return errors.New("tlog: empty witness record")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.m[origin]
	if ok != (old != nil) || !bytes.Equal(cur, old) {
		return fmt.Errorf("%w: %q", ErrRecordChanged, origin)
	}
	s.m[origin] = bytes.Clone(new)
	return nil
}
