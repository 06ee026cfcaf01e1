package kat

// Spec-level intermediates of the ratchet scenarios (docs/spec/ratchet.md
// §Initialisation, §KDF_RK, §KDF_CK and message keys, §Associated data,
// §Message format). They are recomputed here from the recorded private keys
// and randomness with the formulas of the specification, using only the
// standard library and golang.org/x/crypto, never crypto/ratchet's own
// derivations: the ML-KEM computations use crypto/mlkem, not the circl
// implementation crypto/keys wraps. The generator fails unless every
// recomputed message key, nonce and associated data opens the message the
// production code sealed, so the recomputation doubles as a check of the
// code against the specification.

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20"
	"golang.org/x/crypto/chacha20poly1305"
)

// The labels of docs/spec/ratchet.md §Labels, written out here rather than
// taken from crypto/internal/label.
const (
	specRootAB    = "moat/v1/ratchet/root/initiator-to-responder"
	specRootBA    = "moat/v1/ratchet/root/responder-to-initiator"
	specChainStep = "moat/v1/ratchet/chain-step"
	specCKMessage = "moat/v1/ck/mk"
	specCKNext    = "moat/v1/ck/ck"
	specAD        = "moat/v1/ratchet/ad"
	specAttrib    = "moat/v1/ratchet/attribution"

	specFixedHeader   = 14 // type, flags, chain, n, ack
	specEstablishment = 4*4 + 32
	specKEMCT         = 4 + mlkem.CiphertextSize768
	specKEMPub        = 4 + mlkem.EncapsulationKeySize768
)

// RatchetIntermediates are the spec-level values of a ratchet scenario,
// recomputed from the recorded keys and randomness.
type RatchetIntermediates struct {
	// RootAB and RootBA are the two initial roots (§Initialisation).
	RootAB Hex `json:"root_ab"`
	RootBA Hex `json:"root_ba"`
	// ADPrefixAB and ADPrefixBA are AD_prefix(0) and AD_prefix(1)
	// (§Associated data).
	ADPrefixAB Hex `json:"ad_prefix_initiator_to_responder"`
	ADPrefixBA Hex `json:"ad_prefix_responder_to_initiator"`
	// Chains lists every chain of the scenario in the order its first
	// message was sent.
	Chains []ChainIntermediates `json:"chains"`
}

// ChainIntermediates are the derivation of one chain and its message keys.
type ChainIntermediates struct {
	Sender    string `json:"sender"`
	Chain     uint32 `json:"chain"`
	Direction uint8  `json:"direction"`
	Base      uint32 `json:"base"`
	// BaseRoot is own_roots[base].root of the sender: root_AB or root_BA
	// for base 0, otherwise the root output of the base chain's KDF_RK.
	BaseRoot Hex `json:"base_root"`
	// DHOutput is DH(sender's ratchet key, receiver's key dh_ref).
	DHOutput Hex `json:"dh_output"`
	// KEMSharedSecret is SS, present for a chain with a KEM step.
	KEMSharedSecret Hex `json:"kem_shared_secret,omitempty"`
	// KDFRKInfo is the whole HKDF info of KDF_RK.
	KDFRKInfo Hex `json:"kdf_rk_info"`
	// Root, CK0 and EscrowSeed are the three outputs of KDF_RK.
	Root       Hex `json:"root"`
	CK0        Hex `json:"ck_0"`
	EscrowSeed Hex `json:"escrow_seed"`
	// Messages are the chain's messages in order of n.
	Messages []MessageKeys `json:"messages"`
}

// MessageKeys are the per-message values of §KDF_CK and §Associated data.
type MessageKeys struct {
	Message int    `json:"message"` // index into the scenario's messages
	N       uint32 `json:"n"`
	CK      Hex    `json:"ck"` // CK_n, the chain key MK_n is derived from
	MK      Hex    `json:"mk"`
	Nonce   Hex    `json:"nonce"`
	AD      Hex    `json:"ad"` // AD_prefix(direction) || header
}

// specState is what the recomputation keeps between messages.
type specState struct {
	inter   *RatchetIntermediates
	attrib  bool
	sigPub  map[string]ed25519.PublicKey // by party
	dhPriv  map[partyIndex][]byte        // X25519 scalars: (party, chain index)
	kemSeed map[partyIndex][]byte        // ML-KEM (d || z) seeds: (party, key id)
	chains  map[partyIndex]*specChain    // (sender, chain index)
}

type partyIndex struct {
	party string
	index uint32
}

type specChain struct {
	rec  int // index into inter.Chains
	root []byte
	ck   []byte // CK_next
	next uint32
	est  []byte // the establishment block as first sent
}

func otherParty(p string) string {
	if p == PartyInitiator {
		return PartyResponder
	}
	return PartyInitiator
}

func direction(sender string) uint8 {
	if sender == PartyInitiator {
		return 0
	}
	return 1
}

// newSpecState derives the initial roots and AD prefixes and registers the
// responder's prekeys as its DH key 0 and KEM key 0.
func (r *run) newSpecState(attributable bool) {
	hs := r.hs
	rootAB, err := hkdf.Key(sha256.New, hs.res.SharedKey, nil, specRootAB, 32)
	r.check(err)
	rootBA, err := hkdf.Key(sha256.New, hs.res.SharedKey, nil, specRootBA, 32)
	r.check(err)
	st := &specState{
		inter:  &RatchetIntermediates{RootAB: rootAB, RootBA: rootBA, Chains: []ChainIntermediates{}},
		attrib: attributable,
		sigPub: map[string]ed25519.PublicKey{
			PartyInitiator: ed25519.NewKeyFromSeed(hs.a.Signing.Seed()).Public().(ed25519.PublicKey),
			PartyResponder: ed25519.NewKeyFromSeed(hs.b.Signing.Seed()).Public().(ed25519.PublicKey),
		},
		dhPriv:  map[partyIndex][]byte{{PartyResponder, 0}: hs.spk.Bytes()},
		kemSeed: map[partyIndex][]byte{{PartyResponder, 0}: hs.kpk.Seed()},
		chains:  map[partyIndex]*specChain{},
	}
	st.inter.ADPrefixAB = specADPrefix(0, hs.res.AD, nil, attributable)
	st.inter.ADPrefixBA = specADPrefix(1, hs.res.AD, nil, attributable)
	r.spec = st
}

// specADPrefix is the ADPrefix structure of §Associated data.
func specADPrefix(dir uint8, pqxdhAD, policy []byte, attributable bool) []byte {
	b := append([]byte(specAD), dir)
	b = binary.BigEndian.AppendUint16(b, uint16(len(pqxdhAD)))
	b = append(b, pqxdhAD...)
	b = append(b, uint8(len(policy)))
	b = append(b, policy...)
	if attributable {
		return append(b, 1)
	}
	return append(b, 0)
}

// specKDFCK is KDF_CK of §KDF_CK and message keys.
func specKDFCK(ck []byte) (mk, next []byte, err error) {
	var in [16]byte
	copy(in[:], specCKMessage)
	if mk, err = chacha20.HChaCha20(ck, in[:]); err != nil {
		return nil, nil, err
	}
	in = [16]byte{}
	copy(in[:], specCKNext)
	next, err = chacha20.HChaCha20(ck, in[:])
	return mk, next, err
}

func specX25519(priv, pub []byte) ([]byte, error) {
	k, err := ecdh.X25519().NewPrivateKey(priv)
	if err != nil {
		return nil, err
	}
	p, err := ecdh.X25519().NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return k.ECDH(p)
}

func specX25519Public(priv []byte) ([]byte, error) {
	k, err := ecdh.X25519().NewPrivateKey(priv)
	if err != nil {
		return nil, err
	}
	return k.PublicKey().Bytes(), nil
}

// specMessage recomputes the intermediates of message idx, just sealed by
// the production code, and checks that they open it.
func (r *run) specMessage(idx int) {
	st := r.spec
	m := &r.v.Messages[idx]
	h := &m.Header
	sender := m.Sender
	dir := direction(sender)
	fail := func(format string, args ...any) {
		r.fail(fmt.Errorf("message %d (%s chain %d n %d): spec recomputation: %s", idx, sender, h.Chain, h.N, fmt.Sprintf(format, args...)))
	}
	key := partyIndex{sender, h.Chain}
	c := st.chains[key]
	if m.Randomness != nil {
		if c != nil {
			fail("chain begun twice")
		}
		c = r.specChain(idx, fail)
		st.chains[key] = c
	} else if c == nil {
		fail("no chain")
	}
	if h.Flags&flagEstablish != 0 && !bytes.Equal(m.Message[specFixedHeader:specFixedHeader+len(c.est)], c.est) {
		fail("establishment block differs from the chain's first message")
	}
	if h.N != c.next {
		fail("expected n = %d", c.next)
	}
	mk, next, err := specKDFCK(c.ck)
	if err != nil {
		fail("KDF_CK: %v", err)
	}
	nonce := make([]byte, chacha20poly1305.NonceSize)
	binary.BigEndian.PutUint32(nonce[8:], h.N)
	prefix := st.inter.ADPrefixAB
	if dir == 1 {
		prefix = st.inter.ADPrefixBA
	}
	hdr := m.Message[:h.Len]
	ad := append(bytes.Clone(prefix), hdr...)
	body := m.Message[h.Len:]
	if h.Flags&flagAttributed != 0 {
		if !st.attrib {
			fail("ATTRIBUTED in a session that is not attributable")
		}
		sig := body[len(body)-signatureSize:]
		body = body[:len(body)-signatureSize]
		signed := append(append([]byte(specAttrib), prefix...), m.Message[:len(m.Message)-signatureSize]...)
		if !ed25519.Verify(st.sigPub[sender], signed, sig) {
			fail("attribution signature does not verify")
		}
	} else if st.attrib {
		fail("ATTRIBUTED missing in an attributable session")
	}
	aead, err := chacha20poly1305.New(mk)
	if err != nil {
		fail("AEAD: %v", err)
	}
	pt, err := aead.Open(nil, nonce, body, ad)
	if err != nil {
		fail("the recomputed MK_n, nonce and associated data do not open the message: %v", err)
	}
	if !bytes.Equal(pt, m.Plaintext) {
		fail("opens to a different plaintext")
	}
	rec := &st.inter.Chains[c.rec]
	rec.Messages = append(rec.Messages, MessageKeys{Message: idx, N: h.N, CK: c.ck, MK: mk, Nonce: nonce, AD: ad})
	c.ck, c.next = next, c.next+1
}

// specChain recomputes the KDF_RK of the chain that message idx begins
// (§Chain establishment, §KDF_RK).
func (r *run) specChain(idx int, fail func(string, ...any)) *specChain {
	st := r.spec
	m := &r.v.Messages[idx]
	h := &m.Header
	e := h.Establishment
	sender, receiver := m.Sender, otherParty(m.Sender)
	if h.N != 0 || e == nil {
		fail("a new chain must begin with n = 0 and an establishment block")
	}

	// The sender's new ratchet key and, if it made one, its new KEM key.
	dhPriv := m.Randomness.RatchetDHPrivate
	pub, err := specX25519Public(dhPriv)
	if err != nil || !bytes.Equal(pub, e.DH) {
		fail("dh is not the public key of the recorded ratchet_dh_private (%v)", err)
	}
	st.dhPriv[partyIndex{sender, h.Chain}] = dhPriv
	if seed := m.Randomness.RatchetKEMSeed; seed != nil {
		dk, err := mlkem.NewDecapsulationKey768(seed)
		if err != nil {
			fail("ratchet_kem_seed: %v", err)
		}
		if e.KEMPubID != h.Chain || !bytes.Equal(dk.EncapsulationKey().Bytes(), h.kemPub) {
			fail("the advertised KEM key is not the key of ratchet_kem_seed with id %d", h.Chain)
		}
		st.kemSeed[partyIndex{sender, h.Chain}] = seed
	}

	// B = own_roots[base].
	var baseRoot []byte
	if e.Base == 0 {
		baseRoot = st.inter.RootAB
		if sender == PartyResponder {
			baseRoot = st.inter.RootBA
		}
	} else if b := st.chains[partyIndex{sender, e.Base}]; b != nil {
		baseRoot = b.root
	} else {
		fail("base chain %d unknown", e.Base)
	}

	// DH, computed by both sides.
	recvPriv, ok := st.dhPriv[partyIndex{receiver, e.DHRef}]
	if !ok {
		fail("the receiver has no ratchet key %d", e.DHRef)
	}
	dh, err := specX25519(recvPriv, e.DH)
	if err != nil {
		fail("DH: %v", err)
	}
	recvPub, err := specX25519Public(recvPriv)
	if err != nil {
		fail("DH: %v", err)
	}
	if dh2, err := specX25519(dhPriv, recvPub); err != nil || !bytes.Equal(dh, dh2) {
		fail("the two sides' DH outputs differ (%v)", err)
	}

	// SS: decapsulated with the receiver's key, and encapsulated again
	// with the recorded randomness.
	var ss []byte
	if h.Flags&flagKEMCT != 0 {
		seed, ok := st.kemSeed[partyIndex{receiver, e.KEMRef}]
		if !ok {
			fail("the receiver has no KEM key %d", e.KEMRef)
		}
		dk, err := mlkem.NewDecapsulationKey768(seed)
		if err != nil {
			fail("KEM key %d: %v", e.KEMRef, err)
		}
		if ss, err = dk.Decapsulate(h.kemCT); err != nil {
			fail("ML-KEM.Decaps: %v", err)
		}
		ss2, ct, err := mlkemtest.Encapsulate768(dk.EncapsulationKey(), m.Randomness.KEMEncapsulationRandomness)
		if err != nil || !bytes.Equal(ct, h.kemCT) || !bytes.Equal(ss, ss2) {
			fail("ML-KEM.Encaps with the recorded randomness does not give kem_ct and SS (%v)", err)
		}
	} else if m.Randomness.KEMEncapsulationRandomness != nil {
		fail("encapsulation randomness without KEM_CT")
	}

	// KDF_RK.
	estLen := specEstablishment
	if h.Flags&flagKEMCT != 0 {
		estLen += specKEMCT
	}
	if h.Flags&flagKEMPub != 0 {
		estLen += specKEMPub
	}
	est := m.Message[specFixedHeader : specFixedHeader+estLen]
	info := append([]byte(specChainStep), direction(sender))
	info = binary.BigEndian.AppendUint32(info, h.Chain)
	info = append(info, est...)
	out, err := hkdf.Key(sha256.New, append(bytes.Clone(dh), ss...), baseRoot, string(info), 96)
	if err != nil {
		fail("KDF_RK: %v", err)
	}
	st.inter.Chains = append(st.inter.Chains, ChainIntermediates{
		Sender: sender, Chain: h.Chain, Direction: direction(sender), Base: e.Base,
		BaseRoot: baseRoot, DHOutput: dh, KEMSharedSecret: ss, KDFRKInfo: info,
		Root: out[:32], CK0: out[32:64], EscrowSeed: out[64:],
		Messages: []MessageKeys{},
	})
	return &specChain{rec: len(st.inter.Chains) - 1, root: out[:32], ck: out[32:64], est: est}
}

// specDone checks that every recorded message was recomputed.
func (r *run) specDone() {
	n := 0
	for _, c := range r.spec.inter.Chains {
		n += len(c.Messages)
	}
	if n != len(r.v.Messages) {
		r.fail(errors.New("spec recomputation: not every message belongs to a recomputed chain"))
	}
}
