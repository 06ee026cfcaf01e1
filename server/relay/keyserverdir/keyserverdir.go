// Package keyserverdir is the relay's DeviceDirectory backed by a key
// directory service in the same process (moatd runs both): a device is
// known while it holds a certificate of its tenant's CA that is valid and
// not revoked, as the directory's own index of signing devices says
// (keyserver/service Tenant.Device). An enrolment or a revocation takes
// effect at once, before the epoch that publishes it (T45).
package keyserverdir

import (
	"time"

	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/service"
	"github.com/moat-im/moat/server/relay"
)

// Directory is a relay.DeviceDirectory over a key directory service.
type Directory struct {
	Service *service.Service
}

// Device implements relay.DeviceDirectory.
func (d Directory) Device(tenant, device [16]byte, now time.Time) (*relay.Device, error) {
	t := d.Service.Tenant(org.TenantID(tenant))
	if t == nil {
		return nil, relay.ErrUnknownDevice
	}
	a, ok := t.Device(org.DeviceID(device), now)
	if !ok {
		return nil, relay.ErrUnknownDevice
	}
	return &relay.Device{User: a.User, Identity: a.Identity}, nil
}
