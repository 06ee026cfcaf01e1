package badgerstore

// Head checkpoint updates (store.DirectoryStore.UpdateHeadCheckpoint).
//
// An update of the head of epoch e writes the next version s (1, 2, …) of
// the blob "C" || e || s, in fragments below the value threshold as
// tenant states are, so that superseded versions leave no value-log
// garbage; in the same transaction it deletes every older "C" key, of
// this epoch or an earlier one, except the latest version of an earlier
// transition epoch. Then it syncs, and only then moves the in-memory
// head. Reading the head (Open) takes the checkpoint of the latest version
// of the head's epoch, if there is one, in place of the one "H" || e
// holds: "H" keeps the checkpoint the commit wrote, as the checkpoint
// history. A commit deletes the versions of earlier epochs (cleanup, gc.go),
// which no head shows any more, except those transitions keep.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/moat-im/moat/keyserver/store"
)

// UpdateHeadCheckpoint implements store.DirectoryStore.
func (s *Store) UpdateHeadCheckpoint(ctx context.Context, epoch uint64, checkpoint []byte) error {
	end, err := s.beginWrite(ctx, "head checkpoint")
	if err != nil {
		return err
	}
	defer end()
	h := s.head.Load()
	if err := store.CheckHeadCheckpoint(h, epoch, checkpoint); err != nil {
		return err
	}
	seq := uint64(1)
	if s.noteEpoch == epoch && s.noteSeq > 0 {
		seq = s.noteSeq + 1
	}
	var dels [][]byte
	err = s.db.View(func(txn *badger.Txn) error {
		var err error
		if dels, err = checkpointGarbage(txn, epoch); err != nil {
			return err
		}
		own, err := keysWithPrefix(txn, binary.BigEndian.AppendUint64([]byte{prefixCheckpoint}, epoch), nil)
		dels = append(dels, own...)
		return err
	})
	if err != nil {
		return fmt.Errorf("badgerstore: head checkpoint: %w", wrapRead(err))
	}
	w := &writer{s: s, ctx: ctx}
	base := checkpointBase(epoch, seq)
	for i, f := range fragments(epoch, checkpoint, tenantFragSize) {
		if err := w.set(entry{key: appendFragKey(nil, base, uint32(i)), val: f}); err != nil {
			return fmt.Errorf("badgerstore: head checkpoint: %w", err)
		}
	}
	for _, k := range dels {
		if err := w.set(entry{key: k, del: true}); err != nil {
			return fmt.Errorf("badgerstore: head checkpoint: %w", err)
		}
	}
	if err := w.finish(false); err != nil {
		return fmt.Errorf("badgerstore: head checkpoint: %w", err)
	}
	s.noteEpoch, s.noteSeq = epoch, seq
	nh := h.Clone()
	nh.Checkpoint = append([]byte(nil), checkpoint...)
	s.head.Store(&nh)
	return nil
}

func checkpointBase(epoch, seq uint64) []byte {
	b := binary.BigEndian.AppendUint64([]byte{prefixCheckpoint}, epoch)
	return binary.BigEndian.AppendUint64(b, seq)
}

// readHeadCheckpoint returns the latest checkpoint update of epoch and
// its version, or nil and 0 if there is none.
func (s *Store) readHeadCheckpoint(epoch uint64) ([]byte, uint64, error) {
	var out []byte
	var seq uint64
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		out, seq, err = latestCheckpoint(txn, epoch)
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("badgerstore: reading head checkpoint: %w", wrapRead(err))
	}
	return out, seq, nil
}

// latestCheckpoint returns the latest checkpoint update of epoch and its
// version, or nil and 0 if there is none.
func latestCheckpoint(txn *badger.Txn, epoch uint64) ([]byte, uint64, error) {
	prefix := binary.BigEndian.AppendUint64([]byte{prefixCheckpoint}, epoch)
	keys, err := keysWithPrefix(txn, prefix, nil)
	if err != nil {
		return nil, 0, err
	}
	var seq uint64
	for _, k := range keys {
		if len(k) != checkpointBaseSize+fragNumSize {
			return nil, 0, fmt.Errorf("%w: checkpoint key %x", store.ErrCorrupt, k)
		}
		seq = max(seq, binary.BigEndian.Uint64(k[1+8:]))
	}
	if seq == 0 {
		return nil, 0, nil
	}
	e, data, err := readBlob(txn, checkpointBase(epoch, seq), store.MaxCheckpointSize)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			err = fmt.Errorf("%w: checkpoint %d of epoch %d has no first fragment", store.ErrCorrupt, seq, epoch)
		}
		return nil, 0, err
	}
	if e != epoch || len(data) == 0 {
		return nil, 0, fmt.Errorf("%w: checkpoint %d of epoch %d", store.ErrCorrupt, seq, epoch)
	}
	return data, seq, nil
}

// checkpointGarbage returns the keys of checkpoint updates of epochs
// before epoch, except the latest version of each transition epoch.
func checkpointGarbage(txn *badger.Txn, epoch uint64) ([][]byte, error) {
	keep, err := transitionCheckpoints(txn)
	if err != nil {
		return nil, err
	}
	return keysWithPrefix(txn, []byte{prefixCheckpoint}, func(k []byte) bool {
		if len(k) < 1+8+8 {
			return true
		}
		e := binary.BigEndian.Uint64(k[1:])
		seq, kept := keep[e]
		return e < epoch && (!kept || binary.BigEndian.Uint64(k[1+8:]) != seq)
	})
}

// transitionCheckpoints returns the transition epochs with the latest
// "C" version of each (0 if none).
func transitionCheckpoints(txn *badger.Txn) (map[uint64]uint64, error) {
	keys, err := keysWithPrefix(txn, []byte{prefixTransition}, nil)
	if err != nil {
		return nil, err
	}
	out := make(map[uint64]uint64, len(keys))
	for _, k := range keys {
		if len(k) != 1+8 {
			return nil, fmt.Errorf("%w: transition key %x", store.ErrCorrupt, k)
		}
		e := keyEpoch(k)
		_, seq, err := latestCheckpoint(txn, e)
		if err != nil {
			return nil, err
		}
		out[e] = seq
	}
	return out, nil
}

// Transitions implements store.DirectoryStore.
func (s *Store) Transitions(ctx context.Context) ([]store.Transition, error) {
	if err := s.acquire(); err != nil {
		return nil, err
	}
	defer s.closeMu.RUnlock()
	h := s.head.Load()
	if h == nil {
		return nil, nil
	}
	var out []store.Transition
	err := s.db.View(func(txn *badger.Txn) error {
		keys, err := keysWithPrefix(txn, []byte{prefixTransition}, nil)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if len(k) != 1+8 {
				return fmt.Errorf("%w: transition key %x", store.ErrCorrupt, k)
			}
			e := keyEpoch(k)
			if e > h.Epoch {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			cp, seq, err := latestCheckpoint(txn, e)
			if err != nil {
				return err
			}
			if seq == 0 {
				item, err := txn.Get(headAtKey(e))
				if err != nil {
					return fmt.Errorf("%w: head of transition epoch %d: %v", store.ErrCorrupt, e, err)
				}
				if err := item.Value(func(v []byte) error {
					x, err := decodeHead(v)
					if err == nil && (x.Epoch != e || len(x.Checkpoint) == 0) {
						err = fmt.Errorf("%w: head of transition epoch %d", store.ErrCorrupt, e)
					}
					cp = x.Checkpoint
					return err
				}); err != nil {
					return err
				}
			}
			out = append(out, store.Transition{Epoch: e, Checkpoint: cp})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("badgerstore: reading transitions: %w", wrapRead(err))
	}
	return out, nil
}
