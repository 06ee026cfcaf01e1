package main

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/sealed"
)

// The load run's devices are derived from a random per-run seed, so that
// the generator and the relay process it starts agree on them without
// exchanging keys: the relay certifies their identities in its in-memory
// device directory and registers their delivery-token verifiers; the
// generator authenticates as them (push channels) and holds their tokens
// (sends).

// loadTenant is the tenant of every load device.
var loadTenant = [16]byte{0x10, 0xad}

// relayName is the relay's name for device authentication.
const relayName = "moat-load.relay"

// contact is the one contact whose MAC token authorises every send.
var contact = deliverytoken.ContactID{0xc0}

// loadDevice is one derived device.
type loadDevice struct {
	id, user [16]byte
	idk      *keys.DeviceIdentityPrivate
	tokens   *deliverytoken.TokenKey
}

func (d *loadDevice) mailbox() sealed.MailboxID { return sealed.NewMailboxID(loadTenant, d.id) }

// token returns the SendAuthorization a contact presents to send to d.
func (d *loadDevice) token() ([]byte, error) {
	mb := d.mailbox()
	return (&deliverytoken.SendAuthorization{Kind: deliverytoken.KindMAC, MAC: d.tokens.Token(mb, contact, 0)}).Marshal()
}

// verifier returns the verifier the relay registers for d's token.
func (d *loadDevice) verifier() deliverytoken.Verifier {
	return d.tokens.Verifier(d.mailbox(), contact, 0)
}

// derive returns 32 bytes for (label, i) under seed.
func derive(seed []byte, label string, i int) []byte {
	h := sha256.New()
	h.Write(seed)
	h.Write([]byte(label))
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(i)))
	return h.Sum(nil)
}

// deriveDevices returns devices 0..n-1 of seed.
func deriveDevices(seed []byte, n int) ([]*loadDevice, error) {
	out := make([]*loadDevice, n)
	for i := range out {
		d := &loadDevice{}
		copy(d.id[:], derive(seed, "moat-load device id", i))
		d.id[0] |= 1 // never the zero id
		copy(d.user[:], derive(seed, "moat-load user id", i))
		sk, err := keys.NewIdentitySigningKeyFromSeed(derive(seed, "moat-load identity signing", i))
		if err != nil {
			return nil, fmt.Errorf("device %d: %w", i, err)
		}
		dk, err := keys.NewIdentityDHPrivateKey(derive(seed, "moat-load identity dh", i))
		if err != nil {
			return nil, fmt.Errorf("device %d: %w", i, err)
		}
		d.idk = &keys.DeviceIdentityPrivate{Signing: sk, DH: dk}
		if d.tokens, err = deliverytoken.NewTokenKey(derive(seed, "moat-load token key", i)); err != nil {
			return nil, fmt.Errorf("device %d: %w", i, err)
		}
		out[i] = d
	}
	return out, nil
}
