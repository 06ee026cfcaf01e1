package client

import (
	"fmt"
	"time"

	"github.com/moat-im/moat/client/localstore"
	"github.com/moat-im/moat/keyserver/kt"
)

// Contact key changes (adversarial case T14, docs/spec/content.md §Key
// changes): every verified directory answer for a contact is compared with
// the devices stored for it; a device added, a device removed, or a device
// whose identity key changed is a ContactChange, kept in the contact's
// change history (ContactChanges) and announced with an
// EventContactChanged once the transaction that stored the new device list
// commits. A prekey bundle from the relay that does not verify under the
// directory's identity of its device (a key substitution) is refused and
// recorded likewise, whether or not the rest of the send goes through.

// ContactChangeKind says what changed about a contact's keys.
type ContactChangeKind string

// Contact change kinds.
const (
	// ContactDeviceAdded: a device the contact did not have is in the
	// directory.
	ContactDeviceAdded ContactChangeKind = "device_added"
	// ContactDeviceRemoved: a device is no longer usable (revoked,
	// expired or removed).
	ContactDeviceRemoved ContactChangeKind = "device_removed"
	// ContactIdentityChanged: a device keeps its id but has a new
	// identity key (the safety number changed).
	ContactIdentityChanged ContactChangeKind = "identity_changed"
	// ContactKeySubstitution: the relay served a prekey bundle that does
	// not verify under the device's identity in the directory; it was
	// refused.
	ContactKeySubstitution ContactChangeKind = "key_substitution_refused"
)

// ContactChange is one change of a contact's keys, as the UI shows it
// ("safety number changed").
type ContactChange struct {
	User   UserID
	Kind   ContactChangeKind
	Device DeviceID
	// OldFingerprint and NewFingerprint are hex kt.IdentityFingerprint
	// values; empty where there is none (an added or removed device, a
	// refused bundle's old one).
	OldFingerprint, NewFingerprint string
	// Epoch is the directory epoch of the verified answer that showed the
	// change; zero for a refused bundle.
	Epoch uint64
	Time  time.Time
}

func (ch *ContactChange) String() string {
	return fmt.Sprintf("contact %s: %s (device %s)", ch.User, ch.Kind, ch.Device)
}

// kindChangePfx + user hex: ContactChange records, by local sequence.
const kindChangePfx = "contactchg/"

func changeKind(user UserID) string { return kindChangePfx + user.String() }

// pendingChange is a ContactChange waiting for the end of the running
// transaction: stored is true for a change written in it (emitted only if
// it commits), false for one to store and emit whatever the transaction's
// outcome (a refused bundle).
type pendingChange struct {
	ch     ContactChange
	stored bool
}

// noteDevices compares the devices stored for user with devs (from a
// verified lookup at epoch), records a ContactChange for each difference
// in tx and queues its event. A user without a stored record (a first
// contact) has no changes, nor has this device's own user (whose changes
// Monitor reports, telling those its devices approved from the others).
// c.mu is held.
func (c *Client) noteDevices(tx localstore.Tx, user UserID, devs []ContactDevice, epoch uint64) error {
	if user == c.dev.User {
		return nil
	}
	var old contactRecord
	found, err := getJSON(tx, kindContact, user[:], &old)
	if err != nil || !found {
		return err
	}
	now := c.now()
	oldFP := map[DeviceID]string{}
	for _, d := range old.Devices {
		oldFP[d.Device] = d.Fingerprint
	}
	newFP := map[DeviceID]bool{}
	var changes []ContactChange
	for _, d := range devs {
		newFP[d.Device] = true
		fp, had := oldFP[d.Device]
		switch {
		case !had:
			changes = append(changes, ContactChange{User: user, Kind: ContactDeviceAdded, Device: d.Device, NewFingerprint: d.Fingerprint, Epoch: epoch, Time: now})
		case fp != d.Fingerprint:
			changes = append(changes, ContactChange{User: user, Kind: ContactIdentityChanged, Device: d.Device, OldFingerprint: fp, NewFingerprint: d.Fingerprint, Epoch: epoch, Time: now})
		}
	}
	for _, d := range old.Devices {
		if !newFP[d.Device] {
			changes = append(changes, ContactChange{User: user, Kind: ContactDeviceRemoved, Device: d.Device, OldFingerprint: d.Fingerprint, Epoch: epoch, Time: now})
		}
	}
	for _, ch := range changes {
		if err := putChange(tx, ch); err != nil {
			return err
		}
		c.changes = append(c.changes, pendingChange{ch: ch, stored: true})
	}
	return nil
}

// putChange appends ch to its user's change history in tx.
func putChange(tx localstore.Tx, ch ContactChange) error {
	n := uint64(0)
	if err := tx.List("", changeKind(ch.User), func(_, _ []byte) error { n++; return nil }); err != nil {
		return err
	}
	return putJSON(tx, changeKind(ch.User), u64(n), &ch)
}

// noteSubstitution records that the relay served a bundle for device of
// user that does not verify under identity fingerprint fp of the
// directory: the fingerprint the bundle failed against. c.mu is held.
func (c *Client) noteSubstitution(user UserID, device DeviceID, fp string) {
	c.changes = append(c.changes, pendingChange{ch: ContactChange{User: user, Kind: ContactKeySubstitution,
		Device: device, OldFingerprint: fp, Time: c.now()}})
}

// flushChanges ends a transaction for the queued changes: those stored in
// it are announced if it committed, and dropped if not (the next verified
// lookup finds them again); the others are stored now and announced.
// c.mu is held.
func (c *Client) flushChanges(committed bool) {
	pending := c.changes
	c.changes = nil
	for _, p := range pending {
		if !p.stored {
			if err := c.st.Update(func(tx localstore.Tx) error { return putChange(tx, p.ch) }); err != nil {
				c.log.Warn("contact change not stored", "kind", string(p.ch.Kind), "err", err)
			}
		} else if !committed {
			continue
		}
		c.log.Warn("contact keys changed", "user", p.ch.User.String(), "device", p.ch.Device.String(), "kind", string(p.ch.Kind))
		ch := p.ch
		c.emit(Event{Kind: EventContactChanged, Conversation: ch.User, Change: &ch})
	}
}

// ContactChanges returns the recorded changes of user's keys, oldest
// first (T14: the UI shows them in the conversation).
func (c *Client) ContactChanges(user UserID) ([]ContactChange, error) {
	if err := c.lock(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	var out []ContactChange
	err := c.st.View(func(tx localstore.Tx) error {
		return tx.List("", changeKind(user), func(_, v []byte) error {
			var ch ContactChange
			if err := unmarshalJSON(v, &ch); err != nil {
				return err
			}
			out = append(out, ch)
			return nil
		})
	})
	return out, err
}

// contactDevices lists the devices of a verified lookup.
func contactDevices(res *kt.LookupResult) []ContactDevice {
	var out []ContactDevice
	for _, d := range res.Devices {
		out = append(out, ContactDevice{Device: d.Device, Fingerprint: fingerprint(d)})
	}
	return out
}
