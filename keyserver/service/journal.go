package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/store"
)

// The pending journal (docs/spec/directory.md §Storage): an admin
// operation, an enrolment or a failed redemption takes effect in the
// tenant's state at once, and is acknowledged only once the records it
// changed (org.Tenant.JournalRecords) are durable as the store's pending
// records; the next epoch publishes them and supersedes them. The
// operation takes its records under t.mu, so the queue is in the order
// the operations applied; it then waits, without t.mu, while one writer
// drains the queue: each drained batch is one WritePending (one store
// transaction and one sync) for every operation in it (group commit).

// errJournal is returned to an operation whose change could not be made
// durable: it is not acknowledged (it may still be published by the next
// epoch, which writes everything pending).
var errJournal = errors.New("service: the change could not be made durable")

type journal struct {
	st  store.DirectoryStore
	id  [16]byte
	tid string
	log *slog.Logger
	met *metrics

	mu      sync.Mutex
	queue   []*journalEntry
	writing bool
	idle    *sync.Cond // signalled when the writer stops
	// head is the epoch of the store's head as the journal last learnt it
	// (published); entries of earlier epochs were published by a later
	// epoch.
	head uint64
	// err is set when a batch of the current head could not be written:
	// every later operation is refused until an epoch publishes the state
	// (published), so that no acknowledged change depends on a lost one.
	err error
}

type journalEntry struct {
	after uint64
	recs  []org.StateRecord
	done  chan error
}

func newJournal(st store.DirectoryStore, id org.TenantID, head uint64, log *slog.Logger, met *metrics) *journal {
	j := &journal{st: st, id: id, tid: id.String(), head: head, log: log, met: met}
	j.idle = sync.NewCond(&j.mu)
	return j
}

// check returns the journal's error, if an earlier batch failed.
func (j *journal) check() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err
}

// add queues recs, the records an operation changed after the head of
// epoch after, and returns the entry to wait for; nil if there is nothing
// to write. The caller holds t.mu.
func (j *journal) add(after uint64, recs []org.StateRecord) (*journalEntry, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil {
		return nil, j.err
	}
	e := &journalEntry{after: after, recs: recs, done: make(chan error, 1)}
	j.queue = append(j.queue, e)
	if !j.writing {
		j.writing = true
		go j.drain()
	}
	return e, nil
}

// wait waits until e is durable. A nil e is.
func (e *journalEntry) wait() error {
	if e == nil {
		return nil
	}
	return <-e.done
}

// drain writes batches until the queue is empty.
func (j *journal) drain() {
	j.mu.Lock()
	for len(j.queue) > 0 {
		// One batch: the queue, cut at maxPendingWrite bytes.
		n, size := 1, recordsSize(j.queue[0].recs)
		for n < len(j.queue) && size+recordsSize(j.queue[n].recs) <= maxPendingWrite {
			size += recordsSize(j.queue[n].recs)
			n++
		}
		batch := j.queue[:n:n]
		if j.queue = j.queue[n:]; len(j.queue) == 0 {
			j.queue = nil
		}
		// The batch's records are those of the latest head among its
		// entries, or none if an epoch has published them all.
		after := j.head
		for _, e := range batch {
			after = max(after, e.after)
		}
		err := j.err
		j.mu.Unlock()
		if err == nil {
			err = j.write(batch, after)
		}
		j.mu.Lock()
		if err != nil && after >= j.head && j.err == nil {
			j.err = fmt.Errorf("%w: %v", errJournal, err)
			j.log.Error("pending records not written; admin operations and enrolments refused until the next epoch", slog.Any("err", err))
		}
		if err != nil && after < j.head {
			err = nil // an epoch published them meanwhile
		}
		for _, e := range batch {
			if err != nil {
				e.done <- errJournal
			} else {
				e.done <- nil
			}
		}
	}
	j.writing = false
	j.idle.Broadcast()
	j.mu.Unlock()
}

// write writes one batch: the records of its entries after the head of
// epoch after, merged by key in queue order. Entries after an older head
// were published by the epoch since.
func (j *journal) write(batch []*journalEntry, after uint64) error {
	merged := map[org.StateKey][]byte{}
	var order []org.StateKey
	for _, e := range batch {
		if e.after != after {
			continue
		}
		for _, r := range e.recs {
			if _, ok := merged[r.Key]; !ok {
				order = append(order, r.Key)
			}
			merged[r.Key] = r.Value
		}
	}
	if len(order) == 0 {
		return nil
	}
	w := store.TenantWrite{ID: j.id, Records: make([]store.TenantRecord, len(order))}
	for i, k := range order {
		w.Records[i] = store.TenantRecord{Key: store.TenantKey(k), Value: merged[k]}
	}
	ctx := context.Background()
	err := j.st.WritePending(ctx, after, w)
	j.met.journalBatches.WithLabelValues(j.tid).Inc()
	j.met.journalOps.WithLabelValues(j.tid).Add(float64(len(batch)))
	if err != nil {
		if h, herr := j.st.Head(ctx); herr == nil && h.Epoch > after {
			// An epoch committed meanwhile (ErrConflict) and published
			// these records: they were applied before it.
			return nil
		}
	}
	return err
}

// flush waits until every queued entry is written. The caller holds t.mu,
// so no entry is added meanwhile.
func (j *journal) flush() {
	j.mu.Lock()
	for j.writing {
		j.idle.Wait()
	}
	j.mu.Unlock()
}

// published records that the epoch of head is committed: it published
// every change made before it, so a failed batch no longer matters.
func (j *journal) published(head uint64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.head = head
	j.err = nil
}

// durable makes the changes of the operation just applied under t.mu
// durable: it queues the records it changed and returns the wait for
// them. t.mu is held; wait after releasing it.
func (t *Tenant) durable() (*journalEntry, error) {
	h := t.head.Load()
	if h == nil {
		return nil, nil // a new tenant: its first epoch is committed before it serves
	}
	if err := t.jr.check(); err != nil {
		return nil, err
	}
	recs, err := t.org.JournalRecords()
	if err != nil {
		t.jr.fail(err)
		return nil, fmt.Errorf("%w: encoding tenant state: %v", errJournal, err)
	}
	if len(recs) == 0 {
		return nil, nil
	}
	t.dirty = true // whatever the operation set: the epoch writes them
	if recordsSize(recs) <= maxPendingWrite {
		return t.jr.add(h.Epoch, recs)
	}
	// Too large for one pending write (a CA rotation or a policy change
	// re-signs every user it touches): the epoch, staged if need be,
	// makes it durable now.
	if _, err := t.publish(context.Background(), t.now()); err != nil {
		t.jr.fail(err)
		return nil, fmt.Errorf("%w: publishing a large change: %v", errJournal, err)
	}
	t.Kick() // Run has the witnesses cosign it
	return nil, nil
}

// maxPendingWrite bounds the records of one pending write, well below a
// badger transaction at the default memtable size; a batch is cut there.
// A variable for tests.
var maxPendingWrite = 4 << 20

func recordsSize(recs []org.StateRecord) int {
	n := 0
	for _, r := range recs {
		n += len(r.Key) + len(r.Value)
	}
	return n
}

// fail makes the journal refuse operations until the next epoch: the
// records of an operation were taken but could not be queued.
func (j *journal) fail(err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err == nil {
		j.err = fmt.Errorf("%w: %v", errJournal, err)
		j.log.Error("pending records not written; admin operations and enrolments refused until the next epoch", slog.Any("err", err))
	}
}

// loadPending applies the store's pending records to the tenant restored
// from the published state, and returns the users they name and whether
// there were any.
func (t *Tenant) loadPending(ctx context.Context, ot *org.Tenant) ([]org.UserID, bool, error) {
	var recs []org.StateRecord
	err := t.st.PendingRecords(ctx, t.id, func(k store.TenantKey, v []byte) error {
		var val []byte
		if len(v) > 0 {
			val = append([]byte{}, v...)
		}
		recs = append(recs, org.StateRecord{Key: org.StateKey(k), Value: val})
		return nil
	})
	if err != nil || len(recs) == 0 {
		return nil, false, err
	}
	if err := ot.ApplyPending(recs, t.cas); err != nil {
		return nil, false, fmt.Errorf("pending records: %w", err)
	}
	var users []org.UserID
	for _, r := range recs {
		if u, ok := r.Key.User(); ok {
			users = append(users, u)
		}
	}
	return users, true, nil
}
