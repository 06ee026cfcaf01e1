// Package blob defines the relay's attachment storage seam, as specified
// in docs/spec/relay-storage.md §Blobs: resumable uploads of encrypted
// attachments, read back by range, that expire.
//
// An upload is created with its total size, expiry and an opaque tag
// (kept, never interpreted) and gets a random 32-byte ID, which names the
// blob from then on. Its bytes are appended in
// chunks at explicit offsets; each chunk is durable before Append
// returns, so an interrupted upload resumes from the committed offset
// (Info). A chunk that repeats committed bytes is accepted (a retry); a
// chunk that leaves a gap, or repeats an offset with other bytes, is
// refused. Finalize seals the blob once every byte is committed; only a
// sealed blob can be read. Contents are ciphertext, opaque to the store,
// which never holds a whole blob in memory.
//
// Backends: fsblob (files, the default) and memblob (in memory, for
// tests). Every backend runs the conformance suite in blobtest.
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Errors. Backends wrap them with context; callers test with errors.Is.
var (
	// ErrInvalid is returned for a request malformed in itself: a size,
	// offset, length or expiry out of range, a chunk shorter than
	// declared.
	ErrInvalid = errors.New("blob: invalid request")
	// ErrNotFound is returned for an unknown, expired or deleted blob,
	// and for reading a blob that is not finalized.
	ErrNotFound = errors.New("blob: not found")
	// ErrGap is returned by Append for an offset past the committed
	// offset; resume from Info's Committed.
	ErrGap = errors.New("blob: chunk leaves a gap")
	// ErrMismatch is returned by Append for a chunk whose bytes differ
	// from bytes already committed at the same offsets.
	ErrMismatch = errors.New("blob: chunk differs from committed bytes")
	// ErrIncomplete is returned by Finalize before every byte is
	// committed.
	ErrIncomplete = errors.New("blob: upload incomplete")
	// ErrUnavailable is returned when the store cannot make writes durable
	// now (disk full, a failed write or sync). The call had no
	// acknowledged effect; retry later (HTTP 503 with Retry-After).
	ErrUnavailable = errors.New("blob: storage unavailable")
	// ErrCorrupt is returned when stored data fails an integrity check. A
	// reader returns it after the verified bytes before the damage.
	ErrCorrupt = errors.New("blob: stored data is corrupt")
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("blob: store closed")
)

// ID names a blob: 32 random bytes chosen by the store.
type ID [32]byte

func (id ID) String() string { return fmt.Sprintf("%x", id[:]) }

// Tag is 32 opaque bytes a blob is created with: the store keeps them in
// the blob's metadata and Info returns them, uninterpreted. The relay puts
// the hash of the upload capability there (docs/spec/attachments.md
// §Upload capability). A blob stored before tags existed has the zero Tag.
type Tag [32]byte

// Info describes a blob.
type Info struct {
	// Size is the declared total size.
	Size int64
	// Committed is how many bytes, from the start, are durable.
	Committed int64
	// Expires is when the store deletes the blob, at millisecond
	// precision.
	Expires time.Time
	// Final reports whether the blob is finalized (readable).
	Final bool
	// Tag is the tag the blob was created with.
	Tag Tag
}

// Store is the blob storage seam (docs/spec/relay-storage.md §Blob
// interface). Implementations are safe for concurrent use and run
// blobtest.Run.
type Store interface {
	// Create starts an upload of size bytes (1 ≤ size ≤ the store's
	// maximum) that expires at expires, with tag, durably, and returns its
	// ID.
	Create(ctx context.Context, size int64, expires time.Time, tag Tag) (ID, error)

	// Append writes the n bytes read from r at offset (n at most the
	// store's chunk limit, offset+n at most the size) and returns the
	// committed offset, once they are durable. Bytes below the committed
	// offset must equal those committed (ErrMismatch otherwise); offset
	// past it is ErrGap. If r ends before n bytes, nothing is committed
	// (ErrInvalid).
	Append(ctx context.Context, id ID, offset int64, r io.Reader, n int64) (int64, error)

	// Info returns the state of a blob.
	Info(ctx context.Context, id ID) (Info, error)

	// Finalize seals a fully committed blob, durably; it is idempotent.
	Finalize(ctx context.Context, id ID) error

	// Open returns a reader of length bytes of a finalized blob from
	// offset. It returns only bytes that pass the store's integrity
	// checks, and ErrCorrupt at the first that fails.
	Open(ctx context.Context, id ID, offset, length int64) (io.ReadCloser, error)

	// Delete removes a blob, durably.
	Delete(ctx context.Context, id ID) error

	// Sweep deletes expired blobs and the debris of interrupted writes,
	// and returns how many blobs it deleted.
	Sweep(ctx context.Context) (int, error)

	// Close releases the store. Calls after Close return ErrClosed;
	// readers opened before may fail. Close is idempotent.
	Close() error
}

// Limits bound what a store accepts. The zero value of a field selects
// its default.
type Limits struct {
	// MaxSize bounds a blob. Default 4 GiB.
	MaxSize int64
	// MaxChunk bounds one Append. Default 16 MiB.
	MaxChunk int64
	// MaxTTL bounds how far in the future a blob may expire. Default 30
	// days.
	MaxTTL time.Duration
}

// Defaults.
const (
	DefaultMaxSize  = 4 << 30
	DefaultMaxChunk = 16 << 20
	DefaultMaxTTL   = 30 * 24 * time.Hour
)

// WithDefaults returns l with defaults for its zero fields, or an error
// matching ErrInvalid for a negative field.
func (l Limits) WithDefaults() (Limits, error) {
	if l.MaxSize < 0 || l.MaxChunk < 0 || l.MaxTTL < 0 {
		return l, fmt.Errorf("%w: limits %+v", ErrInvalid, l)
	}
	if l.MaxSize == 0 {
		l.MaxSize = DefaultMaxSize
	}
	if l.MaxChunk == 0 {
		l.MaxChunk = DefaultMaxChunk
	}
	if l.MaxTTL == 0 {
		l.MaxTTL = DefaultMaxTTL
	}
	return l, nil
}

// CheckCreate validates Create's arguments at time now and returns the
// expiry in Unix milliseconds.
func (l *Limits) CheckCreate(size int64, expires, now time.Time) (int64, error) {
	if size < 1 || size > l.MaxSize {
		return 0, fmt.Errorf("%w: size %d (1..%d)", ErrInvalid, size, l.MaxSize)
	}
	exp, nowMs := expires.UnixMilli(), now.UnixMilli()
	if exp <= nowMs || exp-nowMs > l.MaxTTL.Milliseconds() {
		return 0, fmt.Errorf("%w: expiry outside (now, now + %v]", ErrInvalid, l.MaxTTL)
	}
	return exp, nil
}

// CheckAppend validates Append's range against a blob of size bytes.
func (l *Limits) CheckAppend(size, offset, n int64) error {
	if n < 1 || n > l.MaxChunk || offset < 0 || offset > size || n > size-offset {
		return fmt.Errorf("%w: chunk of %d bytes at %d (chunks 1..%d, size %d)", ErrInvalid, n, offset, l.MaxChunk, size)
	}
	return nil
}

// CheckRange validates Open's range against a blob of size bytes.
func CheckRange(size, offset, length int64) error {
	if offset < 0 || length < 0 || offset > size || length > size-offset {
		return fmt.Errorf("%w: range of %d bytes at %d in a blob of %d", ErrInvalid, length, offset, size)
	}
	return nil
}
