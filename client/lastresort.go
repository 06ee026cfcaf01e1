package client

import "context"

// AlertLastResortUsed is the Alert.Kind of an EventAlert that says the
// relay served this device's last-resort KEM prekey: its one-time KEM
// prekeys ran out (drained by an attacker, or many first contacts), so
// the sessions begun then lack one-time forward secrecy (adversarial case
// T24; docs/spec/content.md §Last-resort prekey use). The device has
// replenished its one-time prekeys and rotated its last-resort key early.
const AlertLastResortUsed = "last-resort prekey used"

// lastResortUsed acts on the relay's flag that bundles were served with
// the last-resort KEM prekey (relay.PrekeyStatus.LastResortUses): the
// medium-term keys, the last-resort KEM prekey among them, are rotated
// now (the replaced ones stay for Config.KeyGrace, so that the initial
// messages made with them decrypt), and the owner is alerted. The caller
// then uploads one-time prekeys, which clears the flag. c.mu is held.
func (c *Client) lastResortUsed(ctx context.Context, uses uint64) {
	c.log.Warn("the relay served this device's last-resort KEM prekey: one-time prekeys ran out", "uses", uses)
	if !c.dev.RotationPending {
		if err := c.newMediumTermKeys(c.now()); err != nil {
			c.log.Warn("last-resort key not rotated", "err", err)
		}
	}
	if c.dev.RotationPending {
		if err := c.publishMediumTermKeys(ctx); err != nil {
			c.log.Warn("rotated last-resort key not published; retried at the next Sync", "err", err)
		}
	}
	c.emit(Event{Kind: EventAlert, Alert: &Alert{Kind: AlertLastResortUsed, Device: c.dev.Device}})
}
