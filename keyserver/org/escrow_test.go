package org

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"
)

func wantAuditorError(t *testing.T, err error, previous bool, want error) *AuditorSignatureError {
	t.Helper()
	ae, isAE := errors.AsType[*AuditorSignatureError](err)
	if !isAE || ae.Previous != previous || !errors.Is(err, want) {
		t.Fatalf("got %v, want an AuditorSignatureError (previous %v) wrapping %v", err, previous, want)
	}
	return ae
}

// TestEscrowPolicyAuditorSignatures: the directory signs an escrow policy
// only with M valid signatures of its auditor set, and a client verifying
// the published policy checks them again, so a CA that drops or forges an
// auditor signature is caught (escrow brief, principle 2; P7).
func TestEscrowPolicyAuditorSignatures(t *testing.T) {
	f := newFixture(t, 60)
	p, ks := testEscrowPolicyKeys(t, f)
	before := stateBytes(t, f.t)
	refused := func(q *EscrowPolicy) error {
		t.Helper()
		_, err := f.t.SetEscrowPolicy(aid(1), q, t0)
		if err == nil {
			t.Fatal("escrow policy accepted")
		}
		if !bytes.Equal(before, stateBytes(t, f.t)) {
			t.Fatal("refused escrow policy changed the state")
		}
		return err
	}

	// One auditor signature of a 2-of-3 set.
	one := cloneEscrowPolicy(p)
	one.AuditorSignatures = one.AuditorSignatures[:1]
	ae := wantAuditorError(t, refused(one), false, ErrAuditorQuorum)
	if ae.Valid != 1 || ae.Required != 2 {
		t.Fatalf("counted %d of %d", ae.Valid, ae.Required)
	}
	// One auditor's signature twice counts once (a hand-made policy: the
	// encoding forbids it).
	twice := cloneEscrowPolicy(one)
	twice.AuditorSignatures = append(twice.AuditorSignatures, twice.AuditorSignatures[0])
	wantAuditorError(t, twice.verifyAuditors(), false, ErrAuditorQuorum)
	if _, err := twice.body(); err == nil {
		t.Fatal("a policy with one auditor's signature twice encodes")
	}
	// A corrupted signature, named by its auditor.
	bad := cloneEscrowPolicy(p)
	bad.AuditorSignatures[1].Signature = bytes.Clone(bad.AuditorSignatures[1].Signature)
	bad.AuditorSignatures[1].Signature[70] ^= 1 // in the ML-DSA half
	if ae := wantAuditorError(t, refused(bad), false, ErrBadSignature); ae.Auditor != 2 {
		t.Fatalf("bad signature of auditor %d reported as %d", 2, ae.Auditor)
	}
	// The auditors signed another policy: a changed class voids their
	// signatures.
	changed := cloneEscrowPolicy(p)
	changed.Classes[0].Retention += time.Hour
	wantAuditorError(t, refused(changed), false, ErrBadSignature)
	// A substituted escrow key.
	sub := cloneEscrowPolicy(p)
	sub.Keys[0].PublicKey = testXWingKey(t, f)
	wantAuditorError(t, refused(sub), false, ErrBadSignature)
	// A non-auditor cannot sign.
	if _, err := SignEscrowPolicy(must(GenerateAuditorKey(f.rnd)), p, p.Auditors); !errors.Is(err, ErrUnknownAuditor) {
		t.Fatalf("outsider signing: %v", err)
	}
	// Another tenant's policy, a policy of the wrong version, previous
	// signatures on a first policy.
	other := cloneEscrowPolicy(p)
	other.Tenant = tid(9)
	if err := refused(other); !errors.Is(err, ErrWrongTenant) {
		t.Fatalf("other tenant: %v", err)
	}
	v2 := cloneEscrowPolicy(p)
	v2.PolicyVersion = 2
	if err := refused(v2); !errors.Is(err, ErrStatementSequence) {
		t.Fatalf("version 2 first: %v", err)
	}
	prevSigs := cloneEscrowPolicy(p)
	signAuditors(t, prevSigs, prevSigs.Auditors, &prevSigs.PreviousSignatures, ks[1])
	if err := refused(prevSigs); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("previous signatures on the first policy: %v", err)
	}

	// The good one, published and verified as a client does.
	sp := must(f.t.SetEscrowPolicy(aid(1), p, t0))
	if sp.Sequence != 1 || sp.PolicyVersion != 1 || sp.KeyAt(t0.Add(time.Hour)) == nil || sp.KeyAt(t0.Add(-time.Second)) != nil {
		t.Fatalf("escrow policy %d/%d", sp.Sequence, sp.PolicyVersion)
	}
	enc := publishedOrg(t, f, OrgLabelEscrowPolicy)
	got := must(ParseEscrowPolicy(enc))
	ok(t, got.Verify(f.t.CA(), tid(1)))
	if err := got.Verify(f.t.CA(), tid(2)); !errors.Is(err, ErrWrongTenant) {
		t.Fatalf("wrong tenant: %v", err)
	}
	tampered := bytes.Clone(enc)
	tampered[len(tampered)-100] ^= 1
	if err := must(ParseEscrowPolicy(tampered)).Verify(f.t.CA(), tid(1)); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("bad CA signature: %v", err)
	}
	// A CA that signs a policy with an auditor signature dropped.
	dropped := cloneEscrowPolicy(got)
	dropped.AuditorSignatures = dropped.AuditorSignatures[1:]
	ok(t, signStatement(f.signer, labelEscrowPolicy, dropped.body, &dropped.Signature))
	reparsed := must(ParseEscrowPolicy(must(dropped.Marshal())))
	wantAuditorError(t, reparsed.Verify(f.t.CA(), tid(1)), false, ErrAuditorQuorum)
}

// TestEscrowPolicyContinuity: a new auditor set is admitted only by M of
// the outgoing set; a new key period under the same set needs only the
// set; a CA rotation re-signs the same policy.
func TestEscrowPolicyContinuity(t *testing.T) {
	f := newFixture(t, 61)
	p1, ks := testEscrowPolicyKeys(t, f)
	must(f.t.SetEscrowPolicy(aid(1), p1, t0))
	cur := f.t.escrow

	// Version 2: the next period's key, same auditors.
	p2 := cloneEscrowPolicy(p1)
	p2.PolicyVersion, p2.AuditorSignatures = 2, nil
	p2.Keys = append(p2.Keys, EscrowKey{NotBefore: p1.Keys[0].NotAfter, NotAfter: p1.Keys[0].NotAfter.Add(p1.Period),
		PublicKey: testXWingKey(t, f), ShareHashes: [][32]byte{{4}, {5}, {6}}})
	signAuditors(t, p2, p2.Auditors, &p2.AuditorSignatures, ks[1], ks[2])
	must(f.t.SetEscrowPolicy(aid(2), p2, t0.Add(time.Hour)))
	ok(t, f.t.escrow.VerifyContinuity(cur))
	cur = f.t.escrow

	// Version 3: auditor "bob" replaced by "dave". Signed by the new set
	// alone, it is refused; with two of the old set too, accepted.
	dave := must(GenerateAuditorKey(f.rnd))
	p3 := cloneEscrowPolicy(p2)
	p3.PolicyVersion, p3.AuditorSignatures = 3, nil
	p3.Auditors[1] = Auditor{Name: "auditor dave", SigningKey: dave.Public(), EncryptionKey: testXWingKey(t, f)}
	newKeys := []*AuditorPrivateKey{ks[0], ks[2], dave}
	slices.SortFunc(p3.Auditors, func(a, b Auditor) int { return bytes.Compare([]byte(a.Name), []byte(b.Name)) })
	signAuditors(t, p3, p3.Auditors, &p3.AuditorSignatures, newKeys...)
	before := stateBytes(t, f.t)
	_, err := f.t.SetEscrowPolicy(aid(1), p3, t0.Add(2*time.Hour))
	wantAuditorError(t, err, true, ErrAuditorQuorum)
	// One outgoing auditor is not enough either.
	signAuditors(t, p3, cur.Auditors, &p3.PreviousSignatures, ks[1])
	_, err = f.t.SetEscrowPolicy(aid(1), p3, t0.Add(2*time.Hour))
	wantAuditorError(t, err, true, ErrAuditorQuorum)
	// A previous signature over another policy.
	forged := cloneEscrowPolicy(p3)
	forged.PreviousSignatures[0].Signature = cur.AuditorSignatures[0].Signature
	forged.PreviousSignatures[0].Auditor = cur.AuditorSignatures[0].Auditor
	_, err = f.t.SetEscrowPolicy(aid(1), forged, t0.Add(2*time.Hour))
	wantAuditorError(t, err, true, ErrBadSignature)
	if !bytes.Equal(before, stateBytes(t, f.t)) {
		t.Fatal("refused policies changed the state")
	}
	signAuditors(t, p3, cur.Auditors, &p3.PreviousSignatures, ks[0])
	must(f.t.SetEscrowPolicy(aid(1), p3, t0.Add(2*time.Hour)))
	ok(t, f.t.escrow.VerifyContinuity(cur))
	if err := f.t.escrow.VerifyContinuity(p1Signed(t, f, p1)); !errors.Is(err, ErrStatementSequence) {
		t.Fatalf("version 3 after 1: %v", err)
	}
	cur = f.t.escrow

	// A CA rotation re-signs the same policy: same version, continuity
	// holds without the auditors. The same version with another content
	// does not.
	must(f.t.Publish(t0))
	must(rotateCA(t, f, must(GenerateMemorySigner(f.rnd)), t0.Add(3*time.Hour)))
	rs := f.t.escrow
	if rs.Sequence != cur.Sequence+1 || rs.PolicyVersion != cur.PolicyVersion {
		t.Fatalf("re-signed policy %d/%d", rs.Sequence, rs.PolicyVersion)
	}
	ok(t, rs.Verify(f.t.CA(), tid(1)))
	ok(t, rs.VerifyContinuity(cur))
	other := cloneEscrowPolicy(rs)
	other.Classes = other.Classes[:1]
	if err := other.VerifyContinuity(cur); !errors.Is(err, ErrStatementSequence) {
		t.Fatalf("same version, other content: %v", err)
	}
}

// p1Signed returns the published form of p1 as the fixture's tenant
// signed it, for continuity checks against older policies.
func p1Signed(t *testing.T, f *fixture, p1 *EscrowPolicy) *EscrowPolicy {
	q := cloneEscrowPolicy(p1)
	q.Header = Header{Tenant: f.t.ID(), Sequence: 1, IssuedAt: t0}
	ok(t, signStatement(f.signer, labelEscrowPolicy, q.body, &q.Signature))
	return q
}

// publishedOrg publishes the tenant and returns the value of org label l.
func publishedOrg(t *testing.T, f *fixture, l string) []byte {
	t.Helper()
	for _, up := range must(f.t.Publish(t0)) {
		if up.Label.Org == l {
			return up.Value
		}
	}
	t.Fatalf("org label %s not published", l)
	return nil
}

// TestRosterChangeRefusedBelowThreshold: a roster change that would leave
// fewer admins than the threshold is refused, by the admin tool and by the
// tenant, and leaves the state unchanged; a removal that keeps enough
// admins is applied with M approvals.
func TestRosterChangeRefusedBelowThreshold(t *testing.T) {
	f := newFixture(t, 62)
	cur := f.t.Roster()
	if _, err := ProposeRoster(cur, cur.Admins[:1], 2, t0); !errors.Is(err, ErrRosterTooSmall) {
		t.Fatalf("one admin, threshold 2: %v", err)
	}
	if _, err := ProposeRoster(cur, cur.Admins, 4, t0); !errors.Is(err, ErrRosterTooSmall) {
		t.Fatalf("three admins, threshold 4: %v", err)
	}
	if _, err := ProposeRoster(cur, cur.Admins, 1, t0); !errors.Is(err, ErrRosterTooSmall) {
		t.Fatalf("threshold 1: %v", err)
	}
	before := stateBytes(t, f.t)
	// A hand-made proposal keeping threshold 3 with two admins.
	small := &AdminRoster{Header: Header{Tenant: tid(1), Sequence: 2, IssuedAt: t0}, Threshold: 3, Admins: cur.Admins[:2]}
	if _, err := f.t.UpdateRoster(small, nil); !errors.Is(err, ErrRosterTooSmall) {
		t.Fatalf("roster below threshold: %v", err)
	}
	if !bytes.Equal(before, stateBytes(t, f.t)) {
		t.Fatal("refused roster changed the state")
	}
	// Removing admin 3 and keeping threshold 2: approved by admins 1 and 3.
	p := must(ProposeRoster(cur, []*AdminKey{cur.Admins[1], cur.Admins[0]}, 2, t0.Add(time.Minute)))
	nr := must(f.t.UpdateRoster(p, []*Approval{must(ApproveRoster(f.admins[0], p)), must(ApproveRoster(f.admins[2], p))}))
	if len(nr.Admins) != 2 || nr.Sequence != 2 || nr.Admin(aid(3)) != nil {
		t.Fatalf("roster %d: %d admins", nr.Sequence, len(nr.Admins))
	}
	if _, err := f.t.AddUser(aid(3), uid(1), "X", DepartmentID{}, t0); !errors.Is(err, ErrUnknownAdmin) {
		t.Fatalf("removed admin acting: %v", err)
	}
	// A proposal for the old sequence is stale.
	if _, err := f.t.UpdateRoster(p, nil); !errors.Is(err, ErrStatementSequence) {
		t.Fatalf("stale proposal: %v", err)
	}
}
