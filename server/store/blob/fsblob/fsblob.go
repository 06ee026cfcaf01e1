// Package fsblob is the file-backed blob.Store: one directory, a
// directory per blob, a file per chunk (format.go), as specified in
// docs/spec/relay-storage.md §Blob backend.
//
// Files, not badger: a blob of up to 4 GiB streams through a 64 KiB
// buffer and is never held in memory; a deleted blob frees its space at
// once, where badger's value log would keep it until value-log GC rewrote
// the live blobs around it; and each chunk is made durable by itself
// (fsync of the file, rename into place, fsync of the directory) before
// Append returns, so an upload resumes from any acknowledged chunk. A
// chunk is visible only after its rename, so a crash leaves either the
// whole chunk or a temporary file that is discarded.
package fsblob

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moat-im/moat/internal/atomicfile"
	"github.com/moat-im/moat/internal/vfs"
	"github.com/moat-im/moat/server/store/blob"
)

// Options configures a Store. Only Dir is required.
type Options struct {
	// Dir is the data directory; it is created if missing.
	Dir string
	// Limits bound blobs (blob.Limits defaults).
	Limits blob.Limits
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// DiskReserve is the free space, in bytes, that Create and Append
	// leave: they fail with ErrUnavailable rather than take it. Default
	// 1 GiB; negative disables.
	DiskReserve int64
	// FS is the file system. Default vfs.OS; tests inject faults with
	// internal/faultfs.
	FS vfs.FS
	// Logger receives warnings (never contents). Default slog.Default().
	Logger *slog.Logger
}

const (
	defaultReserve = 1 << 30
	// maxCached bounds the blob states kept in memory between calls.
	maxCached = 4096
	// staleTemp is the age after which Sweep removes a blob directory
	// left by an interrupted Create.
	staleTemp = time.Hour
)

// Store is a file-backed blob.Store.
type Store struct {
	dir, blobs, trash string
	fs                vfs.FS
	limits            blob.Limits
	now               func() time.Time
	reserve           int64
	logger            *slog.Logger
	bufs              sync.Pool

	// closeMu is held for reading by every call, for writing by Close.
	closeMu sync.RWMutex
	closed  bool

	mu    sync.Mutex // guards cache
	cache map[blob.ID]*state
}

// state is what the store knows of one blob. Its mutex serialises the
// calls on the blob.
type state struct {
	mu     sync.Mutex
	refs   int // guarded by Store.mu
	loaded bool
	gone   bool
	meta   meta
	chunks []chunk // sorted by offset, contiguous from 0
}

type chunk struct{ off, n int64 }

func (st *state) committed() int64 {
	if len(st.chunks) == 0 {
		return 0
	}
	c := st.chunks[len(st.chunks)-1]
	return c.off + c.n
}

var _ blob.Store = (*Store)(nil)

// Open opens (or creates) the store in opts.Dir and empties its trash.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("fsblob: no data directory")
	}
	limits, err := opts.Limits.WithDefaults()
	if err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.DiskReserve == 0 {
		opts.DiskReserve = defaultReserve
	}
	if opts.FS == nil {
		opts.FS = vfs.OS
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Store{
		dir:     opts.Dir,
		blobs:   filepath.Join(opts.Dir, "blobs"),
		trash:   filepath.Join(opts.Dir, "trash"),
		fs:      opts.FS,
		limits:  limits,
		now:     opts.Now,
		reserve: opts.DiskReserve,
		logger:  opts.Logger,
		cache:   make(map[blob.ID]*state),
	}
	s.bufs.New = func() any { b := make([]byte, blockSize); return &b }
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("fsblob: %w", err)
	}
	for _, d := range []string{s.blobs, s.trash} {
		if err := s.mkdir(d, opts.Dir); err != nil {
			return nil, fmt.Errorf("fsblob: %w", err)
		}
	}
	s.emptyTrash()
	return s, ctx.Err()
}

// mkdir creates dir if missing, durably (syncing parent).
func (s *Store) mkdir(dir, parent string) error {
	err := s.fs.Mkdir(dir, 0o700)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return vfs.SyncDir(s.fs, parent)
}

func (s *Store) emptyTrash() {
	entries, err := s.fs.ReadDir(s.trash)
	if err != nil {
		s.logger.Warn("fsblob: reading the trash", "err", err)
		return
	}
	for _, e := range entries {
		if err := s.fs.RemoveAll(filepath.Join(s.trash, e.Name())); err != nil {
			s.logger.Warn("fsblob: emptying the trash", "err", err)
		}
	}
}

// Close implements blob.Store.
func (s *Store) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	s.closed = true
	return nil
}

func (s *Store) shardDir(id blob.ID) string {
	return filepath.Join(s.blobs, hex.EncodeToString(id[:1]))
}

func (s *Store) blobDir(id blob.ID) string {
	return filepath.Join(s.shardDir(id), hex.EncodeToString(id[:]))
}

// begin starts a call on blob id: it holds closeMu for reading and the
// blob's lock. end releases both.
func (s *Store) begin(id blob.ID) (*state, error) {
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return nil, blob.ErrClosed
	}
	s.mu.Lock()
	st := s.cache[id]
	if st == nil {
		st = &state{}
		s.cache[id] = st
	}
	st.refs++
	s.mu.Unlock()
	st.mu.Lock()
	return st, nil
}

func (s *Store) end(id blob.ID, st *state) {
	st.mu.Unlock()
	s.mu.Lock()
	st.refs--
	if st.refs == 0 && (st.gone || !st.loaded || len(s.cache) > maxCached) {
		delete(s.cache, id)
	}
	s.mu.Unlock()
	s.closeMu.RUnlock()
}

// load reads a blob's meta record and chunk list, once, and checks that
// it has not expired.
func (s *Store) load(id blob.ID, st *state) error {
	if st.gone {
		return blob.ErrNotFound
	}
	if !st.loaded {
		dir := s.blobDir(id)
		b, err := readFile(s.fs, filepath.Join(dir, metaName))
		if errors.Is(err, fs.ErrNotExist) {
			return blob.ErrNotFound
		}
		if err != nil {
			return err
		}
		m, err := decodeMeta(b)
		if err != nil {
			return err
		}
		chunks, err := s.listChunks(dir, m.size)
		if err != nil {
			return err
		}
		st.meta, st.chunks, st.loaded = m, chunks, true
	}
	if st.meta.expiresMs <= s.now().UnixMilli() {
		return blob.ErrNotFound
	}
	return nil
}

// readFile reads a small file through fsys.
func readFile(fsys vfs.FS, name string) ([]byte, error) {
	f, err := fsys.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", blob.ErrCorrupt, err)
	}
	return b, nil
}

// listChunks lists and checks the chunks of a blob directory: each
// trailer is whole and names the file's offset, and the chunks cover
// [0, committed) without gap or overlap. It removes temporary files.
func (s *Store) listChunks(dir string, size int64) ([]chunk, error) {
	entries, err := s.fs.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", blob.ErrCorrupt, err)
	}
	var chunks []chunk
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, tempPrefix) {
			// Debris of an interrupted Append: never acknowledged.
			s.fs.Remove(filepath.Join(dir, name))
			continue
		}
		if name == metaName || strings.HasPrefix(name, atomicfile.TempPrefix) {
			continue
		}
		off, ok := parseChunkName(name)
		if !ok {
			return nil, fmt.Errorf("%w: unexpected file %s", blob.ErrCorrupt, name)
		}
		c, _, err := s.openChunk(dir, off)
		if err != nil {
			return nil, err
		}
		c.close()
		chunks = append(chunks, chunk{off, c.n})
	}
	slices.SortFunc(chunks, func(a, b chunk) int { return cmp.Compare(a.off, b.off) })
	next := int64(0)
	for _, c := range chunks {
		if c.off != next {
			return nil, fmt.Errorf("%w: chunk at %d, expected %d", blob.ErrCorrupt, c.off, next)
		}
		next = c.off + c.n
	}
	if next > size {
		return nil, fmt.Errorf("%w: chunks end at %d past the size %d", blob.ErrCorrupt, next, size)
	}
	return chunks, nil
}

// openChunk is an open chunk file with its verified CRC table.
type openChunk struct {
	f    vfs.File
	n    int64
	crcs []byte
}

func (c *openChunk) close() { c.f.Close() }

// openChunk opens the chunk at off in dir and checks its trailer.
func (s *Store) openChunk(dir string, off int64) (*openChunk, int64, error) {
	f, err := s.fs.OpenFile(filepath.Join(dir, chunkName(off)), os.O_RDONLY, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: chunk at %d: %w", blob.ErrCorrupt, off, err)
	}
	c, err := readChunkHeader(f, off)
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("chunk at %d: %w", off, err)
	}
	return c, c.n, nil
}

func readChunkHeader(f vfs.File, off int64) (*openChunk, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", blob.ErrCorrupt, err)
	}
	size := fi.Size()
	if size < trailerSize {
		return nil, fmt.Errorf("%w: chunk file of %d bytes", blob.ErrCorrupt, size)
	}
	t := make([]byte, trailerSize)
	if _, err := f.ReadAt(t, size-trailerSize); err != nil {
		return nil, fmt.Errorf("%w: %v", blob.ErrCorrupt, err)
	}
	toff, n, err := parseTrailer(t)
	if err != nil {
		return nil, err
	}
	if toff != off || chunkFileSize(n) != size {
		return nil, fmt.Errorf("%w: chunk trailer names %d bytes at %d in a file of %d bytes", blob.ErrCorrupt, n, toff, size)
	}
	crcs := make([]byte, 4*blocks(n))
	if _, err := f.ReadAt(crcs, n); err != nil {
		return nil, fmt.Errorf("%w: %v", blob.ErrCorrupt, err)
	}
	if err := checkTrailer(crcs, t); err != nil {
		return nil, err
	}
	return &openChunk{f: f, n: n, crcs: crcs}, nil
}

// readBlock reads and verifies block i of c into buf and returns it.
func (c *openChunk) readBlock(i int64, buf []byte) ([]byte, error) {
	start := i * blockSize
	k := min(blockSize, c.n-start)
	b := buf[:k]
	if _, err := c.f.ReadAt(b, start); err != nil {
		return nil, fmt.Errorf("%w: %v", blob.ErrCorrupt, err)
	}
	if crc32.Checksum(b, castagnoli) != binary.BigEndian.Uint32(c.crcs[4*i:]) {
		return nil, fmt.Errorf("%w: block %d of a chunk fails its checksum", blob.ErrCorrupt, i)
	}
	return b, nil
}

// Create implements blob.Store.
func (s *Store) Create(ctx context.Context, size int64, expires time.Time, tag blob.Tag) (blob.ID, error) {
	var id blob.ID
	exp, err := s.limits.CheckCreate(size, expires, s.now())
	if err != nil {
		return id, err
	}
	if err := ctx.Err(); err != nil {
		return id, err
	}
	rand.Read(id[:])
	st, err := s.begin(id)
	if err != nil {
		return id, err
	}
	defer s.end(id, st)
	if err := s.checkSpace(0); err != nil {
		return id, err
	}
	m := meta{size: size, expiresMs: exp, tag: tag}
	if err := s.create(id, m); err != nil {
		return id, fmt.Errorf("fsblob: create: %w: %v", blob.ErrUnavailable, err)
	}
	st.meta, st.chunks, st.loaded = m, nil, true
	return id, nil
}

// create makes the directory of a new blob with its meta record, durably:
// built under a temporary name, then renamed into place.
func (s *Store) create(id blob.ID, m meta) error {
	shard := s.shardDir(id)
	if err := s.mkdir(shard, s.blobs); err != nil {
		return err
	}
	tmp := filepath.Join(shard, tempPrefix+hex.EncodeToString(id[:]))
	if err := s.fs.Mkdir(tmp, 0o700); err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			s.fs.RemoveAll(tmp)
		}
	}()
	if err := writeSynced(s.fs, filepath.Join(tmp, metaName), m.encode()); err != nil {
		return err
	}
	if err := vfs.SyncDir(s.fs, tmp); err != nil {
		return err
	}
	if err := s.fs.Rename(tmp, s.blobDir(id)); err != nil {
		return err
	}
	ok = true
	return vfs.SyncDir(s.fs, shard)
}

// writeSynced creates name with data and syncs it.
func writeSynced(fsys vfs.FS, name string, data []byte) error {
	f, err := fsys.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// checkSpace returns ErrUnavailable if writing n bytes would take the
// free space below the reserve.
func (s *Store) checkSpace(n int64) error {
	if s.reserve < 0 {
		return nil
	}
	free, err := s.fs.Free(s.dir)
	if err != nil {
		return fmt.Errorf("fsblob: %w: free space: %v", blob.ErrUnavailable, err)
	}
	if free < uint64(s.reserve)+uint64(n) {
		return fmt.Errorf("fsblob: %w: %d bytes free, writing %d would go below the reserve of %d", blob.ErrUnavailable, free, n, s.reserve)
	}
	return nil
}

// Append implements blob.Store.
func (s *Store) Append(ctx context.Context, id blob.ID, offset int64, r io.Reader, n int64) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	st, err := s.begin(id)
	if err != nil {
		return 0, err
	}
	defer s.end(id, st)
	if err := s.load(id, st); err != nil {
		return 0, fmt.Errorf("fsblob: append to %v: %w", id, err)
	}
	if err := s.limits.CheckAppend(st.meta.size, offset, n); err != nil {
		return st.committed(), err
	}
	committed := st.committed()
	if offset > committed {
		return committed, fmt.Errorf("fsblob: append at %d to %v: %w (committed %d)", offset, id, blob.ErrGap, committed)
	}
	bufp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bufp)
	buf := *bufp
	if offset < committed {
		k := min(n, committed-offset)
		if err := s.compare(id, st, offset, k, r, buf); err != nil {
			return committed, fmt.Errorf("fsblob: append at %d to %v: %w", offset, id, err)
		}
		offset, n = offset+k, n-k
	}
	if n == 0 {
		return committed, nil
	}
	if err := s.checkSpace(chunkFileSize(n)); err != nil {
		return committed, err
	}
	if err := s.writeChunk(s.blobDir(id), offset, r, n, buf); err != nil {
		return committed, fmt.Errorf("fsblob: append at %d to %v: %w", offset, id, err)
	}
	st.chunks = append(st.chunks, chunk{offset, n})
	return offset + n, nil
}

// compare reads n bytes from r and checks that they equal the committed
// bytes of the blob from offset.
func (s *Store) compare(id blob.ID, st *state, offset, n int64, r io.Reader, buf []byte) error {
	in := make([]byte, blockSize)
	stored := make([]byte, blockSize)
	cr := &reader{s: s, dir: s.blobDir(id), chunks: st.chunks, pos: offset, end: offset + n, buf: buf}
	defer cr.Close()
	for n > 0 {
		k := min(n, blockSize)
		if _, err := io.ReadFull(r, in[:k]); err != nil {
			return fmt.Errorf("%w: chunk shorter than declared: %v", blob.ErrInvalid, err)
		}
		if _, err := io.ReadFull(cr, stored[:k]); err != nil {
			return err
		}
		if !bytes.Equal(stored[:k], in[:k]) {
			return blob.ErrMismatch
		}
		n -= k
	}
	return nil
}

// writeChunk writes n bytes of r as the chunk at offset in dir: a
// temporary file, synced, renamed into place, the directory synced.
func (s *Store) writeChunk(dir string, offset int64, r io.Reader, n int64, buf []byte) error {
	tmp := filepath.Join(dir, fmt.Sprintf("%s%016x-%x", tempPrefix, offset, randUint64()))
	f, err := s.fs.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("%w: %v", blob.ErrUnavailable, err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			s.fs.Remove(tmp)
		}
	}()
	crcs := make([]byte, 0, 4*blocks(n))
	for left := n; left > 0; {
		k := min(left, blockSize)
		if _, err := io.ReadFull(r, buf[:k]); err != nil {
			return fmt.Errorf("%w: chunk shorter than declared: %v", blob.ErrInvalid, err)
		}
		crcs = binary.BigEndian.AppendUint32(crcs, crc32.Checksum(buf[:k], castagnoli))
		if _, err := f.Write(buf[:k]); err != nil {
			return fmt.Errorf("%w: %v", blob.ErrUnavailable, err)
		}
		left -= k
	}
	if _, err := f.Write(append(crcs, trailer(crcs, offset, n)...)); err != nil {
		return fmt.Errorf("%w: %v", blob.ErrUnavailable, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("%w: %v", blob.ErrUnavailable, err)
	}
	if err := f.Close(); err != nil {
		s.fs.Remove(tmp)
		ok = true
		return fmt.Errorf("%w: %v", blob.ErrUnavailable, err)
	}
	ok = true
	final := filepath.Join(dir, chunkName(offset))
	if err := s.fs.Rename(tmp, final); err != nil {
		s.fs.Remove(tmp)
		return fmt.Errorf("%w: %v", blob.ErrUnavailable, err)
	}
	if err := vfs.SyncDir(s.fs, dir); err != nil {
		// The chunk may or may not survive a crash. It is not counted as
		// committed: a retry writes it again (replacing the file), and a
		// reopen counts it only if it is there.
		return fmt.Errorf("%w: %v", blob.ErrUnavailable, err)
	}
	return nil
}

func randUint64() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])
}

// Info implements blob.Store.
func (s *Store) Info(ctx context.Context, id blob.ID) (blob.Info, error) {
	if err := ctx.Err(); err != nil {
		return blob.Info{}, err
	}
	st, err := s.begin(id)
	if err != nil {
		return blob.Info{}, err
	}
	defer s.end(id, st)
	if err := s.load(id, st); err != nil {
		return blob.Info{}, fmt.Errorf("fsblob: info of %v: %w", id, err)
	}
	return blob.Info{Size: st.meta.size, Committed: st.committed(), Expires: time.UnixMilli(st.meta.expiresMs), Final: st.meta.final, Tag: st.meta.tag}, nil
}

// Finalize implements blob.Store.
func (s *Store) Finalize(ctx context.Context, id blob.ID) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	st, err := s.begin(id)
	if err != nil {
		return err
	}
	defer s.end(id, st)
	if err := s.load(id, st); err != nil {
		return fmt.Errorf("fsblob: finalize %v: %w", id, err)
	}
	if st.meta.final {
		return nil
	}
	if c := st.committed(); c != st.meta.size {
		return fmt.Errorf("fsblob: finalize %v: %w: %d of %d bytes", id, blob.ErrIncomplete, c, st.meta.size)
	}
	m := st.meta
	m.final = true
	if err := atomicfile.WriteFileFS(s.fs, filepath.Join(s.blobDir(id), metaName), m.encode(), 0o600); err != nil {
		// The new record may be in place; reload it next time.
		st.loaded = false
		return fmt.Errorf("fsblob: finalize %v: %w: %v", id, blob.ErrUnavailable, err)
	}
	st.meta = m
	return nil
}

// Open implements blob.Store.
func (s *Store) Open(ctx context.Context, id blob.ID, offset, length int64) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st, err := s.begin(id)
	if err != nil {
		return nil, err
	}
	defer s.end(id, st)
	if err := s.load(id, st); err != nil {
		return nil, fmt.Errorf("fsblob: open %v: %w", id, err)
	}
	if !st.meta.final {
		return nil, fmt.Errorf("fsblob: open %v: %w (not finalized)", id, blob.ErrNotFound)
	}
	if err := blob.CheckRange(st.meta.size, offset, length); err != nil {
		return nil, err
	}
	bufp := s.bufs.Get().(*[]byte)
	return &reader{s: s, dir: s.blobDir(id), chunks: slices.Clone(st.chunks), pos: offset, end: offset + length, buf: *bufp, bufp: bufp}, nil
}

// A reader returns verified bytes of [pos, end) of a blob.
type reader struct {
	s      *Store
	dir    string
	chunks []chunk
	pos    int64
	end    int64
	buf    []byte
	bufp   *[]byte // returned to the pool on Close
	cur    *openChunk
	curOff int64
	block  []byte // verified bytes of the current block from pos on
	err    error
}

func (r *reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.pos >= r.end {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if len(r.block) == 0 {
		if err := r.fill(); err != nil {
			r.err = err
			return 0, err
		}
	}
	k := min(len(p), len(r.block), int(r.end-r.pos))
	copy(p, r.block[:k])
	r.block = r.block[k:]
	r.pos += int64(k)
	return k, nil
}

// fill reads and verifies the block holding pos.
func (r *reader) fill() error {
	i, ok := slices.BinarySearchFunc(r.chunks, r.pos, func(c chunk, pos int64) int {
		switch {
		case c.off+c.n <= pos:
			return -1
		case c.off > pos:
			return 1
		}
		return 0
	})
	if !ok {
		return fmt.Errorf("%w: no chunk holds offset %d", blob.ErrCorrupt, r.pos)
	}
	c := r.chunks[i]
	if r.cur == nil || r.curOff != c.off {
		if r.cur != nil {
			r.cur.close()
			r.cur = nil
		}
		oc, n, err := r.s.openChunk(r.dir, c.off)
		if errors.Is(err, fs.ErrNotExist) {
			if _, serr := r.s.fs.Stat(filepath.Join(r.dir, metaName)); errors.Is(serr, fs.ErrNotExist) {
				return fmt.Errorf("%w: deleted while read", blob.ErrNotFound)
			}
		}
		if err != nil {
			return err
		}
		if n != c.n {
			oc.close()
			return fmt.Errorf("%w: chunk at %d changed size", blob.ErrCorrupt, c.off)
		}
		r.cur, r.curOff = oc, c.off
	}
	rel := r.pos - c.off
	b, err := r.cur.readBlock(rel/blockSize, r.buf)
	if err != nil {
		return err
	}
	r.block = b[rel%blockSize:]
	return nil
}

// Close implements io.Closer.
func (r *reader) Close() error {
	if r.cur != nil {
		r.cur.close()
		r.cur = nil
	}
	if r.bufp != nil {
		r.s.bufs.Put(r.bufp)
		r.bufp = nil
	}
	if r.err == nil {
		r.err = errors.New("fsblob: reader closed")
	}
	return nil
}

// Delete implements blob.Store.
func (s *Store) Delete(ctx context.Context, id blob.ID) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	st, err := s.begin(id)
	if err != nil {
		return err
	}
	defer s.end(id, st)
	if err := s.load(id, st); err != nil && !errors.Is(err, blob.ErrCorrupt) {
		return fmt.Errorf("fsblob: delete %v: %w", id, err)
	}
	if err := s.remove(id); err != nil {
		return fmt.Errorf("fsblob: delete %v: %w: %v", id, blob.ErrUnavailable, err)
	}
	st.gone = true
	return nil
}

// remove moves a blob directory to the trash, durably, then empties it.
func (s *Store) remove(id blob.ID) error {
	t := filepath.Join(s.trash, fmt.Sprintf("%x-%x", id[:], randUint64()))
	if err := s.fs.Rename(s.blobDir(id), t); err != nil {
		return err
	}
	if err := vfs.SyncDir(s.fs, s.shardDir(id)); err != nil {
		return err
	}
	if err := s.fs.RemoveAll(t); err != nil {
		s.logger.Warn("fsblob: emptying the trash", "err", err)
	}
	return nil
}

// Sweep implements blob.Store: it deletes expired blobs and the
// directories of interrupted Creates older than an hour.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return 0, blob.ErrClosed
	}
	s.closeMu.RUnlock()
	shards, err := s.fs.ReadDir(s.blobs)
	if err != nil {
		return 0, fmt.Errorf("fsblob: sweep: %w", err)
	}
	n := 0
	nowMs := s.now().UnixMilli()
	for _, sh := range shards {
		entries, err := s.fs.ReadDir(filepath.Join(s.blobs, sh.Name()))
		if err != nil {
			return n, fmt.Errorf("fsblob: sweep: %w", err)
		}
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return n, err
			}
			name := e.Name()
			if strings.HasPrefix(name, tempPrefix) {
				if fi, err := e.Info(); err == nil && s.now().Sub(fi.ModTime()) > staleTemp {
					s.fs.RemoveAll(filepath.Join(s.blobs, sh.Name(), name))
				}
				continue
			}
			raw, err := hex.DecodeString(name)
			if err != nil || len(raw) != len(blob.ID{}) {
				continue
			}
			id := blob.ID(raw)
			del, err := s.sweepOne(id, nowMs)
			if err != nil {
				return n, fmt.Errorf("fsblob: sweep: %w", err)
			}
			if del {
				n++
			}
		}
	}
	return n, nil
}

// sweepOne deletes blob id if it has expired.
func (s *Store) sweepOne(id blob.ID, nowMs int64) (bool, error) {
	st, err := s.begin(id)
	if err != nil {
		return false, err
	}
	defer s.end(id, st)
	if !st.loaded {
		b, err := readFile(s.fs, filepath.Join(s.blobDir(id), metaName))
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		m, err := decodeMeta(b)
		if err != nil {
			s.logger.Warn("fsblob: sweep: damaged meta record", "blob", id.String(), "err", err)
			return false, nil
		}
		st.meta = m
	}
	if st.gone || st.meta.expiresMs > nowMs {
		return false, nil
	}
	if err := s.remove(id); err != nil {
		return false, fmt.Errorf("%w: %v", blob.ErrUnavailable, err)
	}
	st.gone = true
	return true, nil
}
