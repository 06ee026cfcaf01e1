package badgerstore

// How an epoch commit is made atomic and durable.
//
// Durability. SyncWrites is off; CommitEpoch calls syncAll (badgerutil.Syncer) after
// the transaction that holds the head, and acknowledges only then. syncAll
// covers every file badger wrote since the previous one, including
// memtable logs and value-log files that badger rotated out, which
// db.Sync alone does not.
//
// Atomicity. A commit that fits one badger transaction (15% of the
// memtable: about 29 MB and 300,000 entries at the default 192 MiB; values
// in the value log count as 12-byte pointers) is one transaction: data,
// "H" || epoch and "h". A larger commit is staged: transactions of data,
// the first carrying the staging journal, then syncAll, then the last
// transaction with the head, then syncAll again. The first syncAll makes
// sure no crash can keep the head without its data. Staged data is
// invisible because every read filters by the published head (schema.go).
// If a staged commit fails it is rolled back at once; if the process dies,
// Open rolls it back (recover).
//
// Ordering. The in-memory head (Store.head) moves only after the head's
// transaction is synced; readers use it, never the stored "h".

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/store"
	"github.com/moat-im/moat/keyserver/vmap"
)

var (
	errTooBig           = errors.New("badgerstore: commit does not fit one transaction")
	errSimulatedCrash   = errors.New("badgerstore: simulated crash")
	errDurabilityFailed = errors.New("badgerstore: a write may not be durable; reopen the store")
)

// An entry is one key to set (or delete).
type entry struct {
	key, val []byte
	del      bool
}

// CommitEpoch implements store.DirectoryStore.
func (s *Store) CommitEpoch(ctx context.Context, c *store.EpochCommit) error {
	end, err := s.beginWrite(ctx, "epoch commit")
	if err != nil {
		return err
	}
	defer end()
	prev := s.head.Load()
	runs, err := c.Check(prev)
	if err != nil {
		return err
	}
	plan, err := s.plan(c, prev, runs)
	if err != nil {
		return err
	}
	s.stats = commitStats{bytes: plan.bytes}
	staged, err := s.write(ctx, c.Epoch, plan, false)
	if errors.Is(err, errTooBig) {
		staged, err = s.write(ctx, c.Epoch, plan, true)
	}
	if err != nil {
		if staged > 0 && s.broken == nil {
			if rerr := s.recover(context.WithoutCancel(ctx), prev); rerr != nil {
				s.broken = fmt.Errorf("%w: rolling back epoch %d: %v", errDurabilityFailed, c.Epoch, rerr)
			}
		}
		return fmt.Errorf("badgerstore: committing epoch %d: %w", c.Epoch, err)
	}
	// The epoch's hints are held in memory before the head moves (a
	// reader of an older head skips them), so that LatestSummary has them
	// from then on; its cleanup writes them.
	ph := s.addPendingHints(c.Epoch, plan)
	h := c.Head.Clone()
	s.head.Store(&h)
	s.queueCleanup(c.Epoch, plan, ph)
	if len(s.labels)+len(runs) > labelCacheSize {
		clear(s.labels)
	}
	if len(runs) <= labelCacheSize { // an epoch larger than the bound is not held
		for _, r := range runs {
			s.labels[r.Label] = r.Last
		}
	}
	return nil
}

// labelCacheSize bounds Store.labels: 53 to 80 bytes a label in Go 1.26's
// map, 168 MB measured at the bound (kept after a clear). Past it the map
// is cleared, and the labels' next commits check their versions by
// reading.
const labelCacheSize = 1 << 21

// commitStats describes the last commit, for benchmarks.
type commitStats struct {
	bytes int64         // keys and values written
	txns  int           // badger transactions committed
	syncs int           // syncAll calls
	sync  time.Duration // time in syncAll
}

// A plan is a commit turned into badger entries.
type plan struct {
	data    []entry    // map nodes, log nodes, blobs
	final   []entry    // the head: last, in the last transaction
	journal []entry    // staging journal, used only if the commit is staged
	size    int64      // badger's estimate of data+final
	bytes   int64      // keys and values of data+final
	gc      []gcTenant // the records written, for the cleanup (gc.go)
	hints   []entry    // latest-version hints, written by the cleanup (gc.go)
	hintAt  hintIndex  // the index in hints of each label's hint
}

// plan checks c against the stored state and builds its entries.
func (s *Store) plan(c *store.EpochCommit, prev *store.Head, runs []store.VersionRun) (*plan, error) {
	p := &plan{}
	txn := s.db.NewTransaction(false)
	defer txn.Discard()

	// Value versions: First-1 visible (or First == 1), First absent.
	if err := s.checkRuns(prev, runs); err != nil {
		return nil, err
	}

	// Log nodes: a node inside the previous tree must keep its hash.
	var prevSize uint64
	if prev != nil {
		prevSize = prev.LogSize
	}
	var logNew []tlog.Node
	seen := make(map[tlog.NodeID]bool, len(c.LogNodes))
	for _, n := range c.LogNodes {
		if seen[n.ID] {
			continue
		}
		seen[n.ID] = true
		if !store.LogNodeInside(n.ID, prevSize) {
			logNew = append(logNew, n)
			continue
		}
		item, err := txn.Get(appendLogKey(nil, n.ID))
		if err != nil {
			return nil, fmt.Errorf("badgerstore: log node (%d, %d): %w", n.ID.Level, n.ID.Index, wrapRead(err))
		}
		var same bool
		if err := item.Value(func(v []byte) error { same = string(v) == string(n.Hash[:]); return nil }); err != nil {
			return nil, wrapRead(err)
		}
		if !same {
			return nil, fmt.Errorf("%w: log node (%d, %d) rewritten with another hash", store.ErrConflict, n.ID.Level, n.ID.Index)
		}
	}

	// Tenants: after the commit, the older versions of every record it
	// writes are garbage.
	p.gc = make([]gcTenant, len(c.Tenants))
	for i, t := range c.Tenants {
		g := gcTenant{id: t.ID, keys: make([]store.TenantKey, len(t.Records)), frags: make([]uint32, len(t.Records))}
		for j := range t.Records {
			g.keys[j] = t.Records[j].Key
			g.frags[j] = fragCount(len(t.Records[j].Value), tenantFragSize)
		}
		p.gc[i] = g
	}

	// Entries. Map nodes go by tile (tiles.go); the tiles' keys share one
	// arena.
	tenantRecs, tenantFrags := 0, 0
	for _, g := range p.gc {
		tenantRecs += len(g.keys)
		for _, f := range g.frags {
			tenantFrags += int(f)
		}
	}
	p.data = make([]entry, 0, len(c.Map.Nodes)/3+len(logNew)+len(c.Values)+tenantFrags)
	arena := make([]byte, 0, (len(c.Map.Nodes)/3+1)*(1+vmap.MaxNodeKeySize))
	tiled(c.Map.Nodes, func(k vmap.NodeKey, tile []byte) {
		if len(arena)+1+vmap.MaxNodeKeySize > cap(arena) {
			arena = make([]byte, 0, 4096*(1+vmap.MaxNodeKeySize))
		}
		start := len(arena)
		arena = appendMapKey(arena, k)
		p.data = append(p.data, entry{key: arena[start:len(arena):len(arena)], val: tile})
	})
	for _, n := range logNew {
		p.data = append(p.data, entry{key: appendLogKey(nil, n.ID), val: n.Hash[:]})
	}
	// Value records are one fragment each (recordFragSize holds the
	// largest): their keys, journal keys and fragments share two arenas,
	// sized up front so that the subslices handed to badger never move.
	const valueKeys = valueBaseSize + fragNumSize + 1 + 8 + valueBaseSize
	keys := make([]byte, 0, len(c.Values)*valueKeys)
	vals := 0
	for i := range c.Values {
		vals += blobHeaderSize + len(c.Values[i].Record)
	}
	frags := make([]byte, 0, vals)
	p.journal = make([]entry, 0, len(c.Values)+tenantRecs)
	for i := range c.Values {
		w := &c.Values[i]
		if len(w.Record) > recordFragSize-blobHeaderSize {
			p.addBlob(appendValueBase(nil, w.Label, w.Version), c.Epoch, w.Record, recordFragSize)
			continue
		}
		start := len(keys)
		keys = appendValueBase(keys, w.Label, w.Version)
		base := keys[start:len(keys):len(keys)]
		keys = appendFragKey(keys, base, 0)
		key := keys[start+valueBaseSize : len(keys) : len(keys)]
		start = len(keys)
		keys = appendJournalKey(keys, c.Epoch, base)
		jkey := keys[start:len(keys):len(keys)]
		start = len(frags)
		frags = binary.BigEndian.AppendUint64(frags, c.Epoch)
		frags = binary.BigEndian.AppendUint32(frags, uint32(len(w.Record)))
		frags = append(frags, w.Record...)
		p.data = append(p.data, entry{key: key, val: frags[start:len(frags):len(frags)]})
		p.journal = append(p.journal, entry{key: jkey})
	}
	// Latest-version hints: the last version of each label written. Not
	// part of the commit: the cleanup after it writes them (gc.go).
	last := make(map[vmap.Label]int, len(runs))
	for i := range c.Values {
		w := &c.Values[i]
		if j, ok := last[w.Label]; !ok || c.Values[j].Version < w.Version {
			last[w.Label] = i
		}
	}
	p.hints = make([]entry, 0, len(last))
	hints, hvals := make([]byte, 0, len(last)*(1+vmap.LabelSize)), 0
	for _, i := range last {
		hvals += hintHeaderSize + len(c.Values[i].Summary)
	}
	hval := make([]byte, 0, hvals)
	for l, i := range last {
		w := &c.Values[i]
		last[l] = len(p.hints)
		start := len(hints)
		hints = appendHintKey(hints, w.Label)
		vstart := len(hval)
		hval = binary.BigEndian.AppendUint32(hval, w.Version)
		hval = binary.BigEndian.AppendUint64(hval, c.Epoch)
		hval = append(hval, w.Summary...)
		p.hints = append(p.hints, entry{key: hints[start:len(hints):len(hints)], val: hval[vstart:len(hval):len(hval)]})
	}
	p.hintAt = last
	// Tenant records: their journal keys (which end with the base key),
	// fragment keys and first fragments share two arenas, sized up front;
	// later fragments alias the record.
	const journalSize = 1 + 8 + tenantBaseSize
	f0s := 0
	for i := range c.Tenants {
		for _, r := range c.Tenants[i].Records {
			f0s += blobHeaderSize + min(len(r.Value), tenantFragSize-blobHeaderSize)
		}
	}
	tkeys := make([]byte, 0, tenantRecs*journalSize+tenantFrags*(tenantBaseSize+fragNumSize))
	tf0 := make([]byte, 0, f0s)
	for i := range c.Tenants {
		t := &c.Tenants[i]
		for j := range t.Records {
			r := &t.Records[j]
			start := len(tkeys)
			tkeys = appendTenantBase(appendJournalKey(tkeys, c.Epoch, nil), t.ID, r.Key, c.Epoch)
			p.journal = append(p.journal, entry{key: tkeys[start:len(tkeys):len(tkeys)]})
			base := tkeys[start+1+8 : len(tkeys) : len(tkeys)]
			data := r.Value
			for f := range p.gc[i].frags[j] {
				start = len(tkeys)
				tkeys = appendFragKey(tkeys, base, f)
				key := tkeys[start:len(tkeys):len(tkeys)]
				var val []byte
				if f == 0 {
					first := min(len(data), tenantFragSize-blobHeaderSize)
					vstart := len(tf0)
					tf0 = binary.BigEndian.AppendUint64(tf0, c.Epoch)
					tf0 = binary.BigEndian.AppendUint32(tf0, uint32(len(data)))
					tf0 = append(tf0, data[:first]...)
					val, data = tf0[vstart:len(tf0):len(tf0)], data[first:]
				} else {
					k := min(len(data), tenantFragSize)
					val, data = data[:k:k], data[k:]
				}
				p.data = append(p.data, entry{key: key, val: val})
			}
		}
	}
	p.final = []entry{{key: headAtKey(c.Epoch), val: encodeHead(&c.Head)}, {key: keyHead, val: encodeHeadPointer(c.Epoch)}}
	if c.Transition {
		p.final = append(p.final, entry{key: transitionKey(c.Epoch), val: []byte{}})
	}
	for _, es := range [][]entry{p.data, p.final} {
		for _, e := range es {
			p.size += estimate(e)
			p.bytes += int64(len(e.key) + len(e.val))
		}
	}
	return p, nil
}

// checkRuns checks, for every run of value versions, that version
// First-1 is visible (or First is 1) and First is not stored. Under the
// commit lock, with the store not broken, every stored value version is
// visible: a commit that fails is rolled back before the lock is released
// (or the store is broken), and Open rolls back what a crash staged. So
// version First-1 being stored is enough, and its record (in the value
// log) is not read: two key lookups per run. A run of a label that this
// store committed since Open (Store.labels), with First the version after
// the one committed last, needs neither: no other writer exists, and
// stored versions are only deleted when a failed commit is rolled back.
// The runs left are
// independent point reads: they are split over GOMAXPROCS goroutines, each
// with its own read transaction, and the error reported is that of the
// first failing run, as a sequential check would report.
func (s *Store) checkRuns(prev *store.Head, runs []store.VersionRun) error {
	var unknown []store.VersionRun
	for i, r := range runs {
		if v, ok := s.labels[r.Label]; ok && v == r.First-1 {
			continue
		}
		if unknown == nil {
			unknown = make([]store.VersionRun, 0, len(runs)-i)
		}
		unknown = append(unknown, r)
	}
	runs = unknown
	workers := min(runtime.GOMAXPROCS(0), (len(runs)+1023)/1024)
	if workers <= 1 {
		return s.checkRunSlice(prev, runs)
	}
	errs := make([]error, workers)
	per := (len(runs) + workers - 1) / workers
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*per, min((w+1)*per, len(runs))
		wg.Go(func() { errs[w] = s.checkRunSlice(prev, runs[lo:hi]) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// checkRunSlice is checkRuns on one goroutine, stopping at the first
// failing run.
func (s *Store) checkRunSlice(prev *store.Head, runs []store.VersionRun) error {
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	// One buffer for every key looked up: an item keeps its key, and no
	// item outlives the next lookup.
	key := make([]byte, 0, valueBaseSize+fragNumSize)
	for _, r := range runs {
		if r.First > 1 {
			key = appendFragKey(appendValueBase(key[:0], r.Label, r.First-1), nil, 0)
			_, err := txn.Get(key)
			if errors.Is(err, badger.ErrKeyNotFound) || (err == nil && prev == nil) {
				return fmt.Errorf("%w: label %x version %d: version %d is not stored", store.ErrConflict, r.Label[:], r.First, r.First-1)
			}
			if err != nil {
				return fmt.Errorf("badgerstore: label %x: %w", r.Label[:], wrapRead(err))
			}
		}
		key = appendFragKey(appendValueBase(key[:0], r.Label, r.First), nil, 0)
		_, err := txn.Get(key)
		if err == nil {
			return fmt.Errorf("%w: label %x version %d is already stored", store.ErrConflict, r.Label[:], r.First)
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("badgerstore: label %x: %w", r.Label[:], wrapRead(err))
		}
	}
	return nil
}

// addBlob adds the fragments of a blob and its journal entry.
func (p *plan) addBlob(base []byte, epoch uint64, data []byte, fragSize int) {
	for i, f := range fragments(epoch, data, fragSize) {
		p.data = append(p.data, entry{key: appendFragKey(make([]byte, 0, len(base)+fragNumSize), base, uint32(i)), val: f})
	}
	p.journal = append(p.journal, entry{key: appendJournalKey(nil, epoch, base)})
}

// estimate is badger's accounting of an entry against its transaction
// limit (Txn.checkSize): key, value (or a 12-byte value-log pointer), two
// meta bytes and the 8-byte version, plus 2.
func estimate(e entry) int64 {
	v := len(e.val)
	if v >= valueThreshold {
		v = 12
	}
	return int64(len(e.key) + v + 2 + 8 + 2)
}

// write writes the plan: in one transaction unless split is set, else
// staged. It returns how many transactions it committed before failing.
func (s *Store) write(ctx context.Context, epoch uint64, p *plan, split bool) (int, error) {
	fits := int64(len(p.data)+len(p.final)) < s.db.MaxBatchCount()*99/100 && p.size < s.db.MaxBatchSize()*99/100
	if !split && !fits {
		return 0, errTooBig
	}
	w := &writer{s: s, ctx: ctx, split: split}
	if split {
		if err := w.set(entry{key: journalPrefix(epoch)}); err != nil {
			return w.commits, err
		}
		for _, e := range p.journal {
			if err := w.set(e); err != nil {
				return w.commits, err
			}
		}
	}
	for _, e := range p.data {
		if err := w.set(e); err != nil {
			return w.commits, err
		}
	}
	for _, e := range p.final {
		if err := w.set(e); err != nil {
			return w.commits, err
		}
	}
	return w.commits, w.finish(true)
}

// A writer writes entries in as few badger transactions as the limits
// allow.
type writer struct {
	s       *Store
	ctx     context.Context // checked before each commit; nil: never
	split   bool            // may use several transactions
	noSync  bool            // best-effort writes: no syncAll
	cleanup bool            // the cleanup after a commit (gc.go): not in Store.stats, no simulated crash
	txn     *badger.Txn
	commits int
}

func (w *writer) set(e entry) error {
	if w.txn == nil {
		w.txn = w.s.db.NewTransaction(true)
	}
	err := w.apply(e)
	if !errors.Is(err, badger.ErrTxnTooBig) {
		return err
	}
	if !w.split {
		w.txn.Discard()
		w.txn = nil
		return errTooBig
	}
	if err := w.commit(); err != nil {
		return err
	}
	w.txn = w.s.db.NewTransaction(true)
	return w.apply(e)
}

func (w *writer) apply(e entry) error {
	if e.del {
		return w.txn.Delete(e.key)
	}
	return w.txn.Set(e.key, e.val)
}

// commit commits the current transaction, without syncing.
func (w *writer) commit() error {
	txn := w.txn
	w.txn = nil
	if txn == nil {
		return nil
	}
	if w.ctx != nil {
		if err := w.ctx.Err(); err != nil {
			txn.Discard()
			return err
		}
	}
	if w.cleanup && w.s.testFailCleanupAt > 0 && w.commits == w.s.testFailCleanupAt {
		txn.Discard()
		return errors.New("badgerstore: injected cleanup failure")
	}
	if w.s.crashAt > 0 && w.commits == w.s.crashAt && !w.cleanup {
		txn.Discard()
		w.s.broken = errSimulatedCrash
		return errSimulatedCrash
	}
	if err := txn.Commit(); err != nil {
		return fmt.Errorf("badger commit: %w", err)
	}
	w.commits++
	if !w.cleanup {
		w.s.stats.txns++
	}
	return nil
}

// finish commits the last transaction and syncs. With publishes (the
// last transaction holds the head), the earlier transactions are synced
// first, so that the head is never durable without its data.
func (w *writer) finish(publishes bool) error {
	if w.noSync {
		return w.commit()
	}
	if publishes && w.commits > 0 {
		if err := w.sync(); err != nil {
			return err
		}
	}
	if err := w.commit(); err != nil {
		return err
	}
	return w.sync()
}

func (w *writer) sync() error {
	start := time.Now()
	err := w.s.syncAll()
	w.s.stats.syncs++
	w.s.stats.sync += time.Since(start)
	if err != nil {
		// The transactions are visible in badger but may not be durable:
		// fsync errors are not retried (the kernel may have dropped the
		// pages). Nothing more is written until the store is reopened.
		w.s.broken = fmt.Errorf("%w: %v", errDurabilityFailed, err)
		return w.s.broken
	}
	return nil
}

// keysWithPrefix returns copies of the keys with prefix that keep accepts
// (all if keep is nil).
func keysWithPrefix(txn *badger.Txn, prefix []byte, keep func([]byte) bool) ([][]byte, error) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	var out [][]byte
	for it.Seek(prefix); it.Valid(); it.Next() {
		k := it.Item().Key()
		if keep == nil || keep(k) {
			out = append(out, it.Item().KeyCopy(nil))
		}
	}
	return out, nil
}

// recover rolls back whatever was staged past head h (nil: empty store):
// the journal's blobs, map nodes of later epochs and log nodes outside the
// head's tree. Only epoch h.Epoch+1 can have been staged; anything else
// past the head means the head itself is wrong, and recover refuses to
// delete. Journals of visible epochs are deleted. Callers hold commitMu.
func (s *Store) recover(ctx context.Context, h *store.Head) error {
	next, size := uint64(0), uint64(0)
	if h != nil {
		next, size = h.Epoch+1, h.LogSize
	}
	var dels [][]byte
	staged := false
	err := s.db.View(func(txn *badger.Txn) error {
		// The head must be the latest: no head of a later epoch.
		if h != nil {
			item, err := txn.Get(headAtKey(h.Epoch))
			if err != nil {
				return fmt.Errorf("%w: head of epoch %d not in the head history: %v", store.ErrCorrupt, h.Epoch, wrapRead(err))
			}
			if err := item.Value(func(v []byte) error {
				if string(v) != string(encodeHead(h)) {
					return fmt.Errorf("%w: head of epoch %d differs from its history record", store.ErrCorrupt, h.Epoch)
				}
				return nil
			}); err != nil {
				return err
			}
		}
		later, err := keysWithPrefix(txn, []byte{prefixHeadAt}, func(k []byte) bool {
			return len(k) != 9 || keyEpoch(k) >= next
		})
		if err != nil {
			return err
		}
		if len(later) > 0 {
			return fmt.Errorf("%w: a head past epoch %d exists: the stored head is stale", store.ErrCorrupt, next-1)
		}
		// Journal.
		journal, err := keysWithPrefix(txn, []byte{prefixJournal}, nil)
		if err != nil {
			return err
		}
		for _, k := range journal {
			e, base, err := parseJournalKey(k)
			if err != nil {
				return err
			}
			switch {
			case e < next:
			case e == next:
				staged = true
				if len(base) > 0 {
					frags, err := keysWithPrefix(txn, base, nil)
					if err != nil {
						return err
					}
					dels = append(dels, frags...)
				}
			default:
				return fmt.Errorf("%w: epoch %d staged past head epoch %d", store.ErrCorrupt, e, next-1)
			}
			dels = append(dels, k)
		}
		// Map nodes and log nodes past the head.
		var past [][]byte
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixMap}})
		for it.Seek(mapEpochStart(next)); it.Valid(); it.Next() {
			k, err := vmap.ParseNodeKey(it.Item().Key()[1:])
			if err != nil {
				it.Close()
				return fmt.Errorf("%w: map key %x", store.ErrCorrupt, it.Item().Key())
			}
			if k.Version != next {
				it.Close()
				return fmt.Errorf("%w: map nodes of epoch %d past head epoch %d", store.ErrCorrupt, k.Version, next-1)
			}
			past = append(past, it.Item().KeyCopy(nil))
		}
		it.Close()
		for l := 0; l < 64; l++ {
			prefix := []byte{prefixLog, byte(l)}
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			for it.Seek(appendLogKey(nil, tlog.NodeID{Level: uint8(l), Index: size >> l})); it.Valid(); it.Next() {
				past = append(past, it.Item().KeyCopy(nil))
			}
			it.Close()
		}
		if len(past) > 0 && !staged {
			return fmt.Errorf("%w: %d map or log nodes past the head without a staging journal", store.ErrCorrupt, len(past))
		}
		dels = append(dels, past...)
		return ctx.Err()
	})
	if err != nil {
		return err
	}
	if len(dels) == 0 {
		return nil
	}
	if staged {
		s.logger.Warn("badgerstore: rolling back a staged epoch", "epoch", next, "keys", len(dels))
	}
	w := &writer{s: s, ctx: ctx, split: true}
	for _, k := range dels {
		if err := w.set(entry{key: k, del: true}); err != nil {
			return err
		}
	}
	return w.finish(false)
}

// keyEpoch returns the uint64 after the prefix byte of a key.
func keyEpoch(k []byte) uint64 { return binary.BigEndian.Uint64(k[1:9]) }

// syncAll makes every write so far durable (badgerutil.Syncer). Callers
// hold commitMu (or are single-threaded in Open).
func (s *Store) syncAll() error { return s.syncer.Sync(s.db) }
