package relay_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/moat-im/moat/server/store/mailbox/badgermailbox"
)

// BenchmarkSend measures anonymous sends of 2 KiB envelopes (pre-sealed)
// over loopback HTTP/1.1 into the in-memory mailbox store: the relay's
// own cost per send (parsing, token check, enqueue, head signature), with
// the client in the same process.
func BenchmarkSend(b *testing.B) {
	w := newWorld(b, worldOptions{})
	a, r := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0)
	w.publish(r)
	tok := w.token(r, 1)
	envs := make([][]byte, 256)
	for i := range envs {
		envs[i] = envelope(b, a, r, []byte("benchmark message"))
	}
	c := w.anon()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := c.Send(ctx, tok, envs[i%len(envs)]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSendParallel sends from 64 concurrent senders over loopback
// HTTP/1.1 into a badgermailbox store (group commit), and reports the
// receipts per head signature (docs/spec/relay-storage.md §Batched heads).
func BenchmarkSendParallel(b *testing.B) {
	st, err := badgermailbox.Open(context.Background(), badgermailbox.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	w := newWorld(b, worldOptions{mbox: st})
	a, r := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0)
	w.publish(r)
	tok := w.token(r, 1)
	envs := make([][]byte, b.N)
	for i := range envs {
		envs[i] = envelope(b, a, r, []byte("benchmark message"))
	}
	var next atomic.Int64
	ctx := context.Background()
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := w.anon()
		for pb.Next() {
			if _, err := c.Send(ctx, tok, envs[next.Add(1)-1]); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	mfs, err := w.relay.Registry().Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "moat_relay_receipt_signatures_total" {
			b.ReportMetric(float64(b.N)/mf.GetMetric()[0].GetCounter().GetValue(), "receipts/sig")
		}
	}
}
