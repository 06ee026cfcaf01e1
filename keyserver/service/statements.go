package service

import (
	"crypto/sha256"
	"net/http"
	"slices"
	"time"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
)

// Org statements through the admin API (docs/spec/directory-api.md §Admin
// operations, §Org statements): policy bundles, the escrow policy and the
// admin roster, each signed by the tenant's CA and published under its org
// label at the next epoch; and the history of an org label, through which
// clients see every change.

// statementOps are the admin operations whose bodies may carry large
// statements, bounded by Limits.MaxStatementBody instead of MaxBody.
var statementOps = map[string]bool{"publish-policy": true, "set-escrow-policy": true}

// adminBodyLimit returns the body limit of admin operation op.
func (s *Service) adminBodyLimit(op string) int64 {
	if statementOps[op] {
		return s.opts.Limits.MaxStatementBody
	}
	return s.opts.Limits.MaxBody
}

// opPublishPolicy signs the next version of a policy bundle
// (org.Tenant.PublishPolicy). Each user assigned to the policy gets a
// policy_changed entry in its timeline.
var opPublishPolicy = change(func(t *Tenant, p *principal, in *PublishPolicyRequest, now time.Time, out *OKResponse) error {
	entries := make([]org.PolicyEntry, len(in.Entries))
	for i, e := range in.Entries {
		entries[i] = org.PolicyEntry{Key: e.Key, Value: e.Value}
	}
	pb, err := t.org.PublishPolicy(p.id, in.PolicyID, entries, now)
	if err != nil {
		return err
	}
	out.Sequence = pb.Sequence
	return nil
})

// opAssignPolicy makes a user subject to a published policy bundle (or to
// none), a policy_changed entry in the user's timeline.
var opAssignPolicy = change(func(t *Tenant, p *principal, in *AssignPolicyRequest, now time.Time, out *OKResponse) error {
	uid, err := userParam(in.User)
	if err != nil {
		return err
	}
	_, err = t.org.AssignPolicy(p.id, uid, in.PolicyID, now)
	return err
})

// opSetEscrowPolicy publishes an escrow policy signed by its auditor set
// (org.Tenant.SetEscrowPolicy checks the auditors' signatures, and the
// outgoing set's for a new set). The body's header sequence and time and
// its CA signature are ignored: the tenant signs the policy with its own.
var opSetEscrowPolicy = change(func(t *Tenant, p *principal, in *EscrowPolicyRequest, now time.Time, out *OKResponse) error {
	pol, err := org.ParseEscrowPolicy(in.Policy)
	if err != nil {
		return badRequest("bad escrow policy")
	}
	sp, err := t.org.SetEscrowPolicy(p.id, pol, now)
	if err != nil {
		return err
	}
	out.Sequence = sp.Sequence
	return nil
})

// MarshalEscrowProposal returns the encoding of an escrow policy for
// admin/set-escrow-policy: the EscrowPolicy encoding with a placeholder
// header (sequence 1, time 0) and an all-zero CA signature, which the
// service replaces by its own.
func MarshalEscrowProposal(p *org.EscrowPolicy) ([]byte, error) {
	q := *p
	q.Header = org.Header{Tenant: p.Tenant, Sequence: 1, IssuedAt: time.Unix(0, 0)}
	q.Signature = make([]byte, org.SignatureSize)
	return q.Marshal()
}

// MarshalRosterProposal returns the encoding of a proposed, unsigned
// admin roster (org.ProposeRoster) for a RosterApproveRequest: the
// AdminRoster encoding with an all-zero signature, which the service
// ignores.
func MarshalRosterProposal(r *org.AdminRoster) ([]byte, error) {
	q := *r
	q.Admins = slices.Clone(r.Admins)
	q.Signature = make([]byte, org.SignatureSize)
	return q.Marshal()
}

// opUpdateRoster holds an admin's approval of a proposed admin roster
// (org.md §Admin roster), like opSetWitnesses: the approval must be the
// signing admin's own and verify over the proposal. Once the current
// roster's threshold of distinct admins approved the same proposal,
// org.Tenant.UpdateRoster signs it, and it is published under the
// admin-roster org label at the next epoch; the service authenticates
// admins with it from then on.
var opUpdateRoster = withBody(func(s *Service, t *Tenant, p *principal, in *RosterApproveRequest, now time.Time) (any, error) {
	prop, err := org.ParseAdminRoster(in.Roster)
	if err != nil || prop.Tenant != t.id {
		return nil, badRequest("bad proposed roster: it needs admins sorted by id with distinct keys and 2 ≤ threshold ≤ admins")
	}
	prop.Signature = nil
	ap, err := ownApproval(p, in.Approval)
	if err != nil {
		return nil, err
	}
	msg, err := org.RosterApprovalMessage(prop)
	if err != nil {
		return nil, badRequest("bad proposed roster")
	}
	if err := verifyOwnApproval(t, p, msg, ap, "roster"); err != nil {
		return nil, err
	}
	cur := t.org.Roster()
	if prop.Sequence != cur.Sequence+1 {
		return nil, &apiError{http.StatusConflict, "proposal is not for the next roster"}
	}
	h := sha256.Sum256(msg)
	pa, err := holdApproval(s, t, t.bundleApprovals, lodgedStatement, h, org.UserID{}, ap, now)
	if err != nil {
		return nil, err
	}
	out := &TrustBundleApproveResponse{Approvals: len(pa.approvals), Threshold: cur.Threshold}
	if out.Approvals < out.Threshold {
		return out, nil
	}
	nr, err := t.org.UpdateRoster(prop, pa.approvals)
	delete(t.bundleApprovals, h)
	t.unlodge(lodgedKey(lodgedStatement, h))
	if err != nil {
		return nil, err
	}
	t.dirty = true
	out.Applied, out.Sequence, out.PendingEpoch = true, nr.Sequence, t.Head().Epoch+1
	return out, nil
})

// opGetRoster answers the tenant's current admin roster (published, or
// changed since and published at the next epoch), from which an admin
// tool proposes the next one.
var opGetRoster = noBody(func(s *Service, t *Tenant, p *principal, now time.Time) (any, error) {
	enc, err := t.org.Roster().Marshal()
	if err != nil {
		return nil, err
	}
	return &RosterResponse{Roster: enc}, nil
})

// getOrgHistory is GET /v1/{tenant}/org-history/{name...}: the history of
// an org label since a version, signed by a device as lookups are.
func (s *Service) getOrgHistory(w http.ResponseWriter, r *http.Request, t *Tenant) {
	name := r.PathValue("name")
	if _, err := kt.OrgAlpha(t.id, name); err != nil {
		writeError(w, http.StatusBadRequest, "bad org label")
		return
	}
	s.history(w, r, t, org.Label{Org: name})
}
