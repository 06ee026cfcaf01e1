package relay

import (
	"runtime"
	"sync"

	"github.com/moat-im/moat/server/store/mailbox"
)

// Group signing of receipt heads (docs/spec/api.md §Send). Every send
// needs a signed head of its recipient's mailbox; one Ed25519 signature
// per send was the largest part of the relay's CPU per send. Sends whose
// enqueues completed while a batch was being signed wait and are signed
// together in the next batch, with one signature over a Merkle root of
// their heads (mailbox.SignHeadBatch): the more sends arrive at once, the
// fewer signatures per send, and a lone send is signed at once.
// moat_relay_receipt_signatures_total counts the signatures; with
// moat_relay_sends_total it gives the heads per signature.

type headRequest struct {
	leaves []mailbox.HeadLeaf // one per receipt: one for a send, the accepted items of a batch
	// wake gets one value when the request is signed, or to make its
	// waiter lead (done false). Requests are pooled: a request is woken
	// once per use and never touched after its waiter returns.
	wake chan struct{}
	done bool
	res  []*mailbox.BatchedHead
	err  error
}

var headRequests = sync.Pool{New: func() any { return &headRequest{wake: make(chan struct{}, 1)} }}

// maxYields bounds how often a leader yields to let a batch fill.
const maxYields = 8

type headBatcher struct {
	sign func([]mailbox.HeadLeaf) ([]*mailbox.BatchedHead, error)

	mu     sync.Mutex
	busy   bool // a leader is signing; the queue waits for it
	queue  []*headRequest
	leaves int            // the leaves of the queue's requests
	spare  []*headRequest // the previous queue's array, for the next batch
}

// signHead returns a batched signed head of (mb, head).
func (b *headBatcher) signHead(mb mailbox.ID, head uint64) (*mailbox.BatchedHead, error) {
	hs, err := b.signHeads([]mailbox.HeadLeaf{{Mailbox: mb, Head: head}})
	if err != nil {
		return nil, err
	}
	return hs[0], nil
}

// signHeads returns a batched signed head of each of leaves (at most
// MaxBatchItems), all signed in the same batch. The first caller of an
// idle batcher leads: it signs the queue (itself first), then hands the
// lead to the oldest waiter, if any, and returns.
func (b *headBatcher) signHeads(leaves []mailbox.HeadLeaf) ([]*mailbox.BatchedHead, error) {
	r := headRequests.Get().(*headRequest)
	r.leaves, r.done, r.res, r.err = leaves, false, nil, nil
	defer func() {
		r.leaves, r.res, r.err = nil, nil, nil
		headRequests.Put(r)
	}()
	b.mu.Lock()
	b.queue = append(b.queue, r)
	b.leaves += len(leaves)
	lead := !b.busy
	b.busy = true
	b.mu.Unlock()
	if !lead {
		<-r.wake
		if r.done {
			return r.res, r.err
		}
	}
	// The leader is at the front of the queue. Sends of one group commit
	// are woken together, but each runs its handler's tail before it
	// asks for its head: yield to them while the queue grows (at most
	// maxYields times), or on two cores the batches stay of one or two.
	// A lone send yields once, to no one.
	for range maxYields {
		b.mu.Lock()
		n := len(b.queue)
		b.mu.Unlock()
		runtime.Gosched()
		b.mu.Lock()
		grew := len(b.queue) > n && b.leaves < mailbox.MaxHeadBatch
		b.mu.Unlock()
		if !grew {
			break
		}
	}
	b.mu.Lock()
	// Whole requests, as many as fit in a batch (the first always does:
	// a request has at most MaxBatchItems leaves).
	n, total := 0, 0
	for _, q := range b.queue {
		if n > 0 && total+len(q.leaves) > mailbox.MaxHeadBatch {
			break
		}
		n++
		total += len(q.leaves)
	}
	batch := append(b.spare[:0], b.queue[:n]...)
	// The rest stays queued, in a slice of its own: the next leader
	// takes the lead while this one still reads batch.
	b.queue, b.spare = append(b.queue[:0:0], b.queue[n:]...), b.queue[:0]
	b.leaves -= total
	b.mu.Unlock()

	all := make([]mailbox.HeadLeaf, 0, total)
	for _, q := range batch {
		all = append(all, q.leaves...)
	}
	hs, err := b.sign(all)
	i := 0
	for _, q := range batch {
		q.done, q.err = true, err
		if err == nil {
			q.res = hs[i : i+len(q.leaves) : i+len(q.leaves)]
		}
		i += len(q.leaves)
		if q != r {
			q.wake <- struct{}{}
		}
	}
	res, rerr := r.res, r.err

	b.mu.Lock()
	if len(b.queue) > 0 {
		next := b.queue[0]
		b.mu.Unlock()
		next.wake <- struct{}{} // next.done is false: it leads
	} else {
		b.busy = false
		b.mu.Unlock()
	}
	return res, rerr
}
