package localstore_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/moat-im/moat/client/localstore"
	"github.com/moat-im/moat/client/localstore/memstore"
	"github.com/moat-im/moat/client/localstore/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) localstore.Store {
		s, err := localstore.Open(t.TempDir(), localstore.Options{
			Passphrase: []byte("correct horse"),
			// Cheap Argon2id for tests.
			Argon2:       localstore.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1},
			MemTableSize: 8 << 20,
		})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

// FuzzAgainstMemstore applies one sequence of operations, decoded from
// the input, to a DB and to memstore, the reference, and compares every
// read, across Updates that fail, DeleteScope and a reopen.
func FuzzAgainstMemstore(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 0x10, 0x21, 0x32, 0x43, 0x04, 0x55, 0x06, 0x17, 0x08, 0x29})
	f.Add([]byte{0x00, 0x01, 0x12, 0x05, 0x00, 0x14, 0x07, 0x03, 0x36, 0x40, 0x09, 0x00})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 200 {
			return
		}
		dir := t.TempDir()
		opts := localstore.Options{
			Passphrase:   []byte("p"),
			Argon2:       localstore.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1},
			MemTableSize: 8 << 20,
		}
		db, err := localstore.Open(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { db.Close() }()
		ref := memstore.New()
		scopes := []localstore.Scope{"", "a", "b"}
		kinds := []string{"m", "n"}
		fail := errors.New("fail")
		// Each byte: op (high 3 bits), scope, kind and id (low bits).
		apply := func(tx localstore.Tx, b byte) error {
			sc, kind, id := scopes[int(b>>3&3)%3], kinds[b>>2&1], []byte{b & 3}
			switch b >> 5 {
			case 0, 1, 2:
				return tx.Put(sc, kind, id, []byte{b, byte(len(ops))})
			case 3:
				return tx.Delete(sc, kind, id)
			case 4:
				return tx.DeleteScope(sc)
			}
			return nil
		}
		for len(ops) > 0 {
			// An Update of up to 4 operations; if the first byte is odd it fails.
			n := min(len(ops), 1+int(ops[0]&3))
			batch := ops[:n]
			ops = ops[n:]
			run := func(tx localstore.Tx) error {
				for _, b := range batch {
					if err := apply(tx, b); err != nil {
						return err
					}
				}
				if batch[0]&0x80 != 0 && batch[0]&1 == 1 {
					return fail
				}
				return nil
			}
			e1, e2 := db.Update(run), ref.Update(run)
			if (e1 == nil) != (e2 == nil) {
				t.Fatalf("Update: DB %v, memstore %v", e1, e2)
			}
			if len(ops)%7 == 3 {
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
				if db, err = localstore.Open(dir, opts); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, sc := range scopes {
			for _, kind := range kinds {
				i1, v1 := storetest.List(t, db, sc, kind)
				i2, v2 := storetest.List(t, ref, sc, kind)
				if fmt.Sprint(i1, v1) != fmt.Sprint(i2, v2) {
					t.Fatalf("List(%q, %q): DB %x %x, memstore %x %x", sc, kind, i1, v1, i2, v2)
				}
			}
		}
	})
}
