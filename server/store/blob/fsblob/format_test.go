package fsblob

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moat-im/moat/server/store/blob"
	"github.com/moat-im/moat/server/store/blob/blobtest"
)

// metaV1 encodes a version 1 meta record (no tag), as stores before tags
// wrote it.
func metaV1(size, expiresMs int64, final bool) []byte {
	b := []byte{1}
	b = binary.BigEndian.AppendUint64(b, uint64(size))
	b = binary.BigEndian.AppendUint64(b, uint64(expiresMs))
	f := byte(0)
	if final {
		f = 1
	}
	b = append(b, f)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func TestMetaEncoding(t *testing.T) {
	m := meta{size: 57, expiresMs: 1_700_000_000_000, final: true}
	for i := range m.tag {
		m.tag[i] = 0x33
	}
	b := m.encode()
	if len(b) != metaSize || b[0] != 2 || !bytes.Equal(b[18:50], bytes.Repeat([]byte{0x33}, 32)) {
		t.Fatalf("encoding %x", b)
	}
	got, err := decodeMeta(b)
	if err != nil || got != m {
		t.Fatalf("decode: %+v, %v", got, err)
	}
	// Version 1: the zero tag.
	got, err = decodeMeta(metaV1(57, 1_700_000_000_000, true))
	if err != nil || got != (meta{size: 57, expiresMs: 1_700_000_000_000, final: true}) {
		t.Fatalf("version 1: %+v, %v", got, err)
	}
	bad := map[string][]byte{
		"empty":                 nil,
		"version 3":             append([]byte{3}, b[1:]...),
		"version 0":             append([]byte{0}, b[1:]...),
		"version 1, v2 length":  append([]byte{1}, b[1:]...),
		"version 2, v1 length":  append([]byte{2}, metaV1(57, 1, false)[1:]...),
		"truncated":             b[:len(b)-1],
		"trailing byte":         append(bytes.Clone(b), 0),
		"final 2":               func() []byte { c := bytes.Clone(b); c[17] = 2; return c }(),
		"tag bit flipped":       func() []byte { c := bytes.Clone(b); c[20] ^= 1; return c }(),
		"size 0":                meta{expiresMs: 1}.encode(),
		"negative expiry":       meta{size: 1, expiresMs: -1}.encode(),
		"version 1, size 0":     metaV1(0, 1, false),
		"version 1, bad crc":    func() []byte { c := metaV1(5, 1, false); c[3] ^= 1; return c }(),
		"version 1, final 2":    func() []byte { c := metaV1(5, 1, false); c[17] = 2; return c }(),
		"version 1, truncated":  metaV1(5, 1, false)[:metaV1Size-1],
		"version 2, crc of v1":  append(append([]byte{2}, b[1:50]...), metaV1(5, 1, false)[18:]...),
		"version 1, 2 appended": append(metaV1(5, 1, false), 2),
	}
	for name, rec := range bad {
		if _, err := decodeMeta(rec); !errors.Is(err, blob.ErrCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzMeta: decodeMeta never panics, accepts only records that encode
// back to the same bytes (version 2) or to their version 2 form (version
// 1), and every encoded record decodes to itself.
func FuzzMeta(f *testing.F) {
	f.Add(meta{size: 57, expiresMs: 1_700_000_000_000, final: true, tag: blob.Tag{1}}.encode())
	f.Add(metaV1(57, 1_700_000_000_000, false))
	f.Add([]byte{2})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			if !errors.Is(err, blob.ErrCorrupt) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		switch b[0] {
		case 2:
			if !bytes.Equal(m.encode(), b) {
				t.Fatalf("%x re-encodes as %x", b, m.encode())
			}
		case 1:
			if m.tag != (blob.Tag{}) || !bytes.Equal(metaV1(m.size, m.expiresMs, m.final), b) {
				t.Fatalf("version 1 record %x decodes as %+v", b, m)
			}
		default:
			t.Fatalf("version %d accepted", b[0])
		}
		if m2, err := decodeMeta(m.encode()); err != nil || m2 != m {
			t.Fatalf("round trip of %+v: %+v, %v", m, m2, err)
		}
	})
}

// TestMetaVersion1 reads a store whose blobs have version 1 meta records
// (written before tags): a finalized blob is still served, with the zero
// tag; an unfinalized one resumes and is rewritten as version 2 when
// finalized; both expire and are swept as before. A record of an unknown
// version is ErrCorrupt, named as such.
func TestMetaVersion1(t *testing.T) {
	dir := t.TempDir()
	clock := blobtest.NewClock()
	cfg := blobtest.Config{Now: clock.Now}
	s := openTest(t, testOptions(dir, cfg))
	exp := clock.Now().Add(time.Hour)
	data := blobtest.Data(1, 1000)
	done, err := s.Create(ctx, 1000, exp, blob.Tag{9})
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, done, 0, data)
	if err := s.Finalize(ctx, done); err != nil {
		t.Fatal(err)
	}
	open, err := s.Create(ctx, 1000, exp, blob.Tag{9})
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, open, 0, data[:400])
	future, err := s.Create(ctx, 10, exp, blob.Tag{9})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	write := func(id blob.ID, rec []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(s.blobDir(id), metaName), rec, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(done, metaV1(1000, exp.UnixMilli(), true))
	write(open, metaV1(1000, exp.UnixMilli(), false))
	write(future, append([]byte{3}, meta{size: 10, expiresMs: exp.UnixMilli()}.encode()[1:]...))

	s = openTest(t, testOptions(dir, cfg))
	defer s.Close()
	if i, err := s.Info(ctx, done); err != nil || !i.Final || i.Tag != (blob.Tag{}) || i.Size != 1000 {
		t.Fatalf("version 1, finalized: %+v, %v", i, err)
	}
	r, err := s.Open(ctx, done, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("version 1 blob read back: %v", err)
	}
	if i, err := s.Info(ctx, open); err != nil || i.Final || i.Committed != 400 || i.Tag != (blob.Tag{}) {
		t.Fatalf("version 1, open: %+v, %v", i, err)
	}
	mustAppend(t, s, open, 400, data[400:])
	if err := s.Finalize(ctx, open); err != nil {
		t.Fatal(err)
	}
	rec, err := os.ReadFile(filepath.Join(s.blobDir(open), metaName))
	if err != nil || len(rec) != metaSize || rec[0] != 2 {
		t.Fatalf("meta record after Finalize: %x, %v", rec, err)
	}
	if _, err := s.Info(ctx, future); !errors.Is(err, blob.ErrCorrupt) || !bytes.Contains([]byte(err.Error()), []byte("version 3")) {
		t.Fatalf("unknown version: %v", err)
	}
	clock.Advance(2 * time.Hour)
	if n, err := s.Sweep(ctx); err != nil || n != 2 {
		t.Fatalf("sweep: %d, %v", n, err)
	}
}
