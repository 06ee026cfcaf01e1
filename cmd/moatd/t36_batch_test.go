package main

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-im/moat/server/relay"
)

// TestT36KillUnderLoadBatch is TestT36KillUnderLoad for batch sends
// (docs/spec/api.md §Batch send): senders send pre-sealed envelopes in
// batches of up to 16 while the device fetches and acks, and moatd serve
// is killed with SIGKILL at random moments and restarted on the same data
// directory; each sender resends the items that were not acknowledged, in
// a new batch. Afterwards every acknowledged item was delivered exactly
// once, under the sequence number of its receipt (a duplicate receipt
// names the original one). The device must ack as it goes: a mailbox
// holds at most 10,000 messages (mailbox.DefaultMaxMessages), fewer than
// the long form sends.
func TestT36KillUnderLoadBatch(t *testing.T) {
	kills, total, senders, per := 3, 5000, 4, 16
	if os.Getenv("MOAT_LONG") == "1" {
		kills, total, senders = 20, 20000, 8
	}
	r := newT36Rig(t, 37, total, "t36 batch message %d")
	d, data, base, auth := r.d, r.data, &r.base, r.auth
	ids, envs := r.ids, r.envs
	ctx := r.runContext(10 * time.Minute)
	seqs := make([]atomic.Uint64, total) // receipt sequence numbers; 0: not acknowledged
	var ackedN, requests, dups atomic.Int64
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
			// relayClient's HTTP client bounds each request (10 s).
			c := relayClient(t, d, data, *base.Load())
			for chunk := range chunks {
				for len(chunk) > 0 && ctx.Err() == nil {
					c.BaseURL = *base.Load()
					items := make([]relay.BatchItem, len(chunk))
					for k, i := range chunk {
						items[k] = relay.BatchItem{Auth: auth, Envelope: envs[i]}
					}
					requests.Add(1)
					rs, err := c.SendBatch(ctx, items)
					if err != nil {
						if !r.retry(ctx, fmt.Sprintf("batch of %d from message %d", len(chunk), chunk[0]), err) {
							return
						}
						continue
					}
					var left []int
					var refused error
					for k, res := range rs {
						i := chunk[k]
						if res.Err != nil {
							var ae *relay.APIError
							if !errors.As(res.Err, &ae) {
								// A receipt that does not verify.
								r.fail("message %d: %v", i, res.Err)
								r.abort()
								return
							}
							left, refused = append(left, i), res.Err
							continue
						}
						if res.Receipt.Duplicate {
							dups.Add(1)
						}
						if old := seqs[i].Swap(res.Receipt.Seq); old != 0 && old != res.Receipt.Seq {
							r.fail("message %d acknowledged at %d and %d", i, old, res.Receipt.Seq)
						}
						ackedN.Add(1)
					}
					if refused != nil && !r.retry(ctx, fmt.Sprintf("message %d", left[len(left)-1]), refused) {
						return
					}
					chunk = left
				}
			}
		})
	}
	stopConsumer := r.startConsumer(ctx)
	kills = r.killUnderLoad(ctx, &wg, kills, 50, 300, &ackedN, total)
	stopConsumer()

	// Drain what is left.
	r.drain(ctx, relayClient(t, d, data, r.srv.url))
	lost := 0
	for i := range total {
		want := seqs[i].Load()
		if want == 0 {
			t.Fatalf("message %d never acknowledged", i)
		}
		if got, ok := r.seq[ids[i]]; !ok {
			lost++
		} else if got != want {
			r.fail("message %d acknowledged at %d, delivered at %d", i, want, got)
		}
	}
	if lost > 0 {
		t.Errorf("%d acknowledged messages lost", lost)
	}
	r.reportFailures()
	t.Logf("%d messages in batches of %d, %d requests, %d duplicate receipts, %d kills, %d fetch errors, retries %v",
		total, per, requests.Load(), dups.Load(), kills, r.fetchErrs.Load(), r.retryTally())
	r.srv.stop(t)
}
