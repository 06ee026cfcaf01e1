package relay_test

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/relay/relaytest"
)

type memDir struct {
	*relay.MemoryDirectory
	now time.Time
	n   byte
}

func (d *memDir) Enrol(t *testing.T, tenant [16]byte) (dev, user [16]byte, id keys.DeviceIdentity) {
	d.n++
	k, err := keys.GenerateDeviceIdentity(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dev, user = [16]byte{0xde, d.n}, [16]byte{0xa0, d.n}
	d.Add(tenant, dev, user, k.Public(), d.now.Add(365*24*time.Hour))
	return dev, user, k.Public()
}

func (d *memDir) Revoke(t *testing.T, tenant, dev [16]byte) { d.MemoryDirectory.Revoke(tenant, dev) }
func (d *memDir) Tenants() (a, b [16]byte)                  { return [16]byte{1}, [16]byte{2} }
func (d *memDir) Now() time.Time                            { return d.now }

func TestMemoryDirectory(t *testing.T) {
	relaytest.TestDeviceDirectory(t, &memDir{MemoryDirectory: relay.NewMemoryDirectory(), now: time.Unix(1_800_000_000, 0)})
}
