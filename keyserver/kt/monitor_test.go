package kt_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/kt/kttest"
	"github.com/moat-im/moat/keyserver/org"
)

// monitor runs one monitoring step of the client c of device exp.Self.
func monitor(t testing.TB, w *world, c *kt.Client, user org.UserID, exp kt.Expected, now int) *kt.MonitorResult {
	t.Helper()
	return must(c.Monitor(user, exp, monitorResp(t, w, c, user, exp.Self), at(now)))
}

// monitorResp is the directory's answer to the next monitoring step of
// the client c of device self.
func monitorResp(t testing.TB, w *world, c *kt.Client, user org.UserID, self org.DeviceID) *kt.MonitorResponse {
	t.Helper()
	return must(w.d.Monitor(user, self, c.MonitorSince(user), c.MonitorStart(user), c.TreeSize()))
}

func alertKinds(r *kt.MonitorResult) []kt.AlertKind {
	var ks []kt.AlertKind
	for _, a := range r.Alerts {
		ks = append(ks, a.Kind)
	}
	return ks
}

func wantAlerts(t testing.TB, r *kt.MonitorResult, want ...kt.AlertKind) {
	t.Helper()
	if got := alertKinds(r); !slices.Equal(got, want) {
		t.Fatalf("alerts %v, want %v (%v)", got, want, r.Alerts)
	}
}

// wantAddedByOwn checks that r's only alert is the informational one for
// device, added with the approval of the user's own device approver.
func wantAddedByOwn(t testing.TB, r *kt.MonitorResult, device, approver org.DeviceID) {
	t.Helper()
	wantAlerts(t, r, kt.AlertDeviceAddedByOwnDevice)
	a := r.Alerts[0]
	if a.Device != device || a.ApprovedBy != approver || a.Entry == nil || a.Certificate == nil || a.Certificate.Device != device ||
		!a.Kind.Informational() || kt.AlertDeviceAdded.Informational() {
		t.Fatalf("alert %v, want device %v approved by %v", a, device, approver)
	}
}

// TestT29RogueDeviceAlert is adversarial case T29: a rogue key openly
// inserted for a user makes that user's devices alert within the
// monitoring window. Here M-of-N admins "recover" a device for alice
// without any of her devices (the lost-device path of dual control); her
// existing device's next monitoring step raises an alert naming the
// device, the entry and its certificate. The device is in KT, so
// contacts would use it: transparency detects, it does not prevent.
func TestT29RogueDeviceAlert(t *testing.T) {
	w := newWorld(t, 29)
	ca1 := w.client(t) // alice's device a1
	exp := kt.Expected{Self: w.a1.ID}
	wantAlerts(t, monitor(t, w, ca1, w.alice, exp, 2)) // baseline: nothing to report

	rogue := must(w.d.Recover(w.alice, w.d.Tenant.Roster().Threshold, at(3)))
	must(w.d.PublishEpoch(at(4)))

	r := monitor(t, w, ca1, w.alice, exp, 5)
	wantAlerts(t, r, kt.AlertDeviceRecovered)
	a := r.Alerts[0]
	if a.Device != rogue.ID || a.Entry == nil || a.Certificate == nil || a.Certificate.Device != rogue.ID || a.Epoch != 1 {
		t.Fatalf("alert %+v", a)
	}
	if _, isRec := a.Entry.Action.(*org.DeviceRecovered); !isRec {
		t.Fatal("alert does not carry the recovery entry")
	}
	// The alert is raised once.
	must(w.d.PublishEpoch(at(6)))
	wantAlerts(t, monitor(t, w, ca1, w.alice, exp, 7))

	// A contact sees the device, openly.
	cb := w.client(t)
	res := must(cb.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, 0)), at(7)))
	if res.Device(rogue.ID) == nil {
		t.Fatal("recovered device not in KT")
	}
}

// TestMonitoringCatchesAdminInsertedDeviceWithinOneEpoch: every way an
// admin or the operator can put a device under a user shows up at the
// user's device at the next epoch, and the user's own changes do not.
func TestMonitoringCatchesAdminInsertedDeviceWithinOneEpoch(t *testing.T) {
	w := newWorld(t, 30)
	cb1 := w.client(t) // bob's device b1
	exp := kt.Expected{Self: w.b1.ID}
	// Bootstrap: b2, which b1 approved, is bob's own.
	wantAlerts(t, monitor(t, w, cb1, w.bob, exp, 2))

	t.Run("own changes are informational", func(t *testing.T) {
		// b1 approves b3: b1 made the change, no alert. b2 approves
		// b4: b2 being one of bob's own devices, b4 is own, and b1 is
		// told, naming b2 (the issue: any change the device did not
		// make raises an alert).
		b3 := must(w.d.Enrol(w.bob, w.b1, at(3)))
		b4 := must(w.d.Enrol(w.bob, w.b2, at(3)))
		must(w.d.PublishEpoch(at(4)))
		r := monitor(t, w, cb1, w.bob, exp, 5)
		wantAddedByOwn(t, r, b4.ID, w.b2.ID)
		if len(r.Devices) != 4 {
			t.Fatalf("%d devices", len(r.Devices))
		}
		// b4 (approved by a trusted device) then approves b5.
		b5 := must(w.d.Enrol(w.bob, b4, at(6)))
		must(w.d.PublishEpoch(at(7)))
		wantAddedByOwn(t, monitor(t, w, cb1, w.bob, exp, 8), b5.ID, b4.ID)
		// b5's own first step: b5's enrolment is its baseline, so the
		// history before it is quiet.
		cb5 := w.client(t)
		wantAlerts(t, monitor(t, w, cb5, w.bob, kt.Expected{Self: b5.ID}, 8))
		// b5 approves b6: b5 is not told, b1 is.
		b6 := must(w.d.Enrol(w.bob, b5, at(8)))
		must(w.d.PublishEpoch(at(8)))
		wantAlerts(t, monitor(t, w, cb5, w.bob, kt.Expected{Self: b5.ID}, 8))
		wantAddedByOwn(t, monitor(t, w, cb1, w.bob, exp, 8), b6.ID, b5.ID)
		// A device the user expects is no news.
		b7 := must(w.d.Enrol(w.bob, w.b2, at(8)))
		must(w.d.PublishEpoch(at(8)))
		exp.Devices = append(exp.Devices, b7.ID)
		wantAlerts(t, monitor(t, w, cb1, w.bob, exp, 8))
		// Bob asks an admin to revoke b3: expected.
		ok(t, w.d.Revoke(b3, org.ReasonRetired, at(9)))
		must(w.d.PublishEpoch(at(10)))
		exp.Revoked = []org.DeviceID{b3.ID}
		wantAlerts(t, monitor(t, w, cb1, w.bob, exp, 11))
		_ = b5
	})

	t.Run("single admin refused, M admins alert", func(t *testing.T) {
		// Dual control refuses one admin alone ...
		_, err := w.d.Recover(w.bob, 1, at(12))
		var dc *org.DualControlError
		if !errors.As(err, &dc) {
			t.Fatalf("single admin: %v", err)
		}
		// ... and M admins are seen at the next epoch.
		must(w.d.Recover(w.bob, 2, at(12)))
		must(w.d.PublishEpoch(at(13)))
		wantAlerts(t, monitor(t, w, cb1, w.bob, exp, 14), kt.AlertDeviceRecovered)
	})

	t.Run("admin revokes a device", func(t *testing.T) {
		ok(t, w.d.Revoke(w.b2, org.ReasonCompromised, at(18)))
		must(w.d.PublishEpoch(at(19)))
		r := monitor(t, w, cb1, w.bob, exp, 20)
		wantAlerts(t, r, kt.AlertDeviceRevoked)
		if r.Alerts[0].Device != w.b2.ID {
			t.Fatal("wrong device")
		}
	})

	t.Run("policy change", func(t *testing.T) {
		must(w.d.Tenant.PublishPolicy(w.d.Admins[0].Public().ID(), "dlp", nil, at(21)))
		must(w.d.Tenant.AssignPolicy(w.d.Admins[0].Public().ID(), w.bob, "dlp", at(21)))
		must(w.d.PublishEpoch(at(22)))
		wantAlerts(t, monitor(t, w, cb1, w.bob, exp, 23), kt.AlertPolicyChanged)
	})

	t.Run("state round trip", func(t *testing.T) {
		st := state(t, cb1)
		c2 := must(kt.RestoreClient(w.d.Config(maxAge), st))
		if string(state(t, c2)) != string(st) {
			t.Fatal("state does not round-trip")
		}
		// The restored client monitors on, from the same position.
		must(w.d.Recover(w.bob, 3, at(26)))
		must(w.d.PublishEpoch(at(27)))
		wantAlerts(t, monitor(t, w, c2, w.bob, exp, 28), kt.AlertDeviceRecovered)
		cb1 = c2
	})
	t.Run("certificate outside the state machine", func(t *testing.T) {
		// The CA key is used outside the tenant's state machine (a second
		// tenant object with the same CA and tenant id), and the operator
		// publishes the certificate under bob's label with no entry.
		shadow := must(org.NewTenant(org.TenantParams{
			ID: w.tenant, Admins: w.d.Tenant.Roster().Admins, Threshold: 2,
			LogOrigin: w.d.Origin, Log: w.d.LogKey.Public(), VRF: w.d.VRF.Public(), Witnesses: w.d.TrustBundle().Witnesses,
		}, w.d.CA, at(30)))
		rogue := rogueCert(t, w.d, shadow, w.bob, 30)
		v := must(w.d.Tenant.UserValue(w.bob))
		v.Certificates = insertCert(v.Certificates, rogue)
		w.d.Inject(org.Label{User: w.bob}, must(v.Marshal()))
		must(w.d.PublishEpoch(at(31)))
		r := monitor(t, w, cb1, w.bob, exp, 32)
		wantAlerts(t, r, kt.AlertUnexplainedCertificate)
		if r.Alerts[0].Device != rogue.Device {
			t.Fatal("wrong device")
		}
	})
	t.Run("device silently dropped", func(t *testing.T) {
		// From the value last published (with the rogue certificate).
		recs := must(w.d.Records(org.Label{User: w.bob}))
		v := must(org.ParseUserValue(recs[len(recs)-1].Value))
		dropped := v.Certificates[0].Device
		v.Certificates = v.Certificates[1:]
		w.d.Inject(org.Label{User: w.bob}, must(v.Marshal()))
		must(w.d.PublishEpoch(at(33)))
		r := monitor(t, w, cb1, w.bob, exp, 34)
		wantAlerts(t, r, kt.AlertDeviceRemoved)
		if r.Alerts[0].Device != dropped {
			t.Fatal("wrong device")
		}
	})
}

// TestMonitorBootstrap: the first step needs the device's own enrolment,
// judges the devices present then, and trusts those that approved it.
func TestMonitorBootstrap(t *testing.T) {
	w := newWorld(t, 31)
	// A device enrolled but not yet published cannot start monitoring.
	b3 := must(w.d.Enrol(w.bob, w.b2, at(2)))
	c := w.client(t)
	resp := must(w.d.Monitor(w.bob, b3.ID, 0, 0, 0))
	before := state(t, c)
	if _, err := c.Monitor(w.bob, kt.Expected{Self: b3.ID}, resp, at(2)); !errors.Is(err, kt.ErrNotEnrolled) {
		t.Fatalf("got %v", err)
	}
	sameState(t, c, before)
	// Meanwhile admins recover a device for bob; then b3 is published.
	rogue := must(w.d.Recover(w.bob, 2, at(3)))
	must(w.d.PublishEpoch(at(4)))
	// b3 was approved by b2, and b2 by b1: both are bob's own. The
	// recovered device is judged, though added before b3.
	r := monitor(t, w, c, w.bob, kt.Expected{Self: b3.ID}, 5)
	wantAlerts(t, r, kt.AlertDeviceRecovered)
	if r.Alerts[0].Device != rogue.ID {
		t.Fatal("wrong device")
	}
	// Once the user confirms it, it is theirs: a new start has no alert.
	c = w.client(t)
	r = monitor(t, w, c, w.bob, kt.Expected{Self: b3.ID, Devices: []org.DeviceID{rogue.ID}}, 5)
	wantAlerts(t, r)
	if len(r.Devices) != 4 {
		t.Fatalf("%d devices", len(r.Devices))
	}
}

// rogueCert enrols a device for user in shadow, a tenant object holding
// the real CA key, and returns its certificate.
func rogueCert(t testing.TB, d *kttest.Directory, shadow *org.Tenant, user org.UserID, now int) *org.DeviceCertificate {
	t.Helper()
	admin := shadow.Roster().Admins[0].ID()
	must(shadow.AddUser(admin, user, "shadow", org.DepartmentID{}, at(now)))
	dev := must(d.NewDeviceKeys(user))
	code := must(shadow.IssueEnrolmentCode(d.Rand, admin, user, 3600e9, at(now)))
	req := must(org.NewEnrolmentRequest(code, dev.Identity, dev.MLS))
	return must(shadow.RedeemEnrolmentCode(code, req, nil, at(now))).Certificate
}

func insertCert(cs []*org.DeviceCertificate, c *org.DeviceCertificate) []*org.DeviceCertificate {
	i, _ := slices.BinarySearchFunc(cs, c, func(a, b *org.DeviceCertificate) int {
		return slices.Compare(a.Device[:], b.Device[:])
	})
	return slices.Insert(slices.Clone(cs), i, c)
}
