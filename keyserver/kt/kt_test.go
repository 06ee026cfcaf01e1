package kt_test

import (
	"errors"
	"testing"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
)

func TestLookupEndToEnd(t *testing.T) {
	w := newWorld(t, 1)
	c := w.client(t)
	resp := must(w.d.Lookup(w.bob, c.TreeSize()))
	res, err := c.VerifyLookup(w.tenant, w.bob, resp, at(2))
	ok(t, err)
	if len(res.Devices) != 2 || res.Device(w.b1.ID) == nil || res.Device(w.b2.ID) == nil || res.Epoch != 0 || res.Record.Version != 1 {
		t.Fatalf("unexpected result %+v", res)
	}
	// A user that does not exist is proven absent.
	resp = must(w.d.Lookup(uid(9), c.TreeSize()))
	if _, err := c.VerifyLookup(w.tenant, uid(9), resp, at(2)); !errors.Is(err, kt.ErrNotFound) {
		t.Fatalf("absent user: %v", err)
	}
	if _, err := c.VerifyAbsence(w.tenant, uid(9), resp, at(2)); err != nil {
		t.Fatal(err)
	}
	resp = must(w.d.Lookup(w.alice, c.TreeSize()))
	if _, err := c.VerifyAbsence(w.tenant, w.alice, resp, at(2)); !errors.Is(err, kt.ErrIncluded) {
		t.Fatalf("present user as absent: %v", err)
	}
	// Org labels.
	resp = must(w.d.LookupOrg(org.OrgLabelTrustBundle, c.TreeSize()))
	or, err := c.VerifyOrgLookup(org.OrgLabelTrustBundle, resp, at(2))
	ok(t, err)
	if tb, isTB := or.Statement.(*org.TrustBundle); !isTB || !tb.VRF.Equal(w.d.VRF.Public()) {
		t.Fatalf("org lookup: %T", or.Statement)
	}

	// Next epoch: alice gets a second device; the client follows with a
	// consistency proof.
	a2 := must(w.d.Enrol(w.alice, w.a1, at(3)))
	must(w.d.PublishEpoch(at(4)))
	resp = must(w.d.Lookup(w.alice, c.TreeSize()))
	if len(resp.Checkpoint.Consistency) == 0 {
		t.Fatal("no consistency proof")
	}
	res, err = c.VerifyLookup(w.tenant, w.alice, resp, at(5))
	ok(t, err)
	if res.Device(a2.ID) == nil || res.Epoch != 1 || res.Record.Version != 2 {
		t.Fatalf("unexpected result %+v", res)
	}
	// State round trip.
	st := state(t, c)
	c2 := must(kt.RestoreClient(w.d.Config(maxAge), st))
	if string(state(t, c2)) != string(st) {
		t.Fatal("state does not round-trip")
	}
}
