package badgerstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/store"
	"github.com/moat-im/moat/keyserver/vmap"
)

// Reads load the head first, then open a badger transaction: everything
// the head covers was committed before the head was published, so the
// transaction sees it, and everything past the head is filtered out.

// Head implements store.DirectoryStore.
func (s *Store) Head(ctx context.Context) (store.Head, error) {
	if err := s.acquire(); err != nil {
		return store.Head{}, err
	}
	defer s.closeMu.RUnlock()
	h := s.head.Load()
	if h == nil {
		return store.Head{}, store.ErrEmpty
	}
	return h.Clone(), nil
}

// GetNodes implements store.DirectoryStore (vmap.NodeStore).
func (s *Store) GetNodes(keys []vmap.NodeKey) ([]vmap.Node, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.closeMu.RUnlock()
	h := s.head.Load()
	out := make([]vmap.Node, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	// The map is stored by tile (tiles.go): each tile is read and parsed
	// once per call, however many of its nodes are asked for, and not at
	// all if the tile cache has it.
	var local map[vmap.NodeKey]*parsedTile
	if s.tiles == nil {
		local = map[vmap.NodeKey]*parsedTile{}
	}
	buf := make([]byte, 0, 1+vmap.MaxNodeKeySize)
	for i, k := range keys {
		if h == nil || k.Version > h.Epoch || !k.Valid() {
			return nil, fmt.Errorf("badgerstore: map node %v: %w", k, vmap.ErrNodeNotFound)
		}
		tk := tileKey(k)
		var tile *parsedTile
		var ok bool
		if local != nil {
			tile, ok = local[tk]
		} else {
			tile, ok = s.tiles.get(tk)
		}
		if !ok {
			buf = appendMapKey(buf[:0], tk)
			item, err := txn.Get(buf)
			if errors.Is(err, badger.ErrKeyNotFound) {
				if k.Depth == 0 {
					// Every visible epoch has its root.
					return nil, fmt.Errorf("badgerstore: %w: root node of epoch %d missing", store.ErrCorrupt, k.Version)
				}
				return nil, fmt.Errorf("badgerstore: map node %v: %w", k, vmap.ErrNodeNotFound)
			}
			if err != nil {
				return nil, fmt.Errorf("badgerstore: map node %v: %w", k, wrapRead(err))
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return nil, fmt.Errorf("badgerstore: map node %v: %w", k, wrapRead(err))
			}
			if tile, err = parseTile(v, int(tk.Depth)); err != nil {
				return nil, fmt.Errorf("badgerstore: %w: map node %v: %w", store.ErrCorrupt, k, err)
			}
			if local != nil {
				local[tk] = tile
			} else {
				s.tiles.put(tk, tile)
			}
		}
		n, err := tile.node(k)
		switch {
		case errors.Is(err, vmap.ErrNodeNotFound) && k.Depth == 0:
			return nil, fmt.Errorf("badgerstore: %w: root node of epoch %d missing", store.ErrCorrupt, k.Version)
		case errors.Is(err, vmap.ErrNodeNotFound):
			return nil, fmt.Errorf("badgerstore: map node %v: %w", k, err)
		case err != nil:
			return nil, fmt.Errorf("badgerstore: %w: map node %v: %w", store.ErrCorrupt, k, err)
		}
		out[i] = n
	}
	return out, nil
}

// ReadNodes implements store.DirectoryStore (tlog.NodeReader).
func (s *Store) ReadNodes(ctx context.Context, ids []tlog.NodeID) ([]tlog.Hash, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.closeMu.RUnlock()
	h := s.head.Load()
	out := make([]tlog.Hash, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	buf := make([]byte, 0, logKeySize)
	for i, id := range ids {
		if h == nil || !store.LogNodeInside(id, h.LogSize) {
			return nil, fmt.Errorf("badgerstore: log node (%d, %d): %w", id.Level, id.Index, store.ErrNotFound)
		}
		buf = appendLogKey(buf[:0], id)
		item, err := txn.Get(buf)
		if errors.Is(err, badger.ErrKeyNotFound) {
			// Commits store every node inside the head's tree.
			return nil, fmt.Errorf("badgerstore: %w: log node (%d, %d) inside the tree missing", store.ErrCorrupt, id.Level, id.Index)
		}
		if err != nil {
			return nil, fmt.Errorf("badgerstore: log node (%d, %d): %w", id.Level, id.Index, wrapRead(err))
		}
		err = item.Value(func(v []byte) error {
			if len(v) != tlog.HashSize {
				return fmt.Errorf("%w: log node of %d bytes", store.ErrCorrupt, len(v))
			}
			copy(out[i][:], v)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("badgerstore: log node (%d, %d): %w", id.Level, id.Index, wrapRead(err))
		}
	}
	return out, nil
}

// readBlob reads the blob at base. It returns ErrNotFound if fragment 0 is
// missing.
func readBlob(txn *badger.Txn, base []byte, maxLen int) (epoch uint64, data []byte, err error) {
	key := appendFragKey(make([]byte, 0, len(base)+fragNumSize), base, 0)
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil, store.ErrNotFound
	}
	if err != nil {
		return 0, nil, wrapRead(err)
	}
	var total int
	err = item.Value(func(v []byte) error {
		var payload []byte
		var err error
		epoch, total, payload, err = parseBlobHeader(v, maxLen)
		if err != nil {
			return err
		}
		data = make([]byte, 0, total)
		data = append(data, payload...)
		return nil
	})
	if err != nil {
		return 0, nil, wrapRead(err)
	}
	for frag := uint32(1); len(data) < total; frag++ {
		key = appendFragKey(key[:0], base, frag)
		item, err := txn.Get(key)
		if err != nil {
			// A missing fragment of a blob whose header exists is
			// corruption, not absence.
			return 0, nil, fmt.Errorf("%w: blob %x fragment %d: %v", store.ErrCorrupt, base, frag, err)
		}
		err = item.Value(func(v []byte) error {
			if len(v) == 0 || len(v) > total-len(data) {
				return fmt.Errorf("%w: blob %x fragment %d", store.ErrCorrupt, base, frag)
			}
			data = append(data, v...)
			return nil
		})
		if err != nil {
			return 0, nil, wrapRead(err)
		}
	}
	return epoch, data, nil
}

// Values implements store.DirectoryStore.
func (s *Store) Values(ctx context.Context, label vmap.Label, from, to uint32) ([][]byte, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.closeMu.RUnlock()
	if from == 0 || from > to {
		return nil, fmt.Errorf("badgerstore: label %x versions %d..%d: %w", label[:], from, to, store.ErrNotFound)
	}
	h := s.head.Load()
	if h == nil {
		return nil, fmt.Errorf("badgerstore: label %x: %w", label[:], store.ErrNotFound)
	}
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	var out [][]byte
	base := make([]byte, 0, valueBaseSize)
	for v := uint64(from); v <= uint64(to); v++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		base = appendValueBase(base[:0], label, uint32(v))
		e, data, err := readBlob(txn, base, store.MaxRecordSize)
		if err == nil && e > h.Epoch {
			err = store.ErrNotFound
		}
		if errors.Is(err, store.ErrNotFound) {
			// Versions have no gaps: a missing one below the latest is
			// corruption.
			if latest, lerr := latestVersion(txn, label, h.Epoch); lerr != nil {
				err = lerr
			} else if uint32(v) <= latest {
				err = fmt.Errorf("%w: version %d of %d missing", store.ErrCorrupt, v, latest)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("badgerstore: label %x version %d: %w", label[:], v, err)
		}
		out = append(out, data)
	}
	return out, nil
}

// LatestVersion implements store.DirectoryStore.
func (s *Store) LatestVersion(ctx context.Context, label vmap.Label) (uint32, error) {
	v, _, err := s.latest(label, func(txn *badger.Txn, epoch uint64) (uint32, []byte, error) {
		v, err := latestVersion(txn, label, epoch)
		return v, nil, err
	})
	return v, err
}

// LatestValue implements store.DirectoryStore.
func (s *Store) LatestValue(ctx context.Context, label vmap.Label) (uint32, []byte, error) {
	return s.latest(label, func(txn *badger.Txn, epoch uint64) (uint32, []byte, error) {
		return latestValue(txn, label, epoch, true)
	})
}

// LatestSummary implements store.DirectoryStore: from the label's hint
// not yet written by the cleanup after its commit (gc.go), else from its
// stored hint (schema.go), checked against its version keys, else
// LatestValue's search without a summary.
// The pending hints are looked at before the read transaction opens: the
// cleanup drops them only after its transaction wrote them.
func (s *Store) LatestSummary(ctx context.Context, label vmap.Label) (uint32, []byte, error) {
	return s.latestHinted(label, func(txn *badger.Txn, epoch uint64) (uint32, []byte, error) {
		v, sum, err := hintedVersion(txn, label, epoch)
		if err == nil && v == 0 {
			v, _, err = latestValue(txn, label, epoch, false)
			sum = nil
		}
		return v, sum, err
	})
}

// latest returns what fn finds of label in a read transaction at the head
// epoch, or 0 and nil if there is no head yet.
func (s *Store) latest(label vmap.Label, fn func(txn *badger.Txn, epoch uint64) (uint32, []byte, error)) (uint32, []byte, error) {
	return s.latestAt(label, false, fn)
}

// latestHinted is latest, first looking for a pending hint of label.
func (s *Store) latestHinted(label vmap.Label, fn func(txn *badger.Txn, epoch uint64) (uint32, []byte, error)) (uint32, []byte, error) {
	return s.latestAt(label, true, fn)
}

func (s *Store) latestAt(label vmap.Label, pending bool, fn func(txn *badger.Txn, epoch uint64) (uint32, []byte, error)) (uint32, []byte, error) {
	if err := s.acquire(); err != nil {
		return 0, nil, err
	}
	defer s.closeMu.RUnlock()
	h := s.head.Load()
	if h == nil {
		return 0, nil, nil
	}
	if pending {
		if hint, ok := s.pendingHint(label, h.Epoch); ok {
			var sum []byte
			if len(hint) > hintHeaderSize {
				sum = append(sum, hint[hintHeaderSize:]...)
			}
			return binary.BigEndian.Uint32(hint), sum, nil
		}
	}
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	v, data, err := fn(txn, h.Epoch)
	if err != nil {
		return 0, nil, fmt.Errorf("badgerstore: label %x: %w", label[:], err)
	}
	return v, data, nil
}

// hintedVersion returns the version and summary of label's hint if it
// holds (schema.go): the hint's epoch is at most epoch, version v is
// stored, and v+1 is not stored or not visible. It returns 0 otherwise
// (no hint, or a stale one). Version v's own epoch is the hint's: a hint
// names only a version of a published epoch, written after it, and such a
// version is never rewritten (schema.go).
func hintedVersion(txn *badger.Txn, label vmap.Label, epoch uint64) (uint32, []byte, error) {
	item, err := txn.Get(appendHintKey(make([]byte, 0, 1+vmap.LabelSize), label))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, wrapRead(err)
	}
	hint, err := item.ValueCopy(nil)
	if err != nil {
		return 0, nil, wrapRead(err)
	}
	if len(hint) < hintHeaderSize || len(hint) > hintHeaderSize+store.MaxSummarySize {
		return 0, nil, fmt.Errorf("%w: version hint of %d bytes", store.ErrCorrupt, len(hint))
	}
	v, e := binary.BigEndian.Uint32(hint), binary.BigEndian.Uint64(hint[4:])
	if v == 0 || e > epoch {
		return 0, nil, nil
	}
	base := make([]byte, 0, valueBaseSize)
	key := make([]byte, 0, valueBaseSize+fragNumSize)
	if v < ^uint32(0) {
		_, err := txn.Get(appendFragKey(key[:0], appendValueBase(base[:0], label, v+1), 0))
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
		case err != nil:
			return 0, nil, wrapRead(err)
		default:
			// Stored: stale, unless staged past the head.
			e, err := blobEpoch(txn, appendValueBase(base[:0], label, v+1))
			if err != nil || e <= epoch {
				return 0, nil, err
			}
		}
	}
	_, err = txn.Get(appendFragKey(key[:0], appendValueBase(base[:0], label, v), 0))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, wrapRead(err)
	}
	return v, hint[hintHeaderSize:], nil
}

// latestVersion returns the highest version of label written in an epoch
// at most epoch.
func latestVersion(txn *badger.Txn, label vmap.Label, epoch uint64) (uint32, error) {
	v, _, err := latestValue(txn, label, epoch, false)
	return v, err
}

// latestValue returns the highest version of label written in an epoch
// at most epoch, and its record if read is set. Versions are contiguous,
// and those past the head (staged by a commit in progress) are the
// highest, so it finds the top stored version with a reverse iterator and
// walks down from it. (A search by point lookups, doubling then
// bisecting, cost about twice the instructions for a label of 8 versions:
// BenchmarkLatest.)
func latestValue(txn *badger.Txn, label vmap.Label, epoch uint64, read bool) (uint32, []byte, error) {
	prefix := valuePrefix(label)
	it := txn.NewIterator(badger.IteratorOptions{Reverse: true, Prefix: prefix})
	it.Seek(append(prefix, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))
	if !it.Valid() {
		it.Close()
		return 0, nil, nil
	}
	k := it.Item().Key()
	if len(k) != valueBaseSize+fragNumSize {
		it.Close()
		return 0, nil, fmt.Errorf("%w: value key %x", store.ErrCorrupt, k)
	}
	lo := binary.BigEndian.Uint32(k[1+vmap.LabelSize:])
	it.Close()
	base := make([]byte, 0, valueBaseSize)
	for v := lo; v > 0; v-- {
		base = appendValueBase(base[:0], label, v)
		if !read {
			e, err := blobEpoch(txn, base)
			if err != nil {
				return 0, nil, fmt.Errorf("version %d: %w", v, err)
			}
			if e <= epoch {
				return v, nil, nil
			}
			continue
		}
		e, data, err := readBlob(txn, base, store.MaxRecordSize)
		if errors.Is(err, store.ErrNotFound) {
			err = fmt.Errorf("%w: version %d below version %d missing", store.ErrCorrupt, v, lo)
		}
		if err != nil {
			return 0, nil, fmt.Errorf("version %d: %w", v, err)
		}
		if e <= epoch {
			return v, data, nil
		}
	}
	return 0, nil, nil
}

// blobEpoch reads the epoch in the header of the blob at base.
func blobEpoch(txn *badger.Txn, base []byte) (uint64, error) {
	item, err := txn.Get(appendFragKey(make([]byte, 0, len(base)+fragNumSize), base, 0))
	if err != nil {
		// The blob's other fragments exist: its header must too.
		return 0, fmt.Errorf("%w: blob %x header: %v", store.ErrCorrupt, base, err)
	}
	var e uint64
	err = item.Value(func(v []byte) error {
		var err error
		e, _, _, err = parseBlobHeader(v, store.MaxRecordSize)
		return err
	})
	return e, wrapRead(err)
}

// TenantRecords implements store.DirectoryStore. Its badger transaction
// is opened between two loads of the same head, so that its snapshot holds
// every record version that head shows: cleanup deletes a version only
// after a later head is published (schema.go).
func (s *Store) TenantRecords(ctx context.Context, id [16]byte, fn func(store.TenantKey, []byte) error) error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.closeMu.RUnlock()
	for {
		h := s.head.Load()
		if h == nil {
			return fmt.Errorf("badgerstore: tenant %x: %w", id, store.ErrNotFound)
		}
		txn := s.db.NewTransaction(false)
		if s.head.Load() != h {
			txn.Discard()
			continue
		}
		n, err := walkTenant(ctx, txn, tenantPrefix(id), h.Epoch, false, fn)
		txn.Discard()
		if err == nil && n == 0 {
			err = store.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("badgerstore: tenant %x: %w", id, err)
		}
		return nil
	}
}

// walkTenant calls fn with the latest version at most epoch of each
// record under prefix (a tenant's "U" records), unless it is a deletion,
// and returns how many it passed. With pending (the "P" records), it
// takes only the versions of epoch, deletions included. Keys come in
// order: by record key, then epoch, then fragment.
//
// The latest version must be whole, or the record is ErrCorrupt. An
// older version may have fragments missing: the cleanup after a commit
// (gc.go) deletes superseded versions in several transactions, so a
// reader can meet one half deleted, and a cleanup cut short leaves one
// so until the record's next rewrite.
func walkTenant(ctx context.Context, txn *badger.Txn, prefix []byte, epoch uint64, pending bool, fn func(store.TenantKey, []byte) error) (int, error) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	var (
		n              int
		cur            store.TenantKey
		have           bool
		cand, buf      []byte // the latest whole version so far, the one being read
		candOK, inVer  bool
		candEpoch      uint64 // cand's epoch
		verEpoch       uint64 // the epoch of the version being read
		broken         bool   // a version with fragments missing was seen,
		brokenEpoch    uint64 // the latest such at brokenEpoch
		total, nextFrg int
	)
	breakVersion := func(e uint64) {
		if !broken || e > brokenEpoch {
			broken, brokenEpoch = true, e
		}
	}
	done := func() error {
		if inVer {
			breakVersion(verEpoch)
		}
		if broken && (!candOK || brokenEpoch >= candEpoch) {
			return fmt.Errorf("%w: tenant record %x of epoch %d: fragments missing", store.ErrCorrupt, cur[:], brokenEpoch)
		}
		if !candOK || (len(cand) == 0 && !pending) {
			return nil
		}
		n++
		return fn(cur, cand)
	}
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		k := item.Key()
		if len(k) != tenantBaseSize+fragNumSize {
			return n, fmt.Errorf("%w: tenant key %x", store.ErrCorrupt, k)
		}
		rk := store.TenantKey(k[tenantPrefixSize:tenantRecordSize])
		if !have || rk != cur {
			if have {
				if err := done(); err != nil {
					return n, err
				}
			}
			if n%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return n, err
				}
			}
			cur, have, candOK, inVer, broken = rk, true, false, false, false
		}
		e := tenantKeyEpoch(k)
		if e > epoch || (pending && e != epoch) {
			// Staged by a commit in progress, or not yet visible; or a
			// pending version an epoch published.
			continue
		}
		frag := int(binary.BigEndian.Uint32(k[tenantBaseSize:]))
		err := item.Value(func(v []byte) error {
			if frag == 0 {
				if inVer {
					breakVersion(verEpoch)
				}
				ve, t, payload, err := parseBlobHeader(v, store.MaxTenantRecordSize)
				if err != nil {
					return err
				}
				if ve != e {
					return fmt.Errorf("%w: tenant record %x of epoch %d in the key of epoch %d", store.ErrCorrupt, cur[:], ve, e)
				}
				buf = append(buf[:0], payload...)
				total, nextFrg, inVer, verEpoch = t, 1, true, e
			} else {
				if !inVer || e != verEpoch || frag != nextFrg {
					// A fragment of a version whose first fragments are
					// gone, or after a gap.
					breakVersion(e)
					inVer = false
					return nil
				}
				if len(v) == 0 || len(v) > total-len(buf) {
					return fmt.Errorf("%w: tenant record %x fragment %d", store.ErrCorrupt, cur[:], frag)
				}
				buf = append(buf, v...)
				nextFrg++
			}
			if len(buf) == total {
				cand, buf = buf, cand
				candOK, inVer, candEpoch = true, false, verEpoch
			}
			return nil
		})
		if err != nil {
			return n, wrapRead(err)
		}
	}
	if have {
		if err := done(); err != nil {
			return n, err
		}
	}
	return n, nil
}
