package org

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/moat-im/moat/crypto/keys"
)

// Trust-bundle changes other than a CA rotation (docs/spec/org.md §Log key
// rotation, §Witness set changes): a new log key, or a new witness set and
// quorum. Each is a new TrustBundle, numbered one more than the current
// one and signed by the current CA, which the admins approve under dual
// control before the tenant signs it: an admin proposes the unsigned
// bundle (ProposeLogKey, ProposeWitnesses), at least the roster's
// threshold of distinct admins sign TrustBundleApprovalMessage of it, and
// RotateLogKey or ReplaceWitnesses checks the approvals, signs and stages
// the bundle for the next Publish under OrgLabelTrustBundle.

// ProposeLogKey returns the unsigned trust bundle that replaces the log
// key by next, for the admins to approve.
func (t *Tenant) ProposeLogKey(next *keys.LogPublicKey, now time.Time) (*TrustBundle, error) {
	if next == nil || next.Equal(t.trust.Log) {
		return nil, fmt.Errorf("org: proposing log key: %w", ErrInvalidArgument)
	}
	p := t.nextBundle(now)
	p.Log = next
	if _, err := p.body(); err != nil {
		return nil, fmt.Errorf("org: proposing log key: %w", ErrInvalidArgument)
	}
	return p, nil
}

// ProposeWitnesses returns the unsigned trust bundle that replaces the
// witness set and quorum by ws (in any order), for the admins to approve.
func (t *Tenant) ProposeWitnesses(ws WitnessSet, now time.Time) (*TrustBundle, error) {
	p := t.nextBundle(now)
	p.Witnesses = WitnessSet{Witnesses: slices.Clone(ws.Witnesses), Quorum: ws.Quorum}
	SortWitnesses(p.Witnesses.Witnesses)
	if errors.Is(p.Witnesses.check(), ErrWitnessQuorum) {
		return nil, fmt.Errorf("org: proposing witnesses: %w", ErrWitnessQuorum)
	}
	if _, err := p.body(); err != nil {
		return nil, fmt.Errorf("org: proposing witnesses: %w", ErrInvalidArgument)
	}
	return p, nil
}

func (t *Tenant) nextBundle(now time.Time) *TrustBundle {
	p := *t.trust
	p.Sequence++
	p.IssuedAt = seconds(now)
	p.Signature = nil
	p.Witnesses.Witnesses = slices.Clone(p.Witnesses.Witnesses)
	return &p
}

// TrustBundleApprovalMessage returns the message an admin signs to approve
// the trust bundle b: "moat/v1/org/bundle-approval" || 0x00 ||
// TrustBundleBody. The body carries the tenant and the new sequence number,
// so an approval counts for one bundle only.
func TrustBundleApprovalMessage(b *TrustBundle) ([]byte, error) {
	body, err := b.body()
	if err != nil {
		return nil, err
	}
	return labelled(labelBundleApproval, body), nil
}

// ApproveTrustBundle returns an admin's approval of the proposed bundle b.
// The admin tool must show the new log key or witnesses before signing.
func ApproveTrustBundle(key *AdminPrivateKey, b *TrustBundle) (*Approval, error) {
	msg, err := TrustBundleApprovalMessage(b)
	if err != nil {
		return nil, err
	}
	sig, err := key.Sign(msg)
	if err != nil {
		return nil, err
	}
	return &Approval{Kind: ApproverAdmin, Signer: key.Public().ID(), Signature: sig}, nil
}

// RotateLogKey replaces the trust bundle by proposed, which must differ
// from the current bundle only in its log key, its sequence (one more) and
// its issue time, and be approved by at least the roster's threshold of
// distinct admins (TrustBundleApprovalMessage). It returns the new bundle,
// signed by the CA. The log continues with the same tree: the directory
// signs with the old key up to and including the checkpoint of the epoch
// that publishes the new bundle, and with the new key from the next epoch
// on; the first checkpoint under the new key must be consistent with the
// last under the old (docs/spec/directory.md §Trust bundle changes).
func (t *Tenant) RotateLogKey(proposed *TrustBundle, approvals []*Approval) (*TrustBundle, error) {
	return t.updateBundle("rotating log key", proposed, approvals, func(p *TrustBundle) bool {
		return !p.Log.Equal(t.trust.Log) && sameWitnesses(&p.Witnesses, &t.trust.Witnesses)
	})
}

// ReplaceWitnesses replaces the trust bundle by proposed, which must differ
// from the current bundle only in its witness set or quorum, its sequence
// (one more) and its issue time, with approvals as for RotateLogKey.
func (t *Tenant) ReplaceWitnesses(proposed *TrustBundle, approvals []*Approval) (*TrustBundle, error) {
	return t.updateBundle("replacing witnesses", proposed, approvals, func(p *TrustBundle) bool {
		return p.Log.Equal(t.trust.Log) && !sameWitnesses(&p.Witnesses, &t.trust.Witnesses)
	})
}

func sameWitnesses(a, b *WitnessSet) bool {
	return a.Quorum == b.Quorum && slices.EqualFunc(a.Witnesses, b.Witnesses, func(x, y WitnessKey) bool {
		return x.Name == y.Name && string(x.Ed25519) == string(y.Ed25519) && string(x.MLDSA44) == string(y.MLDSA44)
	})
}

func (t *Tenant) updateBundle(what string, proposed *TrustBundle, approvals []*Approval, changed func(*TrustBundle) bool) (*TrustBundle, error) {
	cur := t.trust
	if proposed == nil || proposed.Tenant != t.id || proposed.Sequence != cur.Sequence+1 ||
		proposed.CA == nil || !proposed.CA.Equal(cur.CA) || proposed.LogOrigin != cur.LogOrigin ||
		proposed.VRF == nil || !proposed.VRF.Equal(cur.VRF) || proposed.Log == nil ||
		proposed.IssuedAt.Before(cur.IssuedAt) || !changed(proposed) {
		return nil, fmt.Errorf("org: %s: %w", what, ErrInvalidArgument)
	}
	msg, err := TrustBundleApprovalMessage(proposed)
	if err != nil {
		return nil, fmt.Errorf("org: %s: %w", what, ErrInvalidArgument)
	}
	if err := t.checkAdminApprovals(msg, approvals); err != nil {
		return nil, fmt.Errorf("org: %s: %w", what, err)
	}
	if err := t.bundleSettled(); err != nil {
		return nil, fmt.Errorf("org: %s: %w", what, err)
	}
	nb := *proposed
	nb.Witnesses.Witnesses = slices.Clone(proposed.Witnesses.Witnesses)
	if err := signTrustBundle(t.signer, &nb); err != nil {
		return nil, fmt.Errorf("org: %s: %w", what, err)
	}
	t.trust = &nb
	t.orgDirty[OrgLabelTrustBundle] = true
	return &nb, nil
}

// checkAdminApprovals checks that approvals hold valid signatures of msg by
// at least the roster's threshold of distinct current admins.
func (t *Tenant) checkAdminApprovals(msg []byte, approvals []*Approval) error {
	seen := map[AdminID]bool{}
	for _, a := range approvals {
		if a == nil || a.Kind != ApproverAdmin {
			return ErrApprovalInvalid
		}
		id := AdminID(a.Signer)
		if seen[id] {
			return ErrDuplicateApproval
		}
		seen[id] = true
		k := t.roster.Admin(id)
		if k == nil || k.Verify(msg, a.Signature) != nil {
			return ErrApprovalInvalid
		}
	}
	if len(seen) < t.roster.Threshold {
		return ErrInsufficientApprovals
	}
	return nil
}

// bundleSettled refuses a trust bundle change while the previous one is
// unpublished: each version of the trust-bundle label is the next bundle,
// so that a client following the bundles one by one sees every one
// (docs/spec/org.md §Trust bundle changes).
func (t *Tenant) bundleSettled() error {
	if t.orgDirty[OrgLabelTrustBundle] {
		return fmt.Errorf("%w: the trust bundle change before is not published yet", ErrPendingUpdates)
	}
	return nil
}
