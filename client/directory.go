package client

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/moat-im/moat/client/localstore"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
)

// lookup looks user up in the directory and verifies the answer
// (docs/spec/directory.md §Client verification). Any failure is an
// *UnverifiedContactError saying why. A verified lookup of this device's
// own user that shows this device revoked wipes the store (§Revocation,
// checkSelf). c.mu is held.
func (c *Client) lookup(ctx context.Context, user UserID) (*kt.LookupResult, error) {
	res, fetchErr, err := c.verifiedLookup(ctx, user)
	if err != nil && !fetchErr && !errors.Is(err, kt.ErrNotFound) {
		// The organisation may have rotated its CA or log key, or changed
		// its witnesses: follow, then try once more (trust.go).
		if moved, ferr := c.followTrust(ctx); ferr == nil && moved {
			res, fetchErr, err = c.verifiedLookup(ctx, user)
		}
	}
	if fetchErr {
		return nil, &UnverifiedContactError{User: user, Reason: "the directory lookup failed", Err: err}
	}
	if errors.Is(err, kt.ErrNotFound) {
		return nil, &UnverifiedContactError{User: user, Reason: "not in the directory (unknown, or not yet published)", Err: err}
	}
	if err != nil {
		return nil, &UnverifiedContactError{User: user, Reason: "the directory's answer does not verify", Err: err}
	}
	// The kt state moved on; the caller's next c.update stores it (this
	// may run inside one).
	if user == c.dev.User {
		if err := c.checkSelf(res.Value, res.Devices); err != nil {
			return nil, err
		}
		if err := c.refreshOwnCertificate(res.Devices); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// verifiedLookup fetches and verifies user's value; fetchErr says that
// the fetch failed, not the verification.
func (c *Client) verifiedLookup(ctx context.Context, user UserID) (res *kt.LookupResult, fetchErr bool, err error) {
	resp, err := c.dir.LookupFrom(ctx, user, c.kt)
	if err != nil {
		return nil, true, err
	}
	res, err = c.kt.VerifyLookup(c.dev.Tenant, user, resp, c.now())
	return res, false, err
}

// checkSelf wipes the store if a verified value of this device's own user
// revokes this device: a device_revoked entry for it, signed by the CA and
// logged, or its certificate among the revoked (docs/spec/org.md
// §Revocation).
func (c *Client) checkSelf(v *org.UserValue, usable []*org.DeviceCertificate) error {
	revoked := false
	for _, e := range v.Entries {
		if a, isRev := e.Action.(*org.DeviceRevoked); isRev && a.Device == c.dev.Device {
			revoked = true
		}
	}
	if !revoked {
		return nil
	}
	return c.wipe("a verified directory record revokes this device")
}

// wipe destroys the store and marks the client revoked. c.mu is held.
func (c *Client) wipe(why string) error {
	c.log.Warn("device revoked: wiping the local store", "reason", why)
	c.dev.Revoked = true
	c.emit(Event{Kind: EventRevoked, Err: ErrRevoked})
	if c.inTx {
		c.wipePending = true // update wipes once the transaction ends
		return ErrRevoked
	}
	err := c.st.Wipe()
	if err != nil {
		return fmt.Errorf("%w (wipe failed: %v)", ErrRevoked, err)
	}
	return ErrRevoked
}

// Wipe acts on a wipe instruction the organisation issued when it revoked
// this device (moatd admin revoke-device prints it; docs/spec/org.md §Wipe
// instructions): if it names this tenant, this device and its current
// certificate serial (or a later one: wipe.go), and verifies under the
// pinned CA key, the store is
// wiped and the client refuses further use (ErrRevoked is returned).
// Anything else is refused with the store untouched.
func (c *Client) Wipe(instruction []byte) error {
	if err := c.lock(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	return c.applyWipe(context.Background(), false, instruction, "a wipe instruction signed by the organisation")
}

func fingerprint(cert *org.DeviceCertificate) string {
	fp := kt.IdentityFingerprint(cert.Identity)
	return hex.EncodeToString(fp[:])
}

// orgInfo returns the display name and department of user from the
// verified org chart; empty strings if it has none.
func (c *Client) orgInfo(ctx context.Context, user UserID) (name, dept string) {
	chart, _, err := c.orgChart(ctx)
	if err != nil {
		return "", ""
	}
	for _, m := range chart.Members {
		if m.User == user {
			name = m.DisplayName
			for _, d := range chart.Departments {
				if d.ID == m.Department {
					dept = d.Name
				}
			}
		}
	}
	return name, dept
}

// Contact looks user up in the directory, verifies the answer, and
// returns the user's usable devices and display name. An unverifiable
// user, or one without a usable device, is an *UnverifiedContactError.
func (c *Client) Contact(ctx context.Context, user UserID) (*Contact, error) {
	if err := c.lock(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	return c.contact(ctx, user)
}

func (c *Client) contact(ctx context.Context, user UserID) (*Contact, error) {
	res, err := c.lookup(ctx, user)
	if err != nil {
		return nil, err
	}
	if len(res.Devices) == 0 {
		return nil, &UnverifiedContactError{User: user, Reason: "no usable device in the directory"}
	}
	ct := &Contact{User: user, Epoch: res.Epoch}
	for _, d := range res.Devices {
		ct.Devices = append(ct.Devices, ContactDevice{Device: d.Device, Fingerprint: fingerprint(d)})
	}
	ct.DisplayName, ct.Department = c.orgInfo(ctx, user)
	if err := c.update(func(tx localstore.Tx) error {
		if err := c.noteDevices(tx, user, ct.Devices, ct.Epoch); err != nil {
			return err
		}
		return putJSON(tx, kindContact, user[:], &contactRecord{Contact: *ct, Verified: c.now()})
	}); err != nil {
		return nil, err
	}
	return ct, nil
}

// Contacts returns the contacts verified so far, from the store.
func (c *Client) Contacts() ([]Contact, error) {
	if err := c.lock(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	var out []Contact
	err := c.st.View(func(tx localstore.Tx) error {
		return tx.List("", kindContact, func(_, v []byte) error {
			var r contactRecord
			if err := unmarshalJSON(v, &r); err != nil {
				return err
			}
			out = append(out, r.Contact)
			return nil
		})
	})
	return out, err
}

// Verify returns the verification status of user now: whether the
// directory's answer verifies, with the usable devices and why the others
// are not.
func (c *Client) Verify(ctx context.Context, user UserID) (*Verification, error) {
	if err := c.lock(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	v := &Verification{User: user}
	res, err := c.lookup(ctx, user)
	if errors.Is(err, ErrRevoked) {
		return nil, err
	}
	var ue *UnverifiedContactError
	if errors.As(err, &ue) {
		v.Reason = ue.Error()
		return v, nil
	}
	if err != nil {
		return nil, err
	}
	if err := c.update(func(localstore.Tx) error { return nil }); err != nil {
		return nil, err
	}
	v.Epoch = res.Epoch
	for _, d := range res.Devices {
		v.Devices = append(v.Devices, ContactDevice{Device: d.Device, Fingerprint: fingerprint(d)})
	}
	for _, u := range res.Unusable {
		v.Unusable = append(v.Unusable, fmt.Sprintf("device %s: %v", u.Device, u.Err))
	}
	v.Verified = len(v.Devices) > 0
	if !v.Verified {
		v.Reason = "no usable device in the directory"
	}
	return v, nil
}

// Timeline returns this user's security timeline: every timeline entry of
// the user's label, from a verified history of all its records
// (docs/spec/directory.md §History, docs/spec/org.md §Timeline entries).
// A history that revokes this device wipes the store (ErrRevoked).
func (c *Client) Timeline(ctx context.Context) ([]TimelineEntry, error) {
	if err := c.lock(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	return c.timeline(ctx, c.dev.User)
}

// Alert is a change under this user's directory label that no device of
// the user made or approved (docs/spec/directory.md §Monitoring rules):
// a device added or recovered by admins, a revocation, keys changed, a
// rewritten history, a recovery whose admin approvals do not verify
// (AlertRecoveryApprovalsInvalid). The UI shows it.
type Alert struct {
	Kind    string // kt.AlertKind's description
	Device  DeviceID
	Epoch   uint64
	Version uint32
}

// Monitor checks this user's label at every epoch since the last call
// (the first call: since enrolment) and returns the alerts (adversarial
// case T29). The admin approvals of a recovery are checked against the
// tenant's admin rosters, which Monitor verifies from the directory
// first (AlertRecoveryApprovalsInvalid). An alert that this device itself is revoked wipes the store
// (ErrRevoked). On error the monitoring position is unchanged.
func (c *Client) Monitor(ctx context.Context) ([]Alert, error) {
	if err := c.lock(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	return c.monitor(ctx)
}

// monitor is Monitor with c.mu held.
func (c *Client) monitor(ctx context.Context) ([]Alert, error) {
	user := c.dev.User
	var out []Alert
	var rosters []*org.AdminRoster
	followed := false
	for {
		// The admin rosters first, so that the approvals of a recovery
		// are checked against them (rosters.go); once per call, and again
		// after following the trust bundle.
		if rosters == nil {
			rs, err := c.adminRosters(ctx)
			if err != nil && !followed {
				followed = true
				if moved, ferr := c.followTrust(ctx); ferr == nil && moved {
					continue
				}
			}
			if err != nil {
				return nil, err
			}
			rosters = rs
		}
		resp, err := c.dir.Monitor(ctx, user, c.kt.MonitorSince(user), c.kt.MonitorStart(user), c.kt.TreeSize())
		if err != nil {
			return nil, c.refused(ctx, fmt.Errorf("client: monitor: %w", err))
		}
		res, err := c.kt.Monitor(user, kt.Expected{Self: c.dev.Device, Rosters: rosters}, resp, c.now())
		if err != nil && !followed {
			// A trust-bundle change the device missed: follow, then ask
			// again (trust.go).
			followed = true
			if moved, ferr := c.followTrust(ctx); ferr == nil && moved {
				rosters = nil
				continue
			}
		}
		if err != nil {
			return nil, fmt.Errorf("client: monitor: %w", err)
		}
		self := false
		for _, a := range res.Alerts {
			out = append(out, Alert{Kind: a.Kind.String(), Device: a.Device, Epoch: a.Epoch, Version: a.Version})
			if a.Kind == kt.AlertDeviceRevoked && a.Device == c.dev.Device {
				self = true
			}
		}
		if err := c.update(func(localstore.Tx) error { return nil }); err != nil {
			return nil, err
		}
		if self {
			return out, c.wipe("the directory's history of this user revokes this device")
		}
		if !res.More {
			return out, nil
		}
	}
}
