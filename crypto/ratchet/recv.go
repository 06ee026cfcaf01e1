package ratchet

import (
	"time"

	"github.com/moat-im/moat/crypto/internal/prim"
	"github.com/moat-im/moat/crypto/keys"
)

// Received describes a decrypted message.
type Received struct {
	Plaintext []byte
	// Chain and N are the sender's chain index and message number.
	Chain, N uint32
	// Skipped counts the earlier message keys this message made the
	// receiver derive and store: a gap until those messages arrive.
	Skipped int
	// NewChain reports that this message established a new peer chain, and
	// KEMStep that the chain mixed in a fresh ML-KEM secret.
	NewChain, KEMStep bool
	// Timestamp is the sender's signed time, in attributable sessions.
	Timestamp time.Time
	// EscrowRef is the escrow-blob reference the sender bound, if any.
	EscrowRef []byte
}

// recvTx collects everything a Decrypt would change, applied only after
// the message has authenticated.
type recvTx struct {
	chain    *recvChain // updated or new chain (a copy until commit)
	isNew    bool
	root     [keySize]byte
	prev     *recvChain // previous chain, closed at pn
	skips    []skipEntry
	peerDH   *keys.RatchetDHPublicKey
	peerKEM  *keys.RatchetKEMPublicKey
	usedSkip *skipID
}

type skipEntry struct {
	id skipID
	mk [keySize]byte
}

// Decrypt authenticates and decrypts msg (docs/spec/ratchet.md
// §Receiving). On any error the session is unchanged.
func (s *Session) Decrypt(msg []byte) (Received, error) {
	var h header
	hdr, ct, sig, err := parseMessage(msg, &h)
	if err != nil {
		return Received{}, err
	}
	if s.attributable != (h.flags&flagAttributed != 0) {
		return Received{}, ErrAttribution
	}
	if h.flags&flagPreamble != 0 && s.initiator {
		return Received{}, ErrMalformed // only initiators send a preamble
	}
	// Bounds first, before any key derivation (T05).
	if h.n >= MaxChainMessages {
		return Received{}, ErrTooFarAhead
	}
	now := s.cfg.now()
	var tx recvTx
	var mk [keySize]byte
	r := Received{Chain: h.chain, N: h.n, EscrowRef: h.escrowRef}

	if c := s.recv[h.chain]; c != nil {
		if h.n < c.next || c.closed() {
			id := skipID{h.chain, h.n}
			sk, ok := s.skipped[id]
			switch {
			case ok && sk.expires > now.Unix():
				mk = sk.mk
				tx.usedSkip = &id
			case ok:
				return Received{}, ErrExpired
			case h.n >= c.next:
				return Received{}, ErrExpired // past the closed chain's end: never sent
			default:
				if _, t := s.tombs[id]; t {
					return Received{}, ErrExpired
				}
				return Received{}, ErrDuplicate
			}
		} else {
			cc := *c
			tx.chain = &cc
			tx.skips = deriveUpTo(&cc, h.n, nil)
			kdfCK(&cc.ck, &mk)
			cc.next = h.n + 1
		}
	} else if sk, ok := s.skipped[skipID{h.chain, h.n}]; ok {
		// A chain pruned from the receiving chains (T06) keeps its
		// skipped keys until they expire or are evicted.
		if sk.expires <= now.Unix() {
			return Received{}, ErrExpired
		}
		id := skipID{h.chain, h.n}
		mk = sk.mk
		tx.usedSkip = &id
	} else if _, t := s.tombs[skipID{h.chain, h.n}]; t {
		return Received{}, ErrExpired // evicted from a pruned chain
	} else {
		if err := s.establish(&h, &tx, now); err != nil {
			return Received{}, err
		}
		tx.skips = deriveUpTo(tx.chain, h.n, tx.skips)
		kdfCK(&tx.chain.ck, &mk)
		tx.chain.next = h.n + 1
		r.NewChain, r.KEMStep = true, h.est.hasKEM
	}

	ad := append(append(s.adBuf[:0], s.recvAD...), hdr...)
	aead, err := prim.NewChaCha20Poly1305(mk[:])
	if err != nil {
		return Received{}, err
	}
	nonce := nonceFor(h.n)
	pt, err := aead.Open(nil, nonce[:], ct, ad)
	s.adBuf = ad[:0]
	if err != nil {
		return Received{}, ErrDecrypt
	}
	if s.attributable {
		if s.peer.Signing.Verify(attributionMessage(s.recvAD, msg[:len(msg)-signatureSize]), sig) != nil {
			return Received{}, ErrAttribution
		}
		r.Timestamp = time.UnixMilli(int64(h.timestampMS))
	}

	s.commitRecv(&h, &tx, now)
	r.Plaintext = pt
	r.Skipped = len(tx.skips)
	return r, nil
}

// closed reports whether the chain has ended: its sender began a new chain
// and said how many messages this one had, so its key was deleted.
func (c *recvChain) closed() bool { return c.done }

// deriveUpTo advances c to message number n, appending the skipped keys.
func deriveUpTo(c *recvChain, n uint32, out []skipEntry) []skipEntry {
	for c.next < n {
		e := skipEntry{id: skipID{c.index, c.next}}
		kdfCK(&c.ck, &e.mk)
		out = append(out, e)
		c.next++
	}
	return out
}

// establish derives a new receiving chain from h's establishment block
// into tx (docs/spec/ratchet.md §Chain establishment).
func (s *Session) establish(h *header, tx *recvTx, now time.Time) error {
	if h.flags&flagEstablish == 0 || h.chain <= s.recvFloor {
		return ErrUnknownChain
	}
	e := &h.est
	// Bound the previous chain's skipped keys before any derivation.
	var prev *recvChain
	if p := s.recv[e.prevChain]; p != nil && !p.done {
		if e.pn > MaxChainMessages {
			return ErrTooFarAhead
		}
		prev = p
	}
	baseRoot, ok := s.recvRoots[e.base]
	if !ok {
		return ErrUnknownChain
	}
	var dhPriv *keys.RatchetDHPrivateKey
	for i := range s.ownDH {
		if s.ownDH[i].index == e.dhRef {
			dhPriv = s.ownDH[i].priv
		}
	}
	if dhPriv == nil {
		return ErrUnknownChain
	}
	var kemPriv *keys.RatchetKEMPrivateKey
	if e.hasKEM {
		for i := range s.ownKEM {
			if s.ownKEM[i].id == e.kemRef {
				kemPriv = s.ownKEM[i].priv
			}
		}
		if kemPriv == nil {
			return ErrUnknownChain
		}
	}
	pub, err := keys.NewRatchetDHPublicKey(e.dh)
	if err != nil {
		return ErrMalformed
	}
	if e.hasKEMPub {
		if tx.peerKEM, err = keys.NewRatchetKEMPublicKey(e.kemPub); err != nil {
			return ErrMalformed
		}
	}
	dh, err := dhPriv.DH(pub)
	if err != nil {
		return ErrMalformed
	}
	var ss []byte
	if kemPriv != nil {
		if ss, err = kemPriv.Decapsulate(e.kemCT); err != nil {
			return ErrMalformed
		}
	}
	sec, err := kdfRK(baseRoot, dh, ss, s.recvDir(), h.chain, e, h.flags)
	if err != nil {
		return err
	}
	tx.isNew = true
	tx.root = sec.root
	tx.chain = &recvChain{index: h.chain, ck: sec.chainKey, escrow: sec.escrowSeed}
	tx.peerDH = pub
	if prev != nil {
		pc := *prev
		tx.skips = deriveUpTo(&pc, e.pn, tx.skips)
		pc.done = true
		pc.ck = [keySize]byte{}
		tx.prev = &pc
	}
	return nil
}

// commitRecv applies tx and the header's acknowledgement.
func (s *Session) commitRecv(h *header, tx *recvTx, now time.Time) {
	if tx.usedSkip != nil {
		delete(s.skipped, *tx.usedSkip)
	}
	if tx.prev != nil {
		s.recv[tx.prev.index] = tx.prev
	}
	if tx.chain != nil {
		s.recv[tx.chain.index] = tx.chain
	}
	exp := now.Add(SkippedKeyLifetime).Unix()
	for _, e := range tx.skips {
		s.skipped[e.id] = skippedKey{mk: e.mk, expires: exp}
	}
	if len(tx.skips) > 0 && (len(s.skipped) == len(tx.skips) || exp < s.minExpiry) {
		s.minExpiry = exp
	}
	if tx.isNew {
		s.recvRoots[h.chain] = append([]byte(nil), tx.root[:]...)
		s.maxRecv = max(s.maxRecv, h.chain)
		s.peerBase = max(s.peerBase, h.est.base)
		if h.chain > s.peerDH.index || s.peerDH.pub == nil {
			s.peerDH = peerDHKey{index: h.chain, pub: tx.peerDH}
		}
		if tx.peerKEM != nil && (s.peerKEM == nil || h.est.kemPubID > s.peerKEM.id) {
			s.peerKEM = &peerKEMKey{id: h.est.kemPubID, pub: tx.peerKEM}
		}
		if h.est.hasKEM {
			if k := s.newestOwnKEM(); k != nil && k.id == h.est.kemRef {
				s.kemUsed = true
			}
		}
		s.pruneRecv()
	}
	// Acknowledgement: the peer has established our chain h.ack, so its
	// root can serve as the base of our next chains.
	if h.ack > s.peerAck && h.ack < s.nextChain {
		s.peerAck = h.ack
		s.preamble = nil
		if _, ok := s.ownRoots[h.ack]; ok && h.ack > s.base {
			s.base = h.ack
			for i := range s.ownRoots {
				if i < s.base {
					delete(s.ownRoots, i)
				}
			}
		}
	}
	s.expireSkipped(now)
	s.generation++
}

// pruneRecv bounds the receiving chains and roots (T06). Evicting a chain
// raises recvFloor, so that it can never be established again (a replay of
// its first message is then refused, not re-accepted). Past the bound the
// oldest roots go first, but the newest base the peer has declared is always
// kept, so that a sender whose peer stays silent can go on opening chains
// from it. Roots older than that base are not dropped before the bound: a
// chain the peer opened from one of them before it moved its base may still
// be in flight (T03).
func (s *Session) pruneRecv() {
	for len(s.recv) > MaxReceiveChains {
		oldest := ^uint32(0)
		for i := range s.recv {
			oldest = min(oldest, i)
		}
		delete(s.recv, oldest)
		s.recvFloor = max(s.recvFloor, oldest)
	}
	for len(s.recvRoots) > MaxReceiveChains+1 {
		oldest := ^uint32(0)
		for i := range s.recvRoots {
			if i != s.peerBase {
				oldest = min(oldest, i)
			}
		}
		delete(s.recvRoots, oldest)
	}
}

// expireSkipped drops expired skipped keys and, past MaxSkippedKeys, the
// oldest ones, leaving tombstones so that their messages are reported as
// expired (T04, T06).
func (s *Session) expireSkipped(now time.Time) {
	t := now.Unix()
	if len(s.skipped) > 0 && t >= s.minExpiry {
		s.minExpiry = 1<<63 - 1
		for id, k := range s.skipped {
			if k.expires <= t {
				s.bury(id)
			} else {
				s.minExpiry = min(s.minExpiry, k.expires)
			}
		}
	}
	for len(s.skipped) > MaxSkippedKeys {
		var oldest skipID
		first := true
		for id := range s.skipped {
			if first || id.chain < oldest.chain || (id.chain == oldest.chain && id.n < oldest.n) {
				oldest, first = id, false
			}
		}
		s.bury(oldest)
	}
}

func (s *Session) bury(id skipID) {
	delete(s.skipped, id)
	if _, ok := s.tombs[id]; !ok {
		s.tombs[id] = struct{}{}
		s.tombOrder = append(s.tombOrder, id)
		for len(s.tombOrder) > maxTombstones {
			delete(s.tombs, s.tombOrder[0])
			s.tombOrder = s.tombOrder[1:]
		}
	}
}
