package badgermailbox

// Opening, recovery and the watermark.
//
// Open replays badger's logs, then fsyncs every file of the directory
// (badgerutil.SyncAllFiles): after a crash, badger reads its logs through
// the page cache, which may hold writes that were never synced, and a
// batch must be durable before a reader sees it. The commit record "t"
// must name the newest version in the database: every batch writes it,
// and badger replays a transaction whole or not at all, so anything else
// is corruption.
//
// Failed batches. Badger refuses a commit only before writing it (writes
// blocked), and a failed sync leaves the batch in badger's memtable and
// in log pages whose write-back failed: the kernel may have dropped them,
// and a later sync can succeed without writing them. So after a failed
// commit or sync the store goes down (every call fails with
// ErrUnavailable) and a recovery goroutine, retrying with backoff, closes
// the database (badger flushes its memtables to new, synced tables),
// reopens it, writes every entry of the failed batch again at a new
// timestamp and syncs. Only then does the store serve again: the failed
// batch is then durable through writes that succeeded, and a retry of one
// of its messages finds it.
//
// Watermark. Badger takes a write-ahead-log entry that fails its checksum
// for the torn tail of a crash and silently truncates the log there,
// dropping every later batch of that log, acknowledged or not. So after
// durable batches, at most once a second, the store records the durable
// timestamp in the file "moat-watermark" (replaced atomically); Open
// fails with ErrCorrupt when the database's commit record is older than
// the watermark.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/table"

	"github.com/moat-im/moat/internal/atomicfile"
	"github.com/moat-im/moat/internal/badgerutil"
	"github.com/moat-im/moat/server/store/mailbox"
)

// WatermarkFile is the name of the watermark file in the data directory.
const WatermarkFile = "moat-watermark"

const watermarkMagic = "moat relay mailbox watermark 1\n"

// openDB opens badger, makes what it replayed durable, initialises an
// empty database and checks the commit record and the watermark. It sets
// s.db, s.syncer, s.ts and s.readTs.
func (s *Store) openDB(ctx context.Context) error {
	db, err := s.openBadger()
	if err != nil {
		return fmt.Errorf("badgermailbox: opening %s: %w", s.dir, err)
	}
	s.db = db
	s.syncer = badgerutil.NewSyncer(s.dir)
	if err := s.initDB(ctx); err != nil {
		db.Close()
		s.db = nil
		return err
	}
	return nil
}

// openBadger checks the tables' trailers, then opens badger.
func (s *Store) openBadger() (*badger.DB, error) {
	bo := s.badgerOptions()
	if err := checkTableTrailers(s.dir, bo); err != nil {
		return nil, err
	}
	db, err := badger.OpenManaged(bo)
	if err != nil {
		return nil, classifyOpen(err)
	}
	return db, nil
}

// checkTableTrailers checks that the trailer of every table the manifest
// lists names an index inside the table file. (Badger deletes the other
// table files: a flush or compaction cut short by a crash.) Badger v4.9.6 reads a table's index at the
// offsets its trailer gives without checking them, and a truncated table
// makes it panic in a goroutine of its own (table.initIndex), which
// crashes the process; with the trailer in bounds, badger verifies the
// index checksum and returns an error instead.
//
// Trailer (badger table format): index || uint32 index_len || checksum ||
// uint32 checksum_len, big-endian; the checksum is a protobuf of two
// varints.
func checkTableTrailers(dir string, opt badger.Options) error {
	fp, err := os.Open(filepath.Join(dir, badger.ManifestFilename))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer fp.Close()
	mf, _, err := badger.ReplayManifestFile(fp, opt.ExternalMagicVersion, opt)
	if err != nil {
		return nil // badger's open reports it
	}
	for id := range mf.Tables {
		p := table.NewFilename(id, dir)
		if err := checkTableTrailer(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: table %s: %v", mailbox.ErrCorrupt, filepath.Base(p), err)
		}
	}
	return nil
}

func checkTableTrailer(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	var b [4]byte
	if size < 8 {
		return fmt.Errorf("%d bytes", size)
	}
	if _, err := f.ReadAt(b[:], size-4); err != nil {
		return err
	}
	sumLen := int64(binary.BigEndian.Uint32(b[:]))
	if sumLen == 0 || sumLen > 32 || sumLen+8 > size {
		return fmt.Errorf("checksum length %d in a file of %d bytes", sumLen, size)
	}
	if _, err := f.ReadAt(b[:], size-8-sumLen); err != nil {
		return err
	}
	indexLen := int64(binary.BigEndian.Uint32(b[:]))
	if indexLen == 0 || indexLen+sumLen+8 > size {
		return fmt.Errorf("index length %d in a file of %d bytes", indexLen, size)
	}
	return nil
}

// classifyOpen marks badger open failures that are not about the
// environment (lock held, permissions, missing or full disk) as
// corruption: badger fails to open a table whose size or index checksum
// is wrong, or a manifest it cannot parse.
func classifyOpen(err error) error {
	for _, env := range []error{fs.ErrPermission, fs.ErrNotExist, syscall.EAGAIN, syscall.ENOSPC, syscall.EROFS, syscall.EMFILE, syscall.ENOMEM} {
		if errors.Is(err, env) {
			return err
		}
	}
	if strings.Contains(err.Error(), "Cannot acquire directory lock") {
		return err
	}
	return fmt.Errorf("%w: %w", mailbox.ErrCorrupt, err)
}

func (s *Store) initDB(ctx context.Context) error {
	if err := badgerutil.SyncAllFiles(s.dir); err != nil {
		return fmt.Errorf("badgermailbox: syncing replayed data: %w", err)
	}
	maxV := s.db.MaxVersion()
	var schema []byte
	var commit uint64
	var haveCommit bool
	err := func() error {
		txn := s.db.NewTransactionAt(maxV, false)
		defer txn.Discard()
		item, err := txn.Get(keySchema)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if schema, err = item.ValueCopy(nil); err != nil {
			return err
		}
		item, err = txn.Get(keyCommit)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		haveCommit = true
		return item.Value(func(v []byte) error {
			var err error
			commit, err = decodeCommit(v)
			return err
		})
	}()
	if err != nil {
		return fmt.Errorf("badgermailbox: reading the schema: %w", wrapRead(err))
	}
	wm, err := s.readWatermark()
	if err != nil {
		return err
	}
	switch {
	case schema == nil && maxV == 0:
		if wm > 0 {
			return fmt.Errorf("badgermailbox: %w: the database is empty but the watermark names timestamp %d", mailbox.ErrCorrupt, wm)
		}
		txn := s.db.NewTransactionAt(0, true)
		defer txn.Discard()
		if err := txn.Set(keySchema, []byte(schemaVersion)); err != nil {
			return err
		}
		if err := txn.Set(keyCommit, encodeCommit(1)); err != nil {
			return err
		}
		if err := txn.CommitAt(1, nil); err != nil {
			return fmt.Errorf("badgermailbox: initialising: %w", err)
		}
		if err := s.syncer.Sync(s.db); err != nil {
			return fmt.Errorf("badgermailbox: initialising: %w", err)
		}
		commit = 1
	case schema == nil:
		return errors.New("badgermailbox: directory holds a badger database that is not a mailbox store")
	case oldSchemas[string(schema)]:
		return fmt.Errorf("%w: %s holds %q; this version reads only %q: drain the relay with the version that wrote it, or create the store anew",
			ErrOldSchema, s.dir, schema, schemaVersion)
	case string(schema) != schemaVersion:
		return fmt.Errorf("badgermailbox: unsupported schema %q", schema)
	case !haveCommit:
		return fmt.Errorf("badgermailbox: %w: no commit record", mailbox.ErrCorrupt)
	case commit != maxV:
		return fmt.Errorf("badgermailbox: %w: the newest version is %d but the last commit is %d", mailbox.ErrCorrupt, maxV, commit)
	}
	if wm > commit {
		return fmt.Errorf("badgermailbox: %w: batches up to timestamp %d were acknowledged but the database ends at %d (a damaged log was truncated, or files are missing)", mailbox.ErrCorrupt, wm, commit)
	}
	s.ts = commit
	s.readTs.Store(commit)
	return ctx.Err()
}

// goDown takes the store down after a batch failed past the point where
// badger may hold it, and starts recovery. Called by the writer.
func (s *Store) goDown(cause error, failed [][]entry) {
	s.mu.Lock()
	s.down = cause
	s.mu.Unlock()
	s.logger.Error("badgermailbox: a batch could not be made durable; refusing writes until recovered", "err", cause)
	s.bg.Add(1)
	go s.recoverLoop(failed)
}

// recoverLoop retries recovery with backoff until it succeeds or the store
// closes.
func (s *Store) recoverLoop(failed [][]entry) {
	defer s.bg.Done()
	backoff := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		select {
		case <-s.stop:
			return
		case <-time.After(backoff):
		}
		err := s.recoverOnce(failed)
		if err == nil {
			s.logger.Warn("badgermailbox: recovered; serving again", "attempts", attempt)
			s.mu.Lock()
			s.down = nil
			s.mu.Unlock()
			return
		}
		s.logger.Warn("badgermailbox: recovery failed; retrying", "attempt", attempt, "err", err)
		backoff = min(2*backoff, 2*time.Second)
	}
}

// recoverOnce closes and reopens the database and writes the failed
// batches again, each in a transaction of its own. While the store is
// down, only this goroutine uses s.db.
func (s *Store) recoverOnce(failed [][]entry) error {
	if s.db != nil {
		err := s.db.Close()
		s.mu.Lock()
		s.db = nil
		s.mu.Unlock()
		if err != nil {
			s.logger.Warn("badgermailbox: closing after a failed batch", "err", err)
		}
	}
	db, err := s.openBadger()
	if err != nil {
		return fmt.Errorf("reopening: %w", err)
	}
	s.mu.Lock()
	s.db = db
	s.mu.Unlock()
	s.syncer = badgerutil.NewSyncer(s.dir)
	if err := badgerutil.SyncAllFiles(s.dir); err != nil {
		return err
	}
	ts := max(db.MaxVersion(), s.ts)
	for _, batch := range failed {
		ts++
		if err := s.rewrite(db, batch, ts); err != nil {
			return fmt.Errorf("rewriting a failed batch: %w", err)
		}
	}
	if err := s.sync(); err != nil {
		return fmt.Errorf("syncing the rewritten batches: %w", err)
	}
	s.ts = ts
	s.publishAll()
	s.readTs.Store(ts)
	s.markWatermark()
	return nil
}

// rewrite writes the entries of a failed batch again at ts.
func (s *Store) rewrite(db *badger.DB, batch []entry, ts uint64) error {
	txn := db.NewTransactionAt(ts-1, true)
	defer txn.Discard()
	size := int64(0)
	for _, e := range batch {
		size += estimate(len(e.key), len(e.val))
		if string(e.key) == string(keyCommit) {
			e.val = encodeCommit(ts)
		}
		if err := apply(txn, e); err != nil {
			return err
		}
	}
	if _, err := s.faults.Write(int(size)); err != nil {
		return err
	}
	return txn.CommitAt(ts, nil)
}

// markWatermark asks the watermark goroutine to record the durable
// timestamp.
func (s *Store) markWatermark() {
	select {
	case s.markc <- struct{}{}:
	default:
	}
}

// watermarkLoop writes the watermark when asked, at most once a second.
func (s *Store) watermarkLoop() {
	defer s.bg.Done()
	var written uint64
	for {
		select {
		case <-s.stop:
			return
		case <-s.markc:
		}
		ts := s.readTs.Load()
		if ts == written {
			continue
		}
		if err := s.writeWatermark(ts); err != nil {
			s.logger.Warn("badgermailbox: writing the watermark", "err", err)
		} else {
			written = ts
		}
		select {
		case <-s.stop:
			return
		case <-time.After(time.Second):
		}
	}
}

// writeWatermark records that batches up to ts are durable.
func (s *Store) writeWatermark(ts uint64) error {
	b := []byte(watermarkMagic)
	b = binary.BigEndian.AppendUint64(b, ts)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	return atomicfile.WriteFile(filepath.Join(s.dir, WatermarkFile), b, 0o600)
}

// readWatermark returns the recorded durable timestamp, 0 if none.
func (s *Store) readWatermark() (uint64, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, WatermarkFile))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("badgermailbox: reading the watermark: %w", err)
	}
	n := len(watermarkMagic)
	if len(b) != n+8+4 || string(b[:n]) != watermarkMagic || crc32.Checksum(b[:n+8], castagnoli) != binary.BigEndian.Uint32(b[n+8:]) {
		return 0, fmt.Errorf("badgermailbox: %w: watermark file", mailbox.ErrCorrupt)
	}
	return binary.BigEndian.Uint64(b[n:]), nil
}
