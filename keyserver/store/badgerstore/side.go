package badgerstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/moat-im/moat/keyserver/store"
)

// What the store keeps beside the epochs (schema.go):
//
//	"A" || tenant[16] || lodged key[33]       int64 expires (Unix ns) || value
//	"B" || VRF key id[32] || input[32]        VRF output
//
// Lodged records (store.LodgedStore) are one badger value each, written
// and deleted by PutLodged in one transaction and one sync; they are not
// versioned by epoch and no head filters them. VRF outputs
// (store.VRFCacheStore) are written without a sync.

const (
	prefixLodged = 'A'
	prefixVRF    = 'B'

	lodgedKeySize = 1 + 16 + store.LodgedKeySize
	vrfKeySize    = 1 + 32 + 32
)

func lodgedPrefix(id [16]byte) []byte { return append([]byte{prefixLodged}, id[:]...) }

// decodeLodged splits a lodged record's value into its expiry and value.
func decodeLodged(v []byte) (time.Time, []byte, error) {
	if len(v) <= 8 || len(v) > 8+store.MaxLodgedSize {
		return time.Time{}, nil, fmt.Errorf("%w: lodged record of %d bytes", store.ErrCorrupt, len(v))
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(v))), v[8:], nil
}

// PutLodged implements store.LodgedStore.
func (s *Store) PutLodged(ctx context.Context, id [16]byte, key store.LodgedKey, value []byte, expires, now time.Time) error {
	if err := store.CheckLodged(value, expires, now); err != nil {
		return err
	}
	end, err := s.beginWrite(ctx, "lodged record")
	if err != nil {
		return err
	}
	defer end()
	k := append(lodgedPrefix(id), key[:]...)
	var dels [][]byte
	err = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: lodgedPrefix(id)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			if bytes.Equal(item.Key(), k) {
				continue
			}
			err := item.Value(func(v []byte) error {
				exp, _, err := decodeLodged(v)
				if err == nil && store.LodgedExpired(exp, now) {
					dels = append(dels, item.KeyCopy(nil))
				}
				return err
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("badgerstore: lodged records: %w", wrapRead(err))
	}
	wr := &writer{s: s, ctx: ctx}
	for _, d := range dels {
		if err = wr.set(entry{key: d, del: true}); err != nil {
			break
		}
	}
	if err == nil {
		if len(value) == 0 {
			err = wr.set(entry{key: k, del: true})
		} else {
			v := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(value)), uint64(expires.UnixNano()))
			err = wr.set(entry{key: k, val: append(v, value...)})
		}
	}
	if err == nil {
		err = wr.finish(false)
	} else if wr.txn != nil {
		wr.txn.Discard()
	}
	if errors.Is(err, errTooBig) {
		err = fmt.Errorf("%w: lodged records do not fit one transaction", store.ErrInvalidCommit)
	}
	if err != nil {
		return fmt.Errorf("badgerstore: lodged record of tenant %x: %w", id, err)
	}
	return nil
}

// LodgedRecords implements store.LodgedStore.
func (s *Store) LodgedRecords(ctx context.Context, id [16]byte, now time.Time, fn func(store.LodgedKey, []byte, time.Time) error) error {
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.closeMu.RUnlock()
	err := s.db.View(func(txn *badger.Txn) error {
		p := lodgedPrefix(id)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: p})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			if len(item.Key()) != lodgedKeySize {
				return fmt.Errorf("%w: lodged key %x", store.ErrCorrupt, item.Key())
			}
			key := store.LodgedKey(item.Key()[len(p):])
			v, err := item.ValueCopy(nil)
			if err != nil {
				return wrapRead(err)
			}
			exp, val, err := decodeLodged(v)
			if err != nil {
				return err
			}
			if store.LodgedExpired(exp, now) {
				continue
			}
			if err := fn(key, val, exp); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("badgerstore: lodged records of tenant %x: %w", id, err)
	}
	return nil
}

func appendVRFKey(b []byte, key, input *[32]byte) []byte {
	b = append(b, prefixVRF)
	b = append(b, key[:]...)
	return append(b, input[:]...)
}

// PutVRFOutputs implements store.VRFCacheStore: transactions of up to the
// badger limit, without a sync.
func (s *Store) PutVRFOutputs(ctx context.Context, key [32]byte, outs []store.VRFOutput) error {
	if err := store.CheckVRFOutputs(outs); err != nil {
		return err
	}
	end, err := s.beginWrite(ctx, "VRF outputs")
	if err != nil {
		return err
	}
	defer end()
	buf := make([]byte, 0, len(outs)*vrfKeySize)
	return s.writeSide(ctx, true, len(outs), func(i int) entry {
		buf = appendVRFKey(buf, &key, &outs[i].Input)
		return entry{key: buf[len(buf)-vrfKeySize:], val: outs[i].Output}
	})
}

// writeSide writes the n entries at(0) … at(n-1) in split transactions
// (without a sync if noSync), or none of them if one fails.
func (s *Store) writeSide(ctx context.Context, noSync bool, n int, at func(int) entry) error {
	wr := &writer{s: s, ctx: ctx, split: true, noSync: noSync}
	var err error
	for i := 0; i < n && err == nil; i++ {
		err = wr.set(at(i))
	}
	if err == nil {
		err = wr.finish(false)
	} else if wr.txn != nil {
		wr.txn.Discard()
	}
	if err != nil {
		return fmt.Errorf("badgerstore: VRF outputs: %w", err)
	}
	return nil
}

// GetVRFOutputs implements store.VRFCacheStore: one read transaction,
// the inputs looked up in key order.
func (s *Store) GetVRFOutputs(ctx context.Context, key [32]byte, inputs [][32]byte, fn func(int, []byte)) error {
	if err := store.CheckVRFInputs(len(inputs)); err != nil {
		return err
	}
	if err := s.acquire(); err != nil {
		return err
	}
	defer s.closeMu.RUnlock()
	order := make([]int32, len(inputs))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int { return bytes.Compare(inputs[a][:], inputs[b][:]) })
	found := make([][]byte, len(inputs))
	err := s.db.View(func(txn *badger.Txn) error {
		k := make([]byte, 0, vrfKeySize)
		for n, i := range order {
			if n%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			item, err := txn.Get(appendVRFKey(k[:0], &key, &inputs[i]))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return wrapRead(err)
			}
			if item.ValueSize() > store.MaxVRFOutputSize {
				return fmt.Errorf("%w: VRF output of %d bytes", store.ErrCorrupt, item.ValueSize())
			}
			if found[i], err = item.ValueCopy(nil); err != nil {
				return wrapRead(err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("badgerstore: VRF outputs: %w", err)
	}
	for i, o := range found {
		if o != nil {
			fn(i, o)
		}
	}
	return nil
}

// DropVRFOutputs implements store.VRFCacheStore.
func (s *Store) DropVRFOutputs(ctx context.Context, keep [32]byte) error {
	end, err := s.beginWrite(ctx, "VRF outputs")
	if err != nil {
		return err
	}
	defer end()
	var dels [][]byte
	err = s.db.View(func(txn *badger.Txn) error {
		var err error
		dels, err = keysWithPrefix(txn, []byte{prefixVRF}, func(k []byte) bool {
			return len(k) < 33 || !bytes.Equal(k[1:33], keep[:])
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("badgerstore: VRF outputs: %w", wrapRead(err))
	}
	return s.writeSide(ctx, false, len(dels), func(i int) entry { return entry{key: dels[i], del: true} })
}
