package kt_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
)

// Regression tests for two attacks on the owner's monitoring and on the
// CA history (docs/spec/directory.md §Per-epoch monitoring, §Client
// verification step 7, §Security considerations).

// TestT29RewrittenHistoryAlertsOwner: admins recover a rogue device for
// alice at epoch 1 and a contact looks it up; at epoch 2 the directory
// publishes another version 2, chained to version 1, with alice's old
// devices. Alice's device, which monitored at epoch 0 and not during epoch
// 1, is served the rewritten chain; the map of epoch 1 still holds the
// rogue commitment, and her monitor reports it (AlertHistoryRewritten),
// with the evidence. Before per-epoch monitoring it accepted the chain
// without an alert. The contact that saw the rogue version refuses the
// rewritten one.
func TestT29RewrittenHistoryAlertsOwner(t *testing.T) {
	w := newWorld(t, 99)
	ca1 := w.client(t)
	exp := kt.Expected{Self: w.a1.ID}
	wantAlerts(t, monitor(t, w, ca1, w.alice, exp, 2))
	recs := must(w.d.Records(org.Label{User: w.alice}))
	v1 := recs[len(recs)-1]

	rogue := must(w.d.Recover(w.alice, w.d.Tenant.Roster().Threshold, at(3)))
	must(w.d.PublishEpoch(at(4)))
	cb := w.client(t)
	res := must(cb.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, 0)), at(5)))
	if res.Device(rogue.ID) == nil {
		t.Fatal("contact does not see the rogue device")
	}
	label := res.Label
	rogueCM := must(kt.Commit(label, res.Record))

	// The rewrite: version 2 again, chained to v1, with alice's old devices.
	old := must(org.ParseUserValue(v1.Value))
	val := &org.UserValue{Tenant: old.Tenant, User: old.User, Certificates: old.Certificates, Head: old.Head}
	v2b := &kt.ValueRecord{Epoch: 2, Version: v1.Version + 1, Prev: must(kt.Commit(label, v1)), Value: must(val.Marshal())}
	ok(t, w.d.InjectRecord(org.Label{User: w.alice}, v2b))
	must(w.d.PublishEpoch(at(6)))

	// The directory serves alice's device the rewritten chain.
	resp := monitorResp(t, w, ca1, w.alice, w.a1.ID)
	if resp.Start != 1 || len(resp.Epochs) != 2 {
		t.Fatalf("page from %d, %d epochs", resp.Start, len(resp.Epochs))
	}
	resp.Records = []*kt.ValueRecord{v2b}
	r := must(ca1.Monitor(w.alice, exp, resp, at(7)))
	wantAlerts(t, r, kt.AlertHistoryRewritten)
	a := r.Alerts[0]
	if a.Epoch != 1 || a.Commitment != rogueCM || a.Absent || a.Version != v1.Version {
		t.Fatalf("alert %+v", a)
	}
	if !bytes.Equal(a.Response, must(resp.Marshal())) || len(a.Checkpoint) == 0 {
		t.Fatal("alert without its evidence")
	}
	if r.Version != v2b.Version || r.Epoch != 2 || r.More {
		t.Fatalf("monitor at version %d, epoch %d, more %v", r.Version, r.Epoch, r.More)
	}
	// Reported once (kttest's records of the label are no chain any more:
	// the next step has no record).
	must(w.d.PublishEpoch(at(8)))
	resp = monitorResp(t, w, ca1, w.alice, w.a1.ID)
	resp.Records = nil
	wantAlerts(t, must(ca1.Monitor(w.alice, exp, resp, at(9))))

	// The contact that saw the rogue version refuses the rewrite.
	before := state(t, cb)
	_, err := cb.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, cb.TreeSize())), at(9))
	var ke *kt.KTProofError
	if !errors.As(err, &ke) || ke.Step != kt.StepRollback {
		t.Fatalf("contact's next lookup: %v", err)
	}
	sameState(t, cb, before)
}

// TestT31BackdatedRecordAfterCARotation: after a CA rotation, a directory
// holding the retired CA key publishes a new version of bob's label
// certifying a rogue device under the old key, in a record that claims
// an epoch before the rotation (clients pick the CA by a record's epoch).
// A client that saw bob's later version refuses it (its epoch goes back);
// a client that knows the rotation but not bob's label refuses it for
// want of a record proof, or with a forged one (ErrRecordEpoch); bob's
// own device reports it (AlertRecordEpoch, and the rogue device).
func TestT31BackdatedRecordAfterCARotation(t *testing.T) {
	w := newWorld(t, 83)
	c := w.client(t) // bob's device b1, follows the rotation
	exp := kt.Expected{Self: w.b1.ID}
	wantAlerts(t, monitor(t, w, c, w.bob, exp, 2))
	// A fork of the tenant under the old CA, before the rotation.
	fork := must(org.UnmarshalTenant(must(w.d.Tenant.MarshalBinary()), w.d.CA))

	must(w.d.RotateCA(at(3)))
	must(w.d.PublishEpoch(at(4)))
	rot := must(c.VerifyOrgLookup(org.OrgLabelCARotation, must(w.d.LookupOrg(org.OrgLabelCARotation, c.TreeSize())), at(5)))
	must(follow(t, w, c, rot, 5))
	must(w.d.PublishEpoch(at(6)))
	lookupBob(t, w, c, 6)
	wantAlerts(t, monitor(t, w, c, w.bob, exp, 6)) // the re-signed value

	// The retired key certifies a rogue device for bob (through the
	// forked state machine and M admin approvals: its holder could sign
	// anything).
	rogueKeys := must(w.d.NewDeviceKeys(w.bob))
	code := must(fork.IssueEnrolmentCode(w.d.Rand, w.d.Admins[0].Public().ID(), w.bob, time.Hour, at(7)))
	req := must(org.NewEnrolmentRequest(code, rogueKeys.Identity, rogueKeys.MLS))
	var aps []*org.Approval
	for _, a := range w.d.Admins[:2] {
		aps = append(aps, must(org.ApproveByAdmin(a, w.bob, req)))
	}
	must(fork.RedeemEnrolmentCode(code, req, aps, at(7)))
	rogueValue := must(must(fork.UserValue(w.bob)).Marshal())

	recs := must(w.d.Records(org.Label{User: w.bob}))
	latest := recs[len(recs)-1]
	label := lookupBob(t, w, c, 7).Label
	rec := &kt.ValueRecord{Epoch: 0, Version: latest.Version + 1, Prev: must(kt.Commit(label, latest)), Value: rogueValue}
	ok(t, w.d.InjectRecord(org.Label{User: w.bob}, rec))
	must(w.d.PublishEpoch(at(8)))

	// The tracking client: version 3 of epoch 0 after version 2 of epoch 1.
	before := state(t, c)
	_, err := c.VerifyLookup(w.tenant, w.bob, must(w.d.Lookup(w.bob, c.TreeSize())), at(9))
	var ke *kt.KTProofError
	if !errors.As(err, &ke) || ke.Step != kt.StepRollback {
		t.Fatalf("tracking client: %v", err)
	}
	sameState(t, c, before)

	// A fresh contact that learnt the CA history: no record proof.
	fresh := w.client(t)
	must(fresh.VerifyOrgLookup(org.OrgLabelCARotation, must(w.d.LookupOrg(org.OrgLabelCARotation, fresh.TreeSize())), at(9)))
	resp := must(w.d.Lookup(w.bob, fresh.TreeSize()))
	if resp.RecordProof == nil {
		t.Fatal("the directory did not send a record proof for a record older than the rotation")
	}
	wantRecordEpoch := func(what string, resp *kt.LookupResponse) {
		t.Helper()
		before := state(t, fresh)
		_, err := fresh.VerifyLookup(w.tenant, w.bob, resp, at(9))
		if !errors.Is(err, kt.ErrRecordEpoch) || !errors.As(err, &ke) || ke.Step != kt.StepRecordEpoch {
			t.Fatalf("%s: %v", what, err)
		}
		sameState(t, fresh, before)
	}
	// What the honest directory sends is a proof of the map at epoch 0,
	// which holds bob's first version, not this record.
	wantRecordEpoch("the map at the claimed epoch", resp)
	resp.RecordProof = nil
	wantRecordEpoch("no record proof", resp)
	// A proof of the current epoch, where the record is, passed off as
	// epoch 0's.
	resp = must(w.d.Lookup(w.bob, fresh.TreeSize()))
	resp.RecordProof.MapProof = resp.Proof.MapProof
	resp.RecordProof.Inclusion = resp.Proof.Inclusion
	wantRecordEpoch("the latest map proof at the claimed epoch", resp)
	resp = must(w.d.Lookup(w.bob, fresh.TreeSize()))
	resp.RecordProof = &kt.EpochProof{Entry: resp.Proof.Entry, Inclusion: resp.Proof.Inclusion, MapProof: resp.Proof.MapProof}
	wantRecordEpoch("a record proof of another epoch", resp)
	// The history, for a contact, refuses it too.
	hist := must(w.d.History(w.bob, 0, fresh.TreeSize()))
	hist.RecordProof = nil
	if _, err := fresh.VerifyHistory(w.tenant, w.bob, kt.Position{}, hist, at(9)); !errors.Is(err, kt.ErrProof) {
		t.Fatalf("contact's history: %v", err)
	}

	// Bob's device reports the record, first seen at epoch 3, and the
	// device it adds.
	r := monitor(t, w, c, w.bob, exp, 9)
	wantAlerts(t, r, kt.AlertRecordEpoch, kt.AlertDeviceRecovered)
	if a := r.Alerts[0]; a.Epoch != 3 || a.Version != rec.Version || a.Record == nil || a.Record.Epoch != 0 ||
		len(a.Response) == 0 || len(a.Checkpoint) == 0 {
		t.Fatalf("alert %+v", a)
	}
	if a := r.Alerts[1]; a.Certificate == nil || a.Device == w.b1.ID || a.Device == w.b2.ID || r.Alerts[0].Record.Epoch != 0 {
		t.Fatalf("alert %+v", a)
	}
}

// TestRecordProofBeforeRotation: a value published before a CA rotation
// and not re-signed by it (a user without devices) verifies under the
// old key with the record proof the directory sends, for a client that
// knows the rotation, in a lookup and in a history; without the proof it
// is refused. A client that knows no rotation needs none.
func TestRecordProofBeforeRotation(t *testing.T) {
	w := newWorld(t, 84)
	carol := uid(3)
	ok(t, w.d.AddUser(carol, "Carol", at(1)))
	must(w.d.PublishEpoch(at(2))) // epoch 1
	c := w.client(t)
	must(c.VerifyLookup(w.tenant, carol, must(w.d.Lookup(carol, 0)), at(2)))
	must(w.d.RotateCA(at(3)))
	must(w.d.PublishEpoch(at(4))) // epoch 2: the rotation
	rot := must(c.VerifyOrgLookup(org.OrgLabelCARotation, must(w.d.LookupOrg(org.OrgLabelCARotation, c.TreeSize())), at(5)))
	must(follow(t, w, c, rot, 5))

	resp := must(w.d.Lookup(carol, c.TreeSize()))
	if resp.Record.Epoch != 1 || resp.RecordProof == nil || resp.RecordProof.Entry.Epoch != 1 {
		t.Fatalf("record of epoch %d, record proof %v", resp.Record.Epoch, resp.RecordProof)
	}
	stripped := *resp
	stripped.RecordProof = nil
	before := state(t, c)
	if _, err := c.VerifyLookup(w.tenant, carol, &stripped, at(5)); !errors.Is(err, kt.ErrRecordEpoch) {
		t.Fatalf("without the record proof: %v", err)
	}
	sameState(t, c, before)
	must(c.VerifyLookup(w.tenant, carol, resp, at(5)))
	hist := must(w.d.History(carol, 0, c.TreeSize()))
	if hist.RecordProof == nil {
		t.Fatal("no record proof in the history")
	}
	must(c.VerifyHistory(w.tenant, carol, kt.Position{}, hist, at(5)))
	hist.RecordProof = nil
	if _, err := c.VerifyHistory(w.tenant, carol, kt.Position{}, hist, at(5)); !errors.Is(err, kt.ErrRecordEpoch) {
		t.Fatalf("history without the record proof: %v", err)
	}
	// A client enrolled after the rotation learns the CA history, and
	// then needs the proof too.
	c2 := w.client(t)
	must(c2.VerifyOrgLookup(org.OrgLabelCARotation, must(w.d.LookupOrg(org.OrgLabelCARotation, 0)), at(5)))
	if _, err := c2.VerifyLookup(w.tenant, carol, &stripped, at(5)); !errors.Is(err, kt.ErrRecordEpoch) {
		t.Fatalf("without the record proof, after learning the rotation: %v", err)
	}
	must(c2.VerifyLookup(w.tenant, carol, must(w.d.Lookup(carol, c2.TreeSize())), at(5)))
	// A client that has not followed the rotation needs none, and checks
	// one it is given.
	for _, r := range []*kt.LookupResponse{&stripped, resp} {
		c3 := must(kt.NewClient(kt.Config{Bundle: w.firstBundle, MaxAge: maxAge}))
		r := *r
		r.Checkpoint = must(w.d.Lookup(carol, 0)).Checkpoint
		must(c3.VerifyLookup(w.tenant, carol, &r, at(5)))
	}
}

// TestMonitorPages: a device that was away for more than a page of
// epochs catches up in pages of kt.MaxMonitorEpochs, each continuing
// from the last, judging the changes in each; it cannot be made to skip
// epochs or to start again.
func TestMonitorPages(t *testing.T) {
	w := newWorld(t, 85)
	c := w.client(t)
	exp := kt.Expected{Self: w.b1.ID}
	wantAlerts(t, monitor(t, w, c, w.bob, exp, 2))
	ok(t, w.d.PublishQuietEpochs(1000, at(3)))
	must(w.d.Recover(w.bob, 2, at(4)))
	must(w.d.PublishEpoch(at(4))) // epoch 1001: in the first page
	ok(t, w.d.PublishQuietEpochs(kt.MaxMonitorEpochs, at(5)))
	ok(t, w.d.Revoke(w.b2, org.ReasonCompromised, at(6)))
	must(w.d.PublishEpoch(at(6))) // epoch 5098: in the second page
	ok(t, w.d.PublishQuietEpochs(10, at(7)))
	n := w.d.Size()

	r1 := must(c.Monitor(w.bob, exp, monitorResp(t, w, c, w.bob, w.b1.ID), at(8)))
	wantAlerts(t, r1, kt.AlertDeviceRecovered)
	if r1.Epoch != kt.MaxMonitorEpochs || !r1.More || r1.Latest != n-1 || r1.Alerts[0].Epoch != 1001 {
		t.Fatalf("first page to epoch %d of %d, more %v, alert at %d", r1.Epoch, r1.Latest, r1.More, r1.Alerts[0].Epoch)
	}
	if c.MonitorStart(w.bob) != kt.MaxMonitorEpochs+1 {
		t.Fatalf("next start %d", c.MonitorStart(w.bob))
	}
	// The page it just verified, again: refused.
	before := state(t, c)
	again := must(w.d.Monitor(w.bob, w.b1.ID, c.MonitorSince(w.bob), 1, c.TreeSize()))
	if _, err := c.Monitor(w.bob, exp, again, at(8)); !errors.Is(err, kt.ErrSince) {
		t.Fatalf("page again: %v", err)
	}
	sameState(t, c, before)
	r2 := must(c.Monitor(w.bob, exp, monitorResp(t, w, c, w.bob, w.b1.ID), at(9)))
	wantAlerts(t, r2, kt.AlertDeviceRevoked)
	if r2.Epoch != n-1 || r2.More || r2.Alerts[0].Epoch != 5098 {
		t.Fatalf("second page to epoch %d of %d, more %v", r2.Epoch, n-1, r2.More)
	}
	// Up to date: an empty page.
	r3 := must(c.Monitor(w.bob, exp, monitorResp(t, w, c, w.bob, w.b1.ID), at(10)))
	wantAlerts(t, r3)
	if r3.Epoch != n-1 || r3.More {
		t.Fatalf("empty page at %d, more %v", r3.Epoch, r3.More)
	}
	// The monitor's position survives a restart.
	st := state(t, c)
	c2 := must(kt.RestoreClient(w.d.Config(maxAge), st))
	if !bytes.Equal(state(t, c2), st) || c2.MonitorStart(w.bob) != n {
		t.Fatal("monitor position not restored")
	}
}

// TestMonitorWithheldEpoch: a page that leaves out an epoch, shifts the
// epochs, or shows another epoch's map proof in place of the real one is
// refused (a proof error), and the device's state is unchanged.
func TestMonitorWithheldEpoch(t *testing.T) {
	w := newWorld(t, 86)
	c := w.client(t)
	exp := kt.Expected{Self: w.a1.ID}
	wantAlerts(t, monitor(t, w, c, w.alice, exp, 2))
	must(w.d.PublishEpoch(at(3)))
	must(w.d.Recover(w.alice, 2, at(4)))
	must(w.d.PublishEpoch(at(4))) // epoch 2: the change
	must(w.d.PublishEpoch(at(5)))
	fresh := func() *kt.MonitorResponse {
		r := monitorResp(t, w, c, w.alice, w.a1.ID)
		if len(r.Epochs) != 3 {
			t.Fatalf("%d epochs", len(r.Epochs))
		}
		return r
	}
	for _, m := range []struct {
		name string
		edit func(r *kt.MonitorResponse)
		step kt.ProofStep
	}{
		{"middle epoch left out", func(r *kt.MonitorResponse) { r.Epochs = append(r.Epochs[:1:1], r.Epochs[2:]...) }, kt.StepEpoch},
		{"last epoch left out", func(r *kt.MonitorResponse) { r.Epochs = r.Epochs[:2] }, kt.StepEpoch},
		{"shifted", func(r *kt.MonitorResponse) { r.Start++; r.Epochs = r.Epochs[1:] }, 0},
		{"the change hidden behind the epoch before", func(r *kt.MonitorResponse) { r.Epochs[1] = r.Epochs[0] }, kt.StepLogInclusion},
		{"time changed", func(r *kt.MonitorResponse) { r.Epochs[1].Time = r.Epochs[1].Time.Add(time.Second) }, kt.StepLogInclusion},
		{"range proof of another page", func(r *kt.MonitorResponse) {
			r.RangeProof = must(w.d.Monitor(w.alice, w.a1.ID, 1, 2, c.TreeSize())).RangeProof
		}, kt.StepLogInclusion},
		{"a record left out", func(r *kt.MonitorResponse) { r.Records = nil }, kt.StepHistory},
		{"foreign map proof", func(r *kt.MonitorResponse) {
			r.Epochs[1].MapProof = must(w.d.Lookup(w.bob, 0)).Proof.MapProof
		}, kt.StepLogInclusion},
	} {
		t.Run(m.name, func(t *testing.T) {
			r := fresh()
			m.edit(r)
			before := state(t, c)
			_, err := c.Monitor(w.alice, exp, r, at(6))
			var ke *kt.KTProofError
			switch {
			case m.step == 0 && !errors.Is(err, kt.ErrSince):
				t.Fatalf("got %v, want ErrSince", err)
			case m.step != 0 && (!errors.As(err, &ke) || ke.Step != m.step):
				t.Fatalf("got %v, want a proof error at step %v", err, m.step)
			}
			sameState(t, c, before)
		})
	}
	wantAlerts(t, monitor(t, w, c, w.alice, exp, 6), kt.AlertDeviceRecovered)
}

// TestMonitorRogueAtOneEpoch: a rogue version that the map holds at one
// epoch in the middle of a page, the label's old commitment restored
// right after, and a directory that serves the device a history without
// it: AlertHistoryRewritten at that epoch, once. A rogue commitment that
// stays for several epochs is one alert; the label vanishing for an
// epoch is one too.
func TestMonitorRogueAtOneEpoch(t *testing.T) {
	w := newWorld(t, 87)
	c := w.client(t)
	exp := kt.Expected{Self: w.a1.ID}
	wantAlerts(t, monitor(t, w, c, w.alice, exp, 2))
	al := org.Label{User: w.alice}
	recs := must(w.d.Records(al))
	v1 := recs[len(recs)-1]
	label := must(c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, c.TreeSize())), at(2))).Label
	value := noEntries(t, v1)
	rogue := func(e uint64) *kt.ValueRecord {
		return &kt.ValueRecord{Epoch: e, Version: v1.Version + 1, Prev: must(kt.Commit(label, v1)), Value: value}
	}
	must(w.d.PublishEpoch(at(3)))         // epoch 1
	ok(t, w.d.InjectRecord(al, rogue(2))) //
	must(w.d.PublishEpoch(at(4)))         // epoch 2: the rogue version
	ok(t, w.d.InjectRecord(al, v1))       //
	must(w.d.PublishEpoch(at(5)))         // epoch 3: back to v1
	must(w.d.PublishEpoch(at(6)))         // epoch 4
	r := monitorResp(t, w, c, w.alice, w.a1.ID)
	r.Records = nil // the history without the rogue version
	res := must(c.Monitor(w.alice, exp, r, at(7)))
	wantAlerts(t, res, kt.AlertHistoryRewritten)
	if a := res.Alerts[0]; a.Epoch != 2 || a.Commitment != must(kt.Commit(label, rogue(2))) || a.Version != v1.Version {
		t.Fatalf("alert %+v", a)
	}

	// Two epochs of another rogue version: one alert.
	ok(t, w.d.InjectRecord(al, rogue(5)))
	must(w.d.PublishEpoch(at(8))) // epoch 5
	must(w.d.Tenant.PublishPolicy(w.d.Admins[0].Public().ID(), "p", nil, at(8)))
	must(w.d.PublishEpoch(at(8))) // epoch 6: the rogue version still
	ok(t, w.d.InjectRecord(al, v1))
	must(w.d.PublishEpoch(at(9))) // epoch 7
	r = monitorResp(t, w, c, w.alice, w.a1.ID)
	r.Records = nil
	res = must(c.Monitor(w.alice, exp, r, at(10)))
	wantAlerts(t, res, kt.AlertHistoryRewritten)
	if a := res.Alerts[0]; a.Epoch != 5 {
		t.Fatalf("alert %+v", a)
	}
}

// TestMonitorRecordNeverInMap: a history with a version the map never
// held (two versions published in one epoch) reports the skipped one.
func TestMonitorRecordNeverInMap(t *testing.T) {
	w := newWorld(t, 88)
	c := w.client(t)
	exp := kt.Expected{Self: w.a1.ID}
	wantAlerts(t, monitor(t, w, c, w.alice, exp, 2))
	al := org.Label{User: w.alice}
	recs := must(w.d.Records(al))
	v1 := recs[len(recs)-1]
	label := must(c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, c.TreeSize())), at(2))).Label
	value := noEntries(t, v1)
	skipped := &kt.ValueRecord{Epoch: 1, Version: v1.Version + 1, Prev: must(kt.Commit(label, v1)), Value: value}
	shown := &kt.ValueRecord{Epoch: 1, Version: v1.Version + 2, Prev: must(kt.Commit(label, skipped)), Value: value}
	ok(t, w.d.InjectRecord(al, shown))
	must(w.d.PublishEpoch(at(3))) // epoch 1
	r := monitorResp(t, w, c, w.alice, w.a1.ID)
	r.Records = []*kt.ValueRecord{skipped, shown}
	res := must(c.Monitor(w.alice, exp, r, at(4)))
	wantAlerts(t, res, kt.AlertRecordEpoch)
	if a := res.Alerts[0]; a.Version != skipped.Version || a.Epoch != 1 {
		t.Fatalf("alert %+v", a)
	}
	if res.Version != shown.Version {
		t.Fatalf("monitor at version %d", res.Version)
	}
}

// noEntries returns the value of rec again, without timeline entries: a
// value that continues rec's timeline.
func noEntries(t testing.TB, rec *kt.ValueRecord) []byte {
	t.Helper()
	v := must(org.ParseUserValue(rec.Value))
	return must((&org.UserValue{Tenant: v.Tenant, User: v.User, Certificates: v.Certificates, Head: v.Head}).Marshal())
}
