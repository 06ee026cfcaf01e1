package badgerstore

// The cleanup after a commit (schema.go: what is garbage once an epoch is
// visible). CommitEpoch returns as soon as the head is durable and moved;
// the cleanup of its epoch is queued and runs on another goroutine,
// which takes the commit lock: the next write waits for it only if it
// comes before the cleanup has run, and Close runs what is queued.
//
// The cleanup also writes the latest-version hints ("R", schema.go) of
// the labels its epoch wrote: they are not part of the commit, so that
// the epoch's single-threaded badger write carries one entry fewer per
// label. A hint is only a hint, checked against the version keys when
// read: until the cleanup has written it (or if a crash or a failure
// loses it), LatestSummary finds the label's older hint stale, or none,
// and searches the version keys instead. Cleanups run in commit order,
// so a label's hints are written in version order.
//
// Everything the cleanup deletes is invisible at the head it runs under,
// and at any later head: the staging journal of a visible epoch, pending
// records of earlier epochs, checkpoint updates of earlier heads, and the
// versions older than epoch e of the tenant records epoch e wrote. So it
// may run late, after later commits, and more than once: a deletion of a
// key already deleted deletes nothing. A reader never sees a deletion of
// a version its head shows: TenantRecords opens its snapshot between two
// loads of one head, and the cleanup of epoch e runs after the head moved
// to e (readers of the previous head retry).
//
// Superseded tenant record versions are deleted by key: the store keeps,
// for every record a commit wrote since Open, the epoch and fragment count
// of its latest version (Store.versions), so the version an epoch
// supersedes is known without a read. A record not in it (the first
// rewrite since Open) is looked for with an iterator seek, which also
// finds any version an earlier cleanup missed. What a crash (or a failed
// cleanup) leaves is invisible garbage: the next rewrite of the record
// after a restart (or after the failure, which forgets the versions of
// the records the epoch wrote) seeks and deletes it.
//
// Store.versions is keyed by a 64-bit hash of the tenant and record key:
// about 56 bytes a record in the Go map (134 keyed by the 49 bytes
// themselves), 56 MB for 1,000,000 users. Two records whose hashes collide
// share an entry; that can leave garbage, never delete a live version:
// for a record written in epoch e the cleanup deletes only versions of
// that record key of epochs before e, which epoch e superseded, whatever
// epoch the entry names.

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"slices"

	"github.com/dgraph-io/badger/v4"

	"github.com/moat-im/moat/keyserver/store"
	"github.com/moat-im/moat/keyserver/vmap"
)

// A gcJob is the cleanup of one committed epoch.
type gcJob struct {
	epoch uint64
	gc    []gcTenant
	hints *pendingHints // the latest-version hints of the labels it wrote
}

// A hintIndex maps a label to the index of its hint in an epoch's hints.
type hintIndex = map[vmap.Label]int

// pendingHints are the latest-version hints of a committed epoch that its
// cleanup has not written yet. LatestSummary reads them (pendingHint)
// before the stored hints, so that it has a label's summary as soon as
// CommitEpoch returns.
type pendingHints struct {
	epoch uint64
	hints []entry
	at    hintIndex
}

// A gcTenant lists the records an epoch wrote of one tenant.
type gcTenant struct {
	id    [16]byte
	keys  []store.TenantKey // the records written
	frags []uint32          // the fragment count of each one's new version
}

// A recVersion is the latest stored version of a tenant record.
type recVersion struct {
	epoch uint64
	frags uint32
}

// queueCleanup queues the cleanup of epoch, just committed, and starts a
// goroutine to run it. Callers hold commitMu.
func (s *Store) queueCleanup(epoch uint64, p *plan, ph *pendingHints) {
	s.gcJobs = append(s.gcJobs, gcJob{epoch: epoch, gc: p.gc, hints: ph})
	if !s.testManualCleanup {
		go s.WaitCleanup() // a no-op once Close has run the queue
	}
}

// WaitCleanup runs now the cleanups that earlier commits queued (and
// that have not run yet), and returns when they are done. Nothing needs
// it for correctness; it lets a caller (a benchmark, an operator tool)
// separate an epoch's background cleanup from the next epoch.
func (s *Store) WaitCleanup() {
	if s.acquire() != nil {
		return
	}
	defer s.closeMu.RUnlock()
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.runCleanup()
}

// runCleanup runs the queued cleanups, in commit order. Callers hold
// commitMu and the store open (closeMu).
func (s *Store) runCleanup() {
	jobs := s.gcJobs
	s.gcJobs = nil
	if s.broken != nil || s.testDropCleanup {
		// As a crash would: the versions these epochs superseded are
		// left, and their records must be sought when next rewritten;
		// their hints are lost.
		for _, j := range jobs {
			s.forget(j)
			s.dropPendingHints(j.hints)
		}
		return
	}
	for _, j := range jobs {
		s.cleanup(j)
		s.dropPendingHints(j.hints)
	}
}

// addPendingHints holds the hints of epoch, just committed, in memory
// until its cleanup has written them. Callers hold commitMu.
func (s *Store) addPendingHints(epoch uint64, p *plan) *pendingHints {
	ph := &pendingHints{epoch: epoch, hints: p.hints, at: p.hintAt}
	s.hintMu.Lock()
	s.pending = append(s.pending, ph)
	s.hintMu.Unlock()
	return ph
}

// dropPendingHints drops ph (the oldest pending hints: cleanups run in
// commit order) once its cleanup has written them, or lost them.
func (s *Store) dropPendingHints(ph *pendingHints) {
	s.hintMu.Lock()
	defer s.hintMu.Unlock()
	if i := slices.Index(s.pending, ph); i >= 0 {
		s.pending = slices.Delete(s.pending, i, i+1)
	}
}

// pendingHint returns the value of label's latest pending hint of an
// epoch at most epoch, if any: the newest such epoch that wrote label.
func (s *Store) pendingHint(label vmap.Label, epoch uint64) ([]byte, bool) {
	s.hintMu.RLock()
	defer s.hintMu.RUnlock()
	for i := len(s.pending) - 1; i >= 0; i-- {
		ph := s.pending[i]
		if ph.epoch > epoch {
			continue
		}
		if j, ok := ph.at[label]; ok {
			return ph.hints[j].val, true
		}
	}
	return nil, false
}

// cleanup deletes the garbage of epoch j.epoch (see the top of this
// file). It is best effort: what it leaves is invisible garbage; on a
// failure it forgets the versions of the tenants j wrote, so that their
// next rewrites look for older versions with a seek.
func (s *Store) cleanup(j gcJob) {
	epoch := j.epoch
	var dels [][]byte
	// Superseded tenant record versions: by key where the latest
	// version is known, else sought.
	var seek []gcTenant
	var hashes [][]uint64
	n := 0
	for _, g := range j.gc {
		hs := make([]uint64, len(g.keys))
		for i, k := range g.keys {
			hs[i] = s.recordHash(g.id, k)
			if v, ok := s.versions[hs[i]]; ok && v.epoch < epoch {
				n += int(v.frags)
			}
		}
		hashes = append(hashes, hs)
	}
	arena := make([]byte, 0, n*(tenantBaseSize+fragNumSize))
	for gi, g := range j.gc {
		unknown := gcTenant{id: g.id}
		for i, k := range g.keys {
			h := hashes[gi][i]
			v, ok := s.versions[h]
			switch {
			case !ok:
				unknown.keys = append(unknown.keys, k)
			case v.epoch < epoch:
				base := appendTenantBase(nil, g.id, k, v.epoch)
				for f := range v.frags {
					start := len(arena)
					arena = appendFragKey(arena, base, f)
					dels = append(dels, arena[start:len(arena):len(arena)])
				}
			default:
				// Two records of this epoch share the hash: the entry
				// cannot hold both fragment counts, so it goes, and
				// both are sought when next rewritten.
				delete(s.versions, h)
				continue
			}
			s.versions[h] = recVersion{epoch: epoch, frags: g.frags[i]}
		}
		if len(unknown.keys) > 0 {
			slices.SortFunc(unknown.keys, func(a, b store.TenantKey) int { return bytes.Compare(a[:], b[:]) })
			seek = append(seek, unknown)
		}
	}
	err := s.db.View(func(txn *badger.Txn) error {
		keys, err := keysWithPrefix(txn, journalPrefix(epoch), nil)
		if err != nil {
			return err
		}
		dels = append(dels, keys...)
		keys, err = keysWithPrefix(txn, []byte{prefixPending}, func(k []byte) bool {
			return len(k) != tenantBaseSize+fragNumSize || tenantKeyEpoch(k) < epoch
		})
		if err != nil {
			return err
		}
		dels = append(dels, keys...)
		keys, err = checkpointGarbage(txn, epoch)
		if err != nil {
			return err
		}
		dels = append(dels, keys...)
		for _, g := range seek {
			keys, err := tenantGarbage(txn, g, epoch)
			if err != nil {
				return err
			}
			dels = append(dels, keys...)
		}
		return nil
	})
	if err == nil && len(dels)+len(j.hints.hints) > 0 {
		w := &writer{s: s, split: true, noSync: true, cleanup: true}
		for i := 0; err == nil && i < len(j.hints.hints); i++ {
			err = w.set(j.hints.hints[i])
		}
		for i := 0; err == nil && i < len(dels); i++ {
			err = w.set(entry{key: dels[i], del: true})
		}
		if err == nil {
			err = w.finish(false)
		} else if w.txn != nil {
			w.txn.Discard()
		}
	}
	if err != nil {
		s.forget(j)
		s.logger.Warn("badgerstore: cleanup after commit failed; garbage left", "epoch", epoch, "err", err)
	}
}

// forget forgets the latest versions of the records j wrote, so that
// their next rewrites seek their older versions.
func (s *Store) forget(j gcJob) {
	for _, g := range j.gc {
		for _, k := range g.keys {
			delete(s.versions, s.recordHash(g.id, k))
		}
	}
}

// recordHash returns the Store.versions key of a tenant record.
func (s *Store) recordHash(id [16]byte, k store.TenantKey) uint64 {
	if s.testCollide {
		return 0
	}
	var b [16 + store.TenantKeySize]byte
	copy(b[:16], id[:])
	copy(b[16:], k[:])
	return maphash.Bytes(s.seed, b[:])
}

// tenantGarbage returns the keys of the versions before epoch of the
// records g names (sorted): one iterator, one seek per record.
func tenantGarbage(txn *badger.Txn, g gcTenant, epoch uint64) ([][]byte, error) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: tenantPrefix(g.id)})
	defer it.Close()
	var out [][]byte
	rec := make([]byte, 0, tenantRecordSize)
	for _, k := range g.keys {
		rec = appendTenantRecord(rec[:0], g.id, k)
		for it.Seek(rec); it.Valid(); it.Next() {
			key := it.Item().Key()
			if !bytes.HasPrefix(key, rec) {
				break
			}
			if len(key) != tenantBaseSize+fragNumSize {
				return nil, fmt.Errorf("%w: tenant key %x", store.ErrCorrupt, key)
			}
			if tenantKeyEpoch(key) >= epoch {
				break
			}
			out = append(out, it.Item().KeyCopy(nil))
		}
	}
	return out, nil
}

// fragCount returns the number of fragments of a blob of n bytes
// (fragments).
func fragCount(n, fragSize int) uint32 {
	c := 1
	if rest := n - (fragSize - blobHeaderSize); rest > 0 {
		c += (rest + fragSize - 1) / fragSize
	}
	return uint32(c)
}
