package kt_test

import (
	"errors"
	"testing"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
)

// restore restores the state of c with bundle b.
func restore(c *kt.Client, b *org.TrustBundle) (*kt.Client, error) {
	st, err := c.MarshalState()
	if err != nil {
		return nil, err
	}
	return kt.RestoreClient(kt.Config{Bundle: b, MaxAge: maxAge}, st)
}

// TestRestoreAfterRotation: a client state saved right after following a
// log key rotation, a CA rotation or a witness change (before any
// checkpoint under the new bundle) restores with the new bundle, and the
// restored client verifies the next epoch. A state saved before following
// also restores with the new bundle, a signed successor of the saved one.
func TestRestoreAfterRotation(t *testing.T) {
	for _, kind := range []string{"log key", "CA", "witnesses"} {
		t.Run(kind, func(t *testing.T) {
			w := newWorld(t, 80)
			c := w.client(t)
			lookupBob(t, w, c, 2)
			var rot *kt.OrgLookupResult
			switch kind {
			case "log key":
				must(w.d.RotateLogKey(at(3)))
			case "CA":
				must(w.d.RotateCA(at(3)))
			case "witnesses":
				must(w.d.ReplaceWitnesses(2, 2, at(3)))
			}
			must(w.d.PublishEpoch(at(4))) // publishes the new bundle
			stale := state(t, c)          // before following
			if kind == "CA" {
				rot = must(c.VerifyOrgLookup(org.OrgLabelCARotation, must(w.d.LookupOrg(org.OrgLabelCARotation, c.TreeSize())), at(5)))
			}
			nb := must(follow(t, w, c, rot, 5))

			// Restored with the new bundle, before any checkpoint under it.
			rc, err := restore(c, nb)
			if err != nil {
				t.Fatalf("restoring with the followed bundle: %v", err)
			}
			if string(state(t, rc)) != string(state(t, c)) {
				t.Fatal("restored state differs")
			}
			// Restored with the bundle it left: refused.
			if _, err := restore(c, w.firstBundle); !errors.Is(err, kt.ErrStateBundle) {
				t.Fatalf("restoring with the previous bundle: got %v", err)
			}
			must(w.d.PublishEpoch(at(6))) // under the new bundle
			lookupBob(t, w, rc, 7)
			lookupBob(t, w, c, 7)

			// The state saved before following, restored with the new
			// bundle: a successor signed by the saved bundle's CA. A CA
			// rotation is followed only through FollowTrustBundle.
			sc, err := kt.RestoreClient(kt.Config{Bundle: nb, MaxAge: maxAge}, stale)
			if kind == "CA" {
				if !errors.Is(err, kt.ErrStateBundle) {
					t.Fatalf("restoring across a CA rotation without following it: got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("restoring with a successor bundle: %v", err)
			}
			lookupBob(t, w, sc, 8)
		})
	}
}

// TestRestoreRefusesForeignBundle: a state restores only with its bundle
// or a signed successor: not with a bundle of another tenant's directory,
// nor with one that claims a higher sequence under another CA.
func TestRestoreRefusesForeignBundle(t *testing.T) {
	w := newWorld(t, 81)
	c := w.client(t)
	lookupBob(t, w, c, 2)
	other := newWorld(t, 82)
	for name, b := range map[string]*org.TrustBundle{
		"another directory": other.d.TrustBundle(),
	} {
		if _, err := restore(c, b); !errors.Is(err, kt.ErrStateBundle) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	// A bundle of the same tenant, sequence 2, signed by a forger.
	forger := must(org.GenerateMemorySigner(w.d.Rand))
	cur := w.d.TrustBundle()
	var admins []*org.AdminKey
	for _, k := range w.d.Admins {
		admins = append(admins, k.Public())
	}
	ft := must(org.NewTenant(org.TenantParams{ID: w.tenant, Admins: admins, Threshold: 2, LogOrigin: cur.LogOrigin,
		Log: cur.Log, VRF: cur.VRF, Witnesses: cur.Witnesses}, forger, at(3)))
	must(ft.Publish(at(3)))
	p := must(ft.ProposeWitnesses(org.WitnessSet{Witnesses: cur.Witnesses.Witnesses, Quorum: len(cur.Witnesses.Witnesses)}, at(3)))
	var aps []*org.Approval
	for _, k := range w.d.Admins[:2] {
		aps = append(aps, must(org.ApproveTrustBundle(k, p)))
	}
	fb := must(ft.ReplaceWitnesses(p, aps))
	if _, err := restore(c, fb); !errors.Is(err, kt.ErrStateBundle) {
		t.Fatalf("forged successor: got %v", err)
	}
}

// TestCAHistory: after a CA rotation, the history of a user from before
// it verifies under the old CA key, which the client keeps: for a device
// that followed the rotation (also after a restore), and for one that
// enrolled after it, once it has verified the rotation statement. A
// value signed by the old CA and published after the rotation is refused.
func TestCAHistory(t *testing.T) {
	w := newWorld(t, 83)
	c := w.client(t) // bob's device b1
	exp := kt.Expected{Self: w.b1.ID}
	wantAlerts(t, monitor(t, w, c, w.bob, exp, 2))
	oldValue := lookupBob(t, w, c, 2).Record.Value

	must(w.d.RotateCA(at(3)))
	must(w.d.PublishEpoch(at(4)))
	rot := must(c.VerifyOrgLookup(org.OrgLabelCARotation, must(w.d.LookupOrg(org.OrgLabelCARotation, c.TreeSize())), at(5)))
	must(follow(t, w, c, rot, 5))
	must(w.d.PublishEpoch(at(6)))

	// The whole history, from version 1 (old CA) on, verifies.
	whole := func(c *kt.Client, now int) (*kt.HistoryResult, error) {
		return c.VerifyHistory(w.tenant, w.bob, kt.Position{}, must(w.d.History(w.bob, 0, c.TreeSize())), at(now))
	}
	h, err := whole(c, 7)
	if err != nil {
		t.Fatalf("history across the rotation: %v", err)
	}
	if len(h.Records) < 2 || h.Records[0].Epoch >= rot.Record.Epoch || h.Records[len(h.Records)-1].Epoch < rot.Record.Epoch {
		t.Fatalf("history of %d records does not span the rotation", len(h.Records))
	}
	wantAlerts(t, monitor(t, w, c, w.bob, exp, 7))
	rc := must(restore(c, c.Bundle()))
	if _, err := whole(rc, 7); err != nil {
		t.Fatalf("history across the rotation after a restore: %v", err)
	}
	// The rotation statement still verifies after following it.
	must(c.VerifyOrgLookup(org.OrgLabelCARotation, must(w.d.LookupOrg(org.OrgLabelCARotation, c.TreeSize())), at(7)))

	// A device pinned to the new bundle from the start (enrolled after
	// the rotation) knows no older CA: the old records fail, until it
	// verifies the rotation to its CA.
	fresh := w.client(t)
	if !fresh.Bundle().CA.Equal(c.Bundle().CA) {
		t.Fatal("the directory's bundle is not the new one")
	}
	before := state(t, fresh)
	if _, err := whole(fresh, 8); !errors.Is(err, kt.ErrProof) {
		t.Fatalf("old records without the CA history: got %v", err)
	}
	sameState(t, fresh, before)
	must(fresh.VerifyOrgLookup(org.OrgLabelCARotation, must(w.d.LookupOrg(org.OrgLabelCARotation, fresh.TreeSize())), at(8)))
	if _, err := whole(fresh, 8); err != nil {
		t.Fatalf("history after learning the CA history: %v", err)
	}

	// The old CA's value published again after the rotation: its
	// signatures are the old CA's, refused at that epoch.
	w.d.Inject(org.Label{User: w.bob}, oldValue)
	must(w.d.PublishEpoch(at(9)))
	before = state(t, c)
	if _, err := c.VerifyLookup(w.tenant, w.bob, must(w.d.Lookup(w.bob, c.TreeSize())), at(10)); !errors.Is(err, kt.ErrProof) {
		t.Fatalf("old CA's value after the rotation: got %v", err)
	}
	sameState(t, c, before)
}

// TestFollowLogKeyNeedsAnnouncement: a bundle with a new log key is
// followed only at a checkpoint that announces that key.
func TestFollowLogKeyNeedsAnnouncement(t *testing.T) {
	w := newWorld(t, 84)
	c := w.client(t)
	lookupBob(t, w, c, 2)
	// The tenant approves and signs a bundle with another log key, but
	// the log publishes it without announcing the key.
	next := must(keys.GenerateLogKey(w.d.Rand))
	p := must(w.d.Tenant.ProposeLogKey(next.Public(), at(3)))
	var aps []*org.Approval
	for _, k := range w.d.Admins[:2] {
		aps = append(aps, must(org.ApproveTrustBundle(k, p)))
	}
	must(w.d.Tenant.RotateLogKey(p, aps))
	must(w.d.PublishEpoch(at(4)))
	before := state(t, c)
	if _, err := follow(t, w, c, nil, 5); !errors.Is(err, kt.ErrBundleRefused) {
		t.Fatalf("unannounced log key: got %v", err)
	}
	sameState(t, c, before)
}

// TestCAHistoryThreeRotations: after three CA rotations, a device
// enrolled under the last CA learns the whole CA chain from the
// ca-rotation label's history (docs/spec/directory.md §CA history) and
// verifies its user's records under the CA in force at each epoch. The
// latest rotation alone teaches only the last old key; a rotation that
// does not lead to the pinned key is refused and changes nothing.
func TestCAHistoryThreeRotations(t *testing.T) {
	w := newWorld(t, 86)
	c := w.client(t) // follows every rotation
	lookupBob(t, w, c, 2)
	cas := []*keys.OrgPublicKey{c.Bundle().CA}
	now := 3
	for i := range 3 {
		must(w.d.RotateCA(at(now)))
		ep := must(w.d.PublishEpoch(at(now + 1)))
		rot := must(c.VerifyOrgLookup(org.OrgLabelCARotation, must(w.d.LookupOrg(org.OrgLabelCARotation, c.TreeSize())), at(now+2)))
		if rot.Record.Epoch != ep.Entry.Epoch {
			t.Fatalf("rotation %d published at epoch %d, record of %d", i+1, ep.Entry.Epoch, rot.Record.Epoch)
		}
		must(follow(t, w, c, rot, now+2))
		cas = append(cas, c.Bundle().CA)
		// A new device of bob's under this CA, between the rotations.
		must(w.d.Enrol(w.bob, w.b1, at(now+3)))
		must(w.d.PublishEpoch(at(now + 4)))
		now += 5
	}
	whole := func(c *kt.Client) (*kt.HistoryResult, error) {
		return c.VerifyHistory(w.tenant, w.bob, kt.Position{}, must(w.d.History(w.bob, 0, c.TreeSize())), at(now))
	}
	h, err := whole(c)
	if err != nil {
		t.Fatalf("history across three rotations, following client: %v", err)
	}
	if len(h.Records) != 7 {
		t.Fatalf("bob's history has %d records, want 7", len(h.Records))
	}

	// A device enrolled under the fourth CA.
	fresh := w.client(t)
	if !fresh.Bundle().CA.Equal(cas[3]) {
		t.Fatal("the directory's bundle is not the last CA's")
	}
	before := state(t, fresh)
	if _, err := whole(fresh); !errors.Is(err, kt.ErrProof) {
		t.Fatalf("old records without the CA history: got %v", err)
	}
	sameState(t, fresh, before)
	// The latest rotation teaches the key before the pinned one only.
	must(fresh.VerifyOrgLookup(org.OrgLabelCARotation, must(w.d.LookupOrg(org.OrgLabelCARotation, fresh.TreeSize())), at(now)))
	before = state(t, fresh)
	if _, err := whole(fresh); !errors.Is(err, kt.ErrProof) {
		t.Fatalf("records of the first two CAs with the last old key only: got %v", err)
	}
	sameState(t, fresh, before)
	// The label's history: the whole chain.
	oh, err := fresh.VerifyOrgHistory(org.OrgLabelCARotation, kt.OrgPosition{}, must(w.d.HistoryOrg(org.OrgLabelCARotation, 0, fresh.TreeSize())), at(now))
	if err != nil {
		t.Fatalf("CA rotation history: %v", err)
	}
	if len(oh.Statements) != 3 {
		t.Fatalf("%d rotations", len(oh.Statements))
	}
	for i, st := range oh.Statements {
		r := st.(*org.CARotation)
		if !r.Old.Equal(cas[i]) || !r.New.Equal(cas[i+1]) {
			t.Fatalf("rotation %d does not go from CA %d to CA %d", i+1, i, i+1)
		}
	}
	if h2, err := whole(fresh); err != nil || len(h2.Records) != 7 {
		t.Fatalf("history with the CA chain: %v", err)
	}
	// The chain survives a restore, and agrees with what the following
	// client learnt one rotation at a time.
	rf := must(restore(fresh, fresh.Bundle()))
	if _, err := whole(rf); err != nil {
		t.Fatalf("history after a restore: %v", err)
	}
	must(c.VerifyOrgHistory(org.OrgLabelCARotation, kt.OrgPosition{}, must(w.d.HistoryOrg(org.OrgLabelCARotation, 0, c.TreeSize())), at(now)))

	// A fourth rotation, published, not yet followed: the history since
	// the position verifies it under the pinned key, and teaches nothing.
	must(w.d.RotateCA(at(now)))
	must(w.d.PublishEpoch(at(now + 1)))
	oh2 := must(fresh.VerifyOrgHistory(org.OrgLabelCARotation, oh.Position, must(w.d.HistoryOrg(org.OrgLabelCARotation, oh.Position.Version, fresh.TreeSize())), at(now+1)))
	if len(oh2.Statements) != 1 || !oh2.Statements[0].(*org.CARotation).Old.Equal(cas[3]) {
		t.Fatal("pending rotation")
	}

	// A rotation by another CA, injected by the operator: it does not lead
	// to the pinned key.
	forger := must(org.GenerateMemorySigner(w.d.Rand))
	cur := w.d.TrustBundle()
	var admins []*org.AdminKey
	for _, k := range w.d.Admins {
		admins = append(admins, k.Public())
	}
	ft := must(org.NewTenant(org.TenantParams{ID: w.tenant, Admins: admins, Threshold: 2, LogOrigin: cur.LogOrigin,
		Log: cur.Log, VRF: cur.VRF, Witnesses: cur.Witnesses}, forger, at(now)))
	must(ft.Publish(at(now)))
	next := must(org.GenerateMemorySigner(w.d.Rand))
	p := must(ft.ProposeCA(next.Public(), at(now)))
	var aps []*org.Approval
	for _, k := range w.d.Admins[:2] {
		aps = append(aps, must(org.ApproveTrustBundle(k, p)))
	}
	fr := must(ft.RotateCA(p, aps, next, at(now)))
	w.d.Inject(org.Label{Org: org.OrgLabelCARotation}, must(fr.Rotation.Marshal()))
	must(w.d.PublishEpoch(at(now + 2)))
	late := w.client(t) // pinned to the fifth CA
	before = state(t, late)
	_, err = late.VerifyOrgHistory(org.OrgLabelCARotation, kt.OrgPosition{}, must(w.d.HistoryOrg(org.OrgLabelCARotation, 0, late.TreeSize())), at(now+3))
	wantStatementError(t, late, before, err, org.ErrUnknownIssuer)
}
