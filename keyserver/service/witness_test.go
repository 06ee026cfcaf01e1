package service_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/service"
)

// cosigners returns the names of the witnesses whose cosignatures note
// carries.
func cosigners(note []byte) map[string]bool {
	out := map[string]bool{}
	_, sigs, _ := bytes.Cut(note, []byte("\n\n"))
	for _, l := range strings.Split(string(sigs), "\n") {
		if f := strings.Fields(l); len(f) == 3 && strings.HasPrefix(f[1], "witness") {
			out[f[1]] = true
		}
	}
	return out
}

// TestWitnessDownAndCatchUp: with one of three witnesses down, epochs are
// still served (quorum 2); the witness's failures are retried. After a
// restart the service does not know how far each witness got: a 409
// tells it, and it catches the witness up with a consistency proof from
// the witness's size.
func TestWitnessDownAndCatchUp(t *testing.T) {
	w := newWorld(t, worldOptions{seed: 40})
	ctx := context.Background()
	alice := w.addUser("Alice")
	a1 := w.mustEnrol(alice)
	w.publish()
	w3 := w.witnesses[2]
	w3.setDown(true)
	calls := w3.calls
	w.publish()
	w.publish()
	if w3.calls-calls != 2*3 {
		t.Fatalf("down witness asked %d times, want 3 attempts per epoch", w3.calls-calls)
	}
	note, _ := w.ten().ServedNote()
	if cs := cosigners(note); len(cs) != 2 || cs[w3.name] {
		t.Fatalf("cosigners %v", cs)
	}
	must(w.lookup(a1, alice))

	// Restart over the same store, with w3 back: it is two epochs behind.
	w3.setDown(false)
	w.srv.Close()
	w.serve(must(service.New(ctx, service.Options{Tenants: []service.TenantConfig{w.tenantConfig()}, Now: w.clk.Now, Logger: discardLogger()})))
	calls = w3.calls
	w.clk.Advance(time.Minute)
	ok(t, w.svc.Cosign(ctx))
	if w3.calls-calls != 2 { // 409, then the request from its size
		t.Fatalf("witness asked %d times", w3.calls-calls)
	}
	note, _ = w.ten().ServedNote()
	if cs := cosigners(note); len(cs) != 3 {
		t.Fatalf("cosigners after catching up %v", cs)
	}
	must(w.lookup(a1, alice))
}

// forkCheckpoint returns a tree of size size, and its checkpoint signed
// with the log key, that shares the log's current entries and continues
// with entries of its own: what an operator holding the key could make.
func (w *world) forkCheckpoint(t testing.TB, size uint64) (*tlog.Tree, []byte) {
	t.Helper()
	ctx := context.Background()
	base := w.ten().Head().LogSize
	alt := must(tlog.NewTree(ctx, tlog.NewMemoryNodeStore(), 0))
	for e := uint64(0); e < size; e++ {
		entry := kt.EpochEntry{Epoch: e, Time: w.clk.Now().Truncate(time.Second).Add(time.Hour), MapRoot: [32]byte{0xf0, byte(e)}}
		if e < base {
			entry = *must(w.ten().EpochEntry(ctx, e))
		}
		must(alt.Append(ctx, must(entry.Marshal())))
	}
	cp := &tlog.Checkpoint{Origin: w.origin, Size: size, Root: must(alt.Root(ctx, size))}
	return alt, must(tlog.SignCheckpoint(cp, w.keys.Log))
}

// TestWitnessAlarms: a witness that already cosigned another tree of this
// log answers 409 then 422 (inconsistent), or 409 with a size above the
// log's; both are logged at ERROR as alarms and counted, and the epoch is
// still served by the other witnesses.
func TestWitnessAlarms(t *testing.T) {
	w := newWorld(t, worldOptions{seed: 41})
	ctx := context.Background()
	w.publish()
	size := w.ten().Head().LogSize
	// Witness 1 is shown a fork at the next size; witness 2 a fork two
	// sizes ahead.
	for i, ahead := range []uint64{1, 2} {
		alt, note := w.forkCheckpoint(t, size+ahead)
		proof := must(alt.ConsistencyProof(ctx, size, size+ahead))
		_, err := w.witnesses[i].w.AddCheckpoint(ctx, &tlog.AddCheckpointRequest{OldSize: size, Proof: proof, Checkpoint: note}, w.clk.Now())
		ok(t, err)
	}
	w.clk.Advance(time.Minute)
	ep, err := w.ten().PublishEpoch(ctx, w.clk.Now())
	ok(t, err)
	if ep.Cosigned {
		t.Fatal("cosigned by a quorum of 2 with two witnesses forked")
	}
	logs := w.logs.String()
	if !strings.Contains(logs, "level=ERROR msg=\"ALARM: witness refuses the checkpoint as inconsistent") ||
		!strings.Contains(logs, "level=ERROR msg=\"ALARM: witness has cosigned a larger tree") {
		t.Fatalf("alarms not logged:\n%s", logs)
	}
	m := get(t, w.srv.URL+"/metrics")
	for _, kind := range []string{"inconsistent", "larger"} {
		if !strings.Contains(m, `moat_directory_witness_alarms_total{kind="`+kind+`"`) {
			t.Errorf("alarm %s not counted", kind)
		}
	}
	// The epoch is not served: two of three witnesses refuse it.
	if _, s := w.ten().ServedNote(); s != size {
		t.Fatalf("served size %d", s)
	}
}

// TestRecosign: an unchanged checkpoint is cosigned again, so clients with
// a MaxAge of an hour stay fresh without new epochs; Run does it on its
// own, and publishes epochs on its cadence and on demand.
func TestRecosign(t *testing.T) {
	w := newWorld(t, worldOptions{seed: 42})
	ctx := context.Background()
	alice := w.addUser("Alice")
	a1 := w.mustEnrol(alice)
	w.publish()
	must(w.lookup(a1, alice))
	w.clk.Advance(2 * maxAge)
	cr := must(a1.api.Consistency(ctx, a1.kt.TreeSize()))
	if _, err := a1.kt.UpdateCheckpoint(cr, w.clk.Now()); !errors.Is(err, tlog.ErrStale) {
		t.Fatalf("stale checkpoint: %v", err)
	}
	ok(t, w.svc.Cosign(ctx))
	cr = must(a1.api.Consistency(ctx, a1.kt.TreeSize()))
	must(a1.kt.UpdateCheckpoint(cr, w.clk.Now()))

	// Run: no epoch tick within the test, re-cosigning every second.
	w.srv.Close()
	svc := must(service.New(ctx, service.Options{Tenants: []service.TenantConfig{w.tenantConfig()}, Now: w.clk.Now,
		Logger: discardLogger(), EpochInterval: time.Hour, RecosignInterval: time.Second}))
	w.serve(svc)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(rctx) }()
	fresh := func() bool {
		cr := must(a1.api.Consistency(ctx, a1.kt.TreeSize()))
		_, err := a1.kt.UpdateCheckpoint(cr, w.clk.Now())
		return err == nil
	}
	// The round at start, then the periodic one.
	for range 2 {
		w.clk.Advance(2 * maxAge)
		waitFor(t, 5*time.Second, fresh)
	}
	// On demand.
	head := w.ten().Head().LogSize
	w.ten().Kick()
	waitFor(t, 5*time.Second, func() bool {
		_, s := w.ten().ServedNote()
		return s == head+1
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestRunCadence: Run publishes one epoch of every tenant per tick of its
// epoch ticker (EpochInterval's, injected here), none without one, and
// stops gracefully. The ticks are sent on an unbuffered channel, and Run
// publishes before it takes the next one, so once it has taken tick k+1
// the epochs of ticks 1..k are done and the one of tick k+1 at most
// started: the log has grown by k or k+1. Nothing is timed.
func TestRunCadence(t *testing.T) {
	w := newWorld(t, worldOptions{seed: 43})
	ctx, cancel := context.WithCancel(context.Background())
	w.srv.Close()
	svc := must(service.New(ctx, service.Options{Tenants: []service.TenantConfig{w.tenantConfig()}, Now: w.clk.Now,
		Logger: discardLogger(), EpochInterval: time.Hour}))
	w.svc = svc
	ticks := make(chan time.Time)
	svc.SetEpochTicks(ticks)
	head0 := w.ten().Head().LogSize
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	for k := range 4 {
		select { // taken: the epochs of the k ticks before are published
		case ticks <- w.clk.Now():
		case <-time.After(time.Minute): // a bound against hanging, not a timing
			t.Fatalf("Run does not take tick %d", k+1)
		}
		if got := w.ten().Head().LogSize - head0; got != uint64(k) && got != uint64(k+1) {
			t.Fatalf("after taking tick %d the log has %d epochs more, want %d or %d", k+1, got, k, k+1)
		}
		w.clk.Advance(time.Minute)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	// The fourth tick's epoch is published or, if the stop came first,
	// not started: never torn.
	if got := w.ten().Head().LogSize; got != head0+3 && got != head0+4 {
		t.Fatalf("after 4 ticks and a stop the log has %d epochs more, want 3 or 4", got-head0)
	}
}

func waitFor(t testing.TB, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not reached")
}
