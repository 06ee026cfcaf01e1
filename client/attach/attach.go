// Package attach encrypts, uploads, downloads and decrypts attachments as
// specified in docs/spec/attachments.md: a fresh key per file, Tink's
// AES-GCM-HKDF streaming AEAD in 1 MiB segments, resumable chunked upload
// to the relay, and a Reference that the message layer carries inside an
// end-to-end encrypted message.
//
// UploadFile and DownloadFile are the same for files on disk; DownloadFile
// renames its temporary file into place only after every byte verified.
//
// Neither Upload nor Download holds a file in memory: Upload keeps one
// upload chunk of ciphertext (Options.ChunkSize) until the relay has
// committed it, Download one segment.
package attach

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/store/blob"
)

// Errors. Callers test with errors.Is.
var (
	// ErrMalformedReference is returned for a reference that breaks
	// docs/spec/attachments.md §Reference.
	ErrMalformedReference = errors.New("attach: malformed reference")
	// ErrSize is returned by Upload when the reader gives fewer or more
	// bytes than declared, or a size is out of range.
	ErrSize = errors.New("attach: plaintext size does not match")
	// ErrNotFound is returned by Download when the relay has no such
	// finalized attachment (unknown, expired or deleted).
	ErrNotFound = errors.New("attach: attachment not found")
	// ErrTruncated is returned by Download when the relay sent fewer
	// bytes than the reference's ciphertext size.
	ErrTruncated = errors.New("attach: attachment truncated")
	// ErrTampered is returned by Download when the ciphertext fails
	// authentication or its digest differs from the reference's.
	ErrTampered = errors.New("attach: attachment fails authentication")
	// ErrTooLarge is returned by Upload when the relay refuses the size
	// (413).
	ErrTooLarge = errors.New("attach: attachment too large for the relay")
	// ErrQuota is returned by Upload when the device's or tenant's upload
	// budget is spent (507); retry later.
	ErrQuota = errors.New("attach: upload quota exceeded")
	// ErrRelay is returned when the relay breaks the upload protocol (it
	// lost committed bytes, or answered out of range).
	ErrRelay = errors.New("attach: relay broke the upload protocol")
)

// Relay is the relay API attachments use; *relay.Client implements it.
type Relay interface {
	CreateAttachment(ctx context.Context, size int64, expires time.Time) (*relay.AttachmentUpload, error)
	AttachmentUploadStatus(ctx context.Context, u *relay.AttachmentUpload) (*relay.AttachmentStatus, error)
	AppendAttachment(ctx context.Context, u *relay.AttachmentUpload, offset int64, chunk []byte) (int64, error)
	FinalizeAttachment(ctx context.Context, u *relay.AttachmentUpload) error
	DownloadAttachment(ctx context.Context, id blob.ID, offset int64) (io.ReadCloser, int64, error)
}

var _ Relay = (*relay.Client)(nil)

// Options tune Upload and Download. The zero value of a field selects its
// default; a nil *Options selects every default.
type Options struct {
	// TTL is how long the relay keeps an upload. Default 30 days.
	TTL time.Duration
	// ChunkSize is the size of one upload request, and the ciphertext
	// Upload holds in memory. Default 4 MiB; at most the relay's MaxChunk.
	ChunkSize int
	// Retries bounds the retries of one chunk, of finalization, and of
	// reconnecting a download. Default 8.
	Retries int
	// Backoff is the first wait before a retry (doubled each time, up to
	// 30 s) when the relay gives no Retry-After. Default 250 ms.
	Backoff time.Duration
	// Now is the clock for the expiry. Default time.Now.
	Now func() time.Time
}

// Defaults.
const (
	DefaultTTL       = 30 * 24 * time.Hour
	DefaultChunkSize = 4 << 20
	DefaultRetries   = 8
	DefaultBackoff   = 250 * time.Millisecond
)

func (o *Options) withDefaults() Options {
	var d Options
	if o != nil {
		d = *o
	}
	if d.TTL == 0 {
		d.TTL = DefaultTTL
	}
	if d.ChunkSize <= 0 {
		d.ChunkSize = DefaultChunkSize
	}
	if d.Retries == 0 {
		d.Retries = DefaultRetries
	}
	if d.Backoff == 0 {
		d.Backoff = DefaultBackoff
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return d
}

// retryable reports whether an error is worth a retry: a network error,
// a 429, 500, 502, 503 or 504. It returns the wait the relay asked for, if
// any.
func retryable(err error) (bool, time.Duration) {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false, 0
	}
	var ae *relay.APIError
	if errors.As(err, &ae) {
		switch ae.Status {
		case 429, 500, 502, 503, 504:
			return true, ae.RetryAfter
		}
		return false, 0
	}
	if errors.Is(err, relay.ErrMalformed) {
		return false, 0
	}
	return true, 0
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// backoff returns the wait before retry number attempt (from 1).
func (o *Options) backoff(attempt int, asked time.Duration) time.Duration {
	if asked > 0 {
		return min(asked, time.Minute)
	}
	d := o.Backoff << min(attempt-1, 16)
	return min(d, 30*time.Second)
}
