package ratchet

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/internal/prim"
)

// kemStepOf reports whether msg opens a chain with a KEM step.
func kemStepOf(t testing.TB, msg []byte) bool {
	t.Helper()
	var h header
	if _, _, _, err := parseMessage(msg, &h); err != nil {
		t.Fatal(err)
	}
	return h.flags&flagKEMCT != 0
}

// TestKEMScheduleSilentPeer: an initiator whose peer never answers still
// mixes a fresh ML-KEM secret into its root at least every KEMInterval
// messages (it encapsulates to the responder's KEM prekey, the responder's
// KEM key 0), and the receiver sees every one of those steps.
func TestKEMScheduleSilentPeer(t *testing.T) {
	p := newPair(t)
	// PQXDH's KEM secret covers the first messages; each KEM step starts a
	// new epoch. No epoch may carry more than KEMInterval messages.
	inEpoch := 0
	steps := 0
	for i := range 5*KEMInterval + 7 {
		m := fmt.Sprint(i)
		ct := send(t, p.a, m)
		r := recvOK(t, p.b, ct, m)
		if r.NewChain && kemStepOf(t, ct) != r.KEMStep {
			t.Fatalf("message %d: header and receiver disagree on the KEM step", i)
		}
		if r.KEMStep && r.N == 0 {
			inEpoch = 0
			steps++
		}
		inEpoch++
		if inEpoch > KEMInterval {
			t.Fatalf("message %d: %d messages under one KEM secret (limit %d)", i, inEpoch, KEMInterval)
		}
	}
	if steps < 5 {
		t.Fatalf("%d KEM steps in %d one-way messages", steps, 5*KEMInterval+7)
	}
}

// TestKEMScheduleMaxAge: after KEMMaxAge without a KEM step the next
// message opens a new chain with one, in both directions, whatever the
// message count.
func TestKEMScheduleMaxAge(t *testing.T) {
	p := newPair(t)
	recvOK(t, p.b, send(t, p.a, "hello"), "hello")
	recvOK(t, p.a, send(t, p.b, "hi"), "hi")
	for _, dir := range []struct {
		name     string
		from, to *Session
	}{{"initiator", p.a, p.b}, {"responder", p.b, p.a}} {
		// A few messages on the current chain, no KEM step due yet.
		ct := send(t, dir.from, "before")
		recvOK(t, dir.to, ct, "before")
		ct = send(t, dir.from, "same chain")
		if r := recvOK(t, dir.to, ct, "same chain"); r.N == 0 {
			t.Fatalf("%s: unexpected new chain before the age limit", dir.name)
		}
		p.clk.advance(KEMMaxAge - time.Second)
		ct = send(t, dir.from, "just before")
		if r := recvOK(t, dir.to, ct, "just before"); r.N == 0 && r.KEMStep {
			t.Fatalf("%s: KEM step before KEMMaxAge", dir.name)
		}
		p.clk.advance(time.Second)
		ct = send(t, dir.from, "a day later")
		r := recvOK(t, dir.to, ct, "a day later")
		if !r.KEMStep || r.N != 0 || !kemStepOf(t, ct) {
			t.Fatalf("%s: no KEM step after KEMMaxAge (KEMStep %v, n %d)", dir.name, r.KEMStep, r.N)
		}
	}
}

// TestPolicyBinding: the conversation policy identifier is part of every
// message's associated data. Sessions that disagree on it cannot talk; the
// rejection leaves state unchanged; the policy survives Marshal/Unmarshal.
func TestPolicyBinding(t *testing.T) {
	mk := func(policyA, policyB []byte) *pair {
		p := newPairWith(t, rand.Reader, false)
		a, b := p.a, p.b
		a.policy, b.policy = policyA, policyB
		a.deriveADs()
		b.deriveADs()
		return p
	}
	p := mk([]byte("trading/v1"), []byte("trading/v1"))
	recvOK(t, p.b, send(t, p.a, "same policy"), "same policy")
	recvOK(t, p.a, send(t, p.b, "reply"), "reply")

	q := mk([]byte("trading/v1"), []byte("hr/v1"))
	before := q.b.Marshal()
	if _, err := q.b.Decrypt(send(t, q.a, "x")); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("policy mismatch: %v, want ErrDecrypt", err)
	}
	if !bytes.Equal(before, q.b.Marshal()) {
		t.Fatal("rejected message changed the state")
	}
	e := mk(nil, []byte("trading/v1"))
	if _, err := e.b.Decrypt(send(t, e.a, "x")); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("empty vs set policy: %v, want ErrDecrypt", err)
	}

	r, err := Unmarshal(p.a.cfg, p.a.Marshal(), p.a.Generation())
	must(t, err)
	if !bytes.Equal(r.policy, []byte("trading/v1")) {
		t.Fatalf("policy after restore: %q", r.policy)
	}
	recvOK(t, p.b, send(t, r, "after restore"), "after restore")
}

// TestEscrowRefBinding: a message carrying an escrow-blob reference
// authenticates and reports it; adding or stripping the reference in
// transit makes it fail with the session unchanged.
func TestEscrowRefBinding(t *testing.T) {
	p := newPair(t)
	recvOK(t, p.b, send(t, p.a, "hello"), "hello")
	ref := bytes.Repeat([]byte{0xe5}, escrowRefSize)

	// Build a message with an escrow reference by hand: the sender API
	// for it arrives with escrow (issue #7); the format and binding exist.
	withRef := func(s *Session, pt string, escrow []byte) []byte {
		ch := s.send
		ck := ch.ck
		var mk [keySize]byte
		kdfCK(&ck, &mk)
		h := header{chain: ch.index, n: ch.n, ack: s.maxRecv}
		if ch.index > s.peerAck {
			h.flags |= ch.flags
			h.est = ch.est
		}
		if s.preamble != nil {
			h.flags |= flagPreamble
			h.preamble = s.preamble
		}
		if escrow != nil {
			h.flags |= flagEscrow
			h.escrowRef = escrow
		}
		out := appendHeader(nil, &h)
		ad := append(append([]byte(nil), s.sendAD...), out...)
		aead, err := prim.NewChaCha20Poly1305(mk[:])
		must(t, err)
		nonce := nonceFor(ch.n)
		out = aead.Seal(out, nonce[:], []byte(pt), ad)
		ch.ck, ch.n = ck, ch.n+1
		return out
	}
	msg := withRef(p.a, "escrowed", ref)
	// Strip the reference (and its flag) in transit.
	var h header
	_, ct, _, err := parseMessage(msg, &h)
	must(t, err)
	h.flags &^= flagEscrow
	h.escrowRef = nil
	stripped := append(appendHeader(nil, &h), ct...)
	before := p.b.Marshal()
	if _, err := p.b.Decrypt(stripped); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("stripped escrow reference: %v, want ErrDecrypt", err)
	}
	if !bytes.Equal(before, p.b.Marshal()) {
		t.Fatal("rejected message changed the state")
	}
	r := recvOK(t, p.b, msg, "escrowed")
	if !bytes.Equal(r.EscrowRef, ref) {
		t.Fatalf("EscrowRef %x", r.EscrowRef)
	}
	// Adding a reference to a message sent without one fails too.
	plain := withRef(p.a, "plain", nil)
	h = header{}
	_, ct, _, err = parseMessage(plain, &h)
	must(t, err)
	h.flags |= flagEscrow
	h.escrowRef = ref
	added := append(appendHeader(nil, &h), ct...)
	if _, err := p.b.Decrypt(added); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("added escrow reference: %v, want ErrDecrypt", err)
	}
	recvOK(t, p.b, plain, "plain")
}
