package ratchet

// Fuzz targets for the ratchet (STYLE items 3, 11, 12): the message and
// state decoders by exact round trip, Decrypt on a live session, and a
// stateful interaction target that drives two parties over a hostile
// network while checking the invariants of
// shared/briefs/adversarial-cases.md after every step.
//
// Every identifier here starts with "fz" so that it cannot collide with the
// helpers of other test files of the package.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/internal/prim"
)

// fzRand returns a deterministic io.Reader for key material, so that a
// failing input reproduces exactly.
func fzRand(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	binary.BigEndian.PutUint64(s[:8], seed)
	copy(s[8:], "moat ratchet fuzz seed ........")
	return rand.NewChaCha8(s)
}

// fzConversation is a recorded deterministic conversation, used to seed
// the decoder targets with real messages and states.
type fzConversation struct {
	msgs   [][]byte // every message sent, in order
	states [][]byte // serialised states at several points
}

// fzRecord runs a conversation that exercises every header variant: the
// preamble, establishment blocks with and without a KEM ciphertext and KEM
// key, long chains, skipped keys, tombstones and a restore.
func fzRecord(t testing.TB, seed uint64, attributable bool) *fzConversation {
	t.Helper()
	p := newPairWith(t, fzRand(seed), attributable)
	c := &fzConversation{}
	snap := func() { c.states = append(c.states, p.a.Marshal(), p.b.Marshal()) }
	sendTo := func(from, to *Session, deliver bool, text string) {
		ct := send(t, from, text)
		c.msgs = append(c.msgs, ct)
		if deliver {
			recvOK(t, to, ct, text)
		}
	}
	snap() // fresh
	sendTo(p.a, p.b, true, "first, with preamble")
	sendTo(p.b, p.a, true, "reply, with a KEM key")
	sendTo(p.a, p.b, true, "KEM step")
	snap()
	for i := range 5 {
		sendTo(p.a, p.b, i%2 == 0, fmt.Sprintf("gap %d", i)) // skipped keys
	}
	sendTo(p.b, p.a, false, "lost")
	sendTo(p.b, p.a, true, "kept")
	snap()
	p.a.ForceKEMStep()
	sendTo(p.a, p.b, true, "forced")
	for i := range MaxChainMessages + 2 {
		sendTo(p.b, p.a, i%7 != 3, fmt.Sprintf("long %d", i))
	}
	snap()
	p.clk.advance(SkippedKeyLifetime + time.Hour) // the skipped keys expire
	sendTo(p.a, p.b, true, "a week later")
	sendTo(p.b, p.a, true, "tombstones")
	snap()
	r, err := Unmarshal(p.a.cfg, p.a.Marshal(), p.a.Generation())
	must(t, err)
	p.a = r
	sendTo(p.a, p.b, true, "after restore")
	snap()
	return c
}

// FuzzParseMessage checks that parseMessage never panics, that what it
// accepts re-encodes to exactly the header bytes it consumed
// (parse(x) ok ⇒ marshal(parse(x)) == x), and that the parts it returns
// tile the input within the size bounds.
func FuzzParseMessage(f *testing.F) {
	plain, attributed := fzRecord(f, 1, false), fzRecord(f, 2, true)
	for _, c := range []*fzConversation{plain, attributed} {
		for _, m := range c.msgs {
			f.Add(m)
		}
	}
	f.Add([]byte{})
	f.Add([]byte{messageType, flagEstablish | flagKEMPub, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, msg []byte) {
		var h header
		hdr, ct, sig, err := parseMessage(msg, &h)
		pre, perr := PeekPreamble(msg)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("parseMessage: unexpected error %v", err)
			}
			if perr == nil {
				t.Fatal("PeekPreamble accepted a message parseMessage rejects")
			}
			return
		}
		if len(msg) > MaxMessageSize {
			t.Fatalf("accepted %d bytes, over MaxMessageSize", len(msg))
		}
		if len(hdr)+len(ct)+len(sig) != len(msg) || !bytes.Equal(hdr, msg[:len(hdr)]) ||
			!bytes.Equal(ct, msg[len(hdr):len(hdr)+len(ct)]) || !bytes.Equal(sig, msg[len(hdr)+len(ct):]) {
			t.Fatal("header, ciphertext and signature do not tile the message")
		}
		if n := headerLen(&h); n != len(hdr) {
			t.Fatalf("headerLen = %d, parsed header is %d bytes", n, len(hdr))
		}
		enc := appendHeader(make([]byte, 0, headerLen(&h)), &h)
		if !bytes.Equal(enc, hdr) {
			t.Fatalf("re-encoded header differs: %s", fzDiff(enc, hdr))
		}
		if len(ct) < tagSize || len(ct) > MaxPlaintextSize+tagSize {
			t.Fatalf("ciphertext of %d bytes accepted", len(ct))
		}
		if (h.flags&flagAttributed != 0) != (sig != nil) || (sig != nil && len(sig) != signatureSize) {
			t.Fatalf("signature of %d bytes with flags %#x", len(sig), h.flags)
		}
		if h.chain == 0 || h.flags&^flagsKnown != 0 {
			t.Fatalf("accepted chain %d flags %#x", h.chain, h.flags)
		}
		if h.flags&flagEstablish != 0 && (h.est.base >= h.chain || h.est.prevChain >= h.chain) {
			t.Fatal("accepted an establishment that does not extend an older chain")
		}
		if h.flags&flagPreamble != 0 {
			if perr != nil || !bytes.Equal(pre, h.preamble) || len(pre) == 0 || len(pre) > MaxPreambleSize {
				t.Fatalf("PeekPreamble = %x, %v; header preamble %x", pre, perr, h.preamble)
			}
		} else if perr == nil {
			t.Fatal("PeekPreamble returned a preamble the header lacks")
		}
	})
}

// fzDiff describes where got first differs from want.
func fzDiff(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	return fmt.Sprintf("%d and %d bytes, first difference at offset %d: got %x…, want %x…",
		len(got), len(want), i, got[i:min(len(got), i+16)], want[i:min(len(want), i+16)])
}

// fzStateCfg is the Config the state target restores with.
func fzStateCfg(seed uint64) Config {
	clk := newClock()
	return Config{Rand: fzRand(seed), Now: clk.now}
}

// FuzzUnmarshalState checks that Unmarshal never panics, that any state it
// accepts re-encodes byte for byte (Marshal(Unmarshal(x)) == x), that the
// bounds hold on what it accepts, and that a restored session can be used
// without panicking.
func FuzzUnmarshalState(f *testing.F) {
	plain, attributed := fzRecord(f, 1, false), fzRecord(f, 2, true)
	for _, c := range []*fzConversation{plain, attributed} {
		for _, s := range c.states {
			f.Add(s)
		}
	}
	probe := plain.msgs[len(plain.msgs)-1]
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Unmarshal(fzStateCfg(3), data, 0)
		if errors.Is(err, ErrInvalidParams) {
			// An attributable state needs its signing key; the encoding
			// itself must still round-trip.
			ps, perr := parseState(data)
			if perr != nil || !ps.attributable {
				t.Fatalf("Unmarshal: %v, but parseState: %v (attributable %v)", err, perr, perr == nil && ps.attributable)
			}
			s, err = ps, nil
		}
		if err != nil {
			if !errors.Is(err, ErrBadState) {
				t.Fatalf("Unmarshal: unexpected error %v", err)
			}
			return
		}
		if got := s.Marshal(); !bytes.Equal(got, data) {
			t.Fatalf("Marshal(Unmarshal(x)) != x: %s", fzDiff(got, data))
		}
		if err := fzCheckBounds(s); err != nil {
			t.Fatal(err)
		}
		if s.attributable {
			return
		}
		// A restored session must be usable, or fail cleanly.
		// Its first message begins a fresh chain past every index it used,
		// so that no (chain, n) of the lost state is reused (T13).
		before, next := s.Marshal(), s.nextChain
		ct, err := s.Encrypt([]byte("probe"))
		if err != nil {
			if !bytes.Equal(s.Marshal(), before) {
				t.Fatalf("failed Encrypt changed the state: %v", err)
			}
		} else {
			var h header
			if _, _, _, err := parseMessage(ct, &h); err != nil {
				t.Fatalf("own message does not parse: %v", err)
			}
			if h.chain <= next || h.n != 0 || h.flags&flagEstablish == 0 {
				t.Fatalf("restored session sent chain %d n %d (flags %#x); its next chain was %d", h.chain, h.n, h.flags, next)
			}
		}
		if err := fzCheckBounds(s); err != nil {
			t.Fatalf("after Encrypt: %v", err)
		}
		before = s.Marshal()
		if _, err := s.Decrypt(probe); err != nil && !bytes.Equal(s.Marshal(), before) {
			t.Fatalf("failed Decrypt changed the state: %v", err)
		}
		if err := fzCheckBounds(s); err != nil {
			t.Fatalf("after Decrypt: %v", err)
		}
	})
}

// fzDecryptFixture is a receiving session with messages pending for it.
type fzDecryptFixture struct {
	cfg     Config
	state   []byte
	pending map[[2]uint32]fzPending // by (chain, n)

	mu   sync.Mutex
	sess *Session // restored from state; reused while inputs fail
}

type fzPending struct{ ct, pt []byte }

// fzDecryptFixtures builds four receivers (b and a, plain and attributable),
// each with undelivered messages of several chains: the current chain, a
// new chain with a KEM step and KEM key, and skipped keys of an older one.
func fzDecryptFixtures(tb testing.TB) ([]*fzDecryptFixture, [][]byte) {
	var fixtures []*fzDecryptFixture
	var seeds [][]byte
	for i, attributable := range []bool{false, true} {
		p := newPairWith(tb, fzRand(uint64(10+i)), attributable)
		recvOK(tb, p.b, send(tb, p.a, "hello"), "hello")
		recvOK(tb, p.a, send(tb, p.b, "hi"), "hi")
		recvOK(tb, p.b, send(tb, p.a, "kem"), "kem")
		fb := &fzDecryptFixture{cfg: p.b.cfg, pending: map[[2]uint32]fzPending{}}
		fa := &fzDecryptFixture{cfg: p.a.cfg, pending: map[[2]uint32]fzPending{}}
		pend := func(fx *fzDecryptFixture, from, to *Session, deliver bool, text string) {
			ct := send(tb, from, text)
			seeds = append(seeds, ct)
			if deliver {
				recvOK(tb, to, ct, text)
				return
			}
			var h header
			if _, _, _, err := parseMessage(ct, &h); err != nil {
				tb.Fatal(err)
			}
			fx.pending[[2]uint32{h.chain, h.n}] = fzPending{ct: ct, pt: []byte(text)}
		}
		for j := range 4 {
			pend(fb, p.a, p.b, j%2 == 1, fmt.Sprintf("a->b %d", j))
			pend(fa, p.b, p.a, j%2 == 1, fmt.Sprintf("b->a %d", j))
		}
		p.a.ForceKEMStep()
		p.b.ForceKEMStep()
		for j := range 3 {
			pend(fb, p.a, p.b, false, fmt.Sprintf("a->b forced %d", j))
			pend(fa, p.b, p.a, false, fmt.Sprintf("b->a forced %d", j))
		}
		fb.state, fa.state = p.b.Marshal(), p.a.Marshal()
		fixtures = append(fixtures, fb, fa)
	}
	return fixtures, seeds
}

// FuzzDecrypt feeds arbitrary bytes, and mutations of real messages, to a
// live session. Decrypt must never panic; a failure must leave Marshal()
// byte-identical; success is allowed only for a genuine pending message,
// unmodified, on its first delivery, with its original plaintext.
func FuzzDecrypt(f *testing.F) {
	fixtures, seeds := fzDecryptFixtures(f)
	for _, s := range seeds {
		for i := range fixtures {
			f.Add(uint8(i), s)
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, msg []byte) {
		fx := fixtures[int(which)%len(fixtures)]
		fx.mu.Lock()
		defer fx.mu.Unlock()
		if fx.sess == nil {
			s, err := Unmarshal(fx.cfg, fx.state, 0)
			if err != nil {
				t.Fatal(err)
			}
			fx.sess = s
		}
		s := fx.sess
		r, err := s.Decrypt(msg)
		if err != nil {
			if got := s.Marshal(); !bytes.Equal(got, fx.state) {
				fx.sess = nil
				t.Fatalf("failed Decrypt (%v) changed the state", err)
			}
			return
		}
		fx.sess = nil // the state moved on; restore it for the next input
		p, ok := fx.pending[[2]uint32{r.Chain, r.N}]
		if !ok {
			t.Fatalf("decrypted a message that was not pending: chain %d n %d", r.Chain, r.N)
		}
		if !bytes.Equal(msg, p.ct) {
			t.Fatalf("a modified message decrypted (plaintext %q, original %q)", r.Plaintext, p.pt)
		}
		if !bytes.Equal(r.Plaintext, p.pt) {
			t.Fatalf("plaintext %q, sent %q", r.Plaintext, p.pt)
		}
		before := s.Marshal()
		if _, err := s.Decrypt(msg); !errors.Is(err, ErrDuplicate) {
			t.Fatalf("second delivery: %v, want ErrDuplicate", err)
		}
		if !bytes.Equal(s.Marshal(), before) {
			t.Fatal("rejected duplicate changed the state")
		}
	})
}

// fzCheckBounds checks the state bounds of docs/spec/ratchet.md §Bounds.
func fzCheckBounds(s *Session) error {
	switch {
	case len(s.skipped) > MaxSkippedKeys:
		return fmt.Errorf("%d skipped keys", len(s.skipped))
	case len(s.recv) > MaxReceiveChains:
		return fmt.Errorf("%d receiving chains", len(s.recv))
	case len(s.recvRoots) > MaxReceiveChains+1:
		return fmt.Errorf("%d receiving roots", len(s.recvRoots))
	case len(s.ownDH) > MaxOwnDHKeys:
		return fmt.Errorf("%d own DH keys", len(s.ownDH))
	case len(s.ownKEM) > MaxOwnKEMKeys:
		return fmt.Errorf("%d own KEM keys", len(s.ownKEM))
	case len(s.ownRoots) > MaxUnackedChains+1:
		return fmt.Errorf("%d own roots", len(s.ownRoots))
	case s.ownRoots[s.base] == nil:
		return fmt.Errorf("no root for base chain %d", s.base)
	case len(s.tombOrder) > maxTombstones || len(s.tombs) != len(s.tombOrder):
		return fmt.Errorf("%d tombstones, %d in order", len(s.tombs), len(s.tombOrder))
	}
	return nil
}

// Interaction fuzzing.

const (
	fzMaxOps       = 200
	fzMaxMessages  = 1500 // bursts included
	fzMaxPlaintext = 300
	fzMaxSnapshots = 8
	fzMaxClockStep = 30 * time.Hour
	fzTraceLen     = 60 // operations shown when a check fails
)

// fzScript reads operations from fuzz input; past its end it reads zeros.
type fzScript struct {
	data []byte
	pos  int
}

func (s *fzScript) done() bool { return s.pos >= len(s.data) }

func (s *fzScript) byte() byte {
	if s.pos >= len(s.data) {
		return 0
	}
	b := s.data[s.pos]
	s.pos++
	return b
}

func (s *fzScript) uint16() int { return int(s.byte())<<8 | int(s.byte()) }

// pick returns an index below n > 0.
func (s *fzScript) pick(n int) int {
	if n <= 256 {
		return int(s.byte()) % n
	}
	return s.uint16() % n
}

type fzMsg struct {
	id       int
	from, to int
	ct, pt   []byte
	marker   []byte // the plaintext's random 16-byte marker; nil if shorter
	chain, n uint32
}

type fzSnapshot struct {
	data      []byte
	gen       uint64
	delivered map[int]bool
	chains    []uint32
}

type fzParty struct {
	name       string
	sess       *Session
	cfg        Config
	maxGen     uint64       // highest generation ever observed
	rolledBack bool         // restored to a state other than its current one
	delivered  map[int]bool // message ids the current state has decrypted
	chains     []uint32     // peer chains the party has established, ever
	snaps      []fzSnapshot
	// sinceKEM counts the messages the party has sent under its current
	// KEM secret: since its last chain with a KEM step, or since the
	// session began (the PQXDH secret covers the first epoch).
	sinceKEM int
	// state caches Marshal() of stateOf at generation stateGen: every
	// committed change advances the generation, and a restore replaces
	// the session.
	state    []byte
	stateOf  *Session
	stateGen uint64
}

// marshalled returns p.sess.Marshal(), cached while the state is unchanged.
func (p *fzParty) marshalled() []byte {
	if p.state == nil || p.stateOf != p.sess || p.stateGen != p.sess.Generation() {
		p.state, p.stateOf, p.stateGen = p.sess.Marshal(), p.sess, p.sess.Generation()
	}
	return p.state
}

type fzWorld struct {
	t        testing.TB
	s        *fzScript
	p        [2]*fzParty
	clk      *clock
	msgs     []*fzMsg
	inflight []int                // ids, in send order
	used     map[[3]uint32]int    // (sender, chain, n) → message id
	chainDH  map[[2]uint32][]byte // (sender, chain) → the chain's DH public key
	trace    []string             // operations so far, for failure reports
	sent     int
	markers  *rand.ChaCha8 // plaintext markers, apart from the key material
}

func (w *fzWorld) fail(format string, args ...any) {
	w.t.Helper()
	tr := w.trace
	if len(tr) > fzTraceLen {
		tr = append([]string{"..."}, tr[len(tr)-fzTraceLen:]...)
	}
	w.t.Fatalf("%s\ntrace:\n  %s", fmt.Sprintf(format, args...), strings.Join(tr, "\n  "))
}

func (w *fzWorld) log(format string, args ...any) {
	w.trace = append(w.trace, fmt.Sprintf(format, args...))
}

func (w *fzWorld) observe(p *fzParty) {
	w.t.Helper()
	if err := fzCheckBounds(p.sess); err != nil {
		w.fail("%s: %v", p.name, err)
	}
	p.maxGen = max(p.maxGen, p.sess.Generation())
}

// fzMarkerLen is the size of the random marker that ends every plaintext
// of at least that size.
const fzMarkerLen = 16

// fzMarkers returns the stream plaintext markers are drawn from, distinct
// from the key material's so that markers do not change the keys a script
// produces.
func fzMarkers(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	binary.BigEndian.PutUint64(s[:8], seed)
	copy(s[8:], "moat ratchet fuzz markers ......")
	return rand.NewChaCha8(s)
}

// send encrypts a fresh plaintext from party from. It returns nil if the
// party may not send yet (a responder before its first message).
func (w *fzWorld) send(from, length int) *fzMsg {
	w.t.Helper()
	p := w.p[from]
	id := len(w.msgs)
	pt := make([]byte, length)
	for i := range pt {
		pt[i] = byte(id*131 + i*7)
	}
	if length >= 4 {
		binary.BigEndian.PutUint32(pt, uint32(id))
	}
	var marker []byte
	if length >= fzMarkerLen {
		marker = pt[length-fzMarkerLen:]
		_, _ = w.markers.Read(marker)
	}
	gen := p.sess.Generation()
	canSend := p.sess.peerDH.pub != nil
	kemKnown := p.sess.peerKEM != nil
	var before []byte
	if !canSend {
		before = p.sess.Marshal() // any other failure is fatal anyway
	}
	ct, err := p.sess.Encrypt(pt)
	if err != nil {
		if canSend || !errors.Is(err, ErrCannotSendYet) {
			w.fail("%s: Encrypt: %v", p.name, err)
		}
		if !bytes.Equal(p.sess.Marshal(), before) {
			w.fail("%s: failed Encrypt changed the state", p.name)
		}
		w.log("%s send: %v", p.name, err)
		return nil
	}
	if p.sess.Generation() <= gen {
		w.fail("%s: Encrypt did not advance the generation", p.name)
	}
	var h header
	if _, _, _, err := parseMessage(ct, &h); err != nil {
		w.fail("%s: own message does not parse: %v", p.name, err)
	}
	// No (chain, n) twice, even across an undetected rollback: this stands
	// for "no (AEAD key, nonce) pair twice". A restored session jumps to a
	// random fresh chain index, so a collision has probability about
	// (chains the lost state had opened) / restoreJump; the chain's DH key
	// tells such a collision apart from a reused key.
	key := [3]uint32{uint32(from), h.chain, h.n}
	dh := bytes.Clone(p.sess.send.est.dh)
	if prev, dup := w.used[key]; dup {
		same := bytes.Equal(w.chainDH[[2]uint32{uint32(from), h.chain}], dh)
		w.fail("%s: (chain %d, n %d) used twice, by messages %d and %d (same chain DH key: %v)", p.name, h.chain, h.n, prev, id, same)
	}
	w.used[key] = id
	w.chainDH[[2]uint32{uint32(from), h.chain}] = dh
	// What the relay stores never holds the plaintext.
	if marker != nil && bytes.Contains(ct, marker) {
		w.fail("%s: message %d (chain %d n %d) contains its plaintext's marker %x", p.name, id, h.chain, h.n, marker)
	}
	// The KEM schedule (§KEM ratchet): at most KEMInterval messages under
	// one KEM secret, counted as in TestKEMScheduleSilentPeer. A restored
	// party is not exempt: a restore forces a KEM step on its next chain.
	// While the peer's KEM key is unknown no KEM step is possible and the
	// count restarts with every chain (§Sending); that does not arise in
	// sessions made by NewInitiator and NewResponder.
	if h.n == 0 && (h.flags&flagKEMCT != 0 || !kemKnown) {
		p.sinceKEM = 0
	}
	p.sinceKEM++
	if p.sinceKEM > KEMInterval {
		w.fail("%s: message %d (chain %d n %d) is the %dth under one KEM secret (limit %d)", p.name, id, h.chain, h.n, p.sinceKEM, KEMInterval)
	}
	m := &fzMsg{id: id, from: from, to: 1 - from, ct: ct, pt: pt, marker: marker, chain: h.chain, n: h.n}
	w.msgs = append(w.msgs, m)
	w.inflight = append(w.inflight, id)
	w.sent++
	w.log("%s send #%d (chain %d n %d, %d bytes, flags %#x, %d under this KEM secret)", p.name, id, h.chain, h.n, length, h.flags, p.sinceKEM)
	w.observe(p)
	return m
}

// deliver hands ct (message m, possibly tampered) to party to and checks
// the outcome. It reports whether Decrypt succeeded.
func (w *fzWorld) deliver(m *fzMsg, to int, ct []byte, tampered bool) (Received, error) {
	w.t.Helper()
	p := w.p[to]
	before, gen := p.sess.Marshal(), p.sess.Generation()
	var used fzUsedKeys
	if !tampered && to == m.to {
		used = fzKeysUsedBy(p.sess, ct, w.clk.now())
	}
	r, err := p.sess.Decrypt(ct)
	what := fmt.Sprintf("#%d (%s→%s chain %d n %d)", m.id, w.p[m.from].name, w.p[m.to].name, m.chain, m.n)
	if tampered {
		what += " tampered"
	}
	if err != nil {
		w.log("%s recv %s: %v", p.name, what, err)
		if !bytes.Equal(p.sess.Marshal(), before) || p.sess.Generation() != gen {
			w.fail("%s: failed Decrypt of %s (%v) changed the state", p.name, what, err)
		}
		if !tampered && to == m.to && !p.delivered[m.id] && !w.p[0].rolledBack && !w.p[1].rolledBack {
			if why := w.gapReason(p, m, err); why != "" {
				w.fail("%s: genuine message %s refused: %v (%s)", p.name, what, err, why)
			}
		}
		return r, err
	}
	w.log("%s recv %s: ok", p.name, what)
	switch {
	case tampered:
		w.fail("%s: tampered message %s decrypted", p.name, what)
	case to == m.from:
		w.fail("%s: reflected message %s decrypted", p.name, what)
	case !bytes.Equal(r.Plaintext, m.pt) || r.Chain != m.chain || r.N != m.n:
		w.fail("%s: %s decrypted to %x (chain %d n %d), sent %x", p.name, what, r.Plaintext, r.Chain, r.N, m.pt)
	case p.delivered[m.id]:
		w.fail("%s: %s accepted twice", p.name, what)
	case p.sess.Generation() <= gen:
		w.fail("%s: Decrypt did not advance the generation", p.name)
	}
	p.delivered[m.id] = true
	if r.NewChain {
		p.chains = append(p.chains, r.Chain)
	}
	w.observe(p)
	w.checkErased(p, w.p[1-to], m, ct, &used)
	// The key is gone: an immediate replay is a duplicate (T01), or, for a
	// late message of a chain already pruned from the receiving chains
	// (whose delivered numbers are not recorded), an unknown chain. That it
	// changes nothing is checked byte for byte by the duplicate operation;
	// here the generation suffices.
	gen = p.sess.Generation()
	_, pruned := p.sess.recv[m.chain]
	pruned = !pruned && m.chain <= p.sess.recvFloor
	if _, err := p.sess.Decrypt(ct); !errors.Is(err, ErrDuplicate) && !(pruned && errors.Is(err, ErrUnknownChain)) {
		w.fail("%s: immediate replay of %s: %v, want ErrDuplicate", p.name, what, err)
	}
	if p.sess.Generation() != gen {
		w.fail("%s: rejected replay of %s changed the generation", p.name, what)
	}
	return r, nil
}

// gapReason returns why err is not an acceptable outcome for the first
// delivery of genuine message m to its recipient p, when neither party was
// ever rolled back, or "" if it is: what is delivered equals what was sent,
// or a typed gap is reported (T03, T04). Acceptable gaps are an expired or
// evicted key (ErrExpired), a bound (ErrTooFarAhead), and an unknown chain
// that a bound explains: the chain was evicted, the DH or KEM key it names
// was deleted, or its base root was evicted after MaxReceiveChains newer
// chains. p's state is the one before the failed Decrypt (it is unchanged).
func (w *fzWorld) gapReason(p *fzParty, m *fzMsg, err error) string {
	switch {
	case errors.Is(err, ErrExpired), errors.Is(err, ErrTooFarAhead):
		return ""
	case !errors.Is(err, ErrUnknownChain):
		return "not a typed gap"
	}
	var h header
	if _, _, _, err := parseMessage(m.ct, &h); err != nil {
		return "does not parse"
	}
	s := p.sess
	if h.chain <= s.recvFloor {
		return "" // the chain was evicted
	}
	if h.flags&flagEstablish == 0 {
		return "no establishment block for a chain never evicted"
	}
	e := &h.est
	if !slices.ContainsFunc(s.ownDH, func(k ownDHKey) bool { return k.index == e.dhRef }) {
		return "" // MaxOwnDHKeys newer chains deleted the DH key
	}
	if e.hasKEM && !slices.ContainsFunc(s.ownKEM, func(k ownKEMKey) bool { return k.id == e.kemRef }) {
		return "" // MaxOwnKEMKeys newer KEM keys deleted it
	}
	if _, ok := s.recvRoots[e.base]; !ok {
		newer := 0
		for _, c := range p.chains {
			if c > e.base {
				newer++
			}
		}
		if newer >= MaxReceiveChains {
			return "" // evicted by the bound on roots
		}
		return fmt.Sprintf("base root %d deleted with only %d newer chains established", e.base, newer)
	}
	return "chain establishable but refused"
}

// fzUsedKeys are the keys a Decrypt of a message would consume, computed
// from the receiver's state before it: the message key, and every chain key
// the receiving chain (and a previous chain it closes) moves past. None of
// them may remain in either party's state once the message decrypts.
type fzUsedKeys struct {
	mk       [keySize]byte
	ok       bool // the message would decrypt with mk, if genuine
	skipped  bool // mk is a stored skipped key
	chainKey [][keySize]byte
}

// fzKeysUsedBy follows the steps of docs/spec/ratchet.md §Receiving on s,
// without changing it, to find the keys a successful Decrypt of msg uses.
func fzKeysUsedBy(s *Session, msg []byte, now time.Time) fzUsedKeys {
	var u fzUsedKeys
	var h header
	if _, _, _, err := parseMessage(msg, &h); err != nil || h.n >= MaxChainMessages {
		return u
	}
	id := skipID{h.chain, h.n}
	// walk records CK_from … CK_to of a chain whose key is CK_from, and
	// returns KDF_CK(CK_to).
	walk := func(ck [keySize]byte, from, to uint32) (mk [keySize]byte) {
		for j := from; j <= to; j++ {
			u.chainKey = append(u.chainKey, ck)
			kdfCK(&ck, &mk)
		}
		return mk
	}
	c := s.recv[h.chain]
	switch sk, skipped := s.skipped[id]; {
	case c != nil && (h.n < c.next || c.done), c == nil && skipped:
		u.mk, u.ok, u.skipped = sk.mk, skipped, true
	case c != nil:
		u.mk, u.ok = walk(c.ck, c.next, h.n), true
	default:
		var tx recvTx
		if _, tomb := s.tombs[id]; tomb || s.establish(&h, &tx, now) != nil {
			return u
		}
		u.mk, u.ok = walk(tx.chain.ck, 0, h.n), true
		if tx.prev != nil {
			// The previous chain is closed at pn: its keys up to pn - 1
			// become skipped keys, and its chain key is erased.
			p := s.recv[tx.prev.index]
			walk(p.ck, p.next, max(h.est.pn, p.next))
		}
	}
	return u
}

// checkErased checks, after p decrypted m (sent as ct) by consuming the
// keys in u, that the used message key and the chain keys the chains moved
// past are in neither party's serialised state, and that neither state
// holds the plaintext. The chain keys are not looked for in the sender's
// state if the sender was ever restored to an older state: that state may
// hold its own, earlier, copy of the sending chain key.
func (w *fzWorld) checkErased(p, peer *fzParty, m *fzMsg, ct []byte, u *fzUsedKeys) {
	w.t.Helper()
	if !u.ok {
		w.fail("%s: #%d decrypted, but no key for it could be found beforehand", p.name, m.id)
	}
	// The key found must be the key used: it opens the message.
	var h header
	hdr, body, _, err := parseMessage(ct, &h)
	if err != nil {
		w.fail("%s: #%d: %v", p.name, m.id, err)
	}
	aead, err := prim.NewChaCha20Poly1305(u.mk[:])
	if err != nil {
		w.fail("%v", err)
	}
	nonce := nonceFor(h.n)
	if _, err := aead.Open(nil, nonce[:], body, append(bytes.Clone(p.sess.recvAD), hdr...)); err != nil {
		w.fail("%s: #%d: the message key found beforehand does not open it", p.name, m.id)
	}
	states := [2][]byte{p.marshalled(), peer.marshalled()}
	for i, st := range states {
		who := []string{p.name, peer.name}[i]
		if bytes.Contains(st, u.mk[:]) {
			w.fail("%s: after #%d decrypted, %s's state still holds its message key (skipped key: %v)", p.name, m.id, who, u.skipped)
		}
		if m.marker != nil && bytes.Contains(st, m.marker) {
			w.fail("%s: after #%d decrypted, %s's state holds its plaintext", p.name, m.id, who)
		}
		if i == 1 && peer.rolledBack {
			continue
		}
		for j, ck := range u.chainKey {
			if ck != [keySize]byte{} && bytes.Contains(st, ck[:]) {
				w.fail("%s: after #%d decrypted, %s's state still holds chain key %d of %d it moved past", p.name, m.id, who, j, len(u.chainKey))
			}
		}
	}
}

func (w *fzWorld) takeInflight(i int) *fzMsg {
	id := w.inflight[i]
	w.inflight = append(w.inflight[:i:i], w.inflight[i+1:]...)
	return w.msgs[id]
}

// snapshot saves p's state and returns the snapshot's slot.
func (w *fzWorld) snapshot(p *fzParty) int {
	s := fzSnapshot{data: p.sess.Marshal(), gen: p.sess.Generation(), delivered: make(map[int]bool, len(p.delivered)), chains: slices.Clone(p.chains)}
	for id := range p.delivered {
		s.delivered[id] = true
	}
	k := len(p.snaps)
	if k < fzMaxSnapshots {
		p.snaps = append(p.snaps, s)
	} else {
		k = w.s.pick(fzMaxSnapshots)
		p.snaps[k] = s
	}
	w.log("%s snapshot %d at generation %d", p.name, k, s.gen)
	return k
}

func (w *fzWorld) restore(p *fzParty, k int) {
	w.t.Helper()
	s := p.snaps[k]
	cur := p.sess.Marshal()
	_, err := Unmarshal(p.cfg, s.data, p.maxGen)
	if s.gen < p.maxGen {
		if !errors.Is(err, ErrRollback) {
			w.fail("%s: restoring generation %d past %d: %v, want ErrRollback", p.name, s.gen, p.maxGen, err)
		}
	} else if err != nil {
		w.fail("%s: restoring the newest generation %d: %v", p.name, s.gen, err)
	}
	if s.gen == p.sess.Generation() && !p.rolledBack && !bytes.Equal(s.data, cur) {
		w.fail("%s: two states with generation %d and no rollback", p.name, s.gen)
	}
	r, err := Unmarshal(p.cfg, s.data, 0)
	if err != nil {
		w.fail("%s: Unmarshal(minGeneration 0): %v", p.name, err)
	}
	if !bytes.Equal(r.Marshal(), s.data) {
		w.fail("%s: Marshal(Unmarshal(x)) != x", p.name)
	}
	if !bytes.Equal(s.data, cur) {
		p.rolledBack = true
	}
	p.sess = r
	p.chains = slices.Clone(s.chains)
	p.delivered = make(map[int]bool, len(s.delivered))
	for id := range s.delivered {
		p.delivered[id] = true
	}
	w.log("%s restore snapshot %d (generation %d, was %d, max %d)", p.name, k, s.gen, p.sess.Generation(), p.maxGen)
	w.observe(p)
}

func (w *fzWorld) plaintextLen() int { return w.s.uint16() % (fzMaxPlaintext + 1) }

// fzInteraction runs one script. data[0] selects the session kind (bit 0 and
// 1: attributable if 01) and whether stores may be rolled back (bit 2 set:
// never, restores reload the current state), data[1:9] seed the key
// material, and the rest is the operation script.
func fzInteraction(t testing.TB, data []byte) {
	t.Helper()
	var head [9]byte
	n := copy(head[:], data)
	attributable := head[0]&3 == 1 // a quarter of the scripts: signatures are slow
	honest := head[0]&4 != 0       // half the scripts never roll a store back
	seed := binary.BigEndian.Uint64(head[1:])
	pr := newPairWith(t, fzRand(seed), attributable)
	w := &fzWorld{t: t, s: &fzScript{data: data[n:]}, clk: pr.clk, used: map[[3]uint32]int{}, chainDH: map[[2]uint32][]byte{}, markers: fzMarkers(seed)}
	w.p[0] = &fzParty{name: "a", sess: pr.a, cfg: pr.a.cfg, delivered: map[int]bool{}}
	w.p[1] = &fzParty{name: "b", sess: pr.b, cfg: pr.b.cfg, delivered: map[int]bool{}}
	w.log("pair attributable=%v honest=%v seed=%#x", attributable, honest, seed)

	for ops := 0; ops < fzMaxOps && !w.s.done(); ops++ {
		op := w.s.byte()
		party := w.p[op>>7]
		from := int(op >> 7)
		switch op & 0x0f { // bit 7 selects the party
		case 0, 1: // send
			if w.sent < fzMaxMessages {
				w.send(from, w.plaintextLen())
			}
		case 2: // burst: up to 64 messages one way
			k := 1 + int(w.s.byte()%64)
			for range k {
				if w.sent >= fzMaxMessages || w.send(from, len(w.msgs)*37%(fzMaxPlaintext+1)) == nil {
					break
				}
			}
		case 3: // deliver the oldest in-flight message
			if len(w.inflight) > 0 {
				m := w.takeInflight(0)
				w.deliver(m, m.to, m.ct, false)
			}
		case 4, 5: // deliver a chosen in-flight message (shuffle)
			if len(w.inflight) > 0 {
				m := w.takeInflight(w.s.pick(len(w.inflight)))
				w.deliver(m, m.to, m.ct, false)
			}
		case 6: // drop
			if len(w.inflight) > 0 {
				m := w.takeInflight(w.s.pick(len(w.inflight)))
				w.log("drop #%d", m.id)
			}
		case 7: // duplicate: deliver any message sent so far again
			if len(w.msgs) > 0 {
				m := w.msgs[w.s.pick(len(w.msgs))]
				w.deliver(m, m.to, m.ct, false)
			}
		case 8: // reflect: deliver a message back to its sender
			if len(w.msgs) > 0 {
				m := w.msgs[w.s.pick(len(w.msgs))]
				w.deliver(m, m.from, m.ct, false)
			}
		case 9: // tamper: flip one bit of an in-flight message
			if len(w.inflight) > 0 {
				m := w.msgs[w.inflight[w.s.pick(len(w.inflight))]]
				ct := bytes.Clone(m.ct)
				i := w.s.uint16() % len(ct)
				ct[i] ^= 1 << (w.s.byte() % 8)
				w.deliver(m, m.to, ct, true)
			}
		case 10: // snapshot
			w.snapshot(party)
		case 11: // restore
			if honest {
				// The store is never rolled back: restart from the
				// current state (Marshal, then Unmarshal).
				w.restore(party, w.snapshot(party))
			} else if len(party.snaps) > 0 {
				w.restore(party, w.s.pick(len(party.snaps)))
			}
		case 12: // advance the clock
			d := time.Duration(w.s.uint16()) * fzMaxClockStep / 0xffff
			w.clk.advance(d)
			w.log("clock +%v", d)
		case 13: // ForceKEMStep
			gen := party.sess.Generation()
			party.sess.ForceKEMStep()
			if party.sess.Generation() <= gen {
				w.fail("%s: ForceKEMStep did not advance the generation", party.name)
			}
			w.log("%s ForceKEMStep", party.name)
			w.observe(party)
		case 14: // flush: deliver everything in flight, in order
			for len(w.inflight) > 0 {
				m := w.takeInflight(0)
				w.deliver(m, m.to, m.ct, false)
			}
		case 15: // ping-pong: a→b then b→a, each delivered at once
			for _, f := range []int{0, 1} {
				if m := w.send(f, w.plaintextLen()); m != nil {
					w.takeInflight(len(w.inflight) - 1)
					w.deliver(m, m.to, m.ct, false)
				}
			}
		}
	}

	// Liveness: without a rollback, delivering what is in flight and one
	// exchange each way must heal the session.
	if w.p[0].rolledBack || w.p[1].rolledBack {
		return
	}
	w.log("-- liveness --")
	for len(w.inflight) > 0 {
		m := w.takeInflight(0)
		w.deliver(m, m.to, m.ct, false)
	}
	for _, f := range []int{0, 1} {
		m := w.send(f, 16)
		if m == nil {
			w.fail("liveness: %s cannot send", w.p[f].name)
		}
		w.takeInflight(len(w.inflight) - 1)
		if _, err := w.deliver(m, m.to, m.ct, false); err != nil {
			w.fail("liveness: final %s→%s message: %v", w.p[f].name, w.p[1-f].name, err)
		}
	}
}

// FuzzInteraction drives two parties over a hostile network from the fuzz
// input: sends, in-order and shuffled delivery, drops, duplicates,
// reflections, tampering, snapshots and (detected and undetected)
// rollbacks, clock jumps and forced KEM steps. Besides the outcome of every
// operation it checks that no message holds its plaintext, that a
// decrypted message's key and the chain keys passed are gone from both
// serialised states, and that no party sends more than KEMInterval
// messages under one KEM secret.
func FuzzInteraction(f *testing.F) {
	for _, s := range fzInteractionSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) { fzInteraction(t, data) })
}

// fzInteractionSeeds are hand-written scripts for the main scenarios.
func fzInteractionSeeds() [][]byte {
	seed := func(kind byte, s uint64, ops ...byte) []byte {
		b := []byte{kind}
		b = binary.BigEndian.AppendUint64(b, s)
		return append(b, ops...)
	}
	const b = 0x80 // party b
	return [][]byte{
		seed(0, 1, 15, 15, 15, 15),                           // ping-pong
		seed(1, 2, 15, 15, 0, 0, 9, 3, 1, 1, 0, 14),          // attributable
		seed(0, 3, 2, 63, 14, 2, 63, 14, 2, 63, 14),          // one-way floods
		seed(0, 4, 15, 10, 0, 0, 0, 0, 3, 11, 0, 0, 0, 0),    // a snapshot, a rollback
		seed(0, 5, 15, b|10, b|1, 0, 0, 14, b|11, 0, b|1, 0), // b rolls back
		seed(0, 6, 15, 0, 0, 0, 0, 0, 4, 3, 4, 1, 6, 0, 14),  // shuffle and drop
		seed(0, 7, 15, 0, 0, 7, 0, 8, 1, 3, 7, 0, 14),        // replays and reflections
		seed(0, 8, 15, 12, 0xff, 0xff, 15, 12, 0xff, 0xff, 15, 13, 15, b|13, 15),
		seed(0, 9, 2, 40, 6, 0, 6, 0, 6, 0, 2, 40, 14, 15),                              // gaps
		seed(4, 10, 15, 11, 0, b|11, 0, 15, 11, 2, 60, 11, 14, 15),                      // restarts, no rollback
		seed(5, 11, 0, 15, 2, 20, 13, 0, b|13, b|1, 4, 0, 3, 11, b|11, 12, 0x80, 0, 14), // attributable, restarts
	}
}

// TestInteractionCorpus runs the interaction target over pseudo-random
// scripts, so that CI exercises it without -fuzz.
func TestInteractionCorpus(t *testing.T) {
	n := 2000
	if testing.Short() {
		n = 256
	}
	for _, s := range fzInteractionSeeds() {
		fzInteraction(t, s)
	}
	rng := rand.New(rand.NewPCG(0x6d6f6174, 0x66757a7a))
	for i := range n {
		data := make([]byte, 9+rng.IntN(3*fzMaxOps))
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		t.Run(fmt.Sprint(i), func(t *testing.T) { fzInteraction(t, data) })
	}
}
