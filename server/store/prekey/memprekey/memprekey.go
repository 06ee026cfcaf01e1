// Package memprekey is an in-memory prekey.Store, for tests and for
// running the relay without persistence.
package memprekey

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/moat-im/moat/server/store/prekey"
)

// Store is an in-memory prekey.Store.
type Store struct {
	maxPool int

	mu     sync.Mutex
	closed bool
	devs   map[prekey.ID]*device
}

type device struct {
	single    map[prekey.Kind]prekey.Item
	pools     map[prekey.Kind]map[uint32][]byte
	exhausted map[prekey.Kind]uint64
}

// New returns an empty store whose pools hold at most maxPool items each
// (0: prekey.DefaultMaxPool).
func New(maxPool int) *Store {
	if maxPool <= 0 {
		maxPool = prekey.DefaultMaxPool
	}
	return &Store{maxPool: maxPool, devs: map[prekey.ID]*device{}}
}

func (s *Store) dev(id prekey.ID, create bool) *device {
	d := s.devs[id]
	if d == nil && create {
		d = &device{single: map[prekey.Kind]prekey.Item{}, pools: map[prekey.Kind]map[uint32][]byte{}, exhausted: map[prekey.Kind]uint64{}}
		s.devs[id] = d
	}
	return d
}

// Put implements prekey.Store.
func (s *Store) Put(ctx context.Context, id prekey.ID, items []prekey.Item) error {
	if err := prekey.CheckPut(items); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return prekey.ErrClosed
	}
	d := s.dev(id, false)
	// Check the quota first, so that a refused Put changes nothing.
	added := map[prekey.Kind]map[uint32]bool{}
	for _, it := range items {
		if !it.Kind.Pool() {
			continue
		}
		if added[it.Kind] == nil {
			added[it.Kind] = map[uint32]bool{}
		}
		if d != nil {
			if _, ok := d.pools[it.Kind][it.ID]; ok {
				continue
			}
		}
		added[it.Kind][it.ID] = true
	}
	for k, ids := range added {
		have := 0
		if d != nil {
			have = len(d.pools[k])
		}
		if have+len(ids) > s.maxPool {
			return fmt.Errorf("%w: kind %d", prekey.ErrQuota, k)
		}
	}
	d = s.dev(id, true)
	for _, it := range items {
		rec := bytes.Clone(it.Record)
		if it.Kind.Singleton() {
			d.single[it.Kind] = prekey.Item{Kind: it.Kind, ID: it.ID, Record: rec}
			continue
		}
		if d.pools[it.Kind] == nil {
			d.pools[it.Kind] = map[uint32][]byte{}
		}
		d.pools[it.Kind][it.ID] = rec
		delete(d.exhausted, it.Kind)
	}
	return nil
}

// Take implements prekey.Store.
func (s *Store) Take(ctx context.Context, id prekey.ID, get, take []prekey.Kind) ([]prekey.Item, error) {
	if err := prekey.CheckTake(get, take); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, prekey.ErrClosed
	}
	d := s.dev(id, true)
	var out []prekey.Item
	for _, k := range get {
		if it, ok := d.single[k]; ok {
			out = append(out, prekey.Item{Kind: k, ID: it.ID, Record: bytes.Clone(it.Record)})
		}
	}
	for _, k := range take {
		p := d.pools[k]
		if len(p) == 0 {
			d.exhausted[k]++
			continue
		}
		low := slices.Min(mapsKeys(p))
		out = append(out, prekey.Item{Kind: k, ID: low, Record: p[low]})
		delete(p, low)
	}
	return out, nil
}

func mapsKeys(m map[uint32][]byte) []uint32 {
	ks := make([]uint32, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// Status implements prekey.Store.
func (s *Store) Status(ctx context.Context, id prekey.ID) (prekey.Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return prekey.Status{}, prekey.ErrClosed
	}
	st := prekey.NewStatus()
	d := s.dev(id, false)
	if d == nil {
		return st, nil
	}
	for k := range d.single {
		st.Has[k] = true
	}
	for k, p := range d.pools {
		if len(p) > 0 {
			st.Pools[k] = len(p)
		}
	}
	for k, n := range d.exhausted {
		st.Exhausted[k] = n
	}
	return st, nil
}

// Delete implements prekey.Store.
func (s *Store) Delete(ctx context.Context, id prekey.ID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return prekey.ErrClosed
	}
	delete(s.devs, id)
	return nil
}

// Close implements prekey.Store.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.devs = nil
	return nil
}
