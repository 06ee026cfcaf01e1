package pqxdh

import "github.com/moat-im/moat/crypto/keys"

// Prekeys is a responder device's set of private prekeys, in memory. It
// hands out the keys an InitialMessage names and deletes one-time keys when
// told a session from them was established, so that a one-time prekey
// handed to two initiators serves only the first (adversarial case T09).
//
// The client keeps Prekeys inside its encrypted store; this type does no I/O
// and is not safe for concurrent use.
type Prekeys struct {
	signed  map[uint32]*keys.SignedPrekeyPrivateKey
	oneTime map[uint32]*keys.OneTimePrekeyPrivateKey
	kem     map[uint32]kemPrekey
}

type kemPrekey struct {
	key        *keys.KEMPrekeyPrivateKey
	lastResort bool
}

// NewPrekeys returns an empty set.
func NewPrekeys() *Prekeys {
	return &Prekeys{
		signed:  map[uint32]*keys.SignedPrekeyPrivateKey{},
		oneTime: map[uint32]*keys.OneTimePrekeyPrivateKey{},
		kem:     map[uint32]kemPrekey{},
	}
}

// AddSignedPrekey adds a signed prekey's private key under its id.
func (p *Prekeys) AddSignedPrekey(id uint32, k *keys.SignedPrekeyPrivateKey) { p.signed[id] = k }

// RemoveSignedPrekey deletes a retired signed prekey.
func (p *Prekeys) RemoveSignedPrekey(id uint32) { delete(p.signed, id) }

// AddOneTimePrekey adds a one-time X25519 prekey.
func (p *Prekeys) AddOneTimePrekey(id uint32, k *keys.OneTimePrekeyPrivateKey) { p.oneTime[id] = k }

// AddKEMPrekey adds an ML-KEM prekey, one-time or last-resort.
func (p *Prekeys) AddKEMPrekey(id uint32, k *keys.KEMPrekeyPrivateKey, lastResort bool) {
	p.kem[id] = kemPrekey{key: k, lastResort: lastResort}
}

// OneTimeCount returns how many one-time X25519 and KEM prekeys remain, so
// the client knows when to replenish.
func (p *Prekeys) OneTimeCount() (x25519, kem int) {
	for _, k := range p.kem {
		if !k.lastResort {
			kem++
		}
	}
	return len(p.oneTime), kem
}

// Lookup returns the private keys m names without consuming them. It fails
// with ErrUnknownPrekey for any key not held, and for a message whose
// last-resort flag disagrees with the key it names.
func (p *Prekeys) Lookup(m *InitialMessage) (ResponderKeys, error) {
	var k ResponderKeys
	var ok bool
	if k.SignedPrekey, ok = p.signed[m.SignedPrekeyID]; !ok {
		return ResponderKeys{}, ErrUnknownPrekey
	}
	if m.OneTimePrekeyID != nil {
		if k.OneTimePrekey, ok = p.oneTime[*m.OneTimePrekeyID]; !ok {
			return ResponderKeys{}, ErrUnknownPrekey
		}
	}
	kp, ok := p.kem[m.KEMPrekeyID]
	if !ok || kp.lastResort != m.LastResort {
		return ResponderKeys{}, ErrUnknownPrekey
	}
	k.KEMPrekey = kp.key
	return k, nil
}

// Consume deletes the one-time prekeys m used. Call it once the session
// from m has decrypted its first message; the last-resort KEM prekey and
// the signed prekey stay.
func (p *Prekeys) Consume(m *InitialMessage) {
	if m.OneTimePrekeyID != nil {
		delete(p.oneTime, *m.OneTimePrekeyID)
	}
	if kp, ok := p.kem[m.KEMPrekeyID]; ok && !kp.lastResort {
		delete(p.kem, m.KEMPrekeyID)
	}
}
