// Package blobtest holds the conformance suite of blob.Store (STYLE 8):
// every backend runs Run, and backends that persist also run RunDurable.
// Backends that stream (never hold a blob in memory) also run
// RunStreaming.
package blobtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/moat-im/moat/server/store/blob"
)

// Config is what the suite asks of a store it opens.
type Config struct {
	Limits blob.Limits
	// Now is the store's clock.
	Now func() time.Time
}

// A Clock is a settable clock for Config.Now.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock at a fixed instant.
func NewClock() *Clock { return &Clock{t: time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// NewStore returns a new, empty store configured by cfg, closed when t
// ends.
type NewStore func(t *testing.T, cfg Config) blob.Store

// OpenStore opens the store kept in dir configured by cfg; the suite
// closes it.
type OpenStore func(t *testing.T, dir string, cfg Config) blob.Store

var ctx = context.Background()

// Data returns n deterministic bytes, different for each seed.
func Data(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), 0x5b})
	r.Read(b)
	return b
}

// Run runs the conformance suite.
func Run(t *testing.T, newStore NewStore) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, NewStore)
	}{
		{"UploadRead", testUploadRead},
		{"Resume", testResume},
		{"Refusals", testRefusals},
		{"Finalize", testFinalize},
		{"Ranges", testRanges},
		{"Expiry", testExpiry},
		{"Delete", testDelete},
		{"Concurrent", testConcurrent},
		{"Closed", testClosed},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore) })
	}
}

// testTag is the tag create gives a blob of size bytes.
func testTag(size int64) blob.Tag {
	return sha256.Sum256(fmt.Appendf(nil, "blobtest tag %d", size))
}

func create(t *testing.T, s blob.Store, size int64, clock *Clock) blob.ID {
	t.Helper()
	id, err := s.Create(ctx, size, clock.Now().Add(time.Hour), testTag(size))
	if err != nil {
		t.Fatalf("Create(%d): %v", size, err)
	}
	return id
}

func appendAt(t *testing.T, s blob.Store, id blob.ID, off int64, data []byte) int64 {
	t.Helper()
	c, err := s.Append(ctx, id, off, bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("Append(%d bytes at %d): %v", len(data), off, err)
	}
	return c
}

func info(t *testing.T, s blob.Store, id blob.ID) blob.Info {
	t.Helper()
	i, err := s.Info(ctx, id)
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	return i
}

func read(t *testing.T, s blob.Store, id blob.ID, off, n int64) []byte {
	t.Helper()
	r, err := s.Open(ctx, id, off, n)
	if err != nil {
		t.Fatalf("Open(%d, %d): %v", off, n, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading: %v", err)
	}
	return b
}

// upload writes data in chunks of chunk bytes and finalizes.
func upload(t *testing.T, s blob.Store, clock *Clock, data []byte, chunk int) blob.ID {
	t.Helper()
	id := create(t, s, int64(len(data)), clock)
	for off := 0; off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		if c := appendAt(t, s, id, int64(off), data[off:end]); c != int64(end) {
			t.Fatalf("committed %d after a chunk ending at %d", c, end)
		}
	}
	if err := s.Finalize(ctx, id); err != nil {
		t.Fatalf("Finalize: %v", err)
	}
	return id
}

func testUploadRead(t *testing.T, newStore NewStore) {
	clock := NewClock()
	s := newStore(t, Config{Now: clock.Now})
	// Sizes around the 64 KiB block size of fsblob.
	for _, size := range []int{1, 1000, 65535, 65536, 65537, 300_000} {
		data := Data(uint64(size), size)
		id := create(t, s, int64(size), clock)
		if i := info(t, s, id); i.Size != int64(size) || i.Committed != 0 || i.Final || !i.Expires.Equal(clock.Now().Add(time.Hour)) ||
			i.Tag != testTag(int64(size)) {
			t.Fatalf("Info of a new upload: %+v", i)
		}
		chunk := max(size/3, 1)
		for off := 0; off < size; off += chunk {
			appendAt(t, s, id, int64(off), data[off:min(off+chunk, size)])
		}
		if i := info(t, s, id); i.Committed != int64(size) || i.Final {
			t.Fatalf("Info of a complete upload: %+v", i)
		}
		if err := s.Finalize(ctx, id); err != nil {
			t.Fatal(err)
		}
		if i := info(t, s, id); !i.Final || i.Tag != testTag(int64(size)) {
			t.Fatalf("Info after Finalize: %+v", i)
		}
		if got := read(t, s, id, 0, int64(size)); !bytes.Equal(got, data) {
			t.Fatalf("size %d: read back %d bytes, differing", size, len(got))
		}
	}
	// IDs are distinct.
	a, b := create(t, s, 10, clock), create(t, s, 10, clock)
	if a == b {
		t.Fatal("two uploads got the same ID")
	}
}

func testResume(t *testing.T, newStore NewStore) {
	clock := NewClock()
	s := newStore(t, Config{Now: clock.Now})
	data := Data(1, 200_000)
	id := create(t, s, int64(len(data)), clock)
	appendAt(t, s, id, 0, data[:70_000])
	// A retry of the same chunk is accepted and changes nothing.
	if c := appendAt(t, s, id, 0, data[:70_000]); c != 70_000 {
		t.Fatalf("retry: committed %d", c)
	}
	// A retry of part of it too.
	if c := appendAt(t, s, id, 1000, data[1000:5000]); c != 70_000 {
		t.Fatalf("partial retry: committed %d", c)
	}
	// A chunk overlapping the committed bytes with new ones beyond.
	if c := appendAt(t, s, id, 60_000, data[60_000:140_000]); c != 140_000 {
		t.Fatalf("overlapping chunk: committed %d", c)
	}
	if i := info(t, s, id); i.Committed != 140_000 {
		t.Fatalf("Info: %+v", i)
	}
	appendAt(t, s, id, 140_000, data[140_000:])
	if err := s.Finalize(ctx, id); err != nil {
		t.Fatal(err)
	}
	if got := read(t, s, id, 0, int64(len(data))); !bytes.Equal(got, data) {
		t.Fatal("read back differs")
	}
}

func testRefusals(t *testing.T, newStore NewStore) {
	clock := NewClock()
	s := newStore(t, Config{Now: clock.Now, Limits: blob.Limits{MaxSize: 1 << 20, MaxChunk: 100_000}})
	data := Data(2, 300_000)
	id := create(t, s, int64(len(data)), clock)
	appendAt(t, s, id, 0, data[:50_000])
	check := func(name string, want error, off int64, r io.Reader, n int64) {
		t.Helper()
		c, err := s.Append(ctx, id, off, r, n)
		if !errors.Is(err, want) {
			t.Fatalf("%s: %v, want %v", name, err, want)
		}
		if c != 50_000 {
			t.Fatalf("%s: committed %d", name, c)
		}
		if i := info(t, s, id); i.Committed != 50_000 {
			t.Fatalf("%s changed the committed offset to %d", name, i.Committed)
		}
	}
	check("gap", blob.ErrGap, 50_001, bytes.NewReader(data[50_001:60_000]), 9999)
	other := bytes.Clone(data[40_000:60_000])
	other[9_999] ^= 1 // the last committed byte differs
	check("overlap with other bytes", blob.ErrMismatch, 40_000, bytes.NewReader(other), int64(len(other)))
	check("short chunk", blob.ErrInvalid, 50_000, bytes.NewReader(data[50_000:50_010]), 100)
	check("chunk over the limit", blob.ErrInvalid, 50_000, bytes.NewReader(data[50_000:150_001]), 100_001)
	check("past the size", blob.ErrInvalid, 250_000, bytes.NewReader(data[:60_000]), 60_000)
	check("empty chunk", blob.ErrInvalid, 50_000, bytes.NewReader(nil), 0)
	check("negative offset", blob.ErrInvalid, -1, bytes.NewReader(data[:10]), 10)
	// Create.
	for name, tc := range map[string]struct {
		size int64
		ttl  time.Duration
	}{"size 0": {0, time.Hour}, "size over the limit": {1<<20 + 1, time.Hour}, "expired": {10, 0}, "past the TTL": {10, 31 * 24 * time.Hour}} {
		if _, err := s.Create(ctx, tc.size, clock.Now().Add(tc.ttl), blob.Tag{}); !errors.Is(err, blob.ErrInvalid) {
			t.Errorf("Create %s: %v", name, err)
		}
	}
	// Unknown blobs.
	var unknown blob.ID
	unknown[0] = 0xee
	if _, err := s.Info(ctx, unknown); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Info of an unknown blob: %v", err)
	}
	if _, err := s.Append(ctx, unknown, 0, bytes.NewReader(data[:5]), 5); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Append to an unknown blob: %v", err)
	}
	if _, err := s.Open(ctx, unknown, 0, 1); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Open of an unknown blob: %v", err)
	}
}

func testFinalize(t *testing.T, newStore NewStore) {
	clock := NewClock()
	s := newStore(t, Config{Now: clock.Now})
	data := Data(3, 100_000)
	id := create(t, s, int64(len(data)), clock)
	appendAt(t, s, id, 0, data[:99_999])
	if err := s.Finalize(ctx, id); !errors.Is(err, blob.ErrIncomplete) {
		t.Fatalf("Finalize of an incomplete upload: %v", err)
	}
	if _, err := s.Open(ctx, id, 0, 10); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Open before Finalize: %v", err)
	}
	appendAt(t, s, id, 99_999, data[99_999:])
	for range 2 {
		if err := s.Finalize(ctx, id); err != nil {
			t.Fatalf("Finalize: %v", err)
		}
	}
	// A retry of the last chunk after Finalize is still accepted; other
	// bytes are not.
	if c := appendAt(t, s, id, 50_000, data[50_000:]); c != 100_000 {
		t.Fatalf("retry after Finalize: committed %d", c)
	}
	other := bytes.Clone(data[90_000:])
	other[0] ^= 1
	if _, err := s.Append(ctx, id, 90_000, bytes.NewReader(other), int64(len(other))); !errors.Is(err, blob.ErrMismatch) {
		t.Fatalf("other bytes after Finalize: %v", err)
	}
	if got := read(t, s, id, 0, 100_000); !bytes.Equal(got, data) {
		t.Fatal("read back differs")
	}
}

func testRanges(t *testing.T, newStore NewStore) {
	clock := NewClock()
	s := newStore(t, Config{Now: clock.Now})
	data := Data(4, 400_000)
	id := upload(t, s, clock, data, 70_001)
	for _, r := range [][2]int64{{0, 0}, {0, 1}, {65_535, 2}, {65_536, 65_536}, {70_000, 3}, {123_456, 200_000}, {399_999, 1}, {400_000, 0}} {
		got := read(t, s, id, r[0], r[1])
		if !bytes.Equal(got, data[r[0]:r[0]+r[1]]) {
			t.Fatalf("range %v: %d bytes, differing", r, len(got))
		}
	}
	for _, r := range [][2]int64{{-1, 1}, {0, 400_001}, {400_001, 0}, {10, -1}, {399_999, 2}} {
		if _, err := s.Open(ctx, id, r[0], r[1]); !errors.Is(err, blob.ErrInvalid) {
			t.Errorf("range %v: %v, want ErrInvalid", r, err)
		}
	}
	// Small reads.
	rd, err := s.Open(ctx, id, 1000, 5000)
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	buf := make([]byte, 7)
	for {
		n, err := rd.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	rd.Close()
	if !bytes.Equal(got, data[1000:6000]) {
		t.Fatal("small reads differ")
	}
}

func testExpiry(t *testing.T, newStore NewStore) {
	clock := NewClock()
	s := newStore(t, Config{Now: clock.Now})
	short, err := s.Create(ctx, 10, clock.Now().Add(time.Minute), blob.Tag{})
	if err != nil {
		t.Fatal(err)
	}
	appendAt(t, s, short, 0, Data(5, 10))
	if err := s.Finalize(ctx, short); err != nil {
		t.Fatal(err)
	}
	long := create(t, s, 10, clock)
	clock.Advance(time.Minute)
	if _, err := s.Info(ctx, short); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Info of an expired blob: %v", err)
	}
	if _, err := s.Open(ctx, short, 0, 10); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("Open of an expired blob: %v", err)
	}
	n, err := s.Sweep(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1", n, err)
	}
	if n, err := s.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("second Sweep = %d, %v", n, err)
	}
	if i := info(t, s, long); i.Committed != 0 {
		t.Fatalf("the live blob: %+v", i)
	}
}

func testDelete(t *testing.T, newStore NewStore) {
	clock := NewClock()
	s := newStore(t, Config{Now: clock.Now})
	data := Data(6, 150_000)
	id := upload(t, s, clock, data, 100_000)
	partial := create(t, s, 100, clock)
	appendAt(t, s, partial, 0, data[:50])
	for _, x := range []blob.ID{id, partial} {
		if err := s.Delete(ctx, x); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Info(ctx, x); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("Info after Delete: %v", err)
		}
		if _, err := s.Open(ctx, x, 0, 1); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("Open after Delete: %v", err)
		}
		if _, err := s.Append(ctx, x, 50, bytes.NewReader(data[:10]), 10); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("Append after Delete: %v", err)
		}
		if err := s.Delete(ctx, x); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("second Delete: %v", err)
		}
	}
	if n, err := s.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("Sweep after deletes = %d, %v", n, err)
	}
}

func testConcurrent(t *testing.T, newStore NewStore) {
	clock := NewClock()
	s := newStore(t, Config{Now: clock.Now})
	const uploads, size, chunk = 8, 300_000, 50_000
	var wg sync.WaitGroup
	errs := make(chan error, 3*uploads)
	ids := make([]blob.ID, uploads)
	for u := range uploads {
		ids[u] = create(t, s, size, clock)
		data := Data(uint64(100+u), size)
		// Two writers send every chunk of each upload, in lockstep.
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for off := 0; off < size; off += chunk {
					for {
						_, err := s.Append(ctx, ids[u], int64(off), bytes.NewReader(data[off:off+chunk]), chunk)
						if errors.Is(err, blob.ErrGap) {
							runtime.Gosched() // the other writer is behind
							continue
						}
						if err != nil {
							errs <- fmt.Errorf("upload %d at %d: %w", u, off, err)
							return
						}
						break
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for u, id := range ids {
		if err := s.Finalize(ctx, id); err != nil {
			t.Fatal(err)
		}
		if got := read(t, s, id, 0, size); !bytes.Equal(got, Data(uint64(100+u), size)) {
			t.Fatalf("upload %d read back differs", u)
		}
	}
}

func testClosed(t *testing.T, newStore NewStore) {
	clock := NewClock()
	s := newStore(t, Config{Now: clock.Now})
	id := create(t, s, 10, clock)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, 10, clock.Now().Add(time.Hour), blob.Tag{}); !errors.Is(err, blob.ErrClosed) {
		t.Errorf("Create after Close: %v", err)
	}
	if _, err := s.Append(ctx, id, 0, bytes.NewReader(Data(1, 10)), 10); !errors.Is(err, blob.ErrClosed) {
		t.Errorf("Append after Close: %v", err)
	}
	if _, err := s.Info(ctx, id); !errors.Is(err, blob.ErrClosed) {
		t.Errorf("Info after Close: %v", err)
	}
	if _, err := s.Sweep(ctx); !errors.Is(err, blob.ErrClosed) {
		t.Errorf("Sweep after Close: %v", err)
	}
}

// RunDurable runs the durability tests of a persistent backend.
func RunDurable(t *testing.T, open OpenStore) {
	t.Run("ResumeAfterReopen", func(t *testing.T) {
		dir := t.TempDir()
		clock := NewClock()
		cfg := Config{Now: clock.Now}
		data := Data(7, 500_000)
		s := open(t, dir, cfg)
		id := create(t, s, int64(len(data)), clock)
		appendAt(t, s, id, 0, data[:200_000])
		done := upload(t, s, clock, data[:123_457], 40_000)
		gone := upload(t, s, clock, data[:1000], 1000)
		if err := s.Delete(ctx, gone); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = open(t, dir, cfg)
		if i := info(t, s, id); i.Committed != 200_000 || i.Size != 500_000 || i.Final || i.Tag != testTag(500_000) {
			t.Fatalf("Info after reopen: %+v", i)
		}
		if _, err := s.Info(ctx, gone); !errors.Is(err, blob.ErrNotFound) {
			t.Fatalf("a deleted blob after reopen: %v", err)
		}
		if got := read(t, s, done, 0, 123_457); !bytes.Equal(got, data[:123_457]) {
			t.Fatal("finalized blob differs after reopen")
		}
		// A retry straddling the committed offset, after the reopen.
		appendAt(t, s, id, 150_000, data[150_000:350_000])
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = open(t, dir, cfg)
		appendAt(t, s, id, 350_000, data[350_000:])
		if err := s.Finalize(ctx, id); err != nil {
			t.Fatal(err)
		}
		if got := read(t, s, id, 0, 500_000); !bytes.Equal(got, data) {
			t.Fatal("resumed blob differs")
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = open(t, dir, cfg)
		defer s.Close()
		if i := info(t, s, id); !i.Final || i.Tag != testTag(500_000) {
			t.Fatalf("Info of a finalized blob after reopen: %+v", i)
		}
	})
}

// genReader is an allocation-free stream of deterministic bytes.
type genReader struct {
	left int64
	x    uint64
}

func (g *genReader) Read(p []byte) (int, error) {
	if g.left == 0 {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), g.left))
	for i := range n {
		g.x = g.x*6364136223846793005 + 1442695040888963407
		p[i] = byte(g.x >> 56)
	}
	g.left -= int64(n)
	return n, nil
}

// RunStreaming uploads and reads back a blob of size bytes (generated,
// never in memory) in chunks of chunk bytes, and fails if the store
// allocated more than size/8 bytes meanwhile: the blob must not sit in
// memory. The store's MaxSize and MaxChunk must allow it.
func RunStreaming(t *testing.T, s blob.Store, size, chunk int64) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	id, err := s.Create(ctx, size, time.Now().Add(time.Hour), blob.Tag{})
	if err != nil {
		t.Fatal(err)
	}
	src := &genReader{left: size, x: 1}
	for off := int64(0); off < size; off += chunk {
		n := min(chunk, size-off)
		if _, err := s.Append(ctx, id, off, io.LimitReader(src, n), n); err != nil {
			t.Fatalf("Append at %d: %v", off, err)
		}
	}
	if err := s.Finalize(ctx, id); err != nil {
		t.Fatal(err)
	}
	want := sha256.New()
	if _, err := io.Copy(want, &genReader{left: size, x: 1}); err != nil {
		t.Fatal(err)
	}
	r, err := s.Open(ctx, id, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	got := sha256.New()
	n, err := io.CopyBuffer(got, struct{ io.Reader }{r}, make([]byte, 32<<10))
	r.Close()
	if err != nil || n != size {
		t.Fatalf("read %d of %d bytes: %v", n, size, err)
	}
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatal("streamed blob differs")
	}
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d MiB uploaded and read back; %d KiB allocated", size>>20, alloc>>10)
	if alloc > uint64(size/8) {
		t.Fatalf("allocated %d bytes for a blob of %d: the blob is held in memory", alloc, size)
	}
}
