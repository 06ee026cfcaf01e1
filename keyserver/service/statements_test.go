package service_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/kt/kttest"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/service"
)

// approveRoster lodges admin i's approval of the roster proposal prop.
func (w *world) approveRoster(i int, prop *org.AdminRoster) (*service.TrustBundleApproveResponse, error) {
	c := w.api()
	c.Admin = w.admins[i]
	ap := must(org.ApproveRoster(w.admins[i], prop))
	var out service.TrustBundleApproveResponse
	err := c.AdminOp(context.Background(), "update-roster",
		service.RosterApproveRequest{Roster: must(service.MarshalRosterProposal(prop)), Approval: must(ap.Marshal())}, &out)
	return &out, err
}

// TestOrgStatementsOverHTTP: admins publish a policy bundle, an escrow
// policy signed by its auditors and a roster change (two approvals)
// through the admin API; each is published at the next epoch, and a
// device's kt client looks up each org label over HTTP, verifies the
// statement, and reads every change in the label's history. The
// directory refuses an escrow policy missing an auditor signature, one of
// another tenant, and a roster below its threshold, leaving nothing to
// publish; a statement tampered with on the way is refused by the client.
func TestOrgStatementsOverHTTP(t *testing.T) {
	backends(t, func(t *testing.T, badger bool) {
		ctx := context.Background()
		w := newWorld(t, worldOptions{badger: badger, seed: 50})
		alice := w.addUser("Alice")
		a1 := w.mustEnrol(alice)
		w.publish()
		must(w.lookup(a1, alice))
		head := w.ten().Head().Epoch
		api := w.api()

		// A policy bundle, assigned to alice.
		var out service.OKResponse
		ok(t, api.AdminOp(ctx, "publish-policy", service.PublishPolicyRequest{PolicyID: "dlp",
			Entries: []service.PolicyEntry{{Key: "words", Value: []byte("alpha")}, {Key: "mode", Value: []byte("warn")}}}, &out))
		if out.Sequence != 1 || out.PendingEpoch != head+1 {
			t.Fatalf("publish-policy: %+v", out)
		}
		ok(t, api.AdminOp(ctx, "assign-policy", service.AssignPolicyRequest{User: alice.String(), PolicyID: "dlp"}, nil))
		wantStatus(t, api.AdminOp(ctx, "assign-policy", service.AssignPolicyRequest{User: alice.String(), PolicyID: "none"}, nil), http.StatusBadRequest)
		wantStatus(t, api.AdminOp(ctx, "publish-policy", service.PublishPolicyRequest{PolicyID: "dlp",
			Entries: []service.PolicyEntry{{Key: "k"}, {Key: "k"}}}, nil), http.StatusBadRequest)

		// An escrow policy: one auditor signature of 2-of-3 is refused,
		// so is another tenant's; two are accepted.
		esc := must(kttest.NewEscrow(w.rnd, 3))
		ws := w.ten().TrustBundle().Witnesses
		setEscrow := func(p *org.EscrowPolicy) error {
			return w.api().AdminOp(ctx, "set-escrow-policy", service.EscrowPolicyRequest{Policy: must(service.MarshalEscrowProposal(p))}, &out)
		}
		wantStatus(t, setEscrow(must(esc.Policy(w.tenant, 1, 2, ws, w.clk.Now(), 0))), http.StatusBadRequest)
		wantStatus(t, setEscrow(must(esc.Policy(org.TenantID{0x7e, 0x99}, 1, 2, ws, w.clk.Now(), 0, 1))), http.StatusBadRequest)
		wantStatus(t, setEscrow(must(esc.Policy(w.tenant, 2, 2, ws, w.clk.Now(), 0, 1))), http.StatusConflict)
		pol := must(esc.Policy(w.tenant, 1, 2, ws, w.clk.Now(), 0, 2))
		ok(t, setEscrow(pol))
		if out.Sequence != 1 || out.PendingEpoch != head+1 {
			t.Fatalf("set-escrow-policy: %+v", out)
		}

		// A roster change: admin 3 leaves, a new admin joins, threshold 2.
		var rr service.RosterResponse
		ok(t, api.AdminOp(ctx, "get-roster", nil, &rr))
		cur := must(org.ParseAdminRoster(rr.Roster))
		newcomer := must(org.GenerateAdminKey(w.rnd, org.AdminID{0xad, 0x44}, org.AdminEd25519))
		if _, err := org.ProposeRoster(cur, []*org.AdminKey{cur.Admins[0]}, 2, w.clk.Now()); !errors.Is(err, org.ErrRosterTooSmall) {
			t.Fatalf("one admin, threshold 2: %v", err)
		}
		prop := must(org.ProposeRoster(cur, []*org.AdminKey{cur.Admins[0], cur.Admins[1], newcomer.Public()}, 2, w.clk.Now()))
		// The same proposal with threshold 5 of 3 admins, as raw bytes.
		small := must(service.MarshalRosterProposal(prop))
		small[1+1+16+8+8] = 5
		ap0 := must(org.ApproveRoster(w.admins[0], prop))
		err := api.AdminOp(ctx, "update-roster", service.RosterApproveRequest{Roster: small, Approval: must(ap0.Marshal())}, nil)
		if ae, isAPI := errors.AsType[*service.APIError](err); !isAPI || ae.Status != http.StatusBadRequest || !strings.Contains(ae.Message, "threshold") {
			t.Fatalf("roster below its threshold: %v", err)
		}
		res := must(w.approveRoster(0, prop))
		if res.Applied || res.Approvals != 1 || res.Threshold != 2 {
			t.Fatalf("first roster approval: %+v", res)
		}
		if _, err := w.approveRoster(0, prop); statusOf(err) != http.StatusConflict {
			t.Fatalf("approving twice: %v", err)
		}
		ap1 := must(org.ApproveRoster(w.admins[1], prop))
		wantStatus(t, api.AdminOp(ctx, "update-roster", service.RosterApproveRequest{Roster: must(service.MarshalRosterProposal(prop)), Approval: must(ap1.Marshal())}, nil), http.StatusForbidden)
		res = must(w.approveRoster(2, prop))
		if !res.Applied || res.Sequence != cur.Sequence+1 || res.PendingEpoch != head+1 {
			t.Fatalf("second roster approval: %+v", res)
		}

		// Nothing is visible before the epoch.
		if _, err := a1.kt.VerifyOrgLookup(org.OrgLabelEscrowPolicy, must(a1.api.LookupOrg(ctx, org.OrgLabelEscrowPolicy, a1.kt.TreeSize())), w.clk.Now()); !errors.Is(err, kt.ErrNotFound) {
			t.Fatalf("escrow policy before its epoch: %v", err)
		}
		w.publish()
		if badger {
			w.stop()
			w.start()
		}

		lookupOrg := func(name string) any {
			t.Helper()
			r, err := a1.kt.VerifyOrgLookup(name, must(a1.api.LookupOrg(ctx, name, a1.kt.TreeSize())), w.clk.Now())
			ok(t, err)
			return r.Statement
		}
		pb := lookupOrg(org.OrgLabelPolicyPrefix + "dlp").(*org.PolicyBundle)
		if pb.Sequence != 1 || len(pb.Entries) != 2 || pb.Entries[0].Key != "mode" {
			t.Fatalf("policy bundle %+v", pb)
		}
		ep := lookupOrg(org.OrgLabelEscrowPolicy).(*org.EscrowPolicy)
		if k := ep.KeyAt(w.clk.Now()); k == nil || !bytes.Equal(k.PublicKey, pol.Keys[0].PublicKey) {
			t.Fatal("escrow key not published")
		}
		roster := lookupOrg(org.OrgLabelAdminRoster).(*org.AdminRoster)
		if roster.Admin(newcomer.Public().ID()) == nil || roster.Admin(w.admins[2].Public().ID()) != nil {
			t.Fatal("roster change not published")
		}
		// The assignment is in alice's security timeline: her device
		// alerts on it.
		mon := must(a1.kt.Monitor(alice, kt.Expected{Self: a1.cert.Device}, must(a1.api.Monitor(ctx, alice, 0, 0, a1.kt.TreeSize())), w.clk.Now()))
		if len(mon.Alerts) != 1 || mon.Alerts[0].Kind != kt.AlertPolicyChanged {
			t.Fatalf("alerts %v", mon.Alerts)
		}

		// The removed admin is refused; the newcomer acts.
		gone := w.api()
		gone.Admin = w.admins[2]
		wantStatus(t, gone.AdminOp(ctx, "list", nil, nil), http.StatusUnauthorized)
		nc := w.api()
		nc.Admin = newcomer
		ok(t, nc.AdminOp(ctx, "publish-policy", service.PublishPolicyRequest{PolicyID: "dlp",
			Entries: []service.PolicyEntry{{Key: "words", Value: []byte("alpha beta")}}}, &out))
		if out.Sequence != 2 {
			t.Fatalf("second policy version %d", out.Sequence)
		}
		// The next escrow policy needs version 2.
		wantStatus(t, setEscrow(pol), http.StatusConflict)
		w.publish()

		// Each label's history, over HTTP, shows every change.
		history := func(name string, since kt.OrgPosition) *kt.OrgHistoryResult {
			t.Helper()
			h, err := a1.kt.VerifyOrgHistory(name, since, must(a1.api.OrgHistory(ctx, name, since.Version, a1.kt.TreeSize())), w.clk.Now())
			ok(t, err)
			return h
		}
		ph := history(org.OrgLabelPolicyPrefix+"dlp", kt.OrgPosition{})
		if len(ph.Statements) != 2 || string(ph.Statements[1].(*org.PolicyBundle).Entries[0].Value) != "alpha beta" {
			t.Fatalf("policy history of %d versions", len(ph.Statements))
		}
		if h := history(org.OrgLabelPolicyPrefix+"dlp", ph.Position); len(h.Statements) != 0 {
			t.Fatal("history since the latest version has statements")
		}
		if rh := history(org.OrgLabelAdminRoster, kt.OrgPosition{}); len(rh.Statements) != 2 {
			t.Fatalf("roster history of %d versions", len(rh.Statements))
		}
		if eh := history(org.OrgLabelEscrowPolicy, kt.OrgPosition{}); len(eh.Statements) != 1 {
			t.Fatalf("escrow history of %d versions", len(eh.Statements))
		}
		_, err = a1.api.OrgHistory(ctx, "policy/dlp", 9, a1.kt.TreeSize())
		wantStatus(t, err, http.StatusBadRequest)

		// A statement tampered with on the way (a flipped byte of the
		// escrow policy's value) is refused with the evidence, and the
		// client's state is unchanged.
		resp := must(a1.api.LookupOrg(ctx, org.OrgLabelEscrowPolicy, a1.kt.TreeSize()))
		resp.Record.Value[len(resp.Record.Value)-10] ^= 1
		before := must(a1.kt.MarshalState())
		_, err = a1.kt.VerifyOrgLookup(org.OrgLabelEscrowPolicy, resp, w.clk.Now())
		if pe, isProof := errors.AsType[*kt.KTProofError](err); !isProof || pe.Step != kt.StepRecord {
			t.Fatalf("tampered statement: %v", err)
		}
		if !bytes.Equal(before, must(a1.kt.MarshalState())) {
			t.Fatal("refused statement changed the client's state")
		}
	})
}
