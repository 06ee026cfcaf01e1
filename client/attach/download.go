package attach

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"

	"github.com/moat-im/moat/server/relay"
)

// Download fetches the attachment ref names, decrypts it as it streams and
// writes the plaintext to w (docs/spec/attachments.md §Download). A
// dropped connection is resumed by range, up to o.Retries times.
//
// w receives the plaintext of each segment only after that segment
// authenticates, in order. On error w has received a genuine prefix of the
// plaintext made of whole authenticated segments, possibly all of them
// (ErrTampered from the digest check); the caller discards it. Errors:
// ErrMalformedReference, ErrNotFound, ErrTruncated, ErrTampered, or the
// relay's or the network's, or w's.
func Download(ctx context.Context, rl Relay, ref *Reference, w io.Writer, o *Options) error {
	opts := o.withDefaults()
	if err := ref.check(); err != nil {
		return err
	}
	aead, err := newAEAD(&ref.Key)
	if err != nil {
		return err
	}
	src := &source{ctx: ctx, rl: rl, ref: ref, opts: &opts, hash: sha256.New()}
	defer src.close()
	dec, err := aead.NewDecryptingReader(src, AssociatedData(ref.ID))
	if err != nil {
		return src.classify(err)
	}
	ww := &trackingWriter{w: w, left: ref.PlaintextSize}
	if _, err := io.CopyBuffer(ww, dec, make([]byte, 64<<10)); err != nil {
		if ww.err != nil {
			return fmt.Errorf("attach: writing the plaintext: %w", ww.err)
		}
		return src.classify(err)
	}
	if ww.left != 0 || ww.padding != PaddedSize(ref.PlaintextSize)-ref.PlaintextSize {
		return fmt.Errorf("%w: %d plaintext bytes, want %d", ErrTampered, ref.PlaintextSize-ww.left+ww.padding, PaddedSize(ref.PlaintextSize))
	}
	if ww.nonzero {
		return fmt.Errorf("%w: padding is not zero", ErrTampered)
	}
	// The decrypter stops at the authenticated last segment; anything the
	// relay sends beyond it is tampering.
	var one [1]byte
	if k, err := io.ReadFull(src, one[:]); k > 0 {
		return fmt.Errorf("%w: bytes after the last segment", ErrTampered)
	} else if src.err != nil {
		return src.err
	} else if err != nil && err != io.EOF {
		return src.classify(err)
	}
	if src.pos != ref.CiphertextSize {
		return fmt.Errorf("%w: %d of %d bytes", ErrTruncated, src.pos, ref.CiphertextSize)
	}
	var sum [32]byte
	src.hash.Sum(sum[:0])
	if subtle.ConstantTimeCompare(sum[:], ref.Digest[:]) != 1 {
		return fmt.Errorf("%w: ciphertext digest differs from the reference", ErrTampered)
	}
	return nil
}

// trackingWriter writes the first left bytes to w, remembering w's own
// error, and checks that the padding after them is zero
// (docs/spec/attachments.md §Padding).
type trackingWriter struct {
	w       io.Writer
	err     error
	left    int64 // plaintext bytes still to write
	padding int64 // padding bytes seen
	nonzero bool  // a padding byte was not zero
}

func (t *trackingWriter) Write(p []byte) (int, error) {
	k := int(min(int64(len(p)), t.left))
	if k > 0 {
		n, err := t.w.Write(p[:k])
		t.left -= int64(n)
		if err != nil {
			t.err = err
			return n, err
		}
	}
	for _, b := range p[k:] {
		t.nonzero = t.nonzero || b != 0
	}
	t.padding += int64(len(p) - k)
	return len(p), nil
}

// source reads the ciphertext from the relay, hashing it, and reconnects
// by range after a network error. It gives at most ref.CiphertextSize
// bytes: it refuses a relay that announces another size.
type source struct {
	ctx      context.Context
	rl       Relay
	ref      *Reference
	opts     *Options
	hash     hash.Hash
	body     io.ReadCloser
	pos      int64 // ciphertext bytes read
	failures int
	eof      bool
	// err is a failure of the relay or the network (not of the
	// ciphertext), kept to report it as such.
	err error
}

func (s *source) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	for {
		if s.eof {
			return 0, io.EOF
		}
		if s.body == nil {
			if s.pos >= s.ref.CiphertextSize {
				s.eof = true
				continue
			}
			if err := s.open(); err != nil {
				s.err = err
				return 0, err
			}
		}
		n, err := s.body.Read(p)
		if n > 0 {
			s.hash.Write(p[:n])
			s.pos += int64(n)
			return n, nil
		}
		if err == io.EOF {
			s.eof = true
			return 0, io.EOF
		}
		if err == nil {
			continue
		}
		// A broken connection: reconnect from pos.
		s.body.Close()
		s.body = nil
		s.failures++
		if ok, _ := retryable(err); !ok || s.failures > s.opts.Retries {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				// The relay keeps sending less than it announced.
				err = fmt.Errorf("%w: %v", ErrTruncated, err)
			}
			s.err = fmt.Errorf("attach: downloading at %d: %w", s.pos, err)
			return 0, s.err
		}
		if err := sleep(s.ctx, s.opts.backoff(s.failures, 0)); err != nil {
			s.err = err
			return 0, err
		}
	}
}

// open requests the ciphertext from pos, retrying retryable failures.
func (s *source) open() error {
	for {
		body, n, err := s.rl.DownloadAttachment(s.ctx, s.ref.ID, s.pos)
		if err == nil {
			if s.pos+n != s.ref.CiphertextSize {
				body.Close()
				if s.pos+n < s.ref.CiphertextSize {
					return fmt.Errorf("%w: the relay holds %d of %d bytes", ErrTruncated, s.pos+n, s.ref.CiphertextSize)
				}
				return fmt.Errorf("%w: the relay holds %d bytes, want %d", ErrTampered, s.pos+n, s.ref.CiphertextSize)
			}
			s.body = struct {
				io.Reader
				io.Closer
			}{io.LimitReader(body, n), body}
			return nil
		}
		if ae, ok := errors.AsType[*relay.APIError](err); ok && ae.Status == http.StatusNotFound {
			return fmt.Errorf("%w: %v", ErrNotFound, err)
		}
		if ae, ok := errors.AsType[*relay.APIError](err); ok && ae.Status == http.StatusRequestedRangeNotSatisfiable {
			return fmt.Errorf("%w: the relay holds fewer than %d bytes", ErrTruncated, s.pos+1)
		}
		s.failures++
		ok, wait := retryable(err)
		if !ok || s.failures > s.opts.Retries {
			return fmt.Errorf("attach: downloading: %w", err)
		}
		if err := sleep(s.ctx, s.opts.backoff(s.failures, wait)); err != nil {
			return err
		}
	}
}

func (s *source) close() {
	if s.body != nil {
		s.body.Close()
	}
}

// classify turns an error of the decrypter into a typed one: the source's
// own failure, or a short or unauthenticated ciphertext.
func (s *source) classify(err error) error {
	if s.err != nil {
		return s.err
	}
	if s.eof && s.pos < s.ref.CiphertextSize {
		return fmt.Errorf("%w: %d of %d bytes", ErrTruncated, s.pos, s.ref.CiphertextSize)
	}
	return fmt.Errorf("%w: %v", ErrTampered, err)
}
