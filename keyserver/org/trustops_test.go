package org

import (
	"bytes"
	"errors"
	"testing"

	"github.com/moat-im/moat/crypto/keys"
)

func approveBundle(t *testing.T, f *fixture, p *TrustBundle, admins ...int) []*Approval {
	t.Helper()
	var out []*Approval
	for _, i := range admins {
		out = append(out, must(ApproveTrustBundle(f.admins[i], p)))
	}
	return out
}

func TestRotateLogKey(t *testing.T) {
	f := newFixture(t, 90)
	_ = must(f.t.Publish(t0))
	old := f.t.TrustBundle()
	next := must(keys.GenerateLogKey(f.rnd)).Public()
	p := must(f.t.ProposeLogKey(next, t0.Add(60e9)))
	before := stateBytes(t, f.t)
	// One admin alone, or the same admin twice, is refused.
	if _, err := f.t.RotateLogKey(p, approveBundle(t, f, p, 0)); !errors.Is(err, ErrInsufficientApprovals) {
		t.Fatalf("single admin: got %v", err)
	}
	if _, err := f.t.RotateLogKey(p, approveBundle(t, f, p, 1, 1)); !errors.Is(err, ErrDuplicateApproval) {
		t.Fatalf("same admin twice: got %v", err)
	}
	// Approvals of another proposal do not count.
	other := must(f.t.ProposeLogKey(must(keys.GenerateLogKey(f.rnd)).Public(), t0.Add(60e9)))
	if _, err := f.t.RotateLogKey(p, approveBundle(t, f, other, 0, 1)); !errors.Is(err, ErrApprovalInvalid) {
		t.Fatalf("approvals of another bundle: got %v", err)
	}
	// A witness proposal is not a log key rotation.
	wp := must(f.t.ProposeWitnesses(WitnessSet{Witnesses: old.Witnesses.Witnesses[:1], Quorum: 1}, t0))
	if _, err := f.t.RotateLogKey(wp, approveBundle(t, f, wp, 0, 1)); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("witness change as log rotation: got %v", err)
	}
	if !bytes.Equal(before, stateBytes(t, f.t)) {
		t.Fatal("refused rotations changed the state")
	}
	nb := must(f.t.RotateLogKey(p, approveBundle(t, f, p, 0, 2)))
	if nb.Sequence != old.Sequence+1 || !nb.Log.Equal(next) || nb.LogOrigin != old.LogOrigin {
		t.Fatal("wrong new bundle")
	}
	ok(t, nb.Verify(f.signer.Public(), tid(1)))
	ups := must(f.t.Publish(t0.Add(120e9)))
	if len(ups) != 1 || ups[0].Label.Org != OrgLabelTrustBundle {
		t.Fatalf("published %v", ups)
	}
	// Replaying the same proposal is refused (sequence).
	if _, err := f.t.RotateLogKey(p, approveBundle(t, f, p, 0, 2)); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("replay: got %v", err)
	}
}

func TestReplaceWitnesses(t *testing.T) {
	f := newFixture(t, 91)
	old := f.t.TrustBundle()
	ws := WitnessSet{Witnesses: append([]WitnessKey{newWitness(t, f.rnd, "witness.example.net/w3", false)}, old.Witnesses.Witnesses...), Quorum: 2}
	p := must(f.t.ProposeWitnesses(ws, t0))
	if _, err := f.t.ReplaceWitnesses(p, approveBundle(t, f, p, 2)); !errors.Is(err, ErrInsufficientApprovals) {
		t.Fatalf("single admin: got %v", err)
	}
	nb := must(f.t.ReplaceWitnesses(p, approveBundle(t, f, p, 1, 2)))
	if len(nb.Witnesses.Witnesses) != 3 || nb.Sequence != 2 || !nb.Log.Equal(old.Log) {
		t.Fatal("wrong new bundle")
	}
	ok(t, nb.Verify(f.signer.Public(), tid(1)))
	if _, err := f.t.ProposeWitnesses(WitnessSet{Witnesses: ws.Witnesses, Quorum: 4}, t0); err == nil {
		t.Fatal("quorum above the witness count accepted")
	}
}
