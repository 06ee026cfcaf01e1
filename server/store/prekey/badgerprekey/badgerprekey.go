// Package badgerprekey is the embedded prekey.Store: one badger/v4
// database in one data directory. The key schema is in schema.go.
//
// Writes are serialised by one mutex: each Put, Take and Delete is one
// badger transaction made durable by one sync (internal/badgerutil.Syncer)
// before it returns, so a Take hands an item out at most once even across
// crashes. Prekey traffic is rate-limited per device and per tenant by the
// relay, so one writer is enough here; the mailbox store, which carries
// the message traffic, has group commit.
//
// Disk full (T38): Put fails with prekey.ErrUnavailable before it writes
// when free space is below Options.DiskReserve (Take and Delete, which
// free space, still run); a write refused by the file system stores
// nothing. A write whose commit or sync failed may still be in badger: a
// Put is retried idempotently, and an item a failed Take removed is never
// handed out (a lost one-time prekey, never a reused one).
package badgerprekey

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/dgraph-io/badger/v4"
	"github.com/moat-im/moat/internal/badgerutil"
	"github.com/moat-im/moat/internal/faultfs"
	"github.com/moat-im/moat/internal/vfs"
	"github.com/moat-im/moat/server/store/prekey"
)

// Options configures a Store. Only Dir is required.
type Options struct {
	// Dir is the data directory; it is created if missing.
	Dir string
	// MaxPool bounds each pool of a device. Default prekey.DefaultMaxPool.
	MaxPool int
	// Logger receives badger's warnings. Default slog.Default().
	Logger *slog.Logger
	// MemTableSize is badger's memtable size. Default 16 MiB.
	MemTableSize int64
	// DiskReserve is the free space, in bytes, below which Put fails with
	// prekey.ErrUnavailable before it writes: badger writes through
	// memory-mapped files, and a write to a truly full disk can crash the
	// process. Default 4 × MemTableSize + 64 MiB; negative disables.
	DiskReserve int64
	// Faults injects write, sync and free-space faults (tests, T38). Nil
	// in production.
	Faults *faultfs.Injector
}

// Store is a badger-backed prekey.Store.
type Store struct {
	db      *badger.DB
	maxPool int
	dir     string
	reserve int64
	faults  *faultfs.Injector

	mu     sync.Mutex // serialises writes and guards syncer and closed
	syncer *badgerutil.Syncer
	closed bool
}

// Open opens or creates the store in opts.Dir.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("badgerprekey: no data directory")
	}
	if opts.MaxPool <= 0 {
		opts.MaxPool = prekey.DefaultMaxPool
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
	bo := badgerutil.SmallStoreOptions(opts.Dir, opts.MemTableSize, opts.Logger, "badgerprekey")
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("badgerprekey: opening %s: %w", opts.Dir, err)
	}
	s := &Store{db: db, maxPool: opts.MaxPool, dir: opts.Dir, reserve: opts.DiskReserve, faults: opts.Faults,
		syncer: badgerutil.NewSyncer(opts.Dir)}
	if err := s.init(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) init() error {
	return s.write(false, func(txn *badger.Txn) error {
		it, err := txn.Get(keyVersion)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return txn.Set(keyVersion, seal(keyVersion, []byte(schemaVersion)))
		}
		if err != nil {
			return err
		}
		v, err := it.ValueCopy(nil)
		if err != nil {
			return err
		}
		body, ok := open(keyVersion, v)
		if !ok {
			return fmt.Errorf("%w: schema version record", prekey.ErrCorrupt)
		}
		if string(body) != schemaVersion {
			return fmt.Errorf("badgerprekey: schema version %q, want %q", body, schemaVersion)
		}
		return nil
	})
}

// write runs f in one transaction and makes it durable. s.mu is taken.
// A write that grows the store is refused below the disk reserve.
func (s *Store) write(grows bool, f func(txn *badger.Txn) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return prekey.ErrClosed
	}
	if grows && s.reserve >= 0 {
		free, err := s.faults.Free(func() (uint64, error) { return vfs.Free(s.dir) })
		if err != nil {
			return fmt.Errorf("%w: free space: %v", prekey.ErrUnavailable, err)
		}
		if free < uint64(s.reserve) {
			return fmt.Errorf("%w: %d bytes free, below the reserve of %d", prekey.ErrUnavailable, free, s.reserve)
		}
	}
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	if err := f(txn); err != nil {
		return err
	}
	// An injected write fault refuses the transaction before badger
	// sees it. (Badger does not tell a transaction's size; the injector
	// is told of one write of about a prekey upload's.)
	if _, err := s.faults.Write(4 << 10); err != nil {
		return fmt.Errorf("%w: writing: %v", prekey.ErrUnavailable, err)
	}
	if err := txn.Commit(); err != nil {
		return fmt.Errorf("%w: commit: %v", prekey.ErrUnavailable, err)
	}
	if err := s.faults.Sync(); err != nil {
		return fmt.Errorf("%w: sync: %v", prekey.ErrUnavailable, err)
	}
	if err := s.syncer.Sync(s.db); err != nil {
		return fmt.Errorf("%w: %v", prekey.ErrUnavailable, err)
	}
	return nil
}

func readValue(txn *badger.Txn, key []byte) ([]byte, bool, error) {
	it, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	v, err := it.ValueCopy(nil)
	if err != nil {
		return nil, false, err
	}
	body, ok := open(key, v)
	if !ok {
		return nil, false, fmt.Errorf("%w: record %x", prekey.ErrCorrupt, key)
	}
	return body, true, nil
}

// poolIDs returns the ids held in a pool, in increasing order.
func poolIDs(txn *badger.Txn, dev prekey.ID, kind prekey.Kind) [][]byte {
	prefix := devKey(prefixPool, dev, kind)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	var keys [][]byte
	for it.Rewind(); it.Valid(); it.Next() {
		keys = append(keys, it.Item().KeyCopy(nil))
	}
	return keys
}

func exhausted(txn *badger.Txn, dev prekey.ID, kind prekey.Kind) (uint64, error) {
	b, ok, err := readValue(txn, devKey(prefixExhausted, dev, kind))
	if err != nil || !ok {
		return 0, err
	}
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: exhausted count", prekey.ErrCorrupt)
	}
	return binary.BigEndian.Uint64(b), nil
}

// Put implements prekey.Store.
func (s *Store) Put(ctx context.Context, dev prekey.ID, items []prekey.Item) error {
	if err := prekey.CheckPut(items); err != nil {
		return err
	}
	return s.write(true, func(txn *badger.Txn) error {
		added := map[prekey.Kind]map[uint32]bool{}
		for _, it := range items {
			if !it.Kind.Pool() {
				continue
			}
			if added[it.Kind] == nil {
				added[it.Kind] = map[uint32]bool{}
			}
			added[it.Kind][it.ID] = true
		}
		for k, ids := range added {
			have := poolIDs(txn, dev, k)
			n := len(have)
			for id := range ids {
				if !containsKey(have, poolKey(dev, k, id)) {
					n++
				}
			}
			if n > s.maxPool {
				return fmt.Errorf("%w: kind %d", prekey.ErrQuota, k)
			}
		}
		for _, it := range items {
			if it.Kind.Singleton() {
				key := devKey(prefixSingle, dev, it.Kind)
				body := binary.BigEndian.AppendUint32(nil, it.ID)
				if err := txn.Set(key, seal(key, append(body, it.Record...))); err != nil {
					return err
				}
				continue
			}
			key := poolKey(dev, it.Kind, it.ID)
			if err := txn.Set(key, seal(key, it.Record)); err != nil {
				return err
			}
		}
		for k := range added {
			if err := txn.Delete(devKey(prefixExhausted, dev, k)); err != nil {
				return err
			}
		}
		return nil
	})
}

func containsKey(keys [][]byte, k []byte) bool {
	for _, x := range keys {
		if bytes.Equal(x, k) {
			return true
		}
	}
	return false
}

// Take implements prekey.Store.
func (s *Store) Take(ctx context.Context, dev prekey.ID, get, take []prekey.Kind) ([]prekey.Item, error) {
	if err := prekey.CheckTake(get, take); err != nil {
		return nil, err
	}
	var out []prekey.Item
	err := s.write(false, func(txn *badger.Txn) error {
		out = out[:0]
		for _, k := range get {
			b, ok, err := readValue(txn, devKey(prefixSingle, dev, k))
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			if len(b) < 5 {
				return fmt.Errorf("%w: singleton record", prekey.ErrCorrupt)
			}
			out = append(out, prekey.Item{Kind: k, ID: binary.BigEndian.Uint32(b), Record: b[4:]})
		}
		for _, k := range take {
			prefix := devKey(prefixPool, dev, k)
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			it.Rewind()
			var key []byte
			if it.Valid() {
				key = it.Item().KeyCopy(nil)
			}
			it.Close()
			if key == nil {
				n, err := exhausted(txn, dev, k)
				if err != nil {
					return err
				}
				ek := devKey(prefixExhausted, dev, k)
				if err := txn.Set(ek, seal(ek, binary.BigEndian.AppendUint64(nil, n+1))); err != nil {
					return err
				}
				continue
			}
			b, ok, err := readValue(txn, key)
			if err != nil || !ok {
				return fmt.Errorf("%w: pool item %x: %v", prekey.ErrCorrupt, key, err)
			}
			out = append(out, prekey.Item{Kind: k, ID: binary.BigEndian.Uint32(key[len(key)-4:]), Record: b})
			if err := txn.Delete(key); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Status implements prekey.Store.
func (s *Store) Status(ctx context.Context, dev prekey.ID) (prekey.Status, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return prekey.Status{}, prekey.ErrClosed
	}
	st := prekey.NewStatus()
	err := s.db.View(func(txn *badger.Txn) error {
		for _, k := range prekey.Kinds {
			if k.Singleton() {
				if _, ok, err := readValue(txn, devKey(prefixSingle, dev, k)); err != nil {
					return err
				} else if ok {
					st.Has[k] = true
				}
				continue
			}
			if n := len(poolIDs(txn, dev, k)); n > 0 {
				st.Pools[k] = n
			}
			n, err := exhausted(txn, dev, k)
			if err != nil {
				return err
			}
			if n > 0 {
				st.Exhausted[k] = n
			}
		}
		return nil
	})
	return st, err
}

// Delete implements prekey.Store.
func (s *Store) Delete(ctx context.Context, dev prekey.ID) error {
	return s.write(false, func(txn *badger.Txn) error {
		for _, p := range []byte{prefixSingle, prefixPool, prefixExhausted} {
			if err := badgerutil.DeletePrefix(txn, append([]byte{p}, dev[:]...)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Close implements prekey.Store.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.db.Close()
}
