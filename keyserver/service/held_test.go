package service_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/moat-im/moat/keyserver/org"
)

// TestLookupHeldEntryOverHTTP: a client that verified a lookup at the
// served checkpoint says so with its next lookups (entry = size − 1,
// directory-api.md §HTTP API), which then carry no inclusion proof and
// verify; after a new epoch, a consistency response gives it the new last
// entry, and its lookups carry none either. An entry parameter other than
// size − 1 is 400.
func TestLookupHeldEntryOverHTTP(t *testing.T) {
	w := newWorld(t, worldOptions{seed: 44})
	ctx := context.Background()
	alice, bob := w.addUser("Alice"), w.addUser("Bob")
	a1 := w.mustEnrol(alice)
	w.mustEnrol(bob)
	for range 3 { // a tree of 4 or more: inclusion proofs are not empty
		w.publish()
	}
	for round := range 2 {
		// Round 0: the client holds the last entry of its enrolment's
		// checkpoint, older than the served one: the first lookup's
		// proof is anchored. Round 1: the consistency response after the
		// new epoch carried the served checkpoint's last entry
		// (directory.md §Held entry), so no lookup needs an inclusion
		// proof.
		if _, held := a1.kt.HeldEntry(); !held {
			t.Fatalf("round %d: the client holds no entry", round)
		}
		r := must(a1.api.LookupFrom(ctx, alice, a1.kt))
		if round == 1 && len(r.Proof.Inclusion) != 0 {
			t.Fatalf("round %d: first lookup with an inclusion proof of %d hashes", round, len(r.Proof.Inclusion))
		}
		must(a1.kt.VerifyLookup(w.tenant, alice, r, w.clk.Now()))
		if _, held := a1.kt.HeldEntry(); !held {
			t.Fatalf("round %d: no entry held after a lookup", round)
		}
		for _, user := range []org.UserID{bob, alice} {
			r := must(a1.api.LookupFrom(ctx, user, a1.kt))
			if len(r.Proof.Inclusion) != 0 {
				t.Fatalf("round %d: inclusion proof sent to a client that holds the entry", round)
			}
			if res := must(a1.kt.VerifyLookup(w.tenant, user, r, w.clk.Now())); len(res.Devices) != 1 {
				t.Fatalf("round %d: %d devices", round, len(res.Devices))
			}
		}
		or := must(a1.api.LookupOrgFrom(ctx, org.OrgLabelOrgChart, a1.kt))
		if len(or.Proof.Inclusion) != 0 {
			t.Fatalf("round %d: org lookup with an inclusion proof", round)
		}
		must(a1.kt.VerifyOrgLookup(org.OrgLabelOrgChart, or, w.clk.Now()))
		w.publish()
		must(a1.kt.UpdateCheckpoint(must(a1.api.Consistency(ctx, a1.kt.TreeSize())), w.clk.Now()))
	}
	size := a1.kt.TreeSize()
	for _, q := range []string{fmt.Sprintf("size=%d&entry=%d", size, size-2), fmt.Sprintf("size=%d&entry=%d", size, size), "size=0&entry=0", fmt.Sprintf("size=%d&entry=", size)} {
		req := must(http.NewRequest(http.MethodGet, w.srv.URL+"/v1/"+w.tenant.String()+"/lookup/"+alice.String()+"?"+q, nil))
		if code, body := rawRequest(t, req); code != http.StatusBadRequest {
			t.Errorf("%s: status %d (%s), want 400", q, code, body)
		}
	}
}

// TestFirstLookupAfterEnrolment: the enrolment answer carries the served
// checkpoint's last entry (directory-api.md §Enrolment), so a new device
// holds it (directory.md §Held entry) and its first lookups, while that
// checkpoint is the latest, carry no inclusion proof and verify; the same
// lookup without the entry parameter carries the whole proof.
func TestFirstLookupAfterEnrolment(t *testing.T) {
	w := newWorld(t, worldOptions{seed: 45})
	ctx := context.Background()
	alice, bob := w.addUser("Alice"), w.addUser("Bob")
	w.mustEnrol(bob)
	for range 3 { // a tree of 4 or more: inclusion proofs are not empty
		w.publish()
	}
	a1 := w.mustEnrol(alice)
	_, size := w.ten().ServedNote()
	e, held := a1.kt.HeldEntry()
	if !held || a1.kt.TreeSize() != size || e != size-1 {
		t.Fatalf("after enrolment: entry %d held %v, size %d; served size %d", e, held, a1.kt.TreeSize(), size)
	}
	whole := must(a1.api.Lookup(ctx, bob, a1.kt.TreeSize()))
	if len(whole.Proof.Inclusion) == 0 {
		t.Fatal("a lookup without the entry has no inclusion proof: the test would not exercise anything")
	}
	for _, user := range []org.UserID{bob, alice} {
		r := must(a1.api.LookupFrom(ctx, user, a1.kt))
		if len(r.Proof.Inclusion) != 0 {
			t.Fatalf("first lookup after enrolment with an inclusion proof of %d hashes", len(r.Proof.Inclusion))
		}
		if saved := len(must(whole.Marshal())) - len(must(r.Marshal())); user == bob && saved != 32*len(whole.Proof.Inclusion) {
			t.Fatalf("the held entry saves %d bytes", saved)
		}
		must(a1.kt.VerifyLookup(w.tenant, user, r, w.clk.Now()))
	}
}
