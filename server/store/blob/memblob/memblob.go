// Package memblob is an in-memory blob.Store for tests: it holds every
// blob whole in memory, so it is no model of the streaming a real backend
// must do.
package memblob

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/moat-im/moat/server/store/blob"
)

// Options configures a Store.
type Options struct {
	Limits blob.Limits
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Store is an in-memory blob.Store.
type Store struct {
	limits blob.Limits
	now    func() time.Time

	mu     sync.Mutex
	closed bool
	blobs  map[blob.ID]*entry
}

type entry struct {
	size      int64
	expiresMs int64
	final     bool
	tag       blob.Tag
	data      []byte
}

var _ blob.Store = (*Store)(nil)

// New returns an empty Store.
func New(opts Options) (*Store, error) {
	l, err := opts.Limits.WithDefaults()
	if err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Store{limits: l, now: opts.Now, blobs: make(map[blob.ID]*entry)}, nil
}

// get returns a live blob; s.mu is held.
func (s *Store) get(id blob.ID) (*entry, error) {
	if s.closed {
		return nil, blob.ErrClosed
	}
	e := s.blobs[id]
	if e == nil || e.expiresMs <= s.now().UnixMilli() {
		return nil, fmt.Errorf("memblob: %v: %w", id, blob.ErrNotFound)
	}
	return e, nil
}

// Create implements blob.Store.
func (s *Store) Create(ctx context.Context, size int64, expires time.Time, tag blob.Tag) (blob.ID, error) {
	var id blob.ID
	exp, err := s.limits.CheckCreate(size, expires, s.now())
	if err != nil {
		return id, err
	}
	if err := ctx.Err(); err != nil {
		return id, err
	}
	rand.Read(id[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return id, blob.ErrClosed
	}
	s.blobs[id] = &entry{size: size, expiresMs: exp, tag: tag}
	return id, nil
}

// Append implements blob.Store.
func (s *Store) Append(ctx context.Context, id blob.ID, offset int64, r io.Reader, n int64) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.get(id)
	if err != nil {
		return 0, err
	}
	committed := int64(len(e.data))
	if err := s.limits.CheckAppend(e.size, offset, n); err != nil {
		return committed, err
	}
	if offset > committed {
		return committed, fmt.Errorf("memblob: %w at %d (committed %d)", blob.ErrGap, offset, committed)
	}
	in := make([]byte, n)
	if _, err := io.ReadFull(r, in); err != nil {
		return committed, fmt.Errorf("%w: chunk shorter than declared: %v", blob.ErrInvalid, err)
	}
	k := min(n, committed-offset)
	if !bytes.Equal(e.data[offset:offset+k], in[:k]) {
		return committed, blob.ErrMismatch
	}
	e.data = append(e.data, in[k:]...)
	return int64(len(e.data)), nil
}

// Info implements blob.Store.
func (s *Store) Info(ctx context.Context, id blob.ID) (blob.Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.get(id)
	if err != nil {
		return blob.Info{}, err
	}
	return blob.Info{Size: e.size, Committed: int64(len(e.data)), Expires: time.UnixMilli(e.expiresMs), Final: e.final, Tag: e.tag}, nil
}

// Finalize implements blob.Store.
func (s *Store) Finalize(ctx context.Context, id blob.ID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.get(id)
	if err != nil {
		return err
	}
	if int64(len(e.data)) != e.size {
		return blob.ErrIncomplete
	}
	e.final = true
	return nil
}

// Open implements blob.Store.
func (s *Store) Open(ctx context.Context, id blob.ID, offset, length int64) (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.get(id)
	if err != nil {
		return nil, err
	}
	if !e.final {
		return nil, fmt.Errorf("memblob: %v not finalized: %w", id, blob.ErrNotFound)
	}
	if err := blob.CheckRange(e.size, offset, length); err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(e.data[offset : offset+length])), nil
}

// Delete implements blob.Store.
func (s *Store) Delete(ctx context.Context, id blob.ID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.get(id); err != nil {
		return err
	}
	delete(s.blobs, id)
	return nil
}

// Sweep implements blob.Store.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, blob.ErrClosed
	}
	n := 0
	now := s.now().UnixMilli()
	for id, e := range s.blobs {
		if e.expiresMs <= now {
			delete(s.blobs, id)
			n++
		}
	}
	return n, nil
}

// Close implements blob.Store.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}
