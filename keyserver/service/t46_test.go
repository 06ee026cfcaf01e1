package service_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/service"
)

// TestT46EnrolmentOverHTTP: the enrolment exchange gives a new device an
// authenticated time floor (docs/spec/org.md §Time floor at enrolment):
// the code's issue time, the certificate's not_before and the directory's
// cosigned checkpoint in the answer. A clock a day behind is reported
// before and after redeeming; a replayed answer, or the right answer with
// a head from a day ago, is refused; a code whose issue time was altered
// is refused by the directory; the normal enrolment and a restart work.
func TestT46EnrolmentOverHTTP(t *testing.T) {
	const day = 24 * time.Hour
	ctx := context.Background()
	w := newWorld(t, worldOptions{seed: 46})
	alice, bob := w.addUser("Alice"), w.addUser("Bob")
	w.publish()
	// Bob's device enrolled a day ago: its answer, with the head of that
	// time, is what an attacker replays.
	b := w.newDeviceKeys(bob)
	b.code = w.issueCode(bob)
	bres := must(w.api().Enrol(ctx, b.code, must(org.NewEnrolmentRequest(b.code, b.id, b.mls))))
	if len(bres.Consistency) == 0 {
		t.Fatal("no checkpoint in the enrolment answer")
	}
	w.publish()
	w.clk.Advance(day)
	w.publish()

	a := w.newDeviceKeys(alice)
	code := w.issueCode(alice)
	if !code.IssuedAt.Equal(w.clk.Now().Truncate(time.Second)) {
		t.Fatalf("code issued at %v, now %v", code.IssuedAt, w.clk.Now())
	}
	req := must(org.NewEnrolmentRequest(code, a.id, a.mls))
	behind := w.clk.Now().Add(-day)
	if err := kt.CheckEnrolmentClock(code, 0, behind); !errors.Is(err, tlog.ErrClockBehind) {
		t.Fatalf("clock a day behind the code: got %v", err)
	}

	// The directory refuses the code with another issue time, without
	// spending it.
	forged := *code
	forged.IssuedAt = code.IssuedAt.Add(-time.Hour)
	_, err := w.api().Enrol(ctx, &forged, must(org.NewEnrolmentRequest(&forged, a.id, a.mls)))
	wantStatus(t, err, http.StatusForbidden)

	res := must(w.api().Enrol(ctx, code, req))
	served, size := w.ten().ServedNote()
	if cr := must(kt.ParseConsistencyResponse(res.Consistency)); !bytes.Equal(cr.Checkpoint.Note, served) || cr.Last == nil || cr.Last.Entry.Epoch != size-1 {
		t.Fatal("the answer does not carry the served checkpoint and its last entry")
	}
	// A clock a day behind after redeeming: reported, nothing pinned.
	if _, _, err := kt.Enrol(code, req, res.Enrolment(), maxAge, 0, behind); !errors.Is(err, tlog.ErrClockBehind) {
		t.Fatalf("enrolment with the clock a day behind: got %v", err)
	}
	// Bob's answer replayed to Alice's device.
	if _, _, err := kt.Enrol(code, req, bres.Enrolment(), maxAge, 0, w.clk.Now()); !errors.Is(err, org.ErrWrongSubject) {
		t.Fatalf("replayed answer: got %v", err)
	}
	// The right answer with the head of a day ago.
	stale := res.Enrolment()
	stale.Consistency = bres.Consistency
	if _, _, err := kt.Enrol(code, req, stale, maxAge, 0, w.clk.Now()); !errors.Is(err, tlog.ErrStale) {
		t.Fatalf("answer with a day-old head: got %v", err)
	}
	// The answer as sent, with the clock right.
	c, cert, err := kt.Enrol(code, req, res.Enrolment(), maxAge, 0, w.clk.Now())
	ok(t, err)
	if c.TreeSize() != size || cert.User != alice || c.Floor().Before(code.IssuedAt) {
		t.Fatalf("enrolled at size %d (served %d), floor %v", c.TreeSize(), size, c.Floor())
	}
	// A restart: the floor and the checkpoint survive, and lookups work.
	r := must(kt.RestoreClient(kt.Config{Bundle: c.Bundle(), MaxAge: maxAge}, must(c.MarshalState())))
	if !r.Floor().Equal(c.Floor()) {
		t.Fatalf("restored floor %v, was %v", r.Floor(), c.Floor())
	}
	w.publish()
	api := &service.Client{BaseURL: w.srv.URL, Tenant: w.tenant, Now: w.clk.Now, Rand: w.rnd,
		Device: &service.DeviceCredentials{User: alice, Device: cert.Device, Key: a.id.Signing}}
	resp := must(api.Lookup(ctx, bob, r.TreeSize()))
	must(r.VerifyLookup(w.tenant, bob, resp, w.clk.Now()))
}
