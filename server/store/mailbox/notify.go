package mailbox

import "sync"

// A Subscription is signalled on C when messages are enqueued in its
// mailbox (docs/spec/relay-storage.md §Wake-up). A signal means "fetch
// again": several enqueues may produce one signal, and C is closed when
// the subscription or the store is closed. A reader subscribes before its
// first Fetch, so that no enqueue falls between the two unnoticed:
//
//	sub := s.Subscribe(mb)
//	defer sub.Close()
//	for {
//		page, err := s.Fetch(ctx, mb, cursor, 100)
//		// ... deliver page.Messages, advance cursor ...
//		if len(page.Messages) == 0 {
//			select {
//			case <-sub.C:
//			case <-ctx.Done():
//				return
//			}
//		}
//	}
type Subscription struct {
	// C receives a value after each enqueue that follows the previous
	// receive; it has a buffer of one.
	C      <-chan struct{}
	c      chan struct{}
	n      *Notifier // nil if the subscription started closed
	mb     ID
	closed bool // guarded by n.mu
}

// Close ends the subscription and closes C. It is idempotent.
func (s *Subscription) Close() {
	if s.n != nil {
		s.n.remove(s)
	}
}

// A Notifier keeps the subscriptions of a store's mailboxes. Backends
// embed one and call Notify after the messages of a mailbox are durable.
// The zero value is ready to use. A subscription costs memory only while
// it is open.
type Notifier struct {
	mu     sync.Mutex
	subs   map[ID]map[*Subscription]struct{}
	closed bool
}

// Subscribe implements Store.Subscribe. After Close it returns a
// subscription whose C is closed.
func (n *Notifier) Subscribe(mb ID) *Subscription {
	c := make(chan struct{}, 1)
	s := &Subscription{C: c, c: c, n: n, mb: mb}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		close(c)
		s.n, s.closed = nil, true
		return s
	}
	if n.subs == nil {
		n.subs = make(map[ID]map[*Subscription]struct{})
	}
	m := n.subs[mb]
	if m == nil {
		m = make(map[*Subscription]struct{}, 1)
		n.subs[mb] = m
	}
	m[s] = struct{}{}
	return s
}

// Notify signals every subscription of mb, without blocking.
func (n *Notifier) Notify(mb ID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.notify(mb)
}

// NotifyAll signals every subscription of each of mbs, as Notify does
// for each, under one lock.
func (n *Notifier) NotifyAll(mbs []ID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.subs) == 0 {
		return
	}
	for _, mb := range mbs {
		n.notify(mb)
	}
}

func (n *Notifier) notify(mb ID) {
	for s := range n.subs[mb] {
		select {
		case s.c <- struct{}{}:
		default:
		}
	}
}

// Close closes every subscription; later subscriptions start closed.
func (n *Notifier) Close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	for _, m := range n.subs {
		for s := range m {
			close(s.c)
			s.closed = true
		}
	}
	n.subs = nil
}

func (n *Notifier) remove(s *Subscription) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s.closed {
		return
	}
	m := n.subs[s.mb]
	delete(m, s)
	if len(m) == 0 {
		delete(n.subs, s.mb)
	}
	close(s.c)
	s.closed = true
}
