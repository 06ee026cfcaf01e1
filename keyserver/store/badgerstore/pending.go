package badgerstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/moat-im/moat/keyserver/store"
)

// WritePending implements store.DirectoryStore: one badger transaction
// that deletes the fragments of the pending versions it replaces and
// writes the new ones (schema.go), then one sync.
func (s *Store) WritePending(ctx context.Context, after uint64, w store.TenantWrite) error {
	end, err := s.beginWrite(ctx, "pending records")
	if err != nil {
		return err
	}
	defer end()
	if err := store.CheckPending(s.head.Load(), after, &w); err != nil {
		return err
	}
	var dels [][]byte
	err = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: pendingPrefix(w.ID)})
		defer it.Close()
		rec := make([]byte, 0, tenantRecordSize)
		for _, r := range w.Records {
			rec = append(append(append(rec[:0], prefixPending), w.ID[:]...), r.Key[:]...)
			for it.Seek(rec); it.Valid() && bytes.HasPrefix(it.Item().Key(), rec); it.Next() {
				dels = append(dels, it.Item().KeyCopy(nil))
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("badgerstore: pending records: %w", wrapRead(err))
	}
	wr := &writer{s: s, ctx: ctx}
	for _, k := range dels {
		if err = wr.set(entry{key: k, del: true}); err != nil {
			break
		}
	}
	for _, r := range w.Records {
		if err != nil {
			break
		}
		base := appendPendingBase(nil, w.ID, r.Key, after)
		for i, f := range fragments(after, r.Value, tenantFragSize) {
			if err = wr.set(entry{key: appendFragKey(make([]byte, 0, len(base)+fragNumSize), base, uint32(i)), val: f}); err != nil {
				break
			}
		}
	}
	if err == nil {
		err = wr.finish(false)
	} else if wr.txn != nil {
		wr.txn.Discard()
	}
	if errors.Is(err, errTooBig) {
		err = fmt.Errorf("%w: pending records do not fit one transaction", store.ErrInvalidCommit)
	}
	if err != nil {
		return fmt.Errorf("badgerstore: pending records of tenant %x: %w", w.ID, err)
	}
	return nil
}

// PendingRecords implements store.DirectoryStore, as TenantRecords does
// (one head, a snapshot opened between two loads of it).
func (s *Store) PendingRecords(ctx context.Context, id [16]byte, fn func(store.TenantKey, []byte) error) error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.closeMu.RUnlock()
	for {
		h := s.head.Load()
		if h == nil {
			return nil
		}
		txn := s.db.NewTransaction(false)
		if s.head.Load() != h {
			txn.Discard()
			continue
		}
		_, err := walkTenant(ctx, txn, pendingPrefix(id), h.Epoch, true, fn)
		txn.Discard()
		if err != nil {
			return fmt.Errorf("badgerstore: pending records of tenant %x: %w", id, err)
		}
		return nil
	}
}
