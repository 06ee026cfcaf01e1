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
// request, each item with its own MAC token. The items of a request are
// unrelated messages to different mailboxes over warm keep-alive
// connections: a shape of traffic the client SDK does not send (its
// batches carry one message's envelopes to one user's devices, usually
// 1–3, each request on a fresh connection: client/outbox_batch.go,
// client/anonhttp.go), so the phase measures the relay's cost per item,
// not what a population of SDK clients would reach.

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
			g.f.concurrency, g.f.devices, g.proto(), us(rcpu, n), us(scpu, n), quantile(s, .5), quantile(s, .99), g.lastLoad, loadAvg()) + g.storeNote()})
	return nil
}

// latencyBatch runs the latencybatch phase: enqueue-ack latency at each
// offered rate of messages per second, sent as --batch envelopes per
// send-batch request (a fan-out of one message to several devices is
// one request) at rate/--batch requests per second, open loop, each rate
// on a fresh relay. Every message of a batch is acknowledged by the
// batch's answer, so the latency of each is its batch's.
func (g *gen) latencyBatch(ctx context.Context) error {
	k := g.f.batch
	bodies, err := g.batchBodies(k)
	if err != nil {
		return err
	}
	for _, rate := range g.f.rates {
		n := min(len(bodies), int(float64(rate)*g.f.rateFor.Seconds())/k)
		reqRate := rate / k
		if n < 1 || reqRate < 1 {
			return errors.New("latencybatch: no requests: raise --rate-duration or --rate, or lower --batch")
		}
		p, err := g.startRelay(ctx, fmt.Sprintf("latencybatch-%d", rate), g.f.openConns)
		if err != nil {
			return err
		}
		g.logf("latencybatch: %d batches of %d offered at %d msgs/s (%d requests/s) over %d connections", n, k, rate, reqRate, g.f.openConns)
		u := snapshot(p)
		rc0 := p.cpu()
		_, lat, achieved, failed, err := openLoopDo(n, reqRate, func(i int) error { return g.postBatch(ctx, p, bodies[i]) })
		rcpu := p.cpu() - rc0
		use := u.since(p)
		p.stop()
		if err != nil {
			return fmt.Errorf("%d of %d batches failed: %w", failed, n, err)
		}
		s := sorted(lat)
		p99 := quantile(s, .99)
		g.add(result{metric: fmt.Sprintf("enqueue-ack latency at an offered %d msgs/s, %d per send-batch request", rate, k),
			goal: "p99 ≤ 50 ms", measured: fmt.Sprintf("p50 %.1f ms, p99 %.1f ms, max %.1f ms", quantile(s, .5), p99, quantile(s, 1)),
			ratio: fmt.Sprintf("p99 %.2f× the goal", p99/50),
			conditions: fmt.Sprintf("open loop, %d messages in %d requests, %.0f msgs/s achieved, over %d %s connections; latency from each batch's scheduled time to its answer (queueing for a connection included); relay CPU %.1f µs/msg; %s",
				n*k, n, achieved*float64(k), g.f.openConns, g.proto(), us(rcpu, n*k), use) + g.storeNote()})
	}
	return nil
}
