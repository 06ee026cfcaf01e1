package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/store/mailbox"
)

// TestT36KillUnderLoad (adversarial case T36) runs moatd serve as a
// subprocess, sends pre-sealed envelopes to an enrolled device from
// several senders while the device fetches and acks, kills the server with
// SIGKILL at random moments, restarts it on the same data directory, and
// checks that every envelope the relay acknowledged is delivered, under
// one sequence number, and that no message reappears once its ack was
// confirmed. Senders retry what was not acknowledged (the relay must then
// deduplicate by message id). One message in 50 goes with an anonymous
// token; every token of an acknowledged send must stay spent. The short version kills 5 times; with
// MOAT_LONG=1 the test kills at least 30 times and until all of 20,000
// messages are acknowledged or for at most longKilling. The storage-level test is badgermailbox's
// TestT36CrashRecovery.
func TestT36KillUnderLoad(t *testing.T) {
	kills, total, senders := 5, 5000, 8
	if os.Getenv("MOAT_LONG") == "1" {
		kills, total, senders = 30, 20000, 16
	}
	r := newT36Rig(t, 36, total, "t36 message %d")
	d, data, base, boot, auth := r.d, r.data, &r.base, r.boot, r.auth
	s, ids, envs := r.s, r.ids, r.envs
	// Every anonEvery-th message goes with an anonymous token, a fresh one
	// at each attempt (a token spent by an attempt whose answer was lost
	// stays spent); when the pool runs dry, with the MAC token.
	const anonEvery = 50
	issuer, err := boot.IssuerKey(context.Background())
	check(t, err)
	toks, err := boot.IssueTokens(context.Background(), issuer, 2*total/anonEvery+64)
	check(t, err)
	pool := make(chan []byte, len(toks))
	for _, tk := range toks {
		pool <- must(relay.AnonymousAuthorization(tk))
	}
	var spentMu sync.Mutex
	var spentAcked [][]byte // tokens of acknowledged sends

	ctx := r.runContext(10 * time.Minute)
	acked := make([]atomic.Bool, total)
	var ackedN, attempts, dups atomic.Int64
	queue := make(chan int, total)
	for i := range total {
		queue <- i
	}
	close(queue)
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			c := relayClient(t, d, data, *base.Load())
			for i := range queue {
				for !acked[i].Load() {
					if ctx.Err() != nil {
						return
					}
					c.BaseURL = *base.Load()
					attempts.Add(1)
					a, anon := auth, false
					if i%anonEvery == 0 {
						select {
						case a = <-pool:
							anon = true
						default:
						}
					}
					rc, err := c.Send(ctx, a, envs[i])
					if err != nil {
						if !r.retry(ctx, fmt.Sprintf("message %d", i), err) {
							return
						}
						continue
					}
					if rc.Seq == 0 {
						t.Errorf("receipt without a sequence number")
					}
					if rc.Duplicate {
						dups.Add(1) // durable before a kill, unacknowledged
					}
					if anon {
						spentMu.Lock()
						spentAcked = append(spentAcked, a)
						spentMu.Unlock()
					}
					acked[i].Store(true)
					ackedN.Add(1)
				}
			}
		})
	}

	stopConsumer := r.startConsumer(ctx)
	kills = r.killUnderLoad(ctx, &wg, kills, 100, 600, &ackedN, total)
	stopConsumer()

	// Drain what is left.
	c := relayClient(t, d, data, r.srv.url)
	r.drain(ctx, c)
	r.reportFailures()
	// Every anonymous token of an acknowledged send stays spent across
	// the kills: presented again, with a new envelope, it is refused.
	if len(spentAcked) == 0 {
		t.Fatal("no acknowledged anonymous send")
	}
	for _, a := range spentAcked {
		_, env := s.seal(t, []byte("again"))
		_, err := c.Send(ctx, a, env)
		var ae *relay.APIError
		if !errors.As(err, &ae) || ae.Status != 403 {
			t.Errorf("a spent token was accepted again after the kills: %v", err)
		}
	}
	missing := 0
	for i := range total {
		if !acked[i].Load() {
			t.Fatalf("message %d never acknowledged", i)
		}
		if _, ok := r.seq[ids[i]]; !ok {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d acknowledged messages lost", missing)
	}
	t.Logf("%d messages, %d send attempts, %d duplicate receipts, %d anonymous tokens spent by acknowledged sends, %d kills, %d fetch errors, retries %v",
		total, attempts.Load(), dups.Load(), len(spentAcked), kills, r.fetchErrs.Load(), r.retryTally())
	r.srv.stop(t)
}

// t36Rig is the harness the T36 kill tests share: moatd serve on a fresh
// data directory with an enrolled device, a MAC token for it, and total
// pre-sealed envelopes (so that the load is the relay's work).
type t36Rig struct {
	t         *testing.T
	rng       *rand.Rand
	bin, data string
	srv       *serverProc
	base      atomic.Pointer[string] // the current server's URL
	d         *enrolledDevice
	boot      *relay.Client
	auth      []byte
	s         *sealer
	ids       []sealed.MessageID
	envs      [][]byte
	index     map[sealed.MessageID]int // position in ids

	abort     context.CancelFunc // ends the run's context
	mu        sync.Mutex
	failures  []string
	retries   map[string]int // why sends were retried, by status
	fetchErrs atomic.Int64

	// The device's view, kept by consume (one goroutine at a time): the
	// sequence number each message was delivered under, and the messages
	// whose ack the relay confirmed.
	seq       map[sealed.MessageID]uint64
	confirmed map[sealed.MessageID]bool
}

// newT36Rig starts the rig; stream seeds the kill-timing generator (the
// seed is logged) and format, given the index, makes each content.
func newT36Rig(t *testing.T, stream uint64, total int, format string) *t36Rig {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := &t36Rig{t: t, rng: rand.New(rand.NewPCG(seed, stream)), retries: map[string]int{},
		seq: map[sealed.MessageID]uint64{}, confirmed: map[sealed.MessageID]bool{}}
	r.bin = buildMoatd(t)
	r.data = t.TempDir()
	r.srv = startServe(t, r.bin, r.data, "--dev-unlimited")
	r.d = enrolDemo(t, r.bin, r.srv)
	r.base.Store(&r.srv.url)
	r.boot = relayClient(t, r.d, r.data, r.srv.url)
	r.auth = macToken(t, r.boot, r.d, 1)
	r.s = newSealer(t, r.d)
	r.ids = make([]sealed.MessageID, total)
	r.envs = make([][]byte, total)
	r.index = map[sealed.MessageID]int{}
	for i := range total {
		r.ids[i], r.envs[i] = r.s.seal(t, fmt.Appendf(nil, format, i))
		r.index[r.ids[i]] = i
	}
	return r
}

// killUnderLoad kills the server with SIGKILL at random moments (after
// pause+[0,spread) ms) and restarts it on the same data, kills times or,
// with MOAT_LONG=1, until acked reaches total or for at most longKilling;
// then it waits for the senders in wg (the server stays up) and fails the
// test if ctx ran out first. It returns the number of kills.
// longKilling bounds the kill phase of the long forms, so that a slow
// machine ends the soak with the senders finishing against a running
// server instead of the test binary's timeout.
const longKilling = 3 * time.Minute

func (r *t36Rig) killUnderLoad(ctx context.Context, wg *sync.WaitGroup, kills, pause, spread int, acked *atomic.Int64, total int) int {
	t := r.t
	long := os.Getenv("MOAT_LONG") == "1"
	stop := time.Now().Add(longKilling)
	for k := 0; ctx.Err() == nil && (k < kills || (long && acked.Load() < int64(total) && time.Now().Before(stop))); k++ {
		time.Sleep(time.Duration(pause+r.rng.IntN(spread)) * time.Millisecond)
		before := acked.Load()
		r.srv.kill()
		r.srv = startServe(t, r.bin, r.data, "--dev-unlimited")
		r.base.Store(&r.srv.url)
		t.Logf("kill %d: %d of %d acknowledged at the kill", k+1, before, total)
		kills = max(kills, k+1)
	}
	wg.Wait()
	if ctx.Err() != nil {
		r.reportFailures()
		t.Fatalf("senders did not finish: %d of %d acknowledged, retries %v", acked.Load(), total, r.retryTally())
	}
	return kills
}

// runContext returns the context of the senders and the consumer: it
// ends after d, or at the first refusal no retry can change (retry).
func (r *t36Rig) runContext(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	r.t.Cleanup(cancel)
	r.abort = cancel
	return ctx
}

func (r *t36Rig) fail(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

// reportFailures fails the test with the first 20 recorded failures.
func (r *t36Rig) reportFailures() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.failures[:min(len(r.failures), 20)] {
		r.t.Error(f)
	}
}

func (r *t36Rig) retryTally() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.retries)
}

// retry decides on a send (or batch item) of what that failed with err.
// A server down or restarting (a transport error), 429 and 503 (after
// their Retry-After) are retried, and so is 507: the mailbox is full
// until the device's consumer acks. Any other refusal cannot change on a
// retry: retry records it as a failure, ends the run and returns false.
func (r *t36Rig) retry(ctx context.Context, what string, err error) bool {
	wait, reason := 10*time.Millisecond, "transport"
	var ae *relay.APIError
	if errors.As(err, &ae) {
		reason = strconv.Itoa(ae.Status)
		switch ae.Status {
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			wait = max(wait, ae.RetryAfter)
		case http.StatusInsufficientStorage:
			wait = 50 * time.Millisecond
		default:
			r.fail("%s refused: %v", what, err)
			r.abort()
			return false
		}
	}
	r.mu.Lock()
	r.retries[reason]++
	r.mu.Unlock()
	select {
	case <-ctx.Done():
	case <-time.After(wait):
	}
	return true
}

// consume fetches the device's mailbox from its start on the current
// server and acks what it got. Each message must be one of the rig's, keep
// its sequence number, and never come back once its ack was confirmed.
// It returns the number of messages fetched.
func (r *t36Rig) consume(ctx context.Context, c *relay.Client) (int, error) {
	c.BaseURL = *r.base.Load()
	p, err := c.Fetch(ctx, 0, 1000)
	if err != nil {
		return 0, err
	}
	for _, m := range p.Messages {
		h, err := sealed.ParseHeader(m.Envelope)
		if err != nil {
			return 0, err
		}
		if _, known := r.index[h.MessageID]; !known {
			r.fail("unknown message %x", h.MessageID[:4])
		}
		if r.confirmed[h.MessageID] {
			r.fail("message %x delivered again after its ack", h.MessageID[:4])
		}
		if s, ok := r.seq[h.MessageID]; ok && s != m.Seq {
			r.fail("message %x at sequence numbers %d and %d", h.MessageID[:4], s, m.Seq)
		}
		r.seq[h.MessageID] = m.Seq
	}
	if n := len(p.Messages); n > 0 {
		if err := c.Ack(ctx, p.Messages[n-1].Seq); err != nil {
			return 0, err
		}
		for _, m := range p.Messages {
			h, _ := sealed.ParseHeader(m.Envelope)
			r.confirmed[h.MessageID] = true
		}
	}
	return len(p.Messages), nil
}

// startConsumer runs the device: it consumes until the returned function
// is called, which waits for it to stop, or ctx ends. Fetch and ack errors while the
// server is down are retried; a refused ack, a malformed page or a
// rolled-back head is a failure.
func (r *t36Rig) startConsumer(ctx context.Context) (stop func()) {
	done, quit := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		c := relayClient(r.t, r.d, r.data, *r.base.Load())
		for {
			select {
			case <-quit:
				return
			case <-ctx.Done():
				return
			default:
			}
			if _, err := r.consume(ctx, c); err != nil {
				var ae *relay.APIError
				if errors.As(err, &ae) && ae.Status == 409 {
					r.fail("ack refused: %v", err)
				}
				if errors.Is(err, sealed.ErrMalformed) || errors.Is(err, relay.ErrMalformed) || errors.Is(err, mailbox.ErrRollback) {
					r.fail("fetch: %v", err)
				}
				r.fetchErrs.Add(1)
				time.Sleep(10 * time.Millisecond)
			}
		}
	}()
	return func() { close(quit); <-done }
}

// drain consumes with c until the mailbox is empty.
func (r *t36Rig) drain(ctx context.Context, c *relay.Client) {
	for {
		n, err := r.consume(ctx, c)
		check(r.t, err)
		if n == 0 {
			return
		}
	}
}
