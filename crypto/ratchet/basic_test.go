package ratchet

import (
	"fmt"
	"testing"
)

func TestConversation(t *testing.T) {
	p := newPair(t)
	for round := range 5 {
		for i := range 3 {
			m := fmt.Sprintf("a->b %d/%d", round, i)
			recvOK(t, p.b, send(t, p.a, m), m)
		}
		for i := range 2 {
			m := fmt.Sprintf("b->a %d/%d", round, i)
			recvOK(t, p.a, send(t, p.b, m), m)
		}
	}
	// Long one-way run crosses MaxChainMessages and KEMInterval.
	kem := 0
	for i := range 3 * KEMInterval {
		m := fmt.Sprintf("flood %d", i)
		if r := recvOK(t, p.b, send(t, p.a, m), m); r.KEMStep {
			kem++
		}
	}
	if kem < 3 {
		t.Fatalf("KEM steps in a 150-message one-way run: %d, want >= 3", kem)
	}
}
