package kt_test

// Tests that pin each check of the monitoring rules (docs/spec/directory.md
// §Monitoring rules) whose removal would otherwise leave every test green:
// an approval counts only if it verifies under an own device's identity key,
// at the first step as after it; a device that keeps its id with other keys
// alerts, a renewed one does not; a removed user alerts.

import (
	"bytes"
	"slices"
	"testing"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/kt/kttest"
	"github.com/moat-im/moat/keyserver/org"
)

// resignCert signs c again under the CA key after the test changed it,
// as whoever holds the CA key can, outside the tenant's state machine.
func resignCert(t testing.TB, d *kttest.Directory, c *org.DeviceCertificate) {
	c.Signature = make([]byte, org.SignatureSize)
	enc := caSign(t, d, "moat/v1/org/device-certificate", must(c.Marshal()))
	c.Signature = enc[len(enc)-org.SignatureSize:]
}

// signEntry signs e under the CA key.
func signEntry(t testing.TB, d *kttest.Directory, e *org.Entry) {
	e.Signature = make([]byte, org.SignatureSize)
	enc := caSign(t, d, "moat/v1/org/timeline-entry", must(e.Marshal()))
	e.Signature = enc[len(enc)-org.SignatureSize:]
}

// latestValue returns the value of user's latest published record.
func latestValue(t testing.TB, w *world, user org.UserID) *org.UserValue {
	t.Helper()
	recs := must(w.d.Records(org.Label{User: user}))
	return must(org.ParseUserValue(recs[len(recs)-1].Value))
}

// forgedDevice returns a new device of user with a certificate the CA key
// holder issued outside the state machine: id and serial n-derived, keys
// new, everything else copied from one of the user's certificates.
func forgedDevice(t testing.TB, w *world, user org.UserID, n byte) *kttest.Device {
	t.Helper()
	dev := must(w.d.NewDeviceKeys(user))
	cert := *latestValue(t, w, user).Certificates[0]
	cert.Device, cert.Serial = org.DeviceID{0xf0, n}, 1<<40+uint64(n)
	cert.Identity, cert.MLSKey = dev.Identity.Public(), dev.MLS
	resignCert(t, w.d, &cert)
	dev.ID, dev.Certificate = cert.Device, &cert
	return dev
}

// request is the enrolment request a device_added entry for dev stands
// for (what device approvals sign, docs/spec/org.md §Dual control).
func request(w *world, dev *kttest.Device, code org.CodeID) *org.EnrolmentRequest {
	return &org.EnrolmentRequest{Tenant: w.tenant, Code: code, Identity: dev.Certificate.Identity, MLSKey: dev.Certificate.MLSKey}
}

// forgedAdd is a device_added entry written with the CA key.
type forgedAdd struct {
	dev       *kttest.Device
	code      org.CodeID
	approvals []*org.Approval
}

// forgeAdds queues, for the next epoch, user's value with a device_added
// entry for each add appended to the user's timeline and its certificate
// added: what an operator holding the CA key can publish without the
// tenant's state machine and its dual control.
func forgeAdds(t testing.TB, w *world, user org.UserID, now int, adds ...forgedAdd) {
	t.Helper()
	v := latestValue(t, w, user)
	head, certs := v.Head, v.Certificates
	var entries []*org.Entry
	for _, a := range adds {
		e := &org.Entry{
			Tenant: w.tenant, User: user, Seq: head.Seq + 1, Prev: head.Hash, Time: at(now),
			Actors:    []org.Actor{{Kind: org.ActorAdmin, ID: w.d.Admins[0].Public().ID()}},
			Approvals: a.approvals,
			Action:    &org.DeviceAdded{Code: a.code, Certificate: a.dev.Certificate},
		}
		signEntry(t, w.d, e)
		entries = append(entries, e)
		head = org.TimelineHead{Seq: e.Seq, Hash: must(e.Hash())}
		certs = insertCert(certs, a.dev.Certificate)
	}
	nv := &org.UserValue{Tenant: w.tenant, User: user, Certificates: certs, Entries: entries, Head: head}
	w.d.Inject(org.Label{User: user}, must(nv.Marshal()))
}

// replaceCert queues, for the next epoch, user's value with the
// certificate of the same device replaced by c, and no entry.
func replaceCert(t testing.TB, w *world, user org.UserID, c *org.DeviceCertificate) {
	t.Helper()
	v := latestValue(t, w, user)
	v.Entries = nil
	i := slices.IndexFunc(v.Certificates, func(x *org.DeviceCertificate) bool { return x.Device == c.Device })
	if i < 0 {
		t.Fatal("no such device")
	}
	v.Certificates[i] = c
	w.d.Inject(org.Label{User: user}, must(v.Marshal()))
}

// TestMonitorApprovalByRecoveredDevice: a device that M-of-N admins
// recovered is not one of the user's own devices, so the devices it
// approves alert too, in the epoch that recovers it as in a later one;
// once the user confirms it, its approvals count.
func TestMonitorApprovalByRecoveredDevice(t *testing.T) {
	w := newWorld(t, 80)
	cb1 := w.client(t) // bob's device b1
	exp := kt.Expected{Self: w.b1.ID}
	wantAlerts(t, monitor(t, w, cb1, w.bob, exp, 2))

	// Admins recover r, and r at once approves x: the state machine takes
	// r's approval (r is bob's device), but bob never did.
	r := must(w.d.Recover(w.bob, 2, at(3)))
	x := must(w.d.Enrol(w.bob, r, at(3)))
	if !x.Entry.ApprovedByDevice(r.ID) {
		t.Fatal("x's entry does not carry r's approval")
	}
	must(w.d.PublishEpoch(at(4)))
	res := monitor(t, w, cb1, w.bob, exp, 5)
	wantAlerts(t, res, kt.AlertDeviceRecovered, kt.AlertDeviceAdded)
	if res.Alerts[0].Device != r.ID || res.Alerts[1].Device != x.ID {
		t.Fatalf("alerts %v", res.Alerts)
	}

	// In a later epoch, r approves y: still not bob's doing.
	y := must(w.d.Enrol(w.bob, r, at(6)))
	must(w.d.PublishEpoch(at(7)))
	res = monitor(t, w, cb1, w.bob, exp, 8)
	wantAlerts(t, res, kt.AlertDeviceAdded)
	if res.Alerts[0].Device != y.ID {
		t.Fatalf("alerts %v", res.Alerts)
	}

	// Bob confirms r: from then on r's approvals are bob's (told to b1,
	// which did not make the change).
	exp.Devices = []org.DeviceID{r.ID}
	z := must(w.d.Enrol(w.bob, r, at(9)))
	must(w.d.PublishEpoch(at(10)))
	wantAddedByOwn(t, monitor(t, w, cb1, w.bob, exp, 11), z.ID, r.ID)

	// A new device of bob's, approved by b2, judges the same history at its
	// first step: r, x and y alert, whoever approved them.
	b3 := must(w.d.Enrol(w.bob, w.b2, at(12)))
	must(w.d.PublishEpoch(at(13)))
	c3 := w.client(t)
	res = monitor(t, w, c3, w.bob, kt.Expected{Self: b3.ID}, 14)
	var got []org.DeviceID
	for _, a := range res.Alerts {
		got = append(got, a.Device)
	}
	for _, d := range []org.DeviceID{r.ID, x.ID, y.ID} {
		if !slices.Contains(got, d) {
			t.Fatalf("first step of b3: no alert for %v in %v", d, res.Alerts)
		}
	}
}

// TestMonitorForgedDeviceApproval: the CA key holder publishes, outside
// the state machine, device_added entries that name one of the user's own
// devices as approver; the approval does not verify under that device's
// key (garbage, another key's signature, or the device's real approval of
// another enrolment), so each addition alerts.
func TestMonitorForgedDeviceApproval(t *testing.T) {
	w := newWorld(t, 81)
	cb1 := w.client(t)
	exp := kt.Expected{Self: w.b1.ID}
	wantAlerts(t, monitor(t, w, cb1, w.bob, exp, 2))

	// b1's real approval of b2's enrolment.
	var b1ForB2 *org.Approval
	for _, ap := range w.b2.Entry.Approvals {
		if ap.Kind == org.ApproverDevice && org.DeviceID(ap.Signer) == w.b1.ID {
			b1ForB2 = ap
		}
	}
	if b1ForB2 == nil {
		t.Fatal("b2's entry has no approval by b1")
	}
	cases := []struct {
		name    string
		approve func(rogue *kttest.Device, code org.CodeID) *org.Approval
	}{
		{"garbage signature", func(*kttest.Device, org.CodeID) *org.Approval {
			return &org.Approval{Kind: org.ApproverDevice, Signer: w.b1.ID, Signature: bytes.Repeat([]byte{1}, 64)}
		}},
		{"signed by the rogue device's own key", func(rogue *kttest.Device, code org.CodeID) *org.Approval {
			return must(org.ApproveByDevice(rogue.Identity.Signing, w.b1.ID, w.bob, request(w, rogue, code)))
		}},
		{"b1's approval of another enrolment", func(*kttest.Device, org.CodeID) *org.Approval { return b1ForB2 }},
		{"b2 named, signed by b1", func(rogue *kttest.Device, code org.CodeID) *org.Approval {
			return must(org.ApproveByDevice(w.b1.Identity.Signing, w.b2.ID, w.bob, request(w, rogue, code)))
		}},
	}
	now := 3
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rogue := forgedDevice(t, w, w.bob, byte(i+1))
			code := org.CodeID{0xc0, byte(i + 1)}
			forgeAdds(t, w, w.bob, now, forgedAdd{dev: rogue, code: code, approvals: []*org.Approval{tc.approve(rogue, code)}})
			must(w.d.PublishEpoch(at(now + 1)))
			res := monitor(t, w, cb1, w.bob, exp, now+2)
			wantAlerts(t, res, kt.AlertDeviceAdded)
			if a := res.Alerts[0]; a.Device != rogue.ID || a.Entry == nil || len(a.Entry.Approvals) != 1 {
				t.Fatalf("alert %+v", a)
			}
			now += 3
		})
	}

	// The control: the same forgery with a valid approval by b1 is, to
	// the monitor, bob's own addition (only the signature tells them apart).
	honest := forgedDevice(t, w, w.bob, 9)
	code := org.CodeID{0xc0, 9}
	forgeAdds(t, w, w.bob, now, forgedAdd{dev: honest, code: code,
		approvals: []*org.Approval{must(org.ApproveByDevice(w.b1.Identity.Signing, w.b1.ID, w.bob, request(w, honest, code)))}})
	must(w.d.PublishEpoch(at(now + 1)))
	wantAlerts(t, monitor(t, w, cb1, w.bob, exp, now+2))
}

// TestMonitorBootstrapForgedApproval: at a device's first step, the
// devices that approved its enrolment are its user's own only if the
// approval verifies. Here the CA key holder adds rogue device r with no
// approval, and writes the enrolment entry of the monitoring device s with
// b1's valid approval and one naming r that is r's signature over another
// request: r is not taken as own, and its addition alerts.
func TestMonitorBootstrapForgedApproval(t *testing.T) {
	w := newWorld(t, 82)
	r := forgedDevice(t, w, w.bob, 1)
	s := forgedDevice(t, w, w.bob, 2)
	rCode, sCode := org.CodeID{0xc1}, org.CodeID{0xc2}
	rForItself := must(org.ApproveByDevice(r.Identity.Signing, r.ID, w.bob, request(w, r, rCode)))
	forgeAdds(t, w, w.bob, 2,
		forgedAdd{dev: r, code: rCode},
		forgedAdd{dev: s, code: sCode, approvals: []*org.Approval{
			must(org.ApproveByDevice(w.b1.Identity.Signing, w.b1.ID, w.bob, request(w, s, sCode))),
			rForItself,
		}})
	must(w.d.PublishEpoch(at(3)))

	cs := w.client(t)
	res := monitor(t, w, cs, w.bob, kt.Expected{Self: s.ID}, 4)
	wantAlerts(t, res, kt.AlertDeviceAdded)
	if res.Alerts[0].Device != r.ID {
		t.Fatalf("alert %+v", res.Alerts[0])
	}
	// r's approval does verify for r's own request: the test's forgery is
	// a real signature by r, only not over s's enrolment.
	if !r.Certificate.Identity.Signing.Equal(r.Identity.Signing.Public()) ||
		r.Identity.Signing.Public().Verify(must(org.DeviceApprovalMessage(w.bob, request(w, r, rCode))), rForItself.Signature) != nil {
		t.Fatal("r's approval of itself does not verify")
	}
}

// TestMonitorKeyChanged: a device that keeps its id while its keys are
// swapped alerts (its identity DH key, then its MLS key, each re-certified
// by the CA key holder with no entry), once per change; a renewed
// certificate (same keys, new serial) does not.
func TestMonitorKeyChanged(t *testing.T) {
	w := newWorld(t, 83)
	cb1 := w.client(t)
	exp := kt.Expected{Self: w.b1.ID}
	wantAlerts(t, monitor(t, w, cb1, w.bob, exp, 2))

	cur := *w.b2.Certificate
	step := func(now int, change func(c *org.DeviceCertificate), want ...kt.AlertKind) {
		t.Helper()
		next := cur
		next.Serial += 100
		change(&next)
		resignCert(t, w.d, &next)
		replaceCert(t, w, w.bob, &next)
		must(w.d.PublishEpoch(at(now)))
		res := monitor(t, w, cb1, w.bob, exp, now+1)
		wantAlerts(t, res, want...)
		for _, a := range res.Alerts {
			if a.Device != w.b2.ID || a.Certificate == nil || a.Certificate.Serial != next.Serial {
				t.Fatalf("alert %+v", a)
			}
		}
		cur = next
	}
	step(3, func(*org.DeviceCertificate) {}) // renewed: no alert
	other := must(w.d.NewDeviceKeys(w.bob))
	step(5, func(c *org.DeviceCertificate) {
		c.Identity.DH = other.Identity.DH.Public()
	}, kt.AlertKeyChanged)
	step(7, func(c *org.DeviceCertificate) { c.MLSKey = other.MLS }, kt.AlertKeyChanged)
	step(9, func(c *org.DeviceCertificate) {
		c.Identity.Signing = other.Identity.Signing.Public()
	}, kt.AlertKeyChanged)
	step(11, func(*org.DeviceCertificate) {}) // renewed again: no alert
}

// TestMonitorUserRemoved: removing the user alerts the user's device.
func TestMonitorUserRemoved(t *testing.T) {
	w := newWorld(t, 84)
	cb1 := w.client(t)
	exp := kt.Expected{Self: w.b1.ID, Revoked: []org.DeviceID{w.b1.ID, w.b2.ID}}
	wantAlerts(t, monitor(t, w, cb1, w.bob, exp, 2))
	must(w.d.Tenant.RemoveUser(w.d.Admins[0].Public().ID(), w.bob, at(3)))
	must(w.d.PublishEpoch(at(4)))
	res := monitor(t, w, cb1, w.bob, exp, 5)
	if !slices.Contains(alertKinds(res), kt.AlertUserRemoved) {
		t.Fatalf("alerts %v, want one of %v", res.Alerts, kt.AlertUserRemoved)
	}
	for _, a := range res.Alerts {
		if a.Kind == kt.AlertUserRemoved {
			if _, isRemoval := a.Entry.Action.(*org.UserRemoved); !isRemoval || a.Epoch != 1 {
				t.Fatalf("alert %+v", a)
			}
		}
	}
}

// TestT29BootstrapAfterRecovery: admins recover r for bob (b1 alerts), and
// r then approves, with b2, the enrolment of bob's next device s through
// the ordinary device-approval path. At s's first step r approved an own
// device, but r's addition does not trace back through device approvals
// to bob's first device and bob never confirmed r: r's recovery alerts at
// s too. Once bob confirms r, it does not.
func TestT29BootstrapAfterRecovery(t *testing.T) {
	w := newWorld(t, 83)
	cb1 := w.client(t)
	exp := kt.Expected{Self: w.b1.ID}
	wantAlerts(t, monitor(t, w, cb1, w.bob, exp, 2))

	r := must(w.d.Recover(w.bob, 2, at(3)))
	must(w.d.PublishEpoch(at(4)))
	res := monitor(t, w, cb1, w.bob, exp, 5)
	wantAlerts(t, res, kt.AlertDeviceRecovered)
	if res.Alerts[0].Device != r.ID {
		t.Fatalf("alert %+v", res.Alerts[0])
	}

	// s, approved by r and by b2.
	s := must(w.d.NewDeviceKeys(w.bob))
	code, req := must2(w.d.Request(s, at(6)))
	approvals := []*org.Approval{
		must(org.ApproveByDevice(r.Identity.Signing, r.ID, w.bob, req)),
		must(org.ApproveByDevice(w.b2.Identity.Signing, w.b2.ID, w.bob, req)),
	}
	ok(t, w.d.Redeem(s, code, req, approvals, at(6)))
	if !s.Entry.ApprovedByDevice(r.ID) || !s.Entry.ApprovedByDevice(w.b2.ID) {
		t.Fatal("s's entry does not carry r's and b2's approvals")
	}
	must(w.d.PublishEpoch(at(7)))
	// b1 judges s as bob's own (b2 approved it), and is told.
	wantAddedByOwn(t, monitor(t, w, cb1, w.bob, exp, 8), s.ID, w.b2.ID)

	res = monitor(t, w, w.client(t), w.bob, kt.Expected{Self: s.ID}, 8)
	wantAlerts(t, res, kt.AlertDeviceRecovered)
	if res.Alerts[0].Device != r.ID {
		t.Fatalf("alert %+v", res.Alerts[0])
	}
	// Confirmed by bob, r is own at s's first step.
	wantAlerts(t, monitor(t, w, w.client(t), w.bob, kt.Expected{Self: s.ID, Devices: []org.DeviceID{r.ID}}, 8))
}
