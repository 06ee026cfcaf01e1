package tlog

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"
)

// publish has the real witnesses ws cosign log l's checkpoint of the given
// size at time now, as a log does: it sends old size 0, and on 409 retries
// with the witness's size and a consistency proof. It returns the note with
// the cosignatures of the witnesses that agreed.
func publish(t *testing.T, l *testLog, size uint64, now time.Time, ws ...*witnessFixture) []byte {
	t.Helper()
	msg := l.sign(size)
	for _, w := range ws {
		body, err := w.add(0, nil, msg, now)
		var conflict *ConflictError
		if errors.As(err, &conflict) && conflict.Size <= size {
			var p []Hash
			if conflict.Size > 0 {
				p = l.proof(conflict.Size, size)
			}
			body, err = w.add(conflict.Size, p, msg, now)
		}
		if err != nil {
			continue // this witness refuses
		}
		if msg, err = AddCosignatures(msg, body); err != nil {
			t.Fatal(err)
		}
	}
	return msg
}

func cosignerCount(t *testing.T, msg []byte) int {
	_, sigs, _ := splitNote(msg)
	return bytes.Count(sigs, []byte("\n")) - 2
}

func witnessKeys(ws ...*witnessFixture) []*WitnessPublicKey {
	var out []*WitnessPublicKey
	for _, w := range ws {
		out = append(out, w.w.PublicKeys()...)
	}
	return out
}

func newTestVerifier(t *testing.T, l *testLog, quorum int, ws ...*witnessFixture) *Verifier {
	v, err := NewVerifier(VerifierConfig{
		Origin: l.origin, LogKey: l.key.Public(), Witnesses: witnessKeys(ws...),
		Quorum: quorum, MaxAge: time.Hour, NotBefore: testFloor,
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: error %v, want %v", what, err, want)
	}
}

func mustAccept(t *testing.T, what string, v *Verifier, msg []byte, proof []Hash, now time.Time) *Checkpoint {
	t.Helper()
	c, err := v.VerifyCheckpoint(msg, proof, now)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return c
}

// roundTrip persists and restores v, as a client does between runs.
func roundTrip(t *testing.T, v *Verifier) *Verifier {
	t.Helper()
	st, err := v.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	r, err := RestoreVerifier(v.cfg, st)
	if err != nil {
		t.Fatalf("RestoreVerifier: %v", err)
	}
	st2, _ := r.MarshalState()
	if !bytes.Equal(st, st2) {
		t.Fatal("restored state marshals differently")
	}
	return r
}

func threeWitnesses(t *testing.T, logs ...*testLog) (*witnessFixture, *witnessFixture, *witnessFixture) {
	return newWitnessFixture(t, "witness.example/w1", logs...),
		newWitnessFixture(t, "witness2.example/w", logs...),
		newWitnessFixture(t, "witness3.example/w", logs...)
}

// TestT27SplitView: a log shows two clients different trees.
//
// With a majority quorum (2 of 3), any two quorums share a witness, and
// that witness refuses the second view: the client shown it never accepts
// it. With a quorum that does not intersect (1 of 2, each witness shown one
// view), both clients accept their views; when they exchange checkpoints
// each detects the fork and keeps both signed checkpoints as evidence, and
// stays forked across restarts.
func TestT27SplitView(t *testing.T) {
	now := testTime
	t.Run("MajorityQuorum", func(t *testing.T) {
		l := newTestLog(t, testOrigin, "a")
		w1, w2, w3 := threeWitnesses(t, l)
		alice, bob := newTestVerifier(t, l, 2, w1, w2, w3), newTestVerifier(t, l, 2, w1, w2, w3)
		l.append("a", "b", "c", "d")
		c4 := publish(t, l, 4, now, w1, w2, w3)
		mustAccept(t, "alice c4", alice, c4, nil, now)
		mustAccept(t, "bob c4", bob, c4, nil, now)

		// The log forks: view X for Alice, view Y for Bob, both of size 6.
		x, y := l, newTestLog(t, testOrigin, "a")
		y.append("a", "b", "c", "d")
		x.append("x1", "x2")
		y.append("y1", "y2")
		now = now.Add(10 * time.Minute)
		cx := publish(t, x, 6, now, w1, w2, w3)
		if cosignerCount(t, cx) != 6 {
			t.Fatalf("view X has %d cosignature lines, want 6", cosignerCount(t, cx))
		}
		// Every witness refuses view Y: it already cosigned another root
		// at size 6 (422 after the 409).
		for _, w := range []*witnessFixture{w1, w2, w3} {
			_, err := w.add(6, nil, y.sign(6), now)
			wantStatus(t, "witness on view Y", err, 422)
		}
		cy := publish(t, y, 6, now, w1, w2, w3)
		if cosignerCount(t, cy) != 0 {
			t.Fatal("a witness cosigned the second view")
		}
		mustAccept(t, "alice X", alice, cx, x.proof(4, 6), now)
		_, err := bob.VerifyCheckpoint(cy, y.proof(4, 6), now)
		wantErr(t, "bob Y", err, ErrNoQuorum)
		if c, _ := bob.Checkpoint(); c.Size != 4 {
			t.Fatal("bob's state moved")
		}
		// Bob, handed Alice's checkpoint, accepts it: it is the witnessed view.
		mustAccept(t, "bob X", bob, cx, x.proof(4, 6), now)
	})

	t.Run("PartitionedWitnesses", func(t *testing.T) {
		l := newTestLog(t, testOrigin, "a")
		w1, w2, _ := threeWitnesses(t, l)
		alice, bob := newTestVerifier(t, l, 1, w1, w2), newTestVerifier(t, l, 1, w1, w2)
		l.append("a", "b", "c", "d")
		c4 := publish(t, l, 4, now, w1, w2)
		mustAccept(t, "alice c4", alice, c4, nil, now)
		mustAccept(t, "bob c4", bob, c4, nil, now)

		x, y := l, newTestLog(t, testOrigin, "a")
		y.append("a", "b", "c", "d")
		x.append("x1", "x2")
		y.append("y1", "y2")
		now := now.Add(10 * time.Minute)
		cx := publish(t, x, 6, now, w1) // w1 sees only X
		cy := publish(t, y, 6, now, w2) // w2 sees only Y
		mustAccept(t, "alice X", alice, cx, x.proof(4, 6), now)
		mustAccept(t, "bob Y", bob, cy, y.proof(4, 6), now)

		// Gossip: each passes the other its checkpoint.
		_, err := alice.VerifyCheckpoint(cy, nil, now)
		var fork *ForkError
		if !errors.As(err, &fork) || !fork.Proven() {
			t.Fatalf("alice: %v, want a proven *ForkError", err)
		}
		if !bytes.Equal(fork.Trusted, cx) || !bytes.Equal(fork.Conflicting, cy) {
			t.Fatal("evidence is not the two signed checkpoints verbatim")
		}
		// The evidence stands on its own: both notes carry valid log
		// signatures for one size and two roots.
		a, errA := OpenCheckpoint(fork.Trusted, testOrigin, l.key.Public())
		b, errB := OpenCheckpoint(fork.Conflicting, testOrigin, l.key.Public())
		if errA != nil || errB != nil || a.Size != b.Size || a.Root == b.Root {
			t.Fatal("evidence does not prove the fork")
		}
		// Alice keeps it: the fork is final and survives a restart.
		later := now.Add(time.Minute)
		for i, av := range []*Verifier{alice, roundTrip(t, alice)} {
			if _, err := av.VerifyCheckpoint(cx, nil, later); !errors.As(err, &fork) {
				t.Fatalf("%d: forked verifier accepted a checkpoint: %v", i, err)
			}
			if av.Fork() == nil || !bytes.Equal(av.Fork().Conflicting, cy) {
				t.Fatalf("%d: fork evidence lost", i)
			}
		}
		_, err = bob.VerifyCheckpoint(cx, nil, now)
		if !errors.As(err, &fork) || !bytes.Equal(fork.Trusted, cy) || !bytes.Equal(fork.Conflicting, cx) {
			t.Fatalf("bob: %v", err)
		}
	})

	t.Run("PartitionedDifferentSizes", func(t *testing.T) {
		// Bob's branch grows to 8 before the exchange: Alice gets it with
		// the log's consistency proof, which cannot link it to her view.
		l := newTestLog(t, testOrigin, "a")
		w1, w2, _ := threeWitnesses(t, l)
		alice := newTestVerifier(t, l, 1, w1, w2)
		l.append("a", "b", "c", "d")
		mustAccept(t, "alice c4", alice, publish(t, l, 4, now, w1, w2), nil, now)
		x, y := l, newTestLog(t, testOrigin, "a")
		y.append("a", "b", "c", "d")
		x.append("x1", "x2")
		y.append("y1", "y2", "y3", "y4")
		cx := publish(t, x, 6, now, w1)
		cy := publish(t, y, 8, now, w2)
		mustAccept(t, "alice X", alice, cx, x.proof(4, 6), now)
		_, err := alice.VerifyCheckpoint(cy, y.proof(6, 8), now)
		var fork *ForkError
		if !errors.As(err, &fork) || fork.Proven() || len(fork.Proof) == 0 {
			t.Fatalf("alice: %v, want an unproven *ForkError with the proof", err)
		}
		if c, _ := alice.Checkpoint(); c.Size != 6 || alice.Fork() != nil {
			t.Fatal("an unproven fork changed the state")
		}
	})
}

// TestT28StaleHead: a log that freezes its head (stops getting fresh
// cosignatures) is rejected once the witnessed time is older than MaxAge,
// and the tree size never goes backwards, across restarts.
func TestT28StaleHead(t *testing.T) {
	l := newTestLog(t, testOrigin, "a")
	w1, w2, w3 := threeWitnesses(t, l)
	v := newTestVerifier(t, l, 2, w1, w2, w3)
	l.append("a", "b", "c", "d", "e", "f", "g")
	t0 := testTime
	c7 := publish(t, l, 7, t0, w1, w2, w3)
	mustAccept(t, "c7", v, c7, nil, t0)

	// The same checkpoint is fine while it is younger than MaxAge...
	mustAccept(t, "c7 after 59m", v, c7, nil, t0.Add(59*time.Minute))
	// ...and not after.
	_, err := v.VerifyCheckpoint(c7, nil, t0.Add(time.Hour+time.Second))
	wantErr(t, "frozen head", err, ErrStale)
	// The log re-submits the unchanged tree: fresh cosignatures revive it.
	t2 := t0.Add(2 * time.Hour)
	mustAccept(t, "refreshed c7", v, publish(t, l, 7, t2, w1, w2, w3), nil, t2)

	// A smaller tree: honest witnesses refuse it...
	c5 := publish(t, l, 5, t2, w1, w2, w3)
	if cosignerCount(t, c5) != 0 {
		t.Fatal("a witness cosigned a smaller tree")
	}
	_, err = v.VerifyCheckpoint(c5, nil, t2)
	wantErr(t, "smaller, uncosigned", err, ErrNoQuorum)
	// ...and even witnesses that lost their state (fresh stores, same
	// keys), which do cosign it, cannot make the client go back.
	amnesiac := func(w *witnessFixture) *witnessFixture {
		nw, _ := NewWitness(WitnessConfig{Keys: w.keys, Logs: w.w.logs, Store: NewMemoryWitnessStore()})
		return &witnessFixture{t: t, w: nw, keys: w.keys, log: l}
	}
	c5 = publish(t, l, 5, t2, amnesiac(w1), amnesiac(w2))
	_, err = v.VerifyCheckpoint(c5, nil, t2)
	wantErr(t, "smaller, cosigned", err, ErrSizeRollback)
	v = roundTrip(t, v)
	_, err = v.VerifyCheckpoint(c5, nil, t2)
	wantErr(t, "smaller, after restart", err, ErrSizeRollback)
	if c, _ := v.Checkpoint(); c.Size != 7 {
		t.Fatal("size went backwards")
	}

	// A checkpoint cosigned earlier than the trusted one is refused even
	// when it is within MaxAge (ErrTimeRollback), and growth continues.
	l.append("h")
	old8 := publish(t, l, 8, t2.Add(-time.Minute), amnesiac(w1), amnesiac(w2))
	_, err = v.VerifyCheckpoint(old8, l.proof(7, 8), t2)
	wantErr(t, "older witnessed time", err, ErrTimeRollback)
	t3 := t2.Add(time.Minute)
	mustAccept(t, "c8", v, publish(t, l, 8, t3, w1, w2, w3), l.proof(7, 8), t3)
}

// TestT30Bootstrap: a client without state (new, or state lost) accepts
// only a checkpoint that a quorum of distinct witnesses cosigned recently.
func TestT30Bootstrap(t *testing.T) {
	l := newTestLog(t, testOrigin, "a")
	w1, w2, w3 := threeWitnesses(t, l)
	l.append("a", "b", "c", "d", "e")
	t0 := testTime
	old := publish(t, l, 5, t0, w1, w2, w3)
	l.append("f", "g")
	now := t0.Add(3 * time.Hour)
	fresh := publish(t, l, 7, now, w1, w2, w3)
	onlyW1 := dropLines(fresh, func(line []byte) bool {
		return !bytes.Contains(line, []byte("witness2")) && !bytes.Contains(line, []byte("witness3"))
	})
	w1Twice := append(bytes.Clone(onlyW1), onlyW1[bytes.LastIndex(onlyW1[:len(onlyW1)-1], []byte("\n"))+1:]...)
	// w1's ML-DSA-44 line without its Ed25519 line, and w2's pair: w1 does
	// not count, since it is configured with both keys.
	halfW1 := dropLines(fresh, func(line []byte) bool {
		k := w1.keys[0].Public()
		return !bytes.HasPrefix(line, []byte("— "+k.Name()+" ")) || lineIDOf(line) != k.KeyID()
	})
	halfW1 = dropLines(halfW1, func(line []byte) bool { return !bytes.Contains(line, []byte("witness3")) })

	for name, tc := range map[string]struct {
		msg   []byte
		proof []Hash
		want  error
	}{
		"log signature only":      {l.sign(7), nil, ErrNoQuorum},
		"one witness":             {onlyW1, nil, ErrNoQuorum},
		"one witness twice":       {w1Twice, nil, ErrNoQuorum},
		"half a hybrid witness":   {halfW1, nil, ErrNoQuorum},
		"old head":                {old, nil, ErrStale},
		"proof without state":     {fresh, []Hash{{1}}, ErrBadProof},
		"not signed by the log":   {newTestLog(t, testOrigin, "b").sign(0), nil, ErrBadSignature},
		"cosigned, other origin":  {publish(t, newTestLog(t, "moat.example/directory/x", "a"), 0, now, w1, w2), nil, ErrUnknownOrigin},
		"classical log line only": {dropLines(fresh, func(line []byte) bool { return lineKeyID(line) != logMLDSA65ID(testOrigin, l.key.Public()) }), nil, ErrBadSignature},
	} {
		v := newTestVerifier(t, l, 2, w1, w2, w3)
		_, err := v.VerifyCheckpoint(tc.msg, tc.proof, now)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
		if c, _ := v.Checkpoint(); c != nil {
			t.Errorf("%s: state changed", name)
		}
	}

	// State lost after accepting size 7: the server offers the old head.
	v := newTestVerifier(t, l, 2, w1, w2, w3)
	if _, err := v.VerifyCheckpoint(old, nil, now); !errors.Is(err, ErrStale) {
		t.Fatalf("old head after state loss: %v", err)
	}
	c := mustAccept(t, "fresh", v, fresh, nil, now)
	if c.Size != 7 || v.Time().Unix() != now.Unix() {
		t.Fatalf("accepted %+v at %v", c, v.Time())
	}
	// The bootstrapped state behaves as any: growth needs a proof.
	l.append("h")
	c8 := publish(t, l, 8, now, w1, w2, w3)
	_, err := v.VerifyCheckpoint(c8, nil, now)
	var fork *ForkError
	if !errors.As(err, &fork) {
		t.Fatalf("growth without a proof: %v", err)
	}
	mustAccept(t, "c8", roundTrip(t, v), c8, l.proof(7, 8), now)
}

func lineIDOf(line []byte) uint32 {
	c, err := ParseCosignature(line)
	if err != nil {
		return 0
	}
	return c.KeyID
}

// TestT46ClockSkew: the client's clock is 24 hours off in either direction.
// The verifier's time T is the latest of the local clock, the time floor F
// (NotBefore, raised by every accepted witnessed time) and T at every
// earlier acceptance; freshness is judged on the signed witness time W
// against T. Precisely:
//
//   - clock behind: cosignatures more than MaxSkew after T do not count, so
//     a genuinely fresh checkpoint is refused (ErrFuture); a stale one that
//     merely looks fresh against the wrong clock is refused because it is
//     older than the last accepted checkpoint (ErrTimeRollback), smaller
//     (ErrSizeRollback), or older than F - MaxAge (ErrStale); and one that
//     passes every other rule is refused because the clock is provably
//     behind signed time (a *ClockError): the floor never silently stands
//     in for the clock;
//   - clock ahead: a fresh checkpoint looks stale and is refused
//     (ErrStale); nothing is accepted, so the state is not poisoned, and
//     once the clock is right the same checkpoint is accepted.
func TestT46ClockSkew(t *testing.T) {
	const day = 24 * time.Hour
	real := testTime // the true time
	l := newTestLog(t, testOrigin, "a")
	w1, w2, w3 := threeWitnesses(t, l)
	l.append("a", "b", "c")
	stale := publish(t, l, 3, real.Add(-day), w1, w2, w3) // a head frozen a day ago
	l.append("d")
	last := publish(t, l, 4, real.Add(-30*time.Minute), w1, w2, w3)
	l.append("e")
	fresh := publish(t, l, 5, real, w1, w2, w3)
	// trusted: a client that accepted size 4 half an hour ago with a right clock.
	trusted := func(t *testing.T) *Verifier {
		v := newTestVerifier(t, l, 2, w1, w2, w3)
		mustAccept(t, "last", v, last, nil, real.Add(-30*time.Minute))
		return roundTrip(t, v)
	}
	// unchanged fails the test if a refusal changed v's state.
	unchanged := func(t *testing.T, v *Verifier, before []byte) {
		t.Helper()
		if after, _ := v.MarshalState(); !bytes.Equal(before, after) {
			t.Fatal("a refusal changed the state")
		}
	}

	t.Run("Behind/Fresh", func(t *testing.T) {
		v := trusted(t)
		_, err := v.VerifyCheckpoint(fresh, l.proof(4, 5), real.Add(-day))
		wantErr(t, "fresh checkpoint, clock -24h", err, ErrFuture)
	})
	t.Run("Behind/Stale", func(t *testing.T) {
		v := trusted(t)
		// Against the wrong clock this head is exactly fresh, and its tree
		// is smaller; build an equal-size stale head to isolate the time
		// rule: size 4 witnessed a day ago by fresh-state witnesses.
		amnesiac := func(w *witnessFixture) *witnessFixture {
			nw, _ := NewWitness(WitnessConfig{Keys: w.keys, Logs: w.w.logs, Store: NewMemoryWitnessStore()})
			return &witnessFixture{t: t, w: nw, keys: w.keys, log: l}
		}
		stale4 := publish(t, l, 4, real.Add(-day), amnesiac(w1), amnesiac(w2))
		_, err := v.VerifyCheckpoint(stale4, nil, real.Add(-day))
		wantErr(t, "stale checkpoint, clock -24h", err, ErrTimeRollback)
		_, err = v.VerifyCheckpoint(stale, nil, real.Add(-day))
		wantErr(t, "stale smaller checkpoint, clock -24h", err, ErrSizeRollback)
	})
	t.Run("Behind/Bootstrap", func(t *testing.T) {
		// A fresh client whose floor comes from its enrolment ten minutes
		// ago (docs/spec/tlog.md §Time floor).
		v, _ := NewVerifier(VerifierConfig{Origin: testOrigin, LogKey: l.key.Public(), Witnesses: witnessKeys(w1, w2, w3),
			Quorum: 2, MaxAge: time.Hour, NotBefore: real.Add(-10 * time.Minute)})
		before, _ := v.MarshalState()
		_, err := v.VerifyCheckpoint(stale, nil, real.Add(-day))
		wantErr(t, "bootstrap on a stale head, clock -24h", err, ErrStale)
		_, err = v.VerifyCheckpoint(fresh, nil, real.Add(-day))
		wantErr(t, "bootstrap on a fresh head, clock -24h", err, ErrFuture)
		unchanged(t, v, before)
	})
	t.Run("Behind/BootstrapOldBundle", func(t *testing.T) {
		// The gap this floor closes: a trust bundle issued 90 days ago is
		// the only floor, the clock is a day behind, and the head was
		// frozen a day ago. Against the bundle's time alone the head
		// looks fresh; the floor of an enrolment ten minutes ago refuses
		// it, before and after a restart.
		bundleIssued, enrolled := real.Add(-90*day), real.Add(-10*time.Minute)
		cfg := VerifierConfig{Origin: testOrigin, LogKey: l.key.Public(), Witnesses: witnessKeys(w1, w2, w3),
			Quorum: 2, MaxAge: time.Hour, NotBefore: enrolled} // the later of bundleIssued and enrolled
		v, _ := NewVerifier(cfg)
		_, err := v.VerifyCheckpoint(stale, nil, real.Add(-day))
		wantErr(t, "old bundle, enrolment floor, stale head, clock -24h", err, ErrStale)
		st, _ := v.MarshalState()
		cfg.NotBefore = bundleIssued // a restart configures only the bundle's time
		r, err := RestoreVerifier(cfg, st)
		if err != nil {
			t.Fatal(err)
		}
		_, err = r.VerifyCheckpoint(stale, nil, real.Add(-day))
		wantErr(t, "after a restart", err, ErrStale)
		// No floor at all is not a configuration.
		cfg.NotBefore = time.Time{}
		if _, err := NewVerifier(cfg); err == nil {
			t.Fatal("verifier without a time floor")
		}
	})
	t.Run("Behind/BootstrapFreshHead", func(t *testing.T) {
		// The floor vouches for the fresh head's time, so its
		// cosignatures count and it is fresh; but the local clock is a
		// day behind signed time, and that is reported, not trusted.
		v, _ := NewVerifier(VerifierConfig{Origin: testOrigin, LogKey: l.key.Public(), Witnesses: witnessKeys(w1, w2, w3),
			Quorum: 2, MaxAge: time.Hour, NotBefore: real})
		before, _ := v.MarshalState()
		_, err := v.VerifyCheckpoint(fresh, nil, real.Add(-day))
		var ce *ClockError
		if !errors.As(err, &ce) || !errors.Is(err, ErrClockBehind) || !ce.Floor.Equal(real) || !ce.Now.Equal(real.Add(-day)) {
			t.Fatalf("clock a day behind the floor: got %v", err)
		}
		unchanged(t, v, before)
		if err := v.CheckClock(real.Add(-day)); !errors.Is(err, ErrClockBehind) {
			t.Fatalf("CheckClock: %v", err)
		}
		// Within MaxSkew of the floor, the clock is believed.
		if err := v.CheckClock(real.Add(-DefaultMaxSkew)); err != nil {
			t.Fatalf("CheckClock at the skew: %v", err)
		}
		mustAccept(t, "clock fixed", v, fresh, nil, real)
	})
	t.Run("Ahead", func(t *testing.T) {
		v := trusted(t)
		before, _ := v.MarshalState()
		_, err := v.VerifyCheckpoint(fresh, l.proof(4, 5), real.Add(day))
		wantErr(t, "fresh checkpoint, clock +24h", err, ErrStale)
		if c, _ := v.Checkpoint(); c.Size != 4 || v.Time().Unix() != real.Add(-30*time.Minute).Unix() {
			t.Fatal("a rejection changed the state")
		}
		unchanged(t, v, before)
		// The clock is fixed: accepted.
		mustAccept(t, "clock fixed", roundTrip(t, v), fresh, l.proof(4, 5), real)
	})
	t.Run("AheadBootstrap", func(t *testing.T) {
		v := newTestVerifier(t, l, 2, w1, w2, w3)
		_, err := v.VerifyCheckpoint(fresh, nil, real.Add(day))
		wantErr(t, "bootstrap, clock +24h", err, ErrStale)
	})
	t.Run("ClockGoesBack", func(t *testing.T) {
		// Accepted with a right clock at real; the clock then jumps back a
		// day. The floor is now real (the accepted witnessed time): a
		// checkpoint that would be fresh against it is refused because
		// the clock is behind signed time, one witnessed later than
		// T + MaxSkew does not count, and nothing changes the state until
		// the clock is right again.
		v := trusted(t)
		mustAccept(t, "fresh", v, fresh, l.proof(4, 5), real)
		before, _ := v.MarshalState()
		l.append("f")
		soon := publish(t, l, 6, real.Add(4*time.Minute), w1, w2, w3)
		_, err := v.VerifyCheckpoint(soon, l.proof(5, 6), real.Add(-day))
		wantErr(t, "witnessed 4 min after T, clock -24h", err, ErrClockBehind)
		l.append("g")
		later := publish(t, l, 7, real.Add(time.Hour), w1, w2, w3)
		_, err = v.VerifyCheckpoint(later, l.proof(5, 7), real.Add(-day))
		wantErr(t, "witnessed an hour after T, clock -24h", err, ErrFuture)
		unchanged(t, v, roundTripState(t, v, before))
		mustAccept(t, "clock fixed", v, later, l.proof(5, 7), real.Add(time.Hour))
	})
}

// roundTripState returns before after checking that v restores from it.
func roundTripState(t *testing.T, v *Verifier, before []byte) []byte {
	t.Helper()
	if _, err := RestoreVerifier(v.cfg, before); err != nil {
		t.Fatal(err)
	}
	return before
}

// TestT46TimeFloor: the time floor is persisted, never goes back (across
// MarshalState and RestoreVerifier, a restore with an older NotBefore, a
// repin, and an old-format state), and rises with every accepted witnessed
// time.
func TestT46TimeFloor(t *testing.T) {
	real := testTime
	l := newTestLog(t, testOrigin, "a")
	w1, w2, w3 := threeWitnesses(t, l)
	cfg := VerifierConfig{Origin: testOrigin, LogKey: l.key.Public(), Witnesses: witnessKeys(w1, w2, w3),
		Quorum: 2, MaxAge: time.Hour, NotBefore: real.Add(-10 * time.Minute)}
	v, _ := NewVerifier(cfg)
	if !v.Floor().Equal(cfg.NotBefore) {
		t.Fatalf("floor %v", v.Floor())
	}
	// Before bootstrap the floor is all the state holds, and it survives.
	st, _ := v.MarshalState()
	older := cfg
	older.NotBefore = real.Add(-90 * 24 * time.Hour)
	r, err := RestoreVerifier(older, st)
	if err != nil || !r.Floor().Equal(cfg.NotBefore) {
		t.Fatalf("restored floor %v, %v", r.Floor(), err)
	}
	// A later NotBefore raises it.
	newer := cfg
	newer.NotBefore = real.Add(-5 * time.Minute)
	if r, _ := RestoreVerifier(newer, st); !r.Floor().Equal(newer.NotBefore) {
		t.Fatalf("restored floor %v under a later NotBefore", r.Floor())
	}
	// An accepted checkpoint raises it to its witnessed time.
	l.append("a", "b")
	c2 := publish(t, l, 2, real, w1, w2, w3)
	mustAccept(t, "c2", v, c2, nil, real)
	if !v.Floor().Equal(real) {
		t.Fatalf("floor %v after accepting a checkpoint witnessed at %v", v.Floor(), real)
	}
	st, _ = v.MarshalState()
	r, err = RestoreVerifier(older, st)
	if err != nil || !r.Floor().Equal(real) {
		t.Fatalf("restored floor %v, %v", r.Floor(), err)
	}
	// A repin to a bundle with an older issue time keeps it.
	p, err := r.Repin(older)
	if err != nil || !p.Floor().Equal(real) {
		t.Fatalf("repinned floor %v, %v", p.Floor(), err)
	}
	if err := p.CheckClock(real.Add(-time.Hour)); !errors.Is(err, ErrClockBehind) {
		t.Fatalf("repinned verifier believes a clock an hour behind: %v", err)
	}
	// A state in the encoding without a floor restores with its witnessed
	// time as the floor, and is rewritten in the current encoding.
	ts, _ := parseTrustState(st)
	ts.legacy = true
	leg, _ := ts.marshal()
	if !bytes.HasPrefix(leg, []byte(labelTrustState)) || len(leg) != len(st)-len(labelVerifierState)+len(labelTrustState)-8 {
		t.Fatal("legacy encoding")
	}
	r, err = RestoreVerifier(older, leg)
	if err != nil || !r.Floor().Equal(real) {
		t.Fatalf("legacy state: floor %v, %v", r.Floor(), err)
	}
	if out, _ := r.MarshalState(); !bytes.Equal(out, st) {
		t.Fatal("legacy state not rewritten in the current encoding")
	}
}

func TestQuorumTime(t *testing.T) {
	l := newTestLog(t, testOrigin, "a")
	w1, w2, w3 := threeWitnesses(t, l)
	l.append("a")
	msg := l.sign(1)
	msg = cosignNote(t, msg, testTime, w1.keys...)
	msg = cosignNote(t, msg, testTime.Add(-2*time.Hour), w2.keys...)
	msg = cosignNote(t, msg, testTime.Add(-3*time.Hour), w3.keys...)
	v := newTestVerifier(t, l, 2, w1, w2, w3)
	_, err := v.VerifyCheckpoint(msg, nil, testTime)
	wantErr(t, "second-newest is two hours old", err, ErrStale)
	v = newTestVerifier(t, l, 1, w1, w2, w3)
	mustAccept(t, "quorum 1", v, msg, nil, testTime)
	if v.Time().Unix() != testTime.Unix() {
		t.Fatal("quorum time")
	}
	// A line from a configured witness key that fails to verify rejects
	// the whole note (signed-note: a known key's bad signature).
	cs, _ := CosignCheckpoint(w2.keys[0], l.checkpoint(1), testTime)
	cs.Signature[0] ^= 1
	forged, _ := cs.Marshal()
	bad := append(bytes.Clone(dropLines(msg, func(line []byte) bool { return !bytes.Contains(line, []byte("witness2")) })), forged...)
	_, err = newTestVerifier(t, l, 1, w1, w2, w3).VerifyCheckpoint(bad, nil, testTime)
	wantErr(t, "note with a forged witness line", err, ErrBadSignature)
}

func TestNewVerifierRejects(t *testing.T) {
	l := newTestLog(t, testOrigin, "a")
	w1, w2, _ := threeWitnesses(t, l)
	ok := VerifierConfig{Origin: testOrigin, LogKey: l.key.Public(), Witnesses: witnessKeys(w1, w2), Quorum: 2, MaxAge: time.Hour, NotBefore: testFloor}
	if _, err := NewVerifier(ok); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*VerifierConfig){
		"quorum 0":      func(c *VerifierConfig) { c.Quorum = 0 },
		"quorum > n":    func(c *VerifierConfig) { c.Quorum = 3 },
		"no log key":    func(c *VerifierConfig) { c.LogKey = nil },
		"bad origin":    func(c *VerifierConfig) { c.Origin = "a b" },
		"no MaxAge":     func(c *VerifierConfig) { c.MaxAge = 0 },
		"negative skew": func(c *VerifierConfig) { c.MaxSkew = -1 },
		"no time floor": func(c *VerifierConfig) { c.NotBefore = time.Time{} },
		"floor at 0":    func(c *VerifierConfig) { c.NotBefore = time.Unix(0, 0) },
		"duplicate key": func(c *VerifierConfig) { c.Witnesses = append(c.Witnesses, c.Witnesses[0]) },
		"nil witness":   func(c *VerifierConfig) { c.Witnesses = append(c.Witnesses, nil) },
		"two keys one type": func(c *VerifierConfig) {
			c.Witnesses = append(c.Witnesses, otherSeed(t, "witness.example/w1").Public())
		},
	} {
		cfg := ok
		cfg.Witnesses = append([]*WitnessPublicKey(nil), ok.Witnesses...)
		mut(&cfg)
		if _, err := NewVerifier(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func otherSeed(t *testing.T, name string) *WitnessPrivateKey {
	k, err := GenerateWitnessKey(seeded("another"), name, CosignatureEd25519)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestTrustStateStrict(t *testing.T) {
	l := newTestLog(t, testOrigin, "a")
	w1, w2, _ := threeWitnesses(t, l)
	v := newTestVerifier(t, l, 1, w1, w2)
	empty, _ := v.MarshalState()
	if r, err := RestoreVerifier(v.cfg, empty); err != nil || r.Fork() != nil {
		t.Fatal(err)
	}
	l.append("a")
	mustAccept(t, "c1", v, publish(t, l, 1, testTime, w1), nil, testTime)
	st, _ := v.MarshalState()
	other := newTestLog(t, "moat.example/directory/other", "a")
	otherCfg := v.cfg
	otherCfg.Origin = other.origin
	if _, err := RestoreVerifier(otherCfg, st); err == nil {
		t.Error("state of another log restored")
	}
	otherKey := v.cfg
	otherKey.LogKey = testLogKey(t, "b").Public()
	if _, err := RestoreVerifier(otherKey, st); err == nil {
		t.Error("state restored under another log key")
	}
	for name, b := range map[string][]byte{
		"trailing":  append(bytes.Clone(st), 0),
		"truncated": st[:len(st)-1],
		"label":     append([]byte("moat/v1/tlog/verifier-statE"), st[len(labelVerifierState):]...),
		"empty":     nil,
	} {
		if _, err := RestoreVerifier(v.cfg, b); err == nil {
			t.Errorf("%s: restored", name)
		}
	}
	for name, s := range map[string]*trustState{
		"seen < time":             {floor: 5, time: 5, seen: 4, checkpoint: []byte("x")},
		"time without checkpoint": {floor: 1, time: 1, seen: 1},
		"fork without checkpoint": {floor: 1, fork: []byte("x")},
		"time 2^63":               {floor: 1 << 63, time: 1 << 63, seen: 1 << 63, checkpoint: []byte("x")},
		"floor 2^63":              {floor: 1 << 63, time: 1, seen: 1, checkpoint: v.note},
		"floor 0":                 {floor: 0},
		"floor < time":            {floor: 1, time: 2, seen: 2, checkpoint: v.note},
		"legacy seen < time":      {legacy: true, time: 5, seen: 4, checkpoint: v.note},
		"unverifiable checkpoint": {floor: 1, time: 1, seen: 1, checkpoint: []byte("x")},
		"fork that is not a fork": {floor: 1, time: 1, seen: 1, checkpoint: v.note, fork: v.note},
	} {
		b, _ := s.marshal()
		if _, err := RestoreVerifier(v.cfg, b); err == nil {
			t.Errorf("%s: restored", name)
		}
	}
	_ = fmt.Sprint
}
