// Package memmailbox is an in-memory mailbox.Store, for tests and for
// running the relay without persistence. Nothing survives the process,
// so "durable" means "stored in memory".
package memmailbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/moat-im/moat/server/store/mailbox"
)

// Options configures a Store; the zero value gives the defaults.
type Options struct {
	Limits mailbox.Limits
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Store is an in-memory mailbox.Store.
type Store struct {
	limits mailbox.Limits
	now    func() time.Time
	n      mailbox.Notifier

	mu     sync.Mutex
	closed bool
	boxes  map[mailbox.ID]*box
}

type box struct {
	head  uint64
	acked uint64  // acknowledgement floor
	msgs  []entry // increasing Seq
	bytes int64
	dedup map[mailbox.MessageID]dedup
}

type entry struct {
	seq     uint64
	id      mailbox.MessageID
	expires int64 // Unix ms
	body    []byte
}

type dedup struct {
	seq    uint64
	digest [32]byte
	until  int64 // Unix ms
}

var _ mailbox.BatchStore = (*Store)(nil)

// New returns an empty Store.
func New(opts Options) (*Store, error) {
	l, err := opts.Limits.WithDefaults()
	if err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Store{limits: l, now: opts.Now, boxes: make(map[mailbox.ID]*box)}, nil
}

// Enqueue implements mailbox.Store.
func (s *Store) Enqueue(ctx context.Context, mb mailbox.ID, m mailbox.Message) (mailbox.Receipt, error) {
	if err := ctx.Err(); err != nil {
		return mailbox.Receipt{}, err
	}
	now := s.now()
	exp, err := s.limits.Check(&m, now)
	if err != nil {
		return mailbox.Receipt{}, err
	}
	digest := sha256.Sum256(m.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return mailbox.Receipt{}, mailbox.ErrClosed
	}
	return s.enqueueLocked(mb, &m, now.UnixMilli(), exp, &digest)
}

// EnqueueBatch implements mailbox.BatchStore: the items are applied in
// order under one lock.
func (s *Store) EnqueueBatch(ctx context.Context, items []mailbox.Item, out []mailbox.Result) {
	if len(out) != len(items) {
		panic("memmailbox: EnqueueBatch with len(out) != len(items)")
	}
	if err := ctx.Err(); err != nil {
		for i := range out {
			out[i] = mailbox.Result{Err: err}
		}
		return
	}
	now := s.now()
	exps := make([]int64, len(items))
	digests := make([][32]byte, len(items))
	for i := range items {
		out[i] = mailbox.Result{}
		exps[i], out[i].Err = s.limits.Check(&items[i].Message, now)
		if out[i].Err == nil {
			digests[i] = sha256.Sum256(items[i].Body)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range items {
		switch {
		case out[i].Err != nil:
		case s.closed:
			out[i].Err = mailbox.ErrClosed
		default:
			out[i].Receipt, out[i].Err = s.enqueueLocked(items[i].Mailbox, &items[i].Message, now.UnixMilli(), exps[i], &digests[i])
		}
	}
}

// enqueueLocked applies a checked enqueue of m (expiring at exp, with body
// digest) into mb at nowMs; s.mu is held.
func (s *Store) enqueueLocked(mb mailbox.ID, m *mailbox.Message, nowMs, exp int64, digest *[32]byte) (mailbox.Receipt, error) {
	b := s.boxes[mb]
	if b == nil {
		b = &box{dedup: make(map[mailbox.MessageID]dedup)}
		s.boxes[mb] = b
	}
	if d, ok := b.dedup[m.ID]; ok && d.until > nowMs {
		if d.digest != *digest {
			return mailbox.Receipt{}, fmt.Errorf("memmailbox: mailbox %v message %v: %w", mb, m.ID, mailbox.ErrIDConflict)
		}
		return mailbox.Receipt{Seq: d.seq, Duplicate: true, Head: b.head}, nil
	}
	size := int64(len(m.Body))
	if len(b.msgs)+1 > s.limits.MaxMessages || b.bytes+size > s.limits.MaxBytes {
		b.expire(nowMs)
		if len(b.msgs)+1 > s.limits.MaxMessages || b.bytes+size > s.limits.MaxBytes {
			return mailbox.Receipt{}, fmt.Errorf("memmailbox: mailbox %v: %w", mb, mailbox.ErrQuota)
		}
	}
	b.head++
	b.msgs = append(b.msgs, entry{seq: b.head, id: m.ID, expires: exp, body: bytes.Clone(m.Body)})
	b.bytes += size
	b.dedup[m.ID] = dedup{seq: b.head, digest: *digest, until: s.limits.DedupUntil(nowMs, exp)}
	s.n.Notify(mb)
	return mailbox.Receipt{Seq: b.head, Head: b.head}, nil
}

// expire drops the expired messages of b.
func (b *box) expire(nowMs int64) int {
	n := 0
	b.msgs = slices.DeleteFunc(b.msgs, func(e entry) bool {
		if e.expires <= nowMs {
			b.bytes -= int64(len(e.body))
			n++
			return true
		}
		return false
	})
	return n
}

// firstAfter returns the index of the first message with a sequence
// number above seq.
func (b *box) firstAfter(seq uint64) int {
	return sort.Search(len(b.msgs), func(i int) bool { return b.msgs[i].seq > seq })
}

// Fetch implements mailbox.Store.
func (s *Store) Fetch(ctx context.Context, mb mailbox.ID, after uint64, limit int) (mailbox.Page, error) {
	if err := ctx.Err(); err != nil {
		return mailbox.Page{}, err
	}
	if err := mailbox.CheckFetch(limit); err != nil {
		return mailbox.Page{}, err
	}
	nowMs := s.now().UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return mailbox.Page{}, mailbox.ErrClosed
	}
	b := s.boxes[mb]
	if b == nil {
		return mailbox.Page{}, nil
	}
	p := mailbox.Page{Head: b.head, Acked: b.acked}
	i := b.firstAfter(max(after, b.acked))
	size := 0
	for ; i < len(b.msgs) && len(p.Messages) < limit && size < mailbox.FetchBytes; i++ {
		e := b.msgs[i]
		if e.expires <= nowMs {
			continue
		}
		p.Messages = append(p.Messages, mailbox.Stored{Seq: e.seq, Message: mailbox.Message{ID: e.id, Expires: time.UnixMilli(e.expires), Body: bytes.Clone(e.body)}})
		size += len(e.body)
	}
	return p, nil
}

// Ack implements mailbox.Store.
func (s *Store) Ack(ctx context.Context, mb mailbox.ID, upTo uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return mailbox.ErrClosed
	}
	b := s.boxes[mb]
	var head uint64
	if b != nil {
		head = b.head
	}
	if upTo > head {
		return fmt.Errorf("memmailbox: mailbox %v: ack of %d with head %d: %w", mb, upTo, head, mailbox.ErrBeyondHead)
	}
	if b == nil {
		return nil
	}
	b.acked = max(b.acked, upTo)
	i := b.firstAfter(upTo)
	for _, e := range b.msgs[:i] {
		b.bytes -= int64(len(e.body))
	}
	b.msgs = slices.Delete(b.msgs, 0, i)
	return nil
}

// Status implements mailbox.Store.
func (s *Store) Status(ctx context.Context, mb mailbox.ID) (mailbox.Status, error) {
	if err := ctx.Err(); err != nil {
		return mailbox.Status{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return mailbox.Status{}, mailbox.ErrClosed
	}
	b := s.boxes[mb]
	if b == nil {
		return mailbox.Status{}, nil
	}
	return mailbox.Status{Head: b.head, Acked: b.acked, Messages: len(b.msgs), Bytes: b.bytes}, nil
}

// Subscribe implements mailbox.Store.
func (s *Store) Subscribe(mb mailbox.ID) *mailbox.Subscription { return s.n.Subscribe(mb) }

// Sweep implements mailbox.Store.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	nowMs := s.now().UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, mailbox.ErrClosed
	}
	n := 0
	for _, b := range s.boxes {
		n += b.expire(nowMs)
		for id, d := range b.dedup {
			if d.until <= nowMs {
				delete(b.dedup, id)
			}
		}
	}
	return n, nil
}

// Close implements mailbox.Store.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		s.n.Close()
	}
	return nil
}
