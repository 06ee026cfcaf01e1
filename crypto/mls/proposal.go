package mls

// Proposals (RFC 9420 §12.1): the per-epoch cache of proposals received by
// reference, the validation of a Commit's proposal list (§12.2) and its
// application to the tree and GroupContext (§12.3).

import (
	"bytes"
	"fmt"
	"slices"
)

// cachedProposal is a proposal received (or sent) in the current epoch,
// kept until a Commit refers to it by its ProposalRef (§12.1).
type cachedProposal struct {
	ref    ProposalRef
	p      *Proposal
	sender Sender
}

// committedProposal is one entry of a Commit's proposal list with its
// sender: the committer for a proposal sent inline, the original sender for
// one sent by reference.
type committedProposal struct {
	p      *Proposal
	sender Sender
	ref    ProposalRef // nil when inline
	index  int         // position in the Commit's list, set by validateProposals
}

// findProposal returns the cached proposal with reference ref.
func (st *epochState) findProposal(ref ProposalRef) *cachedProposal {
	for i := range st.proposals {
		if bytes.Equal(st.proposals[i].ref, ref) {
			return &st.proposals[i]
		}
	}
	return nil
}

// resolveProposals turns a Commit's ProposalOrRef list into proposals with
// their senders (§12.4). An external Commit may not refer to proposals
// (§12.4.3.2).
func (st *epochState) resolveProposals(c *Commit, committer Sender) ([]committedProposal, error) {
	out := make([]committedProposal, len(c.Proposals))
	for i, por := range c.Proposals {
		switch {
		case por.Proposal != nil:
			out[i] = committedProposal{p: por.Proposal, sender: committer}
		case committer.Type == SenderTypeNewMemberCommit:
			return nil, proposalErr(i, "external commit refers to a proposal by reference", nil)
		default:
			cp := st.findProposal(por.Reference)
			if cp == nil {
				return nil, fmt.Errorf("%w: proposal %d", ErrUnknownProposal, i)
			}
			out[i] = committedProposal{p: cp.p, sender: cp.sender, ref: cp.ref}
		}
	}
	return out, nil
}

// pathRequired reports whether a Commit covering props must carry an
// UpdatePath (§12.4): an empty list, or any proposal of a type other than
// add, psk and reinit.
func pathRequired(props []committedProposal) bool {
	if len(props) == 0 {
		return true
	}
	for _, cp := range props {
		switch cp.p.Type {
		case ProposalTypeAdd, ProposalTypePSK, ProposalTypeReInit:
		default:
			return true
		}
	}
	return false
}

// proposalPlan is a validated proposal list sorted into the order of §12.3.
type proposalPlan struct {
	newExts  *Extensions // GroupContextExtensions, nil if none
	gceIndex int         // its position in the list, -1 if none
	updates  []committedProposal
	removes  []committedProposal
	adds     []committedProposal
	psks     []PreSharedKeyID
	extInit  *ExternalInit
	reinit   *ReInit
}

// pskIdentity is what makes two PreSharedKeyIDs "the same PSK" for §12.2:
// everything but the nonce.
func pskIdentity(p *PreSharedKeyID) string {
	q := *p
	q.Nonce = nil
	b, _ := q.Encode()
	return string(b)
}

// validateProposals checks a Commit's proposal list (§12.2) from
// committer, before anything is applied, and sorts it into a plan: each
// proposal on its own (checkProposal), then the rules about the list as a
// whole. The checks that need the tree as changed by earlier proposals
// (key uniqueness of Adds, credential support) happen in applyPlan.
//
// own is set when this member is the committer: leaf lifetimes are then
// always checked against the clock.
func (g *Group) validateProposals(props []committedProposal, committer Sender, own bool) (*proposalPlan, error) {
	st := &g.st
	external := committer.Type == SenderTypeNewMemberCommit
	plan := &proposalPlan{gceIndex: -1}

	// GroupContextExtensions first: its extensions are the ones Adds and
	// Updates must support (§12.3).
	exts := st.ctx.Extensions
	for i, cp := range props {
		if cp.p.Type != ProposalTypeGroupContextExtensions {
			continue
		}
		if plan.newExts != nil {
			return nil, proposalErr(i, "more than one GroupContextExtensions proposal", nil)
		}
		e := cp.p.GroupContextExtensions.Extensions
		plan.newExts = &e
		plan.gceIndex = i
		exts = e
	}

	touched := map[LeafIndex]bool{} // leaves with an Update or Remove
	addKeys := map[string]bool{}    // signature keys of Adds
	removed := map[LeafIndex]bool{}
	pskSeen := map[string]bool{}
	params := g.groupParams(exts, &st.stats, own)
	nExtInit, nRemove := 0, 0

	for i, cp := range props {
		if err := g.checkProposal(i, cp, &committer, params); err != nil {
			return nil, err
		}
		cp.index = i
		p := cp.p
		switch p.Type {
		case ProposalTypeAdd:
			k := string(p.Add.KeyPackage.LeafNode.SignatureKey)
			if addKeys[k] {
				return nil, proposalErr(i, "two Adds of the same client", nil)
			}
			addKeys[k] = true
			plan.adds = append(plan.adds, cp)

		case ProposalTypeUpdate:
			leaf := LeafIndex(cp.sender.Index)
			if touched[leaf] {
				return nil, proposalErr(i, "two Updates or Removes of one leaf", nil)
			}
			touched[leaf] = true
			plan.updates = append(plan.updates, cp)

		case ProposalTypeRemove:
			leaf := LeafIndex(p.Remove.Removed)
			if touched[leaf] {
				return nil, proposalErr(i, "two Updates or Removes of one leaf", nil)
			}
			touched[leaf] = true
			removed[leaf] = true
			nRemove++
			plan.removes = append(plan.removes, cp)

		case ProposalTypePSK:
			id := &p.PreSharedKey.PSK
			k := pskIdentity(id)
			if pskSeen[k] {
				return nil, proposalErr(i, "two PreSharedKey proposals for one PSK", nil)
			}
			pskSeen[k] = true
			plan.psks = append(plan.psks, *id)

		case ProposalTypeReInit:
			if len(props) != 1 {
				return nil, proposalErr(i, "ReInit together with other proposals", nil)
			}
			plan.reinit = p.ReInit

		case ProposalTypeExternalInit:
			nExtInit++
			plan.extInit = p.ExternalInit
		}
	}

	// An Add of a client already in the group needs a Remove of it (§12.2).
	for _, cp := range plan.adds {
		if j, ok := st.tree.findSignatureKey(cp.p.Add.KeyPackage.LeafNode.SignatureKey); ok && !removed[j] {
			return nil, proposalErr(cp.index, "Add of a client already in the group", nil)
		}
	}
	if external {
		if nExtInit != 1 {
			return nil, proposalErr(-1, "external commit without exactly one ExternalInit", nil)
		}
		if nRemove > 1 {
			return nil, proposalErr(-1, "external commit with more than one Remove", nil)
		}
	}
	return plan, nil
}

// checkProposal runs the checks one proposal passes or fails on its own
// (§12.1, the application's Policy, and the per-proposal rules of §12.2),
// as entry i of a Commit by committer, or, with committer nil, when it
// arrives to be cached. params are the GroupParams under the GroupContext
// extensions the proposal is judged against.
func (g *Group) checkProposal(i int, cp committedProposal, committer *Sender, params *GroupParams) error {
	st := &g.st
	p := cp.p
	external := committer != nil && committer.Type == SenderTypeNewMemberCommit
	isCommitter := func(leaf LeafIndex) bool {
		return committer != nil && committer.Type == SenderTypeMember && leaf == LeafIndex(committer.Index)
	}
	if g.cfg.Policy != nil {
		var senderLeaf *LeafNode
		if cp.sender.Type == SenderTypeMember {
			senderLeaf = st.tree.leaf(LeafIndex(cp.sender.Index))
		}
		if err := g.cfg.Policy.Authorize(&st.ctx, cp.sender, senderLeaf, p); err != nil {
			return proposalErr(i, "refused by policy", fmt.Errorf("%w: %w", ErrPolicy, err))
		}
	}
	if err := checkProposalSender(cp); err != nil {
		return proposalErr(i, err.Error(), nil)
	}
	if cp.sender.Type == SenderTypeNewMemberProposal && g.cfg.Policy == nil {
		// §12.1.8: an unauthorised external proposal is invalid, and
		// only the application's policy can authorise a self-Add.
		return proposalErr(i, "new member proposal without a policy to authorise it", ErrPolicy)
	}
	if external {
		switch p.Type {
		case ProposalTypeExternalInit, ProposalTypeRemove, ProposalTypePSK:
		default:
			return proposalErr(i, "external commit with a proposal other than ExternalInit, Remove and PreSharedKey", nil)
		}
	}
	switch p.Type {
	case ProposalTypeAdd:
		if err := ValidateKeyPackage(&p.Add.KeyPackage, params); err != nil {
			return proposalErr(i, "invalid KeyPackage", err)
		}

	case ProposalTypeUpdate:
		// Only members send Updates: framing (checkSenderContent) and
		// checkProposalSender refuse them from external senders and new
		// members, and an external Commit's own proposals (sender
		// new_member_commit) were limited to other types above.
		leaf := LeafIndex(cp.sender.Index)
		if isCommitter(leaf) {
			return proposalErr(i, "Update by the committer", nil)
		}
		old := st.tree.leaf(leaf)
		if old == nil {
			return proposalErr(i, "Update from a blank leaf", nil)
		}
		if err := ValidateLeafNode(&p.Update.LeafNode, LeafNodeSourceUpdate, uint32(leaf), params); err != nil {
			return proposalErr(i, "invalid LeafNode in Update", err)
		}
		if bytes.Equal(p.Update.LeafNode.EncryptionKey, old.EncryptionKey) {
			return proposalErr(i, "Update keeps the leaf's encryption key", nil)
		}
		if err := g.cfg.checkSuccessor(old, &p.Update.LeafNode); err != nil {
			return proposalErr(i, "Update credential is no successor of the leaf's", err)
		}

	case ProposalTypeRemove:
		leaf := LeafIndex(p.Remove.Removed)
		if st.tree.leaf(leaf) == nil {
			return proposalErr(i, "Remove of a blank leaf", nil)
		}
		if isCommitter(leaf) {
			return proposalErr(i, "Remove of the committer", nil)
		}

	case ProposalTypePSK:
		id := &p.PreSharedKey.PSK
		if len(id.Nonce) != g.suite.Nh() {
			return proposalErr(i, "psk_nonce not KDF.Nh bytes", nil)
		}
		if id.Type == PSKTypeResumption && id.Usage != ResumptionPSKUsageApplication && (committer == nil || id.Usage != g.resumingWith) {
			return proposalErr(i, "PreSharedKey proposal with a reinit or branch resumption PSK", nil)
		}

	case ProposalTypeReInit:
		r := p.ReInit
		if r.Version < ProtocolVersionMLS10 {
			return proposalErr(i, "ReInit to an older protocol version", nil)
		}
		if err := g.cfg.checkSuite(r.CipherSuite); err != nil {
			return proposalErr(i, "ReInit cipher suite", err)
		}
		if err := g.cfg.checkRequiredExtensions(r.Extensions); err != nil {
			return proposalErr(i, "ReInit extensions", err)
		}

	case ProposalTypeExternalInit:
		if !external {
			return proposalErr(i, "ExternalInit in a regular commit", nil)
		}

	case ProposalTypeGroupContextExtensions:
		exts := p.GroupContextExtensions.Extensions
		if err := g.cfg.checkRequiredExtensions(exts); err != nil {
			return proposalErr(i, "GroupContextExtensions", err)
		}
		if data, ok := exts.Find(ExtensionTypeRequiredCapabilities); ok {
			if _, err := DecodeRequiredCapabilities(data); err != nil {
				return proposalErr(i, "malformed required_capabilities", err)
			}
		}
		if data, ok := exts.Find(ExtensionTypeExternalSenders); ok {
			if _, err := DecodeExternalSenders(data); err != nil {
				return proposalErr(i, "malformed external_senders", err)
			}
		}
		if err := validateExternalSenders(g.cfg.Credentials, exts); err != nil {
			return proposalErr(i, "external_senders credential", err)
		}

	default:
		return proposalErr(i, "unsupported proposal type", ErrUnsupported)
	}
	return nil
}

// checkProposalSender applies who may send what (§12.1.8, §12.4.3.2) to a
// proposal as committed: external senders only the types of §12.1.8, new
// members only their own Add.
func checkProposalSender(cp committedProposal) error {
	switch cp.sender.Type {
	case SenderTypeMember, SenderTypeNewMemberCommit:
		return nil
	case SenderTypeExternal:
		switch cp.p.Type {
		case ProposalTypeAdd, ProposalTypeRemove, ProposalTypePSK, ProposalTypeReInit, ProposalTypeGroupContextExtensions:
			return nil
		}
		return fmt.Errorf("external sender may not propose type %d", cp.p.Type)
	case SenderTypeNewMemberProposal:
		if cp.p.Type == ProposalTypeAdd {
			return nil
		}
		return fmt.Errorf("new member may only propose its Add")
	}
	return fmt.Errorf("unknown sender type %d", cp.sender.Type)
}

// appliedPlan is the result of applying a plan to the tree.
type appliedPlan struct {
	exts    Extensions
	stats   memberStats
	added   []LeafIndex // leaves the Adds took, in Add order
	addedKP []*KeyPackage
	// changed holds the value before the Commit of every leaf it changed.
	changed     map[LeafIndex]*LeafNode
	removed     []LeafIndex
	removedSelf bool
}

// applyPlan applies a validated plan to the tree in the order of §12.3.
// The tree's journal must be open: on error the caller rolls back.
func (g *Group) applyPlan(plan *proposalPlan) (*appliedPlan, error) {
	st := &g.st
	t := st.tree
	ap := &appliedPlan{exts: st.ctx.Extensions, stats: st.stats.clone(), changed: map[LeafIndex]*LeafNode{}}
	if plan.newExts != nil {
		ap.exts = *plan.newExts
	}
	note := func(i LeafIndex) {
		if _, ok := ap.changed[i]; !ok {
			ap.changed[i] = t.leaf(i)
		}
	}
	for _, cp := range plan.updates {
		i := LeafIndex(cp.sender.Index)
		ln := &cp.p.Update.LeafNode
		ap.stats.remove(t.leaf(i))
		if err := ap.stats.checkCredentialSupport(ln); err != nil {
			return nil, proposalErr(cp.index, "Update with a credential type not supported by every member", err)
		}
		note(i)
		if err := t.updateLeaf(i, ln); err != nil {
			return nil, err
		}
		ap.stats.add(ln)
	}
	for _, cp := range plan.removes {
		i := LeafIndex(cp.p.Remove.Removed)
		old := t.leaf(i)
		note(i)
		if err := t.removeLeaf(i); err != nil {
			return nil, err
		}
		ap.stats.remove(old)
		ap.removed = append(ap.removed, i)
		if i == g.self {
			ap.removedSelf = true
		}
	}
	for _, cp := range plan.adds {
		kp := &cp.p.Add.KeyPackage
		ln := &kp.LeafNode
		if err := ap.stats.checkCredentialSupport(ln); err != nil {
			return nil, proposalErr(cp.index, "Add with a credential type not supported by every member", err)
		}
		i, err := t.addLeaf(ln)
		if err != nil {
			return nil, err
		}
		if _, ok := ap.changed[i]; !ok {
			ap.changed[i] = nil
		}
		ap.stats.add(ln)
		ap.added = append(ap.added, i)
		ap.addedKP = append(ap.addedKP, kp)
	}
	// A new required_capabilities or extension must be supported by every
	// member that remains (§12.1.7); Adds and Updates were already checked
	// against the new extensions.
	if plan.newExts != nil {
		params := &GroupParams{CipherSuite: st.ctx.CipherSuite, Extensions: ap.exts}
		for i, ln := range t.leaves {
			if ln == nil {
				continue
			}
			if err := checkGroupSupport(&ln.Capabilities, params); err != nil {
				return nil, proposalErr(plan.gceIndex, fmt.Sprintf("member %d does not support the new GroupContext extensions", i), err)
			}
		}
	}
	return ap, nil
}

// sortedLeaves returns a sorted copy.
func sortedLeaves(l []LeafIndex) []LeafIndex {
	out := slices.Clone(l)
	slices.Sort(out)
	return out
}

// pskValue looks up the value of a PSK named by a Commit or Welcome: an
// external PSK from the application, a resumption PSK of this group from
// the current or a retained epoch (§8.4, §8.6).
func (g *Group) pskValue(id *PreSharedKeyID) ([]byte, error) {
	switch id.Type {
	case PSKTypeExternal:
		if g.cfg.ExternalPSK != nil {
			if v, ok := g.cfg.ExternalPSK(id.PSKID); ok {
				return v, nil
			}
		}
	case PSKTypeResumption:
		if bytes.Equal(id.PSKGroupID, g.st.ctx.GroupID) {
			if v, ok := g.ResumptionPSK(id.PSKEpoch); ok {
				return v, nil
			}
		} else if g.cfg.ResumptionPSK != nil {
			if v, ok := g.cfg.ResumptionPSK(id.PSKGroupID, id.PSKEpoch); ok {
				return v, nil
			}
		}
	}
	return nil, ErrMissingPSK
}

// pskSecret computes psk_secret for a plan's PSKs.
func (g *Group) pskSecret(ids []PreSharedKeyID) ([]byte, error) {
	return pskSecretOf(g.suite, ids, g.pskValue)
}
