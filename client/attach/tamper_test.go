package attach_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-im/moat/client/attach"
	"github.com/moat-im/moat/server/store/blob"
)

// evilRelay serves a modified ciphertext for downloads: a malicious
// relay. announce is the size it claims (default: the modified length).
type evilRelay struct {
	attach.Relay
	ct       []byte
	announce int64
}

func (r *evilRelay) DownloadAttachment(_ context.Context, _ blob.ID, off int64) (io.ReadCloser, int64, error) {
	n := int64(len(r.ct))
	if r.announce != 0 {
		n = r.announce
	}
	if off > int64(len(r.ct)) {
		off = int64(len(r.ct))
	}
	return io.NopCloser(bytes.NewReader(r.ct[off:])), n - off, nil
}

const S = attach.SegmentSize

// TestAttachmentTampered: a relay that flips a bit, truncates, reorders,
// drops or appends segments, serves another blob's ciphertext, or serves
// the right ciphertext under a reference with another key, id or digest,
// is refused with a typed error, and the writer has received only whole
// authenticated segments of the genuine plaintext, in order.
func TestAttachmentTampered(t *testing.T) {
	e := newEnv(t, nil)
	const size = 3*C + F + 1000 // 5 segments
	ref := must(attach.Upload(bg, e.dev, gen(5, size), size, nil))
	other := must(attach.Upload(bg, e.dev, gen(6, size), size, nil))
	ct := fetch(t, e, ref)
	otherCT := fetch(t, e, other)
	if int64(len(ct)) != ref.CiphertextSize {
		t.Fatalf("ciphertext %d bytes", len(ct))
	}
	seg := func(i int) []byte { return ct[i*S : min((i+1)*S, len(ct))] }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	flip := func(at int) []byte { c := bytes.Clone(ct); c[at] ^= 0x10; return c }

	for _, tc := range []struct {
		name     string
		ct       []byte
		announce int64
		ref      func(*attach.Reference)
		want     error
		written  int64 // plaintext bytes the writer may receive
	}{
		{name: "header bit", ct: flip(5), want: attach.ErrTampered},
		{name: "header length byte", ct: flip(0), want: attach.ErrTampered},
		{name: "segment 0 bit", ct: flip(100), want: attach.ErrTampered},
		{name: "segment 2 bit", ct: flip(2*S + 7), want: attach.ErrTampered, written: F + C},
		{name: "last tag bit", ct: flip(len(ct) - 1), want: attach.ErrTampered, written: F + 3*C},
		{name: "swap 1 and 2", ct: cat(seg(0), seg(2), seg(1), seg(3), seg(4)), want: attach.ErrTampered, written: F},
		{name: "drop 3, announced", ct: cat(seg(0), seg(1), seg(2), seg(4)), want: attach.ErrTruncated},
		{name: "drop 3, size lied", ct: cat(seg(0), seg(1), seg(2), seg(4)), announce: int64(len(ct)), want: attach.ErrTruncated, written: F + 2*C},
		{name: "cut at boundary, size lied", ct: ct[:4*S], announce: int64(len(ct)), want: attach.ErrTruncated, written: F + 2*C},
		{name: "cut mid-segment, size lied", ct: ct[:4*S-100], announce: int64(len(ct)), want: attach.ErrTruncated, written: F + 2*C},
		{name: "cut to header", ct: ct[:40], announce: int64(len(ct)), want: attach.ErrTruncated},
		{name: "empty", ct: []byte{}, announce: int64(len(ct)), want: attach.ErrTruncated},
		{name: "duplicate last", ct: cat(ct, seg(4)), want: attach.ErrTampered},
		{name: "extra byte", ct: cat(ct, []byte{0}), want: attach.ErrTampered},
		{name: "other blob", ct: otherCT, want: attach.ErrTampered},
		{name: "other key", ct: ct, ref: func(r *attach.Reference) { r.Key = other.Key }, want: attach.ErrTampered},
		{name: "other id (associated data)", ct: ct, ref: func(r *attach.Reference) { r.ID = other.ID }, want: attach.ErrTampered},
		{name: "other digest", ct: ct, ref: func(r *attach.Reference) { r.Digest[31] ^= 1 }, want: attach.ErrTampered, written: size},
		{name: "zero key", ct: ct, ref: func(r *attach.Reference) { r.Key = attach.Key{} }, want: attach.ErrMalformedReference},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := *ref
			if tc.ref != nil {
				tc.ref(&r)
			}
			c := newChecker(5)
			err := attach.Download(bg, &evilRelay{Relay: e.anon, ct: tc.ct, announce: tc.announce}, &r, c, nil)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if c.bad != nil || c.n != tc.written {
				t.Fatalf("writer received %d bytes (%v), want %d", c.n, c.bad, tc.written)
			}
		})
	}
	// The untouched ciphertext through the same fake decrypts.
	c := newChecker(5)
	ok(t, attach.Download(bg, &evilRelay{Relay: e.anon, ct: ct}, ref, c, nil))
	if c.n != size || c.bad != nil {
		t.Fatal("control download failed")
	}
}

func fetch(t *testing.T, e *env, ref *attach.Reference) []byte {
	t.Helper()
	body, _, err := e.anon.DownloadAttachment(bg, ref.ID, 0)
	ok(t, err)
	defer body.Close()
	return must(io.ReadAll(body))
}

// flipInBlobFile flips a bit at data offset off of the fsblob chunk file
// under dir (a blob of one chunk).
func flipInBlobFile(t *testing.T, dir string, off int64) {
	t.Helper()
	var files []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".chunk") {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 1 {
		t.Fatalf("%d chunk files", len(files))
	}
	f := must(os.OpenFile(files[0], os.O_RDWR, 0))
	defer f.Close()
	b := []byte{0}
	must(f.ReadAt(b, off))
	b[0] ^= 4
	must(f.WriteAt(b, off))
}
