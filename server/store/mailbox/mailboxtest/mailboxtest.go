// Package mailboxtest holds the conformance suite of mailbox.Store
// (STYLE 8): every backend runs Run, and backends that persist also run
// RunDurable.
//
//	func TestConformance(t *testing.T) {
//		mailboxtest.Run(t, func(t *testing.T, cfg mailboxtest.Config) mailbox.Store {
//			return newMyStore(t, cfg)
//		})
//	}
//
// The suite controls time through Config.Now and limits through
// Config.Limits; a backend must honour both.
package mailboxtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moat-im/moat/server/store/mailbox"
)

// Config is what the suite asks of a store it opens.
type Config struct {
	Limits mailbox.Limits
	// Now is the store's clock.
	Now func() time.Time
}

// A Clock is a settable clock for Config.Now.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock at a fixed instant.
func NewClock() *Clock { return &Clock{t: time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// NewStore returns a new, empty store configured by cfg, and arranges for
// it to be closed when t ends (Close is idempotent).
type NewStore func(t *testing.T, cfg Config) mailbox.Store

// OpenStore opens the store kept in dir (empty: a new store) configured by
// cfg. The suite closes every store it opens.
type OpenStore func(t *testing.T, dir string, cfg Config) mailbox.Store

// Run runs the conformance suite.
func Run(t *testing.T, newStore NewStore) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, NewStore)
	}{
		{"EnqueueFetch", testEnqueueFetch},
		{"NoAliasing", testNoAliasing},
		{"Idempotent", testIdempotent},
		{"Ack", testAck},
		{"AckFloor", testAckFloor},
		{"Expiry", testExpiry},
		{"DedupWindow", testDedupWindow},
		{"Quota", testQuota},
		{"Invalid", testInvalid},
		{"FetchBytes", testFetchBytes},
		{"Concurrent", testConcurrent},
		{"Subscribe", testSubscribe},
		{"Context", testContext},
		{"Closed", testClosed},
		{"Batch", testBatch},
		{"BatchOrder", testBatchOrder},
		{"BatchConcurrent", testBatchConcurrent},
		{"BatchContextClosed", testBatchContextClosed},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore) })
	}
}

var ctx = context.Background()

// Msg returns a message with an id and body derived from mailbox, n and
// variant, expiring ttl after now.
func Msg(mb mailbox.ID, n int, variant byte, size int, now time.Time, ttl time.Duration) mailbox.Message {
	var id mailbox.MessageID
	copy(id[:], mb[:4])
	binary.BigEndian.PutUint64(id[8:], uint64(n))
	seed := sha256.Sum256(append(id[:], variant))
	body := make([]byte, size)
	for i := 0; i < size; i += 32 {
		copy(body[i:], seed[:])
		seed = sha256.Sum256(seed[:])
	}
	return mailbox.Message{ID: id, Expires: now.Add(ttl), Body: body}
}

// Box returns the mailbox id n.
func Box(n int) mailbox.ID {
	var mb mailbox.ID
	binary.BigEndian.PutUint32(mb[:], uint32(n))
	mb[15] = 0xb0
	return mb
}

// enqueue enqueues m and checks the receipt's head: at least its
// sequence number, and at most the head Status then reports
// (§Sequence numbers).
func enqueue(t *testing.T, s mailbox.Store, mb mailbox.ID, m mailbox.Message) mailbox.Receipt {
	t.Helper()
	r, err := s.Enqueue(ctx, mb, m)
	if err != nil {
		t.Fatalf("Enqueue(%v, %v): %v", mb, m.ID, err)
	}
	if r.Head < r.Seq {
		t.Fatalf("Enqueue(%v, %v): receipt head %d below its seq %d", mb, m.ID, r.Head, r.Seq)
	}
	if st := status(t, s, mb); st.Head < r.Head {
		t.Fatalf("Enqueue(%v, %v): receipt head %d above the head %d Status reports", mb, m.ID, r.Head, st.Head)
	}
	return r
}

// dup reports whether r is the receipt of a retry of the message stored
// at seq.
func dup(r mailbox.Receipt, seq uint64) bool { return r.Duplicate && r.Seq == seq }

func fetchAll(t *testing.T, s mailbox.Store, mb mailbox.ID, after uint64) mailbox.Page {
	t.Helper()
	var all mailbox.Page
	for {
		p, err := s.Fetch(ctx, mb, after, mailbox.MaxFetch)
		if err != nil {
			t.Fatalf("Fetch(%v, %d): %v", mb, after, err)
		}
		if p.Acked > p.Head {
			t.Fatalf("Fetch(%v): acknowledgement floor %d above the head %d", mb, p.Acked, p.Head)
		}
		for _, m := range p.Messages {
			if m.Seq > p.Head || m.Seq <= p.Acked {
				t.Fatalf("Fetch(%v): message %d outside (floor %d, head %d]", mb, m.Seq, p.Acked, p.Head)
			}
		}
		all.Head = max(all.Head, p.Head)
		all.Acked = max(all.Acked, p.Acked)
		all.Messages = append(all.Messages, p.Messages...)
		if len(p.Messages) == 0 {
			return all
		}
		after = p.Messages[len(p.Messages)-1].Seq
	}
}

func status(t *testing.T, s mailbox.Store, mb mailbox.ID) mailbox.Status {
	t.Helper()
	st, err := s.Status(ctx, mb)
	if err != nil {
		t.Fatalf("Status(%v): %v", mb, err)
	}
	return st
}

// checkMessages checks that got holds exactly want, in order.
func checkMessages(t *testing.T, got []mailbox.Stored, want []mailbox.Stored) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d messages, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Seq != w.Seq || g.ID != w.ID || !bytes.Equal(g.Body, w.Body) || !g.Expires.Equal(w.Expires.Truncate(time.Millisecond)) {
			t.Fatalf("message %d: got seq %d id %v expires %v (%d bytes), want seq %d id %v expires %v (%d bytes)",
				i, g.Seq, g.ID, g.Expires, len(g.Body), w.Seq, w.ID, w.Expires, len(w.Body))
		}
	}
}

func testEnqueueFetch(t *testing.T, newStore NewStore) {
	clock := NewClock()
	s := newStore(t, Config{Now: clock.Now})
	a, b := Box(1), Box(2)
	if p, err := s.Fetch(ctx, a, 0, 10); err != nil || len(p.Messages) != 0 || p.Head != 0 {
		t.Fatalf("Fetch of an unknown mailbox = %+v, %v", p, err)
	}
	if st := status(t, s, a); st != (mailbox.Status{}) {
		t.Fatalf("Status of an unknown mailbox = %+v", st)
	}
	var want []mailbox.Stored
	var last uint64
	var bytesA int64
	for i := range 10 {
		// Expiries with sub-millisecond parts: stored at millisecond precision.
		m := Msg(a, i, 0, 100+i*37, clock.Now(), time.Hour+time.Duration(i)*time.Microsecond*1500)
		r := enqueue(t, s, a, m)
		if r.Duplicate || r.Seq <= last {
			t.Fatalf("receipt %+v after seq %d", r, last)
		}
		last = r.Seq
		bytesA += int64(len(m.Body))
		want = append(want, mailbox.Stored{Seq: r.Seq, Message: m})
		if i < 3 {
			enqueue(t, s, b, Msg(b, i, 0, 50, clock.Now(), time.Hour))
		}
	}
	p := fetchAll(t, s, a, 0)
	checkMessages(t, p.Messages, want)
	if p.Head != last {
		t.Fatalf("page head %d, want %d", p.Head, last)
	}
	if st := status(t, s, a); st.Head != last || st.Messages != 10 || st.Bytes != bytesA {
		t.Fatalf("Status = %+v, want head %d, 10 messages, %d bytes", st, last, bytesA)
	}
	if st := status(t, s, b); st.Messages != 3 {
		t.Fatalf("Status of b = %+v", st)
	}
	// After a cursor, with a limit.
	p, err := s.Fetch(ctx, a, want[4].Seq, 3)
	if err != nil {
		t.Fatal(err)
	}
	checkMessages(t, p.Messages, want[5:8])
	// A cursor between sequence numbers, and past the head.
	p, err = s.Fetch(ctx, a, want[8].Seq, 5)
	if err != nil {
		t.Fatal(err)
	}
	checkMessages(t, p.Messages, want[9:])
	if p, err := s.Fetch(ctx, a, last, 5); err != nil || len(p.Messages) != 0 || p.Head != last {
		t.Fatalf("Fetch after the head = %+v, %v", p, err)
	}
	if p, err := s.Fetch(ctx, a, ^uint64(0), 5); err != nil || len(p.Messages) != 0 {
		t.Fatalf("Fetch after 2^64-1 = %+v, %v", p, err)
	}
}

func testNoAliasing(t *testing.T, newStore NewStore) {
	clock := NewClock()
	s := newStore(t, Config{Now: clock.Now})
	mb := Box(1)
	m := Msg(mb, 1, 0, 64, clock.Now(), time.Hour)
	orig := bytes.Clone(m.Body)
	enqueue(t, s, mb, m)
	m.Body[0] ^= 0xff
	p := fetchAll(t, s, mb, 0)
	if !bytes.Equal(p.Messages[0].Body, orig) {
		t.Fatal("the store aliases the enqueued body")
	}
	p.Messages[0].Body[1] ^= 0xff
	if p := fetchAll(t, s, mb, 0); !bytes.Equal(p.Messages[0].Body, orig) {
		t.Fatal("the store aliases a fetched body")
	}
}

func testIdempotent(t *testing.T, newStore NewStore) {
	clock := NewClock()
	s := newStore(t, Config{Now: clock.Now})
	a, b := Box(1), Box(2)
	m := Msg(a, 1, 0, 300, clock.Now(), time.Hour)
	r1 := enqueue(t, s, a, m)
	enqueue(t, s, a, Msg(a, 2, 0, 10, clock.Now(), time.Hour))
	for range 3 {
		r := enqueue(t, s, a, m)
		if r.Seq != r1.Seq || !r.Duplicate {
			t.Fatalf("retry receipt %+v, want seq %d duplicate", r, r1.Seq)
		}
	}
	// A retry with a later expiry is the same message; the original expiry stays.
	later := m
	later.Expires = m.Expires.Add(time.Hour)
	if r := enqueue(t, s, a, later); r.Seq != r1.Seq || !r.Duplicate {
		t.Fatalf("retry with another expiry: %+v", r)
	}
	before := status(t, s, a)
	other := Msg(a, 1, 1, 300, clock.Now(), time.Hour) // same id, another body
	if other.ID != m.ID {
		t.Fatal("test bug")
	}
	if _, err := s.Enqueue(ctx, a, other); !errors.Is(err, mailbox.ErrIDConflict) {
		t.Fatalf("same id, other body: %v, want ErrIDConflict", err)
	}
	if st := status(t, s, a); st != before {
		t.Fatalf("a refused enqueue changed the status: %+v to %+v", before, st)
	}
	p := fetchAll(t, s, a, 0)
	if len(p.Messages) != 2 || !bytes.Equal(p.Messages[0].Body, m.Body) || !p.Messages[0].Expires.Equal(m.Expires.Truncate(time.Millisecond)) {
		t.Fatalf("mailbox after retries: %d messages", len(p.Messages))
	}
	// The same id in another mailbox is another message.
	if r := enqueue(t, s, b, other); r.Duplicate {
		t.Fatalf("same id in another mailbox: %+v", r)
	}
}

func testAck(t *testing.T, newStore NewStore) {
	clock := NewClock()
	s := newStore(t, Config{Now: clock.Now})
	mb := Box(1)
	var want []mailbox.Stored
	for i := range 6 {
		m := Msg(mb, i, 0, 100, clock.Now(), time.Hour)
		want = append(want, mailbox.Stored{Seq: enqueue(t, s, mb, m).Seq, Message: m})
	}
	if err := s.Ack(ctx, mb, 0); err != nil {
		t.Fatalf("Ack(0): %v", err)
	}
	if err := s.Ack(ctx, mb, want[2].Seq); err != nil {
		t.Fatal(err)
	}
	checkMessages(t, fetchAll(t, s, mb, 0).Messages, want[3:])
	if st := status(t, s, mb); st.Messages != 3 || st.Bytes != 300 || st.Head != want[5].Seq {
		t.Fatalf("Status after ack = %+v", st)
	}
	if err := s.Ack(ctx, mb, want[1].Seq); err != nil {
		t.Fatalf("acking again: %v", err)
	}
	checkMessages(t, fetchAll(t, s, mb, 0).Messages, want[3:])
	head := want[5].Seq
	if err := s.Ack(ctx, mb, head+1); !errors.Is(err, mailbox.ErrBeyondHead) {
		t.Fatalf("Ack beyond the head: %v", err)
	}
	if err := s.Ack(ctx, Box(9), 1); !errors.Is(err, mailbox.ErrBeyondHead) {
		t.Fatalf("Ack on an unknown mailbox: %v", err)
	}
	checkMessages(t, fetchAll(t, s, mb, 0).Messages, want[3:])
	if err := s.Ack(ctx, mb, head); err != nil {
		t.Fatal(err)
	}
	if p := fetchAll(t, s, mb, 0); len(p.Messages) != 0 || p.Head != head {
		t.Fatalf("after acking everything: %d messages, head %d", len(p.Messages), p.Head)
	}
	if st := status(t, s, mb); st != (mailbox.Status{Head: head, Acked: head}) {
		t.Fatalf("Status after acking everything = %+v", st)
	}
	// A retry of an acknowledged message is recognised, not delivered again.
	if r := enqueue(t, s, mb, want[4].Message); r.Seq != want[4].Seq || !r.Duplicate {
		t.Fatalf("retry of an acked message: %+v, want seq %d duplicate", r, want[4].Seq)
	}
	if p := fetchAll(t, s, mb, 0); len(p.Messages) != 0 {
		t.Fatal("a retry of an acked message was delivered again")
	}
	// Sequence numbers continue above the head.
	if r := enqueue(t, s, mb, Msg(mb, 100, 0, 10, clock.Now(), time.Hour)); r.Seq <= head {
		t.Fatalf("seq %d after head %d: reused", r.Seq, head)
	}
}

// testAckFloor checks the acknowledgement floor that signed heads carry
// (docs/spec/relay-storage.md §Acknowledgement and expiry, T40): the
// highest upTo of an applied Ack, reported by Status and Fetch, never
// lowered by a lower ack, a refused ack, expiry or the sweep, raised by an
// ack that covers no held message, and nothing at or below it is served.
func testAckFloor(t *testing.T, newStore NewStore) {
	clock := NewClock()
	s := newStore(t, Config{Now: clock.Now})
	mb := Box(1)
	if st, p := status(t, s, mb), fetchAll(t, s, mb, 0); st.Acked != 0 || p.Acked != 0 {
		t.Fatalf("new mailbox: floor %d, page floor %d", st.Acked, p.Acked)
	}
	var seqs []uint64
	for i := range 5 {
		seqs = append(seqs, enqueue(t, s, mb, Msg(mb, i, 0, 50, clock.Now(), time.Minute)).Seq)
	}
	floor := func(want uint64, when string) {
		t.Helper()
		st := status(t, s, mb)
		p, err := s.Fetch(ctx, mb, 0, mailbox.MaxFetch)
		if err != nil {
			t.Fatal(err)
		}
		if st.Acked != want || p.Acked != want {
			t.Fatalf("%s: Status floor %d, page floor %d, want %d", when, st.Acked, p.Acked, want)
		}
		for _, m := range p.Messages {
			if m.Seq <= want {
				t.Fatalf("%s: message %d served at or below the floor %d", when, m.Seq, want)
			}
		}
	}
	floor(0, "before any ack")
	if err := s.Ack(ctx, mb, seqs[2]); err != nil {
		t.Fatal(err)
	}
	floor(seqs[2], "after an ack")
	if err := s.Ack(ctx, mb, seqs[0]); err != nil {
		t.Fatal(err)
	}
	floor(seqs[2], "after a lower ack")
	if err := s.Ack(ctx, mb, seqs[4]+1); !errors.Is(err, mailbox.ErrBeyondHead) {
		t.Fatalf("Ack beyond the head: %v", err)
	}
	floor(seqs[2], "after a refused ack")
	clock.Advance(time.Hour)
	if _, err := s.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if st := status(t, s, mb); st != (mailbox.Status{Head: seqs[4], Acked: seqs[2]}) {
		t.Fatalf("after expiry and sweep: %+v", st)
	}
	// An ack of expired, swept messages still raises the floor.
	if err := s.Ack(ctx, mb, seqs[3]); err != nil {
		t.Fatal(err)
	}
	floor(seqs[3], "after an ack of swept messages")
	// Other mailboxes keep their own floor.
	if st := status(t, s, Box(2)); st.Acked != 0 {
		t.Fatalf("another mailbox: floor %d", st.Acked)
	}
}

func testExpiry(t *testing.T, newStore NewStore) {
	clock := NewClock()
	s := newStore(t, Config{Now: clock.Now, Limits: mailbox.Limits{MaxTTL: 48 * time.Hour}})
	mb, other := Box(1), Box(2)
	short := Msg(mb, 1, 0, 100, clock.Now(), time.Minute)
	long := Msg(mb, 2, 0, 200, clock.Now(), time.Hour)
	rs := enqueue(t, s, mb, short)
	rl := enqueue(t, s, mb, long)
	enqueue(t, s, other, Msg(other, 1, 0, 10, clock.Now(), 30*time.Second))
	checkMessages(t, fetchAll(t, s, mb, 0).Messages, []mailbox.Stored{{Seq: rs.Seq, Message: short}, {Seq: rl.Seq, Message: long}})
	clock.Advance(time.Minute) // expiry is inclusive: expired at exactly Expires
	checkMessages(t, fetchAll(t, s, mb, 0).Messages, []mailbox.Stored{{Seq: rl.Seq, Message: long}})
	n, err := s.Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("Sweep removed %d messages, want 2", n)
	}
	if st := status(t, s, mb); st.Messages != 1 || st.Bytes != 200 || st.Head != rl.Seq {
		t.Fatalf("Status after sweep = %+v", st)
	}
	if st := status(t, s, other); st.Messages != 0 || st.Head == 0 {
		t.Fatalf("Status of the other mailbox after sweep = %+v", st)
	}
	if n, err := s.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("second Sweep = %d, %v", n, err)
	}
	clock.Advance(time.Hour)
	if p := fetchAll(t, s, mb, 0); len(p.Messages) != 0 || p.Head != rl.Seq {
		t.Fatalf("after every expiry: %+v", p)
	}
	if n, err := s.Sweep(ctx); err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v", n, err)
	}
	if r := enqueue(t, s, mb, Msg(mb, 3, 0, 10, clock.Now(), time.Hour)); r.Seq <= rl.Seq {
		t.Fatalf("seq %d after head %d", r.Seq, rl.Seq)
	}
	// Expiry bounds.
	for name, ttl := range map[string]time.Duration{"past": -time.Second, "now": 0, "beyond max TTL": 48*time.Hour + time.Second} {
		if _, err := s.Enqueue(ctx, mb, Msg(mb, 10, 0, 10, clock.Now(), ttl)); !errors.Is(err, mailbox.ErrInvalid) {
			t.Errorf("expiry %s: %v, want ErrInvalid", name, err)
		}
	}
	enqueue(t, s, mb, Msg(mb, 11, 0, 10, clock.Now(), 48*time.Hour))
}

func testDedupWindow(t *testing.T, newStore NewStore) {
	clock := NewClock()
	s := newStore(t, Config{Now: clock.Now, Limits: mailbox.Limits{DedupWindow: 10 * time.Minute}})
	mb := Box(1)
	m := Msg(mb, 1, 0, 100, clock.Now(), time.Hour)
	r := enqueue(t, s, mb, m)
	if err := s.Ack(ctx, mb, r.Seq); err != nil {
		t.Fatal(err)
	}
	clock.Advance(9 * time.Minute)
	if _, err := s.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if got := enqueue(t, s, mb, m); !dup(got, r.Seq) {
		t.Fatalf("retry within the window: %+v", got)
	}
	clock.Advance(time.Minute)
	// Past the window, with or without a sweep, the id is free again.
	got := enqueue(t, s, mb, m)
	if got.Duplicate || got.Seq <= r.Seq {
		t.Fatalf("enqueue past the window: %+v", got)
	}
	if _, err := s.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if again := enqueue(t, s, mb, m); !dup(again, got.Seq) {
		t.Fatalf("retry of the new message after a sweep: %+v, want seq %d", again, got.Seq)
	}
	// A message that expires before the window ends is deduplicated until
	// it expires.
	short := Msg(mb, 2, 0, 100, clock.Now(), time.Minute)
	rs := enqueue(t, s, mb, short)
	clock.Advance(time.Minute)
	if _, err := s.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	short.Expires = clock.Now().Add(time.Minute)
	if got := enqueue(t, s, mb, short); got.Duplicate || got.Seq <= rs.Seq {
		t.Fatalf("enqueue of an expired message's id: %+v", got)
	}
}

func testQuota(t *testing.T, newStore NewStore) {
	clock := NewClock()
	s := newStore(t, Config{Now: clock.Now, Limits: mailbox.Limits{MaxMessages: 3, MaxBytes: 1000}})
	mb := Box(1)
	var rs []mailbox.Receipt
	var ms []mailbox.Message
	for i := range 3 {
		ms = append(ms, Msg(mb, i, 0, 100, clock.Now(), time.Hour))
		rs = append(rs, enqueue(t, s, mb, ms[i]))
	}
	before := status(t, s, mb)
	if _, err := s.Enqueue(ctx, mb, Msg(mb, 3, 0, 1, clock.Now(), time.Hour)); !errors.Is(err, mailbox.ErrQuota) {
		t.Fatalf("fourth message: %v, want ErrQuota", err)
	}
	if st := status(t, s, mb); st != before {
		t.Fatalf("a refused enqueue changed the status: %+v to %+v", before, st)
	}
	// A retry at full quota is still recognised.
	if r := enqueue(t, s, mb, ms[1]); !dup(r, rs[1].Seq) {
		t.Fatalf("retry at full quota: %+v", r)
	}
	if err := s.Ack(ctx, mb, rs[0].Seq); err != nil {
		t.Fatal(err)
	}
	enqueue(t, s, mb, Msg(mb, 4, 0, 100, clock.Now(), time.Hour))
	if err := s.Ack(ctx, mb, status(t, s, mb).Head); err != nil {
		t.Fatal(err)
	}
	// Bytes.
	enqueue(t, s, mb, Msg(mb, 5, 0, 600, clock.Now(), time.Hour))
	if _, err := s.Enqueue(ctx, mb, Msg(mb, 6, 0, 401, clock.Now(), time.Hour)); !errors.Is(err, mailbox.ErrQuota) {
		t.Fatalf("bytes over quota: %v, want ErrQuota", err)
	}
	enqueue(t, s, mb, Msg(mb, 7, 0, 400, clock.Now(), time.Hour))
	if err := s.Ack(ctx, mb, status(t, s, mb).Head); err != nil {
		t.Fatal(err)
	}
	// Expired messages do not count, even before a sweep.
	for i := range 3 {
		enqueue(t, s, mb, Msg(mb, 10+i, 0, 300, clock.Now(), time.Minute))
	}
	if _, err := s.Enqueue(ctx, mb, Msg(mb, 20, 0, 10, clock.Now(), time.Hour)); !errors.Is(err, mailbox.ErrQuota) {
		t.Fatalf("full before expiry: %v", err)
	}
	clock.Advance(time.Minute)
	enqueue(t, s, mb, Msg(mb, 21, 0, 900, clock.Now(), time.Hour))
	// The quota is per mailbox.
	for i := range 3 {
		enqueue(t, s, Box(2), Msg(Box(2), i, 0, 300, clock.Now(), time.Hour))
	}
}

func testInvalid(t *testing.T, newStore NewStore) {
	clock := NewClock()
	s := newStore(t, Config{Now: clock.Now, Limits: mailbox.Limits{MaxBodySize: 1000}})
	mb := Box(1)
	for name, size := range map[string]int{"empty body": 0, "body over the limit": 1001} {
		if _, err := s.Enqueue(ctx, mb, Msg(mb, 1, 0, size, clock.Now(), time.Hour)); !errors.Is(err, mailbox.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if st := status(t, s, mb); st != (mailbox.Status{}) {
		t.Fatalf("refused enqueues changed the status: %+v", st)
	}
	enqueue(t, s, mb, Msg(mb, 1, 0, 1000, clock.Now(), time.Hour))
	for _, limit := range []int{-1, 0, mailbox.MaxFetch + 1} {
		if _, err := s.Fetch(ctx, mb, 0, limit); !errors.Is(err, mailbox.ErrInvalid) {
			t.Errorf("Fetch limit %d: %v, want ErrInvalid", limit, err)
		}
	}
	// Limits beyond the hard ones are refused by the limits themselves.
	if _, err := (mailbox.Limits{MaxBodySize: mailbox.MaxBodySize + 1}).WithDefaults(); !errors.Is(err, mailbox.ErrInvalid) {
		t.Errorf("MaxBodySize over the hard limit: %v", err)
	}
}

func testFetchBytes(t *testing.T, newStore NewStore) {
	clock := NewClock()
	s := newStore(t, Config{Now: clock.Now})
	mb := Box(1)
	const size = mailbox.MaxBodySize
	for i := range 20 {
		enqueue(t, s, mb, Msg(mb, i, 0, size, clock.Now(), time.Hour))
	}
	p, err := s.Fetch(ctx, mb, 0, mailbox.MaxFetch)
	if err != nil {
		t.Fatal(err)
	}
	if want := (mailbox.FetchBytes + size - 1) / size; len(p.Messages) != want {
		t.Fatalf("a page of %d-byte bodies holds %d messages, want %d", size, len(p.Messages), want)
	}
	if n := len(fetchAll(t, s, mb, 0).Messages); n != 20 {
		t.Fatalf("paging returned %d messages, want 20", n)
	}
}

func testConcurrent(t *testing.T, newStore NewStore) {
	clock := NewClock()
	s := newStore(t, Config{Now: clock.Now})
	const workers, perWorker, boxes = 32, 40, 4
	type sent struct {
		mb mailbox.ID
		m  mailbox.Message
		r  mailbox.Receipt
	}
	results := make([][]sent, workers)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				mb := Box(i % boxes)
				// Workers w and w^1 send the same messages, concurrently.
				m := Msg(mb, (w/2)*perWorker+i, 0, 64+i, clock.Now(), time.Hour)
				r, err := s.Enqueue(ctx, mb, m)
				if err != nil {
					errs <- fmt.Errorf("worker %d: %w", w, err)
					return
				}
				results[w] = append(results[w], sent{mb, m, r})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for w := 0; w < workers; w += 2 {
		for i := range perWorker {
			a, b := results[w][i], results[w+1][i]
			if a.r.Seq != b.r.Seq || a.r.Duplicate == b.r.Duplicate {
				t.Fatalf("concurrent retries got receipts %+v and %+v", a.r, b.r)
			}
		}
	}
	// Receipt heads: at least the receipt's seq, and, for the calls of
	// one worker (one after the other), never lower than an earlier one
	// for the same mailbox.
	for w := range workers {
		last := map[mailbox.ID]uint64{}
		for _, x := range results[w] {
			if x.r.Head < x.r.Seq || x.r.Head < last[x.mb] {
				t.Fatalf("worker %d: receipt %+v after head %d", w, x.r, last[x.mb])
			}
			last[x.mb] = x.r.Head
		}
	}
	for n := range boxes {
		mb := Box(n)
		var want []mailbox.Stored
		for w := 0; w < workers; w += 2 {
			for _, x := range results[w] {
				if x.mb == mb {
					want = append(want, mailbox.Stored{Seq: x.r.Seq, Message: x.m})
				}
			}
		}
		slices.SortFunc(want, func(a, b mailbox.Stored) int { return compareSeq(a.Seq, b.Seq) })
		for i := 1; i < len(want); i++ {
			if want[i].Seq == want[i-1].Seq {
				t.Fatalf("mailbox %d: sequence number %d assigned twice", n, want[i].Seq)
			}
		}
		checkMessages(t, fetchAll(t, s, mb, 0).Messages, want)
		if st := status(t, s, mb); st.Messages != len(want) || st.Head != want[len(want)-1].Seq {
			t.Fatalf("mailbox %d: Status %+v with %d messages", n, st, len(want))
		}
	}
}

func compareSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func testSubscribe(t *testing.T, newStore NewStore) {
	clock := NewClock()
	s := newStore(t, Config{Now: clock.Now})
	a, b := Box(1), Box(2)
	sa := s.Subscribe(a)
	sb := s.Subscribe(b)
	defer sb.Close()
	enqueue(t, s, b, Msg(b, 1, 0, 10, clock.Now(), time.Hour))
	// Enqueue signals before it returns.
	select {
	case <-sb.C:
	default:
		t.Fatal("no signal after an enqueue to the subscribed mailbox")
	}
	select {
	case <-sa.C:
		t.Fatal("signal for another mailbox")
	default:
	}
	for i := range 3 {
		enqueue(t, s, a, Msg(a, i, 0, 10, clock.Now(), time.Hour))
	}
	select {
	case <-sa.C:
	default:
		t.Fatal("no signal after enqueues")
	}
	sa.Close()
	if _, ok := <-sa.C; ok {
		t.Fatal("closed subscription signalled")
	}
	enqueue(t, s, a, Msg(a, 9, 0, 10, clock.Now(), time.Hour))
	late := s.Subscribe(a)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []*mailbox.Subscription{late, sb} {
		for range sub.C { // drains a pending signal, ends when closed
		}
	}
}

func testContext(t *testing.T, newStore NewStore) {
	clock := NewClock()
	s := newStore(t, Config{Now: clock.Now})
	mb := Box(1)
	c, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Enqueue(c, mb, Msg(mb, 1, 0, 10, clock.Now(), time.Hour)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Enqueue with a cancelled context: %v", err)
	}
	if _, err := s.Fetch(c, mb, 0, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Fetch with a cancelled context: %v", err)
	}
	if st := status(t, s, mb); st != (mailbox.Status{}) {
		t.Fatalf("a cancelled enqueue changed the status: %+v", st)
	}
}

func testClosed(t *testing.T, newStore NewStore) {
	clock := NewClock()
	s := newStore(t, Config{Now: clock.Now})
	mb := Box(1)
	r := enqueue(t, s, mb, Msg(mb, 1, 0, 10, clock.Now(), time.Hour))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Enqueue(ctx, mb, Msg(mb, 2, 0, 10, clock.Now(), time.Hour)); !errors.Is(err, mailbox.ErrClosed) {
		t.Errorf("Enqueue after Close: %v", err)
	}
	if _, err := s.Fetch(ctx, mb, 0, 1); !errors.Is(err, mailbox.ErrClosed) {
		t.Errorf("Fetch after Close: %v", err)
	}
	if err := s.Ack(ctx, mb, r.Seq); !errors.Is(err, mailbox.ErrClosed) {
		t.Errorf("Ack after Close: %v", err)
	}
	if _, err := s.Status(ctx, mb); !errors.Is(err, mailbox.ErrClosed) {
		t.Errorf("Status after Close: %v", err)
	}
	if _, err := s.Sweep(ctx); !errors.Is(err, mailbox.ErrClosed) {
		t.Errorf("Sweep after Close: %v", err)
	}
	sub := s.Subscribe(mb)
	if _, ok := <-sub.C; ok {
		t.Error("Subscribe after Close is open")
	}
}
