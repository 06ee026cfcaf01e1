package memstore

import (
	"bytes"
	"context"
	"slices"
	"time"

	"github.com/moat-im/moat/keyserver/store"
)

// side is what the store keeps beside the epochs: lodged records
// (store.LodgedStore) and VRF outputs (store.VRFCacheStore), guarded by
// Store.mu like the rest.
type side struct {
	lodged map[[16]byte]map[store.LodgedKey]lodged
	vrf    map[[32]byte]map[[32]byte][]byte
}

type lodged struct {
	value   []byte
	expires time.Time
}

// PutLodged implements store.LodgedStore.
func (s *Store) PutLodged(ctx context.Context, id [16]byte, key store.LodgedKey, value []byte, expires, now time.Time) error {
	if err := store.CheckLodged(value, expires, now); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	t := s.side.lodged[id]
	if t == nil {
		if len(value) == 0 {
			return nil
		}
		if s.side.lodged == nil {
			s.side.lodged = map[[16]byte]map[store.LodgedKey]lodged{}
		}
		t = map[store.LodgedKey]lodged{}
		s.side.lodged[id] = t
	}
	for k, r := range t {
		if store.LodgedExpired(r.expires, now) {
			delete(t, k)
		}
	}
	if len(value) == 0 {
		delete(t, key)
	} else {
		t[key] = lodged{bytes.Clone(value), expires}
	}
	return nil
}

// LodgedRecords implements store.LodgedStore.
func (s *Store) LodgedRecords(ctx context.Context, id [16]byte, now time.Time, fn func(store.LodgedKey, []byte, time.Time) error) error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return store.ErrClosed
	}
	t := s.side.lodged[id]
	keys := make([]store.LodgedKey, 0, len(t))
	recs := make(map[store.LodgedKey]lodged, len(t))
	for k, r := range t {
		if !store.LodgedExpired(r.expires, now) {
			keys = append(keys, k)
			recs[k] = lodged{bytes.Clone(r.value), r.expires}
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(keys, func(a, b store.LodgedKey) int { return bytes.Compare(a[:], b[:]) })
	for _, k := range keys {
		if err := fn(k, recs[k].value, recs[k].expires); err != nil {
			return err
		}
	}
	return nil
}

// PutVRFOutputs implements store.VRFCacheStore.
func (s *Store) PutVRFOutputs(ctx context.Context, key [32]byte, outs []store.VRFOutput) error {
	if err := store.CheckVRFOutputs(outs); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	if s.side.vrf == nil {
		s.side.vrf = map[[32]byte]map[[32]byte][]byte{}
	}
	m := s.side.vrf[key]
	if m == nil {
		m = map[[32]byte][]byte{}
		s.side.vrf[key] = m
	}
	for _, o := range outs {
		m[o.Input] = bytes.Clone(o.Output)
	}
	return nil
}

// GetVRFOutputs implements store.VRFCacheStore.
func (s *Store) GetVRFOutputs(ctx context.Context, key [32]byte, inputs [][32]byte, fn func(int, []byte)) error {
	if err := store.CheckVRFInputs(len(inputs)); err != nil {
		return err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return store.ErrClosed
	}
	m := s.side.vrf[key]
	found := make([][]byte, len(inputs))
	for i, in := range inputs {
		if o, ok := m[in]; ok {
			found[i] = bytes.Clone(o)
		}
	}
	s.mu.RUnlock()
	for i, o := range found {
		if o != nil {
			fn(i, o)
		}
	}
	return nil
}

// DropVRFOutputs implements store.VRFCacheStore.
func (s *Store) DropVRFOutputs(ctx context.Context, keep [32]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	for k := range s.side.vrf {
		if k != keep {
			delete(s.side.vrf, k)
		}
	}
	return nil
}
