// Package badgermailbox is the embedded mailbox.Store: one badger/v4
// database in one data directory, as specified in
// docs/spec/relay-storage.md §Badger backend. The key schema is in
// schema.go; group commit in writer.go; recovery from failed writes,
// crashes and rolled-back batches in recover.go; the integrity check in
// verify.go.
//
// # Durability
//
// A single writer goroutine drains the queue of pending enqueues, acks
// and sweeps, applies each drained batch as ONE badger transaction, makes
// it durable with ONE sync (badgerutil.Syncer: db.Sync plus the log files
// badger rotated meanwhile; SyncWrites is off), and only then answers
// every caller of the batch. It builds and commits the next batch while
// the previous one syncs. An enqueue writes one badger entry: the writer
// decides deduplication, quotas and sequence numbers from an in-memory
// index of the mailboxes (index.go) that Open rebuilds from the records.
// Badger runs in managed mode: each batch commits at the next timestamp,
// and readers read at the timestamp of the latest durable batch, and the
// heads and occupancies the batch published with it, so a reader never
// sees a write that a crash could still take back.
//
// If a batch cannot be written or synced (disk full, I/O error), every
// caller of the batch gets mailbox.ErrUnavailable and nothing of it was
// acknowledged. If the failure struck after badger accepted the batch
// (the commit or the sync failed), the store goes down: calls fail with
// ErrUnavailable while a recovery goroutine closes and reopens the
// database and writes the failed batch again, retrying with backoff
// until it is durable; then the store serves again. Writes refused
// before they reach badger (the free-space reserve, an injected write
// fault) need no recovery.
//
// # Corruption (T39)
//
// Badger checksums table blocks and log entries, and this store turns on
// the checks (ChecksumVerificationMode OnBlockRead, VerifyValueChecksum);
// every record also carries a CRC-32C over its key and value (schema.go),
// checked on every read. Open runs Verify unless told not to: it checks
// every table block (badger DB.VerifyChecksum), parses every record, and
// checks that no acknowledged record lies above its mailbox's head record,
// so that a block badger would skip on read (its keys would look absent)
// fails Open instead. A
// watermark file written after durable batches (recover.go) makes Open
// fail when badger, replaying a damaged write-ahead log, silently drops
// batches that were acknowledged.
package badgermailbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/moat-im/moat/internal/badgerutil"
	"github.com/moat-im/moat/internal/faultfs"
	"github.com/moat-im/moat/server/store/mailbox"
)

// Options configures a Store. Only Dir is required; the zero value of
// every other field gives the default documented on it.
type Options struct {
	// Dir is the data directory; it is created if missing. One Store per
	// directory: badger holds a lock file.
	Dir string

	// Limits bound messages and mailboxes (mailbox.Limits defaults).
	Limits mailbox.Limits
	// Now is the clock. Default time.Now.
	Now func() time.Time

	// Logger receives badger's log lines and the store's warnings (never
	// message contents). Default slog.Default().
	Logger *slog.Logger
	// LogLevel is the lowest level of badger's lines passed to Logger.
	// Default slog.LevelWarn.
	LogLevel slog.Leveler

	// MemTableSize is badger's memtable size. Default 32 MiB. A batch is
	// one badger transaction, which badger bounds to 15% of it: at the
	// default about 4.8 MB, some 3,500 messages of 1 KiB. Badger
	// allocates each memtable up front and keeps up to NumMemtables of
	// them. Minimum 8 MiB, and large enough for the worst-case single
	// request under Limits (Open checks).
	MemTableSize int64
	// NumMemtables is how many memtables badger keeps (one active, the
	// rest waiting to be flushed). Default 3, so badger's memtables take
	// at most about 3 × MemTableSize of memory.
	NumMemtables int

	// DiskReserve is the free space, in bytes, below which Enqueue fails
	// with ErrUnavailable before it writes anything; acks and sweeps,
	// which free space, still run. Badger writes its logs through
	// memory-mapped, sparse files: on a truly full disk a write can crash
	// the process (SIGBUS) instead of failing, so the store stops well
	// before. Default 4 × MemTableSize + 64 MiB; negative disables.
	DiskReserve int64

	// SweepInterval is how often the store sweeps expired messages by
	// itself. Default one minute; negative: never (call Sweep).
	SweepInterval time.Duration

	// SkipVerify skips the integrity check at Open (Verify), which reads
	// the whole database. Default false.
	SkipVerify bool

	// Faults injects write, sync and free-space faults (tests, T38). Nil
	// in production.
	Faults *faultfs.Injector

	// Badger options that are fixed, not configurable:
	//   - Managed transactions; SyncWrites false (group commit, writer.go).
	//   - ValueThreshold 1 MiB (badger's maximum): every record, a body of
	//     at most 512 KiB included, stays in the LSM tree. Messages are
	//     short-lived, and deleted values in the value log would need
	//     value-log GC; in the tree, compaction drops them.
	//   - ValueLogFileSize 64 MiB: the value log stays empty, and badger
	//     flushes a memtable whose write-ahead log grows past this size.
	//   - ChecksumVerificationMode OnBlockRead, VerifyValueChecksum.
	//   - Compression none (bodies are ciphertext; T35: nothing
	//     secret-bearing is compressed), so BlockCacheSize 0; IndexCacheSize
	//     0 (table indexes stay in memory, proportional to the data).
	//   - DetectConflicts false (one writer), NumVersionsToKeep 1 (with
	//     the discard timestamp trailing the durable one by 10 s),
	//     NumCompactors 2, MetricsEnabled false.
	//   - NumLevelZeroTables 10, NumLevelZeroTablesStall 30 (badger's
	//     defaults: 5 and 15): level-0 compactions, which compete with the
	//     syncs for the disk, come half as often.
}

const (
	defaultMemTableSize  = 32 << 20
	minMemTableSize      = 8 << 20
	defaultNumMemtables  = 3
	defaultSweepInterval = time.Minute
	valueThreshold       = 1 << 20
	valueLogFileSize     = 64 << 20
	// numL0Tables is how many level-0 tables (flushed memtables) wait
	// before badger compacts them into level 1, and numL0TablesStall how
	// many stop its writes. Badger's defaults are 5 and 15; 10 defers the
	// compaction, which rewrites every body again and competes with the
	// group commit's syncs for the disk, to every tenth memtable flush,
	// so a burst of up to ten memtables of messages (about 78,000 sealed
	// 1 KiB sends at the default size) meets none (docs/performance.md
	// §Relay), and 30 keeps a compaction that falls behind from stopping
	// writes.
	numL0Tables      = 10
	numL0TablesStall = 30
	// maxBatch bounds the requests of one batch.
	maxBatch = 8192
	// queueSize is the capacity of the writer's queue.
	queueSize = 8192
	// discardLag is how far the discard timestamp trails the durable one.
	discardLag = 10 * time.Second
)

// Store is a badger-backed mailbox.Store.
type Store struct {
	dir    string
	opts   Options
	limits mailbox.Limits
	now    func() time.Time
	logger *slog.Logger
	faults *faultfs.Injector
	n      mailbox.Notifier

	// mu guards db, closed and down. Readers hold it for reading while
	// they use db; the writer and recovery take it for writing to change
	// them.
	mu     sync.RWMutex
	db     *badger.DB
	closed bool
	down   error // non-nil while the store recovers from a failed batch

	// readTs is the commit timestamp of the latest durable batch.
	readTs atomic.Uint64

	// Writer state, owned by the writer goroutine (and by recovery while
	// down).
	ts       uint64 // last committed timestamp
	syncer   *badgerutil.Syncer
	softSize int64 // soft bound of a batch's estimated size
	softN    int64 // and of its entry count
	discard  discardClock
	// inflight is the committed batch whose sync runs; its result comes
	// on syncDone.
	inflight *pending
	syncDone chan error
	syncReq  chan struct{} // asks syncLoop for a sync; closed by writeLoop
	batchID  uint64        // counts runTxn calls (box scratch)
	wheel    *wheel        // deduplication entries by time (index.go)

	// boxes is the mailbox index (index.go): the writer owns the boxes
	// and changes the map under pubMu; readers read it and the boxes'
	// published states under pubMu.RLock.
	pubMu sync.RWMutex
	boxes map[mailbox.ID]*box

	reqs     chan *request
	senders  sync.WaitGroup // callers between their closed check and their send
	stop     chan struct{}
	stopOnce sync.Once
	bg       sync.WaitGroup // writer, sweeper, recovery, watermark goroutines
	markc    chan struct{}  // asks the watermark goroutine to write

	// beforeSync, if set (tests), sees the requests of each committed
	// batch on the writer goroutine before their sync is requested.
	beforeSync func(reqs []*request)
}

var _ mailbox.BatchStore = (*Store)(nil)

// Open opens (or creates) the store in opts.Dir: it replays badger's
// logs, makes them durable, rolls back a batch that was written but
// never acknowledged, checks the watermark and, unless opts.SkipVerify,
// the whole database.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("badgermailbox: no data directory")
	}
	limits, err := opts.Limits.WithDefaults()
	if err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
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
	if opts.MemTableSize < minMemTableSize {
		return nil, fmt.Errorf("badgermailbox: memtable size %d below %d", opts.MemTableSize, minMemTableSize)
	}
	if opts.NumMemtables == 0 {
		opts.NumMemtables = defaultNumMemtables
	}
	if opts.NumMemtables < 2 {
		return nil, fmt.Errorf("badgermailbox: %d memtables, need at least 2", opts.NumMemtables)
	}
	if opts.DiskReserve == 0 {
		opts.DiskReserve = 4*opts.MemTableSize + 64<<20
	}
	if opts.SweepInterval == 0 {
		opts.SweepInterval = defaultSweepInterval
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("badgermailbox: %w", err)
	}
	s := &Store{
		dir:      opts.Dir,
		opts:     opts,
		limits:   limits,
		now:      opts.Now,
		logger:   opts.Logger,
		faults:   opts.Faults,
		reqs:     make(chan *request, queueSize),
		stop:     make(chan struct{}),
		markc:    make(chan struct{}, 1),
		syncDone: make(chan error, 1),
		syncReq:  make(chan struct{}, 1),
	}
	if err := s.openDB(ctx); err != nil {
		return nil, err
	}
	if err := s.checkBatchLimits(); err != nil {
		s.db.Close()
		return nil, err
	}
	if !opts.SkipVerify {
		if err := s.verify(ctx); err != nil {
			s.db.Close()
			return nil, err
		}
	}
	if err := s.buildIndex(ctx); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("badgermailbox: building the mailbox index: %w", err)
	}
	s.bg.Add(3)
	go s.writeLoop()
	go s.syncLoop()
	go s.watermarkLoop()
	if opts.SweepInterval > 0 {
		s.bg.Add(1)
		go s.sweepLoop(opts.SweepInterval)
	}
	return s, nil
}

// badgerOptions returns the badger options of the store.
func (s *Store) badgerOptions() badger.Options {
	return badger.DefaultOptions(s.dir).
		WithLogger(badgerutil.NewLogger(s.logger, s.opts.LogLevel, "badgermailbox")).
		WithSyncWrites(false).
		WithMemTableSize(s.opts.MemTableSize).
		WithNumMemtables(s.opts.NumMemtables).
		WithValueThreshold(valueThreshold).
		WithValueLogFileSize(valueLogFileSize).
		WithChecksumVerificationMode(options.OnBlockRead).
		WithVerifyValueChecksum(true).
		WithCompression(options.None).
		WithBlockCacheSize(0).
		WithIndexCacheSize(0).
		WithDetectConflicts(false).
		WithNumVersionsToKeep(1).
		WithNumLevelZeroTables(numL0Tables).
		WithNumLevelZeroTablesStall(numL0TablesStall).
		WithNumCompactors(2).
		WithMetricsEnabled(false)
}

// checkBatchLimits sets the soft batch bounds and checks that the largest
// single request fits a badger transaction with room to spare.
func (s *Store) checkBatchLimits() error {
	maxSize, maxN := s.db.MaxBatchSize(), s.db.MaxBatchCount()
	s.softSize, s.softN = maxSize/2, maxN/2
	// The largest request: an enqueue at a full mailbox that first
	// deletes every expired message, or an ack of a full mailbox, which
	// writes an acknowledged record for each message (the sweep stops
	// taking mailboxes at the soft bound, and one mailbox's expiry is the
	// enqueue case); with its "Q" and "t".
	worstN := int64(s.limits.MaxMessages) + 8
	worstSize := max(int64(s.limits.MaxMessages)*estimate(msgKeySize, 0)+estimate(msgKeySize, heldOverhead+s.limits.MaxBodySize),
		int64(s.limits.MaxMessages)*estimate(msgKeySize, ackedValSize)) + estimate(metaKeySize, metaValSize) + estimate(1, commitValSize)
	if worstN > maxN-s.softN || worstSize > maxSize-s.softSize {
		return fmt.Errorf("badgermailbox: a memtable of %d bytes is too small for %d messages a mailbox", s.opts.MemTableSize, s.limits.MaxMessages)
	}
	return nil
}

// estimate is badger's accounting of an entry against its transaction
// limit (Txn.checkSize) for a value kept in the LSM tree.
func estimate(key, val int) int64 { return int64(key + val + 2 + 8 + 2) }

// Close implements mailbox.Store: it lets queued requests finish, stops
// the background goroutines, writes the watermark and closes badger.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.senders.Wait() // no request is being sent any more
	s.stopOnce.Do(func() { close(s.stop) })
	s.bg.Wait()
	s.n.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db == nil {
		return nil
	}
	var err error
	if s.down == nil {
		err = s.writeWatermark(s.readTs.Load())
	}
	if cerr := s.db.Close(); cerr != nil && err == nil {
		err = cerr
	}
	s.db = nil
	if err != nil {
		return fmt.Errorf("badgermailbox: close: %w", err)
	}
	return nil
}

// view runs fn in a read transaction at the latest durable timestamp.
func (s *Store) view(fn func(txn *badger.Txn) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return mailbox.ErrClosed
	}
	if s.down != nil {
		return fmt.Errorf("badgermailbox: %w: %v", mailbox.ErrUnavailable, s.down)
	}
	txn := s.db.NewTransactionAt(s.readTs.Load(), false)
	defer txn.Discard()
	return fn(txn)
}

// Fetch implements mailbox.Store.
func (s *Store) Fetch(ctx context.Context, mb mailbox.ID, after uint64, limit int) (mailbox.Page, error) {
	if err := ctx.Err(); err != nil {
		return mailbox.Page{}, err
	}
	if err := mailbox.CheckFetch(limit); err != nil {
		return mailbox.Page{}, err
	}
	nowMs := s.now().UnixMilli()
	var p mailbox.Page
	err := s.view(func(txn *badger.Txn) error {
		// The published head is read after the snapshot opened: it is at
		// least every sequence number the snapshot holds.
		st, err := s.published(txn, mb)
		if err != nil {
			return err
		}
		p.Head, p.Acked = st.Head, st.Acked
		// Nothing at or below the floor is served: it is acknowledged
		// (a floor published after the snapshot opened may cover
		// messages the snapshot still holds).
		from := max(after, p.Acked)
		if from == ^uint64(0) {
			return nil
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: msgPrefix(mb)})
		defer it.Close()
		size := 0
		for it.Seek(msgKey(mb, from+1)); it.Valid() && len(p.Messages) < limit && size < mailbox.FetchBytes; it.Next() {
			item := it.Item()
			_, seq, err := parseMsgKey(item.Key())
			if err != nil {
				return err
			}
			if seq > p.Head || seq <= from {
				return fmt.Errorf("%w: mailbox %v: message %d outside (%d, head %d]", mailbox.ErrCorrupt, mb, seq, from, p.Head)
			}
			var st mailbox.Stored
			if err := item.Value(func(v []byte) error {
				r, err := decodeRecord(item.Key(), v)
				if err != nil || r.kind != kindHeld || r.expiresMs <= nowMs {
					return err
				}
				st = mailbox.Stored{Seq: seq, Message: mailbox.Message{ID: r.id, Expires: time.UnixMilli(r.expiresMs), Body: append([]byte(nil), r.body...)}}
				return nil
			}); err != nil {
				return wrapRead(err)
			}
			if st.Seq == 0 {
				continue // acknowledged or expired
			}
			p.Messages = append(p.Messages, st)
			size += len(st.Body)
		}
		return nil
	})
	if err != nil {
		return mailbox.Page{}, fmt.Errorf("badgermailbox: fetch %v: %w", mb, err)
	}
	return p, nil
}

// Status implements mailbox.Store.
func (s *Store) Status(ctx context.Context, mb mailbox.ID) (mailbox.Status, error) {
	if err := ctx.Err(); err != nil {
		return mailbox.Status{}, err
	}
	var st mailbox.Status
	err := s.view(func(txn *badger.Txn) error {
		var err error
		st, err = s.published(txn, mb)
		return err
	})
	if err != nil {
		return mailbox.Status{}, fmt.Errorf("badgermailbox: status %v: %w", mb, err)
	}
	return st, nil
}

// Subscribe implements mailbox.Store.
func (s *Store) Subscribe(mb mailbox.ID) *mailbox.Subscription { return s.n.Subscribe(mb) }

// wrapRead marks errors of badger reads: anything but "not found" means
// the bytes cannot be trusted.
func wrapRead(err error) error {
	if err == nil || errors.Is(err, mailbox.ErrCorrupt) || errors.Is(err, badger.ErrKeyNotFound) ||
		errors.Is(err, mailbox.ErrClosed) || errors.Is(err, mailbox.ErrUnavailable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: %w", mailbox.ErrCorrupt, err)
}

// sweepLoop sweeps every interval.
func (s *Store) sweepLoop(every time.Duration) {
	defer s.bg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if _, err := s.Sweep(context.Background()); err != nil && !errors.Is(err, mailbox.ErrClosed) {
				s.logger.Warn("badgermailbox: sweep failed", "err", err)
			}
		}
	}
}

// discardClock makes the discard timestamp trail the durable one by
// discardLag, so that a read that started before a batch still finds the
// versions it reads.
type discardClock struct {
	samples []tsAt
}

type tsAt struct {
	at time.Time
	ts uint64
}

// advance records ts at time now and returns the timestamp to discard up
// to (0: none yet).
func (d *discardClock) advance(now time.Time, ts uint64) uint64 {
	if n := len(d.samples); n == 0 || now.Sub(d.samples[n-1].at) >= time.Second {
		d.samples = append(d.samples, tsAt{now, ts})
	}
	var out uint64
	i := 0
	for i < len(d.samples) && now.Sub(d.samples[i].at) >= discardLag {
		out = d.samples[i].ts
		i++
	}
	if i > 0 {
		d.samples = append(d.samples[:0], d.samples[i-1:]...)
	}
	return out
}
