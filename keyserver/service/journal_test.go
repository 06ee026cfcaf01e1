package service

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/store"
	"github.com/moat-im/moat/keyserver/store/memstore"
)

// gateStore holds WritePending calls at a gate while closed, and fails
// them while fail is set.
type gateStore struct {
	store.DirectoryStore
	mu      sync.Mutex
	closed  bool
	entered chan struct{} // a held call signals here
	release chan struct{}
	fail    atomic.Bool
	calls   atomic.Int64
}

var errInjected = errors.New("injected pending write failure")

func (g *gateStore) WritePending(ctx context.Context, after uint64, w store.TenantWrite) error {
	g.calls.Add(1)
	g.mu.Lock()
	closed := g.closed
	g.mu.Unlock()
	if closed {
		g.entered <- struct{}{}
		<-g.release
	}
	if g.fail.Load() {
		return errInjected
	}
	return g.DirectoryStore.WritePending(ctx, after, w)
}

func (g *gateStore) close() {
	g.mu.Lock()
	g.closed = true
	g.entered, g.release = make(chan struct{}), make(chan struct{})
	g.mu.Unlock()
}

func (g *gateStore) open() {
	g.mu.Lock()
	g.closed = false
	g.mu.Unlock()
	close(g.release)
}

func newJournalTenant(t *testing.T) (*Tenant, *gateStore, *time.Time) {
	t.Helper()
	rnd := mrand.NewChaCha8([32]byte{9})
	id := org.TenantID{0xbe, 0x09}
	tk, cp, _ := benchTenantParams(rnd, id)
	gs := &gateStore{DirectoryStore: memstore.New()}
	now := benchT0
	svc, err := New(context.Background(), Options{
		Tenants: []TenantConfig{{ID: id, Store: gs, Keys: tk, Create: cp}},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return svc.Tenant(id), gs, &now
}

func addUserOp(i int, now time.Time) func(*org.Tenant) error {
	return func(o *org.Tenant) error {
		_, err := o.AddUser(org.AdminID{0xad, 1}, org.UserID{0x55, byte(i)}, "User", org.DepartmentID{}, now)
		return err
	}
}

func (t *Tenant) queued() int {
	t.jr.mu.Lock()
	defer t.jr.mu.Unlock()
	return len(t.jr.queue)
}

// pendingUsers returns the user records among the store's pending ones.
func pendingUsers(t *testing.T, ten *Tenant) int {
	t.Helper()
	n := 0
	err := ten.st.PendingRecords(context.Background(), ten.id, func(k store.TenantKey, v []byte) error {
		if _, ok := org.StateKey(k).User(); ok && len(v) > 0 {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestJournalGroupCommit: operations that queue while a pending write is
// in progress are written by one more write, all of them, and each
// returns only after it.
func TestJournalGroupCommit(t *testing.T) {
	ten, gs, now := newJournalTenant(t)
	gs.close()
	first := make(chan error, 1)
	go func() { first <- ten.Admin(addUserOp(0, *now)) }()
	<-gs.entered // the first write is in progress
	const n = 20
	var wg sync.WaitGroup
	var done atomic.Int64
	errs := make(chan error, n)
	for i := 1; i <= n; i++ {
		wg.Go(func() {
			errs <- ten.Admin(addUserOp(i, *now))
			done.Add(1)
		})
	}
	for ten.queued() < n {
		if done.Load() != 0 {
			t.Fatal("an operation returned before its records were written")
		}
		time.Sleep(time.Millisecond) // waiting for the operations to queue, not a timed assertion
	}
	if done.Load() != 0 {
		t.Fatal("an operation returned before its records were written")
	}
	gs.open()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if c := gs.calls.Load(); c != 2 {
		t.Fatalf("%d pending writes for %d operations, want 2", c, n+1)
	}
	if got := pendingUsers(t, ten); got != n+1 {
		t.Fatalf("%d users pending in the store, want %d", got, n+1)
	}
}

// TestJournalFailure: an operation whose records cannot be written is not
// acknowledged; later operations are refused, leaving the state
// untouched, until an epoch publishes the whole state, which includes the
// unacknowledged change.
func TestJournalFailure(t *testing.T) {
	ctx := context.Background()
	ten, gs, now := newJournalTenant(t)
	gs.fail.Store(true)
	if err := ten.Admin(addUserOp(1, *now)); !errors.Is(err, errJournal) {
		t.Fatalf("operation with a failing store: %v, want errJournal", err)
	}
	gs.fail.Store(false)
	before, _ := ten.org.MarshalBinary()
	if err := ten.Admin(addUserOp(2, *now)); !errors.Is(err, errJournal) {
		t.Fatalf("operation after a failed write: %v, want errJournal", err)
	}
	if after, _ := ten.org.MarshalBinary(); !bytes.Equal(before, after) {
		t.Fatal("a refused operation changed the state")
	}
	ten.mu.Lock()
	*now = now.Add(time.Minute)
	_, err := ten.publish(ctx, *now)
	ten.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if err := ten.Admin(addUserOp(3, *now)); err != nil {
		t.Fatalf("operation after the epoch: %v", err)
	}
	stored, err := ten.loadOrg(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stored.UserValue(org.UserID{0x55, 1}); err != nil {
		t.Fatalf("the unacknowledged change is not published by the epoch: %v", err)
	}
	if pendingUsers(t, ten) != 1 {
		t.Fatal("the operation after the epoch is not pending in the store")
	}
}

// TestJournalRacesEpoch: a pending write overtaken by the epoch commit
// (the store answers ErrConflict) counts as written: the epoch published
// the change.
func TestJournalRacesEpoch(t *testing.T) {
	ctx := context.Background()
	ten, gs, now := newJournalTenant(t)
	gs.close()
	res := make(chan error, 1)
	go func() { res <- ten.Admin(addUserOp(4, *now)) }()
	<-gs.entered
	ten.mu.Lock()
	*now = now.Add(time.Minute)
	_, err := ten.publish(ctx, *now)
	ten.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	gs.open()
	if err := <-res; err != nil {
		t.Fatalf("operation overtaken by the epoch: %v", err)
	}
	if err := ten.jr.check(); err != nil {
		t.Fatal(err)
	}
	stored, err := ten.loadOrg(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stored.UserValue(org.UserID{0x55, 4}); err != nil {
		t.Fatalf("the change is not in the epoch: %v", err)
	}
	if pendingUsers(t, ten) != 0 {
		t.Fatal("a superseded pending record is visible")
	}
}

// TestJournalLargeChange: a change too large for one pending write is
// made durable by publishing the epoch at once, before the answer; queued
// operations are cut into writes of at most maxPendingWrite bytes.
func TestJournalLargeChange(t *testing.T) {
	ctx := context.Background()
	ten, gs, now := newJournalTenant(t)
	defer func(n int) { maxPendingWrite = n }(maxPendingWrite)
	maxPendingWrite = 2000
	head := ten.Head().Epoch
	err := ten.Admin(func(o *org.Tenant) error {
		for i := range 40 {
			if err := addUserOp(100+i, *now)(o); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if gs.calls.Load() != 0 || ten.Head().Epoch != head+1 {
		t.Fatalf("%d pending writes, head %d: want none and epoch %d", gs.calls.Load(), ten.Head().Epoch, head+1)
	}
	stored, err := ten.loadOrg(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stored.UserValue(org.UserID{0x55, 139}); err != nil {
		t.Fatalf("the large change is not in the epoch: %v", err)
	}
	// Small operations queued behind a held write go in writes of at
	// most maxPendingWrite bytes each: two operations each here.
	maxPendingWrite = 1 << 20
	if err := ten.Admin(addUserOp(1, *now)); err != nil {
		t.Fatal(err)
	}
	one := 0 // the records of one add-user: the core and the user's
	if err := ten.st.PendingRecords(ctx, ten.id, func(k store.TenantKey, v []byte) error { one += len(k) + len(v); return nil }); err != nil {
		t.Fatal(err)
	}
	maxPendingWrite = one * 5 / 2
	calls := gs.calls.Load()
	gs.close()
	first := make(chan error, 1)
	go func() { first <- ten.Admin(addUserOp(50, *now)) }()
	<-gs.entered
	const n = 12
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- ten.Admin(addUserOp(51+i, *now)) }()
	}
	for ten.queued() < n {
		select {
		case err := <-errs:
			t.Fatalf("an operation returned before its records were written: %v", err)
		default:
		}
		time.Sleep(time.Millisecond) // waiting for the operations to queue, not a timed assertion
	}
	gs.open()
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if c := gs.calls.Load() - calls - 1; c < n/2 || c > n {
		t.Fatalf("%d pending writes for %d queued operations, want %d to %d", c, n, n/2, n)
	}
	if got := pendingUsers(t, ten); got != n+2 {
		t.Fatalf("%d users pending, want %d", got, n+2)
	}
}

// TestJournalFailureFailsQueued: operations queued behind a write that
// fails are not acknowledged either (their records were never written).
func TestJournalFailureFailsQueued(t *testing.T) {
	ten, gs, now := newJournalTenant(t)
	ten.mu.Lock()
	*now = now.Add(time.Minute)
	_, err := ten.publish(context.Background(), *now) // past epoch 0
	ten.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	gs.close()
	gs.fail.Store(true)
	first := make(chan error, 1)
	go func() { first <- ten.Admin(addUserOp(1, *now)) }()
	<-gs.entered
	queued := make(chan error, 1)
	go func() { queued <- ten.Admin(addUserOp(2, *now)) }()
	for ten.queued() < 1 {
		time.Sleep(time.Millisecond) // waiting for the operation to queue, not a timed assertion
	}
	gs.open()
	if err := <-first; !errors.Is(err, errJournal) {
		t.Fatalf("failed write: %v, want errJournal", err)
	}
	if err := <-queued; !errors.Is(err, errJournal) {
		t.Fatalf("operation queued behind a failed write: %v, want errJournal", err)
	}
	if gs.calls.Load() != 1 {
		t.Fatalf("%d pending writes, want 1", gs.calls.Load())
	}
}
