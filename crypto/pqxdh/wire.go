package pqxdh

// Wire formats of docs/spec/pqxdh.md §Encodings, in TLS presentation
// language, read and written with cryptobyte. Parsing is strict: fixed
// lengths, known tags only, no trailing bytes.

import (
	"errors"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"golang.org/x/crypto/cryptobyte"
)

// Message type bytes. They start every PQXDH encoding and are distinct from
// every key tag in crypto/keys, so that no two encodings overlap.
const (
	typeBundle         = 0x21
	typeInitialMessage = 0x22
	version            = 1
)

// Encoded sizes of the tagged keys.
const (
	x25519Tagged  = 1 + 32
	ed25519Tagged = 1 + 32
	kemTagged     = 1 + keys.KEMPublicKeySize
	sigSize       = 64
)

// ErrMalformed is returned for any encoding that does not parse.
var ErrMalformed = errors.New("pqxdh: malformed encoding")

// Bundle is a responder device's published key bundle (Signal PQXDH §3.2):
// its identity keys, a signed X25519 prekey, an optional one-time X25519
// prekey, and a signed ML-KEM-768 prekey, one-time where available, else the
// flagged last-resort one.
type Bundle struct {
	Identity      keys.DeviceIdentity
	SignedPrekey  *keys.SignedPrekey
	OneTimePrekey *OneTimePrekey // optional
	KEMPrekey     *keys.KEMPrekey
}

// OneTimePrekey is a published one-time X25519 prekey and its identifier.
type OneTimePrekey struct {
	ID  uint32
	Key *keys.OneTimePrekeyPublicKey
}

// InitialMessage is what an initiator sends ahead of its first ratchet
// messages (Signal PQXDH §3.3): its identity, ephemeral key, the prekeys it
// used, and the KEM ciphertext.
type InitialMessage struct {
	Identity        keys.DeviceIdentity
	Ephemeral       *keys.EphemeralDHPublicKey
	SignedPrekeyID  uint32
	OneTimePrekeyID *uint32 // nil when the bundle had none
	KEMPrekeyID     uint32
	LastResort      bool // the KEM prekey used was the last-resort one
	KEMCiphertext   []byte
}

//	struct {
//	    uint8 type = 0x21;
//	    uint8 version = 1;
//	    opaque identity_signing[33];   /* tagged Ed25519 key */
//	    opaque identity_dh[33];        /* tagged X25519 key */
//	    uint32 spk_id; uint64 spk_created; opaque spk[33]; opaque spk_sig[64];
//	    uint8 has_opk;                 /* 0 or 1 */
//	    select (has_opk) { case 1: uint32 opk_id; opaque opk[33]; };
//	    uint32 pqpk_id; uint64 pqpk_created; uint8 pqpk_last_resort;
//	    opaque pqpk[1185]; opaque pqpk_sig[64];
//	} Bundle;

// Marshal returns the Bundle encoding. A bundle without its signed prekey or
// KEM prekey cannot be encoded.
func (b *Bundle) Marshal() ([]byte, error) {
	if b.SignedPrekey == nil || b.SignedPrekey.Key == nil {
		return nil, ErrMissingSignedPrekey
	}
	if b.KEMPrekey == nil || b.KEMPrekey.Key == nil {
		return nil, ErrMissingKEMPrekey
	}
	if b.Identity.Signing == nil || b.Identity.DH == nil || b.SignedPrekey.Created.Unix() < 0 || b.KEMPrekey.Created.Unix() < 0 {
		return nil, ErrMalformed
	}
	var c cryptobyte.Builder
	c.AddUint8(typeBundle)
	c.AddUint8(version)
	c.AddBytes(b.Identity.Signing.Bytes())
	c.AddBytes(b.Identity.DH.Bytes())
	c.AddUint32(b.SignedPrekey.ID)
	c.AddUint64(uint64(b.SignedPrekey.Created.Unix()))
	c.AddBytes(b.SignedPrekey.Key.Bytes())
	c.AddBytes(b.SignedPrekey.Signature)
	if b.OneTimePrekey != nil {
		c.AddUint8(1)
		c.AddUint32(b.OneTimePrekey.ID)
		c.AddBytes(b.OneTimePrekey.Key.Bytes())
	} else {
		c.AddUint8(0)
	}
	c.AddUint32(b.KEMPrekey.ID)
	c.AddUint64(uint64(b.KEMPrekey.Created.Unix()))
	c.AddUint8(boolByte(b.KEMPrekey.LastResort))
	c.AddBytes(b.KEMPrekey.Key.Bytes())
	c.AddBytes(b.KEMPrekey.Signature)
	if len(b.SignedPrekey.Signature) != sigSize || len(b.KEMPrekey.Signature) != sigSize {
		return nil, ErrMalformed
	}
	return c.Bytes()
}

// ParseBundle parses a Bundle encoding. It checks encodings only; Initiate
// checks the signatures.
func ParseBundle(data []byte) (*Bundle, error) {
	s := cryptobyte.String(data)
	var typ, ver, hasOPK, lastResort uint8
	var idSig, idDH, spk, spkSig, pqpk, pqpkSig []byte
	var spkID, pqpkID uint32
	var spkCreated, pqpkCreated uint64
	if !s.ReadUint8(&typ) || typ != typeBundle || !s.ReadUint8(&ver) || ver != version ||
		!s.ReadBytes(&idSig, ed25519Tagged) || !s.ReadBytes(&idDH, x25519Tagged) ||
		!s.ReadUint32(&spkID) || !s.ReadUint64(&spkCreated) || !s.ReadBytes(&spk, x25519Tagged) ||
		!s.ReadBytes(&spkSig, sigSize) || !s.ReadUint8(&hasOPK) || hasOPK > 1 {
		return nil, ErrMalformed
	}
	b := &Bundle{}
	if hasOPK == 1 {
		var id uint32
		var opk []byte
		if !s.ReadUint32(&id) || !s.ReadBytes(&opk, x25519Tagged) {
			return nil, ErrMalformed
		}
		k, err := keys.ParseOneTimePrekeyPublicKey(opk)
		if err != nil {
			return nil, wrapKey(err)
		}
		b.OneTimePrekey = &OneTimePrekey{ID: id, Key: k}
	}
	if !s.ReadUint32(&pqpkID) || !s.ReadUint64(&pqpkCreated) || !s.ReadUint8(&lastResort) || lastResort > 1 ||
		!s.ReadBytes(&pqpk, kemTagged) || !s.ReadBytes(&pqpkSig, sigSize) || !s.Empty() {
		return nil, ErrMalformed
	}
	if spkCreated > maxUnix || pqpkCreated > maxUnix {
		return nil, ErrMalformed
	}
	var err error
	if b.Identity, err = parseIdentity(idSig, idDH); err != nil {
		return nil, err
	}
	spkKey, err := keys.ParseSignedPrekeyPublicKey(spk)
	if err != nil {
		return nil, wrapKey(err)
	}
	b.SignedPrekey = &keys.SignedPrekey{ID: spkID, Created: time.Unix(int64(spkCreated), 0).UTC(), Key: spkKey, Signature: clone(spkSig)}
	kemKey, err := keys.ParseKEMPrekeyPublicKey(pqpk)
	if err != nil {
		return nil, wrapKey(err)
	}
	b.KEMPrekey = &keys.KEMPrekey{ID: pqpkID, Created: time.Unix(int64(pqpkCreated), 0).UTC(), LastResort: lastResort == 1, Key: kemKey, Signature: clone(pqpkSig)}
	return b, nil
}

//	struct {
//	    uint8 type = 0x22;
//	    uint8 version = 1;
//	    opaque identity_signing[33];
//	    opaque identity_dh[33];
//	    opaque ephemeral[33];          /* tagged X25519 ephemeral key EK_A */
//	    uint32 spk_id;
//	    uint8 has_opk;
//	    select (has_opk) { case 1: uint32 opk_id; };
//	    uint32 pqpk_id;
//	    uint8 last_resort;
//	    opaque kem_ciphertext[1088];
//	} InitialMessage;

// Marshal returns the InitialMessage encoding.
func (m *InitialMessage) Marshal() ([]byte, error) {
	if m.Identity.Signing == nil || m.Identity.DH == nil || m.Ephemeral == nil || len(m.KEMCiphertext) != keys.KEMCiphertextSize {
		return nil, ErrMalformed
	}
	var c cryptobyte.Builder
	c.AddUint8(typeInitialMessage)
	c.AddUint8(version)
	c.AddBytes(m.Identity.Signing.Bytes())
	c.AddBytes(m.Identity.DH.Bytes())
	c.AddBytes(m.Ephemeral.Bytes())
	c.AddUint32(m.SignedPrekeyID)
	if m.OneTimePrekeyID != nil {
		c.AddUint8(1)
		c.AddUint32(*m.OneTimePrekeyID)
	} else {
		c.AddUint8(0)
	}
	c.AddUint32(m.KEMPrekeyID)
	c.AddUint8(boolByte(m.LastResort))
	c.AddBytes(m.KEMCiphertext)
	return c.Bytes()
}

// ParseInitialMessage parses an InitialMessage encoding.
func ParseInitialMessage(data []byte) (*InitialMessage, error) {
	s := cryptobyte.String(data)
	var typ, ver, hasOPK, lastResort uint8
	var idSig, idDH, eph, ct []byte
	m := &InitialMessage{}
	if !s.ReadUint8(&typ) || typ != typeInitialMessage || !s.ReadUint8(&ver) || ver != version ||
		!s.ReadBytes(&idSig, ed25519Tagged) || !s.ReadBytes(&idDH, x25519Tagged) ||
		!s.ReadBytes(&eph, x25519Tagged) || !s.ReadUint32(&m.SignedPrekeyID) ||
		!s.ReadUint8(&hasOPK) || hasOPK > 1 {
		return nil, ErrMalformed
	}
	if hasOPK == 1 {
		var id uint32
		if !s.ReadUint32(&id) {
			return nil, ErrMalformed
		}
		m.OneTimePrekeyID = &id
	}
	if !s.ReadUint32(&m.KEMPrekeyID) || !s.ReadUint8(&lastResort) || lastResort > 1 ||
		!s.ReadBytes(&ct, keys.KEMCiphertextSize) || !s.Empty() {
		return nil, ErrMalformed
	}
	m.LastResort = lastResort == 1
	m.KEMCiphertext = clone(ct)
	var err error
	if m.Identity, err = parseIdentity(idSig, idDH); err != nil {
		return nil, err
	}
	if m.Ephemeral, err = keys.ParseEphemeralDHPublicKey(eph); err != nil {
		return nil, wrapKey(err)
	}
	return m, nil
}

// maxUnix bounds timestamps so that they convert to int64 without overflow.
const maxUnix = 1<<63 - 1

func parseIdentity(sig, dh []byte) (keys.DeviceIdentity, error) {
	s, err := keys.ParseIdentitySigningPublicKey(sig)
	if err != nil {
		return keys.DeviceIdentity{}, wrapKey(err)
	}
	d, err := keys.ParseIdentityDHPublicKey(dh)
	if err != nil {
		return keys.DeviceIdentity{}, wrapKey(err)
	}
	return keys.DeviceIdentity{Signing: s, DH: d}, nil
}

// KeyError wraps a crypto/keys decoding error met while parsing, so callers
// can tell a bad key (errors.Is against the keys sentinel) from a bad frame.
type KeyError struct{ Err error }

func (e *KeyError) Error() string { return "pqxdh: " + e.Err.Error() }
func (e *KeyError) Unwrap() error { return e.Err }

func wrapKey(err error) error { return &KeyError{Err: err} }

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }
