package badgermailbox

// Group commit (docs/spec/relay-storage.md §Durability).
//
// Callers build a request (an enqueue's record value is made in the
// caller's goroutine), queue it, and wait. The writer goroutine takes the
// first queued request, drains whatever else is queued (up to maxBatch,
// and while the batch stays under half of badger's transaction limits),
// and applies the batch in one badger transaction at the next timestamp.
// Decisions (deduplication, quota, sequence numbers) come from the
// mailbox index (index.go), which the batch updates as it goes, so an
// enqueue reads nothing from badger and writes one entry. Then the writer
// commits the transaction, syncs once, publishes the batch's mailbox
// states and its timestamp to readers, signals subscribers and answers
// every caller. A batch that writes nothing (retries, refusals, empty
// acks) is answered with the sync in flight, if any, else at once.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/moat-im/moat/internal/vfs"
	"github.com/moat-im/moat/server/store/mailbox"
)

type reqKind uint8

const (
	reqEnqueue reqKind = iota
	reqAck
	reqSweep
	// reqGroup carries the enqueues of one EnqueueBatch call (items),
	// which the writer takes as if each had been queued on its own.
	reqGroup
)

// sweepChunk bounds the mailboxes one sweep request expires.
const sweepChunk = 2048

// A request is one call waiting for the writer.
type request struct {
	kind reqKind
	mb   mailbox.ID
	// Enqueue.
	id      mailbox.MessageID
	expMs   int64
	untilMs int64
	value   []byte  // held-message value without its CRC
	buf     *[]byte // value's pooled buffer (recordBufs)
	size    int     // body size
	// Ack.
	upTo uint64
	// Group: the items, and how many of them are not yet answered (the
	// writer's to count). An item's group is answered, through grp, when
	// its last item is.
	items []request
	left  int
	grp   *request

	// Results, set by the writer before it closes done.
	receipt mailbox.Receipt
	removed int  // sweep: messages removed
	more    bool // sweep: work left
	err     error
	done    chan struct{}
}

// submit queues r and waits for its result.
func (s *Store) submit(ctx context.Context, r *request) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return mailbox.ErrClosed
	}
	s.senders.Add(1)
	s.mu.RUnlock()
	r.done = make(chan struct{})
	// A queue with room takes the request without a select on ctx.
	select {
	case s.reqs <- r:
	default:
		select {
		case s.reqs <- r:
		case <-ctx.Done():
			s.senders.Done()
			return ctx.Err()
		}
	}
	s.senders.Done()
	done := ctx.Done()
	if done == nil {
		<-r.done
		return r.err
	}
	select {
	case <-r.done:
		return r.err
	case <-done:
		// The request may still be applied; a retry with the same
		// message id finds it.
		return ctx.Err()
	}
}

// Enqueue implements mailbox.Store.
func (s *Store) Enqueue(ctx context.Context, mb mailbox.ID, m mailbox.Message) (mailbox.Receipt, error) {
	r, err := s.enqueueRequest(mb, &m)
	if err != nil {
		return mailbox.Receipt{}, err
	}
	if err := s.submit(ctx, r); err != nil {
		return mailbox.Receipt{}, fmt.Errorf("badgermailbox: enqueue in %v: %w", mb, err)
	}
	return r.receipt, nil
}

// EnqueueBatch implements mailbox.BatchStore: the items that pass
// mailbox.Limits.Check go to the writer in one request, so they are
// applied in order in the same group commit (or, past the transaction's
// soft bounds, the next ones), each deduplicated, numbered and answered
// as an Enqueue is, all once the sync that covers the last one succeeds.
func (s *Store) EnqueueBatch(ctx context.Context, items []mailbox.Item, out []mailbox.Result) {
	if len(out) != len(items) {
		panic("badgermailbox: EnqueueBatch with len(out) != len(items)")
	}
	now := s.now()
	g := &request{kind: reqGroup, items: make([]request, len(items))}
	n := 0
	for i := range items {
		out[i] = mailbox.Result{}
		r := &g.items[n]
		if out[i].Err = s.fillEnqueue(r, items[i].Mailbox, &items[i].Message, now); out[i].Err == nil {
			r.grp = g
			n++
		}
	}
	if n == 0 {
		return
	}
	g.items, g.left = g.items[:n], n
	err := s.submit(ctx, g)
	j := 0
	for i := range items {
		if out[i].Err != nil {
			continue
		}
		r := &g.items[j]
		j++
		switch {
		case err != nil:
			// The writer may still hold the items: none of their results
			// is read.
			out[i].Err = fmt.Errorf("badgermailbox: enqueue in %v: %w", items[i].Mailbox, err)
		case r.err != nil:
			out[i].Err = fmt.Errorf("badgermailbox: enqueue in %v: %w", items[i].Mailbox, r.err)
		default:
			out[i].Receipt = r.receipt
		}
	}
}

// enqueueRequest checks m and builds its request, with its record value.
func (s *Store) enqueueRequest(mb mailbox.ID, m *mailbox.Message) (*request, error) {
	r := new(request)
	if err := s.fillEnqueue(r, mb, m, s.now()); err != nil {
		return nil, err
	}
	return r, nil
}

// fillEnqueue checks m at now and makes r its request, with its record
// value (a copy of the body).
func (s *Store) fillEnqueue(r *request, mb mailbox.ID, m *mailbox.Message, now time.Time) error {
	exp, err := s.limits.Check(m, now)
	if err != nil {
		return err
	}
	until := s.limits.DedupUntil(now.UnixMilli(), exp)
	buf := recordBuf(heldOverhead + len(m.Body))
	*r = request{kind: reqEnqueue, mb: mb, id: m.ID, expMs: exp, untilMs: until, size: len(m.Body),
		value: appendHeld((*buf)[:0], m.ID, exp, until, m.Body), buf: buf}
	return nil
}

// recordBufs pools the buffers of held-message values (*[]byte). A
// batch's buffers return to it only once its sync has succeeded and its
// callers are answered (releaseRecords): badger copied the values into
// its memtable and log at commit, and a batch whose commit or sync fails
// keeps its values to write again on recovery.
var recordBufs sync.Pool

// maxPooledRecord bounds the buffers recordBufs keeps.
const maxPooledRecord = 64<<10 + heldOverhead

// recordBuf returns a buffer with room for n bytes.
func recordBuf(n int) *[]byte {
	if p, _ := recordBufs.Get().(*[]byte); p != nil {
		if cap(*p) >= n {
			return p
		}
		*p = make([]byte, 0, n)
		return p
	}
	b := make([]byte, 0, n)
	return &b
}

// releaseRecords returns the value buffers of reqs to recordBufs; nothing
// may use their values after.
func releaseRecords(reqs []*request) {
	for _, r := range reqs {
		if r.buf != nil && cap(*r.buf) <= maxPooledRecord {
			recordBufs.Put(r.buf)
		}
	}
}

// Ack implements mailbox.Store.
func (s *Store) Ack(ctx context.Context, mb mailbox.ID, upTo uint64) error {
	if err := s.submit(ctx, &request{kind: reqAck, mb: mb, upTo: upTo}); err != nil {
		return fmt.Errorf("badgermailbox: ack in %v: %w", mb, err)
	}
	return nil
}

// Sweep implements mailbox.Store.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	total := 0
	for {
		r := &request{kind: reqSweep}
		if err := s.submit(ctx, r); err != nil {
			return total, fmt.Errorf("badgermailbox: sweep: %w", err)
		}
		total += r.removed
		if !r.more {
			return total, nil
		}
	}
}

// writeLoop is the writer goroutine. It pipelines: while the sync of one
// committed batch runs (in a goroutine of its own), it collects, builds
// and commits the next; then it waits for that sync, answers its batch,
// and starts the next sync. A batch is answered only after a sync that
// started after its commit has succeeded, and readers move to its
// timestamp only then.
func (s *Store) writeLoop() {
	defer s.bg.Done()
	defer close(s.syncReq)
	var batch []*request
	for {
		batch = batch[:0]
		var r *request
		if s.inflight != nil {
			select {
			case r = <-s.reqs:
			case err := <-s.syncDone:
				s.finishSync(err, nil)
				continue
			}
		} else {
			select {
			case r = <-s.reqs:
			case <-s.stop:
				s.drainStopped()
				return
			}
		}
		batch = appendRequest(batch, r)
		batch = s.drain(batch)
		s.runBatch(batch)
	}
}

// drain appends what is queued to batch, up to maxBatch (which a group's
// items may pass).
func (s *Store) drain(batch []*request) []*request {
	for len(batch) < maxBatch {
		select {
		case r := <-s.reqs:
			batch = appendRequest(batch, r)
		default:
			return batch
		}
	}
	return batch
}

// appendRequest appends r to batch, or r's items if r is a group.
func appendRequest(batch []*request, r *request) []*request {
	if r.kind != reqGroup {
		return append(batch, r)
	}
	for i := range r.items {
		batch = append(batch, &r.items[i])
	}
	return batch
}

// drainStopped finishes what is queued once Close has stopped the
// senders, and the sync in flight.
func (s *Store) drainStopped() {
	for {
		batch := s.drain(nil)
		if len(batch) == 0 {
			break
		}
		s.runBatch(batch)
	}
	if s.inflight != nil {
		s.finishSync(<-s.syncDone, nil)
	}
}

// runBatch applies batch, in as many transactions as its size needs
// (normally one).
func (s *Store) runBatch(batch []*request) {
	for len(batch) > 0 {
		batch = s.runTxn(batch)
	}
}

// A pending batch is committed and waits for its sync.
type pending struct {
	ts      uint64
	reqs    []*request // answered when the sync completes
	entries []entry    // the batch's writes, to redo if the sync fails
	stats   []boxStat  // the states of the boxes it changed, to publish
	notify  []mailbox.ID
}

// finishSync completes the sync in flight: on success it publishes its
// timestamp and answers its requests; on failure it fails them, and the
// requests of next (committed after it, so depending on it) too, and takes
// the store down.
func (s *Store) finishSync(err error, next *pending) {
	p := s.inflight
	s.inflight = nil
	if err != nil {
		failed := [][]entry{p.entries}
		if next != nil {
			failed = append(failed, next.entries)
		}
		s.failPending(fmt.Errorf("sync: %w", err), failed, p, next)
		return
	}
	s.publish(p.stats)
	s.readTs.Store(p.ts)
	if d := s.discard.advance(time.Now(), p.ts); d > 0 {
		s.db.SetDiscardTs(d)
	}
	s.markWatermark()
	s.n.NotifyAll(p.notify)
	s.answer(p.reqs, nil)
	releaseRecords(p.reqs)
}

// failPending answers the requests of the given batches with
// ErrUnavailable and takes the store down to redo failed.
func (s *Store) failPending(cause error, failed [][]entry, batches ...*pending) {
	s.goDown(cause, failed)
	for _, p := range batches {
		if p != nil {
			s.answer(p.reqs, fmt.Errorf("%w: %v", mailbox.ErrUnavailable, cause))
		}
	}
}

// A builder accumulates one batch's transaction. Point reads go through
// txn, which sees the batch's own writes. Range scans go through snap, a
// read-only transaction at the same timestamp that does not (badger sorts
// every pending write each time an iterator opens on a writing
// transaction); the builder merges in what the batch changed itself (the
// messages it added, in added, and the held messages it removed, in
// removed). The builder changes the index as it applies
// requests; revert undoes that for a batch badger never saw.
type builder struct {
	s       *Store
	id      uint64 // the batch's id in the boxes' scratch
	txn     *badger.Txn
	snap    *badger.Txn
	nowMs   int64
	touched []*box              // boxes this batch touched, in order
	added   []addedMsg          // messages it enqueued, in order
	addedBy map[*box][]int      // added by box, built by the first forHeld
	removed map[string]struct{} // held messages it deleted or acknowledged
	entries []entry             // every write, kept to redo the batch
	size, n int64               // badger's estimate of the transaction
}

// addedMsg is a message enqueued by the current batch.
type addedMsg struct {
	bx  *box
	id  mailbox.MessageID
	seq uint64
	key []byte
	val []byte // sealed
}

// An entry is one write of a batch.
type entry struct {
	key, val  []byte
	del       bool
	expiresAt uint64 // badger TTL, Unix seconds; 0: none
}

// runTxn applies a prefix of batch in one transaction and returns the
// requests that did not fit.
func (s *Store) runTxn(batch []*request) (rest []*request) {
	s.mu.RLock()
	down := s.down
	s.mu.RUnlock()
	if down != nil {
		s.answer(batch, fmt.Errorf("%w: %v", mailbox.ErrUnavailable, down))
		return nil
	}
	s.batchID++
	b := &builder{
		s:       s,
		id:      s.batchID,
		txn:     s.db.NewTransactionAt(s.ts, true),
		nowMs:   s.now().UnixMilli(),
		entries: make([]entry, 0, len(batch)+2),
		added:   make([]addedMsg, 0, len(batch)),
	}
	defer b.txn.Discard()
	defer func() {
		if b.snap != nil {
			b.snap.Discard()
		}
	}()
	lowSpace := s.checkSpace(batch)
	taken := batch
	for i, r := range batch {
		if b.size >= s.softSize || b.n >= s.softN {
			taken, rest = batch[:i], batch[i:]
			break
		}
		if r.kind == reqEnqueue && lowSpace != nil {
			r.err = lowSpace
			continue
		}
		if err := b.apply(r); err != nil {
			// A failed read of the store: this request fails, the batch
			// goes on.
			r.err = err
		}
	}
	for _, bx := range b.touched {
		if bx.writeQ {
			k := metaKey(bx.id)
			b.set(k, encodeMeta(k, bx.head, bx.acked))
		}
	}
	if len(b.entries) == 0 {
		// Everything the batch read is committed; it is durable once the
		// sync in flight (if any) is.
		if s.inflight != nil {
			s.inflight.reqs = append(s.inflight.reqs, taken...)
		} else {
			s.answer(taken, nil)
		}
		return rest
	}
	p := &pending{reqs: slices.Clone(taken)}
	for _, bx := range b.touched {
		if bx.boxState != bx.saved {
			p.stats = append(p.stats, boxStat{bx: bx, st: bx.status()})
		}
		if bx.notify {
			p.notify = append(p.notify, bx.id)
		}
	}
	ts := s.ts + 1
	p.ts = ts
	b.set(keyCommit, encodeCommit(ts))
	p.entries = b.entries
	if _, err := s.faults.Write(int(b.size)); err != nil {
		// Refused before badger saw it: nothing to redo, the index goes
		// back.
		b.revert()
		s.answer(taken, fmt.Errorf("%w: writing a batch: %v", mailbox.ErrUnavailable, err))
		return rest
	}
	if err := b.txn.CommitAt(ts, nil); err != nil {
		// Badger refuses a commit before writing it, but the batch is
		// redone on recovery in case it wrote some; the index keeps it.
		failed := [][]entry{b.entries}
		var prev *pending
		if s.inflight != nil {
			prev = s.inflight
			s.inflight = nil
			<-s.syncDone // whatever it says, what follows it failed
			failed = [][]entry{prev.entries, b.entries}
		}
		s.failPending(fmt.Errorf("commit: %w", err), failed, prev, p)
		return rest
	}
	s.ts = ts
	if s.inflight != nil {
		err := <-s.syncDone
		if s.finishSync(err, p); err != nil {
			return rest
		}
	}
	if s.beforeSync != nil {
		s.beforeSync(p.reqs)
	}
	s.inflight = p
	s.syncReq <- struct{}{}
	return rest
}

// syncLoop runs the writer's syncs, one per value on syncReq, and answers
// each on syncDone. (One long-lived goroutine: a goroutine per sync would
// grow a fresh stack every batch.)
func (s *Store) syncLoop() {
	defer s.bg.Done()
	for range s.syncReq {
		s.syncDone <- s.sync()
	}
}

// revert undoes the batch's changes to the index.
func (b *builder) revert() {
	for _, bx := range b.touched {
		bx.boxState = bx.saved
	}
	for _, a := range b.added {
		if d, ok := a.bx.ids[a.id]; ok && d.seq == a.seq {
			delete(a.bx.ids, a.id)
		}
	}
}

// sync makes every badger write so far durable.
func (s *Store) sync() error {
	if err := s.faults.Sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return s.syncer.Sync(s.db)
}

// answer completes the requests of a batch: with err if it is non-nil
// (the batch failed), else with each request's own result.
func (s *Store) answer(batch []*request, err error) {
	for _, r := range batch {
		if err != nil {
			r.err = err
			r.receipt, r.removed, r.more = mailbox.Receipt{}, 0, false
		}
		if g := r.grp; g != nil {
			if g.left--; g.left == 0 {
				close(g.done)
			}
			continue
		}
		close(r.done)
	}
}

// checkSpace returns ErrUnavailable if batch holds an enqueue and free
// space is below the reserve.
func (s *Store) checkSpace(batch []*request) error {
	if s.opts.DiskReserve < 0 || !slices.ContainsFunc(batch, func(r *request) bool { return r.kind == reqEnqueue }) {
		return nil
	}
	free, err := s.faults.Free(func() (uint64, error) { return vfs.Free(s.dir) })
	if err != nil {
		return fmt.Errorf("%w: free space: %v", mailbox.ErrUnavailable, err)
	}
	if free < uint64(s.opts.DiskReserve) {
		return fmt.Errorf("%w: %d bytes free, below the reserve of %d", mailbox.ErrUnavailable, free, s.opts.DiskReserve)
	}
	return nil
}

func (b *builder) set(k, v []byte) {
	b.write(entry{key: k, val: v})
}

func (b *builder) del(k []byte) {
	b.write(entry{key: k, del: true})
}

func (b *builder) write(e entry) {
	err := apply(b.txn, e)
	if err != nil {
		// The soft bounds leave room for the largest request
		// (checkBatchLimits), so badger refusing an entry is a bug.
		panic(fmt.Sprintf("badgermailbox: badger refused a write within the transaction limits: %v", err))
	}
	b.entries = append(b.entries, e)
	b.size += estimate(len(e.key), len(e.val))
	b.n++
}

// apply writes e in txn.
func apply(txn *badger.Txn, e entry) error {
	switch {
	case e.del:
		return txn.Delete(e.key)
	case e.expiresAt != 0:
		be := badger.NewEntry(e.key, e.val)
		be.ExpiresAt = e.expiresAt
		return txn.SetEntry(be)
	}
	return txn.Set(e.key, e.val)
}

// remove deletes the held message under key, or replaces it by its
// acknowledged record (ack: while its deduplication time is ahead).
func (b *builder) remove(key []byte, r *record, ack bool) {
	if ack && r.untilMs > b.nowMs {
		d := sha256.Sum256(r.body)
		b.write(entry{key: key, val: encodeAcked(key, r.id, r.untilMs, &d), expiresAt: dedupTTL(r.untilMs)})
	} else {
		b.del(key)
	}
	if b.removed == nil {
		b.removed = make(map[string]struct{})
	}
	b.removed[string(key)] = struct{}{}
}

// forHeld calls fn for each held message of bx up to seq upTo that the
// batch still sees, in order: those stored before the batch, then those
// it added. It stops at fn's first error. r.body aliases badger's memory
// and is valid during the call only.
func (b *builder) forHeld(bx *box, upTo uint64, fn func(key []byte, seq uint64, r *record) error) error {
	if b.snap == nil {
		b.snap = b.s.db.NewTransactionAt(b.s.ts, false)
	}
	p := msgPrefix(bx.id)
	it := b.snap.NewIterator(badger.IteratorOptions{Prefix: p})
	for it.Seek(p); it.Valid(); it.Next() {
		item := it.Item()
		_, seq, err := parseMsgKey(item.Key())
		if err != nil {
			it.Close()
			return err
		}
		if seq > upTo {
			break
		}
		if _, gone := b.removed[string(item.Key())]; gone {
			continue
		}
		key := item.KeyCopy(nil)
		err = item.Value(func(v []byte) error {
			r, err := decodeRecord(key, v)
			if err != nil || r.kind != kindHeld {
				return err
			}
			return fn(key, seq, &r)
		})
		if err != nil {
			it.Close()
			return wrapRead(err)
		}
	}
	it.Close()
	if b.addedBy == nil {
		b.addedBy = make(map[*box][]int)
		for i, a := range b.added {
			b.addedBy[a.bx] = append(b.addedBy[a.bx], i)
		}
	}
	for _, i := range b.addedBy[bx] {
		a := &b.added[i]
		if a.seq > upTo {
			break
		}
		if _, gone := b.removed[string(a.key)]; gone {
			continue
		}
		r, err := decodeRecord(a.key, a.val)
		if err != nil {
			return err
		}
		if err := fn(a.key, a.seq, &r); err != nil {
			return err
		}
	}
	return nil
}

// box returns mb's index entry, adding it (from its "Q" head) if
// missing, and marks it touched by the batch.
func (b *builder) box(mb mailbox.ID) (*box, error) {
	bx := b.s.boxes[mb]
	if bx == nil {
		// Every mailbox with an "M" record is indexed (buildIndex), so
		// this one's head and floor are its "Q" record's, written before
		// Open.
		head, acked, err := readMeta(b.txn, mb)
		if err != nil {
			return nil, err
		}
		bx = b.s.newBox(mb, head, acked)
	}
	if bx.batch != b.id {
		bx.batch = b.id
		bx.saved = bx.boxState
		bx.writeQ, bx.notify = false, false
		b.touched = append(b.touched, bx)
	}
	return bx, nil
}

func (b *builder) apply(r *request) error {
	switch r.kind {
	case reqEnqueue:
		return b.enqueue(r)
	case reqAck:
		return b.ack(r)
	case reqSweep:
		return b.sweep(r)
	}
	return fmt.Errorf("badgermailbox: request kind %d", r.kind)
}

func (b *builder) enqueue(r *request) error {
	bx, err := b.box(r.mb)
	if err != nil {
		return err
	}
	if d, ok := bx.ids[r.id]; ok && d.until > b.nowMs {
		same, err := b.sameBody(bx, d.seq, r)
		if err != nil {
			return err
		}
		if !same {
			r.err = mailbox.ErrIDConflict
			return nil
		}
		r.receipt = mailbox.Receipt{Seq: d.seq, Duplicate: true, Head: bx.head}
		return nil
	}
	size := uint64(r.size)
	full := func() bool {
		return int(bx.count)+1 > b.s.limits.MaxMessages || bx.bytes+size > uint64(b.s.limits.MaxBytes)
	}
	if full() && bx.lowExpiry != 0 && bx.lowExpiry <= b.nowMs {
		var n int
		if err := b.expireMailbox(bx, &n); err != nil {
			return err
		}
	}
	if full() {
		r.err = mailbox.ErrQuota
		return nil
	}
	if bx.head == ^uint64(0) {
		r.err = fmt.Errorf("%w: sequence numbers exhausted", mailbox.ErrQuota)
		return nil
	}
	seq := bx.head + 1
	mk := msgKey(r.mb, seq)
	val := seal(mk, r.value)
	b.set(mk, val)
	d := dref{seq: seq, until: r.untilMs}
	bx.ids[r.id] = d
	b.s.wheel.add(bx, r.id, d)
	if bx.lowExpiry == 0 || r.expMs < bx.lowExpiry {
		bx.lowExpiry = r.expMs
	}
	if b.addedBy != nil {
		b.addedBy[bx] = append(b.addedBy[bx], len(b.added))
	}
	b.added = append(b.added, addedMsg{bx: bx, id: r.id, seq: seq, key: mk, val: val})
	bx.head = seq
	bx.count++
	bx.bytes += size
	bx.notify = true
	r.receipt = mailbox.Receipt{Seq: seq, Head: seq}
	return nil
}

// sameBody reports whether the message stored at seq in bx has r's body:
// compared byte for byte while held, by digest once acknowledged.
func (b *builder) sameBody(bx *box, seq uint64, r *request) (bool, error) {
	k := msgKey(bx.id, seq)
	item, err := b.txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, fmt.Errorf("%w: mailbox %v: message %d of a deduplication entry is missing", mailbox.ErrCorrupt, bx.id, seq)
	}
	if err != nil {
		return false, wrapRead(err)
	}
	body := r.value[heldOverhead-crcSize : heldOverhead-crcSize+r.size]
	var same bool
	err = item.Value(func(v []byte) error {
		rec, err := decodeRecord(k, v)
		if err != nil {
			return err
		}
		if rec.id != r.id {
			return fmt.Errorf("%w: mailbox %v: message %d has another id than its deduplication entry", mailbox.ErrCorrupt, bx.id, seq)
		}
		if rec.kind == kindHeld {
			same = bytes.Equal(rec.body, body)
		} else {
			same = sha256.Sum256(body) == rec.digest
		}
		return nil
	})
	return same, wrapRead(err)
}

// expireMailbox deletes the expired messages of bx, counting them in
// *removed, and sets its low expiry to the earliest remaining expiry.
func (b *builder) expireMailbox(bx *box, removed *int) error {
	low := int64(0)
	err := b.forHeld(bx, ^uint64(0), func(key []byte, seq uint64, r *record) error {
		if r.expiresMs > b.nowMs {
			if low == 0 || r.expiresMs < low {
				low = r.expiresMs
			}
			return nil
		}
		b.remove(key, r, false)
		bx.count--
		bx.bytes -= uint64(len(r.body))
		bx.writeQ = true
		*removed++
		return nil
	})
	if err != nil {
		return err
	}
	bx.lowExpiry = low
	return nil
}

func (b *builder) ack(r *request) error {
	bx, err := b.box(r.mb)
	if err != nil {
		return err
	}
	if r.upTo > bx.head {
		r.err = fmt.Errorf("%w: ack of %d with head %d", mailbox.ErrBeyondHead, r.upTo, bx.head)
		return nil
	}
	if r.upTo > bx.acked {
		// The acknowledgement floor, signed in every head (T40).
		bx.acked = r.upTo
		bx.writeQ = true
	}
	if r.upTo == 0 || bx.count == 0 {
		return nil
	}
	err = b.forHeld(bx, r.upTo, func(key []byte, seq uint64, rec *record) error {
		if bx.count == 0 {
			return fmt.Errorf("%w: mailbox %v holds more messages than its index counts", mailbox.ErrCorrupt, r.mb)
		}
		b.remove(key, rec, true)
		bx.count--
		bx.bytes -= uint64(len(rec.body))
		bx.writeQ = true
		return nil
	})
	if err != nil {
		return err
	}
	if bx.count == 0 {
		bx.bytes = 0
		bx.lowExpiry = 0
	}
	return nil
}

// sweep expires the mailboxes whose low expiry is due, as many as fit the
// batch, and drops deduplication entries past their time from the index.
func (b *builder) sweep(r *request) error {
	var due []*box
	for _, bx := range b.s.boxes {
		if bx.lowExpiry != 0 && bx.lowExpiry <= b.nowMs {
			if len(due) == sweepChunk {
				r.more = true
				break
			}
			due = append(due, bx)
		}
	}
	slices.SortFunc(due, func(x, y *box) int { return bytes.Compare(x.id[:], y.id[:]) })
	for i, bx := range due {
		if i > 0 && (b.size >= b.s.softSize || b.n >= b.s.softN) {
			r.more = true
			return nil
		}
		if _, err := b.box(bx.id); err != nil {
			return err
		}
		if err := b.expireMailbox(bx, &r.removed); err != nil {
			return err
		}
	}
	if b.s.wheel.prune(b.nowMs) {
		r.more = true
	}
	return nil
}
