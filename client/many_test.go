package client_test

import (
	"context"
	"fmt"
	"testing"
)

// TestManyUnansweredMessages: a device sends many messages before the
// other side answers (each from a session restored from the store), and
// all of them decrypt, in order.
func TestManyUnansweredMessages(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	const n = 20
	for i := range n {
		_, err := w.a1.SendText(ctx, w.bob, fmt.Sprint("message ", i))
		ok(t, err)
	}
	syncAll(t, w.b1)
	h := history(t, w.b1, w.alice)
	if len(h) != n {
		t.Fatalf("Bob has %d messages, want %d", len(h), n)
	}
	for i, r := range h {
		if r.Text != fmt.Sprint("message ", i) {
			t.Fatalf("message %d is %q", i, r.Text)
		}
	}
}

// BenchmarkSendSync measures one text message from Alice's device to Bob
// (fan-out to Bob's device and Alice's other device) and Bob's Sync of it,
// over loopback HTTP with the directory and relay in process.
func BenchmarkSendSync(b *testing.B) {
	w := newWorldTB(b)
	ctx := context.Background()
	for b.Loop() {
		if _, err := w.a1.SendText(ctx, w.bob, "benchmark"); err != nil {
			b.Fatal(err)
		}
		if err := w.b1.Sync(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
