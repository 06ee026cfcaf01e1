package service_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/keyserver/kt"
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
}

// noteSigners returns the key names of note's signature lines.
func noteSigners(note []byte) map[string]bool {
	names := map[string]bool{}
	_, sigs, _ := strings.Cut(string(note), "\n\n")
	for line := range strings.Lines(sigs) {
		if rest, isSig := strings.CutPrefix(line, "— "); isSig {
			name, _, _ := strings.Cut(rest, " ")
			names[name] = true
		}
	}
	return names
}

// TestSetWitnessesDisjoint: the witness set is replaced by a disjoint one
// (docs/spec/directory.md §Trust bundle changes). The checkpoint of the
// epoch that publishes the new bundle is served cosigned by the old
// witnesses, from the next epoch by the new ones only, which the service
// reaches through the URLs configured for them; a new witness with no
// URL configured is reported and the service keeps going. A kt client
// follows across the change.
func TestSetWitnessesDisjoint(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, worldOptions{seed: 41, extra: 2})
	old, nw := w.witnesses[:3], w.witnesses[3:]
	alice := w.addUser("Alice")
	a1 := w.mustEnrol(alice)
	w.publish()
	if _, err := w.lookup(a1, alice); err != nil {
		t.Fatal(err)
	}
	checkSigners := func(what string, want, notWant []*testWitness) {
		t.Helper()
		names := noteSigners(must(w.api().Checkpoint(ctx)))
		for _, tw := range want {
			if !names[tw.name] {
				t.Errorf("%s: not cosigned by %s: %v", what, tw.name, names)
			}
		}
		for _, tw := range notWant {
			if names[tw.name] {
				t.Errorf("%s: cosigned by %s: %v", what, tw.name, names)
			}
		}
	}
	checkSigners("before", old, nw)

	// A third new witness has no URL in the service's configuration.
	ghost := newTestWitness(t, w.rnd, "witness9.example/w", map[string]*keys.LogPublicKey{w.origin: w.keys.Log.Public()}, w.clk.Now)
	cur := w.ten().TrustBundle()
	ws := org.WitnessSet{Quorum: 2, Witnesses: []org.WitnessKey{nw[0].key(), nw[1].key(), ghost.key()}}
	prop := service.ProposeWitnesses(cur, ws, w.clk.Now())
	enc := must(service.MarshalProposal(prop))
	for i := range 2 {
		c := w.api()
		c.Admin = w.admins[i]
		ap := must(org.ApproveTrustBundle(w.admins[i], prop))
		var out service.TrustBundleApproveResponse
		ok(t, c.AdminOp(ctx, "set-witnesses", service.TrustBundleApproveRequest{Bundle: enc, Approval: must(ap.Marshal())}, &out))
		if out.Applied != (i == 1) {
			t.Fatalf("approval %d: %+v", i, out)
		}
	}

	// The publishing epoch: under the old bundle.
	ep := w.publish()
	if w.ten().TrustBundle().Sequence != cur.Sequence+1 {
		t.Fatal("bundle not replaced")
	}
	checkSigners("publishing epoch", old, nw)
	if sz := noteCheckpoint(t, must(w.api().Checkpoint(ctx))).Size; sz != ep.Entry.Epoch+1 {
		t.Fatalf("served size %d, want %d", sz, ep.Entry.Epoch+1)
	}
	// A client that has not followed yet verifies it under the old bundle,
	// and follows the new one from it.
	if _, err := w.lookup(a1, alice); err != nil {
		t.Fatalf("lookup at the publishing epoch: %v", err)
	}
	resp := must(a1.api.LookupOrg(ctx, org.OrgLabelTrustBundle, a1.kt.TreeSize()))
	nb, err := a1.kt.FollowTrustBundle(nil, resp, w.clk.Now())
	if err != nil {
		t.Fatalf("following the new bundle: %v", err)
	}
	if nb.Sequence != cur.Sequence+1 || len(nb.Witnesses.Witnesses) != 3 {
		t.Fatalf("followed bundle: %+v", nb.Witnesses)
	}

	// The next epoch: the new witnesses only.
	oldCalls := make([]int, len(old))
	for i, tw := range old {
		tw.mu.Lock()
		oldCalls[i] = tw.calls
		tw.mu.Unlock()
	}
	ep = w.publish()
	checkSigners("next epoch", nw, old)
	for i, tw := range old {
		tw.mu.Lock()
		if tw.calls != oldCalls[i] {
			t.Errorf("old witness %s asked after the change", tw.name)
		}
		tw.mu.Unlock()
	}
	if !strings.Contains(w.logs.String(), "WITNESS URL MISSING") || !strings.Contains(w.logs.String(), ghost.name) {
		t.Errorf("no warning of the missing witness URL; log:\n%s", w.logs.String())
	}
	res, err := w.lookup(a1, alice)
	if err != nil {
		t.Fatalf("lookup under the new witness set: %v", err)
	}
	if a1.kt.TreeSize() != ep.Entry.Epoch+1 || res == nil {
		t.Fatalf("client at size %d, want %d", a1.kt.TreeSize(), ep.Entry.Epoch+1)
	}
	// A client still on the old bundle cannot verify it: the old
	// witnesses did not cosign.
	a2 := must(kt.NewClient(kt.Config{Bundle: cur, MaxAge: maxAge}))
	r2 := must(a1.api.Lookup(ctx, alice, 0))
	if _, err := a2.VerifyLookup(w.tenant, alice, r2, w.clk.Now()); err == nil {
		t.Fatal("the next epoch verified under the old witness set")
	}
}
