package relay_test

import (
	"context"
	"testing"
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
