package client

import (
	"context"
	"fmt"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/vmap"
)

// The tenant's admin rosters, as this device verified them from the
// history of the admin-roster org label (docs/spec/directory.md §History,
// docs/spec/org.md §Admin roster). Monitoring passes them as
// kt.Expected.Rosters, so that a device_recovered entry (or a
// device_added entry with admin approvals) whose approvals no M admins of
// a roster made raises AlertRecoveryApprovalsInvalid instead of a
// legitimate-looking recovery (docs/spec/directory.md §Monitoring rules).

// AlertRecoveryApprovalsInvalid is the Alert.Kind of a device recovered
// (or added) for this user whose admin approvals do not verify under any
// admin roster this device verified: the CA key was used outside the
// tenant's dual control (adversarial case T29).
var AlertRecoveryApprovalsInvalid = kt.AlertRecoveryApprovalsInvalid.String()

// maxRosters bounds the rosters kept: the latest ones, those in force
// over the records monitored (roster changes are rare admin acts).
const maxRosters = 64

// rosterPosition is how far the device verified the admin-roster label's
// history (kt.OrgPosition without the statement, which is the last of
// deviceState.Rosters).
type rosterPosition struct {
	Version    uint32
	Commitment vmap.Commitment
	Epoch      uint64
}

// adminRosters brings the verified admin rosters up to date from the
// label's history since the last verified version, keeps them in the
// device state (saved at the caller's next update) and returns them,
// oldest first. On error the device state is unchanged. c.mu is held.
func (c *Client) adminRosters(ctx context.Context) ([]*org.AdminRoster, error) {
	held := make([]*org.AdminRoster, 0, len(c.dev.Rosters)+1)
	for _, enc := range c.dev.Rosters {
		r, err := org.ParseAdminRoster(enc)
		if err != nil {
			return nil, fmt.Errorf("client: stored admin roster: %w", err)
		}
		held = append(held, r)
	}
	since, encs := kt.OrgPosition{}, c.dev.Rosters
	if p := c.dev.RosterPos; p != nil && len(held) > 0 {
		since = kt.OrgPosition{Version: p.Version, Commitment: p.Commitment, Epoch: p.Epoch, Statement: held[len(held)-1]}
	} else {
		held, encs = held[:0], nil // the whole history
	}
	resp, err := c.dir.OrgHistory(ctx, org.OrgLabelAdminRoster, since.Version, c.kt.TreeSize())
	if err != nil {
		return nil, c.refused(ctx, fmt.Errorf("client: fetching the admin roster: %w", err))
	}
	res, err := c.kt.VerifyOrgHistory(org.OrgLabelAdminRoster, since, resp, c.now())
	if err != nil {
		return nil, fmt.Errorf("client: the admin roster does not verify: %w", err)
	}
	if len(res.Statements) == 0 {
		return held, nil
	}
	for _, st := range res.Statements {
		r, isRoster := st.(*org.AdminRoster)
		if !isRoster || r == nil {
			return nil, fmt.Errorf("client: the admin roster label holds a %T", st)
		}
		enc, err := r.Marshal()
		if err != nil {
			return nil, err
		}
		held = append(held, r)
		encs = append(encs[:len(encs):len(encs)], enc)
	}
	if n := len(held); n > maxRosters {
		held, encs = held[n-maxRosters:], encs[n-maxRosters:]
	}
	p := res.Position
	c.dev.Rosters = encs
	c.dev.RosterPos = &rosterPosition{Version: p.Version, Commitment: p.Commitment, Epoch: p.Epoch}
	return held, nil
}
