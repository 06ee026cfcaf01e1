package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
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
	s, ids, envs, index := r.s, r.ids, r.envs, r.index
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

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
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
						time.Sleep(10 * time.Millisecond) // down or restarting: retry
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

	// The device fetches from the start of its mailbox and acks what it
	// got; a message whose ack was confirmed must never come back, and a
	// message keeps its sequence number.
	seq := map[sealed.MessageID]uint64{}
	confirmed := map[sealed.MessageID]bool{}
	var failures []string
	consume := func(c *relay.Client) (int, error) {
		c.BaseURL = *base.Load()
		p, err := c.Fetch(ctx, 0, 1000)
		if err != nil {
			return 0, err
		}
		for _, m := range p.Messages {
			h, err := sealed.ParseHeader(m.Envelope)
			if err != nil {
				return 0, err
			}
			if _, known := index[h.MessageID]; !known {
				failures = append(failures, fmt.Sprintf("unknown message %x", h.MessageID[:4]))
			}
			if confirmed[h.MessageID] {
				failures = append(failures, fmt.Sprintf("message %x delivered again after its ack", h.MessageID[:4]))
			}
			if s, ok := seq[h.MessageID]; ok && s != m.Seq {
				failures = append(failures, fmt.Sprintf("message %x at sequence numbers %d and %d", h.MessageID[:4], s, m.Seq))
			}
			seq[h.MessageID] = m.Seq
		}
		if n := len(p.Messages); n > 0 {
			if err := c.Ack(ctx, p.Messages[n-1].Seq); err != nil {
				return 0, err
			}
			for _, m := range p.Messages {
				h, _ := sealed.ParseHeader(m.Envelope)
				confirmed[h.MessageID] = true
			}
		}
		return len(p.Messages), nil
	}
	consumerDone := make(chan struct{})
	stopConsumer := make(chan struct{})
	var fetchErrs atomic.Int64
	go func() {
		defer close(consumerDone)
		c := relayClient(t, d, data, *base.Load())
		for {
			select {
			case <-stopConsumer:
				return
			default:
			}
			if _, err := consume(c); err != nil {
				var ae *relay.APIError
				if errors.As(err, &ae) && ae.Status == 409 {
					failures = append(failures, fmt.Sprintf("ack refused: %v", err))
				}
				if errors.Is(err, sealed.ErrMalformed) || errors.Is(err, relay.ErrMalformed) || errors.Is(err, mailbox.ErrRollback) {
					failures = append(failures, fmt.Sprintf("fetch: %v", err))
				}
				fetchErrs.Add(1)
				time.Sleep(10 * time.Millisecond)
			}
		}
	}()

	kills = r.killUnderLoad(ctx, &wg, kills, 100, 600, &ackedN, total)
	close(stopConsumer)
	<-consumerDone

	// Drain what is left.
	c := relayClient(t, d, data, r.srv.url)
	for {
		n, err := consume(c)
		check(t, err)
		if n == 0 {
			break
		}
	}
	for _, f := range failures[:min(len(failures), 20)] {
		t.Error(f)
	}
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
		if _, ok := seq[ids[i]]; !ok {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d acknowledged messages lost", missing)
	}
	t.Logf("%d messages, %d send attempts, %d duplicate receipts, %d anonymous tokens spent by acknowledged sends, %d kills, %d fetch errors",
		total, attempts.Load(), dups.Load(), len(spentAcked), kills, fetchErrs.Load())
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
}

// newT36Rig starts the rig; stream seeds the kill-timing generator (the
// seed is logged) and format, given the index, makes each content.
func newT36Rig(t *testing.T, stream uint64, total int, format string) *t36Rig {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := &t36Rig{t: t, rng: rand.New(rand.NewPCG(seed, stream))}
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
	for k := 0; k < kills || (long && acked.Load() < int64(total) && time.Now().Before(stop)); k++ {
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
		t.Fatalf("senders did not finish: %d of %d acknowledged", acked.Load(), total)
	}
	return kills
}
