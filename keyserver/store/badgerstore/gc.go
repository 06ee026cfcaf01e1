package badgerstore

// The cleanup after a commit (schema.go: what is garbage once an epoch is
// visible). CommitEpoch returns as soon as the head is durable and moved;
// the cleanup of its epoch is queued and runs on another goroutine,
// which takes the commit lock: the next write waits for it only if it
// comes before the cleanup has run, and Close runs what is queued.
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
)

// A gcJob is the cleanup of one committed epoch.
type gcJob struct {
	epoch uint64
	gc    []gcTenant
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
func (s *Store) queueCleanup(epoch uint64, p *plan) {
	s.gcJobs = append(s.gcJobs, gcJob{epoch: epoch, gc: p.gc})
	go s.WaitCleanup() // a no-op once Close has run the queue
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
		// left, and their records must be sought when next rewritten.
		for _, j := range jobs {
			s.forget(j)
		}
		return
	}
	for _, j := range jobs {
		s.cleanup(j)
	}
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
	if err == nil && len(dels) > 0 {
		w := &writer{s: s, split: true, noSync: true, cleanup: true}
		for _, k := range dels {
			if err = w.set(entry{key: k, del: true}); err != nil {
				break
			}
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
