package mailbox

import (
	"context"
	"sync"
)

// An Item is one message of EnqueueBatch and the mailbox it goes to.
type Item struct {
	Mailbox ID
	Message
}

// A Result is the outcome of one Item: its Receipt, or the error Enqueue
// would have returned for it.
type Result struct {
	Receipt Receipt
	Err     error
}

// BatchStore is a Store that enqueues many messages in one call
// (docs/spec/relay-storage.md §Batch enqueue). Implementing it is
// optional: EnqueueBatch falls back to concurrent Enqueue calls. A
// wrapper that overrides Enqueue must also override (or hide)
// EnqueueBatch, or batch sends bypass its Enqueue.
type BatchStore interface {
	Store
	// EnqueueBatch enqueues each item as Enqueue would, and sets out[i]
	// (len(out) == len(items)) to item i's outcome. Every item succeeds
	// or fails on its own; an item with a nil Err is durable, as after
	// Enqueue. Items with the same mailbox and message id are one
	// message, as concurrent Enqueues of it are: one is stored, the
	// others are its retries (or ErrIDConflict). If ctx ends first,
	// the items not yet answered (a store may count all) get its error
	// and may still be stored. The store keeps no reference to
	// the items' bodies once EnqueueBatch returns.
	EnqueueBatch(ctx context.Context, items []Item, out []Result)
}

// EnqueueBatch enqueues items into s, with s's EnqueueBatch if s is a
// BatchStore, else with one concurrent Enqueue per item, and sets out[i]
// to item i's outcome. It panics if len(out) != len(items).
func EnqueueBatch(ctx context.Context, s Store, items []Item, out []Result) {
	if len(out) != len(items) {
		panic("mailbox: EnqueueBatch with len(out) != len(items)")
	}
	if bs, ok := s.(BatchStore); ok {
		bs.EnqueueBatch(ctx, items, out)
		return
	}
	if len(items) == 1 {
		out[0].Receipt, out[0].Err = s.Enqueue(ctx, items[0].Mailbox, items[0].Message)
		return
	}
	var wg sync.WaitGroup
	for i := range items {
		wg.Go(func() { out[i].Receipt, out[i].Err = s.Enqueue(ctx, items[i].Mailbox, items[i].Message) })
	}
	wg.Wait()
}
