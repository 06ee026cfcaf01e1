package fsblob

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-im/moat/internal/faultfs"
	"github.com/moat-im/moat/internal/vfs"
	"github.com/moat-im/moat/server/store/blob"
	"github.com/moat-im/moat/server/store/blob/blobtest"
)

var ctx = context.Background()

// debris lists the files of a blob directory other than its meta record
// and chunks.
func debris(t *testing.T, s *Store, id blob.ID) []string {
	t.Helper()
	entries, err := os.ReadDir(s.blobDir(id))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if _, ok := parseChunkName(e.Name()); !ok && e.Name() != metaName {
			out = append(out, e.Name())
		}
	}
	return out
}

func mustAppend(t *testing.T, s blob.Store, id blob.ID, off int64, data []byte) {
	t.Helper()
	if _, err := s.Append(ctx, id, off, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Append at %d: %v", off, err)
	}
}

// TestT38DiskFull injects a full disk, short writes, failed syncs and a
// free-space shortage into uploads (never skipped): each fails closed
// with ErrUnavailable, leaves the committed offset and the acknowledged
// chunks as they were and no debris, and the upload completes once the
// condition clears, across a reopen too.
func TestT38DiskFull(t *testing.T) {
	dir := t.TempDir()
	clock := blobtest.NewClock()
	inj := faultfs.New()
	opts := testOptions(dir, blobtest.Config{Now: clock.Now})
	opts.FS = faultfs.FS(vfs.OS, inj)
	opts.DiskReserve = 64 << 20
	s := openTest(t, opts)
	defer func() { s.Close() }()
	const chunk = 100_000
	data := blobtest.Data(38, 10*chunk)
	id, err := s.Create(ctx, int64(len(data)), clock.Now().Add(time.Hour), blob.Tag{})
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, id, 0, data[:chunk])
	committed := int64(chunk)

	fails := func(name string, fault func(), off int64) {
		t.Helper()
		fault()
		c, err := s.Append(ctx, id, off, bytes.NewReader(data[off:off+chunk]), chunk)
		inj.SetFull(false)
		inj.FailSyncs(0)
		inj.SetFree(-1)
		if !errors.Is(err, blob.ErrUnavailable) {
			t.Fatalf("%s: %v, want ErrUnavailable", name, err)
		}
		if c != committed {
			t.Fatalf("%s: committed %d, want %d", name, c, committed)
		}
		if i, err := s.Info(ctx, id); err != nil || i.Committed != committed {
			t.Fatalf("%s: Info %+v, %v", name, i, err)
		}
		if d := debris(t, s, id); len(d) > 0 {
			t.Fatalf("%s: debris left: %v", name, d)
		}
		// The retry succeeds once the fault clears.
		mustAppend(t, s, id, off, data[off:off+chunk])
		committed = off + chunk
	}
	fails("disk full", func() { inj.SetFull(true) }, committed)
	fails("short write", func() { inj.SetWriteBudget(chunk / 2) }, committed)
	fails("failed chunk sync", func() { inj.FailSyncs(1) }, committed)
	fails("free space below the reserve", func() { inj.SetFree(32 << 20) }, committed)

	// The chunk is in place but the directory sync fails: not
	// acknowledged, not counted; the retry replaces it.
	inj.FailSyncsAfter(1, 1)
	c, err := s.Append(ctx, id, committed, bytes.NewReader(data[committed:committed+chunk]), chunk)
	if !errors.Is(err, blob.ErrUnavailable) || c != committed {
		t.Fatalf("failed directory sync: %d, %v", c, err)
	}
	inj.FailSyncs(0)
	mustAppend(t, s, id, committed, data[committed:committed+chunk])
	committed += chunk

	// Create and Finalize fail closed too.
	inj.SetFull(true)
	if _, err := s.Create(ctx, 10, clock.Now().Add(time.Hour), blob.Tag{}); !errors.Is(err, blob.ErrUnavailable) {
		t.Fatalf("Create on a full disk: %v", err)
	}
	inj.SetFull(false)
	for ; committed < int64(len(data)); committed += chunk {
		mustAppend(t, s, id, committed, data[committed:committed+chunk])
	}
	inj.FailSyncs(1)
	if err := s.Finalize(ctx, id); !errors.Is(err, blob.ErrUnavailable) {
		t.Fatalf("Finalize with a failed sync: %v", err)
	}
	if i, err := s.Info(ctx, id); err != nil || i.Final {
		t.Fatalf("Info after a failed Finalize: %+v, %v", i, err)
	}
	if err := s.Finalize(ctx, id); err != nil {
		t.Fatal(err)
	}
	if inj.Injected() < 6 {
		t.Fatalf("only %d faults injected", inj.Injected())
	}
	check := func() {
		t.Helper()
		r, err := s.Open(ctx, id, 0, int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read back %d bytes, %v", len(got), err)
		}
	}
	check()
	s.Close()
	s = openTest(t, opts)
	check()
	entries, _ := os.ReadDir(s.shardDir(id))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			t.Fatalf("debris of a failed Create: %s", e.Name())
		}
	}
}

// TestT39Corruption damages stored blobs and checks that reads and
// uploads fail with ErrCorrupt, and that a reader never returns a byte
// that was not written.
func TestT39Corruption(t *testing.T) {
	clock := blobtest.NewClock()
	const chunk = 200_000
	data := blobtest.Data(39, 5*chunk)
	setup := func(t *testing.T) (*Store, string, blob.ID) {
		dir := t.TempDir()
		s := openTest(t, testOptions(dir, blobtest.Config{Now: clock.Now}))
		id, err := s.Create(ctx, int64(len(data)), clock.Now().Add(time.Hour), blob.Tag{})
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off < len(data); off += chunk {
			mustAppend(t, s, id, int64(off), data[off:off+chunk])
		}
		if err := s.Finalize(ctx, id); err != nil {
			t.Fatal(err)
		}
		return s, dir, id
	}
	chunkPath := func(s *Store, id blob.ID, off int64) string { return filepath.Join(s.blobDir(id), chunkName(off)) }
	modify := func(t *testing.T, p string, fn func([]byte) []byte) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, fn(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// readAll reads the whole blob and checks the bytes before the error.
	readAll := func(t *testing.T, s blob.Store, id blob.ID) error {
		r, err := s.Open(ctx, id, 0, int64(len(data)))
		if err != nil {
			return err
		}
		defer r.Close()
		got, err := io.ReadAll(r)
		if !bytes.Equal(got, data[:len(got)]) {
			t.Fatalf("a reader returned %d bytes that differ from those written", len(got))
		}
		if err == nil && len(got) != len(data) {
			t.Fatal("short read without an error")
		}
		return err
	}
	reopen := func(t *testing.T, s *Store, dir string) *Store {
		s.Close()
		s = openTest(t, testOptions(dir, blobtest.Config{Now: clock.Now}))
		t.Cleanup(func() { s.Close() })
		return s
	}
	wantCorrupt := func(t *testing.T, what string, err error) {
		t.Helper()
		if !errors.Is(err, blob.ErrCorrupt) {
			t.Fatalf("%s: %v, want ErrCorrupt", what, err)
		}
	}

	t.Run("data bit flip", func(t *testing.T) {
		s, _, id := setup(t)
		defer s.Close()
		// Flip a bit in the third 64 KiB block of the second chunk.
		modify(t, chunkPath(s, id, chunk), func(b []byte) []byte { b[2*blockSize+77] ^= 0x20; return b })
		wantCorrupt(t, "read", readAll(t, s, id))
		// The blocks around it still read.
		r, err := s.Open(ctx, id, 3*chunk, chunk)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, data[3*chunk:4*chunk]) {
			t.Fatalf("an undamaged range: %v", err)
		}
		// A retry of the damaged range does not pass as equal either.
		_, err = s.Append(ctx, id, chunk, bytes.NewReader(data[chunk:2*chunk]), chunk)
		wantCorrupt(t, "Append over the damage", err)
	})

	t.Run("checksum table bit flip", func(t *testing.T) {
		s, _, id := setup(t)
		defer s.Close()
		modify(t, chunkPath(s, id, 2*chunk), func(b []byte) []byte { b[chunk+5] ^= 1; return b })
		wantCorrupt(t, "read", readAll(t, s, id))
	})

	t.Run("chunk truncated", func(t *testing.T) {
		s, dir, id := setup(t)
		modify(t, chunkPath(s, id, chunk), func(b []byte) []byte { return b[:len(b)-100] })
		s = reopen(t, s, dir)
		_, err := s.Info(ctx, id)
		wantCorrupt(t, "Info", err)
		wantCorrupt(t, "read", readAll(t, s, id))
	})

	t.Run("chunk moved", func(t *testing.T) {
		s, dir, id := setup(t)
		// Swap two chunks of equal length: every trailer is intact, but
		// names another offset.
		a, b := chunkPath(s, id, chunk), chunkPath(s, id, 2*chunk)
		os.Rename(a, a+".x")
		os.Rename(b, a)
		os.Rename(a+".x", b)
		s = reopen(t, s, dir)
		_, err := s.Info(ctx, id)
		wantCorrupt(t, "Info", err)
	})

	t.Run("chunk missing", func(t *testing.T) {
		s, dir, id := setup(t)
		os.Remove(chunkPath(s, id, 3*chunk))
		s = reopen(t, s, dir)
		_, err := s.Info(ctx, id)
		wantCorrupt(t, "Info", err)
	})

	t.Run("meta damaged", func(t *testing.T) {
		s, dir, id := setup(t)
		modify(t, filepath.Join(s.blobDir(id), metaName), func(b []byte) []byte { b[3] ^= 1; return b })
		s = reopen(t, s, dir)
		_, err := s.Info(ctx, id)
		wantCorrupt(t, "Info", err)
		_, err = s.Open(ctx, id, 0, 1)
		wantCorrupt(t, "Open", err)
	})

	t.Run("stray file", func(t *testing.T) {
		s, dir, id := setup(t)
		os.WriteFile(filepath.Join(s.blobDir(id), "stray"), []byte("x"), 0o600)
		s = reopen(t, s, dir)
		_, err := s.Info(ctx, id)
		wantCorrupt(t, "Info", err)
	})
}
