package org

import (
	"bytes"
	"errors"
	"testing"
	"time"

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

// rotateCA rotates to next with the approval of admins 0 and 1.
func rotateCA(t *testing.T, f *fixture, next Signer, now time.Time) (*CARotationResult, error) {
	p, err := f.t.ProposeCA(next.Public(), now)
	if err != nil {
		return nil, err
	}
	return f.t.RotateCA(p, approveBundle(t, f, p, 0, 1), next, now)
}

// TestRotateCADualControl: a CA rotation needs the roster's threshold of
// admins approving the proposed bundle that names the new key; a single
// admin, approvals of another proposal, a proposal for another key than
// the signer's, or one that changes more than the CA are refused, and
// leave the state unchanged.
func TestRotateCADualControl(t *testing.T) {
	f := newFixture(t, 92)
	_ = must(f.t.Publish(t0))
	old := f.t.TrustBundle()
	next := must(GenerateMemorySigner(f.rnd))
	p := must(f.t.ProposeCA(next.Public(), t0.Add(60e9)))
	if p.Sequence != old.Sequence+1 || !p.CA.Equal(next.Public()) || p.Signature != nil {
		t.Fatal("wrong proposal")
	}
	if _, err := f.t.ProposeCA(old.CA, t0); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("proposing the current CA: %v", err)
	}
	before := stateBytes(t, f.t)
	if _, err := f.t.RotateCA(p, approveBundle(t, f, p, 0), next, t0); !errors.Is(err, ErrInsufficientApprovals) {
		t.Fatalf("single admin: got %v", err)
	}
	if _, err := f.t.RotateCA(p, approveBundle(t, f, p, 2, 2), next, t0); !errors.Is(err, ErrDuplicateApproval) {
		t.Fatalf("same admin twice: got %v", err)
	}
	other := must(GenerateMemorySigner(f.rnd))
	po := must(f.t.ProposeCA(other.Public(), t0.Add(60e9)))
	if _, err := f.t.RotateCA(p, approveBundle(t, f, po, 0, 1), next, t0); !errors.Is(err, ErrApprovalInvalid) {
		t.Fatalf("approvals of another proposal: got %v", err)
	}
	if _, err := f.t.RotateCA(po, approveBundle(t, f, po, 0, 1), next, t0); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("proposal for another key than the signer's: got %v", err)
	}
	pw := *p
	pw.Witnesses = WitnessSet{Witnesses: old.Witnesses.Witnesses[:1], Quorum: 1}
	if _, err := f.t.RotateCA(&pw, approveBundle(t, f, &pw, 0, 1), next, t0); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("a CA rotation that also changes the witnesses: got %v", err)
	}
	if !bytes.Equal(before, stateBytes(t, f.t)) {
		t.Fatal("refused rotations changed the state")
	}
	res := must(f.t.RotateCA(p, approveBundle(t, f, p, 1, 2), next, t0.Add(120e9)))
	if !res.TrustBundle.CA.Equal(next.Public()) || res.TrustBundle.Sequence != p.Sequence || !res.TrustBundle.IssuedAt.Equal(p.IssuedAt) {
		t.Fatal("new bundle is not the proposal")
	}
	ok(t, res.TrustBundle.Verify(next.Public(), tid(1)))
	ok(t, res.Rotation.Verify(old.CA, tid(1)))
	if _, err := f.t.RotateCA(p, approveBundle(t, f, p, 0, 1), next, t0.Add(180e9)); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("replayed rotation: got %v", err)
	}
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
	must(f.t.Publish(t0)) // the first bundle
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
	// One bundle change per publication: the next waits for Publish, so
	// that every bundle is a version of the trust-bundle label.
	p3 := must(f.t.ProposeWitnesses(WitnessSet{Witnesses: ws.Witnesses, Quorum: 3}, t0))
	before := stateBytes(t, f.t)
	if _, err := f.t.ReplaceWitnesses(p3, approveBundle(t, f, p3, 1, 2)); !errors.Is(err, ErrPendingUpdates) {
		t.Fatalf("second change before publishing: got %v", err)
	}
	lp := must(f.t.ProposeLogKey(must(keys.GenerateLogKey(f.rnd)).Public(), t0))
	if _, err := f.t.RotateLogKey(lp, approveBundle(t, f, lp, 1, 2)); !errors.Is(err, ErrPendingUpdates) {
		t.Fatalf("log key rotation before publishing: got %v", err)
	}
	if !bytes.Equal(before, stateBytes(t, f.t)) {
		t.Fatal("refused change changed the state")
	}
	must(f.t.Publish(t0))
	if nb := must(f.t.ReplaceWitnesses(p3, approveBundle(t, f, p3, 1, 2))); nb.Sequence != 3 {
		t.Fatalf("sequence %d", nb.Sequence)
	}
}
