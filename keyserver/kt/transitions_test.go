package kt_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
)

// transitions asks the directory for the transitions after c's bundle.
func transitions(w *world, c *kt.Client) *kt.TransitionsResponse {
	return must(w.d.Transitions(c.Bundle().Sequence, c.TreeSize()))
}

// rotateAll publishes, from minute now on, a log key rotation, a new
// witness set and a CA rotation, each followed by an epoch under it, and
// returns the minute after.
func rotateAll(t testing.TB, w *world, now int) int {
	t.Helper()
	must(w.d.RotateLogKey(at(now)))
	must(w.d.PublishEpoch(at(now + 1))) // announces the new key
	must(w.d.PublishEpoch(at(now + 2))) // under it
	must(w.d.ReplaceWitnesses(3, 2, at(now+3)))
	must(w.d.PublishEpoch(at(now + 4))) // cosigned by the old witnesses
	must(w.d.PublishEpoch(at(now + 5))) // by the new ones
	must(w.d.RotateCA(at(now + 6)))
	must(w.d.PublishEpoch(at(now + 7)))
	must(w.d.Enrol(w.bob, w.b1, at(now+8)))
	must(w.d.PublishEpoch(at(now + 9)))
	return now + 10
}

// TestFollowTransitions: a client that was offline across a log key
// rotation, a witness change and a CA rotation catches up in one call,
// from the kept transitions (docs/spec/directory.md §Following
// transitions): it ends pinned to the last bundle, trusting the latest
// checkpoint, knowing the old CA, and verifies lookups and its user's
// whole history. A client without a checkpoint catches up too, and one
// whose bundle is current gets the latest checkpoint.
func TestFollowTransitions(t *testing.T) {
	w := newWorld(t, 90)
	c := w.client(t)
	lookupBob(t, w, c, 2)
	fresh := w.client(t) // enrolled, never bootstrapped
	now := rotateAll(t, w, 3)

	// Offline across all of it: the latest checkpoint is not the pinned
	// bundle's.
	before := state(t, c)
	if _, err := c.VerifyLookup(w.tenant, w.bob, must(w.d.Lookup(w.bob, c.TreeSize())), at(now)); err == nil {
		t.Fatal("latest checkpoint verified under the first bundle")
	}
	sameState(t, c, before)

	resp := transitions(w, c)
	if len(resp.Transitions) != 3 || resp.Transitions[2].Rotation == nil || resp.Transitions[0].Rotation != nil {
		t.Fatalf("%d transitions", len(resp.Transitions))
	}
	nb, err := c.FollowTransitions(resp, at(now))
	if err != nil {
		t.Fatalf("following the transitions: %v", err)
	}
	cur := w.d.TrustBundle()
	if nb.Sequence != 4 || !nb.CA.Equal(cur.CA) || !nb.Log.Equal(cur.Log) || c.Bundle().Sequence != 4 || c.TreeSize() != w.d.Size() {
		t.Fatalf("pinned to bundle %d at size %d", c.Bundle().Sequence, c.TreeSize())
	}
	lr := lookupBob(t, w, c, now+1)
	if len(lr.Devices) != 3 {
		t.Fatalf("%d devices", len(lr.Devices))
	}
	// The history from before the CA rotation verifies: the walk taught
	// the old CA.
	if _, err := c.VerifyHistory(w.tenant, w.bob, kt.Position{}, must(w.d.History(w.bob, 0, c.TreeSize())), at(now+1)); err != nil {
		t.Fatalf("history after the walk: %v", err)
	}
	// The state restores with the new bundle.
	rc := must(restore(c, nb))
	must(w.d.PublishEpoch(at(now + 2)))
	lookupBob(t, w, rc, now+3)

	// A client with no checkpoint yet walks from size 0.
	if _, err := fresh.FollowTransitions(transitions(w, fresh), at(now+3)); err != nil {
		t.Fatalf("following from size 0: %v", err)
	}
	lookupBob(t, w, fresh, now+3)

	// Nothing to follow: the latest checkpoint only.
	must(w.d.PublishEpoch(at(now + 4)))
	if nb2, err := c.FollowTransitions(transitions(w, c), at(now+4)); err != nil || nb2.Sequence != 4 || c.TreeSize() != w.d.Size() {
		t.Fatalf("no transition: %v", err)
	}
}

// TestFollowTransitionsStale: transition checkpoints may be old, the
// latest one may not. A directory that stopped cosigning leaves the
// client where it was; once it cosigns again, the same transitions pass.
func TestFollowTransitionsStale(t *testing.T) {
	w := newWorld(t, 91)
	c := w.client(t)
	lookupBob(t, w, c, 2)
	rotateAll(t, w, 3)
	late := 24 * 60 // a day later, nothing cosigned since
	before := state(t, c)
	if _, err := c.FollowTransitions(transitions(w, c), at(late)); !errors.Is(err, kt.ErrTransitionsIncomplete) || !errors.Is(err, tlog.ErrStale) {
		t.Fatalf("stale latest checkpoint: got %v", err)
	}
	sameState(t, c, before)
	ok(t, w.d.Cosign(at(late)))
	if _, err := c.FollowTransitions(transitions(w, c), at(late)); err != nil {
		t.Fatalf("transitions a day old, latest fresh: %v", err)
	}
}

// TestFollowTransitionsRefused: a withheld, forged, unannounced or
// tampered transition is refused with a typed error, and the client's
// state does not change.
func TestFollowTransitionsRefused(t *testing.T) {
	w := newWorld(t, 92)
	c := w.client(t)
	lookupBob(t, w, c, 2)
	now := rotateAll(t, w, 3)
	fresh := func() *kt.TransitionsResponse { return transitions(w, c) }
	wantRefused := func(name string, resp *kt.TransitionsResponse, want error) {
		t.Helper()
		before := state(t, c)
		_, err := c.FollowTransitions(resp, at(now))
		if !errors.Is(err, want) {
			t.Fatalf("%s: got %v, want %v", name, err, want)
		}
		sameState(t, c, before)
	}
	// Withheld transitions, the latest checkpoint proven from where the
	// others end.
	withhold := func(r *kt.TransitionsResponse, keep ...int) *kt.TransitionsResponse {
		var trs []*kt.Transition
		walk := r.BaseSize
		for _, i := range keep {
			trs = append(trs, r.Transitions[i])
			text, _, _ := bytes.Cut(r.Transitions[i].Note, []byte("\n\n"))
			walk = max(walk, must(tlog.ParseCheckpoint(append(text, '\n'))).Size)
		}
		r.Transitions, r.Latest = trs, must(w.d.Consistency(walk)).Checkpoint
		return r
	}
	wantRefused("middle transition withheld", withhold(fresh(), 0, 2), kt.ErrBundleRefused)
	wantRefused("last transition withheld", withhold(fresh(), 0, 1), kt.ErrTransitionsIncomplete)
	wantRefused("every transition withheld", withhold(fresh()), kt.ErrTransitionsIncomplete)
	// The latest checkpoint proven from another size.
	r := fresh()
	r.Latest = must(w.d.Consistency(c.TreeSize())).Checkpoint
	wantRefused("latest from the base size", r, kt.ErrBaseSize)
	// Out of order.
	r = fresh()
	r.Transitions[0], r.Transitions[1] = r.Transitions[1], r.Transitions[0]
	wantRefused("reordered", r, kt.ErrBundleRefused)
	// A transition checkpoint whose log signature is broken.
	r = fresh()
	note := r.Transitions[1].Note
	note[len(note)-10] ^= 1
	wantRefused("bad checkpoint signature", r, kt.ErrBundleRefused)
	// A bundle record that the map does not commit: a proof error, with
	// its evidence.
	r = fresh()
	r.Transitions[1].BundleRecord.Value = r.Transitions[0].BundleRecord.Value
	wantRefused("substituted bundle", r, kt.ErrProof)
	_, err := c.FollowTransitions(r, at(now))
	if te, isTE := errors.AsType[*kt.TransitionError](err); !isTE || te.Index != 1 || te.Held != 2 {
		t.Fatalf("transition error %v", err)
	}
	if pe, isPE := errors.AsType[*kt.KTProofError](err); !isPE || pe.Step != kt.StepRecord || len(pe.Checkpoint) == 0 || len(pe.Response) == 0 {
		t.Fatalf("proof error without evidence: %v", err)
	}
	// The CA rotation's statement withheld: the new bundle is not the
	// pinned CA's.
	r = fresh()
	r.Transitions[2].Rotation, r.Transitions[2].RotationRecord = nil, nil
	wantRefused("rotation withheld", r, kt.ErrBundleRefused)
	// A request answered for another size or bundle.
	r = fresh()
	r.After++
	wantRefused("another bundle", r, kt.ErrBaseSize)
	must(c.FollowTransitions(fresh(), at(now)))
}

// TestFollowTransitionsForged: a bundle the CA did not sign, and a log
// key the checkpoint does not announce, are refused as transitions.
func TestFollowTransitionsForged(t *testing.T) {
	t.Run("forged bundle", func(t *testing.T) {
		w := newWorld(t, 93)
		c := w.client(t)
		lookupBob(t, w, c, 2)
		cur := w.d.TrustBundle()
		forger := must(org.GenerateMemorySigner(w.d.Rand))
		var admins []*org.AdminKey
		for _, k := range w.d.Admins {
			admins = append(admins, k.Public())
		}
		ft := must(org.NewTenant(org.TenantParams{ID: w.tenant, Admins: admins, Threshold: 2, LogOrigin: cur.LogOrigin,
			Log: cur.Log, VRF: cur.VRF, Witnesses: cur.Witnesses}, forger, at(3)))
		must(ft.Publish(at(3)))
		p := must(ft.ProposeWitnesses(org.WitnessSet{Witnesses: cur.Witnesses.Witnesses, Quorum: len(cur.Witnesses.Witnesses)}, at(3)))
		var aps []*org.Approval
		for _, k := range w.d.Admins[:2] {
			aps = append(aps, must(org.ApproveTrustBundle(k, p)))
		}
		fb := must(ft.ReplaceWitnesses(p, aps))
		w.d.Inject(org.Label{Org: org.OrgLabelTrustBundle}, must(fb.Marshal()))
		must(w.d.PublishEpoch(at(4)))
		before := state(t, c)
		_, err := c.FollowTransitions(transitions(w, c), at(5))
		if te, isTE := errors.AsType[*kt.TransitionError](err); !isTE || !errors.Is(err, org.ErrUnknownIssuer) {
			t.Fatalf("forged bundle: got %v", err)
		} else if te.Index != 0 {
			t.Fatalf("refused transition %d", te.Index)
		}
		sameState(t, c, before)
	})
	t.Run("unannounced log key", func(t *testing.T) {
		w := newWorld(t, 94)
		c := w.client(t)
		lookupBob(t, w, c, 2)
		next := must(keys.GenerateLogKey(w.d.Rand))
		p := must(w.d.Tenant.ProposeLogKey(next.Public(), at(3)))
		var aps []*org.Approval
		for _, k := range w.d.Admins[:2] {
			aps = append(aps, must(org.ApproveTrustBundle(k, p)))
		}
		must(w.d.Tenant.RotateLogKey(p, aps))
		must(w.d.PublishEpoch(at(4)))
		before := state(t, c)
		if _, err := c.FollowTransitions(transitions(w, c), at(5)); !errors.Is(err, kt.ErrBundleRefused) {
			t.Fatalf("unannounced log key: got %v", err)
		}
		sameState(t, c, before)
	})
}

// TestFollowTransitionsInsideTrustedTree: a client that kept verifying
// after a witness change its bundle still accepts (a higher quorum of the
// same witnesses), without following it, and missed a log key rotation
// after it, walks a first transition inside the tree it trusts, then the
// second.
func TestFollowTransitionsInsideTrustedTree(t *testing.T) {
	w := newWorld(t, 95)
	c := w.client(t)
	lookupBob(t, w, c, 2)
	cur := w.d.TrustBundle()
	p := must(w.d.Tenant.ProposeWitnesses(org.WitnessSet{Witnesses: cur.Witnesses.Witnesses, Quorum: 3}, at(3)))
	var aps []*org.Approval
	for _, k := range w.d.Admins[:2] {
		aps = append(aps, must(org.ApproveTrustBundle(k, p)))
	}
	must(w.d.Tenant.ReplaceWitnesses(p, aps))
	must(w.d.PublishEpoch(at(4)))
	must(w.d.PublishEpoch(at(5)))
	lookupBob(t, w, c, 6) // past the transition, under bundle 1
	must(w.d.RotateLogKey(at(7)))
	must(w.d.PublishEpoch(at(8)))
	must(w.d.PublishEpoch(at(9)))
	resp := transitions(w, c)
	if len(resp.Transitions) != 2 {
		t.Fatalf("%d transitions", len(resp.Transitions))
	}
	nb, err := c.FollowTransitions(resp, at(10))
	if err != nil {
		t.Fatalf("following: %v", err)
	}
	if nb.Sequence != 3 || nb.Witnesses.Quorum != 3 || !nb.Log.Equal(w.d.TrustBundle().Log) {
		t.Fatal("wrong bundle")
	}
	lookupBob(t, w, c, 10)
}

// TestFollowTransitionsAtTransition: the latest checkpoint is the one of
// the epoch that published the last bundle, signed by the previous log
// key. The client follows from it, judged fresh on its cosignatures (or on
// a later cosigning of it, under the bundle it is under); its state keeps
// that key until the next checkpoint, and restores.
func TestFollowTransitionsAtTransition(t *testing.T) {
	w := newWorld(t, 96)
	c := w.client(t)
	lookupBob(t, w, c, 2)
	must(w.d.RotateLogKey(at(3)))
	must(w.d.PublishEpoch(at(4))) // the latest: announces the new key
	first := transitions(w, c)
	if len(first.Transitions) != 1 || len(first.Latest.Note) == 0 {
		t.Fatal("transitions at the transition")
	}
	// An hour and a half later, nothing cosigned since: stale.
	before := state(t, c)
	if _, err := c.FollowTransitions(transitions(w, c), at(95)); !errors.Is(err, tlog.ErrStale) {
		t.Fatalf("stale transition as the latest: %v", err)
	}
	sameState(t, c, before)
	// Cosigned again: the same checkpoint with fresh cosignatures, under
	// the old bundle, after an old copy of the transition.
	ok(t, w.d.Cosign(at(95)))
	r := transitions(w, c)
	r.Transitions = first.Transitions
	nb, err := c.FollowTransitions(r, at(95))
	if err != nil {
		t.Fatalf("following at the transition: %v", err)
	}
	rc := must(restore(c, nb))
	must(w.d.PublishEpoch(at(96))) // the new key's first
	lookupBob(t, w, c, 96)
	lookupBob(t, w, rc, 96)
}

// TestFollowTransitionsCorpus: the seeds of FuzzFollowTransitions are
// followed by the client it restores, so that the fuzzer starts from
// accepted responses.
func TestFollowTransitionsCorpus(t *testing.T) {
	seeds := corpus(t)["TransitionsResponse"]
	cl := must(kt.RestoreClient(kt.Config{Bundle: transitionsWorld.firstBundle, MaxAge: maxAge}, transitionsState))
	if nb, err := cl.FollowTransitions(must(kt.ParseTransitionsResponse(seeds[1])), at(9)); err != nil || nb.Sequence != 3 {
		t.Fatalf("corpus seed: %v", err)
	}
}

// BenchmarkFollowTransitions measures a walk over a log key rotation, a
// witness change and a CA rotation (each checkpoint with three hybrid
// witnesses), and reports the response's size.
func BenchmarkFollowTransitions(b *testing.B) {
	w := newWorld(b, 97)
	c := w.client(b)
	lookupBob(b, w, c, 2)
	st := state(b, c)
	now := rotateAll(b, w, 3)
	resp := transitions(w, c)
	enc := must(resp.Marshal())
	for b.Loop() {
		b.StopTimer()
		cl := must(kt.RestoreClient(kt.Config{Bundle: w.firstBundle, MaxAge: maxAge}, st))
		b.StartTimer()
		if _, err := cl.FollowTransitions(must(kt.ParseTransitionsResponse(enc)), at(now)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(enc)), "response-bytes")
}
