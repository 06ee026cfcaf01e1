package service

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/keyserver/org"
)

// Wipe instructions (docs/spec/directory-api.md §Wipe instruction): a
// revoked device may no longer sign requests, except the one that fetches
// the CA-signed instruction to erase itself.

// revokedOrActiveKey resolves the signing key of a device for the wipe
// endpoint: an active device (which is answered 404), or a revoked one
// whatever its certificate's validity, since a device offline past its
// certificate's expiry must still learn that it was revoked.
func (t *Tenant) revokedOrActiveKey(user org.UserID, dev org.DeviceID, now time.Time) (*keys.IdentitySigningPublicKey, bool) {
	if k, ok := t.activeDeviceKey(user, dev, now); ok {
		return k, true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	cert, _, err := t.org.RevokedDevice(user, dev)
	if err != nil {
		return nil, false
	}
	return cert.Identity.Signing, true
}

// WipeInstruction returns the encoded wipe instruction of user's revoked
// device dev, signed by the current CA; org.ErrNotRevoked (or
// ErrUnknownDevice, ErrUnknownUser) otherwise.
func (t *Tenant) WipeInstruction(user org.UserID, dev org.DeviceID) ([]byte, error) {
	t.mu.Lock()
	_, w, err := t.org.RevokedDevice(user, dev)
	t.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return w.Marshal()
}

// getWipe serves GET /v1/{tenant}/wipe: a request signed by a device
// (Moat-Device), answered with the device's own wipe instruction if it is
// revoked, 404 if it is active. Whoever does not hold the identity key of
// a device of the tenant gets 401, as for any signed request, so the
// endpoint tells nobody else whether a device exists or was revoked.
func (s *Service) getWipe(w http.ResponseWriter, r *http.Request, t *Tenant) {
	body, ok := readBody(w, r, 0)
	if !ok {
		return
	}
	p, err := t.authenticateAs(r, body, s.opts.Now(), t.revokedOrActiveKey)
	if err != nil {
		writeAuthError(w, err)
		return
	}
	if p.admin {
		writeError(w, http.StatusForbidden, "a wipe instruction is for the revoked device itself")
		return
	}
	enc, err := t.WipeInstruction(p.user, p.device)
	switch {
	case errors.Is(err, org.ErrNotRevoked):
		writeError(w, http.StatusNotFound, "this device is not revoked")
	case err != nil:
		t.log.Error("wipe instruction failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
	default:
		writeBinary(w, enc)
	}
}

// Wipe fetches this device's wipe instruction (GET /v1/{tenant}/wipe,
// signed with the device credentials). A device that is not revoked gets
// an *APIError with status 404. The caller verifies the instruction
// (org.WipeInstruction.Verify) before acting on it.
func (c *Client) Wipe(ctx context.Context) ([]byte, error) {
	return c.do(ctx, http.MethodGet, c.url("/wipe", nil), nil, signDevice)
}
