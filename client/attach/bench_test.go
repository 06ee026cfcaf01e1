package attach_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/moat-im/moat/client/attach"
	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/store/blob"
	"github.com/moat-im/moat/server/store/blob/fsblob"
)

const benchSize = 64 << 20

// BenchmarkUpload: a 64 MiB file from a generator, encrypted and uploaded
// in 4 MiB (the default) or 16 MiB chunks to a relay on loopback HTTP with
// the file blob store (each chunk fsynced).
func BenchmarkUpload(b *testing.B) {
	for _, chunk := range []int{4 << 20, 16 << 20} {
		b.Run(fmt.Sprintf("chunk=%dMiB", chunk>>20), func(b *testing.B) {
			store := must(fsblob.Open(bg, fsblob.Options{Dir: b.TempDir(), DiskReserve: -1}))
			defer store.Close()
			e := newEnv(b, store)
			b.SetBytes(benchSize)
			for b.Loop() {
				must(attach.Upload(bg, e.dev, gen(1, benchSize), benchSize, &attach.Options{ChunkSize: chunk}))
			}
		})
	}
}

// BenchmarkDownload: the same file downloaded and decrypted.
func BenchmarkDownload(b *testing.B) {
	store := must(fsblob.Open(bg, fsblob.Options{Dir: b.TempDir(), DiskReserve: -1}))
	defer store.Close()
	e := newEnv(b, store)
	ref := must(attach.Upload(bg, e.dev, gen(1, benchSize), benchSize, nil))
	b.SetBytes(benchSize)
	for b.Loop() {
		ok(b, attach.Download(bg, e.anon, ref, io.Discard, nil))
	}
}

// nullRelay accepts every chunk and keeps nothing: Upload's own cost
// (generator, encryption, SHA-256).
type nullRelay struct{ attach.Relay }

func (nullRelay) CreateAttachment(_ context.Context, _ int64, exp time.Time) (*relay.AttachmentUpload, error) {
	return &relay.AttachmentUpload{ID: blob.ID{1}, Expires: exp}, nil
}

func (nullRelay) AppendAttachment(_ context.Context, _ *relay.AttachmentUpload, off int64, chunk []byte) (int64, error) {
	return off + int64(len(chunk)), nil
}

func (nullRelay) FinalizeAttachment(context.Context, *relay.AttachmentUpload) error { return nil }

// BenchmarkEncryptOnly is Upload to a relay that discards the chunks.
func BenchmarkEncryptOnly(b *testing.B) {
	b.SetBytes(benchSize)
	for b.Loop() {
		must(attach.Upload(bg, nullRelay{}, gen(1, benchSize), benchSize, nil))
	}
}

// BenchmarkGenerator is the test generator alone, to subtract.
func BenchmarkGenerator(b *testing.B) {
	b.SetBytes(benchSize)
	for b.Loop() {
		io.Copy(io.Discard, gen(1, benchSize))
	}
}

// memRelay keeps one upload in memory (benchmarks only).
type memRelay struct {
	nullRelay
	ct []byte
}

func (m *memRelay) AppendAttachment(_ context.Context, _ *relay.AttachmentUpload, off int64, chunk []byte) (int64, error) {
	m.ct = append(m.ct[:off], chunk...)
	return off + int64(len(chunk)), nil
}

func (m *memRelay) DownloadAttachment(_ context.Context, _ blob.ID, off int64) (io.ReadCloser, int64, error) {
	return io.NopCloser(bytes.NewReader(m.ct[off:])), int64(len(m.ct)) - off, nil
}

// BenchmarkDecryptOnly is Download from memory: SHA-256 and decryption.
func BenchmarkDecryptOnly(b *testing.B) {
	m := &memRelay{}
	ref := must(attach.Upload(bg, m, gen(1, benchSize), benchSize, nil))
	b.SetBytes(benchSize)
	for b.Loop() {
		ok(b, attach.Download(bg, m, ref, io.Discard, nil))
	}
}

// BenchmarkPrimitiveSHA256 and BenchmarkPrimitiveAESGCM are the
// primitives alone over the same 64 MiB, for the ratios in
// docs/performance.md.
func BenchmarkPrimitiveSHA256(b *testing.B) {
	buf := make([]byte, attach.SegmentSize)
	b.SetBytes(benchSize)
	for b.Loop() {
		h := sha256.New()
		for range benchSize / attach.SegmentSize {
			h.Write(buf)
		}
		h.Sum(nil)
	}
}

func BenchmarkPrimitiveAESGCM(b *testing.B) {
	aead := must(cipher.NewGCM(must(aes.NewCipher(make([]byte, 32)))))
	buf := make([]byte, attach.SegmentPlaintext, attach.SegmentSize)
	nonce := make([]byte, 12)
	b.SetBytes(benchSize)
	for b.Loop() {
		for i := range benchSize / attach.SegmentSize {
			nonce[0] = byte(i)
			aead.Seal(buf[:0], nonce, buf, nil)
		}
	}
}
