package localstore

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/moat-im/moat/internal/faultfs"
)

var testArgon2 = Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1}

const testPass = "correct horse battery staple"

func testOptions() Options {
	return Options{Passphrase: []byte(testPass), Argon2: testArgon2, MemTableSize: 8 << 20}
}

func openTest(t testing.TB, dir string, opts Options) *DB {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func put(t testing.TB, s Store, scope Scope, kind string, id, value string) {
	t.Helper()
	if err := s.Update(func(tx Tx) error { return tx.Put(scope, kind, []byte(id), []byte(value)) }); err != nil {
		t.Fatalf("Put: %v", err)
	}
}

func get(t testing.TB, s Store, scope Scope, kind, id string) ([]byte, error) {
	t.Helper()
	var v []byte
	err := s.View(func(tx Tx) error {
		var err error
		v, err = tx.Get(scope, kind, []byte(id))
		return err
	})
	return v, err
}

// keyOf returns the badger key of a record.
func keyOf(t *testing.T, s *DB, scope Scope, kind, id string) []byte {
	t.Helper()
	var k []byte
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		k, err = (&tx{s: s, txn: txn}).recordKey(scope, kind, []byte(id))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// rawValue reads the stored (sealed) value of a record from badger.
func rawValue(t *testing.T, s *DB, scope Scope, kind, id string) []byte {
	t.Helper()
	var v []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(keyOf(t, s, scope, kind, id))
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		t.Fatalf("raw value of %q/%q/%q: %v", scope, kind, id, err)
	}
	return v
}

// copyDir copies every file under src to dst, as an attacker copying the
// disk (or a crash, which leaves what the page cache holds) would.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	if err != nil {
		t.Fatalf("copying %s: %v", src, err)
	}
}

// inFiles reports whether any file under dir contains needle.
func inFiles(t *testing.T, dir string, needle []byte) bool {
	t.Helper()
	found := false
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, needle) {
			found = true
		}
		return nil
	})
	return found
}

// attackerKeys is what an attacker holding a copy of the files and the
// passphrase recovers: every record key in the key table that
// authenticates.
func attackerKeys(t *testing.T, dir, pass string) []recordKey {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, keyTableName))
	if err != nil {
		t.Fatal(err)
	}
	h, err := parseHeader(b[:headerSize])
	if err != nil {
		t.Fatal(err)
	}
	w, err := deriveWrappingKey(h, &Options{Passphrase: []byte(pass)})
	if err != nil {
		t.Fatal(err)
	}
	var tk tableKey
	if _, err := newAEAD(w[:]).Open(tk[:0], h.wrapped[:nonceSize], h.wrapped[nonceSize:], wrapAD(b[:headerSize])); err != nil {
		return nil // the table key is gone: nothing opens
	}
	slotKey, _ := hkdf.Key(sha256.New, tk[:], nil, labelSlotKey, keySize)
	aead := newAEAD(slotKey)
	var keys []recordKey
	for i := uint32(0); slotOffset(i+1) <= int64(len(b)); i++ {
		s := b[slotOffset(i):slotOffset(i+1)]
		var k recordKey
		if _, err := aead.Open(k[:0], s[:nonceSize], s[nonceSize:], slotAD(i)); err == nil {
			keys = append(keys, k)
		}
	}
	return keys
}

// canDecrypt reports whether any of keys opens the raw record value v of
// (scope, kind, id), whatever slot AD it names.
func canDecrypt(keys []recordKey, scope Scope, kind, id string, v []byte) bool {
	r, err := parseRecordValue(v)
	if err != nil {
		panic(err)
	}
	for _, k := range keys {
		if _, err := newAEAD(k[:]).Open(nil, r.nonce, r.sealed, recordAD(scope, kind, []byte(id), r.slot)); err == nil {
			return true
		}
	}
	return false
}

// TestDeleteErases: after Delete, DeleteScope and a replacing Put, the
// old sealed values still lie in badger's files, yet an attacker with a
// copy of every file and the passphrase opens none of them; records not
// deleted open (so the attack works).
func TestDeleteErases(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, testOptions())
	defer s.Close()
	put(t, s, "", "contact", "alice", "alice's profile")
	put(t, s, "", "contact", "bob", "bob's profile")
	put(t, s, "conv", "msg", "m1", "first message")
	put(t, s, "conv", "msg", "m2", "second message")
	put(t, s, "conv", "msg", "m3", "third message")
	put(t, s, "doomed", "msg", "d1", "doomed message")
	put(t, s, "doomed", "meta", "d", "doomed meta")
	put(t, s, "", "note", "n", "version 1")

	type rec struct {
		scope    Scope
		kind, id string
		raw      []byte
		deleted  bool
	}
	recs := []*rec{
		{scope: "", kind: "contact", id: "alice", deleted: true},
		{scope: "", kind: "contact", id: "bob"},
		{scope: "conv", kind: "msg", id: "m1"},
		{scope: "conv", kind: "msg", id: "m2", deleted: true}, // delete-for-everyone
		{scope: "conv", kind: "msg", id: "m3"},
		{scope: "doomed", kind: "msg", id: "d1", deleted: true},
		{scope: "doomed", kind: "meta", id: "d", deleted: true},
		{scope: "", kind: "note", id: "n", deleted: true}, // replaced below
	}
	for _, r := range recs {
		r.raw = rawValue(t, s, r.scope, r.kind, r.id)
	}
	err := s.Update(func(tx Tx) error {
		if err := tx.Delete("", "contact", []byte("alice")); err != nil {
			return err
		}
		if err := tx.Delete("conv", "msg", []byte("m2")); err != nil {
			return err
		}
		if err := tx.DeleteScope("doomed"); err != nil {
			return err
		}
		return tx.Put("", "note", []byte("n"), []byte("version 2"))
	})
	if err != nil {
		t.Fatal(err)
	}
	stolen := t.TempDir()
	copyDir(t, dir, stolen)
	keys := attackerKeys(t, stolen, testPass)
	for _, r := range recs {
		sealed := r.raw[5+nonceSize:]
		if !inFiles(t, stolen, sealed) {
			t.Errorf("%s/%s/%s: ciphertext not found in the files (the test would prove nothing)", r.scope, r.kind, r.id)
		}
		if got := canDecrypt(keys, r.scope, r.kind, r.id, r.raw); got == r.deleted {
			t.Errorf("%s/%s/%s (deleted %v): attacker decrypts: %v", r.scope, r.kind, r.id, r.deleted, got)
		}
	}
	// The same holds after Close, when badger has flushed its memtables.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	stolen = t.TempDir()
	copyDir(t, dir, stolen)
	keys = attackerKeys(t, stolen, testPass)
	for _, r := range recs {
		if got := canDecrypt(keys, r.scope, r.kind, r.id, r.raw); got == r.deleted {
			t.Errorf("after Close: %s/%s/%s (deleted %v): attacker decrypts: %v", r.scope, r.kind, r.id, r.deleted, got)
		}
	}
}

// TestWrongKey: a wrong passphrase or key file fails with ErrWrongKey and
// leaves every file byte-identical.
func TestWrongKey(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, testOptions())
	put(t, s, "c", "m", "id", "secret value")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := CreateKeyFile(keyFile); err != nil {
		t.Fatal(err)
	}
	for name, opts := range map[string]Options{
		"passphrase":       {Passphrase: []byte("wrong horse"), Argon2: testArgon2},
		"prefix":           {Passphrase: []byte(testPass[:len(testPass)-1]), Argon2: testArgon2},
		"key file instead": {KeyFile: keyFile},
	} {
		_, err := Open(dir, opts)
		if !errors.Is(err, ErrWrongKey) {
			t.Fatalf("%s: Open: %v, want ErrWrongKey", name, err)
		}
		if strings.Contains(err.Error(), "horse") {
			t.Fatalf("%s: error reveals the passphrase: %v", name, err)
		}
		if after := snapshot(t, dir); !equalSnapshots(before, after) {
			t.Fatalf("%s: a failed Open changed the files", name)
		}
	}
	s = openTest(t, dir, testOptions())
	defer s.Close()
	if v, err := get(t, s, "c", "m", "id"); err != nil || string(v) != "secret value" {
		t.Fatalf("after wrong keys: Get = %q, %v", v, err)
	}
}

func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		m[path] = b
		return nil
	})
	return m
}

func equalSnapshots(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := CreateKeyFile(keyFile); err != nil {
		t.Fatal(err)
	}
	if err := CreateKeyFile(keyFile); err == nil {
		t.Fatal("CreateKeyFile overwrote an existing file")
	}
	st, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 || st.Size() != keySize {
		t.Fatalf("key file mode %v size %d, want 0600 and %d", st.Mode().Perm(), st.Size(), keySize)
	}
	s := openTest(t, dir, Options{KeyFile: keyFile})
	put(t, s, "", "k", "id", "v")
	s.Close()
	other := filepath.Join(t.TempDir(), "other")
	if err := CreateKeyFile(other); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(t.TempDir(), "short")
	os.WriteFile(short, make([]byte, keySize-1), 0o600)
	long := filepath.Join(t.TempDir(), "long")
	os.WriteFile(long, make([]byte, keySize+1), 0o600)
	for _, opts := range []Options{{KeyFile: other}, {KeyFile: short}, {KeyFile: long}, {Passphrase: []byte(testPass)}} {
		if _, err := Open(dir, opts); !errors.Is(err, ErrWrongKey) {
			t.Fatalf("Open(%+v): %v, want ErrWrongKey", opts.KeyFile, err)
		}
	}
	s = openTest(t, dir, Options{KeyFile: keyFile})
	defer s.Close()
	if v, err := get(t, s, "", "k", "id"); err != nil || string(v) != "v" {
		t.Fatalf("Get = %q, %v", v, err)
	}
}

func TestOpenOptions(t *testing.T) {
	for _, opts := range []Options{
		{},
		{Passphrase: []byte("p"), KeyFile: "k"},
		{Passphrase: []byte("p"), Argon2: Argon2Params{Time: 0, MemoryKiB: 64, Threads: 1}},
		{Passphrase: []byte("p"), Argon2: Argon2Params{Time: 1, MemoryKiB: 4, Threads: 1}},
	} {
		if _, err := Open(t.TempDir(), opts); !errors.Is(err, ErrInvalid) {
			t.Fatalf("Open(%+v): %v, want ErrInvalid", opts.Argon2, err)
		}
	}
	// A records directory without a key table is refused, not overwritten.
	dir := t.TempDir()
	s := openTest(t, dir, testOptions())
	put(t, s, "", "k", "id", "v")
	s.Close()
	os.Remove(filepath.Join(dir, keyTableName))
	if _, err := Open(dir, testOptions()); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open without key table: %v, want ErrCorrupt", err)
	}
}

// TestTamper: altered records, swapped records and altered key slots fail
// with ErrCorrupt; an altered header fails with ErrWrongKey or ErrCorrupt.
func TestTamper(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, testOptions())
	put(t, s, "c", "m", "a", "value a")
	put(t, s, "c", "m", "b", "value b")
	put(t, s, "d", "m", "a", "value d")
	rawA := rawValue(t, s, "c", "m", "a")
	rawB := rawValue(t, s, "c", "m", "b")
	set := func(scope Scope, id string, v []byte) {
		t.Helper()
		if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(keyOf(t, s, scope, "m", id), v) }); err != nil {
			t.Fatal(err)
		}
	}
	wantCorrupt := func(what string, scope Scope, id string) {
		t.Helper()
		if _, err := get(t, s, scope, "m", id); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: Get: %v, want ErrCorrupt", what, err)
		}
		err := s.View(func(tx Tx) error { return tx.List(scope, "m", func(_, _ []byte) error { return nil }) })
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: List: %v, want ErrCorrupt", what, err)
		}
	}
	for i := range rawA {
		mod := bytes.Clone(rawA)
		mod[i] ^= 0x01
		set("c", "a", mod)
		wantCorrupt(fmt.Sprintf("bit flip at %d", i), "c", "a")
	}
	set("c", "a", rawA[:len(rawA)-1])
	wantCorrupt("truncated", "c", "a")
	set("c", "a", rawB) // b's value under a's name
	wantCorrupt("swapped id", "c", "a")
	set("c", "a", rawA)
	set("d", "a", rawA) // c/m/a under d/m/a
	wantCorrupt("swapped scope", "d", "a")
	set("d", "a", rawB)
	set("c", "a", rawA)
	if v, err := get(t, s, "c", "m", "a"); err != nil || string(v) != "value a" {
		t.Fatalf("restored: Get = %q, %v", v, err)
	}
	// A key slot altered on disk.
	r, _ := parseRecordValue(rawA)
	off := slotOffset(r.slot) + nonceSize + 3
	var b [1]byte
	s.kt.f.ReadAt(b[:], off)
	s.kt.f.WriteAt([]byte{b[0] ^ 0x80}, off)
	wantCorrupt("slot bit flip", "c", "a")
	s.kt.f.WriteAt(b[:], off)
	// Slots of a and b swapped.
	rb, _ := parseRecordValue(rawB)
	sa := make([]byte, slotSize)
	sb := make([]byte, slotSize)
	s.kt.f.ReadAt(sa, slotOffset(r.slot))
	s.kt.f.ReadAt(sb, slotOffset(rb.slot))
	s.kt.f.WriteAt(sb, slotOffset(r.slot))
	s.kt.f.WriteAt(sa, slotOffset(rb.slot))
	wantCorrupt("slots swapped", "c", "a")
	s.kt.f.WriteAt(sa, slotOffset(r.slot))
	s.kt.f.WriteAt(sb, slotOffset(rb.slot))
	if v, err := get(t, s, "c", "m", "a"); err != nil || string(v) != "value a" {
		t.Fatalf("restored: Get = %q, %v", v, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The header: any altered byte before the state byte fails Open
	// with ErrWrongKey (covered by the wrapping AD) or ErrCorrupt
	// (strict parsing), and changes nothing.
	path := filepath.Join(dir, keyTableName)
	orig, _ := os.ReadFile(path)
	for i := range headerSize {
		if i == offState {
			continue
		}
		mod := bytes.Clone(orig)
		mod[i] ^= 0x01
		os.WriteFile(path, mod, 0o600)
		_, err := Open(dir, testOptions())
		if !errors.Is(err, ErrWrongKey) && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("header byte %d flipped: Open: %v, want ErrWrongKey or ErrCorrupt", i, err)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, mod) {
			t.Fatalf("header byte %d flipped: Open changed the key table", i)
		}
	}
	mod := bytes.Clone(orig)
	mod[offState] = 7
	os.WriteFile(path, mod, 0o600)
	if _, err := Open(dir, testOptions()); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("unknown state: %v, want ErrCorrupt", err)
	}
	os.WriteFile(path, append(bytes.Clone(orig), 1, 2, 3), 0o600)
	if _, err := Open(dir, testOptions()); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("partial slot in a closed table: %v, want ErrCorrupt", err)
	}
	os.WriteFile(path, orig, 0o600)
	s = openTest(t, dir, testOptions())
	defer s.Close()
	if v, err := get(t, s, "c", "m", "b"); err != nil || string(v) != "value b" {
		t.Fatalf("restored: Get = %q, %v", v, err)
	}
}

// TestWipe: Wipe removes the store's files; the directory can hold a new,
// empty store afterwards.
func TestWipe(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "store")
	s := openTest(t, dir, testOptions())
	put(t, s, "c", "m", "a", "value")
	kt := s.kt.f.Name()
	f, err := os.Open(kt) // an attacker holding the file open sees its last contents
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := s.Wipe(); err != nil {
		t.Fatalf("Wipe: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("after Wipe: Stat(dir): %v, want not exist", err)
	}
	// The unlinked key table was overwritten before removal: its wrapped
	// table key and slots are zero.
	b := make([]byte, headerSize+slotSize)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[offWrapped:offWrapped+wrappedSize], make([]byte, wrappedSize)) || !bytes.Equal(b[headerSize:], make([]byte, slotSize)) {
		t.Fatal("Wipe left the wrapped table key or a slot in the key table")
	}
	s = openTest(t, dir, testOptions())
	defer s.Close()
	if _, err := get(t, s, "c", "m", "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("new store after Wipe: %v, want ErrNotFound", err)
	}
}

// TestReopen: records survive Close and Open; freed slots are reused, so
// the key table stays bounded by the live records.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, testOptions())
	for i := range 100 {
		put(t, s, Scope(fmt.Sprint("c", i%3)), "m", fmt.Sprint(i), fmt.Sprint("v", i))
	}
	err := s.Update(func(tx Tx) error {
		for i := 0; i < 100; i += 2 {
			if err := tx.Delete(Scope(fmt.Sprint("c", i%3)), "m", []byte(fmt.Sprint(i))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir, testOptions())
	for i := range 100 {
		v, err := get(t, s, Scope(fmt.Sprint("c", i%3)), "m", fmt.Sprint(i))
		if i%2 == 0 {
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("deleted record %d: %q, %v", i, v, err)
			}
		} else if err != nil || string(v) != fmt.Sprint("v", i) {
			t.Fatalf("record %d: %q, %v", i, v, err)
		}
	}
	for i := 100; i < 150; i++ {
		put(t, s, "new", "m", fmt.Sprint(i), "v")
	}
	if s.kt.nslots != 100 {
		t.Fatalf("key table holds %d slots for 100 records, want 100", s.kt.nslots)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(filepath.Join(dir, keyTableName))
	if st.Size() != slotOffset(100) {
		t.Fatalf("key table of %d bytes, want %d", st.Size(), slotOffset(100))
	}
}

// crashAt runs update on a store whose Update "crashes" at point: the
// files are copied there, as a crashed process leaves them, and the copy
// is returned.
func crashAt(t *testing.T, dir, point string, update func(Tx) error) string {
	t.Helper()
	crashed := t.TempDir()
	opts := testOptions()
	crash := errors.New("crash")
	opts.hook = func(p string) error {
		if p != point {
			return nil
		}
		copyDir(t, dir, crashed)
		return crash
	}
	s := openTest(t, dir, opts)
	defer s.Close()
	if err := s.Update(update); !errors.Is(err, crash) {
		t.Fatalf("Update: %v, want the crash", err)
	}
	if err := s.Update(func(Tx) error { return nil }); err == nil {
		t.Fatal("Update after a crash point succeeded")
	}
	return crashed
}

// TestCrashRecovery: a crash between writing keys and committing leaves
// orphan keys that recovery erases; a crash between committing and erasing
// leaves the keys of deleted records, which recovery erases too; no
// acknowledged record is lost.
func TestCrashRecovery(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, testOptions())
	put(t, s, "c", "m", "kept", "kept")
	put(t, s, "c", "m", "doomed", "doomed")
	doomed := rawValue(t, s, "c", "m", "doomed")
	s.Close()

	// Crash after the new keys are synced, before the records commit.
	crashed := crashAt(t, dir, "keys-written", func(tx Tx) error {
		if err := tx.Put("c", "m", []byte("new1"), []byte("n")); err != nil {
			return err
		}
		return tx.Put("c", "m", []byte("new2"), []byte("n"))
	})
	r := openTest(t, crashed, testOptions())
	if r.recovery != 2 {
		t.Fatalf("recovery erased %d orphan keys, want 2", r.recovery)
	}
	if _, err := get(t, r, "c", "m", "new1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("uncommitted record: %v, want ErrNotFound", err)
	}
	if v, err := get(t, r, "c", "m", "kept"); err != nil || string(v) != "kept" {
		t.Fatalf("acknowledged record: %q, %v", v, err)
	}
	r.Close()

	// Crash after the deletion commits, before its key is erased.
	crashed = crashAt(t, dir, "committed", func(tx Tx) error {
		if err := tx.Delete("c", "m", []byte("doomed")); err != nil {
			return err
		}
		return tx.Put("c", "m", []byte("added"), []byte("added"))
	})
	if keys := attackerKeys(t, crashed, testPass); !canDecrypt(keys, "c", "m", "doomed", doomed) {
		t.Fatal("before recovery the deleted record's key should still exist (the test would prove nothing)")
	}
	r = openTest(t, crashed, testOptions())
	if r.recovery != 1 {
		t.Fatalf("recovery erased %d keys, want 1", r.recovery)
	}
	if v, err := get(t, r, "c", "m", "added"); err != nil || string(v) != "added" {
		t.Fatalf("committed record: %q, %v", v, err)
	}
	if _, err := get(t, r, "c", "m", "doomed"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted record: %v, want ErrNotFound", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if keys := attackerKeys(t, crashed, testPass); canDecrypt(keys, "c", "m", "doomed", doomed) {
		t.Fatal("after recovery the deleted record still decrypts")
	}
	// The original store, whose Update "crashed", recovers too.
	s = openTest(t, dir, testOptions())
	defer s.Close()
	if v, err := get(t, s, "c", "m", "kept"); err != nil || string(v) != "kept" {
		t.Fatalf("acknowledged record: %q, %v", v, err)
	}
}

// TestT38LocalStoreDiskFull: a full disk fails an Update cleanly and the store works
// once space returns; a failing sync while erasing reports ErrNotErased,
// refuses writes, and the key is erased at the next Open.
func TestT38LocalStoreDiskFull(t *testing.T) {
	dir := t.TempDir()
	inj := faultfs.New()
	opts := testOptions()
	opts.Faults = inj
	s := openTest(t, dir, opts)
	put(t, s, "c", "m", "a", "a")
	put(t, s, "c", "m", "b", "b")
	inj.SetFull(true)
	err := s.Update(func(tx Tx) error {
		if err := tx.Put("c", "m", []byte("full"), []byte("x")); err != nil {
			return err
		}
		return tx.Delete("c", "m", []byte("a"))
	})
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Update on a full disk: %v, want ENOSPC", err)
	}
	if _, err := get(t, s, "c", "m", "full"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("record of the failed Update: %v, want ErrNotFound", err)
	}
	if v, err := get(t, s, "c", "m", "a"); err != nil || string(v) != "a" {
		t.Fatalf("record deleted by the failed Update: %q, %v", v, err)
	}
	inj.SetFull(false)
	put(t, s, "c", "m", "full", "x")
	if inj.Injected() == 0 {
		t.Fatal("no fault injected")
	}

	// Erasure fails: the deletion is committed, the key not yet erased.
	b := rawValue(t, s, "c", "m", "b")
	inj.SetFull(true)
	err = s.Update(func(tx Tx) error { return tx.Delete("c", "m", []byte("b")) })
	if !errors.Is(err, ErrNotErased) {
		t.Fatalf("Update failing to erase: %v, want ErrNotErased", err)
	}
	inj.SetFull(false)
	if err := s.Update(func(Tx) error { return nil }); err == nil {
		t.Fatal("Update after a failed erasure succeeded")
	}
	if _, err := get(t, s, "c", "m", "b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted record: %v, want ErrNotFound", err)
	}
	s.Close()
	if keys := attackerKeys(t, dir, testPass); !canDecrypt(keys, "c", "m", "b", b) {
		t.Fatal("the key should have survived the failed erasure (the test would prove nothing)")
	}
	s = openTest(t, dir, opts)
	defer s.Close()
	if s.recovery != 1 {
		t.Fatalf("recovery erased %d keys, want 1", s.recovery)
	}
	if keys := attackerKeys(t, dir, testPass); canDecrypt(keys, "c", "m", "b", b) {
		t.Fatal("deleted record decrypts after recovery")
	}
	if v, err := get(t, s, "c", "m", "full"); err != nil || string(v) != "x" {
		t.Fatalf("record after recovery: %q, %v", v, err)
	}

	// A failing sync of new keys fails the Update before anything commits.
	inj.FailSyncs(1)
	if err := s.Update(func(tx Tx) error { return tx.Put("c", "m", []byte("eio"), []byte("x")) }); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Update with a failing key sync: %v, want EIO", err)
	}
	if _, err := get(t, s, "c", "m", "eio"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("record of the failed Update: %v, want ErrNotFound", err)
	}
	put(t, s, "c", "m", "eio", "x")
}

func TestFormatRedacts(t *testing.T) {
	var rk recordKey
	var tk tableKey
	var wk wrappingKey
	for i := range rk {
		rk[i], tk[i], wk[i] = 0xab, 0xab, 0xab
	}
	ik := indexKey(bytes.Repeat([]byte{0xab}, 32))
	for _, verb := range []string{"%v", "%+v", "%#v", "%x", "%X", "%s", "%q", "%d"} {
		for _, k := range []any{rk, tk, wk, ik, &rk, &tk, &wk} {
			out := fmt.Sprintf(verb, k)
			if strings.Contains(strings.ToLower(out), "abab") || strings.Contains(out, "171") {
				t.Fatalf("Sprintf(%q, %T) = %q reveals the key", verb, k, out)
			}
		}
	}
}

// countRecords counts the record entries in badger, garbage included.
func countRecords(t *testing.T, s *DB) int {
	t.Helper()
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixRecord}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDeleteScopeLarge: DeleteScope of a scope too large for one badger
// transaction of deletions succeeds at once, erases every key, and the
// records of the old generation are removed by later Updates; a crash
// after its commit is recovered.
func TestDeleteScopeLarge(t *testing.T) {
	const n = 20000 // beyond one transaction of an 8 MiB memtable
	dir := t.TempDir()
	s := openTest(t, dir, testOptions())
	var id [4]byte
	for start := 0; start < n; start += 2000 {
		err := s.Update(func(tx Tx) error {
			for i := start; i < start+2000; i++ {
				binary.BigEndian.PutUint32(id[:], uint32(i))
				if err := tx.Put("big", "msg", id[:], []byte("m")); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	put(t, s, "other", "msg", "keep", "keep")
	sample := rawValue(t, s, "big", "msg", "\x00\x00\x00\x07")
	s.Close()

	crashed := crashAt(t, dir, "committed", func(tx Tx) error { return tx.DeleteScope("big") })
	r := openTest(t, crashed, testOptions())
	if r.recovery != n {
		t.Fatalf("recovery erased %d keys, want %d", r.recovery, n)
	}
	r.Close()
	if keys := attackerKeys(t, crashed, testPass); len(keys) != 1 {
		t.Fatalf("after recovery %d keys remain, want 1", len(keys))
	}

	s = openTest(t, dir, testOptions())
	defer s.Close()
	if err := s.Update(func(tx Tx) error { return tx.DeleteScope("big") }); err != nil {
		t.Fatalf("DeleteScope of %d records: %v", n, err)
	}
	if ids, _ := listIDs(t, s, "big", "msg"); ids != 0 {
		t.Fatalf("%d records left in the deleted scope", ids)
	}
	if keys := attackerKeys(t, dir, testPass); len(keys) != 1 || canDecrypt(keys, "big", "msg", "\x00\x00\x00\x07", sample) {
		t.Fatalf("after DeleteScope %d keys remain, want 1 (the other scope's)", len(keys))
	}
	// Garbage goes in batches with the following Updates.
	for i := 0; countRecords(t, s) > 2; i++ { // "keep" and "tick"
		if i > n/garbageBatch+2 {
			t.Fatalf("garbage not collected: %d records in badger", countRecords(t, s))
		}
		put(t, s, "other", "msg", "tick", "x")
	}
	if v, err := get(t, s, "other", "msg", "keep"); err != nil || string(v) != "keep" {
		t.Fatalf("other scope: %q, %v", v, err)
	}
	put(t, s, "big", "msg", "again", "again")
	if v, err := get(t, s, "big", "msg", "again"); err != nil || string(v) != "again" {
		t.Fatalf("scope reused: %q, %v", v, err)
	}
}

func listIDs(t *testing.T, s *DB, scope Scope, kind string) (int, error) {
	n := 0
	err := s.View(func(tx Tx) error {
		return tx.List(scope, kind, func(_, _ []byte) error { n++; return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	return n, err
}

// TestNestedIteration: List or DeleteScope inside List of an Update fails
// with ErrInvalid (badger allows one iterator per read-write transaction);
// Put and Get inside it work; in a View nesting is allowed.
func TestNestedIteration(t *testing.T) {
	s := openTest(t, t.TempDir(), testOptions())
	defer s.Close()
	put(t, s, "c", "m", "a", "a")
	put(t, s, "c", "m", "b", "b")
	err := s.Update(func(tx Tx) error {
		return tx.List("c", "m", func(id, _ []byte) error {
			if err := tx.List("c", "m", func(_, _ []byte) error { return nil }); !errors.Is(err, ErrInvalid) {
				return fmt.Errorf("nested List: %v, want ErrInvalid", err)
			}
			if err := tx.DeleteScope("c"); !errors.Is(err, ErrInvalid) {
				return fmt.Errorf("nested DeleteScope: %v, want ErrInvalid", err)
			}
			if _, err := tx.Get("c", "m", id); err != nil {
				return err
			}
			return tx.Put("c", "copy", id, []byte("copied"))
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := listIDs(t, s, "c", "copy"); n != 2 {
		t.Fatalf("%d copies, want 2", n)
	}
	err = s.View(func(tx Tx) error {
		return tx.List("c", "m", func(_, _ []byte) error {
			return tx.List("c", "copy", func(_, _ []byte) error { return nil })
		})
	})
	if err != nil {
		t.Fatalf("nested List in View: %v", err)
	}
}

// TestWipeDir: a closed store is destroyed without its passphrase; an
// attacker who kept the open file sees no key.
func TestWipeDir(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "store")
	s := openTest(t, dir, testOptions())
	put(t, s, "c", "m", "a", "value")
	raw := rawValue(t, s, "c", "m", "a")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	stolen := t.TempDir()
	copyDir(t, dir, stolen)
	if !canDecrypt(attackerKeys(t, stolen, testPass), "c", "m", "a", raw) {
		t.Fatal("before the wipe the record should decrypt (the test would prove nothing)")
	}
	f, err := os.Open(filepath.Join(dir, keyTableName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := WipeDir(dir); err != nil {
		t.Fatalf("WipeDir: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("after WipeDir: %v, want not exist", err)
	}
	b := make([]byte, slotOffset(1))
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[offWrapped:], make([]byte, len(b)-offWrapped)) {
		t.Fatal("WipeDir left key material in the key table")
	}
	if err := WipeDir(dir); err != nil {
		t.Fatalf("WipeDir of a missing store: %v", err)
	}
}

// TestRejectedLeavesFiles: an Update whose fn fails, or whose request is
// refused, leaves every file of the store byte-identical.
func TestRejectedLeavesFiles(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, testOptions())
	defer s.Close()
	put(t, s, "c", "m", "a", "a")
	put(t, s, "", "m", "b", "b")
	before := snapshot(t, dir)
	fail := errors.New("fail")
	for name, fn := range map[string]func(Tx) error{
		"fn error": func(tx Tx) error {
			tx.Put("c", "m", []byte("x"), []byte("x"))
			tx.Delete("", "m", []byte("b"))
			tx.DeleteScope("c")
			return fail
		},
		"too large": func(tx Tx) error { return tx.Put("c", "m", []byte("x"), make([]byte, MaxValueLen+1)) },
		"bad name":  func(tx Tx) error { return tx.Delete(Scope(make([]byte, MaxScopeLen+1)), "m", nil) },
	} {
		if err := s.Update(fn); err == nil {
			t.Fatalf("%s: Update succeeded", name)
		}
		if after := snapshot(t, dir); !equalSnapshots(before, after) {
			t.Fatalf("%s: a rejected Update changed the files", name)
		}
	}
	if v, err := get(t, s, "", "m", "b"); err != nil || string(v) != "b" {
		t.Fatalf("Get = %q, %v", v, err)
	}
}
