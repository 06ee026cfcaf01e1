// Package storetest is the conformance suite every localstore.Store
// implementation passes (docs/spec/client-store.md §Interface).
package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/moat-im/moat/client/localstore"
)

// Run runs the conformance suite. open returns a new, empty store; Run
// closes (or wipes) every store it opens.
func Run(t *testing.T, open func(t *testing.T) localstore.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, localstore.Store)
	}{
		{"CRUD", testCRUD},
		{"Copies", testCopies},
		{"Isolation", testIsolation},
		{"ListOrder", testListOrder},
		{"ListStops", testListStops},
		{"ReadOwnWrites", testReadOwnWrites},
		{"Atomicity", testAtomicity},
		{"ViewReadOnly", testViewReadOnly},
		{"TxDone", testTxDone},
		{"DeleteScope", testDeleteScope},
		{"Limits", testLimits},
		{"Concurrency", testConcurrency},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			defer s.Close()
			tc.fn(t, s)
		})
	}
	t.Run("Wipe", func(t *testing.T) { testWipe(t, open(t)) })
	t.Run("Close", func(t *testing.T) { testClose(t, open(t)) })
}

// Put stores one record in its own Update.
func Put(t testing.TB, s localstore.Store, scope localstore.Scope, kind string, id, value []byte) {
	t.Helper()
	if err := s.Update(func(tx localstore.Tx) error { return tx.Put(scope, kind, id, value) }); err != nil {
		t.Fatalf("Put(%q, %q, %x): %v", scope, kind, id, err)
	}
}

// Get reads one record in its own View; ok is false for ErrNotFound.
func Get(t testing.TB, s localstore.Store, scope localstore.Scope, kind string, id []byte) (value []byte, ok bool) {
	t.Helper()
	err := s.View(func(tx localstore.Tx) error {
		var err error
		value, err = tx.Get(scope, kind, id)
		return err
	})
	if errors.Is(err, localstore.ErrNotFound) {
		return nil, false
	}
	if err != nil {
		t.Fatalf("Get(%q, %q, %x): %v", scope, kind, id, err)
	}
	return value, true
}

// List reads every record of (scope, kind) in order.
func List(t testing.TB, s localstore.Store, scope localstore.Scope, kind string) (ids, values [][]byte) {
	t.Helper()
	err := s.View(func(tx localstore.Tx) error {
		return tx.List(scope, kind, func(id, value []byte) error {
			ids = append(ids, bytes.Clone(id))
			values = append(values, bytes.Clone(value))
			return nil
		})
	})
	if err != nil {
		t.Fatalf("List(%q, %q): %v", scope, kind, err)
	}
	return ids, values
}

func wantValue(t *testing.T, s localstore.Store, scope localstore.Scope, kind string, id, want []byte) {
	t.Helper()
	got, ok := Get(t, s, scope, kind, id)
	switch {
	case want == nil && ok:
		t.Fatalf("Get(%q, %q, %x) = %q, want ErrNotFound", scope, kind, id, got)
	case want != nil && !ok:
		t.Fatalf("Get(%q, %q, %x): ErrNotFound, want %q", scope, kind, id, want)
	case want != nil && !bytes.Equal(got, want):
		t.Fatalf("Get(%q, %q, %x) = %q, want %q", scope, kind, id, got, want)
	}
}

func testCRUD(t *testing.T, s localstore.Store) {
	for _, scope := range []localstore.Scope{"", "conv-1"} {
		wantValue(t, s, scope, "msg", []byte("a"), nil)
		Put(t, s, scope, "msg", []byte("a"), []byte("one"))
		wantValue(t, s, scope, "msg", []byte("a"), []byte("one"))
		Put(t, s, scope, "msg", []byte("a"), []byte("two"))
		wantValue(t, s, scope, "msg", []byte("a"), []byte("two"))
		Put(t, s, scope, "msg", []byte("empty"), []byte{})
		wantValue(t, s, scope, "msg", []byte("empty"), []byte{})
		Put(t, s, scope, "msg", nil, []byte("empty id"))
		wantValue(t, s, scope, "msg", []byte{}, []byte("empty id"))
		if err := s.Update(func(tx localstore.Tx) error { return tx.Delete(scope, "msg", []byte("a")) }); err != nil {
			t.Fatal(err)
		}
		wantValue(t, s, scope, "msg", []byte("a"), nil)
		// Deleting an absent record is not an error.
		if err := s.Update(func(tx localstore.Tx) error { return tx.Delete(scope, "msg", []byte("absent")) }); err != nil {
			t.Fatalf("Delete of an absent record: %v", err)
		}
		wantValue(t, s, scope, "msg", []byte("empty"), []byte{})
	}
}

func testCopies(t *testing.T, s localstore.Store) {
	id, v := []byte("id"), []byte("value")
	Put(t, s, "c", "k", id, v)
	id[0], v[0] = 'X', 'X'
	wantValue(t, s, "c", "k", []byte("id"), []byte("value"))
	got, _ := Get(t, s, "c", "k", []byte("id"))
	got[0] = 'Y'
	wantValue(t, s, "c", "k", []byte("id"), []byte("value"))
}

func testIsolation(t *testing.T, s localstore.Store) {
	// Names that are prefixes of one another or differ only in framing.
	names := []struct {
		scope localstore.Scope
		kind  string
	}{{"", "k"}, {"", "kk"}, {"k", ""}, {"k", "k"}, {"kk", ""}, {"s", "k"}, {"s\x00", "k"}, {"s", "\x00k"}, {"", ""}}
	for i, n := range names {
		Put(t, s, n.scope, n.kind, []byte("id"), fmt.Appendf(nil, "v%d", i))
	}
	for i, n := range names {
		wantValue(t, s, n.scope, n.kind, []byte("id"), fmt.Appendf(nil, "v%d", i))
		ids, _ := List(t, s, n.scope, n.kind)
		if len(ids) != 1 {
			t.Fatalf("List(%q, %q): %d records, want 1", n.scope, n.kind, len(ids))
		}
	}
}

func testListOrder(t *testing.T, s localstore.Store) {
	ids := [][]byte{{0xff}, {0x00}, {}, {0x00, 0x00}, {0x01}, {0x00, 0xff}, {0x7f, 0x80}, []byte("abc"), []byte("ab")}
	for _, scope := range []localstore.Scope{"", "c"} {
		err := s.Update(func(tx localstore.Tx) error {
			for _, id := range ids {
				if err := tx.Put(scope, "m", id, append([]byte("v"), id...)); err != nil {
					return err
				}
			}
			// A neighbour kind and scope must not show up.
			if err := tx.Put(scope, "m2", []byte{0x00}, []byte("other kind")); err != nil {
				return err
			}
			return tx.Put(scope+"x", "m", []byte{0x00}, []byte("other scope"))
		})
		if err != nil {
			t.Fatal(err)
		}
		got, values := List(t, s, scope, "m")
		want := append([][]byte(nil), ids...)
		sortBytes(want)
		if len(got) != len(want) {
			t.Fatalf("List: %d records, want %d", len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) || !bytes.Equal(values[i], append([]byte("v"), want[i]...)) {
				t.Fatalf("List[%d] = (%x, %q), want (%x, v%x)", i, got[i], values[i], want[i], want[i])
			}
		}
	}
	if ids, _ := List(t, s, "none", "m"); len(ids) != 0 {
		t.Fatalf("List of an empty scope: %d records", len(ids))
	}
}

func sortBytes(b [][]byte) {
	for i := 1; i < len(b); i++ {
		for j := i; j > 0 && bytes.Compare(b[j-1], b[j]) > 0; j-- {
			b[j-1], b[j] = b[j], b[j-1]
		}
	}
}

func testListStops(t *testing.T, s localstore.Store) {
	for i := range 5 {
		Put(t, s, "c", "m", []byte{byte(i)}, []byte("v"))
	}
	stop := errors.New("stop")
	n := 0
	err := s.View(func(tx localstore.Tx) error {
		return tx.List("c", "m", func(id, value []byte) error {
			n++
			if n == 2 {
				return stop
			}
			return nil
		})
	})
	if !errors.Is(err, stop) || n != 2 {
		t.Fatalf("List after fn error: err %v after %d calls, want stop after 2", err, n)
	}
}

func testReadOwnWrites(t *testing.T, s localstore.Store) {
	Put(t, s, "c", "m", []byte("old"), []byte("old"))
	Put(t, s, "", "m", []byte("gone"), []byte("gone"))
	err := s.Update(func(tx localstore.Tx) error {
		if err := tx.Put("c", "m", []byte("new"), []byte("new")); err != nil {
			return err
		}
		if v, err := tx.Get("c", "m", []byte("new")); err != nil || string(v) != "new" {
			return fmt.Errorf("get of own Put = %q, %v", v, err)
		}
		if err := tx.Put("c", "m", []byte("new"), []byte("newer")); err != nil {
			return err
		}
		if err := tx.Delete("", "m", []byte("gone")); err != nil {
			return err
		}
		if _, err := tx.Get("", "m", []byte("gone")); !errors.Is(err, localstore.ErrNotFound) {
			return fmt.Errorf("get of own Delete: %v, want ErrNotFound", err)
		}
		var ids []string
		if err := tx.List("c", "m", func(id, _ []byte) error { ids = append(ids, string(id)); return nil }); err != nil {
			return err
		}
		if strings.Join(ids, ",") != "new,old" {
			return fmt.Errorf("list in Update = %v, want [new old]", ids)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wantValue(t, s, "c", "m", []byte("new"), []byte("newer"))
	wantValue(t, s, "", "m", []byte("gone"), nil)
}

func testAtomicity(t *testing.T, s localstore.Store) {
	Put(t, s, "c", "m", []byte("keep"), []byte("keep"))
	Put(t, s, "", "m", []byte("keep"), []byte("keep"))
	fail := errors.New("fail")
	err := s.Update(func(tx localstore.Tx) error {
		for i := range 10 {
			if err := tx.Put("c", "m", []byte{byte(i)}, []byte("x")); err != nil {
				return err
			}
		}
		if err := tx.Put("c", "m", []byte("keep"), []byte("replaced")); err != nil {
			return err
		}
		if err := tx.Delete("", "m", []byte("keep")); err != nil {
			return err
		}
		if err := tx.DeleteScope("c"); err != nil {
			return err
		}
		if err := tx.Put("new", "m", []byte("n"), []byte("x")); err != nil {
			return err
		}
		return fail
	})
	if !errors.Is(err, fail) {
		t.Fatalf("Update returned %v, want fn's error", err)
	}
	wantValue(t, s, "c", "m", []byte("keep"), []byte("keep"))
	wantValue(t, s, "", "m", []byte("keep"), []byte("keep"))
	wantValue(t, s, "new", "m", []byte("n"), nil)
	if ids, _ := List(t, s, "c", "m"); len(ids) != 1 {
		t.Fatalf("after a failed Update, scope holds %d records, want 1", len(ids))
	}
	// The store still works after a failed Update.
	Put(t, s, "c", "m", []byte("after"), []byte("after"))
	wantValue(t, s, "c", "m", []byte("after"), []byte("after"))
}

func testViewReadOnly(t *testing.T, s localstore.Store) {
	Put(t, s, "c", "m", []byte("a"), []byte("a"))
	err := s.View(func(tx localstore.Tx) error {
		if err := tx.Put("c", "m", []byte("b"), []byte("b")); !errors.Is(err, localstore.ErrReadOnly) {
			return fmt.Errorf("put in View: %v, want ErrReadOnly", err)
		}
		if err := tx.Delete("c", "m", []byte("a")); !errors.Is(err, localstore.ErrReadOnly) {
			return fmt.Errorf("delete in View: %v, want ErrReadOnly", err)
		}
		if err := tx.DeleteScope("c"); !errors.Is(err, localstore.ErrReadOnly) {
			return fmt.Errorf("deleteScope in View: %v, want ErrReadOnly", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wantValue(t, s, "c", "m", []byte("a"), []byte("a"))
	wantValue(t, s, "c", "m", []byte("b"), nil)
}

func testTxDone(t *testing.T, s localstore.Store) {
	var kept localstore.Tx
	if err := s.Update(func(tx localstore.Tx) error { kept = tx; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := kept.Put("c", "m", []byte("late"), []byte("late")); err == nil {
		t.Fatal("Put on a finished Tx succeeded")
	}
	if _, err := kept.Get("c", "m", []byte("late")); err == nil || errors.Is(err, localstore.ErrNotFound) {
		t.Fatalf("Get on a finished Tx: %v, want an error other than ErrNotFound", err)
	}
	wantValue(t, s, "c", "m", []byte("late"), nil)
}

func testDeleteScope(t *testing.T, s localstore.Store) {
	err := s.Update(func(tx localstore.Tx) error {
		for i := range 20 {
			for _, sc := range []localstore.Scope{"doomed", "kept", ""} {
				for _, kind := range []string{"m", "r"} {
					if err := tx.Put(sc, kind, []byte{byte(i)}, []byte(sc)); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(func(tx localstore.Tx) error { return tx.DeleteScope("doomed") }); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"m", "r"} {
		if ids, _ := List(t, s, "doomed", kind); len(ids) != 0 {
			t.Fatalf("deleted scope, kind %q: %d records left", kind, len(ids))
		}
		wantValue(t, s, "doomed", kind, []byte{3}, nil)
		for _, sc := range []localstore.Scope{"kept", ""} {
			if ids, _ := List(t, s, sc, kind); len(ids) != 20 {
				t.Fatalf("scope %q kind %q: %d records, want 20", sc, kind, len(ids))
			}
		}
	}
	// The scope can be used again, and puts after DeleteScope in the same
	// Update survive.
	err = s.Update(func(tx localstore.Tx) error {
		if err := tx.Put("kept", "m", []byte("x"), []byte("x")); err != nil {
			return err
		}
		if err := tx.DeleteScope("kept"); err != nil {
			return err
		}
		return tx.Put("kept", "m", []byte("after"), []byte("after"))
	})
	if err != nil {
		t.Fatal(err)
	}
	ids, _ := List(t, s, "kept", "m")
	if len(ids) != 1 || string(ids[0]) != "after" {
		t.Fatalf("scope after DeleteScope and Put: %q, want [after]", ids)
	}
	if err := s.Update(func(tx localstore.Tx) error { return tx.DeleteScope("never") }); err != nil {
		t.Fatalf("DeleteScope of an empty scope: %v", err)
	}
}

func testLimits(t *testing.T, s localstore.Store) {
	long := func(n int) []byte { return bytes.Repeat([]byte{'a'}, n) }
	ok := []func(tx localstore.Tx) error{
		func(tx localstore.Tx) error {
			return tx.Put(localstore.Scope(long(localstore.MaxScopeLen)), string(long(localstore.MaxKindLen)), long(localstore.MaxIDLen), long(localstore.MaxValueLen))
		},
	}
	bad := []func(tx localstore.Tx) error{
		func(tx localstore.Tx) error {
			return tx.Put(localstore.Scope(long(localstore.MaxScopeLen+1)), "k", nil, nil)
		},
		func(tx localstore.Tx) error { return tx.Put("", string(long(localstore.MaxKindLen+1)), nil, nil) },
		func(tx localstore.Tx) error { return tx.Put("", "k", long(localstore.MaxIDLen+1), nil) },
		func(tx localstore.Tx) error { return tx.Put("", "k", nil, long(localstore.MaxValueLen+1)) },
		func(tx localstore.Tx) error { _, err := tx.Get("", "k", long(localstore.MaxIDLen+1)); return err },
		func(tx localstore.Tx) error { return tx.Delete("", "k", long(localstore.MaxIDLen+1)) },
		func(tx localstore.Tx) error {
			return tx.DeleteScope(localstore.Scope(long(localstore.MaxScopeLen + 1)))
		},
	}
	for i, fn := range ok {
		if err := s.Update(fn); err != nil {
			t.Fatalf("request %d at the limits: %v", i, err)
		}
	}
	for i, fn := range bad {
		if err := s.Update(fn); !errors.Is(err, localstore.ErrInvalid) {
			t.Fatalf("request %d beyond the limits: %v, want ErrInvalid", i, err)
		}
	}
}

func testConcurrency(t *testing.T, s localstore.Store) {
	const workers, rounds = 4, 20
	var wg sync.WaitGroup
	errs := make(chan error, 2*workers)
	for w := range workers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for r := range rounds {
				err := s.Update(func(tx localstore.Tx) error {
					// A counter every writer increments, and a record of its own.
					v, err := tx.Get("shared", "counter", nil)
					if errors.Is(err, localstore.ErrNotFound) {
						v, err = []byte{0, 0}, nil
					}
					if err != nil {
						return err
					}
					n := int(v[0])<<8 | int(v[1]) + 1
					if err := tx.Put("shared", "counter", nil, []byte{byte(n >> 8), byte(n)}); err != nil {
						return err
					}
					return tx.Put(localstore.Scope(fmt.Sprint("w", w)), "m", []byte{byte(r)}, []byte("x"))
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range rounds {
				err := s.View(func(tx localstore.Tx) error {
					// A View sees a consistent snapshot: the counter never
					// falls behind the records of the writers.
					total := 0
					for w := range workers {
						if err := tx.List(localstore.Scope(fmt.Sprint("w", w)), "m", func(_, _ []byte) error { total++; return nil }); err != nil {
							return err
						}
					}
					v, err := tx.Get("shared", "counter", nil)
					if errors.Is(err, localstore.ErrNotFound) {
						v, err = []byte{0, 0}, nil
					}
					if err != nil {
						return err
					}
					if n := int(v[0])<<8 | int(v[1]); n != total {
						return fmt.Errorf("view: counter %d, records %d", n, total)
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	v, _ := Get(t, s, "shared", "counter", nil)
	if n := int(v[0])<<8 | int(v[1]); n != workers*rounds {
		t.Fatalf("counter = %d, want %d", n, workers*rounds)
	}
}

func testWipe(t *testing.T, s localstore.Store) {
	Put(t, s, "c", "m", []byte("a"), []byte("a"))
	Put(t, s, "", "m", []byte("a"), []byte("a"))
	if err := s.Wipe(); err != nil {
		t.Fatalf("Wipe: %v", err)
	}
	if err := s.View(func(tx localstore.Tx) error { return nil }); !errors.Is(err, localstore.ErrClosed) {
		t.Fatalf("View after Wipe: %v, want ErrClosed", err)
	}
	if err := s.Update(func(tx localstore.Tx) error { return nil }); !errors.Is(err, localstore.ErrClosed) {
		t.Fatalf("Update after Wipe: %v, want ErrClosed", err)
	}
	s.Close()
}

func testClose(t *testing.T, s localstore.Store) {
	Put(t, s, "c", "m", []byte("a"), []byte("a"))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Update(func(tx localstore.Tx) error { return nil }); !errors.Is(err, localstore.ErrClosed) {
		t.Fatalf("Update after Close: %v, want ErrClosed", err)
	}
	if err := s.View(func(tx localstore.Tx) error { return nil }); !errors.Is(err, localstore.ErrClosed) {
		t.Fatalf("View after Close: %v, want ErrClosed", err)
	}
}
