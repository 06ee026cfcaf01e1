package service_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
)

// TestMonitorOverHTTP: a device monitors its label over HTTP
// (directory-api.md §Monitoring): its first step starts at the epoch that
// published its enrolment, the signing device's; later steps continue
// from the epoch after the last one verified, across epochs with and
// without changes, until an empty page; bad parameters are refused.
func TestMonitorOverHTTP(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, worldOptions{seed: 46, badger: true})
	alice := w.addUser("Alice")
	w.publish()
	w.publish()
	a1 := w.mustEnrol(alice)
	enrolled := w.publish().Entry.Epoch
	exp := kt.Expected{Self: a1.cert.Device}
	step := func() *kt.MonitorResult {
		t.Helper()
		resp := must(a1.api.Monitor(ctx, alice, a1.kt.MonitorSince(alice), a1.kt.MonitorStart(alice), a1.kt.TreeSize()))
		r, err := a1.kt.Monitor(alice, exp, resp, w.clk.Now())
		if err != nil {
			t.Fatalf("monitoring: %v", err)
		}
		return r
	}
	first := must(a1.api.Monitor(ctx, alice, 0, 0, a1.kt.TreeSize()))
	if first.Start != enrolled || len(first.Epochs) != 1 || len(first.Records) != 2 {
		t.Fatalf("first step from epoch %d (enrolled at %d), %d epochs, %d records", first.Start, enrolled, len(first.Epochs), len(first.Records))
	}
	if r := step(); len(r.Alerts) != 0 || r.Epoch != enrolled || r.More {
		t.Fatalf("first step: %+v", r)
	}
	// Epochs without changes, then a device approved by a1, then more.
	w.publish()
	w.publish()
	a2 := must(w.enrol(alice, func(req *org.EnrolmentRequest) []*org.Approval {
		return []*org.Approval{must(org.ApproveByDevice(a1.id.Signing, a1.cert.Device, alice, req))}
	}))
	w.publish()
	last := w.publish().Entry.Epoch
	r := step()
	if len(r.Alerts) != 0 || r.Epoch != last || r.Version != 3 || len(r.Devices) != 2 {
		t.Fatalf("second step: %+v", r)
	}
	if r := step(); len(r.Alerts) != 0 || r.Epoch != last || r.Devices != nil {
		t.Fatalf("empty page: %+v", r)
	}
	// a2 starts at its own enrolment.
	resp := must(a2.api.Monitor(ctx, alice, 0, 0, a2.kt.TreeSize()))
	if resp.Start != last-1 {
		t.Fatalf("a2 starts at %d, enrolled at %d", resp.Start, last-1)
	}
	must(a2.kt.Monitor(alice, kt.Expected{Self: a2.cert.Device}, resp, w.clk.Now()))

	// Refused: a start after the served epoch, a version after the
	// latest; and before authentication, a start with since 0 and
	// malformed starts.
	_, err := a1.api.Monitor(ctx, alice, 3, last+2, a1.kt.TreeSize())
	wantStatus(t, err, http.StatusBadRequest)
	_, err = a1.api.Monitor(ctx, alice, 4, last+1, a1.kt.TreeSize())
	wantStatus(t, err, http.StatusBadRequest)
	for _, q := range []string{"since=0&start=3", "since=3&start=01", "since=3&start=x"} {
		u := w.srv.URL + "/v1/" + w.tenant.String() + "/monitor/" + alice.String() + "?" + q
		req := must(http.NewRequest(http.MethodGet, u, nil))
		if code, _ := rawRequest(t, req); code != http.StatusBadRequest {
			t.Fatalf("%s: %d", q, code)
		}
	}
}

// TestRecordProofOverHTTP: after a CA rotation, a value the rotation did
// not re-sign (a user without devices) comes with its record proof, in a
// lookup and in a history, and a device that followed the rotation
// verifies it; without the proof it refuses it (ErrRecordEpoch).
func TestRecordProofOverHTTP(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, worldOptions{seed: 47})
	alice := w.addUser("Alice")
	a1 := w.mustEnrol(alice)
	carol := w.addUser("Carol")
	added := w.publish().Entry.Epoch
	res := must(w.lookup(a1, carol))
	if res.Record.Epoch != added {
		t.Fatalf("carol's record of epoch %d", res.Record.Epoch)
	}
	if resp := must(a1.api.Lookup(ctx, carol, a1.kt.TreeSize())); resp.RecordProof != nil {
		t.Fatal("a record proof before any rotation")
	}
	p := w.propose("rotate-ca", 1)
	must(w.approveRotation("rotate-ca", 1, p))
	must(w.approveRotation("rotate-ca", 2, p))
	w.publish()
	rot := must(a1.kt.VerifyOrgLookup(org.OrgLabelCARotation, must(a1.api.LookupOrg(ctx, org.OrgLabelCARotation, a1.kt.TreeSize())), w.clk.Now()))
	must(a1.kt.FollowTrustBundle(rot, must(a1.api.LookupOrg(ctx, org.OrgLabelTrustBundle, a1.kt.TreeSize())), w.clk.Now()))
	w.publish()

	resp := must(a1.api.Lookup(ctx, carol, a1.kt.TreeSize()))
	if resp.RecordProof == nil || resp.RecordProof.Entry.Epoch != added {
		t.Fatalf("record proof %+v", resp.RecordProof)
	}
	stripped := *resp
	stripped.RecordProof = nil
	if _, err := a1.kt.VerifyLookup(w.tenant, carol, &stripped, w.clk.Now()); !errors.Is(err, kt.ErrRecordEpoch) {
		t.Fatalf("without the record proof: %v", err)
	}
	must(a1.kt.VerifyLookup(w.tenant, carol, resp, w.clk.Now()))
	h := must(a1.api.History(ctx, carol, 0, a1.kt.TreeSize()))
	if h.RecordProof == nil {
		t.Fatal("no record proof in the history")
	}
	must(a1.kt.VerifyHistory(w.tenant, carol, kt.Position{}, h, w.clk.Now()))
	// alice's value, re-signed by the rotation, needs none.
	if resp := must(a1.api.Lookup(ctx, alice, a1.kt.TreeSize())); resp.RecordProof != nil {
		t.Fatal("a record proof for a record after the rotation")
	}
}
