package clienttest

import (
	"sync"

	"github.com/moat-im/moat/client/localstore"
	"github.com/moat-im/moat/client/localstore/memstore"
)

// NewStore returns an in-memory localstore.Store for a test device:
// client/localstore/memstore, with what tests inspect.
func NewStore() *Store { return &Store{Store: memstore.New(), kinds: map[kindKey]bool{}} }

// Store is memstore.Store that remembers which (scope, kind) pairs were
// written, so that Snapshot can read every record, and whether it was
// wiped.
type Store struct {
	*memstore.Store
	mu    sync.Mutex
	kinds map[kindKey]bool
	wiped bool
}

type kindKey struct {
	scope localstore.Scope
	kind  string
}

var _ localstore.Store = (*Store)(nil)

type recTx struct {
	localstore.Tx
	s *Store
}

func (t recTx) Put(scope localstore.Scope, kind string, id, value []byte) error {
	t.s.mu.Lock()
	t.s.kinds[kindKey{scope, kind}] = true
	t.s.mu.Unlock()
	return t.Tx.Put(scope, kind, id, value)
}

// Update implements localstore.Store.
func (s *Store) Update(fn func(localstore.Tx) error) error {
	return s.Store.Update(func(tx localstore.Tx) error { return fn(recTx{tx, s}) })
}

// Wipe implements localstore.Store.
func (s *Store) Wipe() error {
	s.mu.Lock()
	s.wiped = true
	s.mu.Unlock()
	return s.Store.Wipe()
}

// Wiped reports whether Wipe was called.
func (s *Store) Wiped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wiped
}

// Snapshot returns every record, keyed by scope, kind and id, to compare
// states.
func (s *Store) Snapshot() map[string]string {
	s.mu.Lock()
	var ks []kindKey
	for k := range s.kinds {
		ks = append(ks, k)
	}
	s.mu.Unlock()
	out := map[string]string{}
	err := s.Store.View(func(tx localstore.Tx) error {
		for _, k := range ks {
			if err := tx.List(k.scope, k.kind, func(id, v []byte) error {
				out[string(k.scope)+"\x00"+k.kind+"\x00"+string(id)] = string(v)
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		panic("clienttest: snapshot: " + err.Error())
	}
	return out
}
