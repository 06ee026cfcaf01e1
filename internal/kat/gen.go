package kat

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/pqxdh"
	"github.com/moat-im/moat/crypto/ratchet"
)

// Generate runs every scenario and returns its vectors. It is fully
// deterministic: two calls return identical vectors.
func Generate() (v *Vectors, err error) {
	// The scenario code reports failures by panicking with a genError,
	// so that it reads as a script; nothing else is recovered.
	defer func() {
		if r := recover(); r != nil {
			ge, ok := r.(genError)
			if !ok {
				panic(r)
			}
			v, err = nil, ge.err
		}
	}()
	v = &Vectors{}
	for _, s := range []struct {
		name, desc string
		withOPK    bool
		lastResort bool
		spk, kem   uint32
	}{
		{"pqxdh-with-opk", "PQXDH with a one-time X25519 prekey and a one-time ML-KEM prekey.", true, false, 1, 9},
		{"pqxdh-without-opk", "PQXDH without a one-time X25519 prekey, using the last-resort ML-KEM prekey.", false, true, 2, 1000},
	} {
		seed := seedFor(s.name)
		r := newRun(s.name, seed)
		_, hv := r.handshake(s.withOPK, s.lastResort, s.spk, s.kem)
		hv.Name, hv.Description, hv.RNGSeed = s.name, s.desc, seed[:]
		v.PQXDH = append(v.PQXDH, hv)
	}
	for _, s := range []struct {
		name, desc   string
		attributable bool
		script       func(r *run, a, b *party)
	}{
		{"first-messages", "The initiator's first three messages, each carrying the PQXDH preamble, delivered in order, then the responder's first reply.", false, scriptFirstMessages},
		{"out-of-order", "Skipped and out-of-order deliveries across two ratchet turns in each direction, including messages of a previous chain delivered after the next chain began, and a duplicate.", false, scriptOutOfOrder},
		{"kem-step", "A one-way run of 60 messages that crosses an ML-KEM step at KEMInterval = 50, then a ForceKEMStep by the other side.", false, scriptKEMStep},
		{"attributable", "A short attributable session (Params.Attributable): every message carries a signed timestamp and an Ed25519 signature by the sender's identity key.", true, scriptAttributable},
	} {
		seed := seedFor(s.name)
		r := newRun(s.name, seed)
		r.v = &RatchetVector{Name: s.name, Description: s.desc, RNGSeed: seed[:], Attributable: s.attributable}
		a, b := r.sessions(s.attributable)
		s.script(r, a, b)
		r.specDone()
		r.v.Intermediates = r.spec.inter
		v.Ratchet = append(v.Ratchet, *r.v)
	}
	return v, nil
}

func scriptFirstMessages(r *run, a, b *party) {
	r.create(a)
	m0 := r.encrypt(a, "first-messages: initiator message 0")
	m1 := r.encrypt(a, "first-messages: initiator message 1")
	m2 := r.encrypt(a, "first-messages: initiator message 2")
	r.create(b)
	r.decrypt(b, m0)
	r.decrypt(b, m1)
	r.decrypt(b, m2)
	reply := r.encrypt(b, "first-messages: responder reply 0")
	r.decrypt(a, reply)
}

func scriptOutOfOrder(r *run, a, b *party) {
	r.create(a)
	// Turn 1: initiator chain 1.
	var ca [9]int
	for i := range 5 {
		ca[i] = r.encrypt(a, fmt.Sprintf("out-of-order: initiator %d", i))
	}
	r.create(b)
	r.decrypt(b, ca[1]) // establishes chain 1, skips 0
	r.decrypt(b, ca[0]) // from the skipped store
	r.decrypt(b, ca[3]) // skips 2
	r.decryptErr(b, ca[0], ratchet.ErrDuplicate, "duplicate")
	// Turn 1 reply: responder chain 1.
	var cb [5]int
	for i := range 3 {
		cb[i] = r.encrypt(b, fmt.Sprintf("out-of-order: responder %d", i))
	}
	r.decrypt(a, cb[2]) // establishes, skips 0 and 1
	r.decrypt(a, cb[0])
	// Turn 2: initiator chain 2 (DH ratchet), the first one empty.
	ca[5] = r.encryptBytes(a, nil)
	for i := 6; i < 8; i++ {
		ca[i] = r.encrypt(a, fmt.Sprintf("out-of-order: initiator %d", i))
	}
	r.decrypt(b, ca[6]) // closes chain 1 at pn = 5 (skips 4), skips 5
	r.decrypt(b, ca[2]) // previous chain, from the skipped store
	r.decrypt(b, ca[4]) // previous chain, stored when chain 2 closed it
	r.decrypt(b, ca[5])
	r.decrypt(b, ca[7])
	// Turn 2 reply: responder chain 2.
	cb[3] = r.encrypt(b, "out-of-order: responder 3")
	cb[4] = r.encrypt(b, "out-of-order: responder 4")
	r.decrypt(a, cb[4]) // closes chain 1 at pn = 3 (1 is already stored), skips 3
	r.decrypt(a, cb[1])
	r.decrypt(a, cb[3])
	// A third initiator chain, delivered in order.
	ca[8] = r.encrypt(a, "out-of-order: initiator 8")
	r.decrypt(b, ca[8])
}

func scriptKEMStep(r *run, a, b *party) {
	r.create(a)
	r.create(b)
	r.decrypt(b, r.encrypt(a, "kem-step: hello"))
	r.decrypt(a, r.encrypt(b, "kem-step: reply"))
	kemSteps := 0
	for i := range 60 {
		m := r.encrypt(a, fmt.Sprintf("kem-step: run %02d", i))
		if r.decrypt(b, m).KEMStep {
			kemSteps++
		}
	}
	if kemSteps != 1 {
		r.fail(fmt.Errorf("kem-step: %d KEM steps in the 60-message run, want 1", kemSteps))
	}
	r.forceKEMStep(b)
	if !r.decrypt(a, r.encrypt(b, "kem-step: forced")).KEMStep {
		r.fail(errors.New("kem-step: ForceKEMStep did not produce a KEM step"))
	}
	r.decrypt(b, r.encrypt(a, "kem-step: after"))
}

func scriptAttributable(r *run, a, b *party) {
	r.create(a)
	m0 := r.encrypt(a, "attributable: initiator 0")
	m1 := r.encrypt(a, "attributable: initiator 1")
	r.create(b)
	r.decrypt(b, m0)
	r.decrypt(b, m1)
	x0 := r.encrypt(b, "attributable: responder 0")
	x1 := r.encrypt(b, "attributable: responder 1")
	r.decrypt(a, x1)
	r.decrypt(a, x0)
	r.decrypt(b, r.encrypt(a, "attributable: initiator 2"))
}

// genError carries a failure out of the scenario code to Generate.
type genError struct{ err error }

// tap reads from a ChaCha8 stream and keeps what it read since the last take.
type tap struct {
	r   *rand.ChaCha8
	got []byte
}

func (t *tap) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.got = append(t.got, p[:n]...)
	return n, err
}

func (t *tap) take() []byte {
	b := t.got
	t.got = nil
	return b
}

// run is one scenario in progress.
type run struct {
	name string
	rnd  *tap
	now  time.Time
	v    *RatchetVector

	hs   *handshakeState
	spec *specState
}

type party struct {
	name    string
	id      *keys.DeviceIdentityPrivate
	pending func() (*ratchet.Session, error)
	s       *ratchet.Session
}

func newRun(name string, seed [32]byte) *run {
	return &run{name: name, rnd: &tap{r: rand.NewChaCha8(seed)}, now: Epoch}
}

func (r *run) fail(err error) { panic(genError{fmt.Errorf("kat: %s: %w", r.name, err)}) }

func (r *run) check(err error) {
	if err != nil {
		r.fail(err)
	}
}

func (r *run) clock() time.Time { return r.now }

// handshakeState is what the sessions need from a handshake.
type handshakeState struct {
	a, b     *keys.DeviceIdentityPrivate
	spk      *keys.SignedPrekeyPrivateKey
	spkPub   *keys.SignedPrekeyPublicKey
	kpk      *keys.KEMPrekeyPrivateKey
	kpkPub   *keys.KEMPrekeyPublicKey
	res      *pqxdh.Result
	preamble []byte
}

// handshake generates both identities and the responder's prekeys, and runs
// PQXDH on both sides.
func (r *run) handshake(withOPK, lastResort bool, spkID, kemID uint32) (*handshakeState, PQXDHVector) {
	aID, err := keys.GenerateDeviceIdentity(r.rnd)
	r.check(err)
	bID, err := keys.GenerateDeviceIdentity(r.rnd)
	r.check(err)
	spk, err := keys.GenerateSignedPrekeyKey(r.rnd)
	r.check(err)
	var opk *keys.OneTimePrekeyPrivateKey
	if withOPK {
		opk, err = keys.GenerateOneTimePrekey(r.rnd)
		r.check(err)
	}
	kpk, err := keys.GenerateKEMPrekeyKey(r.rnd)
	r.check(err)
	r.rnd.take()

	const opkID = 7
	bundle := &pqxdh.Bundle{
		Identity:     bID.Public(),
		SignedPrekey: keys.SignSignedPrekey(spkID, r.now, spk.Public(), bID.Signing),
		KEMPrekey:    keys.SignKEMPrekey(kemID, r.now, lastResort, kpk.Public(), bID.Signing),
	}
	if opk != nil {
		bundle.OneTimePrekey = &pqxdh.OneTimePrekey{ID: opkID, Key: opk.Public()}
	}
	bundleEnc, err := bundle.Marshal()
	r.check(err)

	im, ar, err := pqxdh.Initiate(r.rnd, aID, bundle)
	r.check(err)
	initRand := r.rnd.take()
	if len(initRand) != 64 {
		r.fail(fmt.Errorf("pqxdh.Initiate read %d random bytes, want 64", len(initRand)))
	}
	imEnc, err := im.Marshal()
	r.check(err)
	br, err := pqxdh.Respond(bID, im, pqxdh.ResponderKeys{SignedPrekey: spk, OneTimePrekey: opk, KEMPrekey: kpk})
	r.check(err)
	if !ar.Equal(br) || ar.Transcript != br.Transcript {
		r.fail(errors.New("PQXDH results differ"))
	}

	// Intermediates, recomputed from the recorded randomness.
	ek, err := keys.GenerateEphemeralDHKey(bytes.NewReader(initRand[:32]))
	r.check(err)
	if !ek.Public().Equal(im.Ephemeral) {
		r.fail(errors.New("ephemeral key is not the first 32 bytes Initiate read"))
	}
	ct, ss, err := kpk.Public().Encapsulate(bytes.NewReader(initRand[32:]))
	r.check(err)
	if !bytes.Equal(ct, im.KEMCiphertext) {
		r.fail(errors.New("KEM ciphertext is not from the last 32 bytes Initiate read"))
	}
	dh := func(priv interface {
		DH(keys.X25519PublicKey) ([]byte, error)
	}, pub keys.X25519PublicKey) Hex {
		out, err := priv.DH(pub)
		r.check(err)
		return out
	}
	inter := PQXDHIntermediates{
		EphemeralPublic: ek.Public().Bytes(),
		DH1:             dh(aID.DH, spk.Public()),
		DH2:             dh(ek, bID.DH.Public()),
		DH3:             dh(ek, spk.Public()),
		KEMCiphertext:   ct,
		KEMSharedSecret: ss,
	}
	if opk != nil {
		inter.DH4 = dh(ek, opk.Public())
	}

	hv := PQXDHVector{
		Initiator: identityRecord(aID),
		Responder: ResponderRecord{
			Identity: identityRecord(bID),
			SignedPrekey: SignedPrekey{
				ID: spkID, CreatedUnix: bundle.SignedPrekey.Created.Unix(),
				Private: spk.Bytes(), Public: spk.Public().Bytes(), Signature: bundle.SignedPrekey.Signature,
			},
			KEMPrekey: KEMPrekey{
				ID: kemID, CreatedUnix: bundle.KEMPrekey.Created.Unix(), LastResort: lastResort,
				Seed: kpk.Seed(), Public: kpk.Public().Bytes(), Signature: bundle.KEMPrekey.Signature,
			},
		},
		Bundle:             bundleEnc,
		InitiateRandomness: InitiateRandomness{EphemeralPrivate: initRand[:32], KEMEncapsulationRandomness: initRand[32:]},
		InitialMessage:     imEnc,
		Intermediates:      inter,
		Result: PQXDHResult{
			SharedKey: ar.SharedKey, AD: ar.AD, Transcript: ar.Transcript[:],
			OneTimePrekeyUsed: ar.OneTimePrekeyUsed, LastResortKEM: ar.LastResortKEM,
		},
	}
	if opk != nil {
		hv.Responder.OneTimePrekey = &OneTimePrekey{ID: opkID, Private: opk.Bytes(), Public: opk.Public().Bytes()}
	}
	return &handshakeState{a: aID, b: bID, spk: spk, spkPub: bundle.SignedPrekey.Key, kpk: kpk, kpkPub: bundle.KEMPrekey.Key, res: ar, preamble: imEnc}, hv
}

func identityRecord(id *keys.DeviceIdentityPrivate) Identity {
	return Identity{
		SigningSeed: id.Signing.Seed(), DHPrivate: id.DH.Bytes(),
		SigningPublic: id.Signing.Public().Bytes(), DHPublic: id.DH.Public().Bytes(),
	}
}

// sessions runs the handshake of a ratchet scenario and prepares both
// parties; each session is made by its create event.
func (r *run) sessions(attributable bool) (a, b *party) {
	hs, hv := r.handshake(true, false, 1, 9)
	r.hs = hs
	r.v.Handshake = hv
	r.newSpecState(attributable)
	a = &party{name: PartyInitiator, id: hs.a}
	b = &party{name: PartyResponder, id: hs.b}
	a.pending = func() (*ratchet.Session, error) {
		return ratchet.NewInitiator(ratchet.Config{Rand: r.rnd, Now: r.clock, SigningKey: hs.a.Signing},
			ratchet.Params{SharedKey: hs.res.SharedKey, AD: hs.res.AD, Self: hs.a.Public(), Peer: hs.b.Public(), Attributable: attributable},
			hs.spkPub, hs.kpkPub, hs.preamble)
	}
	b.pending = func() (*ratchet.Session, error) {
		return ratchet.NewResponder(ratchet.Config{Rand: r.rnd, Now: r.clock, SigningKey: hs.b.Signing},
			ratchet.Params{SharedKey: hs.res.SharedKey, AD: hs.res.AD, Self: hs.b.Public(), Peer: hs.a.Public(), Attributable: attributable},
			hs.spk, hs.kpk)
	}
	return a, b
}

// event advances the clock and appends an event.
func (r *run) event(op string, p *party, msg int) *Event {
	r.now = r.now.Add(Step)
	e := Event{Op: op, Party: p.name, TimeUnixMS: r.now.UnixMilli()}
	if msg >= 0 {
		e.Message = &msg
	}
	r.v.Events = append(r.v.Events, e)
	return &r.v.Events[len(r.v.Events)-1]
}

// noRandomness fails if the last operation read randomness.
func (r *run) noRandomness(what string) {
	if n := len(r.rnd.take()); n != 0 {
		r.fail(fmt.Errorf("%s read %d random bytes, want none", what, n))
	}
}

func (r *run) create(p *party) {
	if p.s != nil {
		r.fail(errors.New("session created twice"))
	}
	r.event(OpCreate, p, -1)
	s, err := p.pending()
	r.check(err)
	r.noRandomness("creating a session")
	p.s = s
}

func (r *run) forceKEMStep(p *party) {
	r.event(OpForceKEMStep, p, -1)
	p.s.ForceKEMStep()
	r.noRandomness("ForceKEMStep")
}

func (r *run) encrypt(p *party, pt string) int { return r.encryptBytes(p, []byte(pt)) }

func (r *run) encryptBytes(p *party, pt []byte) int {
	idx := len(r.v.Messages)
	r.event(OpEncrypt, p, idx)
	r.rnd.take()
	ct, err := p.s.Encrypt(pt)
	r.check(err)
	consumed := r.rnd.take()
	h, err := parseHeader(ct)
	if err != nil {
		r.fail(fmt.Errorf("message %d: %w", idx, err))
	}
	if h.preamble != nil && !bytes.Equal(h.preamble, r.hs.preamble) {
		r.fail(fmt.Errorf("message %d: preamble is not the PQXDH initial message", idx))
	}
	m := Message{Index: idx, Sender: p.name, Plaintext: append(Hex{}, pt...), Header: h, Message: ct}
	m.Randomness = r.splitRandomness(idx, p.name, consumed, &h)
	r.v.Messages = append(r.v.Messages, m)
	r.specMessage(idx)
	return idx
}

// splitRandomness names the bytes an Encrypt read: nothing when it
// continued a chain; when it began one, the ratchet DH key, then the KEM
// encapsulation randomness if the chain takes a KEM step, then the seed of
// a new ratchet KEM key if it advertises one. Each part is checked against
// the message.
func (r *run) splitRandomness(idx int, sender string, b []byte, h *Header) *SendRandomness {
	if len(b) == 0 {
		if h.N == 0 {
			r.fail(fmt.Errorf("message %d begins chain %d but Encrypt read no randomness", idx, h.Chain))
		}
		return nil
	}
	e := h.Establishment
	if h.N != 0 || e == nil {
		r.fail(fmt.Errorf("message %d continues a chain but Encrypt read %d random bytes", idx, len(b)))
	}
	hasCT, hasPub := h.Flags&flagKEMCT != 0, h.Flags&flagKEMPub != 0
	want := 32
	if hasCT {
		want += 32
	}
	newKEM := len(b) == want+keys.KEMSeedSize
	if len(b) != want && !newKEM || newKEM && !hasPub {
		r.fail(fmt.Errorf("message %d: Encrypt read %d random bytes, which do not match its header (flags %#x)", idx, len(b), h.Flags))
	}
	s := &SendRandomness{RatchetDHPrivate: b[:32]}
	dh, err := keys.GenerateRatchetDHKey(bytes.NewReader(s.RatchetDHPrivate))
	r.check(err)
	if !bytes.Equal(dh.Public().Raw(), e.DH) {
		r.fail(fmt.Errorf("message %d: ratchet DH key is not the first 32 random bytes", idx))
	}
	b = b[32:]
	if hasCT {
		s.KEMEncapsulationRandomness, b = b[:32], b[32:]
		peer := r.peerKEMKey(idx, sender, e.KEMRef)
		ct, _, err := peer.Encapsulate(bytes.NewReader(s.KEMEncapsulationRandomness))
		r.check(err)
		if !bytes.Equal(ct, h.kemCT) {
			r.fail(fmt.Errorf("message %d: KEM ciphertext is not from the recorded randomness", idx))
		}
	}
	if newKEM {
		s.RatchetKEMSeed = b
		k, err := keys.NewRatchetKEMPrivateKey(s.RatchetKEMSeed)
		r.check(err)
		if !bytes.Equal(k.Public().Raw(), h.kemPub) {
			r.fail(fmt.Errorf("message %d: advertised KEM key is not from the recorded seed", idx))
		}
	}
	return s
}

// peerKEMKey finds the KEM key with the given id that sender's peer
// advertised.
func (r *run) peerKEMKey(idx int, sender string, id uint32) *keys.RatchetKEMPublicKey {
	if id == 0 && sender == PartyInitiator {
		// The responder's KEM key 0 is its KEM prekey from the bundle.
		k, err := keys.NewRatchetKEMPublicKey(r.hs.kpkPub.Raw())
		r.check(err)
		return k
	}
	for i := len(r.v.Messages) - 1; i >= 0; i-- {
		m := &r.v.Messages[i]
		if m.Sender == sender || m.Header.Establishment == nil || m.Header.kemPub == nil || m.Header.Establishment.KEMPubID != id {
			continue
		}
		k, err := keys.NewRatchetKEMPublicKey(m.Header.kemPub)
		r.check(err)
		return k
	}
	r.fail(fmt.Errorf("message %d names KEM key %d, which the peer never advertised", idx, id))
	return nil
}

func (r *run) decrypt(p *party, idx int) ratchet.Received {
	m := &r.v.Messages[idx]
	e := r.event(OpDecrypt, p, idx)
	got, err := p.s.Decrypt(m.Message)
	if err != nil {
		r.fail(fmt.Errorf("%s decrypting message %d: %w", p.name, idx, err))
	}
	r.noRandomness("Decrypt")
	if !bytes.Equal(got.Plaintext, m.Plaintext) || got.Chain != m.Header.Chain || got.N != m.Header.N || len(got.EscrowRef) != 0 {
		r.fail(fmt.Errorf("message %d decrypted inconsistently", idx))
	}
	e.Expect = &Expect{Chain: got.Chain, N: got.N, Skipped: got.Skipped, NewChain: got.NewChain, KEMStep: got.KEMStep}
	if !got.Timestamp.IsZero() {
		e.Expect.TimestampUnixMS = got.Timestamp.UnixMilli()
	}
	return got
}

func (r *run) decryptErr(p *party, idx int, want error, name string) {
	e := r.event(OpDecrypt, p, idx)
	if _, err := p.s.Decrypt(r.v.Messages[idx].Message); !errors.Is(err, want) {
		r.fail(fmt.Errorf("%s decrypting message %d again: %v, want %v", p.name, idx, err, want))
	}
	r.noRandomness("Decrypt")
	e.ExpectError = name
}
