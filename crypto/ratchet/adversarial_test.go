package ratchet

// Adversarial cases T01–T07 and T13 of the security requirements
// (shared/briefs/adversarial-cases.md), and the state invariants every
// stateful test checks: a rejected input leaves the state byte-identical,
// deleted keys are absent from the serialised state, no (chain, n) — and so
// no (key, nonce) — is used twice, and what is delivered equals what was
// sent or a typed gap is reported.
//
// Helpers here are prefixed "adv" so they do not collide with other test
// files of the package.

import (
	"bytes"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"testing"

	"github.com/moat-im/moat/crypto/internal/prim"
	"github.com/moat-im/moat/crypto/keys"
	"golang.org/x/crypto/cryptobyte"
)

// advTypedErrors are the decisions of errors.go a Decrypt may return.
var advTypedErrors = []error{ErrDecrypt, ErrMalformed, ErrDuplicate, ErrExpired, ErrTooFarAhead, ErrUnknownChain, ErrAttribution}

func advIsOneOf(err error, want []error) bool {
	for _, w := range want {
		if errors.Is(err, w) {
			return true
		}
	}
	return false
}

// advRequireState fails unless s serialises to exactly before: "a rejected
// input leaves all state byte-identical".
func advRequireState(t testing.TB, s *Session, before []byte, what string) {
	t.Helper()
	after := s.Marshal()
	if bytes.Equal(before, after) {
		return
	}
	i := 0
	for i < len(before) && i < len(after) && before[i] == after[i] {
		i++
	}
	t.Fatalf("%s: state changed (%d -> %d bytes, first difference at byte %d)", what, len(before), len(after), i)
}

// advReject delivers msg to s and requires a rejection with one of want and
// a byte-identical state afterwards. It returns the error.
func advReject(t testing.TB, s *Session, msg []byte, what string, want ...error) error {
	t.Helper()
	before := s.Marshal()
	gen := s.Generation()
	r, err := s.Decrypt(msg)
	if err == nil {
		t.Fatalf("%s: accepted (chain %d, n %d, %q), want one of %v", what, r.Chain, r.N, r.Plaintext, want)
	}
	if !advIsOneOf(err, want) {
		t.Fatalf("%s: got %v, want one of %v", what, err, want)
	}
	if r.Plaintext != nil {
		t.Fatalf("%s: rejected message returned plaintext %q", what, r.Plaintext)
	}
	if s.Generation() != gen {
		t.Fatalf("%s: generation moved %d -> %d on a rejected input", what, gen, s.Generation())
	}
	advRequireState(t, s, before, what)
	return err
}

// advHeader parses msg's header (slices copied, so that edits do not
// alias msg) and returns it with the AEAD ciphertext and signature.
func advHeader(t testing.TB, msg []byte) (header, []byte, []byte) {
	t.Helper()
	var h header
	_, ct, sig, err := parseMessage(msg, &h)
	if err != nil {
		t.Fatalf("parse own message: %v", err)
	}
	cp := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		return append([]byte(nil), b...)
	}
	h.est.dh, h.est.kemCT, h.est.kemPub = cp(h.est.dh), cp(h.est.kemCT), cp(h.est.kemPub)
	h.preamble, h.escrowRef = cp(h.preamble), cp(h.escrowRef)
	return h, cp(ct), cp(sig)
}

// advEncodeHeader encodes h in the message format of wire.go's comment.
// It is written independently of appendHeader (which is being optimised
// concurrently); TestAdvEncodeHeaderMatches checks the two agree.
func advEncodeHeader(h *header) []byte {
	var c cryptobyte.Builder
	c.AddUint8(messageType)
	c.AddUint8(h.flags)
	c.AddUint32(h.chain)
	c.AddUint32(h.n)
	c.AddUint32(h.ack)
	if h.flags&flagEstablish != 0 {
		e := &h.est
		c.AddUint32(e.base)
		c.AddUint32(e.prevChain)
		c.AddUint32(e.pn)
		c.AddUint32(e.dhRef)
		c.AddBytes(e.dh)
		if h.flags&flagKEMCT != 0 {
			c.AddUint32(e.kemRef)
			c.AddBytes(e.kemCT)
		}
		if h.flags&flagKEMPub != 0 {
			c.AddUint32(e.kemPubID)
			c.AddBytes(e.kemPub)
		}
	}
	if h.flags&flagPreamble != 0 {
		c.AddUint16LengthPrefixed(func(c *cryptobyte.Builder) { c.AddBytes(h.preamble) })
	}
	if h.flags&flagAttributed != 0 {
		c.AddUint64(h.timestampMS)
	}
	if h.flags&flagEscrow != 0 {
		c.AddBytes(h.escrowRef)
	}
	return c.BytesOrPanic()
}

// advRewrite re-encodes msg's header after edit, keeping its ciphertext:
// what a relay that rewrites headers delivers.
func advRewrite(t testing.TB, msg []byte, edit func(h *header)) []byte {
	t.Helper()
	h, ct, sig := advHeader(t, msg)
	edit(&h)
	out := advEncodeHeader(&h)
	out = append(out, ct...)
	return append(out, sig...)
}

// advCraft builds a message with header h and a zero 16-byte "ciphertext".
func advCraft(h header) []byte {
	if h.flags&flagEstablish != 0 && h.est.dh == nil {
		h.est.dh = bytes.Repeat([]byte{9}, dhSize)
	}
	return append(advEncodeHeader(&h), make([]byte, tagSize)...)
}

func advSkipCount(s *Session, chain uint32) int {
	n := 0
	for id := range s.skipped {
		if id.chain == chain {
			n++
		}
	}
	return n
}

// advSteady returns a pair past the handshake: both sides have
// acknowledged each other's first chain and advertised a KEM key.
func advSteady(t testing.TB, p *pair) {
	t.Helper()
	recvOK(t, p.b, send(t, p.a, "hello"), "hello")
	recvOK(t, p.a, send(t, p.b, "hi"), "hi")
	recvOK(t, p.b, send(t, p.a, "ack"), "ack")
	if p.a.peerKEM == nil || p.b.peerKEM == nil || p.a.preamble != nil {
		t.Fatal("pair not in steady state")
	}
}

func TestAdvEncodeHeaderMatches(t *testing.T) {
	p := newPair(t)
	msgs := [][]byte{send(t, p.a, "with preamble")}
	recvOK(t, p.b, msgs[0], "with preamble")
	msgs = append(msgs, send(t, p.b, "reply with KEM advertisement"))
	recvOK(t, p.a, msgs[1], "reply with KEM advertisement")
	p.a.ForceKEMStep()
	msgs = append(msgs, send(t, p.a, "KEM step"))
	for i, m := range msgs {
		if got := advRewrite(t, m, func(*header) {}); !bytes.Equal(got, m) {
			t.Fatalf("message %d: test encoder differs from appendHeader", i)
		}
	}
}

func TestT01Duplicate(t *testing.T) {
	p := newPair(t)

	// In-order message delivered twice, on a chain that establishment
	// created (the first message of the session, with its preamble).
	m0 := send(t, p.a, "m0")
	recvOK(t, p.b, m0, "m0")
	advReject(t, p.b, m0, "replay of first message", ErrDuplicate)

	// Skipped, then delivered, then delivered again.
	m1, m2, m3 := send(t, p.a, "m1"), send(t, p.a, "m2"), send(t, p.a, "m3")
	if r := recvOK(t, p.b, m3, "m3"); r.Skipped != 2 {
		t.Fatalf("Skipped = %d, want 2", r.Skipped)
	}
	advReject(t, p.b, m3, "replay of m3", ErrDuplicate)
	recvOK(t, p.b, m1, "m1")
	advReject(t, p.b, m1, "replay of skipped-then-delivered m1", ErrDuplicate)
	recvOK(t, p.b, m2, "m2")
	advReject(t, p.b, m2, "replay of skipped-then-delivered m2", ErrDuplicate)
	advReject(t, p.b, m0, "replay of m0 again", ErrDuplicate)

	// The other direction.
	x := send(t, p.b, "x")
	recvOK(t, p.a, x, "x")
	advReject(t, p.a, x, "replay to initiator", ErrDuplicate)

	// After the chain has closed (the sender moved on), its messages,
	// delivered or skipped-then-delivered, are still duplicates.
	m4, m5 := send(t, p.a, "m4"), send(t, p.a, "m5") // new chain (DH ratchet)
	recvOK(t, p.b, m5, "m5")
	recvOK(t, p.a, send(t, p.b, "y"), "y")
	m6 := send(t, p.a, "m6") // next chain; closes m4's chain at pn = 2
	if h, _, _ := advHeader(t, m6); h.chain == mustChain(t, m5) {
		t.Fatal("expected a new chain")
	}
	recvOK(t, p.b, m6, "m6")
	recvOK(t, p.b, m4, "m4")
	for i, m := range [][]byte{m0, m1, m3, m4, m5, m6} {
		advReject(t, p.b, m, fmt.Sprintf("replay %d after chain closed", i), ErrDuplicate)
	}

	// Many replays of every message ever delivered, in a random order.
	all := [][]byte{m0, m1, m2, m3, m4, m5, m6}
	rng := mrand.New(mrand.NewPCG(1, 2))
	for i := range 50 {
		advReject(t, p.b, all[rng.IntN(len(all))], fmt.Sprintf("random replay %d", i), ErrDuplicate)
	}
	// The session still works.
	recvOK(t, p.b, send(t, p.a, "still fine"), "still fine")
}

func mustChain(t testing.TB, msg []byte) uint32 {
	t.Helper()
	h, _, _ := advHeader(t, msg)
	return h.chain
}

func TestT02Reflection(t *testing.T) {
	p := newPair(t)
	seen := map[string]int{}
	reflect := func(s *Session, msg []byte, what string) {
		t.Helper()
		err := advReject(t, s, msg, what, advTypedErrors...)
		seen[err.Error()]++
	}

	// Before any acknowledgement: the initiator's message carries the
	// PQXDH preamble.
	a0 := send(t, p.a, "a0")
	reflect(p.a, a0, "a0 reflected to a before b received it")
	recvOK(t, p.b, a0, "a0")
	reflect(p.a, a0, "a0 reflected to a after b received it")
	b0 := send(t, p.b, "b0")
	reflect(p.b, b0, "b0 reflected to b")
	recvOK(t, p.a, b0, "b0")
	reflect(p.b, b0, "b0 reflected to b after a received it")

	// Several ratchet steps: ping-pong turns, chain rollovers, KEM steps.
	// Every message is reflected to its own sender, before and after its
	// delivery to the peer.
	rng := mrand.New(mrand.NewPCG(3, 4))
	for round := range 12 {
		from, to := p.a, p.b
		if round%2 == 1 {
			from, to = p.b, p.a
		}
		if round%5 == 4 {
			from.ForceKEMStep()
		}
		k := 1 + rng.IntN(4)
		if round == 6 {
			k = MaxChainMessages + 3 // rollover
		}
		var batch [][]byte
		for i := range k {
			m := send(t, from, fmt.Sprintf("r%d/%d", round, i))
			reflect(from, m, fmt.Sprintf("round %d msg %d reflected before delivery", round, i))
			batch = append(batch, m)
		}
		for i, m := range batch {
			recvOK(t, to, m, fmt.Sprintf("r%d/%d", round, i))
			reflect(from, m, fmt.Sprintf("round %d msg %d reflected after delivery", round, i))
		}
	}
	// Reflection never reads as a message of the peer: the sender never
	// holds its own chain keys as receiving keys, and the AD binds the
	// direction (TestT02ReflectionSameIndices). Which typed error comes
	// depends on where the unauthenticated header leads: ErrMalformed for
	// a preamble at the initiator, ErrDuplicate or ErrExpired when its
	// (chain, n) falls on a position of the peer's chain of the same
	// index, ErrUnknownChain, or ErrDecrypt at the AEAD.
	t.Logf("reflection outcomes: %v", seen)
	recvOK(t, p.b, send(t, p.a, "after reflections"), "after reflections")
	recvOK(t, p.a, send(t, p.b, "after reflections 2"), "after reflections 2")
}

// TestT02ReflectionSameIndices reflects a message onto a receiving chain
// of the same index whose key the receiver holds, and checks the AEAD
// binding directly: a message opens only under the receiver's AD for its
// direction, not under the opposite direction's AD.
func TestT02ReflectionSameIndices(t *testing.T) {
	p := newPair(t)
	advSteady(t, p)                          // a: chains 1, 2; b: chain 1
	recvOK(t, p.a, send(t, p.b, "b2"), "b2") // b: chain 2
	p.b.ForceKEMStep()
	recvOK(t, p.a, send(t, p.b, "b3"), "b3") // b: chain 3
	a0, a1 := send(t, p.a, "a0"), send(t, p.a, "a1")
	h, _, _ := advHeader(t, a1)
	c := p.a.recv[h.chain]
	if c == nil || c.done || h.n < c.next {
		t.Fatalf("setup: a's own chain %d (n %d) does not land on an open receiving chain of a", h.chain, h.n)
	}
	// a holds the key of b's chain with this index and would derive
	// message n from it; the AEAD refuses.
	advReject(t, p.a, a1, "reflection onto a same-index receiving chain", ErrDecrypt)
	// n below the receiving chain's position: indistinguishable from a
	// replay before authentication; still rejected, state unchanged.
	advReject(t, p.a, a0, "reflection below the receiving chain's position", ErrDuplicate, ErrDecrypt)

	// Direction binding: b's key for a1 opens a1 under b's receiving AD
	// only, not under the AD of the opposite direction.
	recvOK(t, p.b, a0, "a0")
	bc := p.b.recv[h.chain]
	if bc == nil || bc.next > h.n {
		t.Fatalf("setup: b has no open chain %d", h.chain)
	}
	ck := bc.ck
	var mk [keySize]byte
	for range h.n - bc.next + 1 {
		kdfCK(&ck, &mk)
	}
	hdr, ct, _ := func() ([]byte, []byte, []byte) {
		var hh header
		hdr, ct, sig, err := parseMessage(a1, &hh)
		must(t, err)
		return hdr, ct, sig
	}()
	aead, err := prim.NewChaCha20Poly1305(mk[:])
	must(t, err)
	nonce := nonceFor(h.n)
	if _, err := aead.Open(nil, nonce[:], ct, append(append([]byte(nil), p.b.recvAD...), hdr...)); err != nil {
		t.Fatalf("a1 does not open under b's receiving AD: %v", err)
	}
	if _, err := aead.Open(nil, nonce[:], ct, append(append([]byte(nil), p.b.sendAD...), hdr...)); err == nil {
		t.Fatal("a1 opens under the opposite direction's AD")
	}
	// Every byte of the AD prefix (label, direction, both identities and
	// the PQXDH transcript, policy, attributable flag) is bound.
	for i := range p.b.recvAD {
		ad := append(append([]byte(nil), p.b.recvAD...), hdr...)
		ad[i] ^= 1
		if _, err := aead.Open(nil, nonce[:], ct, ad); err == nil {
			t.Fatalf("a1 opens with byte %d of the AD prefix changed", i)
		}
	}
	recvOK(t, p.b, a1, "a1")
}

func TestT03Shuffle(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprintf("one-way/seed%d", seed), func(t *testing.T) { advShuffleOneWay(t, seed) })
		t.Run(fmt.Sprintf("ping-pong/seed%d", seed), func(t *testing.T) { advShufflePingPong(t, seed) })
	}
}

// TestT03ShuffleBeforeFirstReply: the initiator sends several chains'
// worth of messages before the responder has received anything (so before
// it knows any ratchet KEM key of the responder), and they arrive in a
// random order.
func TestT03ShuffleBeforeFirstReply(t *testing.T) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			p := newPairWith(t, mrand.NewChaCha8([32]byte{byte(seed), 's'}), false)
			rng := mrand.New(mrand.NewPCG(seed, 33))
			var msgs []advSent
			for i := range 2*MaxChainMessages + 7 {
				msgs = append(msgs, advSend(t, p.a, fmt.Sprintf("early %d", i), i, 0))
			}
			chains := map[uint32]bool{}
			for _, m := range msgs {
				chains[m.chain] = true
			}
			// MaxChainMessages bounds a chain; nothing else is due (no KEM
			// step is possible without the responder's KEM key).
			if want := (len(msgs) + MaxChainMessages - 1) / MaxChainMessages; len(chains) != want {
				t.Errorf("%d messages before the first reply used %d chains, want %d", len(msgs), len(chains), want)
			}
			var got []advSent
			for _, i := range rng.Perm(len(msgs)) {
				advDeliver(t, p.b, msgs[i])
				got = append(got, msgs[i])
			}
			advCheckOrder(t, got, len(msgs))
			recvOK(t, p.a, send(t, p.b, "finally"), "finally")
			recvOK(t, p.b, send(t, p.a, "ok"), "ok")
		})
	}
}

type advSent struct {
	ct       []byte
	text     string
	chain, n uint32
	seq      int // position in the sender's sending order
	round    int
}

// advDeliver decrypts m at s and checks plaintext and authenticated
// position.
func advDeliver(t testing.TB, s *Session, m advSent) Received {
	t.Helper()
	r := recvOK(t, s, m.ct, m.text)
	if r.Chain != m.chain || r.N != m.n {
		t.Fatalf("%q: Received (chain %d, n %d), sent as (%d, %d)", m.text, r.Chain, r.N, m.chain, m.n)
	}
	return r
}

// advCheckOrder requires that ordering the received messages by their
// authenticated (Chain, N) reproduces the sending order.
func advCheckOrder(t testing.TB, got []advSent, total int) {
	t.Helper()
	if len(got) != total {
		t.Fatalf("delivered %d of %d", len(got), total)
	}
	slices.SortFunc(got, func(x, y advSent) int {
		if x.chain != y.chain {
			return int(int64(x.chain) - int64(y.chain))
		}
		return int(int64(x.n) - int64(y.n))
	})
	for i, m := range got {
		if m.seq != i {
			t.Fatalf("(chain, n) order position %d holds message %d (%q)", i, m.seq, m.text)
		}
	}
}

func advSend(t testing.TB, s *Session, text string, seq, round int) advSent {
	t.Helper()
	ct := send(t, s, text)
	h, _, _ := advHeader(t, ct)
	return advSent{ct: ct, text: text, chain: h.chain, n: h.n, seq: seq, round: round}
}

// advShuffleOneWay: a one-way run across chain rollovers, KEM steps on
// schedule and a forced KEM step, delivered in a uniformly random order.
func advShuffleOneWay(t *testing.T, seed uint64) {
	p := newPairWith(t, mrand.NewChaCha8([32]byte{byte(seed), 'o'}), false)
	advSteady(t, p)
	rng := mrand.New(mrand.NewPCG(seed, 11))
	var msgs []advSent
	for i := range 3*MaxChainMessages + 27 {
		if i == 2*MaxChainMessages+10 {
			p.a.ForceKEMStep()
		}
		msgs = append(msgs, advSend(t, p.a, fmt.Sprintf("one-way %d", i), i, 0))
	}
	chains := map[uint32]bool{}
	for _, m := range msgs {
		chains[m.chain] = true
	}
	if len(chains) < 5 {
		t.Fatalf("only %d chains", len(chains))
	}
	var got []advSent
	kem := map[uint32]bool{}
	for _, i := range rng.Perm(len(msgs)) {
		r := advDeliver(t, p.b, msgs[i])
		if r.KEMStep {
			kem[r.Chain] = true
		}
		got = append(got, msgs[i])
	}
	if len(kem) < 3 {
		t.Fatalf("KEM steps on %d chains, want >= 3", len(kem))
	}
	for _, m := range msgs {
		advReject(t, p.b, m.ct, "replay after shuffle", ErrDuplicate)
	}
	if len(p.b.skipped) != 0 {
		t.Fatalf("%d skipped keys left after every message arrived", len(p.b.skipped))
	}
	advCheckOrder(t, got, len(msgs))
	recvOK(t, p.a, send(t, p.b, "reply"), "reply")
}

// advShufflePingPong: turns in both directions (DH ratchet steps), chain
// rollovers and forced KEM steps, with each message held back by the
// relay for up to one further turn and every delivery batch permuted, so
// that messages of several chains of several ratchet steps arrive
// interleaved and reversed. The hold-back is bounded so that the chains
// stay within the receiver's key window (MaxOwnDHKeys).
func advShufflePingPong(t *testing.T, seed uint64) {
	p := newPairWith(t, mrand.NewChaCha8([32]byte{byte(seed), 'p'}), false)
	advSteady(t, p) // the silent start is TestT03ShuffleBeforeFirstReply
	rng := mrand.New(mrand.NewPCG(seed, 22))
	parties := [2]*Session{p.a, p.b}
	var pending [2][]advSent // pending[i]: messages to party i
	var got [2][]advSent
	sent := [2]int{}
	bReceived := true
	deliver := func(to int, round int, all bool) {
		var now, later []advSent
		for _, m := range pending[to] {
			if all || m.round < round || rng.IntN(2) == 0 {
				now = append(now, m)
			} else {
				later = append(later, m)
			}
		}
		rng.Shuffle(len(now), func(i, j int) { now[i], now[j] = now[j], now[i] })
		for _, m := range now {
			advDeliver(t, parties[to], m)
			got[to] = append(got[to], m)
			if to == 1 {
				bReceived = true
			}
		}
		pending[to] = later
	}
	from := 0
	for round := range 40 {
		if rng.IntN(5) == 0 {
			from = 1 - from // sometimes the same side speaks twice
		}
		if from == 1 && !bReceived {
			from = 0
		}
		s := parties[from]
		if rng.IntN(6) == 0 {
			s.ForceKEMStep()
		}
		k := 1 + rng.IntN(6)
		if rng.IntN(7) == 0 {
			k = MaxChainMessages + 1 + rng.IntN(MaxChainMessages) // one or two rollovers
		}
		for range k {
			m := advSend(t, s, fmt.Sprintf("%d:%d", from, sent[from]), sent[from], round)
			sent[from]++
			pending[1-from] = append(pending[1-from], m)
		}
		deliver(1-from, round, false)
		deliver(from, round, false)
		from = 1 - from
	}
	deliver(0, 1<<30, true)
	deliver(1, 1<<30, true)
	for i := range 2 {
		advCheckOrder(t, got[1-i], sent[i])
	}
	recvOK(t, p.b, send(t, p.a, "end"), "end")
	recvOK(t, p.a, send(t, p.b, "end"), "end")
}

func TestT04Drop(t *testing.T) {
	p := newPair(t)
	advSteady(t, p)
	var ms [][]byte
	for i := range 10 {
		ms = append(ms, send(t, p.a, fmt.Sprint("d", i)))
	}
	// Drop d2 and d5 (and d8, d9, the end of the chain).
	for _, i := range []int{0, 1, 3, 4, 6, 7} {
		r := recvOK(t, p.b, ms[i], fmt.Sprint("d", i))
		want := 0
		if i == 3 || i == 6 {
			want = 1
		}
		if r.Skipped != want {
			t.Fatalf("d%d: Skipped = %d, want %d", i, r.Skipped, want)
		}
	}
	// The sender moves to a new chain: its first message closes the old
	// one at pn = 10 and reports the two lost tail messages as a gap.
	recvOK(t, p.a, send(t, p.b, "turn"), "turn")
	next := send(t, p.a, "next chain")
	if r := recvOK(t, p.b, next, "next chain"); r.Skipped != 2 || !r.NewChain {
		t.Fatalf("next chain: Skipped = %d NewChain = %v, want 2, true", r.Skipped, r.NewChain)
	}
	// A dropped message that is late but within the lifetime decrypts.
	recvOK(t, p.b, ms[8], "d8")

	// Past SkippedKeyLifetime the keys expire: the message that expires
	// them is any later one; afterwards the late messages are an explicit
	// permanent gap, and their keys are gone from the state.
	chain := mustChain(t, ms[0])
	if n := advSkipCount(p.b, chain); n != 3 {
		t.Fatalf("skipped keys on chain %d: %d, want 3", chain, n)
	}
	sk2, ok := p.b.skipped[skipID{chain, mustN(t, ms[2])}]
	if !ok {
		t.Fatal("no skipped key for d2")
	}
	mk2 := sk2.mk
	p.clk.advance(SkippedKeyLifetime + 1e9)
	// Before any commit the key is still stored, but already refused.
	advReject(t, p.b, ms[2], "expired d2 before expiry sweep", ErrExpired)
	recvOK(t, p.b, send(t, p.a, "after a week"), "after a week")
	if n := advSkipCount(p.b, chain); n != 0 {
		t.Fatalf("%d skipped keys left after expiry", n)
	}
	if bytes.Contains(p.b.Marshal(), mk2[:]) {
		t.Fatal("expired skipped key still in serialised state")
	}
	for _, i := range []int{2, 5, 9} {
		advReject(t, p.b, ms[i], fmt.Sprint("late d", i), ErrExpired)
	}
	// Delivered messages remain duplicates, not expired.
	advReject(t, p.b, ms[3], "d3 again", ErrDuplicate)

	t.Run("eviction", func(t *testing.T) { advEviction(t) })
}

// advEviction fills the skipped-key store past MaxSkippedKeys with a
// one-way run whose receiver only gets the last message of each chain:
// the oldest keys are evicted and their messages are then ErrExpired, not
// ErrDuplicate (nor an unknown chain); keys still stored decrypt, even
// for chains no longer among the receiving chains.
func advEviction(t *testing.T) {
	p := newPair(t)
	advSteady(t, p)
	for p.a.send.n < MaxChainMessages {
		recvOK(t, p.b, send(t, p.a, "fill"), "fill")
	}
	var dropped [][]byte // first message of each chain
	var droppedLast [][]byte
	total := 0
	for total <= MaxSkippedKeys+3*(MaxChainMessages-1) {
		var chain [][]byte
		for i := range MaxChainMessages {
			chain = append(chain, send(t, p.a, fmt.Sprint("e", len(dropped), "/", i)))
		}
		r := recvOK(t, p.b, chain[MaxChainMessages-1], fmt.Sprint("e", len(dropped), "/", MaxChainMessages-1))
		total += r.Skipped
		if r.Skipped != MaxChainMessages-1 {
			t.Fatalf("Skipped = %d, want %d", r.Skipped, MaxChainMessages-1)
		}
		if len(p.b.skipped) > MaxSkippedKeys || len(p.b.recv) > MaxReceiveChains {
			t.Fatalf("bounds broken: %d skipped, %d chains", len(p.b.skipped), len(p.b.recv))
		}
		dropped = append(dropped, chain[0])
		droppedLast = append(droppedLast, chain[MaxChainMessages-2])
	}
	if len(p.b.skipped) != MaxSkippedKeys {
		t.Fatalf("skipped store holds %d, want it full (%d)", len(p.b.skipped), MaxSkippedKeys)
	}
	// The very first chain's keys were evicted.
	advReject(t, p.b, dropped[0], "evicted key (oldest chain)", ErrExpired)
	advReject(t, p.b, droppedLast[0], "evicted key (oldest chain, last)", ErrExpired)
	// The newest chain's keys are stored.
	k := len(dropped) - 1
	recvOK(t, p.b, dropped[k], fmt.Sprint("e", k, "/0"))
	// A chain old enough to have left the receiving chains, whose keys
	// are still stored, still decrypts (the keys are not dead weight).
	old := k - MaxReceiveChains - 2
	if p.b.recv[mustChain(t, dropped[old])] != nil {
		t.Fatalf("chain of message %d still a receiving chain", old)
	}
	if _, ok := p.b.skipped[skipID{mustChain(t, droppedLast[old]), MaxChainMessages - 2}]; !ok {
		t.Fatalf("key of message %d not stored", old)
	}
	recvOK(t, p.b, droppedLast[old], fmt.Sprint("e", old, "/", MaxChainMessages-2))
	advReject(t, p.b, droppedLast[old], "replay of late message of a pruned chain", ErrDuplicate, ErrUnknownChain)
}

func TestT05MaxSkip(t *testing.T) {
	p := newPair(t)
	advSteady(t, p)
	m := send(t, p.a, "open chain") // b holds an open receiving chain
	recvOK(t, p.b, m, "open chain")
	h, _, _ := advHeader(t, m)
	open := h.chain
	if c := p.b.recv[open]; c == nil || c.done || h.flags&flagEstablish == 0 {
		t.Fatal("setup: no open receiving chain, or a message without establishment block")
	}
	unknown := open + 1000 // a chain index b has never seen

	var cases []struct {
		name string
		msg  []byte
	}
	add := func(name string, msg []byte) {
		cases = append(cases, struct {
			name string
			msg  []byte
		}{name, msg})
	}
	for _, n := range []uint32{MaxChainMessages, MaxChainMessages + 1, MaxSkip, MaxSkip + 1, 1 << 31, ^uint32(0)} {
		// On the open chain, with and without an establishment block.
		add(fmt.Sprintf("existing chain n=%d", n), advRewrite(t, m, func(h *header) { h.n = n }))
		add(fmt.Sprintf("existing chain bare n=%d", n), advCraft(header{chain: open, n: n}))
		// On a new chain whose establishment block names keys b does not
		// hold: establishing it would be ErrUnknownChain, so ErrTooFarAhead
		// shows the bound is checked before any establishment (no DH, no
		// KEM decapsulation, no KDF).
		add(fmt.Sprintf("new chain unknown keys n=%d", n), advCraft(header{flags: flagEstablish, chain: unknown, n: n,
			est: establishment{base: unknown - 1, dhRef: unknown - 1}}))
		add(fmt.Sprintf("new chain with KEM ct n=%d", n), advCraft(header{flags: flagEstablish | flagKEMCT, chain: unknown, n: n,
			est: establishment{base: unknown - 1, dhRef: unknown - 1, kemRef: 77, kemCT: make([]byte, keys.KEMCiphertextSize)}}))
		// Without any establishment block.
		add(fmt.Sprintf("new chain bare n=%d", n), advCraft(header{chain: unknown, n: n}))
	}
	for _, pn := range []uint32{MaxChainMessages + 1, MaxSkip + 1, 1 << 31, ^uint32(0)} {
		// pn closes b's open chain: bounded before the establishment's
		// keys are looked up (they are unknown here).
		add(fmt.Sprintf("pn=%d unknown keys", pn), advCraft(header{flags: flagEstablish, chain: unknown, n: 0,
			est: establishment{base: unknown - 1, dhRef: unknown - 1, prevChain: open, pn: pn}}))
		// The same with the real establishment of a's chain (valid keys).
		add(fmt.Sprintf("pn=%d real establishment", pn), advRewrite(t, m, func(h *header) {
			h.chain, h.est.prevChain, h.est.pn = unknown, open, pn
		}))
	}
	for _, c := range cases {
		advReject(t, p.b, c.msg, c.name, ErrTooFarAhead)
	}
	// Controls: the same crafted blocks with an in-range counter are
	// rejected by establishment, so the ErrTooFarAhead above came first.
	advReject(t, p.b, advCraft(header{flags: flagEstablish, chain: unknown, n: MaxChainMessages - 1,
		est: establishment{base: unknown - 1, dhRef: unknown - 1}}), "control n in range", ErrUnknownChain)
	advReject(t, p.b, advCraft(header{flags: flagEstablish, chain: unknown, n: 0,
		est: establishment{base: unknown - 1, dhRef: unknown - 1, prevChain: open, pn: MaxChainMessages}}), "control pn in range", ErrUnknownChain)
	advReject(t, p.b, advCraft(header{chain: unknown, n: 0}), "control bare", ErrUnknownChain)

	// Bounded work: 10,000 rejections, state untouched throughout. (No
	// timing assertion: the ordering argument above shows no key
	// derivation runs.)
	before := p.b.Marshal()
	for i := range 10000 {
		c := cases[i%len(cases)]
		if _, err := p.b.Decrypt(c.msg); !errors.Is(err, ErrTooFarAhead) {
			t.Fatalf("%s (iteration %d): %v", c.name, i, err)
		}
	}
	advRequireState(t, p.b, before, "10,000 far-ahead messages")
	// The session still works, and the open chain continues.
	recvOK(t, p.b, send(t, p.a, "after"), "after")
}

func TestT06ChainFlood(t *testing.T) {
	p := newPair(t)
	advSteady(t, p)
	rng := mrand.New(mrand.NewPCG(6, 6))
	check := func(when string) {
		t.Helper()
		b := p.b
		if len(b.skipped) > MaxSkippedKeys || len(b.recv) > MaxReceiveChains || len(b.recvRoots) > MaxReceiveChains+1 ||
			len(b.tombs) > maxTombstones || len(b.tombOrder) != len(b.tombs) {
			t.Fatalf("%s: bounds broken: %d skipped, %d chains, %d roots, %d tombstones",
				when, len(b.skipped), len(b.recv), len(b.recvRoots), len(b.tombs))
		}
		if len(p.a.ownRoots) > MaxUnackedChains+1 || len(p.a.ownDH) > MaxOwnDHKeys || len(p.a.ownKEM) > MaxOwnKEMKeys {
			t.Fatalf("%s: sender bounds broken", when)
		}
	}
	// Fill a's current chain, so that every batch below begins a chain.
	for p.a.send.n < MaxChainMessages {
		recvOK(t, p.b, send(t, p.a, "fill"), "fill")
	}
	// sendChain sends k messages on a fresh chain (forced: with a KEM step
	// by ForceKEMStep) and checks they share it.
	partial := false
	sendChain := func(k int, force bool, tag int) []advSent {
		t.Helper()
		if force || partial {
			p.a.ForceKEMStep()
		}
		var ms []advSent
		for i := range k {
			ms = append(ms, advSend(t, p.a, fmt.Sprint("f", tag, "/", i), i, 0))
		}
		if ms[0].n != 0 || ms[k-1].chain != ms[0].chain {
			t.Fatalf("batch %d is not one fresh chain", tag)
		}
		if (force || partial) && !advHasKEM(t, ms[0].ct) {
			t.Fatal("forced chain without KEM step")
		}
		partial = k < MaxChainMessages
		return ms
	}
	var late []advSent // dropped messages, oldest first
	maxSkipped := 0
	for chains := 0; chains < 120; chains++ {
		var deliver advSent
		switch rng.IntN(3) {
		case 0: // a full chain; deliver only its last message (skips 49)
			ms := sendChain(MaxChainMessages, false, chains)
			deliver = ms[MaxChainMessages-1]
			late = append(late, ms[0], ms[MaxChainMessages-2])
		case 1: // a sender-initiated KEM chain of random length
			k := 1 + rng.IntN(MaxChainMessages)
			ms := sendChain(k, true, chains)
			deliver = ms[k-1]
			if k > 1 {
				late = append(late, ms[0])
			}
		case 2: // the first message of one chain, then the last of the
			// next: one delivery skips 49 of the closed chain and 49 of
			// the new one
			ms := sendChain(MaxChainMessages, false, chains)
			chains++
			next := sendChain(MaxChainMessages, false, chains)
			advDeliver(t, p.b, ms[0])
			check("first of chain")
			deliver = next[MaxChainMessages-1]
			late = append(late, ms[1], next[0])
		}
		r := advDeliver(t, p.b, deliver)
		maxSkipped = max(maxSkipped, r.Skipped)
		check(fmt.Sprint("chain ", chains))
	}
	if maxSkipped != 2*(MaxChainMessages-1) {
		t.Fatalf("largest single skip %d, want %d", maxSkipped, 2*(MaxChainMessages-1))
	}
	if len(p.b.tombs) == 0 {
		t.Fatal("the flood never reached MaxSkippedKeys")
	}
	// Late messages: a stored key decrypts (also for chains no longer
	// among the receiving chains), an evicted one is an explicit gap.
	var stored, evicted, forgotten int
	for _, m := range late {
		id := skipID{m.chain, m.n}
		_, isStored := p.b.skipped[id]
		_, isTomb := p.b.tombs[id]
		switch {
		case isStored:
			if p.b.recv[m.chain] == nil {
				stored++
			}
			advDeliver(t, p.b, m)
			// The chain is pruned: the receiver keeps no record of its
			// delivered numbers, so a replay is an unknown chain.
			advReject(t, p.b, m.ct, "replay of late message", ErrDuplicate, ErrUnknownChain)
		case isTomb:
			evicted++
			advReject(t, p.b, m.ct, "late message with evicted key", ErrExpired)
		default:
			// Its tombstone was dropped too (maxTombstones): the chain is
			// below the floor and can no longer be established.
			forgotten++
			advReject(t, p.b, m.ct, "late message, tombstone dropped", ErrUnknownChain, ErrExpired)
		}
		check("late delivery")
	}
	if stored == 0 || evicted == 0 {
		t.Fatalf("late messages: %d stored on pruned chains, %d evicted, %d forgotten; want some of the first two", stored, evicted, forgotten)
	}
	t.Logf("late messages: %d stored on pruned chains, %d evicted, %d forgotten", stored, evicted, forgotten)
	// The session still works, both ways, with KEM steps.
	recvOK(t, p.a, send(t, p.b, "still here"), "still here")
	recvOK(t, p.b, send(t, p.a, "ack"), "ack")
	p.a.ForceKEMStep()
	r := recvOK(t, p.b, send(t, p.a, "and here"), "and here")
	if !r.KEMStep {
		t.Fatal("no KEM step after flood")
	}
	recvOK(t, p.a, send(t, p.b, "bye"), "bye")
	check("after")
}

func advHasKEM(t testing.TB, msg []byte) bool {
	t.Helper()
	h, _, _ := advHeader(t, msg)
	return h.flags&flagKEMCT != 0
}

func TestT07KEMStrip(t *testing.T) {
	p := newPair(t)
	advSteady(t, p)
	p.a.ForceKEMStep()
	m := send(t, p.a, "kem step")
	h, _, _ := advHeader(t, m)
	if h.flags&flagKEMCT == 0 || h.est.kemCT == nil {
		t.Fatal("forced chain carries no KEM ciphertext")
	}
	kemPub := p.b.newestOwnKEM().priv.Public()
	otherCT, _, err := kemPub.Encapsulate(mrand.NewChaCha8([32]byte{7}))
	must(t, err)
	strip := func(msg []byte) []byte {
		return advRewrite(t, msg, func(h *header) {
			h.flags &^= flagKEMCT
			h.est.hasKEM, h.est.kemRef, h.est.kemCT = false, 0, nil
		})
	}
	stripped := strip(m)
	if len(stripped) != len(m)-4-keys.KEMCiphertextSize {
		t.Fatalf("stripped message is %d bytes, want %d", len(stripped), len(m)-4-keys.KEMCiphertextSize)
	}
	attacks := map[string][]byte{
		"strip KEM ciphertext":                                 stripped,
		"swap KEM ciphertext (valid encapsulation to b's key)": advRewrite(t, m, func(h *header) { h.est.kemCT = otherCT }),
		"swap KEM ciphertext (random bytes)": advRewrite(t, m, func(h *header) {
			h.est.kemCT = bytes.Repeat([]byte{0x5a}, keys.KEMCiphertextSize)
		}),
		"flip one bit of KEM ciphertext": advRewrite(t, m, func(h *header) { h.est.kemCT[100] ^= 1 }),
		"strip KEM ciphertext and advertisement": advRewrite(t, m, func(h *header) {
			h.flags &^= flagKEMCT | flagKEMPub
			h.est.hasKEM, h.est.kemCT, h.est.hasKEMPub, h.est.kemPub = false, nil, false, nil
		}),
		"KEM ciphertext flag without ciphertext": append(append([]byte(nil), stripped[:1]...), append([]byte{stripped[1] | flagKEMCT}, stripped[2:]...)...),
	}
	if h.flags&flagKEMPub != 0 {
		attacks["strip KEM advertisement"] = advRewrite(t, m, func(h *header) {
			h.flags &^= flagKEMPub
			h.est.hasKEMPub, h.est.kemPub = false, nil
		})
	}
	for name, msg := range attacks {
		advReject(t, p.b, msg, name, ErrDecrypt, ErrMalformed)
	}
	advReject(t, p.b, advRewrite(t, m, func(h *header) { h.est.kemRef += 1000 }), "KEM ref to unknown key", ErrUnknownChain, ErrDecrypt)

	// The relay strips every message of the chain; none is accepted, and
	// every one still carries the KEM step while b has not acknowledged.
	var held [][]byte
	held = append(held, m)
	for i := range MaxChainMessages + 10 { // past a rollover
		mi := send(t, p.a, fmt.Sprint("kem ", i))
		hi, _, _ := advHeader(t, mi)
		if hi.flags&flagKEMCT == 0 {
			t.Fatalf("message %d (chain %d n %d) of an unacknowledged KEM chain lacks the KEM ciphertext", i, hi.chain, hi.n)
		}
		if hi.chain == h.chain && !bytes.Equal(hi.est.kemCT, h.est.kemCT) {
			t.Fatalf("message %d of chain %d carries a different KEM ciphertext", i, hi.chain)
		}
		advReject(t, p.b, strip(mi), fmt.Sprint("stripped message ", i), ErrDecrypt)
		held = append(held, mi)
	}
	if c := mustChain(t, held[len(held)-1]); c == h.chain {
		t.Fatal("the run did not roll over to a new chain")
	}
	// The genuine messages still establish the chains, with their KEM
	// steps.
	kemChains := map[uint32]bool{}
	for i, mi := range held {
		r, err := p.b.Decrypt(mi)
		if err != nil {
			t.Fatalf("genuine message %d: %v", i, err)
		}
		if r.NewChain && !r.KEMStep {
			t.Fatalf("chain %d established without KEM step", r.Chain)
		}
		if r.NewChain {
			kemChains[r.Chain] = true
		}
	}
	if len(kemChains) < 2 {
		t.Fatalf("%d KEM chains, want 2", len(kemChains))
	}
	recvOK(t, p.a, send(t, p.b, "ok"), "ok")
}

func TestT13Rollback(t *testing.T) {
	p := newPairWith(t, mrand.NewChaCha8([32]byte{13}), false)
	type use struct{ chain, n uint32 }
	used := map[use]string{}
	bodies := map[string]bool{}
	aChains := map[uint32]bool{}
	var aSent [][]byte
	record := func(msg []byte, what string) {
		t.Helper()
		h, ct, _ := advHeader(t, msg)
		u := use{h.chain, h.n}
		if prev, ok := used[u]; ok {
			t.Fatalf("%s reuses (chain %d, n %d) of %s: (key, nonce) reuse", what, h.chain, h.n, prev)
		}
		used[u] = what
		if bodies[string(ct)] {
			t.Fatalf("%s repeats an earlier ciphertext body", what)
		}
		bodies[string(ct)] = true
		aChains[h.chain] = true
		aSent = append(aSent, msg)
	}
	aSend := func(s *Session, text string) []byte {
		t.Helper()
		m := send(t, s, text)
		record(m, text)
		return m
	}
	for i := range 3 {
		recvOK(t, p.b, aSend(p.a, fmt.Sprint("pre ", i)), fmt.Sprint("pre ", i))
		recvOK(t, p.a, send(t, p.b, fmt.Sprint("b pre ", i)), fmt.Sprint("b pre ", i))
	}
	snap := p.a.Marshal()
	snapGen := p.a.Generation()
	cfg := p.a.cfg

	// The conversation continues past the snapshot: a's chain continues,
	// and a new round trip moves both sides on.
	for i := range 4 {
		recvOK(t, p.b, aSend(p.a, fmt.Sprint("post ", i)), fmt.Sprint("post ", i))
	}
	recvOK(t, p.a, send(t, p.b, "b post"), "b post")
	recvOK(t, p.b, aSend(p.a, "post ack"), "post ack")
	if p.a.Generation() <= snapGen {
		t.Fatal("generation did not advance")
	}

	// Detected rollback.
	if _, err := Unmarshal(cfg, snap, p.a.Generation()); !errors.Is(err, ErrRollback) {
		t.Fatalf("Unmarshal(old, current generation) = %v, want ErrRollback", err)
	}
	if _, err := Unmarshal(cfg, snap, snapGen+1); !errors.Is(err, ErrRollback) {
		t.Fatalf("Unmarshal(old, generation+1) = %v, want ErrRollback", err)
	}
	if _, err := Unmarshal(cfg, snap, snapGen); err != nil {
		t.Fatalf("Unmarshal(old, its own generation) = %v", err)
	}

	// Undetected rollback (minGeneration 0).
	r, err := Unmarshal(cfg, snap, 0)
	must(t, err)
	if r.peerKEM == nil {
		t.Fatal("snapshot does not know the peer's KEM key; test setup")
	}
	// (1) The next message begins a fresh chain, with a KEM step, at an
	// index no earlier chain used.
	m := send(t, r, "restored 0")
	h, _, _ := advHeader(t, m)
	if aChains[h.chain] {
		t.Fatalf("restored session reuses chain index %d", h.chain)
	}
	if h.flags&flagEstablish == 0 || h.flags&flagKEMCT == 0 || h.n != 0 {
		t.Fatalf("restored session's first message: flags %b n %d, want a new chain with a KEM step", h.flags, h.n)
	}
	record(m, "restored 0")
	// (2) No (chain, n) pair repeats (record checks), across a rollover.
	restored := [][]byte{m}
	for i := 1; i < MaxChainMessages+5; i++ {
		restored = append(restored, aSend(r, fmt.Sprint("restored ", i)))
	}
	// (3) The peer accepts the restored side's new chains.
	for i, mi := range restored {
		got := recvOK(t, p.b, mi, fmt.Sprint("restored ", i))
		if i == 0 && (!got.NewChain || !got.KEMStep) {
			t.Fatalf("peer: first restored message NewChain %v KEMStep %v", got.NewChain, got.KEMStep)
		}
	}
	// Messages the lost state had sent are still duplicates at the peer.
	for i, mi := range aSent[:len(aSent)-len(restored)] {
		advReject(t, p.b, mi, fmt.Sprint("old message ", i), ErrDuplicate, ErrUnknownChain)
	}

	// A second restore of the same snapshot (the rollback happens twice)
	// must not collide with the first restore's chains either.
	r2, err := Unmarshal(cfg, snap, 0)
	must(t, err)
	m2 := send(t, r2, "restored again")
	if h2, _, _ := advHeader(t, m2); aChains[h2.chain] {
		t.Fatalf("second restore reuses chain index %d", h2.chain)
	}
	record(m2, "restored again")

	// The peer's replies to the restored side. b's new chains extend
	// b's newest acknowledged chain, which the lost state of a had
	// established after the snapshot; the restored a does not hold that
	// root. Either outcome is recorded: the reply decrypts, or it is
	// rejected with a typed error leaving the restored state intact (a
	// liveness limitation of undetected rollback, not a key reuse).
	reply := send(t, p.b, "to restored")
	before := r.Marshal()
	if got, err := r.Decrypt(reply); err != nil {
		if !advIsOneOf(err, advTypedErrors) {
			t.Fatalf("reply to restored session: untyped error %v", err)
		}
		advRequireState(t, r, before, "rejected reply to restored session")
		t.Logf("LIMITATION: after an undetected rollback of a, b's replies do not decrypt at the restored a (%v): b's base chain %d is unknown to it", err, p.b.base)
	} else if string(got.Plaintext) != "to restored" {
		t.Fatalf("reply decrypted to %q", got.Plaintext)
	}
}

// TestInvariantDeletedKeysAbsent captures keys from inside the sessions
// before they are used or deleted, and requires them absent from the
// serialised state afterwards.
func TestInvariantDeletedKeysAbsent(t *testing.T) {
	p := newPair(t)
	absent := func(s *Session, key []byte, what string) {
		t.Helper()
		if bytes.Contains(s.Marshal(), key) {
			t.Fatalf("%s still in serialised state", what)
		}
	}
	present := func(s *Session, key []byte, what string) {
		t.Helper()
		if !bytes.Contains(s.Marshal(), key) {
			t.Fatalf("%s not found in serialised state (test error: the search would not see it)", what)
		}
	}
	advSteady(t, p)

	// Sending chain: each chain key and message key, once used.
	for i := range 5 {
		ck := p.a.send.ck
		var mk [keySize]byte
		tmp := ck
		kdfCK(&tmp, &mk)
		present(p.a, ck[:], "current sending chain key")
		m := send(t, p.a, fmt.Sprint("s", i))
		absent(p.a, ck[:], fmt.Sprintf("sending chain key before message %d", i))
		absent(p.a, mk[:], fmt.Sprintf("message key of sent message %d", i))
		recvOK(t, p.b, m, fmt.Sprint("s", i))
	}

	// Receiving chain: each chain key once advanced, and the message key.
	chain := p.a.send.index
	for i := range 3 {
		ck := p.b.recv[chain].ck
		var mk [keySize]byte
		tmp := ck
		kdfCK(&tmp, &mk)
		present(p.b, ck[:], "receiving chain key")
		recvOK(t, p.b, send(t, p.a, fmt.Sprint("r", i)), fmt.Sprint("r", i))
		absent(p.b, ck[:], "receiving chain key after use")
		absent(p.b, mk[:], "message key of received message")
	}

	// Skipped keys: stored while the message is missing, deleted when it
	// arrives.
	m1, m2 := send(t, p.a, "late"), send(t, p.a, "early")
	recvOK(t, p.b, m2, "early")
	id := skipID{chain, mustN(t, m1)}
	sk, ok := p.b.skipped[id]
	if !ok {
		t.Fatal("no skipped key")
	}
	present(p.b, sk.mk[:], "skipped key")
	recvOK(t, p.b, m1, "late")
	absent(p.b, sk.mk[:], "skipped key after its message arrived")

	// A closed chain's chain key is deleted when the sender moves on.
	dropped := send(t, p.a, "dropped") // n stays open on b
	ckOpen := p.b.recv[chain].ck
	recvOK(t, p.a, send(t, p.b, "turn"), "turn")
	recvOK(t, p.b, send(t, p.a, "new chain"), "new chain")
	if !p.b.recv[chain].done {
		t.Fatal("old chain not closed")
	}
	absent(p.b, ckOpen[:], "chain key of a closed chain")
	// Closing derived the dropped message's key and advanced the chain key
	// once more; that final chain key is deleted too.
	ckFinal := ckOpen
	var mkDropped [keySize]byte
	kdfCK(&ckFinal, &mkDropped)
	absent(p.b, ckFinal[:], "final chain key of a closed chain")
	skDropped := p.b.skipped[skipID{chain, mustN(t, dropped)}].mk
	if skDropped != mkDropped {
		t.Fatal("skipped key of the dropped message is not the one derived from the open chain key")
	}
	present(p.b, skDropped[:], "skipped key of closed chain")

	// Expired skipped keys are deleted by the next commit.
	p.clk.advance(SkippedKeyLifetime + 1e9)
	recvOK(t, p.b, send(t, p.a, "later"), "later")
	absent(p.b, skDropped[:], "expired skipped key")

	// Own ratchet private keys and roots past their bounds.
	var dhPrivs, kemSeeds, roots [][]byte
	for i := range 2 * MaxOwnDHKeys {
		for _, k := range p.a.ownDH {
			dhPrivs = append(dhPrivs, k.priv.Bytes())
		}
		for _, k := range p.a.ownKEM {
			kemSeeds = append(kemSeeds, k.priv.Seed())
		}
		for _, r := range p.b.recvRoots {
			roots = append(roots, append([]byte(nil), r...))
		}
		recvOK(t, p.b, send(t, p.a, fmt.Sprint("x", i)), fmt.Sprint("x", i))
		p.b.ForceKEMStep()
		recvOK(t, p.a, send(t, p.b, fmt.Sprint("y", i)), fmt.Sprint("y", i))
	}
	state := p.a.Marshal()
	for i, k := range dhPrivs {
		held := false
		for _, o := range p.a.ownDH {
			held = held || bytes.Equal(o.priv.Bytes(), k)
		}
		if !held && bytes.Contains(state, k) {
			t.Fatalf("deleted ratchet DH private key %d in state", i)
		}
	}
	for i, k := range kemSeeds {
		held := false
		for _, o := range p.a.ownKEM {
			held = held || bytes.Equal(o.priv.Seed(), k)
		}
		if !held && bytes.Contains(state, k) {
			t.Fatalf("deleted ratchet KEM seed %d in state", i)
		}
	}
	bState := p.b.Marshal()
	for i, k := range roots {
		held := false
		for _, o := range p.b.recvRoots {
			held = held || bytes.Equal(o, k)
		}
		if !held && bytes.Contains(bState, k) {
			t.Fatalf("deleted receiving root %d in state", i)
		}
	}
	if len(p.a.ownDH) == 2*MaxOwnDHKeys {
		t.Fatal("test did not exercise pruning")
	}

	// Evicted skipped keys.
	q := newPair(t)
	advSteady(t, q)
	stored := map[skipID][keySize]byte{}
	for len(q.b.tombs) == 0 {
		var last []byte
		for range MaxChainMessages {
			last = send(t, q.a, "e")
		}
		recvOK(t, q.b, last, "e")
		for id, k := range q.b.skipped {
			stored[id] = k.mk
		}
	}
	st := q.b.Marshal()
	evicted := 0
	for id := range q.b.tombs {
		if _, ok := q.b.skipped[id]; ok {
			t.Fatal("tombstoned key still stored")
		}
		k, ok := stored[id]
		if !ok {
			t.Fatalf("tombstone %v for a key never stored", id)
		}
		if bytes.Contains(st, k[:]) {
			t.Fatalf("evicted skipped key %v still in serialised state", id)
		}
		evicted++
	}
	for id, k := range q.b.skipped {
		if !bytes.Contains(st, k.mk[:]) {
			t.Fatalf("stored skipped key %v not found in serialised state (the search would not see it)", id)
		}
	}
	if evicted == 0 {
		t.Fatal("nothing evicted")
	}
}

func mustN(t testing.TB, msg []byte) uint32 {
	t.Helper()
	h, _, _ := advHeader(t, msg)
	return h.n
}
