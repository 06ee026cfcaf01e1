// Package memstore is an in-memory store.DirectoryStore, for tests and
// for running the directory without persistence. Nothing survives the
// process.
package memstore

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/store"
	"github.com/moat-im/moat/keyserver/vmap"
)

// Store is an in-memory DirectoryStore. A commit is validated without
// blocking readers, then applied under a write lock, so a reader sees the
// state before or after it and nothing in between.
type Store struct {
	commitMu sync.Mutex // serialises CommitEpoch

	mu      sync.RWMutex
	closed  bool
	head    *store.Head // nil when empty
	nodes   map[vmap.NodeKey]vmap.Node
	log     map[tlog.NodeID]tlog.Hash
	values  map[vmap.Label][][]byte // index version-1
	sums    map[vmap.Label][][]byte // summaries, index version-1
	tenants map[[16]byte]map[store.TenantKey][]byte
	// pending are the tenants' pending records (WritePending), by tenant:
	// the epoch they follow and the records, a deletion as an empty value.
	pending map[[16]byte]*pendingTenant
	// transitions are the kept transitions, by epoch.
	transitions []store.Transition
	// side holds the lodged records and VRF outputs (side.go).
	side side
}

// New returns an empty Store.
func New() *Store {
	return &Store{
		nodes:   make(map[vmap.NodeKey]vmap.Node),
		log:     make(map[tlog.NodeID]tlog.Hash),
		values:  make(map[vmap.Label][][]byte),
		sums:    make(map[vmap.Label][][]byte),
		tenants: make(map[[16]byte]map[store.TenantKey][]byte),
		pending: make(map[[16]byte]*pendingTenant),
	}
}

type pendingTenant struct {
	after uint64
	recs  map[store.TenantKey][]byte
}

var _ store.DirectoryStore = (*Store)(nil)

// Head implements store.DirectoryStore.
func (s *Store) Head(ctx context.Context) (store.Head, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.Head{}, store.ErrClosed
	}
	if s.head == nil {
		return store.Head{}, store.ErrEmpty
	}
	return s.head.Clone(), nil
}

// GetNodes implements store.DirectoryStore (vmap.NodeStore).
func (s *Store) GetNodes(keys []vmap.NodeKey) ([]vmap.Node, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	out := make([]vmap.Node, len(keys))
	for i, k := range keys {
		n, ok := s.nodes[k]
		if !ok {
			return nil, fmt.Errorf("memstore: map node %v: %w", k, vmap.ErrNodeNotFound)
		}
		out[i] = n
	}
	return out, nil
}

// ReadNodes implements store.DirectoryStore (tlog.NodeReader).
func (s *Store) ReadNodes(ctx context.Context, ids []tlog.NodeID) ([]tlog.Hash, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	out := make([]tlog.Hash, len(ids))
	for i, id := range ids {
		h, ok := s.log[id]
		if !ok {
			return nil, fmt.Errorf("memstore: log node (%d, %d): %w", id.Level, id.Index, store.ErrNotFound)
		}
		out[i] = h
	}
	return out, nil
}

// Values implements store.DirectoryStore.
func (s *Store) Values(ctx context.Context, label vmap.Label, from, to uint32) ([][]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	vs := s.values[label]
	if from == 0 || from > to || uint64(to) > uint64(len(vs)) {
		return nil, fmt.Errorf("memstore: label %x versions %d..%d (latest %d): %w", label[:], from, to, len(vs), store.ErrNotFound)
	}
	out := make([][]byte, 0, to-from+1)
	for _, r := range vs[from-1 : to] {
		out = append(out, bytes.Clone(r))
	}
	return out, nil
}

// LatestVersion implements store.DirectoryStore.
func (s *Store) LatestVersion(ctx context.Context, label vmap.Label) (uint32, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, store.ErrClosed
	}
	return uint32(len(s.values[label])), nil
}

// LatestValue implements store.DirectoryStore.
func (s *Store) LatestValue(ctx context.Context, label vmap.Label) (uint32, []byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, nil, store.ErrClosed
	}
	n, v := latest(s.values[label])
	return n, v, nil
}

// LatestSummary implements store.DirectoryStore.
func (s *Store) LatestSummary(ctx context.Context, label vmap.Label) (uint32, []byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, nil, store.ErrClosed
	}
	n, v := latest(s.sums[label])
	return n, v, nil
}

// latest returns how many versions vs holds and a copy of the last one.
func latest(vs [][]byte) (uint32, []byte) {
	if len(vs) == 0 {
		return 0, nil
	}
	return uint32(len(vs)), bytes.Clone(vs[len(vs)-1])
}

// TenantRecords implements store.DirectoryStore. It copies the tenant's
// records under the read lock, then calls fn without it.
func (s *Store) TenantRecords(ctx context.Context, id [16]byte, fn func(store.TenantKey, []byte) error) error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return store.ErrClosed
	}
	recs := make([]store.TenantRecord, 0, len(s.tenants[id]))
	for k, v := range s.tenants[id] {
		recs = append(recs, store.TenantRecord{Key: k, Value: v}) // never modified: replaced on write
	}
	s.mu.RUnlock()
	if len(recs) == 0 {
		return fmt.Errorf("memstore: tenant %x: %w", id, store.ErrNotFound)
	}
	return eachSorted(ctx, recs, fn)
}

// eachSorted calls fn for each of recs in key order, until fn or ctx
// fails. It sorts recs in place.
func eachSorted(ctx context.Context, recs []store.TenantRecord, fn func(store.TenantKey, []byte) error) error {
	slices.SortFunc(recs, func(a, b store.TenantRecord) int { return bytes.Compare(a.Key[:], b.Key[:]) })
	for _, r := range recs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(r.Key, r.Value); err != nil {
			return err
		}
	}
	return nil
}

// WritePending implements store.DirectoryStore.
func (s *Store) WritePending(ctx context.Context, after uint64, w store.TenantWrite) error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	if s.isClosed() {
		return store.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: pending records: %w", err)
	}
	if err := store.CheckPending(s.head, after, &w); err != nil {
		return err
	}
	recs := make([]store.TenantRecord, len(w.Records))
	for i, r := range w.Records {
		recs[i] = store.TenantRecord{Key: r.Key, Value: bytes.Clone(r.Value)}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pending[w.ID]
	if p == nil || p.after != after {
		p = &pendingTenant{after: after, recs: make(map[store.TenantKey][]byte, len(recs))}
		s.pending[w.ID] = p
	}
	for _, r := range recs {
		p.recs[r.Key] = r.Value
	}
	return nil
}

// PendingRecords implements store.DirectoryStore.
func (s *Store) PendingRecords(ctx context.Context, id [16]byte, fn func(store.TenantKey, []byte) error) error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return store.ErrClosed
	}
	var recs []store.TenantRecord
	if p := s.pending[id]; p != nil && s.head != nil && p.after == s.head.Epoch {
		for k, v := range p.recs {
			recs = append(recs, store.TenantRecord{Key: k, Value: v}) // replaced on write, never modified
		}
	}
	s.mu.RUnlock()
	return eachSorted(ctx, recs, fn)
}

// CommitEpoch implements store.DirectoryStore.
func (s *Store) CommitEpoch(ctx context.Context, c *store.EpochCommit) error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	// Only commits change the maps, and they hold commitMu: reading
	// without mu is safe here.
	if s.isClosed() {
		return store.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: epoch commit: %w", err)
	}
	runs, err := c.Check(s.head)
	if err != nil {
		return err
	}
	for _, r := range runs {
		if latest := uint32(len(s.values[r.Label])); r.First != latest+1 {
			return fmt.Errorf("%w: label %x version %d, latest is %d", store.ErrConflict, r.Label[:], r.First, latest)
		}
	}
	var newLog []tlog.Node
	for _, n := range c.LogNodes {
		if h, ok := s.log[n.ID]; ok {
			if h != n.Hash {
				return fmt.Errorf("%w: log node (%d, %d) rewritten with another hash", store.ErrConflict, n.ID.Level, n.ID.Index)
			}
			continue
		}
		newLog = append(newLog, n)
	}
	// Copy everything before taking the write lock. Check made each
	// label's versions consecutive; append them in version order.
	order := make([]int, len(c.Values))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		if x := bytes.Compare(c.Values[a].Label[:], c.Values[b].Label[:]); x != 0 {
			return x
		}
		return cmp.Compare(c.Values[a].Version, c.Values[b].Version)
	})
	records := make([][]byte, len(order))
	sums := make([][]byte, len(order))
	for j, i := range order {
		records[j] = bytes.Clone(c.Values[i].Record)
		sums[j] = bytes.Clone(c.Values[i].Summary)
	}
	tenants := make([]store.TenantWrite, len(c.Tenants))
	for i, t := range c.Tenants {
		tenants[i] = store.TenantWrite{ID: t.ID, Records: make([]store.TenantRecord, len(t.Records))}
		for j, r := range t.Records {
			tenants[i].Records[j] = store.TenantRecord{Key: r.Key, Value: bytes.Clone(r.Value)}
		}
	}
	head := c.Head.Clone()

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, kn := range c.Map.Nodes {
		s.nodes[kn.Key] = kn.Node
	}
	for _, n := range newLog {
		s.log[n.ID] = n.Hash
	}
	for j, i := range order {
		l := c.Values[i].Label
		s.values[l] = append(s.values[l], records[j])
		s.sums[l] = append(s.sums[l], sums[j])
	}
	for _, t := range tenants {
		m := s.tenants[t.ID]
		if m == nil {
			m = make(map[store.TenantKey][]byte, len(t.Records))
			s.tenants[t.ID] = m
		}
		for _, r := range t.Records {
			if len(r.Value) == 0 {
				delete(m, r.Key)
			} else {
				m[r.Key] = r.Value
			}
		}
		if len(m) == 0 {
			delete(s.tenants, t.ID)
		}
	}
	if c.Transition {
		s.transitions = append(s.transitions, store.Transition{Epoch: c.Epoch, Checkpoint: bytes.Clone(head.Checkpoint)})
	}
	s.head = &head
	clear(s.pending) // superseded by the epoch
	return nil
}

// Transitions implements store.DirectoryStore.
func (s *Store) Transitions(ctx context.Context) ([]store.Transition, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	out := make([]store.Transition, len(s.transitions))
	for i, tr := range s.transitions {
		out[i] = store.Transition{Epoch: tr.Epoch, Checkpoint: bytes.Clone(tr.Checkpoint)}
	}
	return out, nil
}

// UpdateHeadCheckpoint implements store.DirectoryStore.
func (s *Store) UpdateHeadCheckpoint(ctx context.Context, epoch uint64, checkpoint []byte) error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	if s.isClosed() {
		return store.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: head checkpoint: %w", err)
	}
	if err := store.CheckHeadCheckpoint(s.head, epoch, checkpoint); err != nil {
		return err
	}
	h := s.head.Clone()
	h.Checkpoint = bytes.Clone(checkpoint)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.head = &h
	if n := len(s.transitions); n > 0 && s.transitions[n-1].Epoch == epoch {
		s.transitions[n-1].Checkpoint = bytes.Clone(checkpoint)
	}
	return nil
}

func (s *Store) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

// Close implements store.DirectoryStore. It drops the contents.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.nodes, s.log, s.values, s.tenants, s.pending, s.head, s.transitions = nil, nil, nil, nil, nil, nil, nil
	s.side = side{}
	return nil
}
