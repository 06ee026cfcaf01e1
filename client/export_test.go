package client

import (
	"context"
	"slices"
	"time"
)

// RotateKeysAt runs Sync's key rotation step as if the time were now.
func (c *Client) RotateKeysAt(ctx context.Context, now time.Time) error {
	if err := c.lock(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	return c.rotateKeys(ctx, now)
}

// MediumTermKeys returns the ids of the current signed prekey,
// last-resort KEM prekey and sealed-sender key, the sealed-sender key
// ids the keyring holds, and the current sealed-sender seed.
func (c *Client) MediumTermKeys() (spk, kem, ssk uint32, ring []uint32, seed []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ring = c.ring.IDs()
	slices.Sort(ring)
	return c.dev.SignedID, c.dev.LastResortID, c.dev.SealedID, ring, slices.Clone(c.dev.SealedSeed)
}

// CertificateSerial returns the serial of the certificate the device
// holds.
func (c *Client) CertificateSerial() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dev.Serial
}
