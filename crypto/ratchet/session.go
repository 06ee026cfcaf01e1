package ratchet

import (
	"crypto/rand"
	"io"
	"time"

	"github.com/moat-im/moat/crypto/internal/label"
	"github.com/moat-im/moat/crypto/internal/prim"
	"github.com/moat-im/moat/crypto/keys"
	"golang.org/x/crypto/cryptobyte"
)

// Config supplies what a Session takes from its environment. It is not
// part of the serialised state.
type Config struct {
	// Rand is the source of key material; nil means crypto/rand.
	Rand io.Reader
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// SigningKey signs messages of attributable sessions; it must be the
	// identity signing key of Self. Unused otherwise.
	SigningKey *keys.IdentitySigningPrivateKey
}

func (c *Config) rand() io.Reader {
	if c.Rand == nil {
		return rand.Reader
	}
	return c.Rand
}

func (c *Config) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

// Params are the inputs both constructors share.
type Params struct {
	// SharedKey is SK from PQXDH and AD its associated data
	// (crypto/pqxdh.Result).
	SharedKey []byte
	AD        []byte
	// Self and Peer are the two device identities.
	Self, Peer keys.DeviceIdentity
	// Policy is the conversation policy identifier bound into every
	// message's associated data; empty for now, used by escrow later.
	Policy []byte
	// Attributable makes every message carry a sender signature and signed
	// timestamp, and makes the receiver require them. Such sessions are not
	// deniable; use them only where a regulated record requires it.
	Attributable bool
}

// Direction bytes (docs/spec/ratchet.md §Associated data).
const (
	dirInitiatorToResponder byte = 0
	dirResponderToInitiator byte = 1
)

const maxPolicySize = 255

// Session is one side of a 1:1 ratchet session.
type Session struct {
	cfg Config

	initiator    bool
	self, peer   keys.DeviceIdentity
	pqxdhAD      []byte
	policy       []byte
	attributable bool
	sendAD       []byte // label || dir || ... for messages we send
	recvAD       []byte // the same for messages we receive

	generation uint64 // incremented on every committed change
	mustRekey  bool   // set by Unmarshal: the next send begins a fresh KEM chain

	// Sending side.
	send      *sendChain
	nextChain uint32              // index of our next chain
	ownRoots  map[uint32]*ownRoot // roots of our chains that may become a base
	base      uint32              // our chain whose root new chains extend
	peerAck   uint32              // highest of our chains the peer has established
	ownDH     []ownDHKey          // our ratchet DH keys the peer may name, oldest first
	ownKEM    []ownKEMKey         // our ratchet KEM keys the peer may name, oldest first
	kemUsed   bool                // the peer has encapsulated to our newest KEM key
	peerDH    peerDHKey           // the peer's newest established chain key
	peerKEM   *peerKEMKey         // the peer's newest advertised KEM key
	pqCount   uint32              // messages sent since our last KEM step
	pqStart   time.Time           // time of our last KEM step (or session start)
	lastKEM   uint32              // our newest chain with a KEM step
	preamble  []byte              // PQXDH initial message, sent until acknowledged
	forceKEM  bool                // the next chain must take a KEM step

	// Receiving side.
	recv      map[uint32]*recvChain // established peer chains
	recvRoots map[uint32][]byte     // roots of peer chains the peer may extend
	maxRecv   uint32                // highest peer chain established (our ack)
	recvFloor uint32                // chains at or below this index can no longer be established
	peerBase  uint32                // newest base the peer has declared; its root is kept
	skipped   map[skipID]skippedKey
	minExpiry int64               // earliest expiry among skipped keys (unix seconds)
	tombs     map[skipID]struct{} // evicted skipped keys, for ErrExpired
	tombOrder []skipID

	// Scratch buffers, reused so the steady state does not allocate.
	adBuf []byte
}

type sendChain struct {
	index  uint32
	ck     [keySize]byte
	n      uint32
	start  time.Time
	flags  uint8 // establishment flags for this chain's headers
	est    establishment
	escrow [keySize]byte
}

type ownRoot struct {
	root    [keySize]byte
	pqChain uint32 // newest chain with a KEM step in this chain's ancestry (0: PQXDH)
}

type ownDHKey struct {
	index uint32
	priv  *keys.RatchetDHPrivateKey
}

type ownKEMKey struct {
	id   uint32
	priv *keys.RatchetKEMPrivateKey
}

type peerDHKey struct {
	index uint32
	pub   *keys.RatchetDHPublicKey
}

type peerKEMKey struct {
	id  uint32
	pub *keys.RatchetKEMPublicKey
}

type recvChain struct {
	index  uint32
	ck     [keySize]byte
	escrow [keySize]byte // KDF_RK escrow seed, for recomputing the sender's escrow blob (issue #7)
	next   uint32        // next message number expected
	done   bool          // the sender moved on; ck deleted, only skipped keys remain
}

type skipID struct{ chain, n uint32 }

type skippedKey struct {
	mk      [keySize]byte
	expires int64 // unix seconds
}

// NewInitiator creates the initiator's session after PQXDH. The
// responder's signed prekey and KEM prekey from the bundle serve as the
// responder's initial ratchet keys (its DH key 0 and KEM key 0), so that the
// initiator can take a KEM step on schedule even before the responder has
// answered (docs/spec/ratchet.md §Initialisation). preamble is the encoded
// PQXDH initial message, carried in every message until the responder
// acknowledges one.
func NewInitiator(cfg Config, p Params, peerSignedPrekey *keys.SignedPrekeyPublicKey, peerKEMPrekey *keys.KEMPrekeyPublicKey, preamble []byte) (*Session, error) {
	if peerSignedPrekey == nil || peerKEMPrekey == nil || len(preamble) == 0 || len(preamble) > MaxPreambleSize {
		return nil, ErrInvalidParams
	}
	s, err := newSession(cfg, p, true)
	if err != nil {
		return nil, err
	}
	pub, err := keys.NewRatchetDHPublicKey(peerSignedPrekey.Raw())
	if err != nil {
		return nil, err
	}
	s.peerDH = peerDHKey{index: 0, pub: pub}
	kem, err := keys.NewRatchetKEMPublicKey(peerKEMPrekey.Raw())
	if err != nil {
		return nil, err
	}
	s.peerKEM = &peerKEMKey{id: 0, pub: kem}
	s.preamble = append([]byte(nil), preamble...)
	return s, nil
}

// NewResponder creates the responder's session after PQXDH. ownSignedPrekey
// and ownKEMPrekey are the private keys of the prekeys the initiator used;
// they serve as the responder's initial ratchet keys (DH key 0 and KEM key
// 0). The session keeps its own copy of the KEM key until the initiator has
// used it and the responder has rotated past it (MaxOwnKEMKeys), so a
// one-time KEM prekey deleted from the prekey set lives on only here.
func NewResponder(cfg Config, p Params, ownSignedPrekey *keys.SignedPrekeyPrivateKey, ownKEMPrekey *keys.KEMPrekeyPrivateKey) (*Session, error) {
	if ownSignedPrekey == nil || ownKEMPrekey == nil {
		return nil, ErrInvalidParams
	}
	s, err := newSession(cfg, p, false)
	if err != nil {
		return nil, err
	}
	priv, err := keys.NewRatchetDHPrivateKey(ownSignedPrekey.Bytes())
	if err != nil {
		return nil, err
	}
	s.ownDH = []ownDHKey{{index: 0, priv: priv}}
	kem, err := keys.NewRatchetKEMPrivateKey(ownKEMPrekey.Seed())
	if err != nil {
		return nil, err
	}
	s.ownKEM = []ownKEMKey{{id: 0, priv: kem}}
	return s, nil
}

func newSession(cfg Config, p Params, initiator bool) (*Session, error) {
	if len(p.SharedKey) != keySize || len(p.AD) == 0 || len(p.AD) > 1024 || len(p.Policy) > maxPolicySize ||
		p.Self.Signing == nil || p.Self.DH == nil || p.Peer.Signing == nil || p.Peer.DH == nil {
		return nil, ErrInvalidParams
	}
	if p.Attributable && (cfg.SigningKey == nil || !cfg.SigningKey.Public().Equal(p.Self.Signing)) {
		return nil, ErrInvalidParams
	}
	ab, err := prim.HKDF(p.SharedKey, nil, label.RatchetRootAB, keySize)
	if err != nil {
		return nil, err
	}
	ba, err := prim.HKDF(p.SharedKey, nil, label.RatchetRootBA, keySize)
	if err != nil {
		return nil, err
	}
	s := &Session{
		cfg:          cfg,
		initiator:    initiator,
		self:         p.Self,
		peer:         p.Peer,
		pqxdhAD:      append([]byte(nil), p.AD...),
		policy:       append([]byte(nil), p.Policy...),
		attributable: p.Attributable,
		nextChain:    1,
		ownRoots:     map[uint32]*ownRoot{},
		recv:         map[uint32]*recvChain{},
		recvRoots:    map[uint32][]byte{},
		skipped:      map[skipID]skippedKey{},
		tombs:        map[skipID]struct{}{},
		pqStart:      cfg.now(),
	}
	sendRoot, recvRoot := ab, ba
	if !initiator {
		sendRoot, recvRoot = ba, ab
	}
	s.ownRoots[0] = &ownRoot{}
	copy(s.ownRoots[0].root[:], sendRoot)
	s.recvRoots[0] = recvRoot
	s.deriveADs()
	return s, nil
}

// deriveADs computes the two associated-data prefixes
// (docs/spec/ratchet.md §Associated data):
//
//	"moat/v1/ratchet/ad" || uint8 direction || opaque pqxdh_ad<0..2^16-1> ||
//	opaque policy<0..255> || uint8 attributable
//
// The PQXDH associated data holds both identities and the handshake
// transcript; the direction byte separates the two directions.
func (s *Session) deriveADs() {
	mk := func(dir byte) []byte {
		var c cryptobyte.Builder
		c.AddBytes([]byte(label.RatchetAD))
		c.AddUint8(dir)
		c.AddUint16LengthPrefixed(func(c *cryptobyte.Builder) { c.AddBytes(s.pqxdhAD) })
		c.AddUint8LengthPrefixed(func(c *cryptobyte.Builder) { c.AddBytes(s.policy) })
		c.AddUint8(boolByte(s.attributable))
		return c.BytesOrPanic()
	}
	out, in := dirInitiatorToResponder, dirResponderToInitiator
	if !s.initiator {
		out, in = in, out
	}
	s.sendAD, s.recvAD = mk(out), mk(in)
}

func (s *Session) sendDir() byte {
	if s.initiator {
		return dirInitiatorToResponder
	}
	return dirResponderToInitiator
}

func (s *Session) recvDir() byte { return 1 - s.sendDir() }

// Generation returns the state's generation counter. A caller that stores
// sessions records it outside the store (or in a rollback-resistant place)
// and passes it to Unmarshal.
func (s *Session) Generation() uint64 { return s.generation }

// Peer returns the peer's identity.
func (s *Session) Peer() keys.DeviceIdentity { return s.peer }

// ForceKEMStep makes the next message begin a new chain with a KEM step,
// whatever the schedule. Escrow uses it to bound each chain to a day; a
// client may use it after a suspected compromise.
func (s *Session) ForceKEMStep() { s.forceKEM = true; s.generation++ }

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
