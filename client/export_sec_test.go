package client

import (
	"context"

	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/server/relay"
)

// FetchBundleOf fetches (and so consumes one-time prekeys of) the prekey
// bundle of device of this tenant, as this device, without using it.
func (c *Client) FetchBundleOf(ctx context.Context, device DeviceID) error {
	if err := c.lock(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	_, err := c.rel.FetchBundle(ctx, sealed.NewMailboxID(c.dev.Tenant, device))
	return err
}

// PrekeyStatus returns the relay's prekey status of this device.
func (c *Client) PrekeyStatus(ctx context.Context) (*relay.PrekeyStatus, error) {
	if err := c.lock(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	return c.rel.PrekeyStatus(ctx)
}
