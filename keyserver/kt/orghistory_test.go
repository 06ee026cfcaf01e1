package kt_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/kt/kttest"
	"github.com/moat-im/moat/keyserver/org"
)

// caSign returns enc, an org statement encoding, with its body re-signed
// by the directory's CA under label: what a malicious operator holding
// the CA key can publish.
func caSign(t testing.TB, d *kttest.Directory, label string, enc []byte) []byte {
	t.Helper()
	body := enc[:len(enc)-org.SignatureSize]
	msg := append(append([]byte(label), 0), body...)
	return append(bytes.Clone(body), must(d.CA.Sign(msg))...)
}

func admin(d *kttest.Directory, i int) org.AdminID { return d.Admins[i].Public().ID() }

// wantStatementError checks that err is a proof error of step value that
// wraps want, and that the client's state did not change.
func wantStatementError(t *testing.T, c *kt.Client, before []byte, err, want error) {
	t.Helper()
	pe, isProof := errors.AsType[*kt.KTProofError](err)
	if !isProof || pe.Step != kt.StepValue || !errors.Is(err, want) || !errors.Is(err, kt.ErrProof) {
		t.Fatalf("got %v, want a value proof error wrapping %v", err, want)
	}
	sameState(t, c, before)
}

// TestOrgStatementHistory: policy bundles, the escrow policy and roster
// changes are each published under their org label; a client verifies the
// latest with VerifyOrgLookup and every change, in order, with
// VerifyOrgHistory, incrementally from a position it kept.
func TestOrgStatementHistory(t *testing.T) {
	w := newWorld(t, 70)
	d := w.d
	must(d.Tenant.PublishPolicy(admin(d, 0), "dlp", []org.PolicyEntry{{Key: "words", Value: []byte("alpha")}}, at(1)))
	esc := must(kttest.NewEscrow(d.Rand, 3))
	pol := must(esc.Policy(w.tenant, 1, 2, d.TrustBundle().Witnesses, at(1), 0, 1))
	must(d.Tenant.SetEscrowPolicy(admin(d, 0), pol, at(1)))
	must(d.PublishEpoch(at(2)))

	c := w.client(t)
	dlp := org.OrgLabelPolicyPrefix + "dlp"
	lr := must(c.VerifyOrgLookup(dlp, must(d.LookupOrg(dlp, c.TreeSize())), at(2)))
	if pb := lr.Statement.(*org.PolicyBundle); pb.Sequence != 1 || string(pb.Entries[0].Value) != "alpha" {
		t.Fatalf("policy %+v", pb)
	}
	er := must(c.VerifyOrgLookup(org.OrgLabelEscrowPolicy, must(d.LookupOrg(org.OrgLabelEscrowPolicy, c.TreeSize())), at(2)))
	if ep := er.Statement.(*org.EscrowPolicy); ep.KeyAt(at(3)) == nil || len(ep.AuditorSignatures) != 2 {
		t.Fatal("escrow policy without its key or signatures")
	}

	// Version 2 of the policy; a roster change removing admin 3 and
	// adding a new admin, approved by two admins; the next escrow policy
	// under a new auditor set, admitted by the old one.
	must(d.Tenant.PublishPolicy(admin(d, 0), "dlp", []org.PolicyEntry{{Key: "words", Value: []byte("alpha beta")}}, at(3)))
	newAdmin := must(org.GenerateAdminKey(d.Rand, org.AdminID{0xad, 0x77}, org.AdminEd25519))
	cur := d.Tenant.Roster()
	prop := must(org.ProposeRoster(cur, []*org.AdminKey{cur.Admins[0], cur.Admins[1], newAdmin.Public()}, 2, at(3)))
	must(d.Tenant.UpdateRoster(prop, []*org.Approval{must(org.ApproveRoster(d.Admins[0], prop)), must(org.ApproveRoster(d.Admins[2], prop))}))
	esc2 := must(kttest.NewEscrow(d.Rand, 2))
	pol2 := must(esc2.Policy(w.tenant, 2, 2, d.TrustBundle().Witnesses, at(3), 0, 1))
	ok(t, esc.Admit(pol2, 1, 2))
	must(d.Tenant.SetEscrowPolicy(admin(d, 1), pol2, at(3)))
	must(d.PublishEpoch(at(4)))

	// The whole policy history, then nothing new from its end.
	h := must(c.VerifyOrgHistory(dlp, kt.OrgPosition{}, must(d.HistoryOrg(dlp, 0, c.TreeSize())), at(4)))
	if len(h.Statements) != 2 || h.Statements[1].(*org.PolicyBundle).Sequence != 2 || h.Position.Version != 2 {
		t.Fatalf("policy history: %d statements, position %d", len(h.Statements), h.Position.Version)
	}
	h2 := must(c.VerifyOrgHistory(dlp, h.Position, must(d.HistoryOrg(dlp, h.Position.Version, c.TreeSize())), at(4)))
	if len(h2.Statements) != 0 || h2.Position.Version != 2 {
		t.Fatal("history from the latest position not empty")
	}
	// The roster's history shows who was added and removed.
	rh := must(c.VerifyOrgHistory(org.OrgLabelAdminRoster, kt.OrgPosition{}, must(d.HistoryOrg(org.OrgLabelAdminRoster, 0, c.TreeSize())), at(4)))
	if n := len(rh.Statements); n != 2 {
		t.Fatalf("roster history of %d versions", n)
	}
	r1, r2 := rh.Statements[0].(*org.AdminRoster), rh.Statements[1].(*org.AdminRoster)
	if r1.Admin(admin(d, 2)) == nil || r2.Admin(admin(d, 2)) != nil || r2.Admin(newAdmin.Public().ID()) == nil {
		t.Fatal("roster change not visible in the history")
	}
	// The escrow history: the new auditor set follows from the old.
	eh := must(c.VerifyOrgHistory(org.OrgLabelEscrowPolicy, kt.OrgPosition{}, must(d.HistoryOrg(org.OrgLabelEscrowPolicy, 0, c.TreeSize())), at(4)))
	if len(eh.Statements) != 2 || eh.Statements[1].(*org.EscrowPolicy).Auditors[0].Name != "auditor 1" || len(eh.Statements[1].(*org.EscrowPolicy).Auditors) != 2 {
		t.Fatal("escrow history")
	}
	// A position that does not match the response is refused.
	if _, err := c.VerifyOrgHistory(dlp, kt.OrgPosition{Version: 1}, must(d.HistoryOrg(dlp, 0, c.TreeSize())), at(4)); !errors.Is(err, kt.ErrSince) {
		t.Fatalf("mismatched since: %v", err)
	}
}

// TestOrgStatementTampered: a directory that holds the CA key (or not)
// publishes org statements that do not verify; the client refuses each
// with a typed error and keeps its state.
func TestOrgStatementTampered(t *testing.T) {
	w := newWorld(t, 71)
	d := w.d
	dlp := org.OrgLabelPolicyPrefix + "dlp"
	must(d.Tenant.PublishPolicy(admin(d, 0), "dlp", []org.PolicyEntry{{Key: "words", Value: []byte("alpha")}}, at(1)))
	esc := must(kttest.NewEscrow(d.Rand, 3))
	must(d.Tenant.SetEscrowPolicy(admin(d, 0), must(esc.Policy(w.tenant, 1, 2, d.TrustBundle().Witnesses, at(1), 0, 2)), at(1)))
	must(d.PublishEpoch(at(2)))
	c := w.client(t)
	must(c.VerifyOrgLookup(dlp, must(d.LookupOrg(dlp, c.TreeSize())), at(2)))
	goodPolicy := must(d.Records(org.Label{Org: dlp}))[0].Value
	goodEscrow := must(d.Records(org.Label{Org: org.OrgLabelEscrowPolicy}))[0].Value

	lookup := func(name string, value []byte, epoch int) (*kt.OrgLookupResult, []byte, error) {
		t.Helper()
		d.Inject(org.Label{Org: name}, value)
		must(d.PublishEpoch(at(epoch)))
		before := state(t, c)
		r, err := c.VerifyOrgLookup(name, must(d.LookupOrg(name, c.TreeSize())), at(epoch))
		return r, before, err
	}

	// A bad CA signature.
	bad := bytes.Clone(goodPolicy)
	bad[len(bad)-1] ^= 1
	_, before, err := lookup(dlp, bad, 3)
	wantStatementError(t, c, before, err, org.ErrBadSignature)

	// A statement of another tenant, signed by the CA.
	other := must(org.ParsePolicyBundle(goodPolicy))
	other.Tenant = org.TenantID{0x7e, 0x99}
	_, before, err = lookup(dlp, caSign(t, d, "moat/v1/org/policy-bundle", must(other.Marshal())), 4)
	wantStatementError(t, c, before, err, org.ErrWrongTenant)

	// Another policy's bundle under this policy's label.
	wrongID := must(org.ParsePolicyBundle(goodPolicy))
	wrongID.PolicyID = "other"
	_, before, err = lookup(dlp, caSign(t, d, "moat/v1/org/policy-bundle", must(wrongID.Marshal())), 5)
	wantStatementError(t, c, before, err, org.ErrWrongSubject)

	// An escrow policy signed by the CA with an auditor signature
	// dropped: one of two.
	dropped := must(org.ParseEscrowPolicy(goodEscrow))
	dropped.Sequence++
	dropped.AuditorSignatures = dropped.AuditorSignatures[:1]
	_, before, err = lookup(org.OrgLabelEscrowPolicy, caSign(t, d, "moat/v1/org/escrow-policy", must(dropped.Marshal())), 6)
	wantStatementError(t, c, before, err, org.ErrAuditorQuorum)
	if _, isAE := errors.AsType[*org.AuditorSignatureError](err); !isAE {
		t.Fatalf("not an AuditorSignatureError: %v", err)
	}

	// An escrow key substituted by the CA: the auditors' signatures fail.
	sub := must(org.ParseEscrowPolicy(goodEscrow))
	sub.Sequence++
	sub.Keys[0].PublicKey = must(kttest.XWingKey(d.Rand))
	_, before, err = lookup(org.OrgLabelEscrowPolicy, caSign(t, d, "moat/v1/org/escrow-policy", must(sub.Marshal())), 7)
	wantStatementError(t, c, before, err, org.ErrBadSignature)

}

// TestOrgHistoryCatchesWhatLookupsCannot: statements that verify one by
// one, published by an operator holding the CA key, but that do not follow
// the label's previous statement: a replayed old policy version, and a new
// escrow auditor set the outgoing set never admitted. Lookups accept them;
// the label's history refuses them.
func TestOrgHistoryCatchesWhatLookupsCannot(t *testing.T) {
	w := newWorld(t, 72)
	d := w.d
	hr := org.OrgLabelPolicyPrefix + "hr"
	must(d.Tenant.PublishPolicy(admin(d, 0), "hr", []org.PolicyEntry{{Key: "k", Value: []byte("v1")}}, at(1)))
	esc := must(kttest.NewEscrow(d.Rand, 3))
	must(d.Tenant.SetEscrowPolicy(admin(d, 0), must(esc.Policy(w.tenant, 1, 2, d.TrustBundle().Witnesses, at(1), 0, 1)), at(1)))
	must(d.PublishEpoch(at(2)))
	must(d.Tenant.PublishPolicy(admin(d, 0), "hr", []org.PolicyEntry{{Key: "k", Value: []byte("v2")}}, at(2)))
	must(d.PublishEpoch(at(3)))

	c := w.client(t)
	ph := must(c.VerifyOrgHistory(hr, kt.OrgPosition{}, must(d.HistoryOrg(hr, 0, c.TreeSize())), at(3)))
	eh := must(c.VerifyOrgHistory(org.OrgLabelEscrowPolicy, kt.OrgPosition{}, must(d.HistoryOrg(org.OrgLabelEscrowPolicy, 0, c.TreeSize())), at(3)))

	// Version 1 of the policy again, as the label's version 3; a rogue
	// 2-of-2 auditor set signing itself, CA-signed.
	d.Inject(org.Label{Org: hr}, must(d.Records(org.Label{Org: hr}))[0].Value)
	rogue := must(kttest.NewEscrow(d.Rand, 2))
	rp := must(rogue.Policy(w.tenant, 2, 2, d.TrustBundle().Witnesses, at(4), 0, 1))
	rp.Header = org.Header{Tenant: w.tenant, Sequence: 2, IssuedAt: at(4)}
	rp.Signature = make([]byte, org.SignatureSize)
	d.Inject(org.Label{Org: org.OrgLabelEscrowPolicy}, caSign(t, d, "moat/v1/org/escrow-policy", must(rp.Marshal())))
	must(d.PublishEpoch(at(4)))

	// Each verifies alone.
	fresh := w.client(t)
	must(fresh.VerifyOrgLookup(hr, must(d.LookupOrg(hr, fresh.TreeSize())), at(4)))
	must(fresh.VerifyOrgLookup(org.OrgLabelEscrowPolicy, must(d.LookupOrg(org.OrgLabelEscrowPolicy, fresh.TreeSize())), at(4)))

	// Their histories do not, from the kept positions or from the start.
	before := state(t, c)
	_, err := c.VerifyOrgHistory(hr, ph.Position, must(d.HistoryOrg(hr, ph.Position.Version, c.TreeSize())), at(4))
	wantStatementError(t, c, before, err, org.ErrStatementSequence)
	_, err = c.VerifyOrgHistory(hr, kt.OrgPosition{}, must(d.HistoryOrg(hr, 0, c.TreeSize())), at(4))
	wantStatementError(t, c, before, err, org.ErrStatementSequence)
	_, err = c.VerifyOrgHistory(org.OrgLabelEscrowPolicy, eh.Position, must(d.HistoryOrg(org.OrgLabelEscrowPolicy, eh.Position.Version, c.TreeSize())), at(4))
	wantStatementError(t, c, before, err, org.ErrAuditorQuorum)
	if ae, _ := errors.AsType[*org.AuditorSignatureError](err); ae == nil || !ae.Previous {
		t.Fatalf("not the outgoing set's quorum: %v", err)
	}
}
