package kt_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/vmap"
)

// TestEnrolHoldsLastEntry: the enrolment answer carries the checkpoint's
// last entry with its inclusion proof (directory-api.md §Enrolment), which
// kt.Enrol checks and the new client then holds (directory.md §Held
// entry), restored from its state too: its first lookup against that
// checkpoint carries no inclusion proof and verifies. An answer whose
// last entry does not verify, or which is not from tree size 0 with a
// note and no consistency proof, or does not parse strictly, is refused
// as a whole.
func TestEnrolHoldsLastEntry(t *testing.T) {
	w := newEnrolWorld(t)
	if w.d.Size() < 2 {
		t.Fatalf("tree of %d leaves: the last entry's inclusion proof would be empty", w.d.Size())
	}
	c, _, err := kt.Enrol(w.code, w.req, w.answer, maxAge, 0, w.real)
	ok(t, err)
	e, held := c.HeldEntry()
	if !held || e != w.d.Size()-1 || c.TreeSize() != w.d.Size() {
		t.Fatalf("after enrolment: held entry %d (%v), size %d; want %d of %d", e, held, c.TreeSize(), w.d.Size()-1, w.d.Size())
	}
	whole := must(w.d.Lookup(w.bob, c.TreeSize()))
	if len(whole.Proof.Inclusion) == 0 {
		t.Fatal("the lookup's whole proof has no inclusion proof: the test would not exercise anything")
	}
	for _, cl := range []*kt.Client{c, must(kt.RestoreClient(w.d.Config(maxAge), state(t, c)))} {
		if e2, held := cl.HeldEntry(); !held || e2 != e {
			t.Fatalf("restored client holds %d (%v)", e2, held)
		}
		r := must(w.d.LookupHeld(w.bob, cl.TreeSize(), e))
		if len(r.Proof.Inclusion) != 0 {
			t.Fatal("first lookup after enrolment carries an inclusion proof")
		}
		if res := must(cl.VerifyLookup(w.d.Tenant.ID(), w.bob, r, w.real.Add(time.Minute))); len(res.Devices) != 1 {
			t.Fatalf("%d devices", len(res.Devices))
		}
	}

	answer := func(f func(*kt.ConsistencyResponse)) *kt.Enrolment {
		cr := must(w.d.Consistency(0))
		f(cr)
		a := *w.answer
		a.Consistency = must(cr.Marshal())
		return &a
	}
	t.Run("last entry that does not verify", func(t *testing.T) {
		for name, f := range map[string]func(*kt.ConsistencyResponse){
			"inclusion":     func(cr *kt.ConsistencyResponse) { cr.Last.Inclusion[0][0] ^= 1 },
			"no inclusion":  func(cr *kt.ConsistencyResponse) { cr.Last.Inclusion = nil },
			"map root":      func(cr *kt.ConsistencyResponse) { cr.Last.Entry.MapRoot = vmap.Hash{1} },
			"earlier epoch": func(cr *kt.ConsistencyResponse) { cr.Last.Entry.Epoch-- },
		} {
			_, _, err := kt.Enrol(w.code, w.req, answer(f), maxAge, 0, w.real)
			var ke *kt.KTProofError
			if !errors.As(err, &ke) {
				t.Errorf("%s: got %v, want a proof error", name, err)
			}
		}
	})
	t.Run("not from size 0", func(t *testing.T) {
		for name, f := range map[string]func(*kt.ConsistencyResponse){
			"base size":   func(cr *kt.ConsistencyResponse) { cr.Checkpoint.BaseSize = 1 },
			"consistency": func(cr *kt.ConsistencyResponse) { cr.Checkpoint.Consistency = cr.Last.Inclusion },
			"no note": func(cr *kt.ConsistencyResponse) {
				cr.Checkpoint.Note, cr.Last = nil, nil
			},
		} {
			if _, _, err := kt.Enrol(w.code, w.req, answer(f), maxAge, 0, w.real); !errors.Is(err, kt.ErrMalformed) {
				t.Errorf("%s: got %v, want ErrMalformed", name, err)
			}
		}
	})
	t.Run("strict parsing", func(t *testing.T) {
		a := *w.answer
		a.Consistency = append(append([]byte(nil), w.answer.Consistency...), 0)
		if _, _, err := kt.Enrol(w.code, w.req, &a, maxAge, 0, w.real); !errors.Is(err, kt.ErrMalformed) {
			t.Errorf("trailing byte: got %v", err)
		}
		a.Consistency = append([]byte(nil), w.answer.Consistency...)
		a.Consistency[1] = 1 // format 1, without the last entry
		if _, _, err := kt.Enrol(w.code, w.req, &a, maxAge, 0, w.real); !errors.Is(err, kt.ErrMalformed) {
			t.Errorf("format 1: got %v", err)
		}
	})
}

// FuzzEnrolConsistency: kt.Enrol with an arbitrary consistency part of the
// enrolment answer never panics; an answer it accepts is the canonical
// encoding of a ConsistencyResponse from size 0, and the new client holds
// an entry exactly when that response carries one.
func FuzzEnrolConsistency(f *testing.F) {
	w := newEnrolWorld(f)
	f.Add(w.answer.Consistency)
	f.Add(noteOnly(w.freshNote))
	f.Add(noteOnly(w.staleNote))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		a := *w.answer
		a.Consistency = data
		c, _, err := kt.Enrol(w.code, w.req, &a, maxAge, 0, w.real)
		if err != nil {
			return
		}
		_, held := c.HeldEntry()
		if len(data) == 0 {
			if held || c.TreeSize() != 0 {
				t.Fatal("an answer without a checkpoint left the client with one")
			}
			return
		}
		cr, err := kt.ParseConsistencyResponse(data)
		if err != nil {
			t.Fatalf("accepted an answer that does not parse: %v", err)
		}
		if !bytes.Equal(must(cr.Marshal()), data) {
			t.Fatal("accepted a non-canonical encoding")
		}
		if cr.Checkpoint.BaseSize != 0 || held != (cr.Last != nil) {
			t.Fatalf("accepted from base size %d; held %v with last entry %v", cr.Checkpoint.BaseSize, held, cr.Last != nil)
		}
	})
}
