package org

import (
	"errors"
	"fmt"
)

// ErrNotRevoked: a wipe instruction was asked for a device that is not
// revoked (docs/spec/org.md §Wipe instructions).
var ErrNotRevoked = errors.New("org: device not revoked")

// RevokedDevice returns the latest certificate of user's revoked device
// devID, whose identity key authenticates the device's request for its
// wipe instruction, and that instruction (§Wipe instructions): it names
// the certificate's serial, is issued at the revocation time, and is
// signed by the tenant's current CA, so a device that followed a CA
// rotation verifies it. The state is not changed; the instruction is
// derived from the durable revocation record, so it survives restarts.
// It is ErrUnknownUser, ErrUnknownDevice or ErrNotRevoked otherwise.
func (t *Tenant) RevokedDevice(id UserID, devID DeviceID) (*DeviceCertificate, *WipeInstruction, error) {
	u, ok := t.users[id]
	if !ok {
		return nil, nil, fmt.Errorf("org: wipe instruction: %w", ErrUnknownUser)
	}
	d, ok := u.devices[devID]
	if !ok {
		return nil, nil, fmt.Errorf("org: wipe instruction for %s: %w", devID, ErrUnknownDevice)
	}
	if !d.revoked {
		return nil, nil, fmt.Errorf("org: wipe instruction for %s: %w", devID, ErrNotRevoked)
	}
	w := &WipeInstruction{Tenant: t.id, User: id, Device: devID, Serial: d.cert.Serial, IssuedAt: d.revokedAt}
	if err := signStatement(t.signer, labelWipeInstruction, w.body, &w.Signature); err != nil {
		return nil, nil, fmt.Errorf("org: wipe instruction for %s: %w", devID, err)
	}
	return d.cert, w, nil
}
