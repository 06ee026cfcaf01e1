package kt_test

import (
	"errors"
	"testing"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
)

func follow(t testing.TB, w *world, c *kt.Client, rot *kt.OrgLookupResult, now int) (*org.TrustBundle, error) {
	t.Helper()
	resp := must(w.d.LookupOrg(org.OrgLabelTrustBundle, c.TreeSize()))
	return c.FollowTrustBundle(rot, resp, at(now))
}

func lookupBob(t testing.TB, w *world, c *kt.Client, now int) *kt.LookupResult {
	t.Helper()
	resp := must(w.d.Lookup(w.bob, c.TreeSize()))
	return must(c.VerifyLookup(w.tenant, w.bob, resp, at(now)))
}

func TestRotateCAClientFollows(t *testing.T) {
	w := newWorld(t, 70)
	c := w.client(t) // bob's device b1
	exp := kt.Expected{Self: w.b1.ID}
	wantAlerts(t, monitor(t, w, c, w.bob, exp, 2))
	oldCA := c.Bundle().CA

	res := must(w.d.RotateCA(at(3)))
	must(w.d.PublishEpoch(at(4)))

	// Before following, the new bundle does not verify under the old CA.
	if _, err := follow(t, w, c, nil, 5); err == nil {
		t.Fatal("bundle signed by the new CA accepted without the rotation")
	}
	rr := must(c.VerifyOrgLookup(org.OrgLabelCARotation, must(w.d.LookupOrg(org.OrgLabelCARotation, c.TreeSize())), at(5)))
	nb := must(follow(t, w, c, rr, 5))
	if !nb.CA.Equal(res.TrustBundle.CA) || nb.CA.Equal(oldCA) || !c.Bundle().CA.Equal(nb.CA) {
		t.Fatal("client did not re-pin the new CA")
	}
	// Re-issued certificates verify, and monitoring raises nothing.
	lr := lookupBob(t, w, c, 6)
	if len(lr.Value.Certificates) != 2 {
		t.Fatalf("%d certificates", len(lr.Value.Certificates))
	}
	wantAlerts(t, monitor(t, w, c, w.bob, exp, 6))
	// Later epochs keep verifying.
	must(w.d.Enrol(w.bob, w.b1, at(7)))
	must(w.d.PublishEpoch(at(8)))
	lookupBob(t, w, c, 9)
	// The state survives a restart with the new bundle.
	st := state(t, c)
	must(kt.RestoreClient(kt.Config{Bundle: c.Bundle(), MaxAge: maxAge}, st))
}

func TestRotateLogKeyClientFollows(t *testing.T) {
	w := newWorld(t, 71)
	c := w.client(t)
	lookupBob(t, w, c, 2)
	oldLog := c.Bundle().Log
	must(w.d.RotateLogKey(at(3)))
	must(w.d.PublishEpoch(at(4))) // signed by the old key
	nb := must(follow(t, w, c, nil, 5))
	if nb.Log.Equal(oldLog) || !c.Bundle().Log.Equal(nb.Log) || nb.Sequence != 2 {
		t.Fatal("client did not re-pin the log key")
	}
	size := c.TreeSize()
	must(w.d.PublishEpoch(at(6))) // first checkpoint under the new key
	lookupBob(t, w, c, 7)
	if c.TreeSize() <= size {
		t.Fatal("tree did not grow")
	}
	// Replaying the bundle (same sequence) is refused.
	before := state(t, c)
	if _, err := follow(t, w, c, nil, 8); !errors.Is(err, kt.ErrBundleRefused) {
		t.Fatalf("replayed bundle: got %v", err)
	}
	sameState(t, c, before)
}

func TestReplaceWitnessesClientFollows(t *testing.T) {
	w := newWorld(t, 72)
	c := w.client(t)
	lookupBob(t, w, c, 2)
	must(w.d.ReplaceWitnesses(2, 2, at(3)))
	must(w.d.PublishEpoch(at(4)))
	nb := must(follow(t, w, c, nil, 5))
	if len(nb.Witnesses.Witnesses) != 2 || c.Bundle().Sequence != 2 {
		t.Fatal("client did not re-pin the witnesses")
	}
	must(w.d.PublishEpoch(at(6))) // cosigned only by the new witnesses
	lookupBob(t, w, c, 7)

	// A client that did not follow refuses the new witnesses' checkpoint.
	stale := must(kt.NewClient(kt.Config{Bundle: must(org.ParseTrustBundle(must(w.firstBundle.Marshal()))), MaxAge: maxAge}))
	if _, err := stale.VerifyLookup(w.tenant, w.bob, must(w.d.Lookup(w.bob, 0)), at(7)); err == nil {
		t.Fatal("old witnesses' client accepted the new witnesses' checkpoint")
	}
}

func TestFollowTrustBundleRefusals(t *testing.T) {
	w := newWorld(t, 73)
	c := w.client(t)
	lookupBob(t, w, c, 2)
	// The current bundle (same sequence) is refused.
	before := state(t, c)
	if _, err := follow(t, w, c, nil, 3); !errors.Is(err, kt.ErrBundleRefused) {
		t.Fatalf("same bundle: got %v", err)
	}
	sameState(t, c, before)

	// A forged bundle: sequence 2, signed by a key that is not the CA.
	cur := w.d.TrustBundle()
	forger := must(org.GenerateMemorySigner(w.d.Rand))
	var admins []*org.AdminKey
	for _, k := range w.d.Admins {
		admins = append(admins, k.Public())
	}
	ft := must(org.NewTenant(org.TenantParams{ID: w.tenant, Admins: admins, Threshold: 2, LogOrigin: cur.LogOrigin,
		Log: cur.Log, VRF: cur.VRF, Witnesses: org.WitnessSet{Witnesses: cur.Witnesses.Witnesses, Quorum: len(cur.Witnesses.Witnesses)}}, forger, at(3)))
	fb := ft.TrustBundle()
	w.d.Inject(org.Label{Org: org.OrgLabelTrustBundle}, must(fb.Marshal()))
	must(w.d.PublishEpoch(at(4)))
	before = state(t, c)
	if _, err := follow(t, w, c, nil, 5); err == nil {
		t.Fatal("forged bundle accepted")
	}
	sameState(t, c, before)

	// A single admin cannot rotate the log key.
	p2 := must(w.d.Tenant.ProposeWitnesses(org.WitnessSet{Witnesses: cur.Witnesses.Witnesses, Quorum: len(cur.Witnesses.Witnesses)}, at(6)))
	a := must(org.ApproveTrustBundle(w.d.Admins[0], p2))
	if _, err := w.d.Tenant.ReplaceWitnesses(p2, []*org.Approval{a}); !errors.Is(err, org.ErrInsufficientApprovals) {
		t.Fatalf("single-admin witness change: got %v", err)
	}
}
