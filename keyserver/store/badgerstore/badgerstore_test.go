package badgerstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/store"
	"github.com/moat-im/moat/keyserver/store/storetest"
	"github.com/moat-im/moat/keyserver/vmap"
)

// testMemTable is small so that the suite's large commits are staged over
// several badger transactions (about 600 KiB each).
const testMemTable = 4 << 20

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openTest(t testing.TB, dir string, crashAt int) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{Dir: dir, MemTableSize: testMemTable, Logger: quietLogger(), testCrashAfterChunk: crashAt})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.DirectoryStore {
		s := openTest(t, t.TempDir(), 0)
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestConformanceDefaultOptions(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: the default memtable")
	}
	storetest.Run(t, func(t *testing.T) store.DirectoryStore {
		s, err := Open(context.Background(), Options{Dir: t.TempDir(), Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestDurable(t *testing.T) {
	storetest.RunDurable(t, func(t *testing.T, dir string) store.DirectoryStore {
		s := openTest(t, dir, 0)
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestCrashMidCommit stops a staged commit after each number of committed
// transactions, as a crash would (no rollback), reopens the directory and
// checks that Open rolled the epoch back and that the epoch can be
// committed again with other contents.
func TestCrashMidCommit(t *testing.T) {
	for crashAt := 1; crashAt <= 6; crashAt += 2 {
		dir := t.TempDir()
		s := openTest(t, dir, crashAt)
		m := storetest.NewModel(t, s, uint64(crashAt))
		m.MustCommit(t, storetest.Spec{NewLabels: 300, Tenants: 2})
		m.MustCommit(t, storetest.Spec{NewLabels: 10, Tenants: 2})
		c := m.Build(t, storetest.Spec{NewLabels: 3000, Updates: 200, RecordSize: 1000, Tenants: 3, TenantSize: 400 << 10})
		err := m.Commit(t, context.Background(), c)
		if !errors.Is(err, errSimulatedCrash) {
			t.Fatalf("crash after %d: commit = %v", crashAt, err)
		}
		if err := s.CommitEpoch(context.Background(), c); !errors.Is(err, errSimulatedCrash) {
			t.Fatalf("a crashed store accepted a commit: %v", err)
		}
		// Staged data is in the database now, invisible.
		m.Check(t, false)
		staged := countPrefix(t, s, []byte{prefixJournal})
		if staged == 0 {
			t.Fatalf("crash after %d: nothing staged", crashAt)
		}
		s.Close()

		s = openTest(t, dir, 0)
		if n := countPrefix(t, s, []byte{prefixJournal}); n != 0 {
			t.Fatalf("crash after %d: %d journal keys left after recovery", crashAt, n)
		}
		if n := countRange(t, s, mapEpochStart(c.Epoch), []byte{prefixMap}); n != 0 {
			t.Fatalf("crash after %d: %d map nodes of the staged epoch left", crashAt, n)
		}
		for _, w := range c.Values {
			if err := s.db.View(func(txn *badger.Txn) error {
				_, err := txn.Get(appendFragKey(nil, appendValueBase(nil, w.Label, w.Version), 0))
				return err
			}); !errors.Is(err, badger.ErrKeyNotFound) {
				t.Fatalf("crash after %d: staged record left: %v", crashAt, err)
			}
		}
		m.S = s
		m.Reset(t)
		m.Check(t, true)
		m.MustCommit(t, storetest.Spec{NewLabels: 20, Updates: 20, Tenants: 3})
		m.Check(t, true)
		s.Close()
	}
}

// countPrefix counts the keys with prefix once the queued cleanups ran.
func countPrefix(t *testing.T, s *Store, prefix []byte) int {
	return countRange(t, s, prefix, prefix)
}

// countRange counts the keys with prefix from start once the queued
// cleanups ran.
func countRange(t *testing.T, s *Store, start, prefix []byte) int {
	t.Helper()
	s.WaitCleanup()
	return countNow(t, s, start, prefix)
}

// countNow is countRange without running the queued cleanups.
func countNow(t *testing.T, s *Store, start, prefix []byte) int {
	t.Helper()
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(start); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestStaleHeadRefused: if the stored head is older than a head in the
// history (as a corrupt block could make it look), Open refuses rather than
// rolling back committed epochs.
func TestStaleHeadRefused(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, 0)
	m := storetest.NewModel(t, s, 1)
	m.MustCommit(t, storetest.Spec{NewLabels: 10})
	first, _ := s.Head(context.Background())
	m.MustCommit(t, storetest.Spec{NewLabels: 10})
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(keyHead, encodeHeadPointer(first.Epoch)) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := Open(context.Background(), Options{Dir: dir, MemTableSize: testMemTable, Logger: quietLogger()})
	if !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("Open with a stale head = %v, want ErrCorrupt", err)
	}
}

// TestOrphanNodesRefused: map nodes past the head without a staging
// journal cannot come from a failed commit; Open refuses to delete them.
func TestOrphanNodesRefused(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, 0)
	m := storetest.NewModel(t, s, 1)
	m.MustCommit(t, storetest.Spec{NewLabels: 10})
	c := m.Build(t, storetest.Spec{NewLabels: 10})
	if err := s.db.Update(func(txn *badger.Txn) error {
		kn := c.Map.Nodes[0]
		return txn.Set(appendMapKey(nil, kn.Key), kn.Node.AppendBinary(nil))
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := Open(context.Background(), Options{Dir: dir, MemTableSize: testMemTable, Logger: quietLogger()})
	if !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("Open with orphan map nodes = %v, want ErrCorrupt", err)
	}
}

func TestForeignDatabaseRefused(t *testing.T) {
	dir := t.TempDir()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set([]byte("x"), []byte("y")) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open(context.Background(), Options{Dir: dir, Logger: quietLogger()}); err == nil {
		t.Fatal("Open accepted a database that is not a directory store")
	}
}

// TestCorruption flips bits in stored records and checks that no read
// returns bytes other than those written.
//
// Records of 256 bytes or more (valueThreshold) live in the value log, whose entries carry
// checksums that every read verifies: a flipped bit in an older value-log
// file is an error for that record alone. In the newest value-log file,
// Open takes the first bad entry for a torn tail and truncates the file
// there (badger does so silently): every later record of that file reads
// as an error.
//
// Smaller records live in table blocks, which badger verifies when it
// reads them but then skips silently: a flipped bit makes the block's keys
// look absent, and only Verify reports it.
func TestCorruption(t *testing.T) {
	for _, tc := range []struct {
		name       string
		recordSize int
		files      string
		older      bool // write another epoch after a reopen, so the damaged file is not the newest
		onlyHit    bool // exactly the damaged records fail
		absentOK   bool // damaged records may read as absent
	}{
		{"older value-log file", 2000, "000001.vlog", true, true, false},
		{"newest value-log file", 2000, "000001.vlog", false, false, false},
		{"table", 100, "*.sst", false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testCorruption(t, tc.recordSize, tc.files, tc.older, tc.onlyHit, tc.absentOK)
		})
	}
}

func testCorruption(t *testing.T, recordSize int, pattern string, older, onlyHit, absentOK bool) {
	dir := t.TempDir()
	s := openTest(t, dir, 0)
	m := storetest.NewModel(t, s, 1)
	for range 3 {
		m.MustCommit(t, storetest.Spec{NewLabels: 400, Updates: 100, RecordSize: recordSize, Tenants: 2, TenantSize: 5000})
	}
	s.Close() // flushes the memtable to a level-0 table
	if older {
		s = openTest(t, dir, 0)
		m.S = s
		m.Reset(t)
		m.MustCommit(t, storetest.Spec{NewLabels: 10, RecordSize: recordSize})
		s.Close()
	}
	files, _ := filepath.Glob(filepath.Join(dir, pattern))
	// Flip one bit inside the version-1 record of every 10th label of the
	// first epochs: find its bytes in the files (nothing is compressed)
	// and flip a bit in the middle of it.
	flipped := 0
	for i, l := range m.Labels()[:1200] {
		if i%10 != 0 {
			continue
		}
		vs, _ := m.Values(l)
		needle := vs[0][8:40] // random bytes of the record
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			at := bytes.Index(b, needle)
			if at < 0 {
				continue
			}
			b[at+recordSize/2] ^= 0x04
			flipped++
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if flipped == 0 {
		t.Fatalf("no record found in %s", pattern)
	}
	s, err := Open(context.Background(), Options{Dir: dir, MemTableSize: testMemTable, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("Open after corruption: %v", err)
	}
	defer s.Close()
	ctx := context.Background()
	var ok, latestErr, absent, valuesErr, wrong int
	var sample error
	for _, l := range m.Labels() {
		want, _ := m.Values(l)
		v, err := s.LatestVersion(ctx, l)
		if err != nil {
			latestErr++
			sample = err
			continue
		}
		if v == 0 {
			absent++ // not bytes, but not an error either
			continue
		}
		got, err := s.Values(ctx, l, 1, v)
		if err != nil {
			valuesErr++
			sample = err
			continue
		}
		for i := range got {
			if i >= len(want) || !bytes.Equal(got[i], want[i]) {
				wrong++
			}
		}
		ok++
	}
	verr := s.Verify(ctx)
	t.Logf("%d records damaged: labels read fine %d; LatestVersion errors %d, reported absent %d, Values errors %d; wrong bytes %d; Verify: %v",
		flipped, ok, latestErr, absent, valuesErr, wrong, verr)
	if sample != nil {
		t.Logf("sample error: %v", sample)
	}
	if wrong != 0 {
		t.Fatalf("%d records returned with wrong bytes", wrong)
	}
	if latestErr+absent+valuesErr == 0 {
		t.Fatal("no read noticed the corruption")
	}
	if onlyHit && latestErr+valuesErr+absent != flipped {
		t.Fatalf("%d reads failed for %d damaged records", latestErr+valuesErr+absent, flipped)
	}
	if !absentOK && absent != 0 {
		t.Fatalf("%d damaged records read as absent", absent)
	}
	if absentOK && !errors.Is(verr, store.ErrCorrupt) {
		t.Fatalf("Verify after table corruption = %v, want ErrCorrupt", verr)
	}
	if sample != nil && !errors.Is(sample, store.ErrCorrupt) {
		t.Fatalf("read error %v does not match ErrCorrupt", sample)
	}
}

// TestHeadCheckpointGarbage: each head checkpoint update deletes the one
// before, and a commit deletes those of earlier heads; updates stay out
// of the value log (fragments below the value threshold).
func TestHeadCheckpointGarbage(t *testing.T) {
	s := openTest(t, t.TempDir(), 0)
	defer s.Close()
	m := storetest.NewModel(t, s, 7)
	m.MustCommit(t, storetest.Spec{NewLabels: 3})
	m.MustUpdateHeadCheckpoint(t, 5000)
	n := countPrefix(t, s, []byte{prefixCheckpoint})
	if n < 5 {
		t.Fatalf("%d checkpoint fragments for 5,000 bytes", n)
	}
	m.MustUpdateHeadCheckpoint(t, 100)
	if n := countPrefix(t, s, []byte{prefixCheckpoint}); n != 1 {
		t.Fatalf("%d checkpoint keys after a second update, want 1", n)
	}
	m.MustCommit(t, storetest.Spec{Updates: 1})
	if n := countPrefix(t, s, []byte{prefixCheckpoint}); n != 0 {
		t.Fatalf("%d checkpoint keys after the next commit, want 0", n)
	}
	m.Check(t, true)
}

// TestTransitionCheckpointGarbage: a transition epoch keeps its latest
// checkpoint update once the head moves on, and only that one; later
// heads' updates are deleted as usual.
func TestTransitionCheckpointGarbage(t *testing.T) {
	s := openTest(t, t.TempDir(), 0)
	defer s.Close()
	m := storetest.NewModel(t, s, 8)
	m.MustCommit(t, storetest.Spec{NewLabels: 3, Transition: true})
	m.MustUpdateHeadCheckpoint(t, 2000) // two fragments
	m.MustUpdateHeadCheckpoint(t, 100)
	m.MustUpdateHeadCheckpoint(t, 200)
	if n := countPrefix(t, s, []byte{prefixCheckpoint}); n != 1 {
		t.Fatalf("%d checkpoint keys after three updates, want 1", n)
	}
	m.MustCommit(t, storetest.Spec{Updates: 1})
	m.MustUpdateHeadCheckpoint(t, 100)
	m.MustUpdateHeadCheckpoint(t, 100)
	if n := countPrefix(t, s, []byte{prefixCheckpoint}); n != 2 {
		t.Fatalf("%d checkpoint keys, want the transition's and the head's", n)
	}
	m.MustCommit(t, storetest.Spec{Updates: 1})
	if n := countPrefix(t, s, []byte{prefixCheckpoint}); n != 1 {
		t.Fatalf("%d checkpoint keys after the next commit, want the transition's", n)
	}
	if n := countPrefix(t, s, []byte{prefixTransition}); n != 1 {
		t.Fatalf("%d transition keys, want 1", n)
	}
	m.Check(t, true)
}

// TestTenantRecordGarbage: a commit deletes the older versions of the
// tenant records it writes, keeps one small version for a deleted record,
// and leaves the other records alone.
func TestTenantRecordGarbage(t *testing.T) {
	s := openTest(t, t.TempDir(), 0)
	defer s.Close()
	m := storetest.NewModel(t, s, 9)
	id := [16]byte{1}
	a, b, c := store.TenantKey{1, 1}, store.TenantKey{1, 2}, store.TenantKey{1, 3}
	big := make([]byte, 2*tenantFragSize+100) // 3 fragments
	commit := func(recs ...store.TenantRecord) {
		t.Helper()
		commitRecords(t, m, id, recs...)
	}
	commit(store.TenantRecord{Key: a, Value: big}, store.TenantRecord{Key: b, Value: []byte("b")}, store.TenantRecord{Key: c, Value: []byte("c")})
	if n := countPrefix(t, s, tenantPrefix(id)); n != 5 {
		t.Fatalf("%d tenant keys, want 3 + 1 + 1", n)
	}
	commit(store.TenantRecord{Key: a, Value: []byte("a2")})
	commit(store.TenantRecord{Key: a, Value: []byte("a3")}, store.TenantRecord{Key: c})
	if n := countPrefix(t, s, tenantPrefix(id)); n != 3 {
		t.Fatalf("%d tenant keys, want a3, b and c's deletion", n)
	}
	m.Check(t, true)
}

// TestTenantRecordGarbageAfterCrash: the cleanup of a commit runs after
// CommitEpoch returns; if it never runs (a crash), the superseded
// versions stay invisible, the reopened store reads the records as
// committed, and the next rewrite of each record deletes them (a record
// not rewritten since Open is looked for with a seek).
func TestTenantRecordGarbageAfterCrash(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, 0)
	m := storetest.NewModel(t, s, 11)
	id := [16]byte{1}
	a, b, c := store.TenantKey{1, 1}, store.TenantKey{1, 2}, store.TenantKey{1, 3}
	big := make([]byte, 2*tenantFragSize+100) // 3 fragments
	commit := func(recs ...store.TenantRecord) {
		t.Helper()
		commitRecords(t, m, id, recs...)
	}
	want := func(n int, what string) {
		t.Helper()
		if got := countPrefix(t, s, tenantPrefix(id)); got != n {
			t.Fatalf("%d tenant keys, want %d: %s", got, n, what)
		}
		m.Check(t, true)
	}
	commit(store.TenantRecord{Key: a, Value: big}, store.TenantRecord{Key: b, Value: []byte("b")}, store.TenantRecord{Key: c, Value: []byte("c")})
	commit(store.TenantRecord{Key: a, Value: []byte("a2")}, store.TenantRecord{Key: b, Value: []byte("b2")})
	want(3, "a2, b2, c")

	s.commitMu.Lock()
	s.testDropCleanup = true
	s.commitMu.Unlock()
	commit(store.TenantRecord{Key: a, Value: big}, store.TenantRecord{Key: c})
	want(3+3+1, "a2, a3 (3 fragments), b2, c and its deletion: the cleanup was dropped")
	s.Close()

	s = openTest(t, dir, 0)
	defer s.Close()
	m.S = s
	m.Reset(t)
	want(7, "the same after a reopen")
	commit(store.TenantRecord{Key: a, Value: []byte("a4")}, store.TenantRecord{Key: b, Value: []byte("b3")})
	want(4, "a4, b3, c and its deletion: a and b sought")
	commit(store.TenantRecord{Key: c, Value: []byte("c2")})
	want(3, "a4, b3, c2")
	commit(store.TenantRecord{Key: a, Value: big}, store.TenantRecord{Key: c})
	want(3+1+1, "a5 (3 fragments), b3, c's deletion: by key")
	commit(store.TenantRecord{Key: a, Value: []byte("a6")}, store.TenantRecord{Key: c, Value: []byte("c3")})
	want(3, "a6, b3, c3")
}

// TestTenantRecordGarbageRandom commits random rewrites and deletions of
// tenant records, with reopens and dropped cleanups (crashes) between
// them, and checks after each that the records read back as committed
// and, once the queued cleanups ran, that only the latest version of each
// record is stored, or the one a reopen or dropped cleanup left until the
// record is rewritten.
func TestTenantRecordGarbageRandom(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, 0)
	m := storetest.NewModel(t, s, 12)
	ctx := context.Background()
	// frags holds, per tenant and record, the fragment counts of its
	// stored versions: the latest, and those a dropped cleanup left.
	frags := map[[16]byte]map[store.TenantKey][]uint32{}
	for e := range 24 {
		dropped := e%7 == 3
		if dropped {
			s.commitMu.Lock()
			s.testDropCleanup = true
			s.commitMu.Unlock()
		}
		sp := storetest.Spec{Tenants: 2, TenantRecords: 6, TenantDeletes: 1 + e%3, TenantSize: 10 + (e*97)%700}
		ec := m.Build(t, sp)
		if err := m.Commit(t, ctx, ec); err != nil {
			t.Fatal(err)
		}
		for _, tw := range ec.Tenants {
			f := frags[tw.ID]
			if f == nil {
				f = map[store.TenantKey][]uint32{}
				frags[tw.ID] = f
			}
			for _, r := range tw.Records {
				n := fragCount(len(r.Value), tenantFragSize)
				if dropped {
					f[r.Key] = append(f[r.Key], n)
				} else {
					f[r.Key] = []uint32{n}
				}
			}
		}
		for id, f := range frags {
			want := 0
			for _, ns := range f {
				for _, n := range ns {
					want += int(n)
				}
			}
			if got := countPrefix(t, s, tenantPrefix(id)); got != want {
				t.Fatalf("epoch %d tenant %x: %d keys, want %d", ec.Epoch, id[0], got, want)
			}
		}
		m.Check(t, false)
		if dropped || e%5 == 4 {
			s.Close()
			s = openTest(t, dir, 0)
			m.S = s
			m.Reset(t)
			m.Check(t, false)
		}
	}
	m.Check(t, true)
	s.Close()
}

// TestTenantRecordHashCollisions: with every record sharing one entry of
// the store's latest versions (as colliding hashes would), the cleanup
// deletes versions that are not the latest of the record it names, or
// none, but never a live version: the records read back as committed
// after every epoch and after a reopen.
func TestTenantRecordHashCollisions(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, 0)
	s.testCollide = true
	m := storetest.NewModel(t, s, 13)
	for e := range 16 {
		m.MustCommit(t, storetest.Spec{Tenants: 2, TenantRecords: 5, TenantDeletes: e % 3, TenantSize: 10 + (e*131)%600})
		s.WaitCleanup()
		m.Check(t, false)
	}
	s.Close()
	s = openTest(t, dir, 0)
	defer s.Close()
	m.S = s
	m.Reset(t)
	m.Check(t, true)
}

// TestOldSchemaRefused: a directory of an earlier schema (3: hints
// written inside the commit; 2: tenant state stored whole; 1: one key per
// map node) is refused with ErrOldSchema, and left as it was.
func TestOldSchemaRefused(t *testing.T) {
	for _, n := range []int{3, 2, 1} {
		dir := t.TempDir()
		db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
		if err != nil {
			t.Fatal(err)
		}
		old := []byte(fmt.Sprintf("moat keyserver directory store, badger schema %d", n))
		if err := db.Update(func(txn *badger.Txn) error { return txn.Set(keyMeta, old) }); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if _, err := Open(context.Background(), Options{Dir: dir, Logger: quietLogger()}); !errors.Is(err, ErrOldSchema) {
			t.Fatalf("Open of a schema %d directory = %v, want ErrOldSchema", n, err)
		}
		db, err = badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
		if err != nil {
			t.Fatal(err)
		}
		if err := db.View(func(txn *badger.Txn) error {
			item, err := txn.Get(keyMeta)
			if err != nil {
				return err
			}
			v, err := item.ValueCopy(nil)
			if err == nil && string(v) != string(old) {
				err = fmt.Errorf("schema now %q", v)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		db.Close()
	}
}

// TestStaleVersionHint: a latest-version hint that names a version not
// stored, an older version, or a version of an epoch past the head (as a
// rolled-back commit or a skipped table block can leave) is not trusted:
// LatestSummary returns the stored latest version, without a summary.
func TestStaleVersionHint(t *testing.T) {
	s := openTest(t, t.TempDir(), 0)
	defer s.Close()
	ctx := context.Background()
	m := storetest.NewModel(t, s, 10)
	m.MustCommit(t, storetest.Spec{NewLabels: 3})
	m.MustCommit(t, storetest.Spec{Updates: 3, Versions: 2})
	s.WaitCleanup() // the stored hints, written by the cleanup (gc.go)
	l := m.Labels()[0]
	vs, _ := m.Values(l)
	want := uint32(len(vs))
	if v, sum, err := s.LatestSummary(ctx, l); err != nil || v != want || sum == nil {
		t.Fatalf("LatestSummary = %d, %x, %v; want %d with a summary", v, sum, err, want)
	}
	head := m.Head().Epoch
	for _, h := range []struct {
		version uint32
		epoch   uint64
	}{{want + 1, head}, {want - 1, head}, {want, head + 1}, {0, head}} {
		hint := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(nil, h.version), h.epoch)
		hint = append(hint, "stale"...)
		if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(appendHintKey(nil, l), hint) }); err != nil {
			t.Fatal(err)
		}
		v, sum, err := s.LatestSummary(ctx, l)
		if err != nil || v != want || sum != nil {
			t.Fatalf("hint (%d, %d): LatestSummary = %d, %q, %v; want %d without a summary", h.version, h.epoch, v, sum, err, want)
		}
	}
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(appendHintKey(nil, l), []byte{1}) }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.LatestSummary(ctx, l); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("malformed hint: %v, want ErrCorrupt", err)
	}
}

// storedHint returns the version of label's stored latest-version hint,
// 0 if it has none.
func storedHint(t *testing.T, s *Store, label vmap.Label) uint32 {
	t.Helper()
	var v uint32
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(appendHintKey(nil, label))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) error { v = binary.BigEndian.Uint32(b); return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestHintsAfterCommit: an epoch's latest-version hints are not part of
// its commit; the cleanup after it writes them (gc.go). Until then
// LatestSummary answers from the hints held in memory; if the cleanup is
// lost (a crash), the labels' stored hints are stale, and LatestSummary
// and LatestValue still find the latest version, also after a reopen;
// the next cleanup that writes a label's hint makes it usable again.
func TestHintsAfterCommit(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, 0)
	ctx := context.Background()
	// No cleanup goroutine: one started by a commit could run after the
	// flags below are set and drop the next epoch's pending hints.
	s.commitMu.Lock()
	s.testManualCleanup = true
	s.commitMu.Unlock()
	m := storetest.NewModel(t, s, 13)
	m.MustCommit(t, storetest.Spec{NewLabels: 1})
	s.WaitCleanup()
	l := m.Labels()[0]
	if got := storedHint(t, s, l); got != 1 {
		t.Fatalf("stored hint after the cleanup names version %d, want 1", got)
	}

	// The commit does not write the hint; the cleanup does.
	s.commitMu.Lock()
	s.testDropCleanup = true
	s.commitMu.Unlock()
	m.MustCommit(t, storetest.Spec{Updates: 1})
	if got := storedHint(t, s, l); got != 1 {
		t.Fatalf("stored hint right after the commit names version %d, want 1 (the cleanup writes it)", got)
	}
	m.Check(t, true) // LatestSummary with the summary, from memory

	// The cleanup is lost: the stored hint stays stale.
	s.WaitCleanup()
	if got := storedHint(t, s, l); got != 1 {
		t.Fatalf("stored hint after a dropped cleanup names version %d, want 1", got)
	}
	check := func(what string) {
		t.Helper()
		v, sum, err := s.LatestSummary(ctx, l)
		if err != nil || v != 2 || sum != nil {
			t.Fatalf("%s: LatestSummary = %d, %x, %v; want 2 without a summary", what, v, sum, err)
		}
		vs, _ := m.Values(l)
		lv, rec, err := s.LatestValue(ctx, l)
		if err != nil || lv != 2 || !bytes.Equal(rec, vs[1]) {
			t.Fatalf("%s: LatestValue = %d, %d bytes, %v; want version 2", what, lv, len(rec), err)
		}
	}
	check("hint lost")
	s.Close()
	s = openTest(t, dir, 0)
	defer s.Close()
	m.S = s
	m.Reset(t)
	check("hint lost, after a reopen")
	m.Check(t, true)

	// The next epoch's cleanup writes the label's hint again.
	m.MustCommit(t, storetest.Spec{Updates: 1})
	s.WaitCleanup()
	if got := storedHint(t, s, l); got != 3 {
		t.Fatalf("stored hint after the next cleanup names version %d, want 3", got)
	}
	vs, _ := m.Values(l)
	if v, sum, err := s.LatestSummary(ctx, l); err != nil || v != 3 || sum == nil || len(vs) != 3 {
		t.Fatalf("LatestSummary = %d, %x, %v; want 3 with a summary", v, sum, err)
	}
}

// TestVersionChecksKnownLabels: a commit checks a label's first version
// written against the versions this store committed since Open
// (Store.labels) without reading, and reads where it does not know them
// (after a reopen, or once the map was cleared): either way a version
// already stored, or one past the next, is ErrConflict and writes
// nothing, and a commit refused late does not count as committed.
func TestVersionChecksKnownLabels(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, 0)
	ctx := context.Background()
	m := storetest.NewModel(t, s, 14)
	m.MustCommit(t, storetest.Spec{NewLabels: 3})
	m.MustCommit(t, storetest.Spec{Updates: 3})
	l := m.Labels()[0]
	try := func(what string, version uint32, want error) {
		t.Helper()
		c := m.Build(t, storetest.Spec{})
		rec := []byte("r")
		sum := sha256.Sum256(rec) // the model's summary of a record
		c.Values = append(c.Values, store.ValueWrite{Label: l, Version: version, Record: rec, Summary: sum[:20]})
		if err := m.Commit(t, ctx, c); !errors.Is(err, want) {
			t.Fatalf("%s: version %d: CommitEpoch = %v, want %v", what, version, err, want)
		}
		m.Check(t, false)
	}
	s.commitMu.Lock()
	known := s.labels[l]
	s.commitMu.Unlock()
	if known != 2 {
		t.Fatalf("Store.labels holds version %d of the label, want 2", known)
	}
	try("known", 2, store.ErrConflict)
	try("known", 4, store.ErrConflict)
	// Refused late (a log node rewritten with another hash): not
	// committed, so version 3 is still the next.
	c := m.Build(t, storetest.Spec{})
	c.Values = append(c.Values, store.ValueWrite{Label: l, Version: 3, Record: []byte("r")})
	c.LogNodes = append(c.LogNodes, tlog.Node{ID: tlog.NodeID{Level: 0, Index: 0}, Hash: tlog.Hash{0xff}})
	if err := m.Commit(t, ctx, c); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("log node rewritten: CommitEpoch = %v, want ErrConflict", err)
	}
	s.commitMu.Lock()
	known = s.labels[l]
	s.commitMu.Unlock()
	if known != 2 {
		t.Fatalf("after a refused commit Store.labels holds version %d, want 2", known)
	}
	m.Reset(t)
	try("known", 3, nil)

	s.Close()
	s = openTest(t, dir, 0)
	defer s.Close()
	m.S = s
	m.Reset(t)
	try("read after a reopen", 3, store.ErrConflict)
	try("read after a reopen", 5, store.ErrConflict)
	try("read after a reopen", 4, nil)
}
