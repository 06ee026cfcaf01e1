package badgermailbox

// The mailbox index (docs/spec/relay-storage.md §Badger backend, Mailbox
// index): what the writer needs to decide an enqueue, an ack or a sweep
// without reading badger. It is rebuilt at Open from the "M" records and
// the "Q" records of their mailboxes.
//
// The writer goroutine owns every field of a box but pub, and the boxes
// map's contents; it changes the map under pubMu. Readers (Fetch, Status)
// read pub and the map under pubMu.RLock. pub is what the latest durable
// batch left: the writer sets it when the batch's sync returns, before
// readers move to the batch's timestamp.

import (
	"context"
	"errors"

	"github.com/dgraph-io/badger/v4"

	"github.com/moat-im/moat/server/store/mailbox"
)

// boxState is a mailbox's head, acknowledgement floor and held messages.
type boxState struct {
	head      uint64
	acked     uint64 // the highest upTo of an applied Ack
	count     uint32 // held messages (expired ones until removed)
	bytes     uint64 // their body bytes
	lowExpiry int64  // Unix ms, at most their earliest expiry; 0: none held
}

// A dref is a deduplication entry: the message id's sequence number and
// its deduplication time (Unix ms).
type dref struct {
	seq   uint64
	until int64
}

// A box is the index entry of one mailbox.
type box struct {
	id mailbox.ID
	boxState
	// ids holds the deduplication entries; entries past their time are
	// ignored, and dropped by the sweep (wheel).
	ids map[mailbox.MessageID]dref

	pub mailbox.Status // guarded by Store.pubMu

	// Scratch of the batch that touched the box last (batch id).
	batch  uint64
	saved  boxState // the state before that batch, to revert it
	writeQ bool     // that batch removed messages: write "Q"
	notify bool     // that batch enqueued
}

// status returns the box's state as a mailbox.Status.
func (bx *box) status() mailbox.Status {
	return mailbox.Status{Head: bx.head, Acked: bx.acked, Messages: int(bx.count), Bytes: int64(bx.bytes)}
}

// wheelBucket is the width of a wheel bucket, in ms.
const wheelBucket = 60_000

// wheelChunk bounds the entries one sweep request drops from the wheel.
const wheelChunk = 1 << 16

// A wheel finds the deduplication entries past their time: bucket
// until/wheelBucket holds every entry added with that until.
type wheel struct {
	buckets map[int64]*[]wheelRef
	// The bucket added to last: most enqueues of a minute share one.
	lastK int64
	last  *[]wheelRef
}

type wheelRef struct {
	bx  *box
	id  mailbox.MessageID
	seq uint64
}

func newWheel() *wheel { return &wheel{buckets: make(map[int64]*[]wheelRef)} }

func (w *wheel) add(bx *box, id mailbox.MessageID, d dref) {
	k := d.until / wheelBucket
	if w.last == nil || w.lastK != k {
		w.last = w.buckets[k]
		if w.last == nil {
			w.last = new([]wheelRef)
			w.buckets[k] = w.last
		}
		w.lastK = k
	}
	*w.last = append(*w.last, wheelRef{bx: bx, id: id, seq: d.seq})
}

// prune drops the entries of the buckets that ended at or before nowMs,
// at most wheelChunk of them, and reports whether some are left.
func (w *wheel) prune(nowMs int64) (more bool) {
	n := 0
	for k, p := range w.buckets {
		if (k+1)*wheelBucket > nowMs {
			continue
		}
		refs := *p
		if n+len(refs) > wheelChunk {
			take := wheelChunk - n
			dropRefs(refs[:take], nowMs)
			*p = refs[take:]
			return true
		}
		dropRefs(refs, nowMs)
		n += len(refs)
		delete(w.buckets, k)
		if w.last == p {
			w.last = nil
		}
	}
	return false
}

func dropRefs(refs []wheelRef, nowMs int64) {
	for _, r := range refs {
		if d, ok := r.bx.ids[r.id]; ok && d.seq == r.seq && d.until <= nowMs {
			delete(r.bx.ids, r.id)
		}
	}
}

// newBox adds an empty box with head and floor to the index.
func (s *Store) newBox(mb mailbox.ID, head, acked uint64) *box {
	bx := &box{id: mb, boxState: boxState{head: head, acked: acked}, ids: make(map[mailbox.MessageID]dref)}
	bx.pub = bx.status()
	s.pubMu.Lock()
	s.boxes[mb] = bx
	s.pubMu.Unlock()
	return bx
}

// publish makes the given states visible to readers.
func (s *Store) publish(stats []boxStat) {
	if len(stats) == 0 {
		return
	}
	s.pubMu.Lock()
	for _, st := range stats {
		st.bx.pub = st.st
	}
	s.pubMu.Unlock()
}

// publishAll publishes the state of every box (after recovery, when the
// writer's state is durable again).
func (s *Store) publishAll() {
	s.pubMu.Lock()
	for _, bx := range s.boxes {
		bx.pub = bx.status()
	}
	s.pubMu.Unlock()
}

// boxStat is a box's state at a batch's commit, published at its sync.
type boxStat struct {
	bx *box
	st mailbox.Status
}

// published returns the durable status of mb: its published state, or,
// for a mailbox outside the index, its "Q" head and floor as txn (a
// durable snapshot) reads them. Call it after opening txn.
func (s *Store) published(txn *badger.Txn, mb mailbox.ID) (mailbox.Status, error) {
	s.pubMu.RLock()
	bx := s.boxes[mb]
	var st mailbox.Status
	if bx != nil {
		st = bx.pub
	}
	s.pubMu.RUnlock()
	if bx != nil {
		return st, nil
	}
	head, acked, err := readMeta(txn, mb)
	return mailbox.Status{Head: head, Acked: acked}, err
}

// readMeta reads mb's "Q" head and acknowledgement floor; 0, 0 if it has
// none.
func readMeta(txn *badger.Txn, mb mailbox.ID) (head, acked uint64, err error) {
	k := metaKey(mb)
	item, err := txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, wrapRead(err)
	}
	err = item.Value(func(v []byte) error {
		var err error
		head, acked, err = decodeMeta(k, v)
		return err
	})
	return head, acked, wrapRead(err)
}

// buildIndex rebuilds the index from the database at the durable
// timestamp: a box for every mailbox with an "M" record, its head the
// highest of its "Q" head and its sequence numbers, its acknowledgement
// floor its "Q" floor.
func (s *Store) buildIndex(ctx context.Context) error {
	txn := s.db.NewTransactionAt(s.readTs.Load(), false)
	defer txn.Discard()
	nowMs := s.now().UnixMilli()
	s.boxes = make(map[mailbox.ID]*box)
	s.wheel = newWheel()
	p := []byte{prefixMsg}
	it := txn.NewIterator(badger.IteratorOptions{Prefix: p})
	defer it.Close()
	var bx *box
	n := 0
	for it.Seek(p); it.Valid(); it.Next() {
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		item := it.Item()
		mb, seq, err := parseMsgKey(item.Key())
		if err != nil {
			return err
		}
		if bx == nil || bx.id != mb {
			head, acked, err := readMeta(txn, mb)
			if err != nil {
				return err
			}
			bx = &box{id: mb, boxState: boxState{head: head, acked: acked}, ids: make(map[mailbox.MessageID]dref)}
			s.boxes[mb] = bx
		}
		var r record
		if err := item.Value(func(v []byte) error {
			var err error
			r, err = decodeRecord(item.Key(), v)
			return err
		}); err != nil {
			return wrapRead(err)
		}
		bx.head = max(bx.head, seq)
		if r.kind == kindHeld {
			bx.count++
			bx.bytes += uint64(len(r.body))
			if bx.lowExpiry == 0 || r.expiresMs < bx.lowExpiry {
				bx.lowExpiry = r.expiresMs
			}
		}
		if r.untilMs > nowMs {
			d := dref{seq: seq, until: r.untilMs}
			if old, ok := bx.ids[r.id]; !ok || old.seq < seq {
				bx.ids[r.id] = d
				s.wheel.add(bx, r.id, d)
			}
		}
	}
	for _, bx := range s.boxes {
		bx.pub = bx.status()
	}
	return nil
}
