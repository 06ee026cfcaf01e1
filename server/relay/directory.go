package relay

import (
	"errors"
	"sync"
	"time"

	"github.com/moat-im/moat/crypto/deviceauth"
	"github.com/moat-im/moat/crypto/keys"
)

// ErrUnknownDevice is returned by a DeviceDirectory for a device that has
// no current certificate: never enrolled, of another tenant, expired or
// revoked (T45). It is deviceauth.ErrUnknownDevice.
var ErrUnknownDevice = deviceauth.ErrUnknownDevice

// Device is a device with a current, unrevoked certificate of its
// organisation.
type Device struct {
	User     [16]byte
	Identity keys.DeviceIdentity
}

// DeviceDirectory is the relay's view of the key directory: which devices
// hold a current certificate of their tenant's CA, and their certified
// identity keys. The relay authenticates devices with it, verifies their
// prekey uploads under it, serves it as the identity of their bundles, and
// stops serving a device the moment it reports it unknown (T45).
// Implementations are safe for concurrent use; relaytest.TestDeviceDirectory
// checks the rules.
type DeviceDirectory interface {
	// Device returns (tenant, device) if it has a certificate valid at
	// now that is not revoked, and ErrUnknownDevice (or a wrapped lookup
	// error) otherwise.
	Device(tenant, device [16]byte, now time.Time) (*Device, error)
}

// MemoryDirectory is an in-memory DeviceDirectory for tests and
// development.
type MemoryDirectory struct {
	mu   sync.RWMutex
	devs map[[32]byte]memDevice
}

type memDevice struct {
	Device
	notAfter time.Time
}

// NewMemoryDirectory returns an empty directory.
func NewMemoryDirectory() *MemoryDirectory {
	return &MemoryDirectory{devs: map[[32]byte]memDevice{}}
}

func dirKey(tenant, device [16]byte) (k [32]byte) {
	copy(k[:16], tenant[:])
	copy(k[16:], device[:])
	return k
}

// Add certifies a device until notAfter (exclusive).
func (d *MemoryDirectory) Add(tenant, device, user [16]byte, id keys.DeviceIdentity, notAfter time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.devs[dirKey(tenant, device)] = memDevice{Device{User: user, Identity: id}, notAfter}
}

// Revoke revokes a device.
func (d *MemoryDirectory) Revoke(tenant, device [16]byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.devs, dirKey(tenant, device))
}

// Device implements DeviceDirectory.
func (d *MemoryDirectory) Device(tenant, device [16]byte, now time.Time) (*Device, error) {
	d.mu.RLock()
	m, ok := d.devs[dirKey(tenant, device)]
	d.mu.RUnlock()
	if !ok || !now.Before(m.notAfter) {
		return nil, ErrUnknownDevice
	}
	dev := m.Device
	return &dev, nil
}

// deviceKeys adapts a DeviceDirectory to deviceauth.DeviceKeys.
type deviceKeys struct {
	dir DeviceDirectory
	now func() time.Time
}

func (k deviceKeys) IdentityKey(tenant, device [16]byte) (*keys.IdentitySigningPublicKey, error) {
	d, err := k.dir.Device(tenant, device, k.now())
	if err != nil {
		return nil, err
	}
	if d.Identity.Signing == nil {
		return nil, errors.New("relay: directory returned a device without an identity key")
	}
	return d.Identity.Signing, nil
}
