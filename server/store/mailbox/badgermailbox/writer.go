package badgermailbox

// Group commit (docs/spec/relay-storage.md §Durability).
//
// Callers build a request (an enqueue's record value and digest are made
// in the caller's goroutine), queue it, and wait. The writer goroutine
// takes the first queued request, drains whatever else is queued (up to
// maxBatch, and while the batch stays under half of badger's transaction
// limits), and applies the batch in one badger transaction that reads and
// writes at the next timestamp. Decisions (deduplication, quota, sequence
// numbers) see the earlier requests of the same batch through the
// transaction's pending writes and a per-batch cache of meta records.
// Then it commits the transaction, syncs once, publishes the timestamp to
// readers, signals subscribers and answers every caller. A batch that
// writes nothing (retries, refusals, empty acks) only saw durable data and
// is answered at once.

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
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
)

// sweepChunk bounds the expiry entries one sweep request handles.
const sweepChunk = 2048

// A request is one call waiting for the writer.
type request struct {
	kind reqKind
	mb   mailbox.ID
	// Enqueue.
	id     mailbox.MessageID
	expMs  int64
	value  []byte // message value without its CRC
	size   int    // body size
	digest [32]byte
	// Ack.
	upTo uint64

	// Results, set by the writer before it closes done.
	receipt mailbox.Receipt
	removed int  // sweep: messages removed
	more    bool // sweep: expiry entries left
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
	select {
	case s.reqs <- r:
		s.senders.Done()
	case <-ctx.Done():
		s.senders.Done()
		return ctx.Err()
	}
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		// The request may still be applied; a retry with the same
		// message id finds it.
		return ctx.Err()
	}
}

// Enqueue implements mailbox.Store.
func (s *Store) Enqueue(ctx context.Context, mb mailbox.ID, m mailbox.Message) (mailbox.Receipt, error) {
	exp, err := s.limits.Check(&m, s.now())
	if err != nil {
		return mailbox.Receipt{}, err
	}
	r := &request{kind: reqEnqueue, mb: mb, id: m.ID, expMs: exp, size: len(m.Body),
		value: encodeMsgValue(m.ID, exp, m.Body), digest: sha256.Sum256(m.Body)}
	if err := s.submit(ctx, r); err != nil {
		return mailbox.Receipt{}, fmt.Errorf("badgermailbox: enqueue in %v: %w", mb, err)
	}
	return r.receipt, nil
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
		batch = append(batch, r)
		batch = s.drain(batch)
		s.runBatch(batch)
	}
}

// drain appends what is queued to batch, up to maxBatch.
func (s *Store) drain(batch []*request) []*request {
	for len(batch) < maxBatch {
		select {
		case r := <-s.reqs:
			batch = append(batch, r)
		default:
			return batch
		}
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
	notify  map[mailbox.ID]bool
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
	s.readTs.Store(p.ts)
	if d := s.discard.advance(time.Now(), p.ts); d > 0 {
		s.db.SetDiscardTs(d)
	}
	s.markWatermark()
	for mb := range p.notify {
		s.n.Notify(mb)
	}
	s.answer(p.reqs, nil)
}

// failPending answers the requests of the given batches with
// ErrUnavailable and takes the store down to redo failed.
func (s *Store) failPending(cause error, failed [][]entry, batches ...*pending) {
	clear(s.metaCache)
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
// transaction); the builder merges in what the batch changed itself
// (added, gone).
type builder struct {
	s       *Store
	txn     *badger.Txn
	snap    *badger.Txn
	nowMs   int64
	metas   map[mailbox.ID]*meta      // read or changed in this batch
	dirty   map[mailbox.ID]bool       // metas to write
	notify  map[mailbox.ID]bool       // mailboxes with new messages
	added   map[mailbox.ID][]addedMsg // messages this batch enqueued
	gone    map[string]struct{}       // keys this batch deleted
	entries []entry                   // every write, kept to redo the batch
	size, n int64                     // badger's estimate of the transaction
}

// addedMsg is a message enqueued by the current batch.
type addedMsg struct {
	seq   uint64
	size  int
	expMs int64
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
	now := s.now()
	b := &builder{
		s:      s,
		txn:    s.db.NewTransactionAt(s.ts, true),
		snap:   s.db.NewTransactionAt(s.ts, false),
		nowMs:  now.UnixMilli(),
		metas:  make(map[mailbox.ID]*meta),
		dirty:  make(map[mailbox.ID]bool),
		notify: make(map[mailbox.ID]bool),
		added:  make(map[mailbox.ID][]addedMsg),
		gone:   make(map[string]struct{}),
	}
	defer b.txn.Discard()
	defer b.snap.Discard()
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
	for mb := range b.dirty {
		k := metaKey(mb)
		b.set(k, encodeMeta(k, *b.metas[mb]))
	}
	ts := s.ts + 1
	b.set(keyCommit, encodeCommit(ts))
	if _, err := s.faults.Write(int(b.size)); err != nil {
		// Refused before badger saw it: nothing to undo.
		s.answer(taken, fmt.Errorf("%w: writing a batch: %v", mailbox.ErrUnavailable, err))
		return rest
	}
	p := &pending{ts: ts, reqs: slices.Clone(taken), entries: b.entries, notify: b.notify}
	if err := b.txn.CommitAt(ts, nil); err != nil {
		// Badger refuses a commit before writing it, but the batch is
		// redone on recovery in case it wrote some.
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
	if len(s.metaCache)+len(b.dirty) > metaCacheSize {
		clear(s.metaCache)
	}
	for mb := range b.dirty {
		s.metaCache[mb] = *b.metas[mb]
	}
	if s.inflight != nil {
		err := <-s.syncDone
		if s.finishSync(err, p); err != nil {
			return rest
		}
	}
	s.inflight = p
	go func() { s.syncDone <- s.sync() }()
	return rest
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
	if e.del {
		b.gone[string(e.key)] = struct{}{}
	}
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

// isGone reports whether the batch deleted key.
func (b *builder) isGone(key []byte) bool {
	_, ok := b.gone[string(key)]
	return ok
}

// forMessages calls fn for each message of mb up to seq upTo that the
// batch still sees, in order: those stored before the batch, then those
// it added. size is the body size; fn may delete the message. It stops
// at fn's first error.
func (b *builder) forMessages(mb mailbox.ID, upTo uint64, withValues bool, fn func(key []byte, seq uint64, size int, expMs int64) error) error {
	p := msgPrefix(mb)
	it := b.snap.NewIterator(badger.IteratorOptions{Prefix: p, PrefetchValues: withValues})
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
		if b.isGone(item.Key()) {
			continue
		}
		size, exp := msgBodySize(int(item.ValueSize())), int64(0)
		if withValues {
			if err := item.Value(func(v []byte) error {
				_, e, body, err := decodeMsg(item.Key(), v)
				exp, size = e, len(body)
				return err
			}); err != nil {
				it.Close()
				return wrapRead(err)
			}
		}
		if err := fn(item.KeyCopy(nil), seq, size, exp); err != nil {
			it.Close()
			return err
		}
	}
	it.Close()
	for _, a := range b.added[mb] {
		if a.seq > upTo {
			break
		}
		k := msgKey(mb, a.seq)
		if b.isGone(k) {
			continue
		}
		if err := fn(k, a.seq, a.size, a.expMs); err != nil {
			return err
		}
	}
	return nil
}

// meta returns the meta record of mb as the batch sees it.
func (b *builder) meta(mb mailbox.ID) (*meta, error) {
	if m, ok := b.metas[mb]; ok {
		return m, nil
	}
	if m, ok := b.s.metaCache[mb]; ok {
		b.metas[mb] = &m
		return &m, nil
	}
	m, found, err := getMeta(b.txn, mb)
	if err != nil {
		return nil, err
	}
	if !found {
		// A mailbox without meta must hold nothing: a lost meta record
		// would otherwise reset the head and reuse sequence numbers.
		if err := b.checkEmpty(mb); err != nil {
			return nil, err
		}
	}
	b.metas[mb] = &m
	return &m, nil
}

// checkEmpty returns ErrCorrupt if mailbox mb holds a message. (The batch
// has written nothing in a mailbox whose meta it has not read.)
func (b *builder) checkEmpty(mb mailbox.ID) error {
	p := msgPrefix(mb)
	it := b.snap.NewIterator(badger.IteratorOptions{Prefix: p, PrefetchValues: false})
	defer it.Close()
	it.Seek(p)
	if it.Valid() {
		return fmt.Errorf("%w: mailbox %v holds messages but no meta record", mailbox.ErrCorrupt, mb)
	}
	return nil
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
	dk := dedupKey(r.mb, r.id)
	item, err := b.txn.Get(dk)
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
	case err != nil:
		return wrapRead(err)
	default:
		var d dedup
		if err := item.Value(func(v []byte) error {
			var err error
			d, err = decodeDedup(dk, v)
			return err
		}); err != nil {
			return wrapRead(err)
		}
		if d.untilMs > b.nowMs {
			if d.digest != r.digest {
				r.err = mailbox.ErrIDConflict
				return nil
			}
			r.receipt = mailbox.Receipt{Seq: d.seq, Duplicate: true}
			return nil
		}
	}
	m, err := b.meta(r.mb)
	if err != nil {
		return err
	}
	size := uint64(r.size)
	full := func() bool {
		return int(m.count)+1 > b.s.limits.MaxMessages || m.bytes+size > uint64(b.s.limits.MaxBytes)
	}
	if full() && m.lowExpiry != 0 && m.lowExpiry <= b.nowMs {
		var n int
		if err := b.expireMailbox(r.mb, m, &n); err != nil {
			return err
		}
	}
	if full() {
		r.err = mailbox.ErrQuota
		return nil
	}
	if m.head == ^uint64(0) {
		r.err = fmt.Errorf("%w: sequence numbers exhausted", mailbox.ErrQuota)
		return nil
	}
	seq := m.head + 1
	mk := msgKey(r.mb, seq)
	b.set(mk, seal(mk, r.value))
	until := b.s.limits.DedupUntil(b.nowMs, r.expMs)
	b.write(entry{key: dk, val: encodeDedup(dk, dedup{seq: seq, untilMs: until, digest: r.digest}), expiresAt: dedupTTL(until)})
	if m.lowExpiry == 0 || r.expMs < m.lowExpiry {
		b.reschedule(r.mb, m, r.expMs)
	}
	b.added[r.mb] = append(b.added[r.mb], addedMsg{seq: seq, size: r.size, expMs: r.expMs})
	m.head = seq
	m.count++
	m.bytes += size
	b.dirty[r.mb] = true
	b.notify[r.mb] = true
	r.receipt = mailbox.Receipt{Seq: seq}
	return nil
}

// reschedule moves the expiry entry of mb to at (0: none) and records it
// in m.lowExpiry.
func (b *builder) reschedule(mb mailbox.ID, m *meta, at int64) {
	if m.lowExpiry == at {
		return
	}
	if m.lowExpiry != 0 {
		b.del(expiryKey(m.lowExpiry, mb))
	}
	if at != 0 {
		ek := expiryKey(at, mb)
		b.set(ek, encodeExpiry(ek))
	}
	m.lowExpiry = at
	b.dirty[mb] = true
}

// expireMailbox deletes the expired messages of mb, counting them in
// *removed, and moves its expiry entry to the earliest remaining expiry.
// (Their dedup records expire by themselves.)
func (b *builder) expireMailbox(mb mailbox.ID, m *meta, removed *int) error {
	low := int64(0)
	err := b.forMessages(mb, ^uint64(0), true, func(key []byte, seq uint64, size int, exp int64) error {
		if exp > b.nowMs {
			if low == 0 || exp < low {
				low = exp
			}
			return nil
		}
		b.del(key)
		m.count--
		m.bytes -= uint64(size)
		*removed++
		return nil
	})
	if err != nil {
		return err
	}
	b.reschedule(mb, m, low)
	b.dirty[mb] = true
	return nil
}

func (b *builder) ack(r *request) error {
	m, err := b.meta(r.mb)
	if err != nil {
		return err
	}
	if r.upTo > m.head {
		r.err = fmt.Errorf("%w: ack of %d with head %d", mailbox.ErrBeyondHead, r.upTo, m.head)
		return nil
	}
	if r.upTo == 0 || m.count == 0 {
		return nil
	}
	deleted := 0
	err = b.forMessages(r.mb, r.upTo, false, func(key []byte, seq uint64, size int, _ int64) error {
		if m.count == 0 {
			return fmt.Errorf("%w: mailbox %v holds more messages than its meta counts", mailbox.ErrCorrupt, r.mb)
		}
		b.del(key)
		m.count--
		m.bytes -= uint64(max(size, 0))
		deleted++
		return nil
	})
	if err != nil {
		return err
	}
	if deleted > 0 {
		b.dirty[r.mb] = true
	}
	if m.count == 0 {
		m.bytes = 0
		b.reschedule(r.mb, m, 0)
	}
	return nil
}

// sweep expires the mailboxes whose expiry entries are due, as many as
// fit the batch.
func (b *builder) sweep(r *request) error {
	type due struct {
		key []byte
		at  int64
		mb  mailbox.ID
	}
	var dues []due
	p := []byte{prefixExpiry}
	it := b.snap.NewIterator(badger.IteratorOptions{Prefix: p})
	for it.Seek(p); it.Valid(); it.Next() {
		item := it.Item()
		if b.isGone(item.Key()) {
			continue
		}
		at, mb, err := parseExpiryKey(item.Key())
		if err != nil {
			it.Close()
			return err
		}
		if at > b.nowMs {
			break
		}
		if len(dues) == sweepChunk {
			r.more = true
			break
		}
		if err := item.Value(func(v []byte) error { return decodeExpiry(item.Key(), v) }); err != nil {
			it.Close()
			return wrapRead(err)
		}
		dues = append(dues, due{key: item.KeyCopy(nil), at: at, mb: mb})
	}
	it.Close()
	for i, d := range dues {
		if i > 0 && (b.size >= b.s.softSize || b.n >= b.s.softN) {
			r.more = true
			return nil
		}
		m, err := b.meta(d.mb)
		if err != nil {
			return err
		}
		if m.lowExpiry != d.at {
			return fmt.Errorf("%w: mailbox %v: expiry entry at %d, meta names %d", mailbox.ErrCorrupt, d.mb, d.at, m.lowExpiry)
		}
		if err := b.expireMailbox(d.mb, m, &r.removed); err != nil {
			return err
		}
	}
	return nil
}
