package org

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"
)

func TestDepartmentTree(t *testing.T) {
	f := newFixture(t, 50)
	a := aid(1)
	ok(t, f.t.AddDepartment(a, did(1), DepartmentID{}, "Engineering"))
	ok(t, f.t.AddDepartment(a, did(2), did(1), "Platform"))
	ok(t, f.t.AddDepartment(a, did(3), did(2), "Storage"))
	ok(t, f.t.AddDepartment(a, did(4), DepartmentID{}, "Sales"))

	before := stateBytes(t, f.t)
	for name, c := range map[string]struct {
		err  error
		want error
	}{
		"duplicate":       {f.t.AddDepartment(a, did(1), DepartmentID{}, "Again"), ErrDepartmentExists},
		"unknown parent":  {f.t.AddDepartment(a, did(9), did(8), "Orphan"), ErrUnknownDepartment},
		"zero id":         {f.t.AddDepartment(a, DepartmentID{}, DepartmentID{}, "Zero"), ErrInvalidArgument},
		"empty name":      {f.t.AddDepartment(a, did(9), DepartmentID{}, ""), ErrInvalidArgument},
		"control char":    {f.t.AddDepartment(a, did(9), DepartmentID{}, "a\nb"), ErrInvalidArgument},
		"unknown admin":   {f.t.AddDepartment(aid(9), did(9), DepartmentID{}, "X"), ErrUnknownAdmin},
		"self parent":     {f.t.MoveDepartment(a, did(1), did(1)), ErrDepartmentCycle},
		"under child":     {f.t.MoveDepartment(a, did(1), did(2)), ErrDepartmentCycle},
		"under grandkid":  {f.t.MoveDepartment(a, did(1), did(3)), ErrDepartmentCycle},
		"not empty":       {f.t.RemoveDepartment(a, did(2)), ErrDepartmentNotEmpty},
		"remove unknown":  {f.t.RemoveDepartment(a, did(9)), ErrUnknownDepartment},
		"rename unknown":  {f.t.RenameDepartment(a, did(9), "X"), ErrUnknownDepartment},
		"move to unknown": {f.t.MoveDepartment(a, did(3), did(9)), ErrUnknownDepartment},
	} {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: got %v, want %v", name, c.err, c.want)
		}
	}
	if !bytes.Equal(before, stateBytes(t, f.t)) {
		t.Fatal("refused department operations changed the state")
	}

	ok(t, f.t.MoveDepartment(a, did(3), did(4))) // Storage moves to Sales
	ok(t, f.t.MoveDepartment(a, did(1), did(3))) // now legal: Storage is no longer below Engineering
	ok(t, f.t.RenameDepartment(a, did(4), "Sales & Storage"))
	must(f.t.AddUser(a, uid(1), "Alice", did(2), t0))
	if err := f.t.RemoveDepartment(a, did(2)); !errors.Is(err, ErrDepartmentNotEmpty) {
		t.Fatalf("department with a member removed: %v", err)
	}
	ok(t, f.t.SetUserDepartment(a, uid(1), did(4)))
	ok(t, f.t.RemoveDepartment(a, did(2)))

	// The published org chart carries the tree and the display names.
	var chart *OrgChart
	for _, up := range must(f.t.Publish(t0)) {
		if up.Label.Org == OrgLabelOrgChart {
			chart = must(ParseOrgChart(up.Value))
		}
	}
	if chart == nil {
		t.Fatal("no org chart published")
	}
	ok(t, chart.Verify(f.t.CA(), tid(1)))
	want := []Department{{did(1), did(3), "Engineering"}, {did(3), did(4), "Storage"}, {did(4), DepartmentID{}, "Sales & Storage"}}
	if !slices.Equal(chart.Departments, want) {
		t.Fatalf("departments %+v", chart.Departments)
	}
	if len(chart.Members) != 1 || chart.Members[0] != (Member{uid(1), did(4), "Alice"}) {
		t.Fatalf("members %+v", chart.Members)
	}
	// Nothing changed since: the next Publish has no chart.
	if ups := must(f.t.Publish(t0)); len(ups) != 0 {
		t.Fatalf("second publish: %d updates", len(ups))
	}
}

func TestOrgChartRejectsCycles(t *testing.T) {
	f := newFixture(t, 51)
	c := &OrgChart{Header: Header{Tenant: tid(1), Sequence: 1, IssuedAt: t0}, Departments: []Department{
		{did(1), did(2), "A"}, {did(2), did(1), "B"},
	}}
	if _, err := c.body(); err == nil {
		t.Fatal("cyclic chart encodes")
	}
	c.Departments[1].Parent = DepartmentID{}
	ok(t, signStatement(f.signer, labelOrgChart, c.body, &c.Signature))
	enc := must(c.Marshal())
	// Patch B's parent to A in the encoding: parse must refuse the cycle.
	bad := bytes.Clone(enc)
	i := bytes.Index(bad, append(did(2).bytes(), make([]byte, 16)...))
	copy(bad[i+16:], did(1).bytes())
	if _, err := ParseOrgChart(bad); !errors.Is(err, ErrMalformed) {
		t.Fatalf("cyclic chart parsed: %v", err)
	}
}

func (d DepartmentID) bytes() []byte { return d[:] }

func TestUserLifecycle(t *testing.T) {
	f := newFixture(t, 52)
	_, e1 := f.enrol(t, uid(1), t0)
	if _, err := f.t.AddUser(aid(1), uid(1), "Again", DepartmentID{}, t0); !errors.Is(err, ErrUserExists) {
		t.Fatalf("duplicate user: %v", err)
	}
	c := f.code(t, uid(1), t0)
	req := f.request(t, c, f.newDevice(t))
	pending := f.code(t, uid(1), t0)

	rm := must(f.t.RemoveUser(aid(2), uid(1), t0.Add(time.Hour)))
	if len(rm.Devices) != 1 || rm.Entry.Action.Kind() != ActionUserRemoved || rm.Devices[0].Revocation.Reason != ReasonUserRemoved {
		t.Fatalf("removal %+v", rm)
	}
	ok(t, rm.Devices[0].Wipe.Verify(f.t.CA(), tid(1), e1.Certificate.Device, e1.Certificate.Serial))
	// Codes of the removed user are gone; the user cannot come back.
	if _, err := f.t.RedeemEnrolmentCode(pending, f.request(t, pending, f.newDevice(t)), nil, t0.Add(time.Hour)); !errors.Is(err, ErrBadEnrolmentCode) {
		t.Fatalf("code of removed user: %v", err)
	}
	if _, err := f.t.RedeemEnrolmentCode(c, req, nil, t0.Add(time.Hour)); err == nil {
		t.Fatal("code of removed user redeemed")
	}
	if _, err := f.t.AddUser(aid(1), uid(1), "Back", DepartmentID{}, t0); !errors.Is(err, ErrUserExists) {
		t.Fatalf("re-added removed user: %v", err)
	}
	if _, err := f.t.RemoveUser(aid(1), uid(1), t0); !errors.Is(err, ErrUserRemoved) {
		t.Fatalf("removed twice: %v", err)
	}
	// The published value: no certificates; UserAdded, DeviceAdded,
	// DeviceRevoked, UserRemoved, chained.
	for _, up := range must(f.t.Publish(t0.Add(time.Hour))) {
		if up.Label.User != uid(1) {
			continue
		}
		v := must(ParseUserValue(up.Value))
		must(v.Verify(f.t.CA(), tid(1), uid(1), TimelineHead{}))
		var kinds []ActionKind
		for _, e := range v.Entries {
			kinds = append(kinds, e.Action.Kind())
		}
		if len(v.Certificates) != 0 || !slices.Equal(kinds, []ActionKind{ActionUserAdded, ActionDeviceAdded, ActionDeviceRevoked, ActionUserRemoved}) {
			t.Fatalf("value: %d certificates, entries %v", len(v.Certificates), kinds)
		}
	}
}

// TestT45RevocationRemovesDevice covers the org part of T45: a revoked
// device leaves the user's published certificates, its certificate fails
// verification with the signed revocation, it receives a signed wipe
// instruction addressed to it alone, and the timeline records it.
func TestT45RevocationRemovesDevice(t *testing.T) {
	f := newFixture(t, 45)
	_, e1 := f.enrol(t, uid(1), t0)
	must(f.t.Publish(t0))
	dev := e1.Certificate.Device
	before := stateBytes(t, f.t)
	if _, err := f.t.RevokeDevice(aid(1), uid(1), DeviceID{1}, ReasonLost, t0); !errors.Is(err, ErrUnknownDevice) {
		t.Fatal(err)
	}
	if _, err := f.t.RevokeDevice(aid(9), uid(1), dev, ReasonLost, t0); !errors.Is(err, ErrUnknownAdmin) {
		t.Fatal(err)
	}
	if !bytes.Equal(before, stateBytes(t, f.t)) {
		t.Fatal("refused revocations changed the state")
	}
	r := must(f.t.RevokeDevice(aid(1), uid(1), dev, ReasonCompromised, t0.Add(time.Minute)))
	if _, err := f.t.RevokeDevice(aid(1), uid(1), dev, ReasonLost, t0); !errors.Is(err, ErrDeviceRevoked) {
		t.Fatal(err)
	}
	// Revocation: signed, parses, names every serial.
	rev := must(ParseRevocation(must(r.Revocation.Marshal())))
	ok(t, rev.Verify(f.t.CA(), tid(1)))
	if !rev.Revokes(e1.Certificate.Serial) || rev.Revokes(e1.Certificate.Serial+1) {
		t.Fatal("Revokes")
	}
	err := VerifyDeviceCertificate(e1.Certificate, f.t.CA(), tid(1), t0.Add(time.Hour), rev.Revokes)
	if !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked certificate: %v", err)
	}
	// Wipe: for this device and certificate only.
	w := must(ParseWipeInstruction(must(r.Wipe.Marshal())))
	ok(t, w.Verify(f.t.CA(), tid(1), dev, e1.Certificate.Serial))
	if err := w.Verify(f.t.CA(), tid(1), DeviceID{1}, e1.Certificate.Serial); !errors.Is(err, ErrWrongSubject) {
		t.Fatalf("wipe for another device: %v", err)
	}
	if err := w.Verify(f.t.CA(), tid(2), dev, e1.Certificate.Serial); !errors.Is(err, ErrWrongTenant) {
		t.Fatalf("wipe for another tenant: %v", err)
	}
	// Published value: no certificate, a DeviceRevoked entry continuing the chain.
	var head TimelineHead
	ups := must(f.t.Publish(t0.Add(time.Minute)))
	for _, up := range ups {
		if up.Label.User == uid(1) {
			v := must(ParseUserValue(up.Value))
			if len(v.Certificates) != 0 || len(v.Entries) != 1 || v.Entries[0].Action.Kind() != ActionDeviceRevoked {
				t.Fatalf("value after revocation: %+v", v)
			}
			head = v.Head
		}
	}
	if head.Seq != 3 {
		t.Fatalf("head %d", head.Seq)
	}
}

func TestPublishAndClientVerification(t *testing.T) {
	f := newFixture(t, 53)
	ups := must(f.t.Publish(t0))
	var labels []string
	for _, up := range ups {
		labels = append(labels, up.Label.Org)
	}
	if !slices.Equal(labels, []string{OrgLabelAdminRoster, OrgLabelOrgChart, OrgLabelTrustBundle}) {
		t.Fatalf("initial org labels %v", labels)
	}
	roster := must(ParseAdminRoster(ups[0].Value))
	ok(t, roster.Verify(f.t.CA(), tid(1)))
	if err := roster.Verify(f.t.CA(), tid(2)); !errors.Is(err, ErrWrongTenant) {
		t.Fatal(err)
	}

	// A client follows a user across epochs; a gap is detected.
	var head TimelineHead
	_, e := f.enrol(t, uid(1), t0)
	v1 := userUpdate(t, must(f.t.Publish(t0)), uid(1))
	head = must(v1.Verify(f.t.CA(), tid(1), uid(1), head))
	must(f.t.AssignPolicy(aid(1), uid(1), "", t0))
	v2 := userUpdate(t, must(f.t.Publish(t0)), uid(1))
	must(f.t.AssignPolicy(aid(1), uid(1), "", t0))
	v3 := userUpdate(t, must(f.t.Publish(t0)), uid(1))
	if _, err := v3.Verify(f.t.CA(), tid(1), uid(1), head); !errors.Is(err, ErrTimelineGap) {
		t.Fatalf("skipped value: %v", err)
	}
	head = must(v2.Verify(f.t.CA(), tid(1), uid(1), head))
	head = must(v3.Verify(f.t.CA(), tid(1), uid(1), head))
	if head.Seq != 4 {
		t.Fatalf("head %d", head.Seq)
	}
	if _, err := v3.Verify(f.t.CA(), tid(1), uid(2), TimelineHead{}); !errors.Is(err, ErrWrongSubject) {
		t.Fatal(err)
	}
	// Renewal: same keys, new serial, no entry; the value still verifies.
	c := must(f.t.RenewCertificate(aid(1), uid(1), e.Certificate.Device, t0.Add(24*time.Hour)))
	if c.Serial == e.Certificate.Serial || !c.Identity.Equal(e.Certificate.Identity) {
		t.Fatal("renewal")
	}
	v4 := userUpdate(t, must(f.t.Publish(t0)), uid(1))
	if len(v4.Entries) != 0 || v4.Certificates[0].Serial != c.Serial {
		t.Fatal("renewal value")
	}
	head = must(v4.Verify(f.t.CA(), tid(1), uid(1), head))
}

func userUpdate(t *testing.T, ups []Update, u UserID) *UserValue {
	t.Helper()
	for _, up := range ups {
		if up.Label.User == u {
			return must(ParseUserValue(up.Value))
		}
	}
	t.Fatalf("no update for user %s", u)
	return nil
}

func TestPoliciesAndEscrow(t *testing.T) {
	f := newFixture(t, 54)
	must(f.t.AddUser(aid(1), uid(1), "Alice", DepartmentID{}, t0))
	must(f.t.AddUser(aid(1), uid(2), "Bob", DepartmentID{}, t0))
	if _, err := f.t.AssignPolicy(aid(1), uid(1), "dlp", t0); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("unknown policy: %v", err)
	}
	p1 := must(f.t.PublishPolicy(aid(1), "dlp", []PolicyEntry{{"words", []byte("secret\nconfidential")}, {"action", []byte("warn")}}, t0))
	if p1.Entries[0].Key != "action" || p1.Sequence != 1 {
		t.Fatal("entries not sorted")
	}
	if _, err := f.t.PublishPolicy(aid(1), "dlp", []PolicyEntry{{"a", nil}, {"a", nil}}, t0); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("duplicate keys: %v", err)
	}
	e := must(f.t.AssignPolicy(aid(1), uid(1), "dlp", t0))
	pc := e.Action.(*PolicyChanged)
	if pc.PolicySequence != 1 || pc.PolicyHash != sha256Of(must(p1.Marshal())) {
		t.Fatal("PolicyChanged does not name the bundle")
	}
	must(f.t.Publish(t0))
	// A new version reaches the timeline of assigned users only.
	p2 := must(f.t.PublishPolicy(aid(1), "dlp", []PolicyEntry{{"action", []byte("block")}}, t0))
	ups := must(f.t.Publish(t0))
	var sawPolicy bool
	for _, up := range ups {
		switch {
		case up.Label.Org == OrgLabelPolicyPrefix+"dlp":
			pb := must(ParsePolicyBundle(up.Value))
			ok(t, pb.Verify(f.t.CA(), tid(1)))
			sawPolicy = pb.Sequence == 2
		case up.Label.User == uid(2):
			t.Fatal("unassigned user got an entry")
		case up.Label.User == uid(1):
			v := must(ParseUserValue(up.Value))
			if pc := v.Entries[0].Action.(*PolicyChanged); pc.PolicySequence != p2.Sequence {
				t.Fatal("wrong sequence")
			}
		}
	}
	if !sawPolicy {
		t.Fatal("policy not published")
	}

	ep := testEscrowPolicy(t, f)
	sp := must(f.t.SetEscrowPolicy(aid(1), ep, t0))
	got := must(ParseEscrowPolicy(must(sp.Marshal())))
	ok(t, got.Verify(f.t.CA(), tid(1)))
	if got.M != 2 || got.N != 3 || got.Classes[0].Name != "hr" || got.Period != 30*24*time.Hour {
		t.Fatalf("escrow policy %+v", got)
	}
	bad := *ep
	bad.M = 1
	if _, err := f.t.SetEscrowPolicy(aid(1), &bad, t0); err == nil {
		t.Fatal("1-of-3 escrow accepted")
	}
}

func testEscrowPolicy(t testing.TB, f *fixture) *EscrowPolicy {
	p, _ := testEscrowPolicyKeys(t, f)
	return p
}

// testEscrowPolicyKeys returns a 2-of-3 escrow policy of version 1 for the
// fixture's tenant, with one escrow key, signed by auditors 0 and 2, and
// the auditors' keys (in the order of p.Auditors).
func testEscrowPolicyKeys(t testing.TB, f *fixture) (*EscrowPolicy, []*AuditorPrivateKey) {
	var auds []Auditor
	var ks []*AuditorPrivateKey
	for _, name := range []string{"alice", "bob", "carol"} {
		k := must(GenerateAuditorKey(f.rnd))
		ks = append(ks, k)
		auds = append(auds, Auditor{Name: "auditor " + name, SigningKey: k.Public(), EncryptionKey: testXWingKey(t, f)})
	}
	period := 30 * 24 * time.Hour
	p := &EscrowPolicy{
		Header: Header{Tenant: f.t.ID()}, PolicyVersion: 1,
		Auditors: auds, M: 2, N: 3, Period: period,
		Classes: []ConversationClass{
			{Name: "hr", Retention: 365 * 24 * time.Hour, Disclosure: DisclosureImmediate},
			{Name: "trading", Retention: 7 * 365 * 24 * time.Hour, Disclosure: DisclosureDelayed, MaxDelay: 90 * 24 * time.Hour},
		},
		Witnesses: f.t.TrustBundle().Witnesses,
		Keys: []EscrowKey{{NotBefore: t0, NotAfter: t0.Add(period), PublicKey: testXWingKey(t, f),
			ShareHashes: [][32]byte{{1}, {2}, {3}}}},
	}
	signAuditors(t, p, p.Auditors, &p.AuditorSignatures, ks[0], ks[2])
	return p, ks
}

// signAuditors appends the signatures of p by ks, auditors of set, to sigs.
func signAuditors(t testing.TB, p *EscrowPolicy, set []Auditor, sigs *[]AuditorSignature, ks ...*AuditorPrivateKey) {
	t.Helper()
	for _, k := range ks {
		*sigs = append(*sigs, must(SignEscrowPolicy(k, p, set)))
	}
	slices.SortFunc(*sigs, func(a, b AuditorSignature) int { return a.Auditor - b.Auditor })
}

func TestRotateCA(t *testing.T) {
	f := newFixture(t, 55)
	old := f.t.CA()
	_, e := f.enrol(t, uid(1), t0)
	must(f.t.PublishPolicy(aid(1), "dlp", nil, t0))
	next := must(GenerateMemorySigner(f.rnd))
	if _, err := rotateCA(t, f, next, t0); !errors.Is(err, ErrPendingUpdates) {
		t.Fatalf("rotation with pending entries: %v", err)
	}
	must(f.t.Publish(t0))
	pendingCode := f.code(t, uid(1), t0)
	res := must(rotateCA(t, f, next, t0.Add(time.Hour)))

	// A client that trusts the old key moves to the new one.
	rot := must(ParseCARotation(must(res.Rotation.Marshal())))
	ok(t, rot.Verify(old, tid(1)))
	if !rot.New.Equal(next.Public()) || !f.t.CA().Equal(next.Public()) {
		t.Fatal("new CA")
	}
	if err := rot.Verify(next.Public(), tid(1)); !errors.Is(err, ErrUnknownIssuer) {
		t.Fatalf("rotation checked against the wrong key: %v", err)
	}
	forged := *rot
	forged.NewSignature = bytes.Clone(rot.OldSignature) // no proof of possession
	if err := forged.Verify(old, tid(1)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("rotation without the new key's signature: %v", err)
	}
	// Certificates re-issued under the new key, same keys; old ones now
	// come from an untrusted issuer.
	if len(res.Certificates) != 1 || !res.Certificates[0].Identity.Equal(e.Certificate.Identity) {
		t.Fatal("re-issued certificates")
	}
	ok(t, VerifyDeviceCertificate(res.Certificates[0], next.Public(), tid(1), t0.Add(time.Hour), NoRevocations))
	if err := VerifyDeviceCertificate(e.Certificate, next.Public(), tid(1), t0.Add(time.Hour), NoRevocations); !errors.Is(err, ErrUnknownIssuer) {
		t.Fatalf("old certificate under new CA: %v", err)
	}
	// Outstanding codes carried the old fingerprint: cancelled.
	if _, err := f.t.RedeemEnrolmentCode(pendingCode, f.request(t, pendingCode, f.newDevice(t)), nil, t0.Add(time.Hour)); !errors.Is(err, ErrBadEnrolmentCode) {
		t.Fatalf("old code after rotation: %v", err)
	}
	// Everything published next verifies under the new key.
	ups := must(f.t.Publish(t0.Add(time.Hour)))
	seen := map[string]bool{}
	for _, up := range ups {
		seen[up.Label.Org] = true
		switch up.Label.Org {
		case OrgLabelTrustBundle:
			ok(t, must(ParseTrustBundle(up.Value)).Verify(next.Public(), tid(1)))
		case OrgLabelAdminRoster:
			ok(t, must(ParseAdminRoster(up.Value)).Verify(next.Public(), tid(1)))
		case OrgLabelOrgChart:
			ok(t, must(ParseOrgChart(up.Value)).Verify(next.Public(), tid(1)))
		case OrgLabelPolicyPrefix + "dlp":
			ok(t, must(ParsePolicyBundle(up.Value)).Verify(next.Public(), tid(1)))
		case "":
			must(must(ParseUserValue(up.Value)).Verify(next.Public(), tid(1), uid(1), f.t.users[uid(1)].head))
		}
	}
	for _, l := range []string{OrgLabelCARotation, OrgLabelTrustBundle, OrgLabelAdminRoster, OrgLabelOrgChart, OrgLabelPolicyPrefix + "dlp", ""} {
		if !seen[l] {
			t.Errorf("label %q not republished", l)
		}
	}
	// The restored state needs the new signer.
	st := stateBytes(t, f.t)
	if _, err := UnmarshalTenant(st, f.signer); !errors.Is(err, ErrSignerMismatch) {
		t.Fatalf("restore with the old signer: %v", err)
	}
	must(UnmarshalTenant(st, next))
	// New enrolments work under the new CA.
	must(f.t.AddUser(aid(1), uid(2), "Bob", DepartmentID{}, t0))
	_, e2 := f.enrol(t, uid(2), t0.Add(time.Hour))
	ok(t, VerifyDeviceCertificate(e2.Certificate, next.Public(), tid(1), t0.Add(time.Hour), NoRevocations))
}

func TestUpdateRoster(t *testing.T) {
	f := newFixture(t, 56)
	newAdmin := must(GenerateAdminKey(f.rnd, aid(7), AdminEd25519))
	admins := append(slices.Clone(f.t.Roster().Admins), newAdmin.Public())
	SortAdmins(admins)
	r := &AdminRoster{Header: Header{Tenant: tid(1), Sequence: 2, IssuedAt: t0}, Threshold: 3, Admins: admins}
	a1, a2 := must(ApproveRoster(f.admins[0], r)), must(ApproveRoster(f.admins[1], r))
	// The proposed newcomer cannot approve its own admission.
	an := must(ApproveRoster(newAdmin, r))
	if _, err := f.t.UpdateRoster(r, []*Approval{a1, an}); !errors.Is(err, ErrApprovalInvalid) {
		t.Fatalf("newcomer's approval: %v", err)
	}
	nr := must(f.t.UpdateRoster(r, []*Approval{a1, a2}))
	ok(t, nr.Verify(f.t.CA(), tid(1)))
	if f.t.Roster().Threshold != 3 {
		t.Fatal("roster not replaced")
	}
	// Replaying the same approvals for the same roster fails: wrong sequence.
	if _, err := f.t.UpdateRoster(r, []*Approval{a1, a2}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("replayed roster change: %v", err)
	}
	// The new admin can act.
	must(f.t.AddUser(aid(7), uid(1), "Alice", DepartmentID{}, t0))
	// Duplicate admin keys are refused.
	dup := &AdminRoster{Header: Header{Tenant: tid(1), Sequence: 3, IssuedAt: t0}, Threshold: 2,
		Admins: []*AdminKey{f.admins[1].Public(), must(NewAdminKey(aid(8), AdminEd25519, f.admins[1].Public().Raw()))}}
	if _, err := RosterApprovalMessage(dup); err == nil {
		t.Fatal("roster with one key twice encodes")
	}
}

// TestStateRoundTrip: a tenant in a rich state survives MarshalBinary and
// UnmarshalTenant byte for byte, and the restored tenant behaves the same.
func TestStateRoundTrip(t *testing.T) {
	f := richFixture(t)
	enc := stateBytes(t, f.t)
	t2 := must(UnmarshalTenant(enc, f.signer))
	if !bytes.Equal(enc, stateBytes(t, t2)) {
		t.Fatal("state round trip changed the encoding")
	}
	// Both publish the same values (modulo hedged signatures of the chart,
	// so compare labels and the user values, which hold no new signature).
	u1, u2 := must(f.t.Publish(t0)), must(t2.Publish(t0))
	if len(u1) != len(u2) {
		t.Fatal("different updates")
	}
	for i := range u1 {
		if u1[i].Label != u2[i].Label || (u1[i].Label.Org == "" && !bytes.Equal(u1[i].Value, u2[i].Value)) {
			t.Fatalf("update %d differs", i)
		}
	}
	// Strictness: every truncation fails.
	for n := 0; n < len(enc); n += 1 + n/64 {
		if _, err := UnmarshalTenant(enc[:n], f.signer); err == nil {
			t.Fatalf("truncated state (%d bytes) parsed", n)
		}
	}
	if _, err := UnmarshalTenant(append(bytes.Clone(enc), 0), f.signer); err == nil {
		t.Fatal("trailing byte parsed")
	}
}

// richFixture exercises every part of the state.
func richFixture(t testing.TB) *fixture {
	f := newFixture(t, 57)
	a := aid(1)
	ok(t, f.t.AddDepartment(a, did(1), DepartmentID{}, "Engineering"))
	ok(t, f.t.AddDepartment(a, did(2), did(1), "Platform"))
	must(f.t.AddUser(a, uid(1), "Alice", did(2), t0))
	old, e := f.enrol(t, uid(1), t0)
	must(f.t.PublishPolicy(a, "dlp", []PolicyEntry{{"words", []byte("x")}}, t0))
	must(f.t.AssignPolicy(a, uid(1), "dlp", t0))
	must(f.t.SetEscrowPolicy(a, testEscrowPolicy(t, f), t0))
	must(f.t.Publish(t0))
	c := f.code(t, uid(1), t0)
	req := f.request(t, c, f.newDevice(t))
	must(f.t.RedeemEnrolmentCode(c, req, []*Approval{must(ApproveByDevice(old.id.Signing, e.Certificate.Device, uid(1), req))}, t0))
	must(f.t.RevokeDevice(a, uid(1), e.Certificate.Device, ReasonRetired, t0))
	_, e3 := f.enrol(t, uid(2), t0)
	must(f.t.RenewCertificate(a, uid(2), e3.Certificate.Device, t0.Add(time.Hour)))
	must(f.t.AddUser(a, uid(3), "Carol", DepartmentID{}, t0))
	must(f.t.RemoveUser(a, uid(3), t0))
	locked := f.code(t, uid(2), t0)
	lreq := f.request(t, locked, f.newDevice(t))
	for i := range 2 {
		f.t.RedeemEnrolmentCode(wrongSecret(locked, byte(i)), lreq, nil, t0)
	}
	f.code(t, uid(2), t0)
	return f
}

// TestRefusedOperationsLeaveStateUnchanged runs every refusal of the state
// machine against a rich state and checks it is byte-identical afterwards
// (except the enrolment failure counters, tested separately).
func TestRefusedOperationsLeaveStateUnchanged(t *testing.T) {
	f := richFixture(t)
	before := stateBytes(t, f.t)
	a := aid(1)
	failing := []func() error{
		func() error { _, err := f.t.AddUser(aid(9), uid(5), "X", DepartmentID{}, t0); return err },
		func() error { _, err := f.t.AddUser(a, uid(1), "X", DepartmentID{}, t0); return err },
		func() error { _, err := f.t.AddUser(a, uid(5), "X", did(9), t0); return err },
		func() error { _, err := f.t.RemoveUser(a, uid(3), t0); return err },
		func() error { _, err := f.t.RemoveUser(a, uid(9), t0); return err },
		func() error { return f.t.MoveDepartment(a, did(1), did(2)) },
		func() error { return f.t.RemoveDepartment(a, did(1)) },
		func() error { return f.t.SetUserDepartment(a, uid(1), did(9)) },
		func() error { _, err := f.t.IssueEnrolmentCode(f.rnd, a, uid(3), time.Hour, t0); return err },
		func() error { _, err := f.t.IssueEnrolmentCode(f.rnd, a, uid(1), 0, t0); return err },
		func() error { return f.t.CancelEnrolmentCode(a, CodeID{9}) },
		func() error { _, err := f.t.RevokeDevice(a, uid(1), DeviceID{9}, ReasonLost, t0); return err },
		func() error { _, err := f.t.RevokeDevice(a, uid(1), DeviceID{9}, RevocationReason(9), t0); return err },
		func() error { _, err := f.t.RenewCertificate(a, uid(3), DeviceID{9}, t0); return err },
		func() error { _, err := f.t.AssignPolicy(a, uid(1), "nope", t0); return err },
		func() error { _, err := f.t.PublishPolicy(a, "", nil, t0); return err },
		func() error { _, err := f.t.SetEscrowPolicy(a, &EscrowPolicy{}, t0); return err },
		func() error { _, err := f.t.UpdateRoster(f.t.Roster(), nil); return err },
		func() error { _, err := rotateCA(t, f, f.signer, t0); return err },
		func() error { _, err := rotateCA(t, f, must(GenerateMemorySigner(f.rnd)), t0); return err }, // pending entries
		func() error { _, err := f.t.RedeemEnrolmentCode(nil, nil, nil, t0); return err },
	}
	for i, op := range failing {
		if op() == nil {
			t.Fatalf("operation %d succeeded", i)
		}
		if !bytes.Equal(before, stateBytes(t, f.t)) {
			t.Fatalf("refused operation %d changed the state", i)
		}
	}
}

// TestSignerFailureLeavesStateUnchanged: a signer that fails, or signs with
// another key, is caught before anything is committed.
func TestSignerFailureLeavesStateUnchanged(t *testing.T) {
	f := richFixture(t)
	must(f.t.AddUser(aid(1), uid(8), "Yan", DepartmentID{}, t0))
	dev := f.newDevice(t)
	before := stateBytes(t, f.t)
	for _, s := range []Signer{failingSigner{f.signer}, wrongKeySigner{f.signer, must(GenerateMemorySigner(f.rnd))}} {
		f.t.signer = s
		if _, err := f.t.AddUser(aid(1), uid(9), "Zed", DepartmentID{}, t0); !errors.Is(err, ErrSignerFailed) {
			t.Fatalf("%T: %v", s, err)
		}
		c := f.code(t, uid(8), t0) // issuing signs nothing
		if _, err := f.t.RedeemEnrolmentCode(c, f.request(t, c, dev), nil, t0); !errors.Is(err, ErrSignerFailed) {
			t.Fatalf("%T: enrolment: %v", s, err)
		}
		if _, err := f.t.RevokeDevice(aid(1), uid(2), sortedDevices(f.t.users[uid(2)])[0], ReasonLost, t0); !errors.Is(err, ErrSignerFailed) {
			t.Fatalf("%T: revocation: %v", s, err)
		}
		delete(f.t.codes, c.ID)
		if _, err := f.t.Publish(t0); !errors.Is(err, ErrSignerFailed) {
			t.Fatalf("%T: publish: %v", s, err)
		}
	}
	f.t.signer = f.signer
	// Issuing codes pruned nothing (none expired) and the failing
	// redemptions were refused after the secret check, so the state is
	// as before.
	if !bytes.Equal(before, stateBytes(t, f.t)) {
		t.Fatal("state changed")
	}
}

type failingSigner struct{ Signer }

func (failingSigner) Sign([]byte) ([]byte, error) { return nil, errors.New("hsm unavailable") }

type wrongKeySigner struct {
	Signer
	other Signer
}

func (s wrongKeySigner) Sign(m []byte) ([]byte, error) { return s.other.Sign(m) }
