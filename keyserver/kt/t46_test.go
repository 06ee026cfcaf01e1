package kt_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/kt/kttest"
	"github.com/moat-im/moat/keyserver/org"
)

// enrolWorld is a tenant whose trust bundle was issued 90 days before
// real, with a head frozen a day before real (stale), and a device of
// alice that enrols now: its code issued ten minutes before real, redeemed
// a minute before, and the directory's head cosigned at real (fresh).
type enrolWorld struct {
	d                     *kttest.Directory
	real                  time.Time
	alice, bob            org.UserID
	code                  *org.EnrolmentCode // as the device parsed it from its text
	req                   *org.EnrolmentRequest
	dev, old              *kttest.Device // the enrolling device; bob's device enrolled 90 days ago
	bundle                []byte
	staleNote, freshNote  []byte
	staleResp, freshResp  *kt.LookupResponse // lookups of bob by a client without a checkpoint
	staleAnswer, answer   *kt.Enrolment      // the old enrolment's answer replayed; this one's
	codeIssued, certIssue time.Time
}

const day = 24 * time.Hour

func newEnrolWorld(t testing.TB) *enrolWorld {
	t.Helper()
	real := kttest.T0.Add(100 * day)
	w := &enrolWorld{real: real, alice: uid(1), bob: uid(2)}
	w.d = must(kttest.New(kttest.Options{Seed: 46, Now: real.Add(-90 * day)}))
	d := w.d
	ok(t, d.AddUser(w.alice, "Alice", real.Add(-90*day)))
	ok(t, d.AddUser(w.bob, "Bob", real.Add(-90*day)))
	w.old = must(d.Enrol(w.bob, nil, real.Add(-90*day)))
	must(d.PublishEpoch(real.Add(-90*day + time.Minute)))
	w.bundle = must(d.TrustBundle().Marshal())
	w.staleAnswer = &kt.Enrolment{TrustBundle: w.bundle, Certificate: must(w.old.Certificate.Marshal())}

	must(d.PublishEpoch(real.Add(-day)))
	w.staleNote, w.staleResp = d.Note(), must(d.Lookup(w.bob, 0))
	w.staleAnswer.Consistency = noteOnly(w.staleNote)

	w.codeIssued, w.certIssue = real.Add(-10*time.Minute), real.Add(-time.Minute)
	w.dev = must(d.NewDeviceKeys(w.alice))
	code, req, err := d.Request(w.dev, w.codeIssued)
	ok(t, err)
	ok(t, d.Redeem(w.dev, code, req, nil, w.certIssue))
	w.code, w.req = must(org.ParseEnrolmentCodeText(code.Text())), req

	must(d.PublishEpoch(real))
	w.freshNote, w.freshResp = d.Note(), must(d.Lookup(w.bob, 0))
	// The answer as a directory sends it: the checkpoint with its last
	// entry (directory-api.md §Enrolment).
	w.answer = &kt.Enrolment{TrustBundle: w.bundle, Certificate: must(w.dev.Certificate.Marshal()), Consistency: must(must(d.Consistency(0)).Marshal())}
	return w
}

// withCheckpoint returns a copy of a with the checkpoint note (nil: none)
// and no last entry.
func withCheckpoint(a *kt.Enrolment, note []byte) *kt.Enrolment {
	c := *a
	c.Consistency = noteOnly(note)
	return &c
}

// noteOnly returns the ConsistencyResponse encoding of an enrolment answer
// with the checkpoint note and no last entry (nil for no note).
func noteOnly(note []byte) []byte {
	if note == nil {
		return nil
	}
	return must((&kt.ConsistencyResponse{Checkpoint: kt.CheckpointUpdate{Note: note}}).Marshal())
}

// TestT46Enrolment: a fresh client takes an authenticated time floor from
// its enrolment (docs/spec/org.md §Time floor at enrolment), so that a
// clock 24 hours behind, an old trust bundle and a stale head never make
// it accept the stale head, on first contact or after a restart.
func TestT46Enrolment(t *testing.T) {
	w := newEnrolWorld(t)
	real := w.real

	t.Run("Normal", func(t *testing.T) {
		ok(t, kt.CheckEnrolmentClock(w.code, 0, real))
		c, cert, err := kt.Enrol(w.code, w.req, w.answer, maxAge, 0, real)
		ok(t, err)
		if cert.Device != w.dev.ID || c.TreeSize() != w.d.Size() || !c.Floor().Equal(real) {
			t.Fatalf("enrolled device %s at size %d, floor %v", cert.Device, c.TreeSize(), c.Floor())
		}
		must(c.VerifyLookup(w.d.Tenant.ID(), w.bob, must(w.d.Lookup(w.bob, c.TreeSize())), real.Add(time.Minute)))
		// A restart: the state restores under the bundle alone, with the
		// floor, and keeps working.
		st := state(t, c)
		r := must(kt.RestoreClient(w.d.Config(maxAge), st))
		if !r.Floor().Equal(real) || !bytes.Equal(state(t, r), st) {
			t.Fatalf("restored floor %v", r.Floor())
		}
		must(r.VerifyLookup(w.d.Tenant.ID(), w.bob, must(w.d.Lookup(w.bob, r.TreeSize())), real.Add(2*time.Minute)))
	})

	t.Run("ClockBehindOldBundleStaleHead", func(t *testing.T) {
		now := real.Add(-day)
		// The answer with the stale head, on a clock a day behind: the
		// clock is behind the enrolment's floor, reported as such.
		_, _, err := kt.Enrol(w.code, w.req, withCheckpoint(w.answer, w.staleNote), maxAge, 0, now)
		var ce *tlog.ClockError
		if !errors.As(err, &ce) || !errors.Is(err, tlog.ErrClockBehind) || !ce.Floor.Equal(w.certIssue) || !ce.Now.Equal(now) {
			t.Fatalf("enrolment with the clock a day behind: got %v", err)
		}
		// With a right clock, the stale head in the answer is refused on
		// its own: it is older than the floor by more than MaxAge.
		if _, _, err := kt.Enrol(w.code, w.req, withCheckpoint(w.answer, w.staleNote), maxAge, 0, real); !errors.Is(err, tlog.ErrStale) {
			t.Fatalf("stale head in the answer: got %v", err)
		}
		// Enrolled without a checkpoint (the answer carried none, or an
		// attacker stripped it), restarted with the clock a day behind,
		// then served the stale head on first contact: refused, and the
		// state is untouched.
		c, _, err := kt.Enrol(w.code, w.req, withCheckpoint(w.answer, nil), maxAge, 0, real)
		ok(t, err)
		if c.TreeSize() != 0 || !c.Floor().Equal(w.certIssue) {
			t.Fatalf("size %d, floor %v", c.TreeSize(), c.Floor())
		}
		r := must(kt.RestoreClient(w.d.Config(maxAge), state(t, c)))
		before := state(t, r)
		if _, err := r.VerifyLookup(w.d.Tenant.ID(), w.bob, w.staleResp, now); !errors.Is(err, tlog.ErrStale) {
			t.Fatalf("stale head on first contact, clock a day behind: got %v", err)
		}
		sameState(t, r, before)
		// The fresh head is refused too while the clock is behind, and
		// said so; with the clock right it is accepted.
		if _, err := r.VerifyLookup(w.d.Tenant.ID(), w.bob, w.freshResp, now); !errors.Is(err, tlog.ErrClockBehind) {
			t.Fatalf("fresh head, clock a day behind: got %v", err)
		}
		sameState(t, r, before)
		must(r.VerifyLookup(w.d.Tenant.ID(), w.bob, w.freshResp, real))
		// What the floor buys: a client pinned to the 90-day-old bundle
		// alone, with the same clock, takes the stale head for fresh.
		bare := must(w.d.NewClient(maxAge))
		if _, err := bare.VerifyLookup(w.d.Tenant.ID(), w.bob, w.staleResp, now); err != nil {
			t.Fatalf("the bundle alone no longer lets the stale head through (the test lost its contrast): %v", err)
		}
	})

	t.Run("ClockBehindCode", func(t *testing.T) {
		// Before redeeming: the clock against the code's issue time.
		now := w.codeIssued.Add(-tlog.DefaultMaxSkew - time.Second)
		err := kt.CheckEnrolmentClock(w.code, 0, now)
		var ce *tlog.ClockError
		if !errors.As(err, &ce) || !ce.Floor.Equal(w.codeIssued) || !ce.Now.Equal(now) {
			t.Fatalf("clock behind the code's issue time: got %v", err)
		}
		ok(t, kt.CheckEnrolmentClock(w.code, 0, w.codeIssued.Add(-tlog.DefaultMaxSkew)))
		if err := kt.CheckEnrolmentClock(w.code, time.Hour, now); err != nil {
			t.Fatalf("within a configured skew of an hour: %v", err)
		}
		// After redeeming: refused, and the answer stays usable once the
		// clock is right.
		if _, _, err := kt.Enrol(w.code, w.req, w.answer, maxAge, 0, now); !errors.Is(err, tlog.ErrClockBehind) {
			t.Fatalf("enrolment, clock behind the code: got %v", err)
		}
		if _, _, err := kt.Enrol(w.code, w.req, w.answer, maxAge, 0, real); err != nil {
			t.Fatalf("the same answer, clock right: %v", err)
		}
		// A version 1 code has no issue time to check.
		v1 := *w.code
		v1.IssuedAt = time.Time{}
		ok(t, kt.CheckEnrolmentClock(&v1, 0, now))
	})

	t.Run("ReplayedAnswer", func(t *testing.T) {
		// The answer of bob's enrolment 90 days ago, with the head of
		// that time or the stale one: not this device's certificate.
		for _, note := range [][]byte{w.staleNote, nil, w.freshNote} {
			if _, _, err := kt.Enrol(w.code, w.req, withCheckpoint(w.staleAnswer, note), maxAge, 0, real); !errors.Is(err, org.ErrWrongSubject) {
				t.Fatalf("replayed answer of another enrolment: got %v", err)
			}
		}
		// This device's keys certified before its code was issued (a
		// directory that backdates, or an answer from an earlier
		// enrolment attempt with the same keys): refused.
		early := *w.dev.Certificate
		early.NotBefore = w.codeIssued.Add(-time.Hour)
		enc := must(early.Marshal())
		tbs := enc[:len(enc)-len(early.Signature)]
		early.Signature = must(w.d.CA.Sign(append([]byte("moat/v1/org/device-certificate\x00"), tbs...)))
		backdated := &kt.Enrolment{TrustBundle: w.bundle, Certificate: must(early.Marshal()), Consistency: noteOnly(w.freshNote)}
		if _, _, err := kt.Enrol(w.code, w.req, backdated, maxAge, 0, real); !errors.Is(err, org.ErrStaleEnrolment) {
			t.Fatalf("certificate older than the code: got %v", err)
		}
		// The right answer with the head swapped for the stale one:
		// refused (ErrStale, above); with a checkpoint of another log or
		// a forged one: refused.
		forged := bytes.Clone(w.freshNote)
		forged[len(forged)/2] ^= 1
		if _, _, err := kt.Enrol(w.code, w.req, withCheckpoint(w.answer, forged), maxAge, 0, real); err == nil {
			t.Fatal("a forged checkpoint in the answer was accepted")
		}
	})
}
