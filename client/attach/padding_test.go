package attach_test

import (
	"bytes"
	"errors"
	"math/bits"
	"testing"

	"github.com/moat-im/moat/client/attach"
)

// TestPaddedSize checks PaddedSize against docs/spec/attachments.md
// §Padding: the table there, and for many sizes that the padded size is
// at least the size, less than 6.25% (or, up to 4 KiB, MinPaddedSize)
// more,
// has at most S significant bits, and never decreases.
func TestPaddedSize(t *testing.T) {
	for _, tc := range []struct{ p, want int64 }{
		{0, 4096}, {1, 4096}, {4096, 4096}, {4097, 4352}, {5000, 5120}, {5100, 5120},
		{1 << 20, 1 << 20}, {1<<20 + 1, 1<<20 + 1<<15}, {256 << 20, 256 << 20},
		{256<<20 + 1, 256<<20 + 8<<20}, {attach.MaxPlaintextSize, attach.MaxPlaintextSize},
	} {
		if got := attach.PaddedSize(tc.p); got != tc.want {
			t.Errorf("PaddedSize(%d) = %d, want %d", tc.p, got, tc.want)
		}
	}
	prev := int64(0)
	check := func(p int64) {
		q := attach.PaddedSize(p)
		if q < p || q < prev || q > attach.MaxPlaintextSize {
			t.Fatalf("PaddedSize(%d) = %d (previous %d)", p, q, prev)
		}
		if p > attach.MinPaddedSize {
			if float64(q-p) >= 0.0625*float64(p) {
				t.Fatalf("PaddedSize(%d) = %d: overhead %.1f%%", p, q, 100*float64(q-p)/float64(p))
			}
			e := bits.Len64(uint64(p)) - 1
			s := bits.Len64(uint64(e))
			if q%(int64(1)<<(e-s)) != 0 {
				t.Fatalf("PaddedSize(%d) = %d is not a multiple of 2^%d", p, q, e-s)
			}
		}
		prev = q
	}
	for p := int64(0); p < 1<<17; p++ {
		check(p)
	}
	for p := int64(1 << 17); p < attach.MaxPlaintextSize; p += p/997 + 1 {
		check(p)
	}
}

// TestT34AttachmentSizesPadded: the relay holds a padded size, not the
// file's: files of 1, 100 and 4096 bytes are blobs of one size, and so are
// files of 5000 and 5100 bytes; each downloads to its exact size.
func TestT34AttachmentSizesPadded(t *testing.T) {
	e := newEnv(t, nil)
	for _, group := range [][]int64{{1, 100, 4096}, {5000, 5100}} {
		var size int64
		for i, p := range group {
			ref := must(attach.Upload(bg, e.dev, gen(uint64(p), p), p, nil))
			if i == 0 {
				size = ref.CiphertextSize
			}
			if ref.CiphertextSize != size || int64(len(fetch(t, e, ref))) != size {
				t.Fatalf("%d bytes: a blob of %d bytes, want %d like %d bytes", p, ref.CiphertextSize, size, group[0])
			}
			c := newChecker(uint64(p))
			ok(t, attach.Download(bg, e.anon, ref, c, nil))
			if c.bad != nil || c.n != p {
				t.Fatalf("%d bytes: downloaded %d: %v", p, c.n, c.bad)
			}
		}
	}
}

// TestPaddingNotZero: a sender whose padding is not zero bytes (a 4096-byte
// plaintext sent under a reference that says 100 bytes) is refused with
// ErrTampered, after the 100 bytes were written.
func TestPaddingNotZero(t *testing.T) {
	e := newEnv(t, nil)
	plain := bytes.Repeat([]byte{7}, 4096)
	ref := must(attach.Upload(bg, e.dev, bytes.NewReader(plain), 4096, nil))
	lying := *ref
	lying.PlaintextSize = 100
	lying = *must(attach.ParseReference(must(lying.Marshal())))
	var got bytes.Buffer
	if err := attach.Download(bg, e.anon, &lying, &got, nil); !errors.Is(err, attach.ErrTampered) {
		t.Fatalf("non-zero padding: %v", err)
	}
	if !bytes.Equal(got.Bytes(), plain[:100]) {
		t.Fatalf("wrote %d bytes", got.Len())
	}
	// The same blob with zero padding is accepted.
	zero := append(bytes.Repeat([]byte{7}, 100), make([]byte, 3996)...)
	ref = must(attach.Upload(bg, e.dev, bytes.NewReader(zero), 4096, nil))
	lying = *ref
	lying.PlaintextSize = 100
	got.Reset()
	ok(t, attach.Download(bg, e.anon, &lying, &got, nil))
	if !bytes.Equal(got.Bytes(), zero[:100]) {
		t.Fatalf("wrote %d bytes", got.Len())
	}
}
