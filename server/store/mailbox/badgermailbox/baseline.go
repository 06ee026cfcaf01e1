package badgermailbox

import (
	"log/slog"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
)

// BaselineOptions returns the badger options Open gives a database in dir
// under default Options, for measuring raw badger group commit as the
// baseline of this store and of the relay (docs/performance.md §Relay,
// cmd/moat-load). The store itself also runs badger in managed mode.
func BaselineOptions(dir string, logger *slog.Logger) badger.Options {
	if logger == nil {
		logger = slog.Default()
	}
	s := &Store{dir: dir, logger: logger, opts: Options{
		MemTableSize: defaultMemTableSize, NumMemtables: defaultNumMemtables, LogLevel: slog.LevelWarn,
	}}
	return s.badgerOptions()
}

// BaselineWriter is raw badger group commit, the baseline's writer:
// callers of Put queue key/value pairs, and one goroutine commits each
// drained batch (at most as many as the store's writer takes) in one
// transaction, calls db.Sync once and then answers every Put of it.
type BaselineWriter struct {
	db      *badger.DB
	reqs    chan *baselineReq
	batches atomic.Int64
}

type baselineReq struct {
	key, val []byte
	done     chan error
}

// NewBaselineWriter starts a writer on db; Close stops it.
func NewBaselineWriter(db *badger.DB) *BaselineWriter {
	w := &BaselineWriter{db: db, reqs: make(chan *baselineReq, queueSize)}
	go w.run()
	return w
}

// Put writes val under key and returns once it is synced.
func (w *BaselineWriter) Put(key, val []byte) error {
	r := &baselineReq{key: key, val: val, done: make(chan error, 1)}
	w.reqs <- r
	return <-r.done
}

// Batches returns the number of batches committed so far.
func (w *BaselineWriter) Batches() int64 { return w.batches.Load() }

// Close stops the writer; no Put may follow or be under way.
func (w *BaselineWriter) Close() { close(w.reqs) }

func (w *BaselineWriter) run() {
	var batch []*baselineReq
	for r := range w.reqs {
		batch = append(batch[:0], r)
	drain:
		for len(batch) < maxBatch {
			select {
			case r := <-w.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		txn := w.db.NewTransaction(true)
		var err error
		for _, r := range batch {
			if err = txn.Set(r.key, r.val); err != nil {
				break
			}
		}
		if err == nil {
			err = txn.Commit()
		} else {
			txn.Discard()
		}
		if err == nil {
			err = w.db.Sync()
		}
		w.batches.Add(1)
		for _, r := range batch {
			r.done <- err
		}
	}
}
