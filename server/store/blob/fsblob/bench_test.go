package fsblob

// go test -run '^$' -bench . ./server/store/blob/fsblob/
//
// BenchmarkAppend uploads chunks of 4 MiB (each durable: fsync of the
// chunk and of its directory) and BenchmarkRead reads them back with
// verification; both report MB/s.

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/moat-im/moat/server/store/blob"
	"github.com/moat-im/moat/server/store/blob/blobtest"
)

const benchChunk = 4 << 20

func BenchmarkAppend(b *testing.B) {
	s := openTest(b, testOptions(b.TempDir(), blobtest.Config{}))
	defer s.Close()
	data := blobtest.Data(1, benchChunk)
	id, err := s.Create(context.Background(), int64(b.N)*benchChunk, time.Now().Add(time.Hour), blob.Tag{})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(benchChunk)
	b.ResetTimer()
	for i := range b.N {
		if _, err := s.Append(context.Background(), id, int64(i)*benchChunk, bytes.NewReader(data), benchChunk); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRead(b *testing.B) {
	s := openTest(b, testOptions(b.TempDir(), blobtest.Config{}))
	defer s.Close()
	data := blobtest.Data(1, benchChunk)
	const chunks = 16
	id, err := s.Create(context.Background(), chunks*benchChunk, time.Now().Add(time.Hour), blob.Tag{})
	if err != nil {
		b.Fatal(err)
	}
	for i := range chunks {
		if _, err := s.Append(context.Background(), id, int64(i)*benchChunk, bytes.NewReader(data), benchChunk); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Finalize(context.Background(), id); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	b.SetBytes(benchChunk)
	b.ResetTimer()
	for i := range b.N {
		r, err := s.Open(context.Background(), id, int64(i%chunks)*benchChunk, benchChunk)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, buf); err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
}
