package pqxdh

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"io"

	"github.com/moat-im/moat/crypto/internal/label"
	"github.com/moat-im/moat/crypto/internal/prim"
	"github.com/moat-im/moat/crypto/keys"
)

var (
	// ErrMissingKEMPrekey is returned for a bundle without an ML-KEM prekey.
	// There is no classical fallback (docs/spec/pqxdh.md §Bundle checks).
	ErrMissingKEMPrekey = errors.New("pqxdh: bundle has no KEM prekey")
	// ErrMissingSignedPrekey is returned for a bundle without a signed prekey.
	ErrMissingSignedPrekey = errors.New("pqxdh: bundle has no signed prekey")
	// ErrUnknownPrekey is returned by Prekeys when an initial message names
	// a prekey the responder does not hold: never issued, expired, or a
	// one-time prekey already consumed by an earlier initiator.
	ErrUnknownPrekey = errors.New("pqxdh: unknown or consumed prekey")
	// ErrPrekeyMismatch is returned by Respond when the private keys given
	// do not match what the initial message names.
	ErrPrekeyMismatch = errors.New("pqxdh: private prekeys do not match the initial message")
)

// SharedKeySize is the size of SK.
const SharedKeySize = 32

// Result is the outcome of a PQXDH run, the same on both sides.
type Result struct {
	// SharedKey is SK, the 32-byte secret that seeds the ratchet.
	SharedKey []byte
	// AD is the associated data of docs/spec/pqxdh.md §Associated data:
	// label || Encode(IK_A) || Encode(IK_B) || transcript hash.
	AD []byte
	// Transcript is the SHA-256 transcript hash used as the HKDF salt.
	Transcript [32]byte
	// Initiator and Responder are the two identities.
	Initiator, Responder keys.DeviceIdentity
	// LastResortKEM reports that the responder's last-resort KEM prekey was
	// used; the responder's client flags this and replenishes one-time keys.
	LastResortKEM bool
	// OneTimePrekeyUsed reports whether DH4 was part of SK.
	OneTimePrekeyUsed bool
}

// Initiate runs the initiator's side (Signal PQXDH §3.3) against bundle b.
// It verifies both prekey signatures under b's identity signing key and
// refuses a bundle without a signed KEM prekey. It reads 32 bytes of
// ephemeral key and 32 bytes of encapsulation randomness from rand.
func Initiate(rand io.Reader, self *keys.DeviceIdentityPrivate, b *Bundle) (*InitialMessage, *Result, error) {
	if b == nil || b.Identity.Signing == nil || b.Identity.DH == nil {
		return nil, nil, ErrMalformed
	}
	if b.KEMPrekey == nil || b.KEMPrekey.Key == nil {
		return nil, nil, ErrMissingKEMPrekey
	}
	if b.SignedPrekey == nil || b.SignedPrekey.Key == nil {
		return nil, nil, ErrMissingSignedPrekey
	}
	if err := b.SignedPrekey.Verify(b.Identity.Signing); err != nil {
		return nil, nil, err
	}
	if err := b.KEMPrekey.Verify(b.Identity.Signing); err != nil {
		return nil, nil, err
	}
	ek, err := keys.GenerateEphemeralDHKey(rand)
	if err != nil {
		return nil, nil, err
	}
	ct, ss, err := b.KEMPrekey.Key.Encapsulate(rand)
	if err != nil {
		return nil, nil, err
	}
	m := &InitialMessage{
		Identity:       self.Public(),
		Ephemeral:      ek.Public(),
		SignedPrekeyID: b.SignedPrekey.ID,
		KEMPrekeyID:    b.KEMPrekey.ID,
		LastResort:     b.KEMPrekey.LastResort,
		KEMCiphertext:  ct,
	}
	// DH1 = DH(IK_A, SPK_B), DH2 = DH(EK_A, IK_B), DH3 = DH(EK_A, SPK_B),
	// DH4 = DH(EK_A, OPK_B).
	dhs := make([][]byte, 0, 4)
	for _, step := range []struct {
		priv interface {
			DH(keys.X25519PublicKey) ([]byte, error)
		}
		pub keys.X25519PublicKey
	}{
		{self.DH, b.SignedPrekey.Key},
		{ek, b.Identity.DH},
		{ek, b.SignedPrekey.Key},
	} {
		dh, err := step.priv.DH(step.pub)
		if err != nil {
			return nil, nil, err
		}
		dhs = append(dhs, dh)
	}
	var opk *keys.OneTimePrekeyPublicKey
	if b.OneTimePrekey != nil {
		id := b.OneTimePrekey.ID
		m.OneTimePrekeyID = &id
		opk = b.OneTimePrekey.Key
		dh, err := ek.DH(b.OneTimePrekey.Key)
		if err != nil {
			return nil, nil, err
		}
		dhs = append(dhs, dh)
	}
	t, err := transcript(m, b.Identity, b.SignedPrekey.Key, opk, b.KEMPrekey.Key)
	if err != nil {
		return nil, nil, err
	}
	r, err := derive(dhs, ss, t, m.Identity, b.Identity)
	if err != nil {
		return nil, nil, err
	}
	r.LastResortKEM = m.LastResort
	r.OneTimePrekeyUsed = m.OneTimePrekeyID != nil
	return m, r, nil
}

// ResponderKeys are the responder's private keys an InitialMessage names.
type ResponderKeys struct {
	SignedPrekey  *keys.SignedPrekeyPrivateKey
	OneTimePrekey *keys.OneTimePrekeyPrivateKey // nil if the message names none
	KEMPrekey     *keys.KEMPrekeyPrivateKey
}

// Respond runs the responder's side (Signal PQXDH §3.4). The caller, or
// Prekeys, finds the private prekeys m names; the caller deletes one-time
// prekeys only once the first ratchet message has decrypted.
func Respond(self *keys.DeviceIdentityPrivate, m *InitialMessage, k ResponderKeys) (*Result, error) {
	if m == nil || k.SignedPrekey == nil || k.KEMPrekey == nil {
		return nil, ErrPrekeyMismatch
	}
	if (m.OneTimePrekeyID == nil) != (k.OneTimePrekey == nil) {
		return nil, ErrPrekeyMismatch
	}
	if m.Identity.Signing == nil || m.Identity.DH == nil || m.Ephemeral == nil {
		return nil, ErrMalformed
	}
	dh1, err := k.SignedPrekey.DH(m.Identity.DH)
	if err != nil {
		return nil, err
	}
	dh2, err := self.DH.DH(m.Ephemeral)
	if err != nil {
		return nil, err
	}
	dh3, err := k.SignedPrekey.DH(m.Ephemeral)
	if err != nil {
		return nil, err
	}
	dhs := [][]byte{dh1, dh2, dh3}
	var opk *keys.OneTimePrekeyPublicKey
	if k.OneTimePrekey != nil {
		dh4, err := k.OneTimePrekey.DH(m.Ephemeral)
		if err != nil {
			return nil, err
		}
		dhs = append(dhs, dh4)
		opk = k.OneTimePrekey.Public()
	}
	ss, err := k.KEMPrekey.Decapsulate(m.KEMCiphertext)
	if err != nil {
		return nil, err
	}
	t, err := transcript(m, self.Public(), k.SignedPrekey.Public(), opk, k.KEMPrekey.Public())
	if err != nil {
		return nil, err
	}
	r, err := derive(dhs, ss, t, m.Identity, self.Public())
	if err != nil {
		return nil, err
	}
	r.LastResortKEM = m.LastResort
	r.OneTimePrekeyUsed = opk != nil
	return r, nil
}

// transcript hashes every public value of the run (docs/spec/pqxdh.md
// §Transcript): both identities, the responder's prekeys as used with
// their identifiers and the last-resort flag, EK_A and the KEM ciphertext.
// It binds SK to the exact KEM public key and ciphertext, closing the KEM
// re-encapsulation gap noted in the PQXDH analyses, and to the tagged
// (disjoint) encodings of every key. Everything the initial message says
// is in it: the initial message encoding itself, which holds the
// initiator's identity, EK_A, the prekey identifiers, the flag and the
// ciphertext, followed by the responder's keys.
func transcript(m *InitialMessage, responder keys.DeviceIdentity, spk *keys.SignedPrekeyPublicKey, opk *keys.OneTimePrekeyPublicKey, pqpk *keys.KEMPrekeyPublicKey) ([32]byte, error) {
	h := sha256.New()
	h.Write([]byte(label.PQXDHInfo))
	im, err := m.Marshal()
	if err != nil {
		return [32]byte{}, err
	}
	h.Write(im)
	h.Write(responder.Signing.Bytes())
	h.Write(responder.DH.Bytes())
	h.Write(spk.Bytes())
	if opk != nil {
		h.Write(opk.Bytes())
	} else {
		h.Write([]byte{0})
	}
	h.Write(pqpk.Bytes())
	var t [32]byte
	h.Sum(t[:0])
	return t, nil
}

// derive computes SK = HKDF(salt = transcript, IKM = F || DH1 || DH2 || DH3
// [|| DH4] || SS, info = label.PQXDHInfo), with F 32 0xFF bytes (Signal
// PQXDH §2.2 KDF), and the associated data.
func derive(dhs [][]byte, ss []byte, t [32]byte, initiator, responder keys.DeviceIdentity) (*Result, error) {
	ikm := make([]byte, 0, 32*6)
	for range 32 {
		ikm = append(ikm, 0xff)
	}
	for _, dh := range dhs {
		ikm = append(ikm, dh...)
	}
	ikm = append(ikm, ss...)
	sk, err := prim.HKDF(ikm, t[:], label.PQXDHInfo, SharedKeySize)
	if err != nil {
		return nil, err
	}
	ad := make([]byte, 0, len(label.PQXDHAD)+4*33+32)
	ad = append(ad, label.PQXDHAD...)
	ad = append(ad, initiator.Signing.Bytes()...)
	ad = append(ad, initiator.DH.Bytes()...)
	ad = append(ad, responder.Signing.Bytes()...)
	ad = append(ad, responder.DH.Bytes()...)
	ad = append(ad, t[:]...)
	return &Result{SharedKey: sk, AD: ad, Transcript: t, Initiator: initiator, Responder: responder}, nil
}

// Equal reports in constant time whether two results agree on SK and AD.
func (r *Result) Equal(o *Result) bool {
	return subtle.ConstantTimeCompare(r.SharedKey, o.SharedKey)&subtle.ConstantTimeCompare(r.AD, o.AD) == 1
}
