package client

import (
	"context"
	"time"

	"github.com/moat-im/moat/client/localstore"
)

// Sync tops up the device's one-time prekeys at the relay (replenish),
// which costs a prekeys session: a device authentication, which the relay
// rate-limits per address. A CLI that runs one process per command
// authenticates afresh each time, so Sync asks the relay only when it may
// be needed: when the store's one-time prekeys changed since the last
// check (an initial message consumed one), when an initial message used
// the last-resort KEM prekey (the relay ran out of one-time prekeys), when the last check is older
// than prekeyCheckEvery (the relay hands prekeys out to senders that may
// never write), or when it never asked. Between checks a sender may find
// the relay out of one-time prekeys and fall back to the last-resort KEM
// prekey (docs/spec/pqxdh.md): the session is still established, without
// the one-time keys' extra forward secrecy for its first message.

// prekeyCheckEvery bounds the time between two prekey checks.
const prekeyCheckEvery = 10 * time.Minute

// replenishIfDue runs replenish if a check is due, and records it. c.mu
// is held.
func (c *Client) replenishIfDue(ctx context.Context) error {
	n, err := c.storedOneTimePrekeys()
	if err != nil {
		return err
	}
	now := c.now()
	if !c.prekeysDue && !c.dev.PrekeysChecked.IsZero() && n == c.dev.PrekeysStored &&
		now.Sub(c.dev.PrekeysChecked) < prekeyCheckEvery && now.After(c.dev.PrekeysChecked) {
		return nil
	}
	if err := c.replenish(ctx); err != nil {
		return err
	}
	c.prekeysDue = false
	if n, err = c.storedOneTimePrekeys(); err != nil {
		return err
	}
	return c.update(func(localstore.Tx) error {
		c.dev.PrekeysChecked, c.dev.PrekeysStored = now, n
		return nil
	})
}

// storedOneTimePrekeys counts the one-time and KEM prekeys in the store.
func (c *Client) storedOneTimePrekeys() (int, error) {
	n := 0
	err := c.st.View(func(tx localstore.Tx) error {
		for _, kind := range []string{kindOPK, kindKEM} {
			if err := tx.List("", kind, func(_, _ []byte) error { n++; return nil }); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

// notePrekeysChecked records that the relay holds the one-time prekeys the
// store holds now (just uploaded at registration), so that the next Sync
// need not ask. c.mu is held; the caller's update stores it.
func (c *Client) notePrekeysChecked() {
	if n, err := c.storedOneTimePrekeys(); err == nil {
		c.dev.PrekeysChecked, c.dev.PrekeysStored = c.now(), n
	}
}
