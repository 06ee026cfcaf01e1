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

// writeLoop is the writer goroutine.
func (s *Store) writeLoop() {
	defer s.bg.Done()
	var batch []*request
	for {
		batch = batch[:0]
		select {
		case r := <-s.reqs:
			batch = append(batch, r)
		case <-s.stop:
			// Close waited for every sender: what is queued is all there
			// is. Finish it.
			for {
				batch = batch[:0]
			drain:
				for len(batch) < maxBatch {
					select {
					case r := <-s.reqs:
						batch = append(batch, r)
					default:
						break drain
					}
				}
				if len(batch) == 0 {
					return
				}
				s.runBatch(batch)
			}
		}
	more:
		for len(batch) < maxBatch {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
			default:
				break more
			}
		}
		s.runBatch(batch)
	}
}

// runBatch applies batch, in as many transactions as its size needs
// (normally one).
func (s *Store) runBatch(batch []*request) {
	for len(batch) > 0 {
		batch = s.runTxn(batch)
	}
}

// A builder accumulates one batch's transaction.
type builder struct {
	s       *Store
	txn     *badger.Txn
	nowMs   int64
	metas   map[mailbox.ID]*meta // read or changed in this batch
	dirty   map[mailbox.ID]bool  // metas to write
	notify  map[mailbox.ID]bool  // mailboxes with new messages
	entries []entry              // every write, kept to redo the batch
	size, n int64                // badger's estimate of the transaction
}

// An entry is one write of a batch.
type entry struct {
	key, val []byte
	del      bool
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
		nowMs:  now.UnixMilli(),
		metas:  make(map[mailbox.ID]*meta),
		dirty:  make(map[mailbox.ID]bool),
		notify: make(map[mailbox.ID]bool),
	}
	defer b.txn.Discard()
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
		s.answer(taken, nil)
		return rest
	}
	for mb := range b.dirty {
		k := metaKey(mb)
		b.set(k, encodeMeta(k, *b.metas[mb]))
	}
	ts := s.ts + 1
	b.set(keyCommit, encodeCommit(ts))
	if err := s.commit(b, ts); err != nil {
		s.answer(taken, err)
		return rest
	}
	for mb := range b.notify {
		s.n.Notify(mb)
	}
	s.answer(taken, nil)
	return rest
}

// commit writes b at ts and makes it durable. On failure nothing of b is
// acknowledged; if badger may hold part of it, the store goes down and
// recovers.
func (s *Store) commit(b *builder, ts uint64) error {
	if _, err := s.faults.Write(int(b.size)); err != nil {
		// Refused before badger saw it: nothing to undo.
		return fmt.Errorf("%w: writing a batch: %v", mailbox.ErrUnavailable, err)
	}
	if err := b.txn.CommitAt(ts, nil); err != nil {
		s.goDown(fmt.Errorf("commit: %w", err), b.entries)
		return fmt.Errorf("%w: committing a batch: %v", mailbox.ErrUnavailable, err)
	}
	if err := s.sync(); err != nil {
		s.goDown(err, b.entries)
		return fmt.Errorf("%w: syncing a batch: %v", mailbox.ErrUnavailable, err)
	}
	s.ts = ts
	s.readTs.Store(ts)
	if d := s.discard.advance(time.Now(), ts); d > 0 {
		s.db.SetDiscardTs(d)
	}
	s.markWatermark()
	return nil
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
	var err error
	if e.del {
		err = b.txn.Delete(e.key)
	} else {
		err = b.txn.Set(e.key, e.val)
	}
	if err != nil {
		// The soft bounds leave room for the largest request
		// (checkBatchLimits), so badger refusing an entry is a bug.
		panic(fmt.Sprintf("badgermailbox: badger refused a write within the transaction limits: %v", err))
	}
	b.entries = append(b.entries, e)
	b.size += estimate(len(e.key), len(e.val))
	b.n++
}

// meta returns the meta record of mb as the batch sees it.
func (b *builder) meta(mb mailbox.ID) (*meta, error) {
	if m, ok := b.metas[mb]; ok {
		return m, nil
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

// checkEmpty returns ErrCorrupt if mailbox mb holds a message.
func (b *builder) checkEmpty(mb mailbox.ID) error {
	p := msgPrefix(mb)
	it := b.txn.NewIterator(badger.IteratorOptions{Prefix: p})
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
		if err := b.expireMailbox(r.mb, m); err != nil {
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
	b.set(dk, encodeDedup(dk, dedup{seq: seq, untilMs: until, digest: r.digest}))
	if until == r.expMs {
		ek := expiryKey(r.expMs, r.mb, seq)
		b.set(ek, encodeExpiry(ek, flagMessage|flagDedup, r.id))
	} else {
		ek := expiryKey(until, r.mb, seq)
		b.set(ek, encodeExpiry(ek, flagDedup, r.id))
		ek = expiryKey(r.expMs, r.mb, seq)
		b.set(ek, encodeExpiry(ek, flagMessage, r.id))
	}
	m.head = seq
	m.count++
	m.bytes += size
	if m.lowExpiry == 0 || r.expMs < m.lowExpiry {
		m.lowExpiry = r.expMs
	}
	b.dirty[r.mb] = true
	b.notify[r.mb] = true
	r.receipt = mailbox.Receipt{Seq: seq}
	return nil
}

// expireMailbox deletes the expired messages of mb (their expiry and
// dedup entries are left to the sweep, which finds the messages gone) and
// recomputes m.lowExpiry.
func (b *builder) expireMailbox(mb mailbox.ID, m *meta) error {
	type victim struct {
		key  []byte
		size int
	}
	var victims []victim
	low := int64(0)
	p := msgPrefix(mb)
	it := b.txn.NewIterator(badger.IteratorOptions{Prefix: p})
	for it.Seek(p); it.Valid(); it.Next() {
		item := it.Item()
		var exp int64
		var size int
		if err := item.Value(func(v []byte) error {
			_, e, body, err := decodeMsg(item.Key(), v)
			exp, size = e, len(body)
			return err
		}); err != nil {
			it.Close()
			return wrapRead(err)
		}
		if exp <= b.nowMs {
			victims = append(victims, victim{item.KeyCopy(nil), size})
		} else if low == 0 || exp < low {
			low = exp
		}
	}
	it.Close()
	for _, v := range victims {
		b.del(v.key)
		m.count--
		m.bytes -= uint64(v.size)
	}
	m.lowExpiry = low
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
	var keys [][]byte
	var sizes []int
	p := msgPrefix(r.mb)
	it := b.txn.NewIterator(badger.IteratorOptions{Prefix: p, PrefetchValues: false})
	for it.Seek(p); it.Valid(); it.Next() {
		item := it.Item()
		_, seq, err := parseMsgKey(item.Key())
		if err != nil {
			it.Close()
			return err
		}
		if seq > r.upTo {
			break
		}
		keys = append(keys, item.KeyCopy(nil))
		sizes = append(sizes, msgBodySize(int(item.ValueSize())))
	}
	it.Close()
	if len(keys) > int(m.count) {
		return fmt.Errorf("%w: mailbox %v holds more messages than its meta counts", mailbox.ErrCorrupt, r.mb)
	}
	for i, k := range keys {
		b.del(k)
		m.count--
		m.bytes -= uint64(max(sizes[i], 0))
	}
	if m.count == 0 {
		m.bytes, m.lowExpiry = 0, 0
	}
	if len(keys) > 0 {
		b.dirty[r.mb] = true
	}
	return nil
}

func (b *builder) sweep(r *request) error {
	type exp struct {
		key   []byte
		mb    mailbox.ID
		seq   uint64
		flags byte
		id    mailbox.MessageID
	}
	var due []exp
	p := []byte{prefixExpiry}
	it := b.txn.NewIterator(badger.IteratorOptions{Prefix: p})
	for it.Seek(p); it.Valid(); it.Next() {
		item := it.Item()
		at, mb, seq, err := parseExpiryKey(item.Key())
		if err != nil {
			it.Close()
			return err
		}
		if at > b.nowMs {
			break
		}
		if len(due) == sweepChunk {
			r.more = true
			break
		}
		e := exp{key: item.KeyCopy(nil), mb: mb, seq: seq}
		if err := item.Value(func(v []byte) error {
			var err error
			e.flags, e.id, err = decodeExpiry(e.key, v)
			return err
		}); err != nil {
			it.Close()
			return wrapRead(err)
		}
		due = append(due, e)
	}
	it.Close()
	for _, e := range due {
		if e.flags&flagMessage != 0 {
			mk := msgKey(e.mb, e.seq)
			item, err := b.txn.Get(mk)
			switch {
			case errors.Is(err, badger.ErrKeyNotFound):
			case err != nil:
				return wrapRead(err)
			default:
				var size int
				if err := item.Value(func(v []byte) error {
					_, _, body, err := decodeMsg(mk, v)
					size = len(body)
					return err
				}); err != nil {
					return wrapRead(err)
				}
				m, err := b.meta(e.mb)
				if err != nil {
					return err
				}
				b.del(mk)
				m.count--
				m.bytes -= uint64(size)
				if m.count == 0 {
					m.bytes, m.lowExpiry = 0, 0
				}
				b.dirty[e.mb] = true
				r.removed++
			}
		}
		if e.flags&flagDedup != 0 {
			dk := dedupKey(e.mb, e.id)
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
				if d.seq == e.seq {
					b.del(dk)
				}
			}
		}
		b.del(e.key)
	}
	return nil
}
