package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/service"
	"github.com/moat-im/moat/server/relay"
)

// Wipe-instruction delivery (docs/spec/directory-api.md §Wipe instruction,
// docs/spec/org.md §Wipe instructions). A revoked device is refused by
// the directory and the relay; when either refuses it, and when Run
// connects, it asks the directory for its wipe instruction with a request
// signed by its identity key, and wipes itself only if the instruction
// verifies under the CA it trusts. The servers' word alone never wipes.

// errNoWipe: the directory has no wipe instruction for this device (it is
// not revoked).
var errNoWipe = errors.New("client: no wipe instruction for this device")

// refusal reports whether err is the relay's or the directory's refusal
// of this device's credentials: 401, which both answer for a device they
// do not know as active (a 403 is about something else, such as a spent
// delivery token).
func refusal(err error) bool {
	var re *relay.APIError
	if errors.As(err, &re) {
		return re.Status == http.StatusUnauthorized
	}
	var de *service.APIError
	if errors.As(err, &de) {
		return de.Status == http.StatusUnauthorized
	}
	return false
}

// refused is called with the error of a request to the relay or the
// directory: if it is a refusal of this device, the device checks whether
// it was revoked, and ErrRevoked replaces err once its store is wiped.
// Otherwise err is returned as it is. c.mu is held.
func (c *Client) refused(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, ErrRevoked) || !refusal(err) {
		return err
	}
	if werr := c.checkWipe(ctx); errors.Is(werr, ErrRevoked) {
		return werr
	} else if werr != nil && !errors.Is(werr, errNoWipe) {
		c.log.Warn("refused by a server, and no wipe instruction verified", "err", werr)
	}
	return err
}

// checkWipe fetches this device's wipe instruction from the directory
// and acts on it: ErrRevoked once the store is wiped, errNoWipe if the
// device is not revoked, any other error leaving everything as it was
// (a forged, foreign or unverifiable instruction included). c.mu is held.
func (c *Client) checkWipe(ctx context.Context) error {
	enc, err := c.dir.Wipe(ctx)
	var de *service.APIError
	if errors.As(err, &de) && de.Status == http.StatusNotFound {
		return errNoWipe
	}
	if err != nil {
		return fmt.Errorf("client: fetching the wipe instruction: %w", err)
	}
	return c.applyWipe(ctx, true, enc, "the directory served a wipe instruction signed by the organisation")
}

// applyWipe verifies a wipe instruction and wipes the store. If it does
// not verify under the pinned CA, the client first follows the directory's
// trust-bundle transitions (a CA rotation it missed) and tries again, if
// online. c.mu is held.
func (c *Client) applyWipe(ctx context.Context, online bool, enc []byte, why string) error {
	w, err := org.ParseWipeInstruction(enc)
	if err != nil {
		return fmt.Errorf("client: wipe instruction: %w", err)
	}
	// The instruction names the device's latest certificate, which a CA
	// rotation or a renewal may have re-issued after the one this device
	// holds: a later serial of the same device id (bound to its identity
	// key, never reused) is accepted, an earlier one is not.
	serial := c.dev.Serial
	if w.Serial > serial {
		serial = w.Serial
	}
	verr := w.Verify(c.kt.Bundle().CA, c.dev.Tenant, c.dev.Device, serial)
	if verr != nil && online && !errors.Is(verr, org.ErrWrongTenant) && !errors.Is(verr, org.ErrWrongSubject) {
		if moved, ferr := c.followTrust(ctx); ferr == nil && moved {
			verr = w.Verify(c.kt.Bundle().CA, c.dev.Tenant, c.dev.Device, serial)
		}
	}
	if verr != nil {
		return fmt.Errorf("client: wipe instruction refused: %w", verr)
	}
	return c.wipe(why)
}

// connectChecks runs when Run (re)connects: the device follows the
// organisation's trust-bundle changes and asks whether it was revoked,
// since a revoked device may not otherwise be told (a relay that does not
// know yet still serves it). Only ErrRevoked (or ErrClosed) is returned;
// other failures are logged and retried at the next connection.
func (c *Client) connectChecks(ctx context.Context) error {
	if err := c.lock(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	if _, err := c.followTrust(ctx); err != nil {
		c.log.Warn("following the organisation's trust bundle failed", "err", err)
	}
	err := c.checkWipe(ctx)
	if errors.Is(err, ErrRevoked) {
		return err
	}
	if err != nil && !errors.Is(err, errNoWipe) {
		c.log.Warn("checking for a wipe instruction failed", "err", err)
	}
	return nil
}
