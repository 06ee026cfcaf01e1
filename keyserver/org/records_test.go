package org

import (
	"bytes"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"
)

// storedRecords is what a store holds of a tenant: its records by key.
type storedRecords map[StateKey][]byte

// persist writes the tenant's pending records into s, as a directory
// epoch does, marks them persisted, and returns how many it wrote.
func (s storedRecords) persist(t testing.TB, tn *Tenant) int {
	t.Helper()
	recs := must(tn.PendingRecords())
	for _, r := range recs {
		if r.Value == nil {
			delete(s, r.Key)
		} else {
			s[r.Key] = bytes.Clone(r.Value)
		}
	}
	tn.MarkPersisted()
	return len(recs)
}

func (s storedRecords) load(t testing.TB, signer Signer) *Tenant {
	t.Helper()
	l := NewTenantLoader(nil)
	for _, k := range slices.SortedFunc(maps.Keys(s), func(a, b StateKey) int { return bytes.Compare(a[:], b[:]) }) {
		if err := l.Add(k, s[k]); err != nil {
			t.Fatalf("loading record %x: %v", k[:1], err)
		}
	}
	return must(l.Finish(signer))
}

// TestStateRecordsIncremental: a tenant persisted epoch by epoch, each
// epoch writing only PendingRecords, loads back to the live tenant's
// state, byte for byte (the whole-state encoding compares every field),
// through every kind of operation; and an epoch writes few records.
func TestStateRecordsIncremental(t *testing.T) {
	f := newFixture(t, 58)
	a := aid(1)
	stored := storedRecords{}
	stored.persist(t, f.t)
	check := func(step string) {
		t.Helper()
		n := stored.persist(t, f.t)
		got := stored.load(t, f.signer)
		if !bytes.Equal(stateBytes(t, got), stateBytes(t, f.t)) {
			t.Fatalf("%s: the state loaded from the records differs from the live one", step)
		}
		if n > 12 {
			t.Fatalf("%s: %d records written", step, n)
		}
		if !slices.EqualFunc(must(got.PendingRecords()), must(f.t.PendingRecords()), func(a, b StateRecord) bool {
			return a.Key == b.Key && bytes.Equal(a.Value, b.Value)
		}) {
			t.Fatalf("%s: the loaded tenant's pending records differ from the live one's", step)
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
		{"publish", func() { must(f.t.Publish(t0)) }},
		{"policy", func() { must(f.t.PublishPolicy(a, "dlp", []PolicyEntry{{"words", []byte("x")}}, t0)) }},
		{"assign policy", func() { must(f.t.AssignPolicy(a, uid(1), "dlp", t0)) }},
		{"escrow", func() { must(f.t.SetEscrowPolicy(a, testEscrowPolicy(t, f), t0)) }},
		{"publish", func() { must(f.t.Publish(t0)) }},
		{"code", func() { c = f.code(t, uid(1), t0) }},
		{"redeem with approval", func() {
			req := f.request(t, c, f.newDevice(t))
			must(f.t.RedeemEnrolmentCode(c, req, []*Approval{must(ApproveByDevice(old.id.Signing, e.Certificate.Device, uid(1), req))}, t0))
		}},
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
		{"wrong secrets", func() {
			c = f.code(t, uid(2), t0)
			lreq := f.request(t, c, f.newDevice(t))
			for i := range 2 {
				f.t.RedeemEnrolmentCode(wrongSecret(c, byte(i)), lreq, nil, t0)
			}
		}},
		{"cancel code", func() { ok(t, f.t.CancelEnrolmentCode(a, c.ID)) }},
		{"expired codes pruned", func() {
			f.code(t, uid(2), t0)
			f.code(t, uid(2), t0.Add(48*time.Hour))
		}},
		{"remove department", func() {
			ok(t, f.t.AddDepartment(a, did(3), DepartmentID{}, "Temp"))
			ok(t, f.t.RemoveDepartment(a, did(3)))
		}},
		{"publish", func() { must(f.t.Publish(t0.Add(time.Hour))) }},
		{"rotate CA", func() {
			next := must(GenerateMemorySigner(f.rnd))
			must(rotateCA(t, f, next, t0.Add(2*time.Hour)))
			f.signer = next
		}},
		{"publish", func() { must(f.t.Publish(t0.Add(2 * time.Hour))) }},
	}
	for _, s := range steps {
		s.op()
		check(s.name)
	}
	if n := stored.persist(t, f.t); n != 1 {
		t.Fatalf("an epoch without changes wrote %d records, want the core", n)
	}
	// With many users, a change to one writes that user's record, not
	// the others'.
	for i := range 150 { // more than one loader worker's share
		must(f.t.AddUser(a, uid(byte(100+i)), "U", DepartmentID{}, t0))
	}
	must(f.t.Publish(t0.Add(3 * time.Hour)))
	stored.persist(t, f.t)
	must(f.t.AssignPolicy(a, uid(120), "dlp", t0.Add(3*time.Hour)))
	must(f.t.Publish(t0.Add(3 * time.Hour)))
	recs := must(f.t.PendingRecords())
	if len(recs) != 2 || recs[1].Key != userKey(uid(120)) {
		t.Fatalf("one user's change pends %d records", len(recs))
	}
	check("one user of many")
}

// TestRestoreRecordsUndoesPublish: the records PendingRecords returns
// before Publish restore the tenant to its state before Publish, byte for
// byte, when the epoch's commit fails.
func TestRestoreRecordsUndoesPublish(t *testing.T) {
	f := richFixture(t)
	stored := storedRecords{}
	stored.persist(t, f.t)
	must(f.t.AddUser(aid(1), uid(7), "Grace", did(1), t0))
	f.enrol(t, uid(4), t0)
	before := stateBytes(t, f.t)
	snap := must(f.t.PendingRecords())
	if ups := must(f.t.Publish(t0)); len(ups) < 3 {
		t.Fatalf("%d updates", len(ups))
	}
	if bytes.Equal(before, stateBytes(t, f.t)) {
		t.Fatal("Publish changed nothing")
	}
	ok(t, f.t.RestoreRecords(snap))
	if !bytes.Equal(before, stateBytes(t, f.t)) {
		t.Fatal("RestoreRecords did not restore the state before Publish")
	}
	// The restored tenant publishes the same updates again, and persists.
	if ups := must(f.t.Publish(t0)); len(ups) < 3 {
		t.Fatalf("%d updates after the restore", len(ups))
	}
	stored.persist(t, f.t)
	if !bytes.Equal(stateBytes(t, stored.load(t, f.signer)), stateBytes(t, f.t)) {
		t.Fatal("state differs after the restored epoch")
	}
}

// TestTenantLoaderStrict: records out of order, without the core or trust
// record, truncated or extended, or from another tenant, are refused.
func TestTenantLoaderStrict(t *testing.T) {
	f := richFixture(t)
	recs := must(f.t.StateRecords())
	load := func(rs []StateRecord) error {
		l := NewTenantLoader(nil)
		for _, r := range rs {
			if err := l.Add(r.Key, r.Value); err != nil {
				return err
			}
		}
		_, err := l.Finish(f.signer)
		return err
	}
	ok(t, load(recs))
	if err := load(recs[1:]); !errors.Is(err, ErrMalformed) {
		t.Errorf("without the core record: %v", err)
	}
	if err := load(append([]StateRecord{recs[0]}, recs[2:]...)); !errors.Is(err, ErrMalformed) {
		t.Errorf("without the trust record: %v", err)
	}
	swapped := slices.Clone(recs)
	swapped[3], swapped[4] = swapped[4], swapped[3]
	if err := load(swapped); !errors.Is(err, ErrMalformed) {
		t.Errorf("out of order: %v", err)
	}
	if err := load(nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("no records: %v", err)
	}
	l := NewTenantLoader(nil)
	for _, r := range recs {
		ok(t, l.Add(r.Key, r.Value))
	}
	if _, err := l.Finish(must(GenerateMemorySigner(f.rnd))); !errors.Is(err, ErrSignerMismatch) {
		t.Errorf("another signer: %v", err)
	}
	for i, r := range recs {
		for _, bad := range [][]byte{r.Value[:len(r.Value)-1], append(bytes.Clone(r.Value), 0)} {
			rs := slices.Clone(recs)
			rs[i].Value = bad
			if load(rs) == nil {
				t.Fatalf("record %d (kind %#x) of %d bytes accepted", i, r.Key[0], len(bad))
			}
		}
		// A record under another key of its kind.
		rs := slices.Clone(recs)
		rs[i].Key[StateKeySize-1] ^= 1
		if r.Key[0] != recUsedKey && r.Key[0] != recUsedApproval {
			slices.SortFunc(rs, func(a, b StateRecord) int { return bytes.Compare(a.Key[:], b.Key[:]) })
			if load(rs) == nil {
				t.Fatalf("record %d (kind %#x) under another key accepted", i, r.Key[0])
			}
		}
	}
	// A record of another tenant's state.
	g := newTenantFixture(t, 59, tid(2))
	other := must(g.t.StateRecords())
	if err := load(append([]StateRecord{recs[0]}, other[1:]...)); err == nil {
		t.Error("another tenant's records accepted")
	}
}

func userKey(id UserID) StateKey { return stateKey(recUser, id[:]) }

// valueStore plays the directory's value records: the user values of
// each epoch, by label and version, and a label per user.
type valueStore struct {
	values map[[32]byte][][]byte // by label: versions 1, 2, ...
	reads  int
}

// publish publishes the tenant's changes as an epoch of the directory
// does: the values are stored, then ValuesStored, then the records.
func (vs *valueStore) publish(t testing.TB, tn *Tenant, stored storedRecords, now time.Time) {
	t.Helper()
	ups := must(tn.Publish(now))
	var refs []ValueRef
	for _, up := range ups {
		if up.Label.User.IsZero() {
			continue
		}
		var label [32]byte
		copy(label[:], "label of ")
		copy(label[9:], up.Label.User[:])
		vs.values[label] = append(vs.values[label], bytes.Clone(up.Value))
		refs = append(refs, ValueRef{User: up.Label.User, Label: label, Version: uint32(len(vs.values[label]))})
	}
	tn.ValuesStored(refs)
	stored.persist(t, tn)
}

func (vs *valueStore) read(label [32]byte, version uint32) ([]byte, error) {
	vs.reads++
	v := vs.values[label]
	if version == 0 || int(version) > len(v) {
		return nil, errors.New("no such value")
	}
	return v[version-1], nil
}

func (s storedRecords) loadWith(t testing.TB, signer Signer, r ValueReader) (*Tenant, error) {
	t.Helper()
	l := NewTenantLoader(r)
	for _, k := range slices.SortedFunc(maps.Keys(s), func(a, b StateKey) int { return bytes.Compare(a[:], b[:]) }) {
		if err := l.Add(k, s[k]); err != nil {
			return nil, err
		}
	}
	return l.Finish(signer)
}

// TestUserRecordsReferToValues: once a user's value is stored, the user's
// record refers to the certificates in it instead of repeating them
// (UserRecord), a revoked device's to the value that last held it; a
// renewed certificate is inline until the next value. The records load
// back through a ValueReader to the live state; without one, or with a
// value that does not hold the certificate, loading fails; and core
// records of the earlier format are refused with ErrStateVersion.
func TestUserRecordsReferToValues(t *testing.T) {
	f := newFixture(t, 61)
	vs := &valueStore{values: map[[32]byte][][]byte{}}
	stored := storedRecords{}
	stored.persist(t, f.t)
	_, e1 := f.enrol(t, uid(1), t0)
	_, e2 := f.enrol(t, uid(2), t0)
	userKey := stateKey(recUser, func() []byte { u := uid(1); return u[:] }())
	if len(stored[userKey]) != 0 {
		t.Fatal("user record stored before persist")
	}
	inline := len(must(f.t.encodeRecord(userKey)))
	vs.publish(t, f.t, stored, t0)
	small := len(stored[userKey])
	cert := must(e1.Certificate.Marshal())
	if small >= inline-len(cert)+64 || bytes.Contains(stored[userKey], cert[len(cert)-64:]) {
		t.Fatalf("user record of %d bytes after its value was stored (%d inline, certificate %d)", small, inline, len(cert))
	}
	check := func(step string) {
		t.Helper()
		got, err := stored.loadWith(t, f.signer, vs.read)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if !bytes.Equal(stateBytes(t, got), stateBytes(t, f.t)) {
			t.Fatalf("%s: the loaded state differs from the live one", step)
		}
	}
	check("published")

	// A renewed certificate is inline until the next value holds it; the
	// records between epochs (JournalRecords) refer to what is stored.
	must(f.t.RenewCertificate(aid(1), uid(1), e1.Certificate.Device, t0.Add(time.Hour)))
	must(f.t.RevokeDevice(aid(1), uid(2), e2.Certificate.Device, ReasonCompromised, t0.Add(time.Hour)))
	journal := must(f.t.JournalRecords())
	persisted := maps.Clone(stored)
	stored.persist(t, f.t)
	if len(stored[userKey]) < small+len(cert) {
		t.Fatalf("user record of %d bytes with a renewed certificate not yet in a value", len(stored[userKey]))
	}
	check("renewed, not published")
	// The journal over the persisted records, as a restart applies it.
	ld := must(persisted.loadWith(t, f.signer, vs.read))
	ok(t, ld.ApplyPending(journal, nil))
	if !bytes.Equal(stateBytes(t, ld), stateBytes(t, f.t)) {
		t.Fatal("the journal applied over the persisted records differs from the live state")
	}
	vs.publish(t, f.t, stored, t0.Add(time.Hour))
	if len(stored[userKey]) != small+8 { // one more serial
		t.Fatalf("user record of %d bytes after the renewal was published, want %d", len(stored[userKey]), small+8)
	}
	check("renewal published")
	// The revoked device refers to the value before its revocation.
	if !bytes.Contains(stored[stateKey(recUser, func() []byte { u := uid(2); return u[:] }())], []byte{0, 0, 0, 1}) {
		t.Fatal("the revoked device does not refer to version 1")
	}

	// No reader, a failing one, or a value without the certificate.
	if _, err := stored.loadWith(t, f.signer, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("load without a ValueReader: %v", err)
	}
	errRead := errors.New("disk on fire")
	if _, err := stored.loadWith(t, f.signer, func([32]byte, uint32) ([]byte, error) { return nil, errRead }); !errors.Is(err, errRead) {
		t.Fatalf("load with a failing ValueReader: %v, want its error", err)
	}
	other := must(f.t.UserValue(uid(2)))
	if _, err := stored.loadWith(t, f.signer, func([32]byte, uint32) ([]byte, error) { return other.Marshal() }); err == nil {
		t.Fatal("loaded with values that do not hold the certificates")
	}

	// A core record of the earlier format.
	old := maps.Clone(stored)
	core := bytes.Clone(old[stateKey(recCore, nil)])
	core[1] = version2
	old[stateKey(recCore, nil)] = core
	if _, err := old.loadWith(t, f.signer, vs.read); !errors.Is(err, ErrStateVersion) {
		t.Fatalf("core record version 2: %v, want ErrStateVersion", err)
	}
}
