package client

import (
	"context"
	"fmt"

	"github.com/moat-im/moat/client/localstore"
	"github.com/moat-im/moat/keyserver/org"
)

// Following the organisation's trust-bundle changes (docs/spec/directory.md
// §Following transitions): a CA rotation, a log-key rotation or a new
// witness set is a transition the directory publishes, each verified under
// the bundle before it; the device re-pins to the last one. It does so
// when Run connects and whenever a directory answer or a wipe instruction
// does not verify under the bundle it holds, then tries once more.

// followTrust follows the directory's transitions after the pinned trust
// bundle and saves the new bundle and directory state. moved reports
// whether the pinned bundle changed. A refused transition leaves the
// client as it was. c.mu is held.
func (c *Client) followTrust(ctx context.Context) (moved bool, err error) {
	before := c.kt.Bundle()
	resp, err := c.dir.Transitions(ctx, before.Sequence, c.kt.TreeSize())
	if err != nil {
		return false, fmt.Errorf("client: fetching trust transitions: %w", err)
	}
	if len(resp.Transitions) == 0 {
		return false, nil
	}
	nb, err := c.kt.FollowTransitions(resp, c.now())
	if err != nil {
		return false, fmt.Errorf("client: following trust transitions: %w", err)
	}
	if nb.Sequence == before.Sequence {
		return false, nil
	}
	c.log.Info("following the organisation's new trust bundle", "sequence", nb.Sequence)
	if c.inTx {
		return true, nil // the enclosing update saves it (saveDevice)
	}
	// A CA rotation re-issued this device's certificate: adopt it.
	if _, err := c.lookup(ctx, c.dev.User); err != nil {
		c.log.Warn("looking up this device's own user after a trust-bundle change failed", "err", err)
	}
	return true, c.update(func(localstore.Tx) error { return nil })
}

// syncTrustBundle sets the device record's pinned bundle to the one the
// directory client holds, before both are saved together (saveDevice).
func (c *Client) syncTrustBundle() error {
	b := c.kt.Bundle()
	if b.Sequence == c.bundleSeq {
		return nil
	}
	enc, err := b.Marshal()
	if err != nil {
		return err
	}
	c.dev.TrustBundle, c.bundleSeq = enc, b.Sequence
	return nil
}

// refreshOwnCertificate adopts the latest certificate of this device from
// a verified value of its own user: a CA rotation or a renewal re-issues
// it with a new serial, which the device's sealed-sender certificate and
// wipe-instruction check use. c.mu is held; the caller's update (or the
// next one) stores it.
func (c *Client) refreshOwnCertificate(usable []*org.DeviceCertificate) error {
	for _, cert := range usable {
		if cert.Device != c.dev.Device || cert.Serial <= c.dev.Serial {
			continue
		}
		if !cert.Identity.Signing.Equal(c.id.Signing.Public()) {
			continue
		}
		enc, err := cert.Marshal()
		if err != nil {
			return err
		}
		c.cert, c.dev.Serial, c.dev.Certificate = cert, cert.Serial, enc
	}
	return nil
}
