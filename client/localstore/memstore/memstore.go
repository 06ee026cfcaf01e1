// Package memstore is an in-memory localstore.Store for tests. It seals
// nothing and erases only in the sense of dropping references; it passes
// the storetest conformance suite.
package memstore

import (
	"bytes"
	"slices"
	"sync"

	"github.com/moat-im/moat/client/localstore"
)

type recordKey struct {
	scope localstore.Scope
	kind  string
}

// data maps (scope, kind) to id to value. Values are never mutated in
// place, so a clone of the maps may share them.
type data map[recordKey]map[string][]byte

func (d data) clone() data {
	c := make(data, len(d))
	for k, m := range d {
		c[k] = maps(m)
	}
	return c
}

func maps(m map[string][]byte) map[string][]byte {
	c := make(map[string][]byte, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// Store is an in-memory localstore.Store. Safe for concurrent use.
type Store struct {
	wmu    sync.Mutex // serialises Update
	mu     sync.RWMutex
	d      data
	closed bool
}

var _ localstore.Store = (*Store)(nil)

// New returns an empty Store.
func New() *Store { return &Store{d: data{}} }

// Update runs fn on a private copy of the data and installs it if fn
// returns nil.
func (s *Store) Update(fn func(localstore.Tx) error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return localstore.ErrClosed
	}
	tx := &tx{d: s.d.clone(), write: true}
	s.mu.RUnlock()
	err := fn(tx)
	tx.done = true
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return localstore.ErrClosed
	}
	s.d = tx.d
	return nil
}

// View runs fn on the current data.
func (s *Store) View(fn func(localstore.Tx) error) error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return localstore.ErrClosed
	}
	tx := &tx{d: s.d}
	s.mu.RUnlock()
	err := fn(tx)
	tx.done = true
	return err
}

// Wipe drops every record and closes the store.
func (s *Store) Wipe() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = data{}
	s.closed = true
	return nil
}

// Close closes the store; its data is lost.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

type tx struct {
	d     data
	write bool
	done  bool
}

func (t *tx) check(write bool) error {
	if t.done {
		return localstore.ErrTxDone
	}
	if write && !t.write {
		return localstore.ErrReadOnly
	}
	return nil
}

func (t *tx) Get(scope localstore.Scope, kind string, id []byte) ([]byte, error) {
	if err := t.check(false); err != nil {
		return nil, err
	}
	if err := localstore.CheckName(scope, kind, id); err != nil {
		return nil, err
	}
	v, ok := t.d[recordKey{scope, kind}][string(id)]
	if !ok {
		return nil, localstore.ErrNotFound
	}
	return bytes.Clone(v), nil
}

func (t *tx) Put(scope localstore.Scope, kind string, id, value []byte) error {
	if err := t.check(true); err != nil {
		return err
	}
	if err := localstore.CheckName(scope, kind, id); err != nil {
		return err
	}
	if err := localstore.CheckValue(value); err != nil {
		return err
	}
	k := recordKey{scope, kind}
	m := t.d[k]
	if m == nil {
		m = map[string][]byte{}
		t.d[k] = m
	}
	v := make([]byte, len(value))
	copy(v, value)
	m[string(id)] = v
	return nil
}

func (t *tx) Delete(scope localstore.Scope, kind string, id []byte) error {
	if err := t.check(true); err != nil {
		return err
	}
	if err := localstore.CheckName(scope, kind, id); err != nil {
		return err
	}
	delete(t.d[recordKey{scope, kind}], string(id))
	return nil
}

func (t *tx) List(scope localstore.Scope, kind string, fn func(id, value []byte) error) error {
	if err := t.check(false); err != nil {
		return err
	}
	if err := localstore.CheckName(scope, kind, nil); err != nil {
		return err
	}
	m := t.d[recordKey{scope, kind}]
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if err := fn([]byte(id), bytes.Clone(m[id])); err != nil {
			return err
		}
	}
	return nil
}

func (t *tx) DeleteScope(scope localstore.Scope) error {
	if err := t.check(true); err != nil {
		return err
	}
	if err := localstore.CheckName(scope, "", nil); err != nil {
		return err
	}
	for k := range t.d {
		if k.scope == scope {
			delete(t.d, k)
		}
	}
	return nil
}
