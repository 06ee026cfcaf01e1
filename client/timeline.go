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

// TimelineOf returns the security timeline of user, a contact or this
// device's own user: every timeline entry of the user's label (the user
// added, devices added, recovered by admins or revoked, policy changes,
// with who made each change), from a history of all the label's records
// verified against the directory's witnessed log (docs/spec/directory.md
// §History, docs/spec/org.md §Timeline entries). It lets a user see that
// a contact's device list changed, and by whose hand. A user the
// directory does not know is an *UnverifiedContactError.
func (c *Client) TimelineOf(ctx context.Context, user UserID) ([]TimelineEntry, error) {
	if err := c.lock(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	return c.timeline(ctx, user)
}

// timeline is TimelineOf with c.mu held. For this device's own user, a
// verified entry that revokes this device wipes the store.
func (c *Client) timeline(ctx context.Context, user UserID) ([]TimelineEntry, error) {
	resp, err := c.dir.History(ctx, user, 0, c.kt.TreeSize())
	if err != nil {
		return nil, &UnverifiedContactError{User: user, Reason: "the directory's history of the user could not be fetched", Err: err}
	}
	res, err := c.kt.VerifyHistory(c.dev.Tenant, user, kt.Position{}, resp, c.now())
	if errors.Is(err, kt.ErrNotFound) {
		return nil, &UnverifiedContactError{User: user, Reason: "not in the directory (unknown, or not yet published)", Err: err}
	}
	if err != nil {
		return nil, &UnverifiedContactError{User: user, Reason: "the directory's history of the user does not verify", Err: err}
	}
	if len(res.Values) == 0 && user != c.dev.User {
		return nil, &UnverifiedContactError{User: user, Reason: "not in the directory (unknown, or not yet published)"}
	}
	if err := c.update(func(localstore.Tx) error { return nil }); err != nil {
		return nil, err
	}
	var out []TimelineEntry
	for i, v := range res.Values {
		for _, e := range v.Entries {
			out = append(out, timelineEntry(e, res.Records[i].Epoch))
		}
		if user == c.dev.User {
			if err := c.checkSelf(v, nil); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// timelineEntry describes a verified timeline entry published at epoch.
func timelineEntry(e *org.Entry, epoch uint64) TimelineEntry {
	te := TimelineEntry{Seq: e.Seq, Time: e.Time, Epoch: epoch}
	switch a := e.Action.(type) {
	case *org.UserAdded:
		te.Action = "user_added"
	case *org.UserRemoved:
		te.Action = "user_removed"
	case *org.DeviceAdded:
		te.Action, te.Device = "device_added", a.Certificate.Device
	case *org.DeviceRecovered:
		te.Action, te.Device = "device_recovered", a.Certificate.Device
	case *org.DeviceRevoked:
		te.Action, te.Device = "device_revoked", a.Device
	case *org.PolicyChanged:
		te.Action = "policy_changed"
	default:
		te.Action = fmt.Sprintf("%T", a)
	}
	for _, ac := range e.Actors {
		kind := "admin"
		if ac.Kind == org.ActorDevice {
			kind = "device"
		}
		te.Actors = append(te.Actors, kind+":"+hex.EncodeToString(ac.ID[:]))
	}
	return te
}
