package ratchet

// Serialised session state (docs/spec/ratchet.md §State encoding). The
// encoding is deterministic (maps in index order) and versioned, and
// carries the generation counter so that a rolled-back store is detected.

import (
	"errors"
	"slices"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"golang.org/x/crypto/cryptobyte"
)

// stateType starts the state encoding (version 1); see messageType.
const stateType = 0x24

// ErrBadState is returned by Unmarshal for an encoding that does not parse
// or breaks a bound.
var ErrBadState = errors.New("ratchet: malformed session state")

// Marshal serialises the session, secrets included. Store the result
// encrypted, and record Generation() where a rollback of the store cannot
// reach it.
func (s *Session) Marshal() []byte {
	var b cryptobyte.Builder
	b.AddUint8(stateType)
	b.AddUint64(s.generation)
	b.AddUint8(boolByte(s.initiator))
	b.AddUint8(boolByte(s.attributable))
	b.AddUint8(boolByte(s.forceKEM))
	b.AddBytes(s.self.Signing.Bytes())
	b.AddBytes(s.self.DH.Bytes())
	b.AddBytes(s.peer.Signing.Bytes())
	b.AddBytes(s.peer.DH.Bytes())
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(s.pqxdhAD) })
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(s.policy) })

	b.AddUint8(boolByte(s.send != nil))
	if c := s.send; c != nil {
		b.AddUint32(c.index)
		b.AddBytes(c.ck[:])
		b.AddUint32(c.n)
		b.AddUint64(uint64(c.start.UnixNano()))
		b.AddUint8(c.flags)
		b.AddBytes(appendEstablishment(nil, &c.est, c.flags))
		b.AddBytes(c.escrow[:])
	}
	b.AddUint32(s.nextChain)
	b.AddUint32(s.base)
	b.AddUint32(s.peerAck)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, i := range sortedKeys(s.ownRoots) {
			b.AddUint32(i)
			b.AddBytes(s.ownRoots[i].root[:])
			b.AddUint32(s.ownRoots[i].pqChain)
		}
	})
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, k := range s.ownDH {
			b.AddUint32(k.index)
			b.AddBytes(k.priv.Bytes())
		}
	})
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, k := range s.ownKEM {
			b.AddUint32(k.id)
			b.AddBytes(k.priv.Seed())
		}
	})
	b.AddUint8(boolByte(s.kemUsed))
	b.AddUint32(s.peerDH.index)
	b.AddUint8(boolByte(s.peerDH.pub != nil))
	if s.peerDH.pub != nil {
		b.AddBytes(s.peerDH.pub.Raw())
	}
	b.AddUint8(boolByte(s.peerKEM != nil))
	if s.peerKEM != nil {
		b.AddUint32(s.peerKEM.id)
		b.AddBytes(s.peerKEM.pub.Raw())
	}
	b.AddUint32(s.pqCount)
	b.AddUint64(uint64(s.pqStart.UnixNano()))
	b.AddUint32(s.lastKEM)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(s.preamble) })

	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, i := range sortedKeys(s.recv) {
			c := s.recv[i]
			b.AddUint32(c.index)
			b.AddBytes(c.ck[:])
			b.AddUint32(c.next)
			b.AddBytes(c.escrow[:])
			b.AddUint8(boolByte(c.done))
		}
	})
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, i := range sortedKeys(s.recvRoots) {
			b.AddUint32(i)
			b.AddBytes(s.recvRoots[i])
		}
	})
	b.AddUint32(s.maxRecv)
	b.AddUint32(s.recvFloor)
	b.AddUint32(s.peerBase)
	ids := make([]skipID, 0, len(s.skipped))
	for id := range s.skipped {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, cmpSkip)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, id := range ids {
			k := s.skipped[id]
			b.AddUint32(id.chain)
			b.AddUint32(id.n)
			b.AddBytes(k.mk[:])
			b.AddUint64(uint64(k.expires))
		}
	})
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, id := range s.tombOrder {
			b.AddUint32(id.chain)
			b.AddUint32(id.n)
		}
	})
	return b.BytesOrPanic()
}

// Unmarshal restores a session serialised by Marshal. minGeneration is the
// highest generation the caller has seen for this session (0 if none): an
// older state is ErrRollback (T13). A restored session begins a fresh chain,
// with a KEM step where possible and a random jump in chain index, before it
// sends again, so that even an undetected rollback reuses no message key.
func Unmarshal(cfg Config, data []byte, minGeneration uint64) (*Session, error) {
	s, err := parseState(data)
	if err != nil {
		return nil, err
	}
	if s.generation < minGeneration {
		return nil, ErrRollback
	}
	if s.attributable && (cfg.SigningKey == nil || !cfg.SigningKey.Public().Equal(s.self.Signing)) {
		return nil, ErrInvalidParams
	}
	s.cfg = cfg
	s.mustRekey = true
	s.deriveADs()
	return s, nil
}

func parseState(data []byte) (*Session, error) {
	in := cryptobyte.String(data)
	s := &Session{
		ownRoots:  map[uint32]*ownRoot{},
		recv:      map[uint32]*recvChain{},
		recvRoots: map[uint32][]byte{},
		skipped:   map[skipID]skippedKey{},
		tombs:     map[skipID]struct{}{},
		minExpiry: 0,
	}
	bad := ErrBadState
	var ver, initiator, attributable, forceKEM, hasSend uint8
	var selfSig, selfDH, peerSig, peerDH []byte
	var pqxdhAD, policy cryptobyte.String
	if !in.ReadUint8(&ver) || ver != stateType || !in.ReadUint64(&s.generation) ||
		!readBool(&in, &initiator) || !readBool(&in, &attributable) || !readBool(&in, &forceKEM) ||
		!in.ReadBytes(&selfSig, 33) || !in.ReadBytes(&selfDH, 33) || !in.ReadBytes(&peerSig, 33) || !in.ReadBytes(&peerDH, 33) ||
		!in.ReadUint16LengthPrefixed(&pqxdhAD) || len(pqxdhAD) == 0 || len(pqxdhAD) > 1024 ||
		!in.ReadUint8LengthPrefixed(&policy) || !readBool(&in, &hasSend) {
		return nil, bad
	}
	s.initiator, s.attributable, s.forceKEM = initiator == 1, attributable == 1, forceKEM == 1
	s.pqxdhAD, s.policy = append([]byte(nil), pqxdhAD...), append([]byte(nil), policy...)
	var err error
	if s.self.Signing, err = keys.ParseIdentitySigningPublicKey(selfSig); err != nil {
		return nil, bad
	}
	if s.self.DH, err = keys.ParseIdentityDHPublicKey(selfDH); err != nil {
		return nil, bad
	}
	if s.peer.Signing, err = keys.ParseIdentitySigningPublicKey(peerSig); err != nil {
		return nil, bad
	}
	if s.peer.DH, err = keys.ParseIdentityDHPublicKey(peerDH); err != nil {
		return nil, bad
	}
	if hasSend == 1 {
		c := &sendChain{}
		var ck, escrow []byte
		var start uint64
		if !in.ReadUint32(&c.index) || c.index == 0 || !in.ReadBytes(&ck, keySize) || !in.ReadUint32(&c.n) || c.n > MaxChainMessages ||
			!in.ReadUint64(&start) || !in.ReadUint8(&c.flags) || !readEstablishment(&in, &c.est, c.flags) ||
			!in.ReadBytes(&escrow, keySize) {
			return nil, bad
		}
		copy(c.ck[:], ck)
		copy(c.escrow[:], escrow)
		c.start = time.Unix(0, int64(start)).UTC()
		s.send = c
	}
	var ownRoots, ownDH, ownKEM, preamble, recv, recvRoots cryptobyte.String
	var kemUsed, hasPeerDH, hasPeerKEM uint8
	var pqStart uint64
	if !in.ReadUint32(&s.nextChain) || s.nextChain == 0 || !in.ReadUint32(&s.base) || !in.ReadUint32(&s.peerAck) ||
		!in.ReadUint16LengthPrefixed(&ownRoots) {
		return nil, bad
	}
	// Maps are encoded in strictly ascending index order, and skipped keys
	// in ascending (chain, n) order; any other order is a non-canonical
	// encoding and rejected (§State encoding).
	var last uint32
	for !ownRoots.Empty() {
		var i uint32
		var root []byte
		r := &ownRoot{}
		if !ownRoots.ReadUint32(&i) || !ownRoots.ReadBytes(&root, keySize) || !ownRoots.ReadUint32(&r.pqChain) ||
			(len(s.ownRoots) > 0 && i <= last) {
			return nil, bad
		}
		copy(r.root[:], root)
		s.ownRoots[i], last = r, i
	}
	if s.ownRoots[s.base] == nil || len(s.ownRoots) > MaxUnackedChains+1 || !in.ReadUint16LengthPrefixed(&ownDH) {
		return nil, bad
	}
	for !ownDH.Empty() {
		var i uint32
		var raw []byte
		if !ownDH.ReadUint32(&i) || !ownDH.ReadBytes(&raw, 32) {
			return nil, bad
		}
		k, err := keys.NewRatchetDHPrivateKey(raw)
		if err != nil {
			return nil, bad
		}
		s.ownDH = append(s.ownDH, ownDHKey{index: i, priv: k})
	}
	if len(s.ownDH) > MaxOwnDHKeys || !in.ReadUint16LengthPrefixed(&ownKEM) {
		return nil, bad
	}
	for !ownKEM.Empty() {
		var i uint32
		var seed []byte
		if !ownKEM.ReadUint32(&i) || !ownKEM.ReadBytes(&seed, keys.KEMSeedSize) {
			return nil, bad
		}
		k, err := keys.NewRatchetKEMPrivateKey(seed)
		if err != nil {
			return nil, bad
		}
		s.ownKEM = append(s.ownKEM, ownKEMKey{id: i, priv: k})
	}
	if len(s.ownKEM) > MaxOwnKEMKeys || !readBool(&in, &kemUsed) || !in.ReadUint32(&s.peerDH.index) || !readBool(&in, &hasPeerDH) {
		return nil, bad
	}
	s.kemUsed = kemUsed == 1
	if hasPeerDH == 1 {
		var raw []byte
		if !in.ReadBytes(&raw, 32) {
			return nil, bad
		}
		if s.peerDH.pub, err = keys.NewRatchetDHPublicKey(raw); err != nil {
			return nil, bad
		}
	}
	if !readBool(&in, &hasPeerKEM) {
		return nil, bad
	}
	if hasPeerKEM == 1 {
		var id uint32
		var raw []byte
		if !in.ReadUint32(&id) || !in.ReadBytes(&raw, keys.KEMPublicKeySize) {
			return nil, bad
		}
		pub, err := keys.NewRatchetKEMPublicKey(raw)
		if err != nil {
			return nil, bad
		}
		s.peerKEM = &peerKEMKey{id: id, pub: pub}
	}
	if !in.ReadUint32(&s.pqCount) || !in.ReadUint64(&pqStart) || !in.ReadUint32(&s.lastKEM) ||
		!in.ReadUint16LengthPrefixed(&preamble) || len(preamble) > MaxPreambleSize || !in.ReadUint16LengthPrefixed(&recv) {
		return nil, bad
	}
	s.pqStart = time.Unix(0, int64(pqStart)).UTC()
	if len(preamble) > 0 {
		s.preamble = append([]byte(nil), preamble...)
	}
	for !recv.Empty() {
		c := &recvChain{}
		var ck, escrow []byte
		var done uint8
		if !recv.ReadUint32(&c.index) || !recv.ReadBytes(&ck, keySize) || !recv.ReadUint32(&c.next) || c.next > MaxChainMessages ||
			!recv.ReadBytes(&escrow, keySize) || !readBool(&recv, &done) || (len(s.recv) > 0 && c.index <= last) {
			return nil, bad
		}
		copy(c.ck[:], ck)
		copy(c.escrow[:], escrow)
		c.done = done == 1
		s.recv[c.index], last = c, c.index
	}
	if len(s.recv) > MaxReceiveChains || !in.ReadUint16LengthPrefixed(&recvRoots) {
		return nil, bad
	}
	for !recvRoots.Empty() {
		var i uint32
		var root []byte
		if !recvRoots.ReadUint32(&i) || !recvRoots.ReadBytes(&root, keySize) || (len(s.recvRoots) > 0 && i <= last) {
			return nil, bad
		}
		s.recvRoots[i], last = append([]byte(nil), root...), i
	}
	var skipped, tombs cryptobyte.String
	if len(s.recvRoots) > MaxReceiveChains+1 || !in.ReadUint32(&s.maxRecv) || !in.ReadUint32(&s.recvFloor) || !in.ReadUint32(&s.peerBase) ||
		!in.ReadUint24LengthPrefixed(&skipped) {
		return nil, bad
	}
	var lastID skipID
	for !skipped.Empty() {
		var id skipID
		var mk []byte
		var exp uint64
		if !skipped.ReadUint32(&id.chain) || !skipped.ReadUint32(&id.n) || !skipped.ReadBytes(&mk, keySize) || !skipped.ReadUint64(&exp) {
			return nil, bad
		}
		if (len(s.skipped) > 0 && cmpSkip(id, lastID) <= 0) || len(s.skipped) >= MaxSkippedKeys {
			return nil, bad
		}
		k := skippedKey{expires: int64(exp)}
		copy(k.mk[:], mk)
		s.skipped[id], lastID = k, id
	}
	if !in.ReadUint24LengthPrefixed(&tombs) {
		return nil, bad
	}
	for !tombs.Empty() {
		var id skipID
		if !tombs.ReadUint32(&id.chain) || !tombs.ReadUint32(&id.n) {
			return nil, bad
		}
		if _, dup := s.tombs[id]; dup || len(s.tombOrder) >= maxTombstones {
			return nil, bad
		}
		s.tombs[id] = struct{}{}
		s.tombOrder = append(s.tombOrder, id)
	}
	if !in.Empty() {
		return nil, bad
	}
	// minExpiry = 0 makes the next commit rescan the skipped keys.
	return s, nil
}

func readBool(s *cryptobyte.String, out *uint8) bool { return s.ReadUint8(out) && *out <= 1 }

func readEstablishment(s *cryptobyte.String, e *establishment, flags uint8) bool {
	if flags&^(flagEstablish|flagKEMCT|flagKEMPub) != 0 || flags&flagEstablish == 0 {
		return false
	}
	if !s.ReadUint32(&e.base) || !s.ReadUint32(&e.prevChain) || !s.ReadUint32(&e.pn) || !s.ReadUint32(&e.dhRef) ||
		!s.ReadBytes(&e.dh, dhSize) {
		return false
	}
	e.dh = append([]byte(nil), e.dh...)
	if flags&flagKEMCT != 0 {
		e.hasKEM = true
		if !s.ReadUint32(&e.kemRef) || !s.ReadBytes(&e.kemCT, keys.KEMCiphertextSize) {
			return false
		}
		e.kemCT = append([]byte(nil), e.kemCT...)
	}
	if flags&flagKEMPub != 0 {
		e.hasKEMPub = true
		if !s.ReadUint32(&e.kemPubID) || !s.ReadBytes(&e.kemPub, keys.KEMPublicKeySize) {
			return false
		}
		e.kemPub = append([]byte(nil), e.kemPub...)
	}
	return true
}

func sortedKeys[V any](m map[uint32]V) []uint32 {
	out := make([]uint32, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func cmpSkip(a, b skipID) int {
	if a.chain != b.chain {
		if a.chain < b.chain {
			return -1
		}
		return 1
	}
	if a.n < b.n {
		return -1
	} else if a.n > b.n {
		return 1
	}
	return 0
}
