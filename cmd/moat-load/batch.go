package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"

	"github.com/moat-im/moat/server/relay"
)

// The sendbatch phase: the send phase's envelopes through POST
// /relay/v1/send-batch (docs/spec/api.md §Batch send), --batch per
// request, each item with its own MAC token, as a client's fan-out of one
// message to several devices sends them.

// batchBodies returns the SendBatch bodies of envelopes 0..n-1, k per
// batch, built before the timed part as the envelopes are sealed.
func (g *gen) batchBodies(k int) ([][]byte, error) {
	auths := make([][]byte, len(g.auths))
	for i, a := range g.auths {
		b, err := base64.RawURLEncoding.DecodeString(a)
		if err != nil {
			return nil, err
		}
		auths[i] = b
	}
	var bodies [][]byte
	for i := 0; i < len(g.envs); i += k {
		var items []relay.BatchItem
		for j := i; j < min(i+k, len(g.envs)); j++ {
			items = append(items, relay.BatchItem{Auth: auths[j%len(auths)], Envelope: g.envs[j]})
		}
		b, err := relay.MarshalSendBatch(items)
		if err != nil {
			return nil, err
		}
		bodies = append(bodies, b)
	}
	return bodies, nil
}

// postBatch POSTs one SendBatch body and checks that every item has a
// receipt of a new message (signatures unchecked, as in send).
func (g *gen) postBatch(ctx context.Context, p *relayProc, body []byte) error {
	b, err := p.post(ctx, g.f.http2, "/relay/v1/send-batch", "", body)
	if err != nil {
		return err
	}
	rs, err := relay.ParseBatchResults(b)
	if err != nil {
		return err
	}
	for _, r := range rs {
		if r.Status != http.StatusOK {
			return fmt.Errorf("item status %d", r.Status)
		}
		if r.Receipt.Duplicate {
			return errors.New("receipt of a duplicate")
		}
	}
	return nil
}

// sendBatches runs the sendbatch phase on a relay process of its own.
func (g *gen) sendBatches(ctx context.Context) error {
	k := g.f.batch
	bodies, err := g.batchBodies(k)
	if err != nil {
		return err
	}
	p, err := g.startRelay(ctx, "sendbatch", g.f.concurrency)
	if err != nil {
		return err
	}
	defer p.stop()
	n := len(g.envs)
	g.logf("sendbatch: %d sealed sends of %d bytes in batches of %d, %d senders", n, g.envSize(), k, g.f.concurrency)
	rc0, sc0 := p.cpu(), selfCPU()
	g.lastLoad = loadAvg()
	lat, el, err := workers(g.f.concurrency, len(bodies), func(i int) error { return g.postBatch(ctx, p, bodies[i]) })
	if err != nil {
		return err
	}
	rcpu, scpu := p.cpu()-rc0, selfCPU()-sc0
	rate := float64(n) / el.Seconds()
	s := sorted(lat)
	g.add(result{metric: fmt.Sprintf("durable %d-byte sealed sends (%d B content) through the relay over TLS, %d per send-batch request", g.envSize(), g.f.content, k),
		goal: "≥ 0.6× raw", measured: fmt.Sprintf("%.0f msgs/s", rate), ratio: g.rawRatio(rate),
		conditions: fmt.Sprintf("%d senders over %d mailboxes, %s, closed loop, envelopes sealed and batches encoded beforehand, MAC tokens; relay CPU %.1f µs/send, generator %.1f µs/send; per batch p50 %.1f ms, p99 %.1f ms; load average %s → %s",
			g.f.concurrency, g.f.devices, g.proto(), us(rcpu, n), us(scpu, n), quantile(s, .5), quantile(s, .99), g.lastLoad, loadAvg())})
	return nil
}
