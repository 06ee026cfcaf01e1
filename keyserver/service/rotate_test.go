package service_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/service"
)

// propose asks, as admin i, for the rotation under approval of op
// (rotate-log-key or rotate-ca).
func (w *world) propose(op string, i int) *service.RotationProposal {
	w.t.Helper()
	c := w.api()
	c.Admin = w.admins[i]
	var out service.RotationProposal
	ok(w.t, c.AdminOp(context.Background(), op, nil, &out))
	return &out
}

// approveRotation lodges admin i's approval of the proposal p.
func (w *world) approveRotation(op string, i int, p *service.RotationProposal) (*service.TrustBundleApproveResponse, error) {
	c := w.api()
	c.Admin = w.admins[i]
	b := must(org.ParseTrustBundle(p.Bundle))
	ap := must(org.ApproveTrustBundle(w.admins[i], b))
	var out service.TrustBundleApproveResponse
	err := c.AdminOp(context.Background(), op, service.RotateRequest{Bundle: p.Bundle, Approval: must(ap.Marshal())}, &out)
	return &out, err
}

// noteExtensions returns the extension lines of a served note's
// checkpoint.
func noteExtensions(t testing.TB, note []byte) []string {
	return noteCheckpoint(t, note).Extensions
}

// restartBadger restarts the service over the same badger store and key
// file, and has it cosign what it holds.
func (w *world) restartBadger() {
	w.t.Helper()
	w.stop()
	w.start()
}

// TestRotateLogKeyOverHTTP: the log key is rotated through the admin API
// under dual control (docs/spec/directory-api.md §Key rotations). A single
// admin's approval does nothing; with a second one the tenant signs the
// new bundle, the next epoch publishes it in a checkpoint signed by the
// old key that announces the new one, the witnesses follow the
// announcement, and from the epoch after the new key signs. A device's kt
// client follows the bundle, keeps verifying lookups, and its state saved
// between the two epochs restores with the new bundle. The key file keeps
// the new key only; the service restarts with it.
func TestRotateLogKeyOverHTTP(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, worldOptions{seed: 42, badger: true})
	alice := w.addUser("Alice")
	a1 := w.mustEnrol(alice)
	w.publish()
	must(w.lookup(a1, alice))
	oldBundle := w.ten().TrustBundle()
	oldKey := oldBundle.Log

	p := w.propose("rotate-log-key", 0)
	next := must(keys.ParseLogPublicKeyText(p.Key))
	if next.Equal(oldKey) || p.Sequence != oldBundle.Sequence+1 || p.Approvals != 0 || p.Threshold != 2 {
		t.Fatalf("proposal %+v", p)
	}
	if pb := must(org.ParseTrustBundle(p.Bundle)); !pb.Log.Equal(next) || !pb.CA.Equal(oldBundle.CA) {
		t.Fatal("the proposal does not name the new key")
	}
	// The new key is in the key file before anyone approves it.
	_, fk, err := service.ReadKeyFile(w.keyFile)
	ok(t, err)
	if len(fk.NextLogs) != 1 || !fk.NextLogs[0].Public().Equal(next) {
		t.Fatal("the new log key is not stored")
	}
	// Another admin asking gets the same proposal.
	if p2 := w.propose("rotate-log-key", 1); string(p2.Bundle) != string(p.Bundle) {
		t.Fatal("a second proposal while one is under approval")
	}

	// A single admin cannot rotate: one approval, the same again, or
	// another admin's approval lodged by it.
	out, err := w.approveRotation("rotate-log-key", 0, p)
	ok(t, err)
	if out.Applied || out.Approvals != 1 {
		t.Fatalf("first approval: %+v", out)
	}
	if _, err := w.approveRotation("rotate-log-key", 0, p); statusOf(err) != http.StatusConflict {
		t.Fatalf("approving twice: %v", err)
	}
	c := w.api()
	ap1 := must(org.ApproveTrustBundle(w.admins[1], must(org.ParseTrustBundle(p.Bundle))))
	wantStatus(t, c.AdminOp(ctx, "rotate-log-key", service.RotateRequest{Bundle: p.Bundle, Approval: must(ap1.Marshal())}, nil), http.StatusForbidden)
	// An approval of a bundle with another key than the service's.
	forged := must(org.ParseTrustBundle(p.Bundle))
	forged.Log = must(keys.GenerateLogKey(w.rnd)).Public()
	fp := &service.RotationProposal{Bundle: must(service.MarshalProposal(forged))}
	if _, err := w.approveRotation("rotate-log-key", 1, fp); statusOf(err) != http.StatusConflict {
		t.Fatalf("approving another key: %v", err)
	}
	w.publish()
	if w.ten().TrustBundle().Sequence != oldBundle.Sequence {
		t.Fatal("one admin rotated the log key")
	}
	note, _ := w.ten().ServedNote()
	if len(noteExtensions(t, note)) != 0 {
		t.Fatal("a checkpoint announced a key one admin approved")
	}

	out, err = w.approveRotation("rotate-log-key", 1, p)
	ok(t, err)
	if !out.Applied || out.Sequence != oldBundle.Sequence+1 {
		t.Fatalf("second approval: %+v", out)
	}

	// The publishing epoch: signed by the old key, announcing the new.
	ep := w.publish()
	note, size := w.ten().ServedNote()
	if size != ep.Entry.Epoch+1 {
		t.Fatalf("served size %d", size)
	}
	must(tlog.OpenCheckpoint(note, w.origin, oldKey))
	if got := must(tlog.NextLogKey(noteCheckpoint(t, note))); got == nil || !got.Equal(next) {
		t.Fatal("the publishing checkpoint does not announce the new key")
	}
	for _, tw := range w.witnesses {
		if k := must(tw.w.LogKey(ctx, w.origin)); !k.Equal(oldKey) {
			t.Fatalf("witness %s switched before the new key signed", tw.name)
		}
	}
	// The key file: the new key is current, the old one erased.
	_, fk, err = service.ReadKeyFile(w.keyFile)
	ok(t, err)
	if !fk.Log.Public().Equal(next) || len(fk.NextLogs) != 0 {
		t.Fatal("key file after the rotation")
	}

	// The device verifies the epoch under its bundle, follows the new one,
	// and saves its state.
	must(w.lookup(a1, alice))
	stale := must(kt.NewClient(kt.Config{Bundle: oldBundle, MaxAge: maxAge}))
	must(stale.VerifyLookup(w.tenant, alice, must(a1.api.Lookup(ctx, alice, 0)), w.clk.Now()))
	nb, err := a1.kt.FollowTrustBundle(nil, must(a1.api.LookupOrg(ctx, org.OrgLabelTrustBundle, a1.kt.TreeSize())), w.clk.Now())
	if err != nil {
		t.Fatalf("following the new bundle: %v", err)
	}
	if !nb.Log.Equal(next) {
		t.Fatal("followed bundle has another log key")
	}
	saved := must(a1.kt.MarshalState())
	restored, err := kt.RestoreClient(kt.Config{Bundle: nb, MaxAge: maxAge}, saved)
	if err != nil {
		t.Fatalf("restoring with the new bundle: %v", err)
	}
	if _, err := kt.RestoreClient(kt.Config{Bundle: oldBundle, MaxAge: maxAge}, saved); !errors.Is(err, kt.ErrStateBundle) {
		t.Fatalf("restoring with the old bundle: %v", err)
	}

	// The next epoch: the new key signs, the witnesses follow.
	ep = w.publish()
	note, _ = w.ten().ServedNote()
	must(tlog.OpenCheckpoint(note, w.origin, next))
	if _, err := tlog.OpenCheckpoint(note, w.origin, oldKey); err == nil {
		t.Fatal("the old key signed after the rotation")
	}
	if cs := cosigners(note); len(cs) != 3 {
		t.Fatalf("cosigners %v", cs)
	}
	for _, tw := range w.witnesses {
		if k := must(tw.w.LogKey(ctx, w.origin)); !k.Equal(next) {
			t.Fatalf("witness %s did not follow the rotation", tw.name)
		}
	}
	must(w.lookup(a1, alice))
	if a1.kt.TreeSize() != ep.Entry.Epoch+1 {
		t.Fatal("client did not move to the new epoch")
	}
	must(restored.VerifyLookup(w.tenant, alice, must(a1.api.Lookup(ctx, alice, restored.TreeSize())), w.clk.Now()))
	// A client that did not follow cannot verify the new key's checkpoint.
	if _, err := stale.VerifyLookup(w.tenant, alice, must(a1.api.Lookup(ctx, alice, stale.TreeSize())), w.clk.Now()); !errors.Is(err, tlog.ErrBadSignature) {
		t.Fatalf("old bundle's client on the new key: %v", err)
	}

	// A restart: the service finds the new key in the key file.
	w.restartBadger()
	w.publish()
	must(w.lookup(a1, alice))
}

// TestRotateLogKeyRestartAtTransition: the service restarts between
// committing the epoch that publishes a new log key and having it
// cosigned. It checks that checkpoint under the bundle before (kept in the
// store), has it cosigned, and signs the next epoch with the new key. A
// witness that missed the announcing checkpoint refuses the new key until
// the service submits the announcement to it, and then follows.
func TestRotateLogKeyRestartAtTransition(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, worldOptions{seed: 43, badger: true})
	alice := w.addUser("Alice")
	a1 := w.mustEnrol(alice)
	w.publish()
	must(w.lookup(a1, alice))
	oldKey := w.ten().TrustBundle().Log
	p := w.propose("rotate-log-key", 0)
	must(w.approveRotation("rotate-log-key", 0, p))
	must(w.approveRotation("rotate-log-key", 2, p))
	next := must(keys.ParseLogPublicKeyText(p.Key))

	// The publishing epoch is committed; no witness answers.
	for _, tw := range w.witnesses {
		tw.setDown(true)
	}
	w.clk.Advance(time.Minute)
	ep := must(w.ten().PublishEpoch(ctx, w.clk.Now()))
	if ep.Cosigned {
		t.Fatal("cosigned with the witnesses down")
	}
	w.stop()
	// Witnesses 1 and 2 are back; witness 3 stays down.
	w.witnesses[0].setDown(false)
	w.witnesses[1].setDown(false)
	w.start() // cosigns the stored head: under the old bundle
	note, size := w.ten().ServedNote()
	if size != ep.Entry.Epoch+1 {
		t.Fatalf("served size %d, want the publishing epoch's %d", size, ep.Entry.Epoch+1)
	}
	must(tlog.OpenCheckpoint(note, w.origin, oldKey))
	must(w.lookup(a1, alice))
	must(a1.kt.FollowTrustBundle(nil, must(a1.api.LookupOrg(ctx, org.OrgLabelTrustBundle, a1.kt.TreeSize())), w.clk.Now()))

	// Witness 3 comes back: it last cosigned the epoch before the
	// announcement.
	w3 := w.witnesses[2]
	w3.setDown(false)
	w.publish()
	note, _ = w.ten().ServedNote()
	must(tlog.OpenCheckpoint(note, w.origin, next))
	if cs := cosigners(note); !cs[w3.name] {
		t.Fatalf("the witness that missed the announcement did not cosign: %v", cs)
	}
	if k := must(w3.w.LogKey(ctx, w.origin)); !k.Equal(next) {
		t.Fatal("witness 3 did not follow the rotation")
	}
	if !strings.Contains(w.logs.String(), "submitting the log key announcement") {
		t.Error("no log of the catch-up")
	}
	must(w.lookup(a1, alice))
}

// TestRotateCAOverHTTP: the CA is rotated through the admin API under
// dual control. A single admin cannot; two can. A device's kt client
// verifies the rotation statement, follows the new bundle, verifies the
// re-issued certificates, and the user's history from before the rotation
// (signed by the old CA) still verifies, in monitoring too. A device
// enrolled after the rotation learns the old CA from the rotation
// statement. The key file keeps the new CA only; the service restarts
// with it and enrols under it.
func TestRotateCAOverHTTP(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, worldOptions{seed: 44, badger: true})
	alice := w.addUser("Alice")
	a1 := w.mustEnrol(alice)
	bob := w.addUser("Bob")
	w.mustEnrol(bob)
	w.publish()
	exp := kt.Expected{Self: a1.cert.Device}
	mon := func(d *device, exp kt.Expected) *kt.MonitorResult {
		t.Helper()
		h := must(d.api.Monitor(ctx, alice, d.kt.MonitorSince(alice), d.kt.MonitorStart(alice), d.kt.TreeSize()))
		r, err := d.kt.Monitor(alice, exp, h, w.clk.Now())
		if err != nil {
			t.Fatalf("monitoring: %v", err)
		}
		return r
	}
	if r := mon(a1, exp); len(r.Alerts) != 0 {
		t.Fatalf("alerts %v", r.Alerts)
	}
	oldBundle := w.ten().TrustBundle()

	p := w.propose("rotate-ca", 1)
	next := must(keys.ParseOrgPublicKeyText(p.Key))
	if next.Equal(oldBundle.CA) || p.Sequence != oldBundle.Sequence+1 {
		t.Fatalf("proposal %+v", p)
	}
	out, err := w.approveRotation("rotate-ca", 1, p)
	ok(t, err)
	if out.Applied {
		t.Fatal("one admin rotated the CA")
	}
	if _, err := w.approveRotation("rotate-ca", 1, p); statusOf(err) != http.StatusConflict {
		t.Fatalf("approving twice: %v", err)
	}
	c := w.api()
	c.Admin = w.admins[1]
	ap2 := must(org.ApproveTrustBundle(w.admins[2], must(org.ParseTrustBundle(p.Bundle))))
	wantStatus(t, c.AdminOp(ctx, "rotate-ca", service.RotateRequest{Bundle: p.Bundle, Approval: must(ap2.Marshal())}, nil), http.StatusForbidden)
	w.publish()
	if !w.ten().TrustBundle().CA.Equal(oldBundle.CA) {
		t.Fatal("one admin rotated the CA")
	}

	out, err = w.approveRotation("rotate-ca", 2, p)
	ok(t, err)
	if !out.Applied || out.Certificates != 2 || out.Sequence != p.Sequence {
		t.Fatalf("second approval: %+v", out)
	}
	ep := w.publish()

	// The device follows: the rotation verifies under its CA.
	rr := must(a1.api.LookupOrg(ctx, org.OrgLabelCARotation, a1.kt.TreeSize()))
	rot, err := a1.kt.VerifyOrgLookup(org.OrgLabelCARotation, rr, w.clk.Now())
	if err != nil {
		t.Fatalf("rotation statement: %v", err)
	}
	if rot.Record.Epoch != ep.Entry.Epoch {
		t.Fatalf("rotation of epoch %d, published at %d", rot.Record.Epoch, ep.Entry.Epoch)
	}
	nb, err := a1.kt.FollowTrustBundle(rot, must(a1.api.LookupOrg(ctx, org.OrgLabelTrustBundle, a1.kt.TreeSize())), w.clk.Now())
	if err != nil {
		t.Fatalf("following the new bundle: %v", err)
	}
	if !nb.CA.Equal(next) {
		t.Fatal("followed bundle has another CA")
	}
	res := must(w.lookup(a1, alice))
	if len(res.Devices) != 1 || res.Devices[0].Identity.Signing.Equal(a1.cert.Identity.Signing) == false || res.Devices[0].Serial == a1.cert.Serial {
		t.Fatal("re-issued certificate")
	}
	// The renewal is no alert; the whole history, from before the
	// rotation, verifies under the CA history.
	if r := mon(a1, exp); len(r.Alerts) != 0 {
		t.Fatalf("alerts after the rotation %v", r.Alerts)
	}
	h := must(a1.api.History(ctx, alice, 0, a1.kt.TreeSize()))
	hr, err := a1.kt.VerifyHistory(w.tenant, alice, kt.Position{}, h, w.clk.Now())
	if err != nil {
		t.Fatalf("history from before the rotation: %v", err)
	}
	if hr.Records[0].Epoch >= ep.Entry.Epoch {
		t.Fatal("history does not start before the rotation")
	}
	// The key file: the new CA is current, the old one erased.
	_, fk, err := service.ReadKeyFile(w.keyFile)
	ok(t, err)
	if !fk.CA.Public().Equal(next) || len(fk.NextCAs) != 0 {
		t.Fatal("key file after the rotation")
	}

	// A restart, then a second device for alice, approved by a1: issued
	// by the new CA. It monitors from its enrolment, its history going
	// back before the rotation, once it knows the CA history.
	w.restartBadger()
	a2, err := w.enrol(alice, func(req *org.EnrolmentRequest) []*org.Approval {
		return []*org.Approval{must(org.ApproveByDevice(a1.id.Signing, a1.cert.Device, alice, req))}
	})
	ok(t, err)
	ok(t, org.VerifyDeviceCertificate(a2.cert, next, w.tenant, w.clk.Now(), org.NoRevocations))
	w.publish()
	must(a2.kt.VerifyOrgLookup(org.OrgLabelCARotation, must(a2.api.LookupOrg(ctx, org.OrgLabelCARotation, 0)), w.clk.Now()))
	if r := mon(a2, kt.Expected{Self: a2.cert.Device}); len(r.Alerts) != 0 {
		t.Fatalf("new device's alerts %v", r.Alerts)
	}
	exp.Devices = []org.DeviceID{a2.cert.Device}
	if r := mon(a1, exp); len(r.Alerts) != 0 {
		t.Fatalf("alerts for an approved device %v", r.Alerts)
	}
}

// TestRotationsNeedKeyStore: without a key store, both rotations answer
// 501.
func TestRotationsNeedKeyStore(t *testing.T) {
	w := newWorld(t, worldOptions{seed: 45, noKeyStore: true})
	for _, op := range []string{"rotate-ca", "rotate-log-key"} {
		wantStatus(t, w.api().AdminOp(context.Background(), op, nil, nil), http.StatusNotImplemented)
	}
}
