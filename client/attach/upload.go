package attach

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"

	"github.com/moat-im/moat/server/relay"
)

// Upload encrypts size bytes read from r under a fresh key and uploads
// them to the relay (docs/spec/attachments.md §Upload). It returns the
// reference to send inside an end-to-end encrypted message. r must give
// exactly size bytes (ErrSize otherwise). Network errors, 5xx and 429
// answers are retried from the relay's committed offset, up to
// o.Retries times per chunk. On error the abandoned upload expires at the
// relay.
func Upload(ctx context.Context, rl Relay, r io.Reader, size int64, o *Options) (*Reference, error) {
	ref, _, err := UploadOwned(ctx, rl, r, size, o)
	return ref, err
}

// UploadOwned is Upload, and also returns the upload token, with which
// this device alone can delete the blob later (Delete;
// docs/spec/attachments.md §Sender-side deletion). The token is a secret:
// keep it only in the sealed local store, never in a message or a log.
func UploadOwned(ctx context.Context, rl Relay, r io.Reader, size int64, o *Options) (*Reference, *relay.UploadToken, error) {
	ref, u, err := upload(ctx, rl, r, size, o)
	if err != nil {
		return nil, nil, err
	}
	tok := u.up.Token
	return ref, &tok, nil
}

func upload(ctx context.Context, rl Relay, r io.Reader, size int64, o *Options) (*Reference, *uploader, error) {
	opts := o.withDefaults()
	if size < 0 || size > MaxPlaintextSize {
		return nil, nil, fmt.Errorf("%w: %d bytes", ErrSize, size)
	}
	ref := &Reference{PlaintextSize: size, CiphertextSize: CiphertextSize(PaddedSize(size))}
	rand.Read(ref.Key[:])
	aead, err := newAEAD(&ref.Key)
	if err != nil {
		return nil, nil, err
	}
	u := &uploader{ctx: ctx, rl: rl, opts: &opts, buf: make([]byte, 0, opts.ChunkSize), hash: sha256.New()}
	err = u.retry(func() (err error) {
		u.up, err = rl.CreateAttachment(ctx, ref.CiphertextSize, opts.Now().Add(opts.TTL))
		return err
	})
	if ae, ok := errors.AsType[*relay.APIError](err); ok {
		switch ae.Status {
		case http.StatusRequestEntityTooLarge:
			return nil, nil, fmt.Errorf("%w: %d ciphertext bytes: %w", ErrTooLarge, ref.CiphertextSize, err)
		case http.StatusInsufficientStorage:
			return nil, nil, fmt.Errorf("%w: %w", ErrQuota, err)
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("attach: creating the upload: %w", err)
	}
	ref.ID, ref.Expires = u.up.ID, u.up.Expires
	enc, err := aead.NewEncryptingWriter(u, AssociatedData(ref.ID))
	if err != nil {
		return nil, nil, fmt.Errorf("attach: %w", err)
	}
	n, err := io.CopyN(enc, r, size)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, fmt.Errorf("%w: reader ended after %d of %d bytes", ErrSize, n, size)
		}
		return nil, nil, u.wrap(err)
	}
	var one [1]byte
	if k, _ := io.ReadFull(r, one[:]); k > 0 {
		return nil, nil, fmt.Errorf("%w: reader gives more than %d bytes", ErrSize, size)
	}
	// The padding: zero bytes up to PaddedSize(size), encrypted with the
	// file (docs/spec/attachments.md §Padding).
	if _, err := io.CopyN(enc, zeros{}, PaddedSize(size)-size); err != nil {
		return nil, nil, u.wrap(err)
	}
	if err := enc.Close(); err != nil {
		return nil, nil, u.wrap(err)
	}
	if err := u.flush(); err != nil {
		return nil, nil, err
	}
	if u.sent != ref.CiphertextSize {
		return nil, nil, fmt.Errorf("attach: internal error: %d ciphertext bytes, want %d", u.sent, ref.CiphertextSize)
	}
	if err := u.retry(func() error { return rl.FinalizeAttachment(ctx, u.up) }); err != nil {
		return nil, nil, fmt.Errorf("attach: finalizing: %w", err)
	}
	u.hash.Sum(ref.Digest[:0])
	return ref, u, nil
}

// uploader is the io.Writer under the encrypter: it hashes the ciphertext,
// gathers it into chunks and uploads each.
type uploader struct {
	ctx  context.Context
	rl   Relay
	opts *Options
	// up is the upload: its id and the upload token, kept in memory only
	// (docs/spec/attachments.md §Upload capability).
	up   *relay.AttachmentUpload
	hash hash.Hash
	buf  []byte
	sent int64 // ciphertext offset of buf[0]
	err  error // the upload error, kept to report it unwrapped
}

func (u *uploader) Write(p []byte) (int, error) {
	u.hash.Write(p)
	for n := 0; n < len(p); {
		k := copy(u.buf[len(u.buf):cap(u.buf)], p[n:])
		u.buf = u.buf[:len(u.buf)+k]
		n += k
		if len(u.buf) == cap(u.buf) {
			if err := u.flush(); err != nil {
				return n, err
			}
		}
	}
	return len(p), nil
}

// wrap returns the upload error behind an error of the encrypter.
func (u *uploader) wrap(err error) error {
	if u.err != nil {
		return u.err
	}
	return fmt.Errorf("attach: %w", err)
}

// flush uploads buf at offset sent until the relay has committed all of
// it.
func (u *uploader) flush() error {
	start, end := u.sent, u.sent+int64(len(u.buf))
	off := start
	failures := 0
	for off < end {
		committed, err := u.rl.AppendAttachment(u.ctx, u.up, off, u.buf[off-start:])
		if err == nil {
			if committed < off || committed > end {
				return u.fail(fmt.Errorf("%w: committed offset %d after a chunk at %d..%d", ErrRelay, committed, off, end))
			}
			off = committed
			continue
		}
		if oe, ok := errors.AsType[*relay.OffsetError](err); ok {
			if oe.Committed < start || oe.Committed > end {
				return u.fail(fmt.Errorf("%w: committed offset %d outside the chunk at %d..%d", ErrRelay, oe.Committed, start, end))
			}
			if oe.Committed == off {
				return u.fail(fmt.Errorf("attach: uploading at %d: %w", off, err))
			}
			off = oe.Committed
			continue
		}
		ok, wait := retryable(err)
		failures++
		if !ok || failures > u.opts.Retries {
			return u.fail(fmt.Errorf("attach: uploading at %d: %w", off, err))
		}
		if err := sleep(u.ctx, u.opts.backoff(failures, wait)); err != nil {
			return u.fail(err)
		}
		st, serr := u.rl.AttachmentUploadStatus(u.ctx, u.up)
		if serr != nil {
			continue // send from off again: committed bytes are accepted again
		}
		if st.Committed < start {
			return u.fail(fmt.Errorf("%w: relay lost committed bytes (%d < %d)", ErrRelay, st.Committed, start))
		}
		if st.Committed > end {
			return u.fail(fmt.Errorf("%w: committed offset %d beyond the chunk's end %d", ErrRelay, st.Committed, end))
		}
		off = st.Committed
	}
	u.sent, u.buf = end, u.buf[:0]
	return nil
}

func (u *uploader) fail(err error) error {
	u.err = err
	return err
}

// retry runs f until it succeeds, retrying retryable errors.
func (u *uploader) retry(f func() error) error {
	for failures := 0; ; {
		err := f()
		if err == nil {
			return nil
		}
		ok, wait := retryable(err)
		failures++
		if !ok || failures > u.opts.Retries {
			return err
		}
		if err := sleep(u.ctx, u.opts.backoff(failures, wait)); err != nil {
			return err
		}
	}
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
