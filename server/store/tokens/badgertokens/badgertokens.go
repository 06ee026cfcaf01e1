// Package badgertokens is the relay's durable delivery-token state: the
// registered MAC-token verifiers of each mailbox
// (deliverytoken.VerifierStore) and the redeemed anonymous tokens
// (deliverytoken.SpentStore), in one badger/v4 database in one data
// directory (docs/spec/relay-storage.md §Delivery-token state). The key
// schema is in schema.go.
//
// Writes use group commit: the Add, Remove and Spend calls that arrive
// while a batch is being written wait, and the next leader runs all of
// them (up to maxBatch) in one badger transaction made durable by one
// sync (internal/badgerutil.Syncer); each call returns only after that
// sync, so a registered verifier survives a restart and a spent token
// stays spent across crashes. A call that fails (a double spend, a full
// mailbox) has written nothing and does not affect the others of its
// batch; a failed commit or sync fails every call of the batch. Forget
// runs alone.
//
// Disk full (T38): Add and Spend fail with ErrUnavailable before they
// write anything when free space is below Options.DiskReserve; a write
// refused by the file system fails its whole batch, and nothing of it is
// stored. A batch whose commit or sync failed may still be in badger: its
// calls were not acknowledged, a verifier Add or Remove is retried
// idempotently, and a token whose Spend failed stays spent (refused
// rather than risk accepting it twice).
package badgertokens

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/internal/badgerutil"
	"github.com/moat-im/moat/internal/faultfs"
	"github.com/moat-im/moat/internal/vfs"
)

var (
	// ErrClosed is returned by calls on a closed Store.
	ErrClosed = errors.New("badgertokens: store closed")
	// ErrUnavailable wraps a failed commit or sync: nothing the call
	// reported is known to be durable, and a Spend that returns it must
	// refuse its token.
	ErrUnavailable = errors.New("badgertokens: store unavailable")
	// ErrCorrupt is returned for a record that fails its check.
	ErrCorrupt = errors.New("badgertokens: corrupt record")
)

// Options configures a Store. Only Dir is required.
type Options struct {
	// Dir is the data directory; it is created if missing.
	Dir string
	// Logger receives badger's warnings. Default slog.Default().
	Logger *slog.Logger
	// MemTableSize is badger's memtable size. Default 16 MiB.
	MemTableSize int64
	// DiskReserve is the free space, in bytes, below which Add and Spend
	// fail with ErrUnavailable before they write (Remove and Forget,
	// which free space, still run): badger writes through memory-mapped
	// files, and a write to a truly full disk can crash the process.
	// Default 4 × MemTableSize + 64 MiB; negative disables.
	DiskReserve int64
	// Faults injects write, sync and free-space faults (tests, T38). Nil
	// in production.
	Faults *faultfs.Injector
}

// Store is a badger-backed deliverytoken.VerifierStore and
// deliverytoken.SpentStore, safe for concurrent use.
type Store struct {
	db      *badger.DB
	dir     string
	reserve int64
	faults  *faultfs.Injector

	batchMu sync.Mutex // held while a batch, Forget or Close runs; guards syncer
	syncer  *badgerutil.Syncer
	syncs   atomic.Int64 // batches made durable, for the benchmarks

	mu      sync.Mutex // guards closed, queue and leading
	closed  bool
	queue   []*writeOp
	leading bool // a caller is running batches
}

// writeOp is one call waiting for its batch.
type writeOp struct {
	f     func(txn *badger.Txn) error
	grows bool // subject to the disk reserve
	err   error
	done  bool          // err is final (set before wake)
	wake  chan struct{} // done, or lead the next batch
}

// maxBatch bounds the calls of one transaction.
const maxBatch = 1024

var (
	_ deliverytoken.VerifierStore = (*Store)(nil)
	_ deliverytoken.SpentStore    = (*Store)(nil)
)

// Open opens or creates the store in opts.Dir.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("badgertokens: no data directory")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MemTableSize == 0 {
		opts.MemTableSize = 16 << 20
	}
	if opts.DiskReserve == 0 {
		opts.DiskReserve = 4*opts.MemTableSize + 64<<20
	}
	bo := badgerutil.SmallStoreOptions(opts.Dir, opts.MemTableSize, opts.Logger, "badgertokens")
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("badgertokens: opening %s: %w", opts.Dir, err)
	}
	s := &Store{db: db, dir: opts.Dir, reserve: opts.DiskReserve, faults: opts.Faults, syncer: badgerutil.NewSyncer(opts.Dir)}
	if err := s.init(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) init() error {
	return s.write(false, func(txn *badger.Txn) error {
		v, found, err := get(txn, keyVersion)
		if err != nil {
			return err
		}
		if !found {
			return txn.Set(keyVersion, []byte(schemaVersion))
		}
		if string(v) != schemaVersion {
			return fmt.Errorf("badgertokens: schema version %q, want %q", v, schemaVersion)
		}
		return nil
	})
}

// write runs f in a transaction with the calls queued with it, and
// returns once that transaction is durable. f must write nothing when it
// returns an error. A call that grows the store is refused below the disk
// reserve.
func (s *Store) write(grows bool, f func(txn *badger.Txn) error) error {
	o := &writeOp{f: f, grows: grows, wake: make(chan struct{}, 1)}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.queue = append(s.queue, o)
	if s.leading {
		s.mu.Unlock()
		<-o.wake
		if o.done {
			return o.err
		}
	} else {
		s.leading = true
		s.mu.Unlock()
	}
	// o leads: it is still queued, and runs the queue's first maxBatch
	// calls, then hands over to the first call left, if any.
	for !o.done {
		s.runBatch()
	}
	s.mu.Lock()
	if len(s.queue) > 0 {
		s.queue[0].wake <- struct{}{}
	} else {
		s.leading = false
	}
	s.mu.Unlock()
	return o.err
}

// runBatch runs up to maxBatch queued calls in one transaction, syncs,
// and wakes each of them but the leader.
func (s *Store) runBatch() {
	s.batchMu.Lock()
	defer s.batchMu.Unlock()
	s.mu.Lock()
	n := min(len(s.queue), maxBatch)
	batch := s.queue[:n:n]
	s.queue = s.queue[n:]
	closed := s.closed
	s.mu.Unlock()
	finish := func(err error) {
		for _, o := range batch {
			if err != nil && o.err == nil {
				o.err = err
			}
			o.done = true
			select {
			case o.wake <- struct{}{}:
			default:
			}
		}
	}
	if closed {
		finish(ErrClosed)
		return
	}
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	wrote := false
	spaceErr := s.checkSpace(batch)
	for _, o := range batch {
		if o.grows && spaceErr != nil {
			o.err = spaceErr
			continue
		}
		if o.err = o.f(txn); o.err == nil {
			wrote = true
		} else if errors.Is(o.err, badger.ErrTxnTooBig) {
			o.err = fmt.Errorf("%w: %v", ErrUnavailable, o.err)
		}
	}
	if !wrote {
		finish(nil)
		return
	}
	// An injected write fault refuses the batch before badger sees it
	// (the transaction is discarded).
	if _, err := s.faults.Write(len(batch) * approxOpSize); err != nil {
		finish(fmt.Errorf("%w: writing a batch: %v", ErrUnavailable, err))
		return
	}
	if err := txn.Commit(); err != nil {
		finish(fmt.Errorf("%w: commit: %v", ErrUnavailable, err))
		return
	}
	if err := s.sync(); err != nil {
		finish(fmt.Errorf("%w: %v", ErrUnavailable, err))
		return
	}
	s.syncs.Add(1)
	finish(nil)
}

// approxOpSize is about what one call adds to badger's log: a 65-byte key,
// a 1-byte value and the entry's header.
const approxOpSize = 96

// sync makes every badger write so far durable.
func (s *Store) sync() error {
	if err := s.faults.Sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return s.syncer.Sync(s.db)
}

// checkSpace returns ErrUnavailable if batch holds a call that grows the
// store and free space is below the reserve.
func (s *Store) checkSpace(batch []*writeOp) error {
	if s.reserve < 0 || !slices.ContainsFunc(batch, func(o *writeOp) bool { return o.grows }) {
		return nil
	}
	free, err := s.faults.Free(func() (uint64, error) { return vfs.Free(s.dir) })
	if err != nil {
		return fmt.Errorf("%w: free space: %v", ErrUnavailable, err)
	}
	if free < uint64(s.reserve) {
		return fmt.Errorf("%w: %d bytes free, below the reserve of %d", ErrUnavailable, free, s.reserve)
	}
	return nil
}

// get reads key's value; found is false if there is none.
func get(txn *badger.Txn, key []byte) (v []byte, found bool, err error) {
	it, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	v, err = it.ValueCopy(nil)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return v, true, nil
}

// present reports whether key holds a marker record.
func present(txn *badger.Txn, key []byte) (bool, error) {
	v, found, err := get(txn, key)
	if err != nil || !found {
		return false, err
	}
	if string(v) != marker {
		return false, fmt.Errorf("%w: key %x", ErrCorrupt, key)
	}
	return true, nil
}

// Add registers v for mailbox, durably. Registering a verifier twice is
// not an error; a mailbox holds at most deliverytoken.MaxVerifiers
// (deliverytoken.ErrTooManyVerifiers).
func (s *Store) Add(mailbox sealed.MailboxID, v deliverytoken.Verifier) error {
	return s.write(true, func(txn *badger.Txn) error {
		key := verifierKey(mailbox, v)
		ok, err := present(txn, key)
		if err != nil || ok {
			return err
		}
		if n := countPrefix(txn, verifierPrefix(mailbox), deliverytoken.MaxVerifiers); n >= deliverytoken.MaxVerifiers {
			return deliverytoken.ErrTooManyVerifiers
		}
		return txn.Set(key, []byte(marker))
	})
}

// countPrefix counts the keys under prefix, stopping at limit.
func countPrefix(txn *badger.Txn, prefix []byte, limit int) int {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	n := 0
	for it.Rewind(); it.Valid() && n < limit; it.Next() {
		n++
	}
	return n
}

// Remove deletes v from mailbox, durably: the contact's token stops
// working. Removing an absent verifier is not an error.
func (s *Store) Remove(mailbox sealed.MailboxID, v deliverytoken.Verifier) error {
	return s.write(false, func(txn *badger.Txn) error {
		return txn.Delete(verifierKey(mailbox, v))
	})
}

// HasVerifier implements deliverytoken.VerifierStore.
func (s *Store) HasVerifier(mailbox sealed.MailboxID, v deliverytoken.Verifier) (bool, error) {
	var ok bool
	err := s.view(func(txn *badger.Txn) (err error) {
		ok, err = present(txn, verifierKey(mailbox, v))
		return err
	})
	return ok, err
}

// HasVerifiers implements deliverytoken.VerifierBatchStore: every query
// in one read transaction.
func (s *Store) HasVerifiers(qs []deliverytoken.VerifierQuery, found []bool) error {
	return s.view(func(txn *badger.Txn) error {
		for i, q := range qs {
			ok, err := present(txn, verifierKey(q.Mailbox, q.Verifier))
			if err != nil {
				return err
			}
			found[i] = ok
		}
		return nil
	})
}

// Spend implements deliverytoken.SpentStore: the spend is durable before
// it returns nil.
func (s *Store) Spend(keyID, nonce [32]byte) error {
	return s.write(true, func(txn *badger.Txn) error {
		key := spentKey(keyID, nonce)
		ok, err := present(txn, key)
		if err != nil {
			return err
		}
		if ok {
			return deliverytoken.ErrDoubleSpend
		}
		return txn.Set(key, []byte(marker))
	})
}

// Forget drops the spent nonces of a retired issuer key, once the relay
// refuses that key's tokens.
func (s *Store) Forget(keyID [32]byte) error {
	s.batchMu.Lock()
	defer s.batchMu.Unlock()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if err := s.db.DropPrefix(spentPrefix(keyID)); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if err := s.sync(); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

func (s *Store) view(f func(txn *badger.Txn) error) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return s.db.View(f)
}

// Close closes the database. Calls after Close return ErrClosed.
func (s *Store) Close() error {
	s.batchMu.Lock()
	defer s.batchMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	return s.db.Close()
}
