package org

import (
	"bytes"
	"maps"
	"slices"
	"testing"
	"time"
)

// TestJournalRecordsRestore: a tenant whose operations since the last
// persisted epoch are journaled one by one (JournalRecords, the pending
// records a directory writes before acknowledging each operation) is
// restored from the persisted records plus the journal (ApplyPending) to
// the live tenant's state, byte for byte, with the same pending records,
// after every kind of operation, a CA rotation included; and each
// operation journals few records.
func TestJournalRecordsRestore(t *testing.T) {
	f := newFixture(t, 59)
	a := aid(1)
	stored := storedRecords{}
	stored.persist(t, f.t)
	journal := storedRecords{} // the pending records since the last epoch, deletions as nil
	signers := []Signer{f.signer}
	check := func(step string) {
		t.Helper()
		recs := must(f.t.JournalRecords())
		if (len(recs) == 0) != (step == "publish") || len(recs) > 12 {
			t.Fatalf("%s: %d records journaled", step, len(recs))
		}
		for _, r := range recs {
			journal[r.Key] = bytes.Clone(r.Value)
		}
		got := stored.load(t, signers[0])
		var pend []StateRecord
		for _, k := range slices.SortedFunc(maps.Keys(journal), func(a, b StateKey) int { return bytes.Compare(a[:], b[:]) }) {
			pend = append(pend, StateRecord{Key: k, Value: journal[k]})
		}
		if err := got.ApplyPending(pend, signers); err != nil {
			t.Fatalf("%s: ApplyPending: %v", step, err)
		}
		if !bytes.Equal(stateBytes(t, got), stateBytes(t, f.t)) {
			t.Fatalf("%s: the state restored from the records and the journal differs from the live one", step)
		}
		if !slices.EqualFunc(must(got.PendingRecords()), must(f.t.PendingRecords()), func(a, b StateRecord) bool {
			return a.Key == b.Key && bytes.Equal(a.Value, b.Value)
		}) {
			t.Fatalf("%s: the restored tenant's pending records differ from the live one's", step)
		}
	}
	epoch := func(now time.Time) {
		must(f.t.Publish(now))
		stored.persist(t, f.t)
		clear(journal)
		if recs := must(f.t.JournalRecords()); len(recs) != 0 {
			t.Fatalf("journal after an epoch: %d records, want none", len(recs))
		}
	}
	var old *testDevice
	var e *Enrolment
	var c *EnrolmentCode
	steps := []struct {
		name string
		op   func()
	}{
		{"departments", func() {
			ok(t, f.t.AddDepartment(a, did(1), DepartmentID{}, "Engineering"))
			ok(t, f.t.AddDepartment(a, did(2), did(1), "Platform"))
		}},
		{"add user", func() { must(f.t.AddUser(a, uid(1), "Alice", did(2), t0)) }},
		{"enrol", func() { old, e = f.enrol(t, uid(1), t0) }},
		{"publish", func() { epoch(t0) }},
		{"policy", func() { must(f.t.PublishPolicy(a, "dlp", []PolicyEntry{{"words", []byte("x")}}, t0)) }},
		{"assign policy", func() { must(f.t.AssignPolicy(a, uid(1), "dlp", t0)) }},
		{"escrow", func() { must(f.t.SetEscrowPolicy(a, testEscrowPolicy(t, f), t0)) }},
		{"code", func() { c = f.code(t, uid(1), t0) }},
		{"redeem with approval", func() {
			req := f.request(t, c, f.newDevice(t))
			must(f.t.RedeemEnrolmentCode(c, req, []*Approval{must(ApproveByDevice(old.id.Signing, e.Certificate.Device, uid(1), req))}, t0))
		}},
		{"publish", func() { epoch(t0) }},
		{"revoke", func() { must(f.t.RevokeDevice(a, uid(1), e.Certificate.Device, ReasonRetired, t0)) }},
		{"second user", func() { f.enrol(t, uid(2), t0) }},
		{"move user", func() { ok(t, f.t.SetUserDepartment(a, uid(2), did(1))) }},
		{"move and rename department", func() {
			ok(t, f.t.MoveDepartment(a, did(2), DepartmentID{}))
			ok(t, f.t.RenameDepartment(a, did(1), "Eng"))
		}},
		{"remove user", func() {
			must(f.t.AddUser(a, uid(3), "Carol", DepartmentID{}, t0))
			f.code(t, uid(3), t0)
			must(f.t.RemoveUser(a, uid(3), t0))
		}},
		{"wrong secret", func() {
			c = f.code(t, uid(2), t0)
			f.t.RedeemEnrolmentCode(wrongSecret(c, 0), f.request(t, c, f.newDevice(t)), nil, t0)
		}},
		{"another wrong secret", func() {
			f.t.RedeemEnrolmentCode(wrongSecret(c, 1), f.request(t, c, f.newDevice(t)), nil, t0)
		}},
		{"cancel code", func() { ok(t, f.t.CancelEnrolmentCode(a, c.ID)) }},
		{"remove department", func() {
			ok(t, f.t.AddDepartment(a, did(3), DepartmentID{}, "Temp"))
			ok(t, f.t.RemoveDepartment(a, did(3)))
		}},
		{"publish", func() { epoch(t0.Add(time.Hour)) }},
		{"rotate CA", func() {
			next := must(GenerateMemorySigner(f.rnd))
			must(rotateCA(t, f, next, t0.Add(2*time.Hour)))
			signers = append(signers, next)
		}},
	}
	for _, s := range steps {
		s.op()
		check(s.name)
		if recs := must(f.t.JournalRecords()); len(recs) != 0 {
			t.Fatalf("%s: %d records journaled again without a change", s.name, len(recs))
		}
	}
	// A journal whose records are out of order, or whose CA no signer
	// holds, is refused.
	got := stored.load(t, signers[0])
	pend := must(f.t.PendingRecords())
	if err := got.ApplyPending(pend, signers[:1]); err == nil {
		t.Fatal("ApplyPending of a CA rotation without the new CA's signer succeeded")
	}
	got = stored.load(t, signers[0])
	slices.Reverse(pend)
	if err := got.ApplyPending(pend, signers); err == nil {
		t.Fatal("ApplyPending of records out of order succeeded")
	}
}
