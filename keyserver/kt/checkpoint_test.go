package kt_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/kt"
)

// TestCheckpointRules: the checkpoint a response carries goes through
// crypto/tlog's client rules, whose errors (a fork among them) pass
// through, and a response that reuses the trusted checkpoint is held to
// the same freshness.
func TestCheckpointRules(t *testing.T) {
	w := newWorld(t, 50)
	c := w.client(t)
	must(c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, 0)), at(2)))

	t.Run("base size", func(t *testing.T) {
		must(w.d.PublishEpoch(at(3)))
		r := must(w.d.Lookup(w.alice, 0)) // relative to size 0, the client is at 1
		before := state(t, c)
		if _, err := c.VerifyLookup(w.tenant, w.alice, r, at(4)); !errors.Is(err, kt.ErrBaseSize) {
			t.Fatalf("got %v", err)
		}
		sameState(t, c, before)
		must(c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, c.TreeSize())), at(4)))
	})

	t.Run("omitted unchanged checkpoint", func(t *testing.T) {
		w.d.OmitUnchangedCheckpoint = true
		defer func() { w.d.OmitUnchangedCheckpoint = false }()
		r := must(w.d.Lookup(w.alice, c.TreeSize()))
		if len(r.Checkpoint.Note) != 0 {
			t.Fatal("note not omitted")
		}
		must(c.VerifyLookup(w.tenant, w.alice, r, at(5)))
		// A client with no checkpoint cannot use such a response.
		if _, err := w.client(t).VerifyLookup(w.tenant, w.alice, r, at(5)); !errors.Is(err, kt.ErrBaseSize) {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("T28 stale trusted checkpoint", func(t *testing.T) {
		late := at(2).Add(maxAge + time.Hour)
		r := must(w.d.Lookup(w.alice, c.TreeSize()))
		before := state(t, c)
		if _, err := c.VerifyLookup(w.tenant, w.alice, r, late); !errors.Is(err, tlog.ErrStale) {
			t.Fatalf("got %v", err)
		}
		sameState(t, c, before)
		// The log has the witnesses cosign again; the client accepts the
		// fresh cosignatures for the same tree.
		old := r
		ok(t, w.d.Cosign(late))
		r = must(w.d.Lookup(w.alice, c.TreeSize()))
		must(c.VerifyLookup(w.tenant, w.alice, r, late.Add(time.Minute)))
		// The client's time never goes back (T46): with its clock set
		// back behind signed time, the client refuses to decide (even on
		// its own trusted checkpoint) rather than trust the clock, and the
		// older cosignatures are refused as a rollback.
		before = state(t, c)
		_, err := c.UpdateCheckpoint(&kt.ConsistencyResponse{Checkpoint: kt.CheckpointUpdate{BaseSize: c.TreeSize()}}, at(6))
		if ce := (*tlog.ClockError)(nil); !errors.As(err, &ce) || !ce.Floor.Equal(c.Floor()) {
			t.Fatalf("unchanged checkpoint, clock behind: %v", err)
		}
		if _, err := c.VerifyLookup(w.tenant, w.alice, old, at(6)); !errors.Is(err, tlog.ErrTimeRollback) {
			t.Fatalf("older cosignatures: got %v", err)
		}
		sameState(t, c, before)
	})

	t.Run("consistency response", func(t *testing.T) {
		now := at(2).Add(maxAge + 2*time.Hour)
		must(w.d.PublishEpoch(now))
		cp := must(c.UpdateCheckpoint(must(w.d.Consistency(c.TreeSize())), now))
		if cp.Size != w.d.Size() {
			t.Fatal("not updated")
		}
		r := must(w.d.Consistency(c.TreeSize()))
		r.Checkpoint.Consistency = []tlog.Hash{{1}}
		before := state(t, c)
		if _, err := c.UpdateCheckpoint(r, now); !errors.Is(err, tlog.ErrBadProof) {
			t.Fatalf("got %v", err)
		}
		sameState(t, c, before)
	})

	t.Run("proven fork passes through", func(t *testing.T) {
		now := at(2).Add(maxAge + 2*time.Hour)
		cp, _ := c.Checkpoint()
		forged := must(tlog.SignCheckpoint(&tlog.Checkpoint{Origin: cp.Origin, Size: cp.Size, Root: tlog.Hash{7}}, w.d.LogKey))
		r := must(w.d.Lookup(w.alice, c.TreeSize()))
		r.Checkpoint.Note = forged
		_, err := c.VerifyLookup(w.tenant, w.alice, r, now)
		var fe *tlog.ForkError
		if !errors.As(err, &fe) || !fe.Proven() {
			t.Fatalf("got %v", err)
		}
		if c.Fork() == nil {
			t.Fatal("fork not kept")
		}
		// From now on every call returns the fork evidence.
		_, err = c.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, c.TreeSize())), now)
		if !errors.As(err, &fe) {
			t.Fatalf("after the fork: %v", err)
		}
		// And it survives a restart.
		c2 := must(kt.RestoreClient(w.d.Config(maxAge), state(t, c)))
		if c2.Fork() == nil {
			t.Fatal("fork lost on restore")
		}
	})
}

// TestT27SplitView: the operator, holding the log key, shows client B a
// second view of epoch 1. The witnesses refuse to cosign it (one of them
// colluding is not enough for the quorum), so B rejects it; A follows the
// real view. Neither accepts anything inconsistent with what it saw.
func TestT27SplitView(t *testing.T) {
	w := newWorld(t, 27)
	cA, cB := w.client(t), w.client(t)
	must(cA.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, 0)), at(2)))
	must(cB.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, 0)), at(2)))
	real := must(w.d.Lookup(w.alice, cA.TreeSize())) // epoch 0's proof, for its entry
	must(w.d.PublishEpoch(at(3)))

	// The second view: another epoch 1 (a second later, the map
	// unchanged), in which epoch 0's proof of alice still verifies.
	ctx := context.Background()
	alt := must(tlog.NewTree(ctx, tlog.NewMemoryNodeStore(), 0))
	e0 := must(real.Proof.Entry.Marshal())
	e1 := kt.EpochEntry{Epoch: 1, Time: at(3).Add(time.Second), MapRoot: real.Proof.Entry.MapRoot}
	must(alt.Append(ctx, e0, must(e1.Marshal())))
	cp := &tlog.Checkpoint{Origin: w.d.Origin, Size: 2, Root: must(alt.Root(ctx, 2))}
	note := must(tlog.SignCheckpoint(cp, w.d.LogKey))
	for i, wt := range w.d.Witnesses {
		proof := must(alt.ConsistencyProof(ctx, 1, 2))
		_, err := wt.AddCheckpoint(ctx, &tlog.AddCheckpointRequest{OldSize: 1, Proof: proof, Checkpoint: note}, at(3))
		var ce *tlog.ConflictError
		if !errors.As(err, &ce) {
			t.Fatalf("witness %d cosigned the second view: %v", i, err)
		}
	}
	// One colluding witness cosigns it anyway.
	for _, k := range w.d.WitnessKeys[0] {
		cs := must(tlog.CosignCheckpoint(k, cp, at(3)))
		note = must(tlog.AddCosignatures(note, must(cs.Marshal())))
	}
	r := cloneLookup(t, real)
	r.Checkpoint = kt.CheckpointUpdate{BaseSize: 1, Note: note, Consistency: must(alt.ConsistencyProof(ctx, 1, 2))}
	r.Proof.Entry = e1
	r.Proof.Inclusion = must(alt.InclusionProof(ctx, 1, 2))
	ok(t, r.Proof.Anchor(&r.Checkpoint))
	before := state(t, cB)
	_, err := cB.VerifyLookup(w.tenant, w.alice, r, at(4))
	if !errors.Is(err, tlog.ErrNoQuorum) {
		t.Fatalf("got %v, want ErrNoQuorum", err)
	}
	sameState(t, cB, before)
	// Checkpoint alone, as B would receive it to update: no quorum.
	_, err = cB.UpdateCheckpoint(&kt.ConsistencyResponse{Checkpoint: r.Checkpoint}, at(4))
	if !errors.Is(err, tlog.ErrNoQuorum) {
		t.Fatalf("got %v, want ErrNoQuorum", err)
	}
	sameState(t, cB, before)
	// Both follow the real view.
	must(cA.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, cA.TreeSize())), at(4)))
	must(cB.VerifyLookup(w.tenant, w.alice, must(w.d.Lookup(w.alice, cB.TreeSize())), at(4)))
	a, _ := cA.Checkpoint()
	b, _ := cB.Checkpoint()
	if a.Size != b.Size || a.Root != b.Root {
		t.Fatal("views differ")
	}
}
