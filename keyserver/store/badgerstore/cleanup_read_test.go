package badgerstore

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/moat-im/moat/keyserver/store"
	"github.com/moat-im/moat/keyserver/store/storetest"
)

// commitTenantRecords commits, in one epoch of m, n records of tenant id with
// keys {1, i>>8, i} and values of size bytes, each byte tag.
func commitTenantRecords(t *testing.T, m *storetest.Model, id [16]byte, n, size int, tag byte) {
	t.Helper()
	recs := make([]store.TenantRecord, n)
	for i := range recs {
		v := make([]byte, size)
		for j := range v {
			v[j] = tag
		}
		recs[i] = store.TenantRecord{Key: store.TenantKey{1, byte(i >> 8), byte(i)}, Value: v}
	}
	commitRecords(t, m, id, recs...)
}

// commitRecords commits recs, records of tenant id, in one epoch of m.
func commitRecords(t *testing.T, m *storetest.Model, id [16]byte, recs ...store.TenantRecord) {
	t.Helper()
	ec := m.Build(t, storetest.Spec{})
	ec.Tenants = []store.TenantWrite{{ID: id, Records: recs}}
	if err := m.Commit(t, context.Background(), ec); err != nil {
		t.Fatal(err)
	}
}

// TestTenantRecordsDuringCleanup: the cleanup after a commit deletes the
// superseded versions in several badger transactions (4,000 records of
// two fragments do not fit one with the tests' 4 MiB memtable), on
// another goroutine once CommitEpoch has returned. A reader between two
// of them meets superseded versions with fragments missing, and must
// still read the tenant.
func TestTenantRecordsDuringCleanup(t *testing.T) {
	s := openTest(t, t.TempDir(), 0)
	defer s.Close()
	m := storetest.NewModel(t, s, 23)
	id := [16]byte{1}
	for round := range 12 {
		commitTenantRecords(t, m, id, 4000, tenantFragSize+50, byte(round))
		for range 40 {
			if _, err := storetest.ReadTenant(context.Background(), s, id); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	s.WaitCleanup()
	m.Check(t, false)
}

// TestTenantRecordsAfterCleanupCutShort: a cleanup that stops after its
// first transaction (an error here; a crash would leave the same, as that
// transaction reached badger's log) leaves superseded versions without
// their first fragments. The tenant still reads; the next rewrite of the
// records removes what was left (the failed cleanup forgot their latest
// versions, so it seeks them); and the tenant reads after a reopen.
func TestTenantRecordsAfterCleanupCutShort(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, 0)
	m := storetest.NewModel(t, s, 22)
	id := [16]byte{1}
	commitTenantRecords(t, m, id, 4000, tenantFragSize+50, 1)
	s.WaitCleanup()
	s.commitMu.Lock()
	s.testFailCleanupAt = 1
	s.commitMu.Unlock()
	commitTenantRecords(t, m, id, 4000, tenantFragSize+50, 2)
	s.WaitCleanup()
	if _, err := storetest.ReadTenant(context.Background(), s, id); err != nil {
		t.Fatalf("after the cut-short cleanup: %v", err)
	}
	m.Check(t, false)
	s.commitMu.Lock()
	s.testFailCleanupAt = 0
	s.commitMu.Unlock()
	commitTenantRecords(t, m, id, 4000, 10, 3)
	s.WaitCleanup()
	// Left: the 4,000 records of the last epoch, one fragment each.
	if n := countNow(t, s, tenantPrefix(id), tenantPrefix(id)); n != 4000 {
		t.Fatalf("%d tenant keys after the next rewrite, want 4000", n)
	}
	s.Close()
	s = openTest(t, dir, 0)
	defer s.Close()
	if _, err := storetest.ReadTenant(context.Background(), s, id); err != nil {
		t.Fatalf("after a reopen: %v", err)
	}
	m.S = s
	m.Reset(t)
	m.Check(t, true)
}

// TestTenantRecordCollisionFragments: two records of one epoch whose
// hashes collide, with different fragment counts, cannot share the
// latest-version entry; the rewrite of the larger must not leave part of
// its superseded version behind.
func TestTenantRecordCollisionFragments(t *testing.T) {
	s := openTest(t, t.TempDir(), 0)
	defer s.Close()
	s.testCollide = true
	m := storetest.NewModel(t, s, 21)
	id := [16]byte{1}
	k1, k2 := store.TenantKey{1, 1}, store.TenantKey{1, 2}
	big := make([]byte, 2*tenantFragSize+100) // three fragments
	for i := range big {
		big[i] = byte(i) | 1
	}
	commit := func(recs ...store.TenantRecord) {
		t.Helper()
		commitRecords(t, m, id, recs...)
		s.WaitCleanup()
	}
	commit(store.TenantRecord{Key: k1, Value: []byte("small")}, store.TenantRecord{Key: k2, Value: big})
	commit(store.TenantRecord{Key: k2, Value: []byte("k2 small")})
	if _, err := storetest.ReadTenant(context.Background(), s, id); err != nil {
		t.Fatal(err)
	}
	// k1's version and k2's new one: one fragment each.
	if n := countNow(t, s, tenantPrefix(id), tenantPrefix(id)); n != 2 {
		t.Fatalf("%d tenant keys, want 2", n)
	}
	m.Check(t, false)
}

// TestTenantRecordLatestFragmentMissing: the latest version of a record
// with a fragment missing (its first, or one after it) is still
// ErrCorrupt; only superseded versions may be incomplete.
func TestTenantRecordLatestFragmentMissing(t *testing.T) {
	for _, frag := range []uint32{0, 1} {
		s := openTest(t, t.TempDir(), 0)
		m := storetest.NewModel(t, s, 24)
		id := [16]byte{1}
		commitTenantRecords(t, m, id, 3, tenantFragSize+50, 1)
		commitTenantRecords(t, m, id, 3, tenantFragSize+50, 2)
		s.WaitCleanup()
		var victim []byte
		if err := s.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: tenantPrefix(id)})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				k := it.Item().KeyCopy(nil)
				if binary.BigEndian.Uint32(k[tenantBaseSize:]) == frag {
					victim = k // the last: the latest version of the last record
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(victim) }); err != nil {
			t.Fatal(err)
		}
		if _, err := storetest.ReadTenant(context.Background(), s, id); !errors.Is(err, store.ErrCorrupt) {
			t.Fatalf("fragment %d of the latest version missing: %v, want ErrCorrupt", frag, err)
		}
		s.Close()
	}
}
