package keyserverdir_test

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/service"
	"github.com/moat-im/moat/keyserver/store/memstore"
	"github.com/moat-im/moat/server/relay/keyserverdir"
	"github.com/moat-im/moat/server/relay/relaytest"
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// harness is a key directory service with two tenants, administered in
// process: devices are enrolled by redeeming enrolment codes and revoked
// by the admin, each followed by an epoch.
type harness struct {
	keyserverdir.Directory
	admin *org.AdminPrivateKey
	now   time.Time
	users map[[16]byte]org.UserID
}

var tenants = [2]org.TenantID{{0x71, 1}, {0x72, 2}}

func newHarness(t *testing.T) *harness {
	h := &harness{now: time.Now().Truncate(time.Second), users: map[[16]byte]org.UserID{}}
	h.admin = must(org.GenerateAdminKey(rand.Reader, org.AdminID{0xad, 1}, org.AdminEd25519))
	second := must(org.GenerateAdminKey(rand.Reader, org.AdminID{0xad, 2}, org.AdminEd25519))
	wk := must(tlogWitnessKey())
	var tcs []service.TenantConfig
	for _, id := range tenants {
		fk := must(service.GenerateFileKeys(rand.Reader))
		tcs = append(tcs, service.TenantConfig{ID: id, Store: memstore.New(), Keys: fk.TenantKeys(),
			Create: &service.CreateParams{Origin: service.Origin("moat.example", id), Admins: []*org.AdminKey{h.admin.Public(), second.Public()},
				Threshold: 2, Witnesses: org.WitnessSet{Quorum: 1, Witnesses: []org.WitnessKey{wk}}}})
	}
	h.Service = must(service.New(context.Background(), service.Options{
		Tenants: tcs, Now: func() time.Time { return h.now },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}))
	return h
}

func (h *harness) publish(t *testing.T, tenant org.TenantID) {
	t.Helper()
	h.now = h.now.Add(time.Minute)
	if _, err := h.Service.Tenant(tenant).PublishEpoch(context.Background(), h.now); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) Enrol(t *testing.T, tenant [16]byte) (device, user [16]byte, id keys.DeviceIdentity) {
	tid := org.TenantID(tenant)
	uid := org.UserID(must(randomID()))
	dk := must(keys.GenerateDeviceIdentity(rand.Reader))
	mk := must(keys.GenerateIdentitySigningKey(rand.Reader))
	mls := must(org.NewMLSSignatureKey(org.MLSSchemeEd25519, mk.Public().Raw()))
	var en *org.Enrolment
	err := h.Service.Tenant(tid).Admin(func(o *org.Tenant) error {
		if _, err := o.AddUser(h.admin.Public().ID(), uid, "someone", org.DepartmentID{}, h.now); err != nil {
			return err
		}
		code, err := o.IssueEnrolmentCode(rand.Reader, h.admin.Public().ID(), uid, time.Hour, h.now)
		if err != nil {
			return err
		}
		req, err := org.NewEnrolmentRequest(code, dk, mls)
		if err != nil {
			return err
		}
		en, err = o.RedeemEnrolmentCode(code, req, nil, h.now)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	h.publish(t, tid)
	h.users[[16]byte(en.Certificate.Device)] = uid
	return [16]byte(en.Certificate.Device), [16]byte(uid), dk.Public()
}

func (h *harness) Revoke(t *testing.T, tenant, device [16]byte) {
	tid := org.TenantID(tenant)
	err := h.Service.Tenant(tid).Admin(func(o *org.Tenant) error {
		_, err := o.RevokeDevice(h.admin.Public().ID(), h.users[device], org.DeviceID(device), org.ReasonLost, h.now)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	h.publish(t, tid)
}

func (h *harness) Tenants() (a, b [16]byte) { return tenants[0], tenants[1] }
func (h *harness) Now() time.Time           { return h.now }

func TestDeviceDirectory(t *testing.T) {
	relaytest.TestDeviceDirectory(t, newHarness(t))
}
