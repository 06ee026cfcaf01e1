package org

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
)

// dcFixture is a tenant whose user uid(1) already has one device.
func dcFixture(t *testing.T, seed uint64) (*fixture, *testDevice, *Enrolment) {
	f := newFixture(t, seed)
	d, e := f.enrol(t, uid(1), t0)
	return f, d, e
}

func wantDualControl(t *testing.T, err, want error) {
	t.Helper()
	var dc *DualControlError
	if !errors.As(err, &dc) || !errors.Is(err, want) {
		t.Fatalf("got %v, want a *DualControlError wrapping %v", err, want)
	}
}

// TestDualControlRefusesSingleAdmin: an admin alone, whatever it tries,
// cannot add a device to a user who has one.
func TestDualControlRefusesSingleAdmin(t *testing.T) {
	f, _, _ := dcFixture(t, 40)
	c := f.code(t, uid(1), t0) // issued by admin 1
	rogue := f.newDevice(t)
	req := f.request(t, c, rogue)
	before := stateBytes(t, f.t)

	// No approval at all.
	_, err := f.t.RedeemEnrolmentCode(c, req, nil, t0)
	wantDualControl(t, err, ErrApprovalRequired)

	// One admin's approval (the issuer's, or any other single admin's).
	for i := range f.admins {
		a := must(ApproveByAdmin(f.admins[i], uid(1), req))
		_, err = f.t.RedeemEnrolmentCode(c, req, []*Approval{a}, t0)
		wantDualControl(t, err, ErrInsufficientApprovals)
	}

	// The same admin twice does not count as two.
	a := must(ApproveByAdmin(f.admins[0], uid(1), req))
	b := must(ApproveByAdmin(f.admins[0], uid(1), req)) // hedged: a different signature
	_, err = f.t.RedeemEnrolmentCode(c, req, []*Approval{a, b}, t0)
	wantDualControl(t, err, ErrDuplicateApproval)

	// An admin posing as a device of the user.
	fake := &Approval{Kind: ApproverDevice, Signer: [16]byte(f.t.users[uid(1)].devices[sortedDevices(f.t.users[uid(1)])[0]].cert.Device), Signature: a.Signature[:64]}
	_, err = f.t.RedeemEnrolmentCode(c, req, []*Approval{fake}, t0)
	wantDualControl(t, err, ErrApprovalInvalid)

	// A single admin cannot lower the threshold to 1 either: rosters
	// require M ≥ 2, and changing the roster needs M approvals.
	r := &AdminRoster{Header: Header{Tenant: tid(1), Sequence: 2, IssuedAt: t0}, Threshold: 1, Admins: f.t.Roster().Admins}
	if _, err := RosterApprovalMessage(r); err == nil {
		t.Fatal("a roster with threshold 1 encodes")
	}
	r.Threshold = 2
	r.Admins = r.Admins[:2]
	ra := must(ApproveRoster(f.admins[0], r))
	if _, err := f.t.UpdateRoster(r, []*Approval{ra}); !errors.Is(err, ErrInsufficientApprovals) {
		t.Fatalf("roster change by one admin: got %v", err)
	}

	if !bytes.Equal(before, stateBytes(t, f.t)) {
		t.Fatal("refused attempts changed the state")
	}
	if len(f.t.users[uid(1)].devices) != 1 {
		t.Fatal("a device was added")
	}
}

func TestDualControlDeviceApproval(t *testing.T) {
	f, old, first := dcFixture(t, 41)
	c := f.code(t, uid(1), t0)
	nd := f.newDevice(t)
	req := f.request(t, c, nd)
	a := must(ApproveByDevice(old.id.Signing, first.Certificate.Device, uid(1), req))
	en := must(f.t.RedeemEnrolmentCode(c, req, []*Approval{a}, t0.Add(time.Minute)))
	added, isAdded := en.Entry.Action.(*DeviceAdded)
	if !isAdded || added.Certificate != en.Certificate || !en.Entry.ApprovedByDevice(first.Certificate.Device) {
		t.Fatalf("unexpected entry %+v", en.Entry)
	}
	// Anyone can re-check the approval from the published entry.
	ok(t, en.Entry.VerifyApprovals(f.t.Roster(), func(d DeviceID) *keys.IdentitySigningPublicKey {
		if d == first.Certificate.Device {
			return first.Certificate.Identity.Signing
		}
		return nil
	}))
	if en.Entry.Seq != 3 { // UserAdded, DeviceAdded, DeviceAdded
		t.Fatalf("entry seq %d", en.Entry.Seq)
	}
}

func TestDualControlAdminQuorum(t *testing.T) {
	f, _, _ := dcFixture(t, 42)
	c := f.code(t, uid(1), t0)
	req := f.request(t, c, f.newDevice(t))
	m := f.t.Roster().Threshold
	var approvals []*Approval
	for i := range m {
		approvals = append(approvals, must(ApproveByAdmin(f.admins[i], uid(1), req)))
	}
	// M−1 approvals are refused.
	_, err := f.t.RedeemEnrolmentCode(c, req, approvals[:m-1], t0)
	wantDualControl(t, err, ErrInsufficientApprovals)
	var dc *DualControlError
	errors.As(err, &dc)
	if dc.Valid != m-1 || dc.Required != m {
		t.Fatalf("error counts %d of %d", dc.Valid, dc.Required)
	}
	// M approvals work, recorded as a recovery.
	en := must(f.t.RedeemEnrolmentCode(c, req, approvals, t0))
	if _, isRec := en.Entry.Action.(*DeviceRecovered); !isRec {
		t.Fatalf("admin-approved addition recorded as %T", en.Entry.Action)
	}
	ok(t, en.Entry.VerifyApprovals(f.t.Roster(), nil))
	// A client holding a roster with a higher threshold rejects it.
	strict := *f.t.Roster()
	strict.Threshold = 3
	if err := en.Entry.VerifyApprovals(&strict, nil); !errors.Is(err, ErrInsufficientApprovals) {
		t.Fatalf("client re-check with threshold 3: got %v", err)
	}
}

func TestDualControlApprovalForOtherKeysRefused(t *testing.T) {
	f, old, first := dcFixture(t, 43)
	c := f.code(t, uid(1), t0)
	approved, rogue := f.newDevice(t), f.newDevice(t)
	a := must(ApproveByDevice(old.id.Signing, first.Certificate.Device, uid(1), f.request(t, c, approved)))
	_, err := f.t.RedeemEnrolmentCode(c, f.request(t, c, rogue), []*Approval{a}, t0)
	wantDualControl(t, err, ErrApprovalInvalid)

	// The same for admin approvals.
	var as []*Approval
	for i := range 2 {
		as = append(as, must(ApproveByAdmin(f.admins[i], uid(1), f.request(t, c, approved))))
	}
	_, err = f.t.RedeemEnrolmentCode(c, f.request(t, c, rogue), as, t0)
	wantDualControl(t, err, ErrApprovalInvalid)

	// And an approval for another user's device.
	must(f.t.AddUser(aid(1), uid(2), "Bob", DepartmentID{}, t0))
	a2 := must(ApproveByDevice(old.id.Signing, first.Certificate.Device, uid(2), f.request(t, c, approved)))
	_, err = f.t.RedeemEnrolmentCode(c, f.request(t, c, approved), []*Approval{a2}, t0)
	wantDualControl(t, err, ErrApprovalInvalid)

	// The genuine approval still works: refusals consumed nothing.
	must(f.t.RedeemEnrolmentCode(c, f.request(t, c, approved), []*Approval{a}, t0))
}

func TestDualControlReplayedApprovalRefused(t *testing.T) {
	f, old, first := dcFixture(t, 44)
	c := f.code(t, uid(1), t0)
	nd := f.newDevice(t)
	req := f.request(t, c, nd)
	a := must(ApproveByDevice(old.id.Signing, first.Certificate.Device, uid(1), req))
	en := must(f.t.RedeemEnrolmentCode(c, req, []*Approval{a}, t0))

	// The approval is public in the timeline. Replayed with a new code,
	// for an attacker's device, it is refused as a replay.
	must(f.t.RevokeDevice(aid(1), uid(1), en.Certificate.Device, ReasonLost, t0.Add(time.Hour)))
	c2 := f.code(t, uid(1), t0.Add(time.Hour))
	_, err := f.t.RedeemEnrolmentCode(c2, f.request(t, c2, f.newDevice(t)), []*Approval{a}, t0.Add(time.Hour))
	wantDualControl(t, err, ErrApprovalReplayed)
	// Replayed to bring back the revoked device's own keys, it is refused
	// too: those keys were certified once already.
	if _, err := f.t.RedeemEnrolmentCode(c2, f.request(t, c2, nd), []*Approval{a}, t0.Add(time.Hour)); !errors.Is(err, ErrKeyReused) {
		t.Fatalf("revoked keys re-added: got %v", err)
	}

	// Admin approvals are consumed the same way.
	c3 := f.code(t, uid(1), t0.Add(time.Hour))
	req3 := f.request(t, c3, f.newDevice(t))
	as := []*Approval{must(ApproveByAdmin(f.admins[0], uid(1), req3)), must(ApproveByAdmin(f.admins[1], uid(1), req3))}
	must(f.t.RedeemEnrolmentCode(c3, req3, as, t0.Add(time.Hour)))
	c4 := f.code(t, uid(1), t0.Add(time.Hour))
	_, err = f.t.RedeemEnrolmentCode(c4, f.request(t, c4, f.newDevice(t)), as, t0.Add(time.Hour))
	wantDualControl(t, err, ErrApprovalReplayed)

	// A fresh approval for a fresh code cannot bring back revoked keys either.
	c5 := f.code(t, uid(1), t0.Add(time.Hour))
	req5 := f.request(t, c5, nd)
	a5 := must(ApproveByDevice(old.id.Signing, first.Certificate.Device, uid(1), req5))
	if _, err := f.t.RedeemEnrolmentCode(c5, req5, []*Approval{a5}, t0.Add(time.Hour)); !errors.Is(err, ErrKeyReused) {
		t.Fatalf("revoked keys re-added: got %v", err)
	}
}

// TestDualControlAfterRevokingEveryDevice: revoking all of a user's
// devices does not reopen the no-approval path of a first device.
func TestDualControlAfterRevokingEveryDevice(t *testing.T) {
	f, old, first := dcFixture(t, 45)
	must(f.t.RevokeDevice(aid(1), uid(1), first.Certificate.Device, ReasonLost, t0))
	c := f.code(t, uid(1), t0)
	req := f.request(t, c, f.newDevice(t))
	_, err := f.t.RedeemEnrolmentCode(c, req, nil, t0)
	wantDualControl(t, err, ErrApprovalRequired)
	// The revoked device cannot approve.
	a := must(ApproveByDevice(old.id.Signing, first.Certificate.Device, uid(1), req))
	_, err = f.t.RedeemEnrolmentCode(c, req, []*Approval{a}, t0)
	wantDualControl(t, err, ErrApprovalInvalid)
	// M admins can.
	as := []*Approval{must(ApproveByAdmin(f.admins[1], uid(1), req)), must(ApproveByAdmin(f.admins[2], uid(1), req))}
	en := must(f.t.RedeemEnrolmentCode(c, req, as, t0))
	if en.Entry.Action.Kind() != ActionDeviceRecovered {
		t.Fatal("not recorded as a recovery")
	}
}

// TestT29RogueDeviceVisibleInTimeline: a device openly inserted for a user
// (here by an admin quorum, the only way without the user's devices) is in
// the next published value of the user's label as a signed, chained
// DeviceRecovered entry, which the user's own device flags because it did
// not approve it.
func TestT29RogueDeviceVisibleInTimeline(t *testing.T) {
	f, _, first := dcFixture(t, 29)
	self := first.Certificate.Device
	var head TimelineHead
	for _, up := range must(f.t.Publish(t0)) {
		if up.Label.User == uid(1) {
			v := must(ParseUserValue(up.Value))
			head = must(v.Verify(f.t.CA(), tid(1), uid(1), TimelineHead{}))
		}
	}
	c := f.code(t, uid(1), t0)
	req := f.request(t, c, f.newDevice(t))
	as := []*Approval{must(ApproveByAdmin(f.admins[0], uid(1), req)), must(ApproveByAdmin(f.admins[1], uid(1), req))}
	must(f.t.RedeemEnrolmentCode(c, req, as, t0.Add(time.Minute)))

	var alerts []*Entry
	for _, up := range must(f.t.Publish(t0.Add(30 * time.Second))) {
		if up.Label.User != uid(1) {
			continue
		}
		v := must(ParseUserValue(up.Value))
		head = must(v.Verify(f.t.CA(), tid(1), uid(1), head))
		for _, e := range v.Entries {
			if !e.ApprovedByDevice(self) {
				alerts = append(alerts, e)
			}
		}
		if len(v.Certificates) != 2 {
			t.Fatalf("published value has %d certificates", len(v.Certificates))
		}
	}
	if len(alerts) != 1 || alerts[0].Action.Kind() != ActionDeviceRecovered {
		t.Fatalf("monitor alerts: %+v", alerts)
	}
}

// TestKeysNeverCertifiedTwice: a device cannot claim another device's DH
// or MLS key, even with its own identity signing key.
func TestKeysNeverCertifiedTwice(t *testing.T) {
	f := newFixture(t, 46)
	victim, _ := f.enrol(t, uid(1), t0)
	must(f.t.AddUser(aid(1), uid(2), "Mallory", DepartmentID{}, t0))
	for name, mut := range map[string]func(d *testDevice){
		"dh":  func(d *testDevice) { d.id.DH = victim.id.DH },
		"mls": func(d *testDevice) { d.mls = victim.mls },
	} {
		d := f.newDevice(t)
		mut(d)
		c := f.code(t, uid(2), t0)
		if _, err := f.t.RedeemEnrolmentCode(c, f.request(t, c, d), nil, t0); !errors.Is(err, ErrKeyReused) {
			t.Errorf("%s: got %v, want ErrKeyReused", name, err)
		}
	}
}
