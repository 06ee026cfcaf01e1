// Package badgerstore is the embedded store.DirectoryStore: one badger/v4
// database in one data directory. The key schema is in schema.go; how a
// commit is made atomic (one badger transaction, or staged ones made
// visible by the head) is in commit.go; how it is made durable without
// badger's SyncWrites is in sync.go.
//
// # Corruption
//
// Badger checksums every table block and every value-log entry, and this
// store turns on both checks, then parses every value strictly. What a
// flipped bit on disk does (TestCorruption):
//
//   - In a value-log entry (value records and map tiles of 256 bytes or
//     more, checkpoints):
//     the read fails with store.ErrCorrupt. Badger itself logs the error
//     and returns an empty value, which no stored value is.
//   - In the newest value-log file, or in a memtable write-ahead log, when
//     the database is opened: badger takes the first bad entry for the
//     torn tail of a crash and truncates the file there, silently; every
//     later value of that file then reads as store.ErrCorrupt.
//   - In a table block (map and log nodes, small records, tenant states,
//     keys): badger verifies the block when it reads it, and on a mismatch
//     skips the block as if it held none of its keys. A read then reports
//     the key absent: vmap.ErrNodeNotFound, store.ErrNotFound, or
//     LatestVersion 0. Where absence is impossible the store says
//     ErrCorrupt instead (a log node inside the head's tree, a map root of
//     a visible epoch, a record version below the latest, a fragment of a
//     blob whose header exists). Verify checks every block of every
//     table; run it at startup and periodically.
//
// No read returns bytes other than those written. Keys other than the
// head pointer "h" are never overwritten, so a skipped block cannot bring
// back an older value. Open refuses (store.ErrCorrupt) a directory whose
// head is older than its head history, or that holds data past the head
// that no staging journal explains, rather than delete anything.
package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/moat-im/moat/internal/badgerutil"
	"github.com/moat-im/moat/keyserver/store"
	"github.com/moat-im/moat/keyserver/vmap"
)

// Options configures a Store. Only Dir is required; the zero value of
// every other field gives the default documented on it.
type Options struct {
	// Dir is the data directory; it is created if missing. One Store per
	// directory: badger holds a lock file.
	Dir string

	// Logger receives badger's log lines (file names, sizes, recovery and
	// compaction events; never stored values). Default slog.Default().
	Logger *slog.Logger
	// LogLevel is the lowest level passed to Logger. Default
	// slog.LevelWarn: badger logs every open, flush and compaction at
	// Info.
	LogLevel slog.Leveler

	// MemTableSize is badger's memtable size. Default 192 MiB. Badger
	// bounds one transaction to 15% of it (28.8 MiB at the default); a
	// commit that does not fit is staged over several transactions
	// (commit.go), which costs about half as much again. An epoch of
	// 32,768 updates on a 1,000,000-label map is about 93,000 entries
	// and 20 MB by badger's count (measured with the former 1 KiB value
	// threshold, and before the tenant records were
	// counted: 32,768 more, about 9 MB; map tiles of 256 bytes or more
	// now count 12 bytes of value each; the latest-version hints are
	// written after the commit, gc.go), and 3 MB more each time
	// the map doubles: the default keeps it one transaction up to about 6
	// million labels, 256 MiB up to about 50 million, while 128 MiB
	// stages it already at 1 million. Badger allocates each memtable's
	// arena (about 1.3 times this size) in the Go heap, and keeps full
	// memtables in memory while they are flushed: on a 1,000,000-label
	// map, 256 MiB took about 0.4 GB more resident memory than 192 MiB
	// (docs/performance.md). Minimum 4 MiB.
	MemTableSize int64

	// TileCacheSize is the budget, in bytes, of the cache of map tiles
	// recently read (tiles.go). Default 32 MiB: what one level band of
	// a 32,768-update epoch on a 1,000,000-label map reads. Negative: no
	// cache.
	TileCacheSize int

	// Badger options that are fixed, not configurable:
	//   - SyncWrites false: CommitEpoch makes its writes durable itself
	//     (syncAll in commit.go), once per epoch (twice if staged).
	//   - ValueThreshold 256 bytes: value records (device certificates
	//     are 3.6 KB), checkpoints and map tiles of 256 bytes or more go
	//     to badger's value log, written once and never rewritten by
	//     compaction: the LSM tree holds a 12-byte pointer for them. On a
	//     1,000,000-label map three quarters of the tile bytes are in
	//     such tiles; with the former 1 KiB threshold they stayed in the
	//     LSM tree, which level compactions rewrote again and again
	//     (docs/performance.md). Everything that is ever deleted or
	//     superseded (tenant-state fragments, journal, the head pointer,
	//     the latest-version hints) stays below it, in the LSM tree, so
	//     the value log only collects garbage from rolled-back epochs and
	//     needs no value-log GC.
	//   - ChecksumVerificationMode OnBlockRead and VerifyValueChecksum: a
	//     value-log entry that fails its checksum makes the read fail
	//     (ErrCorrupt); for table blocks see Verify. Table indexes are
	//     always verified when a table is opened.
	//   - Compression none: the contents are hashes, keys and signatures.
	//     Without compression no block cache is needed (BlockCacheSize 0).
	//   - DetectConflicts false: there is one writer.
	//   - MetricsEnabled false: badger's metrics are process-wide expvars.
	//   - Compaction sized for an append-only store that takes tens of
	//     MB per epoch: tables of 8 MiB (badger: 2 MiB) and a first level
	//     of 128 MiB (badger: 10 MiB), so that a 1,000,000-label directory
	//     sits in three levels and compacts in fewer, larger steps; one
	//     compactor per core, 2 to 4 (badger: 4). On 2 cores this cut the
	//     CPU of an epoch of 32,768 updates by about 12% and the number of
	//     compactions by 4 (docs/performance.md).
	//   - NumVersionsToKeep 1, no encryption (nothing stored is secret:
	//     the store holds public directory data and tenant admin state,
	//     whose enrolment secrets are hashed).

	// testCrashAfterChunk, if set, makes CommitEpoch stop without rolling
	// back after committing that many staged transactions, as a crash
	// would (tests only).
	testCrashAfterChunk int
}

const (
	defaultMemTableSize  = 192 << 20
	defaultTileCacheSize = 32 << 20
	baseTableSize        = 8 << 20
	baseLevelSize        = 128 << 20
	minMemTableSize      = 4 << 20
	valueThreshold       = 256
)

// ErrOldSchema is returned by Open for a directory written by an earlier
// version of this store, whose key schema it no longer reads. There is no
// in-place migration.
var ErrOldSchema = errors.New("badgerstore: directory written with an older schema")

// Store is a badger-backed DirectoryStore.
type Store struct {
	db      *badger.DB
	dir     string
	tiles   *tileCache // nil: none
	logger  *slog.Logger
	crashAt int

	// head is the visibility barrier: it moves only after a commit is
	// durable. nil when empty.
	head atomic.Pointer[store.Head]

	commitMu sync.Mutex  // serialises CommitEpoch and recovery
	broken   error       // set when durability is unknown; guarded by commitMu
	stats    commitStats // of the last commit; guarded by commitMu
	// syncer makes writes durable (badgerutil.Syncer); guarded by commitMu.
	syncer *badgerutil.Syncer
	// noteEpoch and noteSeq name the latest head checkpoint update
	// (headnote.go); guarded by commitMu.
	noteEpoch, noteSeq uint64
	// gcJobs are the cleanups of committed epochs not yet run, and
	// versions the latest version of every tenant record written since
	// Open, by recordHash under seed (gc.go); guarded by commitMu.
	gcJobs   []gcJob
	versions map[uint64]recVersion
	seed     maphash.Seed
	// labels holds the latest version of every label committed since
	// Open, at most labelCacheSize of them (commit.go: checkRuns);
	// guarded by commitMu.
	labels map[vmap.Label]uint32
	// pending holds the latest-version hints of the queued cleanups, in
	// commit order (gc.go); guarded by hintMu.
	hintMu  sync.RWMutex
	pending []*pendingHints
	// testDropCleanup drops the queued cleanups, as a crash would
	// (tests only); guarded by commitMu.
	testDropCleanup bool
	// testManualCleanup leaves the queued cleanups to WaitCleanup and
	// Close: no goroutine runs them (tests only); guarded by commitMu.
	testManualCleanup bool
	// testCollide makes every record hash collide (tests only; set
	// before the first commit).
	testCollide bool
	// testFailCleanupAt makes a cleanup fail at its transaction after
	// testFailCleanupAt committed ones (tests only; 0: never).
	testFailCleanupAt int

	// closeMu is held for reading by every operation and for writing by
	// Close, so that no badger call runs on a closed database.
	closeMu sync.RWMutex
	closed  bool
}

var _ store.DirectoryStore = (*Store)(nil)

// Open opens (or creates) the store in opts.Dir and rolls back any epoch
// that was staged but not committed. ctx bounds the recovery.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("badgerstore: no data directory")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.LogLevel == nil {
		opts.LogLevel = slog.LevelWarn
	}
	if opts.MemTableSize == 0 {
		opts.MemTableSize = defaultMemTableSize
	}
	if opts.TileCacheSize == 0 {
		opts.TileCacheSize = defaultTileCacheSize
	}
	if opts.MemTableSize < minMemTableSize {
		return nil, fmt.Errorf("badgerstore: memtable size %d below %d", opts.MemTableSize, minMemTableSize)
	}
	bo := badger.DefaultOptions(opts.Dir).
		WithLogger(badgerutil.NewLogger(opts.Logger, opts.LogLevel, "badgerstore")).
		WithSyncWrites(false).
		WithMemTableSize(opts.MemTableSize).
		WithValueThreshold(valueThreshold).
		WithChecksumVerificationMode(options.OnBlockRead).
		WithVerifyValueChecksum(true).
		WithCompression(options.None).
		WithBlockCacheSize(0).
		WithDetectConflicts(false).
		WithMetricsEnabled(false).
		WithNumVersionsToKeep(1).
		WithNumCompactors(max(2, min(runtime.GOMAXPROCS(0), 4))).
		WithBaseTableSize(baseTableSize).
		WithBaseLevelSize(baseLevelSize)
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("badgerstore: opening %s: %w", opts.Dir, err)
	}
	s := &Store{
		db:      db,
		dir:     opts.Dir,
		logger:  opts.Logger,
		crashAt: opts.testCrashAfterChunk,
		syncer:  badgerutil.NewSyncer(opts.Dir),
		tiles:   newTileCache(opts.TileCacheSize),

		versions: map[uint64]recVersion{},
		labels:   map[vmap.Label]uint32{},
		seed:     maphash.MakeSeed(),
	}
	if err := s.init(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// init checks or writes the schema version, loads the head and rolls back
// staged data past it.
func (s *Store) init(ctx context.Context) error {
	var meta []byte
	var empty bool
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(keyMeta)
		if errors.Is(err, badger.ErrKeyNotFound) {
			it := txn.NewIterator(badger.IteratorOptions{})
			defer it.Close()
			it.Rewind()
			empty = !it.Valid()
			return nil
		}
		if err != nil {
			return err
		}
		meta, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		return fmt.Errorf("badgerstore: reading schema version: %w", wrapRead(err))
	}
	switch {
	case meta == nil && empty:
		if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(keyMeta, []byte(schemaVersion)) }); err != nil {
			return fmt.Errorf("badgerstore: writing schema version: %w", err)
		}
		s.commitMu.Lock()
		err := s.syncAll()
		s.commitMu.Unlock()
		if err != nil {
			return fmt.Errorf("badgerstore: %w", err)
		}
	case meta == nil:
		return errors.New("badgerstore: directory holds a badger database that is not a directory store")
	case oldSchemas[string(meta)] != "":
		return fmt.Errorf("%w: %s holds %q (%s); this version reads only %q: restore the directory from a backup made by the matching version, or create it anew",
			ErrOldSchema, s.dir, meta, oldSchemas[string(meta)], schemaVersion)
	case string(meta) != schemaVersion:
		return fmt.Errorf("badgerstore: unsupported schema %q", meta)
	}
	h, err := s.readHead()
	if err != nil {
		return err
	}
	s.head.Store(h)
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	if err := s.recover(ctx, h); err != nil {
		return fmt.Errorf("badgerstore: recovery: %w", err)
	}
	if h != nil {
		cp, seq, err := s.readHeadCheckpoint(h.Epoch)
		if err != nil {
			return err
		}
		if seq > 0 {
			nh := h.Clone()
			nh.Checkpoint = cp
			s.head.Store(&nh)
			s.noteEpoch, s.noteSeq = h.Epoch, seq
		}
	}
	return nil
}

// readHead reads the stored head: "h" names the latest epoch, whose head
// is "H" || epoch. nil when none.
func (s *Store) readHead() (*store.Head, error) {
	var h *store.Head
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(keyHead)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		var epoch uint64
		if err := item.Value(func(v []byte) error {
			var err error
			epoch, err = decodeHeadPointer(v)
			return err
		}); err != nil {
			return err
		}
		item, err = txn.Get(headAtKey(epoch))
		if err != nil {
			return fmt.Errorf("%w: head of epoch %d: %v", store.ErrCorrupt, epoch, err)
		}
		return item.Value(func(v []byte) error {
			x, err := decodeHead(v)
			if err == nil && x.Epoch != epoch {
				err = fmt.Errorf("%w: head record of epoch %d names epoch %d", store.ErrCorrupt, epoch, x.Epoch)
			}
			h = &x
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("badgerstore: reading head: %w", wrapRead(err))
	}
	return h, nil
}

// Close closes the database, waiting for running operations and running
// the queued cleanups (gc.go). It does not take a context: badger's close
// (flushing the memtable) cannot be interrupted safely.
func (s *Store) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return nil
	}
	s.commitMu.Lock()
	s.runCleanup()
	s.commitMu.Unlock()
	s.closed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("badgerstore: close: %w", err)
	}
	return nil
}

// Verify reads every table of the database and checks the checksum of
// every block (badger's DB.VerifyChecksum), returning an error matching
// store.ErrCorrupt if one fails. Run it at startup or periodically: badger
// reads skip a table block that fails its checksum as if the keys it holds
// were absent, so a read alone can report "not found" for a corrupt key
// (see the package documentation). It takes time proportional to the
// database size.
//
// After it reports corruption, close the store and restore the directory
// from a replica or backup: badger v4.9.6 panics (nil dereference in
// table.VerifyChecksum) on the first failing block, and Verify recovers
// the panic, leaking the references badger held on the tables.
func (s *Store) Verify(ctx context.Context) (err error) {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.closeMu.RUnlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("badgerstore: %w: a table block failed verification (badger panicked: %v)", store.ErrCorrupt, r)
		}
	}()
	if err := s.db.VerifyChecksum(); err != nil {
		return fmt.Errorf("badgerstore: %w: %w", store.ErrCorrupt, err)
	}
	return nil
}

// acquire starts an operation; release it with s.closeMu.RUnlock.
func (s *Store) acquire() error {
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return store.ErrClosed
	}
	return nil
}

// beginWrite starts a write: it acquires the store and takes the commit
// lock, then checks that no earlier write broke the store and that ctx is
// live (what names the write in that error). On success the caller calls
// end to release both locks.
func (s *Store) beginWrite(ctx context.Context, what string) (end func(), err error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	s.commitMu.Lock()
	end = func() {
		s.commitMu.Unlock()
		s.closeMu.RUnlock()
	}
	if s.broken != nil {
		err = s.broken
	} else if cerr := ctx.Err(); cerr != nil {
		err = fmt.Errorf("badgerstore: %s: %w", what, cerr)
	}
	if err != nil {
		end()
		return nil, err
	}
	return end, nil
}

// wrapRead marks errors of badger reads that are not "not found": a failed
// checksum or any other read failure means the bytes cannot be trusted.
func wrapRead(err error) error {
	if err == nil || errors.Is(err, store.ErrCorrupt) || errors.Is(err, store.ErrNotFound) {
		return err
	}
	return fmt.Errorf("%w: %w", store.ErrCorrupt, err)
}
