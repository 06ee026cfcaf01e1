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

func TestStateRoundTrip(t *testing.T) {
	p := newPair(t)
	recvOK(t, p.b, send(t, p.a, "hello"), "hello")
	late := send(t, p.b, "late")
	recvOK(t, p.a, send(t, p.b, "reply"), "reply")
	// Snapshot both sides and continue from the restored copies.
	for _, s := range []**Session{&p.a, &p.b} {
		enc := (*s).Marshal()
		r, err := Unmarshal((*s).cfg, enc, (*s).Generation())
		must(t, err)
		if got := r.Marshal(); string(got) != string(enc) {
			t.Fatal("Marshal(Unmarshal(x)) != x")
		}
		*s = r
	}
	recvOK(t, p.a, late, "late")
	recvOK(t, p.b, send(t, p.a, "after restore"), "after restore")
	recvOK(t, p.a, send(t, p.b, "after restore 2"), "after restore 2")
}
