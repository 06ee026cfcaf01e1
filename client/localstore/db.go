package localstore

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/crypto/argon2"

	"github.com/moat-im/moat/internal/atomicfile"
	"github.com/moat-im/moat/internal/badgerutil"
	"github.com/moat-im/moat/internal/faultfs"
)

// File names inside a store's directory (docs/spec/client-store.md §Files).
const (
	keyTableName = "keys"
	recordsName  = "records"
)

// Options configure Open.
type Options struct {
	// Passphrase protects the key table through Argon2id. Exactly one of
	// Passphrase and KeyFile is set.
	Passphrase []byte
	// KeyFile names a file of 32 random bytes that protects the key
	// table (see CreateKeyFile).
	KeyFile string
	// Argon2 are the Argon2id parameters of a new passphrase-protected
	// store; zero means DefaultArgon2. An existing store uses those in its
	// header. Lower parameters are for tests.
	Argon2 Argon2Params
	// MemTableSize is badger's memtable size; it bounds how much one
	// Update may write (zero: 64 MiB).
	MemTableSize int64
	// Logger receives badger's warnings (nil: slog.Default()).
	Logger *slog.Logger
	// Faults injects write and sync faults into key-table I/O (tests).
	Faults *faultfs.Injector

	// hook, if set, is called at the named points of Update; an error
	// aborts it there as a crash would (tests).
	hook func(point string) error
}

// DB is a sealed local store in a directory: a key table (file "keys")
// and the sealed records (badger, directory "records"). It implements
// Store and is safe for concurrent use; fn of Update and View must not
// call Update or View of the same DB.
type DB struct {
	dir    string
	logger *slog.Logger
	hook   func(string) error

	wmu    sync.Mutex   // serialises Update, Close and Wipe
	viewMu sync.RWMutex // held shared by View, exclusively while keys are erased

	db       *badger.DB
	syncer   *badgerutil.Syncer
	kt       *keyTable
	index    indexKey // HMAC key of scope and kind tags
	closed   bool
	failed   error // an I/O failure after which writes are refused
	recovery int   // slots erased by recovery at Open
	garbage  bool  // records of deleted scope generations remain
}

var _ Store = (*DB)(nil)

// CreateKeyFile writes 32 random bytes to a new file (mode 0600) for
// Options.KeyFile. It fails if the file exists.
func CreateKeyFile(path string) error {
	var k [keySize]byte
	if _, err := rand.Read(k[:]); err != nil {
		return err
	}
	defer clear(k[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("localstore: creating key file: %w", err)
	}
	if _, err := f.Write(k[:]); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("localstore: writing key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("localstore: writing key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("localstore: writing key file: %w", err)
	}
	return atomicfile.SyncDir(filepath.Dir(path))
}

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("localstore: opening key file: %w", err)
	}
	defer f.Close()
	b := make([]byte, keySize+1)
	n, err := io.ReadFull(f, b)
	if err != io.ErrUnexpectedEOF || n != keySize {
		clear(b)
		if err == nil || err == io.ErrUnexpectedEOF || err == io.EOF {
			return nil, fmt.Errorf("%w: key file is not %d bytes", ErrWrongKey, keySize)
		}
		return nil, fmt.Errorf("localstore: reading key file: %w", err)
	}
	return b[:keySize], nil
}

// deriveWrappingKey derives the key that wraps the table key
// (docs/spec/client-store.md §Key derivation).
func deriveWrappingKey(h *header, opts *Options) (*wrappingKey, error) {
	var w wrappingKey
	switch h.kdf {
	case kdfArgon2id:
		if len(opts.Passphrase) == 0 {
			return nil, fmt.Errorf("%w: the store is protected by a passphrase", ErrWrongKey)
		}
		k := argon2.IDKey(opts.Passphrase, h.salt[:], h.argon.Time, h.argon.MemoryKiB, h.argon.Threads, keySize)
		copy(w[:], k)
		clear(k)
	case kdfKeyFile:
		if opts.KeyFile == "" {
			return nil, fmt.Errorf("%w: the store is protected by a key file", ErrWrongKey)
		}
		ikm, err := readKeyFile(opts.KeyFile)
		if err != nil {
			return nil, err
		}
		k, err := hkdf.Key(sha256.New, ikm, h.salt[:], labelKeyFile, keySize)
		clear(ikm)
		if err != nil {
			return nil, err
		}
		copy(w[:], k)
		clear(k)
	}
	return &w, nil
}

// Open opens the store in dir, creating it if dir holds none.
func Open(dir string, opts Options) (*DB, error) {
	if (len(opts.Passphrase) == 0) == (opts.KeyFile == "") {
		return nil, fmt.Errorf("%w: set exactly one of Passphrase and KeyFile", ErrInvalid)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MemTableSize == 0 {
		opts.MemTableSize = 64 << 20
	}
	ktPath := filepath.Join(dir, keyTableName)
	var created *wrappingKey // spares a second Argon2id run on creation
	if _, err := os.Stat(ktPath); errors.Is(err, fs.ErrNotExist) {
		if created, err = create(dir, &opts); err != nil {
			return nil, err
		}
		defer clear(created[:])
	} else if err != nil {
		return nil, fmt.Errorf("localstore: %w", err)
	}
	f, err := os.OpenFile(ktPath, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("localstore: opening the key table: %w", err)
	}
	s, err := open(dir, f, &opts, created)
	if err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

// create writes the key table of a new store (docs/spec/client-store.md
// §Creation). It refuses a directory that holds records but no key table.
func create(dir string, opts *Options) (*wrappingKey, error) {
	if entries, err := os.ReadDir(filepath.Join(dir, recordsName)); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("%w: records without a key table", ErrCorrupt)
	}
	h := &header{state: stateClean}
	if len(opts.Passphrase) > 0 {
		h.kdf = kdfArgon2id
		h.argon = opts.Argon2
		if h.argon == (Argon2Params{}) {
			h.argon = DefaultArgon2
		}
		if err := h.argon.check(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	} else {
		h.kdf = kdfKeyFile
	}
	if _, err := rand.Read(h.salt[:]); err != nil {
		return nil, err
	}
	w, err := deriveWrappingKey(h, opts)
	if err != nil {
		return nil, err
	}
	var tk tableKey
	defer clear(tk[:])
	if _, err := rand.Read(tk[:]); err != nil {
		clear(w[:])
		return nil, err
	}
	b := h.marshal()
	copy(h.wrapped[:nonceSize], randBytes(nonceSize))
	newAEAD(w[:]).Seal(h.wrapped[:nonceSize], h.wrapped[:nonceSize], tk[:], wrapAD(b))
	b = h.marshal()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		clear(w[:])
		return nil, fmt.Errorf("localstore: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, keyTableName), b, 0o600); err != nil {
		clear(w[:])
		return nil, fmt.Errorf("localstore: creating the key table: %w", err)
	}
	return w, nil
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("localstore: " + err.Error())
	}
	return b
}

// open unlocks the key table f and opens the records. It writes nothing
// before the table key is unwrapped (docs/spec/client-store.md §Opening).
func open(dir string, f *os.File, opts *Options, created *wrappingKey) (*DB, error) {
	b := make([]byte, headerSize)
	if _, err := f.ReadAt(b, 0); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: key table header truncated", ErrCorrupt)
		}
		return nil, fmt.Errorf("localstore: reading the key table: %w", err)
	}
	h, err := parseHeader(b)
	if err != nil {
		return nil, err
	}
	w := created
	if w == nil {
		if w, err = deriveWrappingKey(h, opts); err != nil {
			return nil, err
		}
	}
	var tk tableKey
	_, err = newAEAD(w[:]).Open(tk[:0], h.wrapped[:nonceSize], h.wrapped[nonceSize:], wrapAD(b))
	clear(w[:])
	if err != nil {
		return nil, ErrWrongKey
	}
	defer clear(tk[:])
	slotKey, err := hkdf.Key(sha256.New, tk[:], nil, labelSlotKey, keySize)
	if err != nil {
		return nil, err
	}
	index, err := hkdf.Key(sha256.New, tk[:], nil, labelIndexKey, keySize)
	if err != nil {
		return nil, err
	}
	kt := &keyTable{f: f, faults: opts.Faults, hdr: h, slot: newAEAD(slotKey)}
	clear(slotKey)
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("localstore: %w", err)
	}
	recovering := h.state == stateOpen
	// Unlocked: mark the table open before anything else is written, so a
	// crash from here on is recovered at the next Open.
	if !recovering {
		if err := kt.setState(stateOpen); err != nil {
			return nil, err
		}
	}
	recDir := filepath.Join(dir, recordsName)
	// Values above badger's 1 MiB threshold go to the value log; files of
	// 16 MiB hold several of the largest (MaxValueLen) and stay small.
	bo := badgerutil.SmallStoreOptions(recDir, opts.MemTableSize, opts.Logger, "localstore").
		WithValueLogFileSize(16 << 20)
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("localstore: opening records: %w", err)
	}
	s := &DB{dir: dir, logger: opts.Logger, hook: opts.hook, db: db, syncer: badgerutil.NewSyncer(recDir), kt: kt, index: index, garbage: true}
	if recovering {
		err = s.recover(st.Size())
	} else {
		_, err = kt.scan(st.Size(), nil, false)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// recover makes a store left open by a crash consistent
// (docs/spec/client-store.md §Recovery): it syncs badger's files, then
// erases every written slot that no record holds.
func (s *DB) recover(size int64) error {
	if err := badgerutil.SyncAllFiles(filepath.Join(s.dir, recordsName)); err != nil {
		return fmt.Errorf("localstore: %w", err)
	}
	inUse := map[uint32]bool{}
	err := s.db.View(func(txn *badger.Txn) error {
		gens, err := loadGens(txn)
		if err != nil {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixRecord}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) < recordPrefixLen {
				continue // not a record key we wrote; holds no slot
			}
			if binary.BigEndian.Uint64(k[1+tagLen:]) != gens[string(k[1:1+tagLen])] {
				continue // garbage of a deleted scope generation
			}
			err := it.Item().Value(func(v []byte) error {
				r, err := parseRecordValue(v)
				if err != nil {
					return nil // unreadable record: it holds no slot we know of
				}
				inUse[r.slot] = true
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("localstore: recovery: %w", err)
	}
	n, err := s.kt.scan(size, inUse, true)
	if err != nil {
		return err
	}
	s.recovery = n
	return nil
}

// loadGens reads the generation of every scope that has one (by tag).
func loadGens(txn *badger.Txn) (map[string]uint64, error) {
	gens := map[string]uint64{}
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixScope}})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().Key()
		if len(k) != 1+tagLen {
			return nil, fmt.Errorf("%w: scope key of %d bytes", ErrCorrupt, len(k))
		}
		err := it.Item().Value(func(v []byte) error {
			g, err := parseGen(v)
			gens[string(k[1:])] = g
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return gens, nil
}

// scopeTag and kindTag name a scope and a (scope, kind) in badger keys
// without revealing them (docs/spec/client-store.md §Records).
func (s *DB) tag(scope Scope, kind *string) []byte {
	m := hmac.New(sha256.New, s.index)
	m.Write(tagInput(scope, kind))
	return m.Sum(nil)[:tagLen]
}

func (s *DB) scopeTag(scope Scope) []byte { return s.tag(scope, nil) }

func (s *DB) kindPrefix(scope Scope, gen uint64, kind string) []byte {
	return append(genPrefix(s.scopeTag(scope), gen), s.tag(scope, &kind)...)
}

// Update runs fn in a read-write transaction and makes its changes
// durable: new record keys first, then the records, then the erasure of
// the keys of records it deleted or replaced (docs/spec/client-store.md
// §Update).
func (s *DB) Update(fn func(Tx) error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.failed != nil {
		return fmt.Errorf("localstore: refusing writes after an I/O failure; reopen the store: %w", s.failed)
	}
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	tx := &tx{s: s, txn: txn, write: true, newKeys: map[uint32]*recordKey{}}
	err := fn(tx)
	tx.done = true
	defer tx.clearKeys()
	if err != nil {
		s.kt.release(tx.reserved())
		return err
	}
	// Step 1: keys before the records that need them.
	if err := s.kt.writeKeys(tx.newKeys); err != nil {
		// No record names these slots: erase and reuse them, or leave them
		// to recovery.
		if s.kt.erase(tx.reserved()) != nil {
			s.kt.leaked = true
		}
		return err
	}
	if err := s.at("keys-written"); err != nil {
		return err
	}
	// Step 2: the records, durably.
	if err := txn.Commit(); err != nil {
		s.failed = err
		return fmt.Errorf("localstore: committing: %w", err)
	}
	if err := s.syncer.Sync(s.db); err != nil {
		s.failed = err
		return fmt.Errorf("localstore: %w", err)
	}
	if err := s.at("committed"); err != nil {
		return err
	}
	// Step 3: destroy the keys of deleted and replaced records, once no
	// View can still read them.
	s.viewMu.Lock()
	err = s.kt.erase(tx.freed)
	s.viewMu.Unlock()
	if err != nil {
		s.failed = err
		return fmt.Errorf("%w: %v", ErrNotErased, err)
	}
	if tx.garbage || s.garbage {
		s.collectGarbage()
	}
	return nil
}

// garbageBatch bounds the records of deleted scope generations that one
// Update removes after it commits.
const garbageBatch = 4096

// collectGarbage removes up to garbageBatch records of deleted scope
// generations (docs/spec/client-store.md §DeleteScope). Their keys are
// already erased; removing them frees space and drops their ids. It needs
// no sync: a removal lost in a crash is redone later. Called with wmu held.
func (s *DB) collectGarbage() {
	more := false
	err := s.db.Update(func(txn *badger.Txn) error {
		var markers [][]byte
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixGarbage}})
		for it.Rewind(); it.Valid(); it.Next() {
			markers = append(markers, it.Item().KeyCopy(nil))
		}
		it.Close()
		budget := garbageBatch
		for _, m := range markers {
			if len(m) != 1+tagLen+genLen {
				return fmt.Errorf("%w: garbage key of %d bytes", ErrCorrupt, len(m))
			}
			prefix := append([]byte{prefixRecord}, m[1:]...)
			var keys [][]byte
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: false})
			for it.Rewind(); it.Valid() && len(keys) < budget; it.Next() {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
			done := !it.Valid()
			it.Close()
			for _, k := range keys {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			budget -= len(keys)
			if !done {
				more = true
				return nil
			}
			if err := txn.Delete(m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.logger.Warn("localstore: removing records of deleted scopes", "err", err)
		more = true
	}
	s.garbage = more
}

// at calls the test hook at point; an error stands for a crash there:
// the store stops writing as a crashed process would.
func (s *DB) at(point string) error {
	if s.hook == nil {
		return nil
	}
	if err := s.hook(point); err != nil {
		s.failed = err
		return err
	}
	return nil
}

// View runs fn in a read-only transaction on a snapshot.
func (s *DB) View(fn func(Tx) error) error {
	s.viewMu.RLock()
	defer s.viewMu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	tx := &tx{s: s, txn: txn}
	err := fn(tx)
	tx.done = true
	return err
}

// Close closes the store. Unless a write failed, it marks the key table
// closed, so that the next Open need not recover.
func (s *DB) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	clear(s.index)
	err := s.db.Close()
	if err == nil && s.failed == nil && !s.kt.leaked {
		if err = s.kt.shrink(); err == nil {
			err = s.kt.setState(stateClean)
		}
	}
	if cerr := s.kt.close(); err == nil {
		err = cerr
	}
	return err
}

// Wipe destroys the table key and every record key in place, then
// removes the store's files (docs/spec/client-store.md §Wipe). A key file
// named by Options.KeyFile is left alone: without the table key it opens
// nothing.
func (s *DB) Wipe() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.closed = true
	clear(s.index)
	errs := []error{s.kt.destroy()}
	if err := s.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("localstore: closing records: %w", err))
	}
	errs = append(errs, s.kt.close())
	if err := os.RemoveAll(s.dir); err != nil {
		errs = append(errs, fmt.Errorf("localstore: removing files: %w", err))
	} else if err := atomicfile.SyncDir(filepath.Dir(s.dir)); err != nil {
		errs = append(errs, fmt.Errorf("localstore: %w", err))
	}
	return errors.Join(errs...)
}

// tx is a transaction of a DB.
type tx struct {
	s         *DB
	txn       *badger.Txn
	write     bool
	done      bool
	iterating bool
	newKeys   map[uint32]*recordKey // slots reserved by this Update
	freed     []uint32              // committed slots to erase after commit
	gens      map[Scope]uint64      // scope generations read or set
	garbage   bool                  // DeleteScope made garbage
}

// gen returns the current generation of scope.
func (t *tx) gen(scope Scope) (uint64, error) {
	if g, ok := t.gens[scope]; ok {
		return g, nil
	}
	item, err := t.txn.Get(scopeMetaKey(t.s.scopeTag(scope)))
	var g uint64
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
	case err != nil:
		return 0, fmt.Errorf("localstore: %w", err)
	default:
		if err := item.Value(func(v []byte) error {
			g, err = parseGen(v)
			return err
		}); err != nil {
			return 0, err
		}
	}
	if t.gens == nil {
		t.gens = map[Scope]uint64{}
	}
	t.gens[scope] = g
	return g, nil
}

// recordKey returns the badger key of a record in its scope's current
// generation.
func (t *tx) recordKey(scope Scope, kind string, id []byte) ([]byte, error) {
	g, err := t.gen(scope)
	if err != nil {
		return nil, err
	}
	return append(t.s.kindPrefix(scope, g, kind), id...), nil
}

func (t *tx) reserved() []uint32 {
	out := make([]uint32, 0, len(t.newKeys))
	for i := range t.newKeys {
		out = append(out, i)
	}
	return out
}

func (t *tx) clearKeys() {
	for _, k := range t.newKeys {
		clear(k[:])
	}
}

func (t *tx) check(write bool) error {
	if t.done {
		return ErrTxDone
	}
	if write && !t.write {
		return ErrReadOnly
	}
	return nil
}

// key returns the key of slot i as this transaction sees it.
func (t *tx) key(i uint32) (recordKey, error) {
	if k, ok := t.newKeys[i]; ok {
		return *k, nil
	}
	return t.s.kt.readKey(i)
}

// open authenticates and decrypts a stored record value.
func (t *tx) open(scope Scope, kind string, id, v []byte) ([]byte, error) {
	r, err := parseRecordValue(v)
	if err != nil {
		return nil, err
	}
	k, err := t.key(r.slot)
	if err != nil {
		return nil, err
	}
	defer clear(k[:])
	pt, err := newAEAD(k[:]).Open(nil, r.nonce, r.sealed, recordAD(scope, kind, id, r.slot))
	if err != nil {
		return nil, fmt.Errorf("%w: record fails authentication", ErrCorrupt)
	}
	if pt == nil {
		pt = []byte{}
	}
	return pt, nil
}

func (t *tx) Get(scope Scope, kind string, id []byte) ([]byte, error) {
	if err := t.check(false); err != nil {
		return nil, err
	}
	if err := CheckName(scope, kind, id); err != nil {
		return nil, err
	}
	key, err := t.recordKey(scope, kind, id)
	if err != nil {
		return nil, err
	}
	item, err := t.txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("localstore: %w", err)
	}
	var pt []byte
	err = item.Value(func(v []byte) error {
		pt, err = t.open(scope, kind, id, v)
		return err
	})
	return pt, err
}

// drop forgets the slot of the record stored under key, if any: a slot
// reserved by this Update is released at once, a committed one is erased
// after commit.
func (t *tx) drop(key []byte) error {
	item, err := t.txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("localstore: %w", err)
	}
	return item.Value(func(v []byte) error {
		t.dropValue(v)
		return nil
	})
}

func (t *tx) dropValue(v []byte) {
	r, err := parseRecordValue(v)
	if err != nil {
		// A damaged record: its slot is unknown, so recovery at the next
		// Open finds it.
		t.s.kt.leaked = true
		return
	}
	if k, ok := t.newKeys[r.slot]; ok {
		clear(k[:])
		delete(t.newKeys, r.slot)
		t.s.kt.release([]uint32{r.slot})
		return
	}
	t.freed = append(t.freed, r.slot)
}

func (t *tx) Put(scope Scope, kind string, id, value []byte) error {
	if err := t.check(true); err != nil {
		return err
	}
	if err := CheckName(scope, kind, id); err != nil {
		return err
	}
	if err := CheckValue(value); err != nil {
		return err
	}
	key, err := t.recordKey(scope, kind, id)
	if err != nil {
		return err
	}
	if err := t.drop(key); err != nil {
		return err
	}
	slot, err := t.s.kt.reserve()
	if err != nil {
		return err
	}
	k := new(recordKey)
	rand.Read(k[:])
	t.newKeys[slot] = k
	r := &recordValue{slot: slot, nonce: randBytes(nonceSize)}
	r.sealed = newAEAD(k[:]).Seal(nil, r.nonce, value, recordAD(scope, kind, id, slot))
	if err := t.txn.Set(key, r.marshal()); err != nil {
		return fmt.Errorf("localstore: %w", err)
	}
	return nil
}

func (t *tx) Delete(scope Scope, kind string, id []byte) error {
	if err := t.check(true); err != nil {
		return err
	}
	if err := CheckName(scope, kind, id); err != nil {
		return err
	}
	key, err := t.recordKey(scope, kind, id)
	if err != nil {
		return err
	}
	if err := t.drop(key); err != nil {
		return err
	}
	if err := t.txn.Delete(key); err != nil {
		return fmt.Errorf("localstore: %w", err)
	}
	return nil
}

// iterate calls fn for every record under prefix, in key order.
func (t *tx) iterate(prefix []byte, fn func(key, value []byte) error) error {
	if t.iterating && t.write {
		return fmt.Errorf("%w: List or DeleteScope inside List of an Update", ErrInvalid)
	}
	t.iterating = true
	defer func() { t.iterating = false }()
	it := t.txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		if err := item.Value(func(v []byte) error { return fn(item.Key(), v) }); err != nil {
			return err
		}
	}
	return nil
}

func (t *tx) List(scope Scope, kind string, fn func(id, value []byte) error) error {
	if err := t.check(false); err != nil {
		return err
	}
	if err := CheckName(scope, kind, nil); err != nil {
		return err
	}
	g, err := t.gen(scope)
	if err != nil {
		return err
	}
	prefix := t.s.kindPrefix(scope, g, kind)
	return t.iterate(prefix, func(key, v []byte) error {
		id := key[len(prefix):]
		pt, err := t.open(scope, kind, id, v)
		if err != nil {
			return err
		}
		return fn(id, pt)
	})
}

func (t *tx) DeleteScope(scope Scope) error {
	if err := t.check(true); err != nil {
		return err
	}
	if err := CheckName(scope, "", nil); err != nil {
		return err
	}
	g, err := t.gen(scope)
	if err != nil {
		return err
	}
	// The scope moves to its next generation; the keys of this one's
	// records are erased after commit and the records removed later.
	tag := t.s.scopeTag(scope)
	found := false
	err = t.iterate(genPrefix(tag, g), func(_, v []byte) error {
		found = true
		t.dropValue(v)
		return nil
	})
	if err != nil {
		return err
	}
	if !found {
		return nil
	}
	if err := t.txn.Set(scopeMetaKey(tag), binary.BigEndian.AppendUint64(nil, g+1)); err != nil {
		return fmt.Errorf("localstore: %w", err)
	}
	if err := t.txn.Set(garbageKey(tag, g), nil); err != nil {
		return fmt.Errorf("localstore: %w", err)
	}
	t.gens[scope] = g + 1
	t.garbage = true
	return nil
}
