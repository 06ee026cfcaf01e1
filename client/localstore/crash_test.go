package localstore

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"
)

// rkey names a record of the random crash test.
type rkey struct {
	scope Scope
	kind  string
	id    string
}

var (
	crashScopes = []Scope{"", "a", "b"}
	crashKinds  = []string{"m", "n"}
)

// dump reads every record the random crash test can write.
func dump(t *testing.T, s *DB) map[rkey]string {
	t.Helper()
	m := map[rkey]string{}
	err := s.View(func(tx Tx) error {
		for _, sc := range crashScopes {
			for _, k := range crashKinds {
				err := tx.List(sc, k, func(id, v []byte) error {
					m[rkey{sc, k, string(id)}] = string(v)
					return nil
				})
				if err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestCrashRandom: random Updates, one of which "crashes" at a random
// point (the files are copied there). The copy, once opened, holds exactly
// the state before or after that Update, no key other than those of its
// live records, and no key of any record deleted or replaced by an
// acknowledged Update.
func TestCrashRandom(t *testing.T) {
	seeds := 12
	if testing.Short() {
		seeds = 4
	}
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { crashRandom(t, uint64(seed)) })
	}
}

func crashRandom(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	dir := t.TempDir()
	crashN := 3 + rng.IntN(12)
	point := []string{"keys-written", "committed"}[rng.IntN(2)]
	errCrash := errors.New("crash")
	var crashed string
	n := 0
	opts := testOptions()
	opts.hook = func(p string) error {
		if n == crashN && p == point {
			crashed = t.TempDir()
			copyDir(t, dir, crashed)
			return errCrash
		}
		return nil
	}
	s := openTest(t, dir, opts)
	defer s.Close()
	model := map[rkey]string{}
	type gone struct {
		k   rkey
		raw []byte
	}
	var erased, pending []gone // erased by acknowledged Updates; by the crashing one
	var next map[rkey]string
	for n = 0; n <= crashN; n++ {
		var ops []crashOp
		for range 1 + rng.IntN(4) {
			o := crashOp{kind: rng.IntN(4), k: rkey{crashScopes[rng.IntN(3)], crashKinds[rng.IntN(2)], fmt.Sprint(rng.IntN(4))}}
			if o.kind == 3 && rng.IntN(3) > 0 {
				o.kind = 0 // DeleteScope less often
			}
			ops = append(ops, o)
		}
		next = maps.Clone(model)
		val := fmt.Sprint("v", n)
		for _, o := range ops {
			switch o.kind {
			case 0, 1:
				next[o.k] = val
			case 2:
				delete(next, o.k)
			case 3:
				for k := range next {
					if k.scope == o.k.scope {
						delete(next, k)
					}
				}
			}
		}
		// Every committed record this Update removes or replaces.
		pending = pending[:0]
		for k := range model {
			if v, ok := next[k]; !ok || v != model[k] || touched(ops, k) {
				pending = append(pending, gone{k, rawValue(t, s, k.scope, k.kind, k.id)})
			}
		}
		err := s.Update(func(tx Tx) error {
			for _, o := range ops {
				var err error
				switch o.kind {
				case 0, 1:
					err = tx.Put(o.k.scope, o.k.kind, []byte(o.k.id), []byte(val))
				case 2:
					err = tx.Delete(o.k.scope, o.k.kind, []byte(o.k.id))
				case 3:
					err = tx.DeleteScope(o.k.scope)
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		if n < crashN {
			if err != nil {
				t.Fatalf("Update %d: %v", n, err)
			}
			model = next
			erased = append(erased, pending...)
		} else if !errors.Is(err, errCrash) {
			t.Fatalf("Update %d: %v, want the crash", n, err)
		}
	}
	r := openTest(t, crashed, testOptions())
	got := dump(t, r)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	switch {
	case maps.Equal(got, model):
		if point == "committed" && !maps.Equal(model, next) {
			t.Fatalf("crash after commit: the recovered state is the one before the Update")
		}
	case maps.Equal(got, next):
		if point == "keys-written" {
			t.Fatalf("crash before commit: the recovered state includes the Update")
		}
		erased = append(erased, pending...)
	default:
		t.Fatalf("recovered state %v is neither %v nor %v", got, model, next)
	}
	keys := attackerKeys(t, crashed, testPass)
	if len(keys) != len(got) {
		t.Fatalf("after recovery the key table holds %d keys for %d records", len(keys), len(got))
	}
	for _, g := range erased {
		if canDecrypt(keys, g.k.scope, g.k.kind, g.k.id, g.raw) {
			t.Fatalf("record %v, deleted or replaced, still decrypts", g.k)
		}
	}
}

type crashOp struct {
	kind int // 0, 1: put; 2: delete; 3: delete scope
	k    rkey
}

// touched reports whether ops put k (a replaced record gets a new key even
// with an equal value).
func touched(ops []crashOp, k rkey) bool {
	for _, o := range ops {
		if o.kind < 2 && o.k == k {
			return true
		}
	}
	return false
}
