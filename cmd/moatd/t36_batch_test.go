package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/server/relay"
)

// TestT36KillUnderLoadBatch is TestT36KillUnderLoad for batch sends
// (docs/spec/api.md §Batch send): senders send pre-sealed envelopes in
// batches of up to 16 while moatd serve is killed with SIGKILL at random
// moments and restarted on the same data directory; each sender resends
// the items that were not acknowledged, in a new batch. Afterwards every
// acknowledged item is in the mailbox exactly once, under the sequence
// number of its receipt (a duplicate receipt names the original one).
func TestT36KillUnderLoadBatch(t *testing.T) {
	kills, total, senders, per := 3, 5000, 4, 16
	if os.Getenv("MOAT_LONG") == "1" {
		kills, total, senders = 20, 20000, 8
	}
	r := newT36Rig(t, 37, total, "t36 batch message %d")
	d, data, base, auth := r.d, r.data, &r.base, r.auth
	envs, index := r.envs, r.index
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	seqs := make([]atomic.Uint64, total) // receipt sequence numbers; 0: not acknowledged
	var ackedN, requests, dups atomic.Int64
	var mu sync.Mutex
	var failures []string
	fail := func(f string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(f, args...))
		mu.Unlock()
	}
	chunks := make(chan []int, total/per+1)
	for i := 0; i < total; i += per {
		var c []int
		for j := i; j < min(i+per, total); j++ {
			c = append(c, j)
		}
		chunks <- c
	}
	close(chunks)
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			c := relayClient(t, d, data, *base.Load())
			for chunk := range chunks {
				for len(chunk) > 0 && ctx.Err() == nil {
					c.BaseURL = *base.Load()
					items := make([]relay.BatchItem, len(chunk))
					for k, i := range chunk {
						items[k] = relay.BatchItem{Auth: auth, Envelope: envs[i]}
					}
					requests.Add(1)
					// A bounded request: one that hangs (a connection
					// half-open across a kill) is retried like a refused one.
					rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
					rs, err := c.SendBatch(rctx, items)
					rcancel()
					if err != nil {
						time.Sleep(10 * time.Millisecond) // down or restarting: retry
						continue
					}
					var left []int
					for k, r := range rs {
						i := chunk[k]
						if r.Err != nil {
							left = append(left, i)
							continue
						}
						if r.Receipt.Duplicate {
							dups.Add(1)
						}
						if old := seqs[i].Swap(r.Receipt.Seq); old != 0 && old != r.Receipt.Seq {
							fail("message %d acknowledged at %d and %d", i, old, r.Receipt.Seq)
						}
						ackedN.Add(1)
					}
					chunk = left
				}
			}
		})
	}
	kills = r.killUnderLoad(ctx, &wg, kills, 50, 300, &ackedN, total)

	// Read the whole mailbox (nothing was acked).
	c := relayClient(t, d, data, r.srv.url)
	got := make([]uint64, total)
	for after := uint64(0); ; {
		p, err := c.Fetch(ctx, after, 1000)
		check(t, err)
		if len(p.Messages) == 0 {
			break
		}
		for _, m := range p.Messages {
			h, err := sealed.ParseHeader(m.Envelope)
			check(t, err)
			i, known := index[h.MessageID]
			switch {
			case !known:
				fail("unknown message at %d", m.Seq)
			case got[i] != 0:
				fail("message %d stored at %d and %d", i, got[i], m.Seq)
			default:
				got[i] = m.Seq
			}
		}
		after = p.Messages[len(p.Messages)-1].Seq
	}
	lost := 0
	for i := range total {
		want := seqs[i].Load()
		if want == 0 {
			t.Fatalf("message %d never acknowledged", i)
		}
		if got[i] == 0 {
			lost++
		} else if got[i] != want {
			fail("message %d acknowledged at %d, stored at %d", i, want, got[i])
		}
	}
	if lost > 0 {
		t.Errorf("%d acknowledged messages lost", lost)
	}
	for _, f := range failures[:min(len(failures), 20)] {
		t.Error(f)
	}
	t.Logf("%d messages in batches of %d, %d requests, %d duplicate receipts, %d kills", total, per, requests.Load(), dups.Load(), kills)
	r.srv.stop(t)
}
