package ratchet

import (
	"encoding/binary"
	"io"
	"time"

	"github.com/moat-im/moat/crypto/internal/label"
	"github.com/moat-im/moat/crypto/internal/prim"
	"github.com/moat-im/moat/crypto/keys"
)

// Encrypt encrypts plaintext as the next message of the session
// (docs/spec/ratchet.md §Sending). It begins a new chain first when the
// schedule requires one: on the first message, after a message from a new
// peer chain (the DH ratchet), after MaxChainMessages messages, after
// KEMMaxAge, after Unmarshal, or after ForceKEMStep. The session changes
// only if Encrypt succeeds.
func (s *Session) Encrypt(plaintext []byte) ([]byte, error) {
	if len(plaintext) > MaxPlaintextSize {
		return nil, ErrTooLarge
	}
	if s.peerDH.pub == nil {
		return nil, ErrCannotSendYet
	}
	now := s.cfg.now()
	ch := s.send
	var next *pendingChain
	if s.needNewChain(now) {
		var err error
		if next, err = s.newChain(now); err != nil {
			return nil, err
		}
		ch = &next.chain
	}

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
	if s.attributable {
		h.flags |= flagAttributed
		h.timestampMS = uint64(now.UnixMilli())
	}
	size := headerLen(&h) + len(plaintext) + tagSize
	if s.attributable {
		size += signatureSize
	}
	out := appendHeader(make([]byte, 0, size), &h)
	ad := append(append(s.adBuf[:0], s.sendAD...), out...)
	aead, err := prim.NewChaCha20Poly1305(mk[:])
	if err != nil {
		return nil, err
	}
	nonce := nonceFor(ch.n)
	out = aead.Seal(out, nonce[:], plaintext, ad)
	if s.attributable {
		out = append(out, s.cfg.SigningKey.Sign(attributionMessage(s.sendAD, out))...)
	}

	// Commit.
	if next != nil {
		s.commitChain(next)
		ch = s.send
	}
	ch.ck = ck
	ch.n++
	s.pqCount++
	s.expireSkipped(now)
	s.generation++
	s.adBuf = ad[:0]
	return out, nil
}

// attributionMessage is what a sender signs in an attributable session:
// label || AD prefix || header || ciphertext (docs/spec/ratchet.md
// §Attribution).
func attributionMessage(adPrefix, headerAndCiphertext []byte) []byte {
	m := make([]byte, 0, len(label.RatchetAttribution)+len(adPrefix)+len(headerAndCiphertext))
	m = append(m, label.RatchetAttribution...)
	m = append(m, adPrefix...)
	return append(m, headerAndCiphertext...)
}

// needNewChain applies the sending schedule of docs/spec/ratchet.md
// §Sending.
func (s *Session) needNewChain(now time.Time) bool {
	c := s.send
	switch {
	case c == nil, s.mustRekey, s.forceKEM:
		return true
	case c.n >= MaxChainMessages, s.pqCount >= KEMInterval:
		return true
	case now.Sub(c.start) >= KEMMaxAge, now.Sub(s.pqStart) >= KEMMaxAge:
		return true
	case s.peerDH.index != c.est.dhRef:
		return true // DH ratchet: the peer has a newer chain key
	}
	return false
}

// pendingChain is a new sending chain and everything that changes with it,
// computed by newChain and applied by commitChain.
type pendingChain struct {
	chain   sendChain
	root    ownRoot
	dh      *keys.RatchetDHPrivateKey
	kem     *keys.RatchetKEMPrivateKey // a new KEM key we advertise, if any
	kemStep bool
}

// newChain derives a new sending chain (docs/spec/ratchet.md §Chain
// establishment) without changing the session.
func (s *Session) newChain(now time.Time) (*pendingChain, error) {
	rnd := s.cfg.rand()
	index := uint64(s.nextChain)
	if s.mustRekey {
		var j [4]byte
		if _, err := io.ReadFull(rnd, j[:]); err != nil {
			return nil, err
		}
		index += 1 + uint64(binary.BigEndian.Uint32(j[:])%restoreJump)
	}
	if index >= 1<<32-1 {
		return nil, ErrChainsExhausted
	}
	br := s.ownRoots[s.base]
	p := &pendingChain{}
	var err error
	if p.dh, err = keys.GenerateRatchetDHKey(rnd); err != nil {
		return nil, err
	}
	dh, err := p.dh.DH(s.peerDH.pub)
	if err != nil {
		return nil, err
	}
	e := establishment{base: s.base, dhRef: s.peerDH.index, dh: p.dh.Public().Raw()}
	if s.send != nil {
		e.prevChain, e.pn = s.send.index, s.send.n
	}
	flags := uint8(flagEstablish)

	var ss []byte
	p.kemStep = s.peerKEM != nil && (s.mustRekey || s.forceKEM || s.pqCount >= KEMInterval ||
		now.Sub(s.pqStart) >= KEMMaxAge || br.pqChain != s.lastKEM)
	if p.kemStep {
		var ct []byte
		if ct, ss, err = s.peerKEM.pub.Encapsulate(rnd); err != nil {
			return nil, err
		}
		e.hasKEM, e.kemRef, e.kemCT = true, s.peerKEM.id, ct
		flags |= flagKEMCT
	}

	// Advertise a fresh KEM key once the peer has used our newest one.
	adv := s.newestOwnKEM()
	if adv == nil || s.kemUsed {
		if p.kem, err = keys.GenerateRatchetKEMKey(rnd); err != nil {
			return nil, err
		}
		adv = &ownKEMKey{id: uint32(index), priv: p.kem}
	}
	if adv.id > s.peerAck {
		e.hasKEMPub, e.kemPubID, e.kemPub = true, adv.id, adv.priv.Public().Raw()
		flags |= flagKEMPub
	}

	sec, err := kdfRK(br.root[:], dh, ss, s.sendDir(), uint32(index), &e, flags)
	if err != nil {
		return nil, err
	}
	p.chain = sendChain{index: uint32(index), ck: sec.chainKey, start: now, flags: flags, est: e, escrow: sec.escrowSeed}
	p.root = ownRoot{root: sec.root, pqChain: br.pqChain}
	if p.kemStep {
		p.root.pqChain = uint32(index)
	}
	return p, nil
}

func (s *Session) newestOwnKEM() *ownKEMKey {
	if len(s.ownKEM) == 0 {
		return nil
	}
	return &s.ownKEM[len(s.ownKEM)-1]
}

// commitChain makes p the current sending chain.
func (s *Session) commitChain(p *pendingChain) {
	idx := p.chain.index
	s.send = &p.chain
	s.nextChain = idx + 1
	root := p.root
	s.ownRoots[idx] = &root
	s.pruneOwnRoots()
	s.ownDH = append(s.ownDH, ownDHKey{index: idx, priv: p.dh})
	if len(s.ownDH) > MaxOwnDHKeys {
		s.ownDH = append(s.ownDH[:0:0], s.ownDH[len(s.ownDH)-MaxOwnDHKeys:]...)
	}
	if p.kem != nil {
		s.ownKEM = append(s.ownKEM, ownKEMKey{id: idx, priv: p.kem})
		if len(s.ownKEM) > MaxOwnKEMKeys {
			s.ownKEM = append(s.ownKEM[:0:0], s.ownKEM[len(s.ownKEM)-MaxOwnKEMKeys:]...)
		}
		s.kemUsed = false
	}
	// Until the peer has advertised a KEM key, the only post-quantum secret
	// is PQXDH's and no KEM step is possible: the KEM schedule restarts with
	// every chain, so that it does not make every message open a new chain.
	if p.kemStep || s.peerKEM == nil {
		s.lastKEM = max(s.lastKEM, p.root.pqChain)
		s.pqCount = 0
		s.pqStart = p.chain.start
	}
	if p.kemStep || s.peerKEM == nil {
		s.forceKEM = false
		s.mustRekey = false
	}
}

// pruneOwnRoots keeps the base root and the roots of at most
// MaxUnackedChains newer chains.
func (s *Session) pruneOwnRoots() {
	for len(s.ownRoots) > MaxUnackedChains+1 {
		oldest := ^uint32(0)
		for i := range s.ownRoots {
			if i != s.base && i < oldest {
				oldest = i
			}
		}
		delete(s.ownRoots, oldest)
	}
}
