package service_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/service"
)

// TestSetWitnessesFollowed: two admins approve, through the admin API, a
// trust bundle that replaces the witness set and quorum; it is published,
// a device's kt client follows it (FollowTrustBundle) and verifies the
// next lookup under the new witness set.
func TestSetWitnessesFollowed(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, worldOptions{seed: 40})
	alice := w.addUser("Alice")
	a1 := w.mustEnrol(alice)
	w.publish()
	if _, err := w.lookup(a1, alice); err != nil {
		t.Fatal(err)
	}

	cur := w.ten().TrustBundle()
	ws := org.WitnessSet{Quorum: 2, Witnesses: []org.WitnessKey{w.witnesses[1].key(), w.witnesses[0].key()}}
	prop := service.ProposeWitnesses(cur, ws, w.clk.Now())
	enc := must(service.MarshalProposal(prop))
	approve := func(i int) (*service.TrustBundleApproveResponse, error) {
		c := w.api()
		c.Admin = w.admins[i]
		ap := must(org.ApproveTrustBundle(w.admins[i], prop))
		var out service.TrustBundleApproveResponse
		err := c.AdminOp(ctx, "set-witnesses", service.TrustBundleApproveRequest{Bundle: enc, Approval: must(ap.Marshal())}, &out)
		return &out, err
	}
	out := must(approve(0))
	if out.Applied || out.Approvals != 1 || out.Threshold != 2 {
		t.Fatalf("first approval: %+v", out)
	}
	// Another admin's approval, lodged by admin 0, is refused.
	c := w.api()
	ap1 := must(org.ApproveTrustBundle(w.admins[1], prop))
	wantStatus(t, c.AdminOp(ctx, "set-witnesses", service.TrustBundleApproveRequest{Bundle: enc, Approval: must(ap1.Marshal())}, nil), http.StatusForbidden)
	if _, err := approve(0); statusOf(err) != http.StatusConflict {
		t.Fatalf("approving twice: %v", err)
	}
	out = must(approve(1))
	if !out.Applied || out.Sequence != cur.Sequence+1 {
		t.Fatalf("second approval: %+v", out)
	}
	// The same proposal cannot be applied again.
	if _, err := approve(2); statusOf(err) != http.StatusConflict {
		t.Fatalf("stale proposal: %v", err)
	}

	w.publish() // publishes the new bundle
	if w.ten().TrustBundle().Sequence != cur.Sequence+1 {
		t.Fatal("bundle not replaced")
	}
	resp := must(a1.api.LookupOrg(ctx, org.OrgLabelTrustBundle, a1.kt.TreeSize()))
	nb, err := a1.kt.FollowTrustBundle(nil, resp, w.clk.Now())
	if err != nil {
		t.Fatalf("following the new bundle: %v", err)
	}
	if nb.Sequence != cur.Sequence+1 || nb.Witnesses.Quorum != 2 || len(nb.Witnesses.Witnesses) != 2 ||
		a1.kt.Bundle().Sequence != nb.Sequence {
		t.Fatalf("followed bundle: seq %d, %d witnesses", nb.Sequence, len(nb.Witnesses.Witnesses))
	}
	w.publish()
	if _, err := w.lookup(a1, alice); err != nil {
		t.Fatalf("lookup under the new witness set: %v", err)
	}

	// rotate-log-key is not implemented; rotate-ca needs a CA key provider.
	wantStatus(t, w.api().AdminOp(ctx, "rotate-log-key", nil, nil), http.StatusNotImplemented)
	wantStatus(t, w.api().AdminOp(ctx, "rotate-ca", nil, nil), http.StatusNotImplemented)
}
