package sealed

// End-to-end tests of docs/spec/envelope.md §Sender binding with real
// PQXDH and ratchet sessions: a recipient that follows the binding rules
// decrypts what the named sender sent, and rejects every spoofed envelope
// before (or without) changing any session.

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/pqxdh"
	"github.com/moat-im/moat/crypto/ratchet"
)

// peer is a device with prekeys and ratchet sessions, keyed by the sender
// reference the envelope carries (tenant, user, device).
type peer struct {
	*device
	prekeys  *pqxdh.Prekeys
	spk      *keys.SignedPrekey
	next     uint32
	sessions map[[48]byte]*ratchet.Session
}

func sessionKey(s Sender) (k [48]byte) {
	copy(k[:16], s.Tenant[:])
	copy(k[16:32], s.User[:])
	copy(k[32:], s.Device[:])
	return k
}

func newPeer(t testing.TB, seed byte) *peer {
	t.Helper()
	d := newDevice(t, seed)
	spk, err := keys.GenerateSignedPrekeyKey(detRand(seed + 100))
	must(t, err)
	p := &peer{device: d, prekeys: pqxdh.NewPrekeys(), sessions: map[[48]byte]*ratchet.Session{}}
	p.prekeys.AddSignedPrekey(1, spk)
	p.spk = keys.SignSignedPrekey(1, testNow, spk.Public(), d.id.Signing)
	return p
}

// nextBundle publishes a fresh one-time X25519 and ML-KEM prekey and
// returns the bundle a relay would hand out.
func (p *peer) nextBundle(t testing.TB) *pqxdh.Bundle {
	t.Helper()
	p.next++
	r := detRand(byte(p.next) + 200)
	opk, err := keys.GenerateOneTimePrekey(r)
	must(t, err)
	kpk, err := keys.GenerateKEMPrekeyKey(r)
	must(t, err)
	p.prekeys.AddOneTimePrekey(2*p.next, opk)
	p.prekeys.AddKEMPrekey(2*p.next+1, kpk, false)
	return &pqxdh.Bundle{
		Identity:      p.id.Public(),
		SignedPrekey:  p.spk,
		OneTimePrekey: &pqxdh.OneTimePrekey{ID: 2 * p.next, Key: opk.Public()},
		KEMPrekey:     keys.SignKEMPrekey(2*p.next+1, testNow, false, kpk.Public(), p.id.Signing),
	}
}

func (p *peer) cfg() ratchet.Config {
	return ratchet.Config{Now: func() time.Time { return testNow }}
}

// initiate starts a session with q as PQXDH initiator and returns it.
func (p *peer) initiate(t testing.TB, q *peer) *ratchet.Session {
	t.Helper()
	bundle := q.nextBundle(t)
	im, res, err := pqxdh.Initiate(detRand(9), p.id, bundle)
	must(t, err)
	pre, err := im.Marshal()
	must(t, err)
	s, err := ratchet.NewInitiator(p.cfg(), ratchet.Params{SharedKey: res.SharedKey, AD: res.AD, Self: p.id.Public(), Peer: q.id.Public()},
		bundle.SignedPrekey.Key, bundle.KEMPrekey.Key, pre)
	must(t, err)
	p.sessions[sessionKey(q.sender)] = s
	return s
}

// send encrypts text with s and seals it from p to q.
func (p *peer) send(t testing.TB, s *ratchet.Session, q *peer, text string) []byte {
	t.Helper()
	ct, err := s.Encrypt([]byte(text))
	must(t, err)
	env, err := q.recipient(t).Seal(message(p.device, ct))
	must(t, err)
	return env
}

// receive follows docs/spec/envelope.md §Sender binding. The certificate
// and key-transparency checks of step 3 belong to the client; here the
// certificate reference is taken as checked.
func (p *peer) receive(env []byte) (string, error) {
	o, err := p.keyring.Open(env)
	if err != nil {
		return "", err
	}
	k := sessionKey(o.Sender)
	if s := p.sessions[k]; s != nil { // step 2
		if err := o.CheckPeer(s.Peer()); err != nil {
			return "", err
		}
		r, err := s.Decrypt(o.Content)
		return string(r.Plaintext), err
	}
	pre, err := ratchet.PeekPreamble(o.Content) // step 3
	if err != nil {
		return "", err
	}
	im, err := pqxdh.ParseInitialMessage(pre)
	if err != nil {
		return "", err
	}
	if err := o.CheckPeer(im.Identity); err != nil {
		return "", err
	}
	rk, err := p.prekeys.Lookup(im)
	if err != nil {
		return "", err
	}
	res, err := pqxdh.Respond(p.id, im, rk)
	if err != nil {
		return "", err
	}
	s, err := ratchet.NewResponder(p.cfg(), ratchet.Params{SharedKey: res.SharedKey, AD: res.AD, Self: p.id.Public(), Peer: im.Identity}, rk.SignedPrekey, rk.KEMPrekey)
	if err != nil {
		return "", err
	}
	r, err := s.Decrypt(o.Content)
	if err != nil {
		return "", err
	}
	p.prekeys.Consume(im)
	p.sessions[k] = s
	return string(r.Plaintext), nil
}

// TestSenderBindingEndToEnd: A starts a session with B through a sealed
// envelope and B answers through one.
func TestSenderBindingEndToEnd(t *testing.T) {
	a, b := newPeer(t, 1), newPeer(t, 2)
	as := a.initiate(t, b)
	got, err := b.receive(a.send(t, as, b, "hello B"))
	if err != nil || got != "hello B" {
		t.Fatalf("B received %q, %v", got, err)
	}
	bs := b.sessions[sessionKey(a.sender)]
	got, err = a.receive(b.send(t, bs, a, "hello A"))
	if err != nil || got != "hello A" {
		t.Fatalf("A received %q, %v", got, err)
	}
	got, err = b.receive(a.send(t, as, b, "again"))
	if err != nil || got != "again" {
		t.Fatalf("B received %q, %v", got, err)
	}
}

// TestSenderSpoofing: C, a legitimate device with its own session with B,
// cannot make B accept its messages as A's, in any of the ways a valid
// envelope can name a sender; B's sessions stay byte-identical.
func TestSenderSpoofing(t *testing.T) {
	a, b, c := newPeer(t, 1), newPeer(t, 2), newPeer(t, 3)
	as := a.initiate(t, b)
	if _, err := b.receive(a.send(t, as, b, "from A")); err != nil {
		t.Fatal(err)
	}
	cs := c.initiate(t, b)
	if _, err := b.receive(c.send(t, cs, b, "from C")); err != nil {
		t.Fatal(err)
	}
	bA := b.sessions[sessionKey(a.sender)]
	bC := b.sessions[sessionKey(c.sender)]
	snapA, snapC := bA.Marshal(), bC.Marshal()
	unchanged := func(name string) {
		t.Helper()
		if !bytes.Equal(bA.Marshal(), snapA) || !bytes.Equal(bC.Marshal(), snapC) {
			t.Fatalf("%s: a session of B changed", name)
		}
	}
	sealAs := func(sender Sender, text string) []byte {
		ct, err := cs.Encrypt([]byte(text))
		must(t, err)
		m := message(c.device, ct)
		m.Sender = sender
		env, err := b.recipient(t).Seal(m)
		must(t, err)
		return env
	}

	// C names A entirely (reference and identity): B binds to its session
	// with A, in which C's ratchet message does not decrypt.
	_, err := b.receive(sealAs(a.sender, "I am A"))
	if !errors.Is(err, ratchet.ErrDecrypt) && !errors.Is(err, ratchet.ErrUnknownChain) {
		t.Fatalf("C's message as A: %v, want a ratchet failure", err)
	}
	unchanged("full impersonation")

	// C names A's device with its own identity keys: refused before the
	// session is touched.
	mixed := a.sender
	mixed.Identity = c.id.Public()
	if _, err := b.receive(sealAs(mixed, "I am A, really")); err != ErrSenderMismatch {
		t.Fatalf("A's reference with C's keys: %v, want ErrSenderMismatch", err)
	}
	unchanged("mixed reference")

	// First contact: a recipient E with no sessions. C's initial message
	// names C in its preamble, but the envelope names A.
	e := newPeer(t, 5)
	ds := c.initiate(t, e)
	ct, err := ds.Encrypt([]byte("first contact"))
	must(t, err)
	m := message(c.device, ct)
	m.Sender = a.sender // names A; the preamble names C
	env, err := e.recipient(t).Seal(m)
	must(t, err)
	if _, err := e.receive(env); err != ErrSenderMismatch {
		t.Fatalf("C's initial message named as A's: %v, want ErrSenderMismatch", err)
	}
	if len(e.sessions) != 0 {
		t.Fatal("E created a session")
	}

	// C forges an initial message with A's identity in the preamble: the
	// names agree, but without A's private keys the PQXDH secret differs,
	// the first message does not decrypt, no session is made and no
	// prekey is consumed.
	bundle := e.nextBundle(t)
	im, res, err := pqxdh.Initiate(detRand(10), c.id, bundle)
	must(t, err)
	im.Identity = a.id.Public()
	pre, err := im.Marshal()
	must(t, err)
	fs, err := ratchet.NewInitiator(c.cfg(), ratchet.Params{SharedKey: res.SharedKey, AD: res.AD, Self: c.id.Public(), Peer: e.id.Public()},
		bundle.SignedPrekey.Key, bundle.KEMPrekey.Key, pre)
	must(t, err)
	ct, err = fs.Encrypt([]byte("forged first contact"))
	must(t, err)
	m = message(c.device, ct)
	m.Sender = a.sender
	env, err = e.recipient(t).Seal(m)
	must(t, err)
	x, k := e.prekeys.OneTimeCount()
	if _, err := e.receive(env); !errors.Is(err, ratchet.ErrDecrypt) {
		t.Fatalf("forged preamble: %v, want ratchet.ErrDecrypt", err)
	}
	if x2, k2 := e.prekeys.OneTimeCount(); len(e.sessions) != 0 || x2 != x || k2 != k {
		t.Fatal("a forged initial message made a session or consumed a prekey")
	}
}
