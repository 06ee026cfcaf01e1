package mls

// Reinitialisation and subgroup branching (RFC 9420 §11.2, §11.3): a new
// group linked to an old one by a resumption PSK of usage reinit or
// branch, carried in the new group's first Commit and in its Welcome.

import (
	"bytes"
	"fmt"
)

// ReInit creates the group that replaces g after a Commit with a ReInit
// proposal was applied to g (§11.2): a new group with the ReInit's
// group_id, cipher suite and extensions, created by this member from kp
// (a KeyPackage in the new suite) and joined by the other members from
// their KeyPackages through the Welcome in the returned CommitResult. The
// first Commit carries a resumption PSK of usage reinit naming g's current
// epoch, so the new group is bound to the old one.
func (g *Group) ReInit(kp *KeyPackage, kps *KeyPackageSecrets, sigKey SignaturePrivateKey, members []*KeyPackage) (*Group, *CommitResult, error) {
	if g.status != statusReInit || g.reinit == nil {
		return nil, nil, fmt.Errorf("%w: no ReInit was committed", ErrGroupInactive)
	}
	r := g.reinit
	if r.Version != ProtocolVersionMLS10 || kp.CipherSuite != r.CipherSuite {
		return nil, nil, fmt.Errorf("mls: ReInit to version %d, suite 0x%04x: KeyPackage suite 0x%04x", r.Version, uint16(r.CipherSuite), uint16(kp.CipherSuite))
	}
	return g.resume(ResumptionPSKUsageReInit, kp, kps, sigKey, members, NewGroupOptions{GroupID: r.GroupID, Extensions: r.Extensions})
}

// Branch creates a subgroup of g (§11.3): a new group with the same
// version and cipher suite, created by this member and joined by the given
// members (each of whom must be in g) through the returned Welcome, bound
// to g's current epoch by a resumption PSK of usage branch.
func (g *Group) Branch(kp *KeyPackage, kps *KeyPackageSecrets, sigKey SignaturePrivateKey, members []*KeyPackage, opts NewGroupOptions) (*Group, *CommitResult, error) {
	if err := g.checkActive(); err != nil {
		return nil, nil, err
	}
	if kp.CipherSuite != g.st.ctx.CipherSuite {
		return nil, nil, fmt.Errorf("mls: branch in suite 0x%04x of a group in suite 0x%04x", uint16(kp.CipherSuite), uint16(g.st.ctx.CipherSuite))
	}
	for _, m := range append([]*KeyPackage{kp}, members...) {
		if !g.hasCredential(&m.LeafNode.Credential) {
			return nil, nil, fmt.Errorf("%w: branch member not in the group", ErrInvalidProposalList)
		}
	}
	return g.resume(ResumptionPSKUsageBranch, kp, kps, sigKey, members, opts)
}

// resume creates a new group and commits the members' Adds with a
// resumption PSK of the given usage naming g's current epoch.
func (g *Group) resume(usage ResumptionPSKUsage, kp *KeyPackage, kps *KeyPackageSecrets, sigKey SignaturePrivateKey,
	members []*KeyPackage, opts NewGroupOptions) (*Group, *CommitResult, error) {
	if g.st.keys == nil {
		return nil, nil, ErrGroupInactive
	}
	psk := g.st.keys.ResumptionPSK
	oldID, oldEpoch := g.GroupID(), g.Epoch()
	cfg := g.cfg
	parent := cfg.ResumptionPSK
	cfg.ResumptionPSK = func(id []byte, epoch uint64) ([]byte, bool) {
		if bytes.Equal(id, oldID) && epoch == oldEpoch {
			return psk, true
		}
		if parent != nil {
			return parent(id, epoch)
		}
		return nil, false
	}
	ng, err := NewGroup(cfg, kp, kps, sigKey, opts)
	if err != nil {
		return nil, nil, err
	}
	id := PreSharedKeyID{Type: PSKTypeResumption, Usage: usage, PSKGroupID: oldID, PSKEpoch: oldEpoch}
	ng.resumingWith = usage
	res, err := ng.Commit(CommitOptions{Add: members, Proposals: []Proposal{{Type: ProposalTypePSK, PreSharedKey: &PreSharedKey{PSK: id}}}})
	ng.resumingWith = 0
	if err != nil {
		ng.Close()
		return nil, nil, err
	}
	if _, err := ng.MergePendingCommit(); err != nil {
		ng.Close()
		return nil, nil, err
	}
	ng.cfg.ResumptionPSK = parent
	return ng, res, nil
}

// hasCredential reports whether a member of the current epoch presents
// credential c (the application's notion of "the same client", §11.3).
func (g *Group) hasCredential(c *Credential) bool {
	for _, ln := range g.st.tree.leaves {
		if ln != nil && ln.Credential.Equal(c) {
			return true
		}
	}
	return false
}

// checkResumption applies §12.4.3.1's checks to a group joined with a
// reinit or branch PSK naming old: the epoch is 1; for reinit, the new
// group matches old's ReInit and every member of old is in it; for branch,
// version and suite match old's and every member is in old.
func checkResumption(g *Group, usage ResumptionPSKUsage, old *Group) error {
	if g.st.ctx.Epoch != 1 {
		return fmt.Errorf("%w: resumed group in epoch %d", ErrInvalidWelcome, g.st.ctx.Epoch)
	}
	switch usage {
	case ResumptionPSKUsageReInit:
		r := old.reinit
		if r == nil || old.status != statusReInit {
			return fmt.Errorf("%w: reinit PSK but the old group committed no ReInit", ErrInvalidWelcome)
		}
		if !bytes.Equal(r.GroupID, g.st.ctx.GroupID) || r.CipherSuite != g.st.ctx.CipherSuite || r.Version != ProtocolVersionMLS10 ||
			!r.Extensions.Equal(g.st.ctx.Extensions) {
			return fmt.Errorf("%w: new group does not match the ReInit", ErrInvalidWelcome)
		}
		for _, ln := range old.st.tree.leaves {
			if ln != nil && !g.hasCredential(&ln.Credential) {
				return fmt.Errorf("%w: a member of the old group is missing", ErrInvalidWelcome)
			}
		}
	case ResumptionPSKUsageBranch:
		if g.st.ctx.CipherSuite != old.st.ctx.CipherSuite {
			return fmt.Errorf("%w: branch changes the cipher suite", ErrInvalidWelcome)
		}
		for _, ln := range g.st.tree.leaves {
			if ln != nil && !old.hasCredential(&ln.Credential) {
				return fmt.Errorf("%w: branch member not in the old group", ErrInvalidWelcome)
			}
		}
	}
	return nil
}
