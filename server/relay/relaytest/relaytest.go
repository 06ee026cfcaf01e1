// Package relaytest holds conformance suites for the relay's seams.
package relaytest

import (
	"errors"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/server/relay"
)

// Directory is a DeviceDirectory under test with the operations the suite
// needs: enrolling a device and revoking it, with the directory's own
// means.
type Directory interface {
	relay.DeviceDirectory
	// Enrol certifies a new device of a new user in tenant, valid from
	// now for at least a day, and returns its ids and identity.
	Enrol(t *testing.T, tenant [16]byte) (device, user [16]byte, id keys.DeviceIdentity)
	// Revoke revokes the device.
	Revoke(t *testing.T, tenant, device [16]byte)
	// Tenants returns two tenants the directory serves.
	Tenants() (a, b [16]byte)
	// Now is the directory's clock.
	Now() time.Time
}

// TestDeviceDirectory checks a DeviceDirectory: an enrolled device is
// found with its user and identity; an unknown device, the same device id
// in another tenant, a revoked device and a device past its certificate's
// end are ErrUnknownDevice (T44, T45); revoking one device leaves the
// others.
func TestDeviceDirectory(t *testing.T, d Directory) {
	ta, tb := d.Tenants()
	dev1, user1, id1 := d.Enrol(t, ta)
	dev2, _, id2 := d.Enrol(t, ta)
	now := d.Now()
	got, err := d.Device(ta, dev1, now)
	if err != nil {
		t.Fatalf("enrolled device: %v", err)
	}
	if got.User != user1 || !got.Identity.Equal(id1) {
		t.Fatal("enrolled device: wrong user or identity")
	}
	if got, err := d.Device(ta, dev2, now); err != nil || !got.Identity.Equal(id2) {
		t.Fatalf("second device: %v", err)
	}
	unknown := func(tenant, dev [16]byte, at time.Time, what string) {
		t.Helper()
		if _, err := d.Device(tenant, dev, at); !errors.Is(err, relay.ErrUnknownDevice) {
			t.Errorf("%s: %v, want ErrUnknownDevice", what, err)
		}
	}
	unknown(ta, [16]byte{0xee, 1}, now, "never enrolled")
	unknown(tb, dev1, now, "same device id in another tenant")
	unknown([16]byte{0xfe, 0xed}, dev1, now, "unknown tenant")
	unknown(ta, dev1, now.Add(10*365*24*time.Hour), "past the certificate's end")
	d.Revoke(t, ta, dev1)
	unknown(ta, dev1, d.Now(), "revoked")
	if _, err := d.Device(ta, dev2, d.Now()); err != nil {
		t.Fatalf("revoking one device removed another: %v", err)
	}
}
