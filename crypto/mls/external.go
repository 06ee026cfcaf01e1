package mls

// External joins (RFC 9420 §12.4.3.2): publishing a GroupInfo with the
// external_pub extension, and a new member adding itself with an external
// Commit. Members process external Commits in processCommit.

import (
	"fmt"
	"slices"

	"github.com/moat-im/moat/crypto/mls/internal/schedule"
	"github.com/moat-im/moat/crypto/mls/internal/suite"
)

// GroupInfo returns a signed GroupInfo of the current epoch (an
// MLSMessage) carrying external_pub, so that a new member can join with an
// external Commit (§12.4.3.2), and, if withTree, the ratchet_tree
// extension (§12.4.3.3).
func (g *Group) GroupInfo(withTree bool) ([]byte, error) {
	if err := g.checkActive(); err != nil {
		return nil, err
	}
	ne := &newEpochValues{ctx: g.st.ctx, keys: g.st.keys, confirmationTag: g.st.confirmationTag}
	gi, err := g.newGroupInfo(ne, g.st.tree, true, withTree)
	if err != nil {
		return nil, err
	}
	return (&MLSMessage{WireFormat: WireFormatGroupInfo, GroupInfo: gi}).Encode()
}

// ExternalJoinOptions are the choices of an external joiner.
type ExternalJoinOptions struct {
	// RatchetTree is the group's tree when the GroupInfo does not carry it.
	RatchetTree RatchetTree
	// Resync, if set, removes the leaf at ResyncLeaf: the joiner's own
	// earlier appearance, which must have the same credential (§12.4.3.2).
	Resync     bool
	ResyncLeaf uint32
	// PSKs are PreSharedKey proposals to include (the joiner must hold
	// them); their nonces are drawn here.
	PSKs []PreSharedKeyID
	// AuthenticatedData is sent in clear with the Commit.
	AuthenticatedData []byte
}

// ExternalJoin joins a group from its published GroupInfo (an MLSMessage)
// with an external Commit (§12.4.3.2). leaf supplies the new member's
// credential, capabilities and extensions and its signature key, whose
// private half is sigKey; its encryption key is generated. The GroupInfo
// and tree are verified as a Welcome joiner verifies them.
//
// It returns the new member's state, already in the epoch the Commit
// starts, and the Commit (an MLSMessage, a PublicMessage) to send to the
// group. If the delivery service does not accept the Commit (another one
// won the epoch), the returned Group is void and the join must be retried
// with a newer GroupInfo.
func ExternalJoin(cfg Config, groupInfo []byte, leaf *LeafNode, sigKey SignaturePrivateKey, opts ExternalJoinOptions) (*Group, []byte, error) {
	if cfg.Credentials == nil {
		return nil, nil, fmt.Errorf("mls: Config.Credentials is required")
	}
	m, err := DecodeMLSMessage(groupInfo)
	if err != nil {
		return nil, nil, err
	}
	if m.WireFormat != WireFormatGroupInfo {
		return nil, nil, fmt.Errorf("%w: not a GroupInfo", ErrUnexpectedContent)
	}
	gi := m.GroupInfo
	gc := &gi.GroupContext
	if err := cfg.checkSuite(gc.CipherSuite); err != nil {
		return nil, nil, err
	}
	if err := cfg.checkRequiredExtensions(gc.Extensions); err != nil {
		return nil, nil, err
	}
	if err := validateExternalSenders(cfg.Credentials, gc.Extensions); err != nil {
		return nil, nil, err
	}
	s, err := getSuite(gc.CipherSuite)
	if err != nil {
		return nil, nil, err
	}
	if err := checkOwnSignatureKey(s, sigKey, leaf.SignatureKey); err != nil {
		return nil, nil, err
	}
	epData, ok := gi.Extensions.Find(ExtensionTypeExternalPub)
	if !ok {
		return nil, nil, fmt.Errorf("%w: no external_pub extension", ErrInvalidGroupInfo)
	}
	ep, err := DecodeExternalPub(epData)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalidGroupInfo, err)
	}
	tree, err := groupInfoTree(s, gi, opts.RatchetTree)
	if err != nil {
		return nil, nil, err
	}
	signer := tree.leaf(LeafIndex(gi.Signer))
	if signer == nil {
		return nil, nil, fmt.Errorf("%w: signer %d is not a member", ErrInvalidGroupInfo, gi.Signer)
	}
	if err := gi.VerifySignature(signer.SignatureKey); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalidGroupInfo, err)
	}
	if err := checkGroupSupport(&leaf.Capabilities, &GroupParams{CipherSuite: gc.CipherSuite, Extensions: gc.Extensions}); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalidGroupInfo, err)
	}
	if err := validateJoinedTree(cfg, tree, gc); err != nil {
		return nil, nil, err
	}
	gcBytes, err := gc.Encode()
	if err != nil {
		return nil, nil, err
	}
	interim, err := schedule.InterimTranscriptHash(s, gc.ConfirmedTranscriptHash, gi.ConfirmationTag)
	if err != nil {
		return nil, nil, err
	}

	// A Group in the GroupInfo's epoch without its secrets: enough to
	// validate, apply and sign the external Commit.
	signing, err := s.SigningKey(suite.SignaturePrivateKey(sigKey))
	if err != nil {
		return nil, nil, err
	}
	g := &Group{cfg: cfg, suite: s, sigKey: SignaturePrivateKey(signing)}
	g.history.Max = cfg.PastEpochs
	g.st = epochState{ctx: cloneGroupContext(gc), ctxBytes: gcBytes, tree: tree, stats: computeMemberStats(tree),
		interim: interim, confirmationTag: slices.Clone(gi.ConfirmationTag)}

	// §8.3: the init secret of the new epoch, sent to the group by KEM.
	kemOutput, initSecret, err := schedule.ExternalInitSend(s, suite.HPKEPublicKey(ep.ExternalPub))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: external_pub: %w", ErrInvalidGroupInfo, err)
	}
	defer suite.Zero(initSecret)

	me := Sender{Type: SenderTypeNewMemberCommit}
	proposals := []Proposal{{Type: ProposalTypeExternalInit, ExternalInit: &ExternalInit{KEMOutput: kemOutput}}}
	if opts.Resync {
		proposals = append(proposals, Proposal{Type: ProposalTypeRemove, Remove: &Remove{Removed: opts.ResyncLeaf}})
	}
	for _, id := range opts.PSKs {
		if id.Nonce, err = randomBytes(s.Nh()); err != nil {
			return nil, nil, err
		}
		proposals = append(proposals, Proposal{Type: ProposalTypePSK, PreSharedKey: &PreSharedKey{PSK: id}})
	}
	var props []committedProposal
	var pors []ProposalOrRef
	for i := range proposals {
		props = append(props, committedProposal{p: &proposals[i], sender: me})
		pors = append(pors, ProposalOrRef{Proposal: &proposals[i]})
	}
	plan, err := g.validateProposals(props, me, true)
	if err != nil {
		return nil, nil, err
	}
	if err := g.checkResync(plan, leaf); err != nil {
		return nil, nil, err
	}
	pskSecret, err := pskSecretOf(s, plan.psks, cfg.joinerPSK)
	if err != nil {
		return nil, nil, err
	}

	ap, err := g.applyPlan(plan)
	if err != nil {
		return nil, nil, err
	}
	self, ok := tree.leftmostBlankLeaf()
	if !ok {
		if tree.nLeaves >= MaxTreeLeaves {
			return nil, nil, treeErr("creating external commit", 0, ErrTreeFull)
		}
		self = LeafIndex(tree.nLeaves)
		tree.resize(2 * tree.nLeaves)
	}
	g.self = self
	template := *leaf
	if err := ap.stats.checkCredentialSupport(&template); err != nil {
		return nil, nil, err
	}
	pgc := GroupContext{
		CipherSuite:             gc.CipherSuite,
		GroupID:                 gc.GroupID,
		Epoch:                   gc.Epoch + 1,
		ConfirmedTranscriptHash: gc.ConfirmedTranscriptHash,
		Extensions:              ap.exts,
	}
	upr, err := tree.createUpdatePath(self, &template, g.sigKey, pgc, nil)
	if err != nil {
		return nil, nil, err
	}
	defer upr.Zero()
	ap.stats.add(&upr.path.LeafNode)
	th, err := tree.treeHash()
	if err != nil {
		return nil, nil, err
	}

	content := &FramedContent{
		GroupID:           gc.GroupID,
		Epoch:             gc.Epoch,
		Sender:            me,
		AuthenticatedData: slices.Clone(opts.AuthenticatedData),
		ContentType:       ContentTypeCommit,
		Commit:            &Commit{Proposals: pors, Path: upr.path},
	}
	ac, err := signContent(s, g.sigKey, WireFormatPublicMessage, content, &g.st.ctx)
	if err != nil {
		return nil, nil, err
	}
	ne, err := g.deriveEpoch(ac, th, ap.exts, initSecret, upr.commitSecret, pskSecret)
	if err != nil {
		return nil, nil, err
	}
	ac.Auth.ConfirmationTag = ne.keys.ConfirmationTag(ne.confirmed)
	if err := ne.setConfirmation(s, ac.Auth.ConfirmationTag); err != nil {
		ne.destroy()
		return nil, nil, err
	}
	pm, err := protectPublic(s, nil, &g.st.ctx, ac)
	if err != nil {
		ne.destroy()
		return nil, nil, err
	}
	msg, err := (&MLSMessage{WireFormat: WireFormatPublicMessage, PublicMessage: pm}).Encode()
	if err != nil {
		ne.destroy()
		return nil, nil, err
	}
	if err := g.install(ne, ap, upr.priv.clone(), nil); err != nil {
		ne.destroy()
		return nil, nil, err
	}
	// The GroupInfo's epoch left no keys to keep.
	g.history.Destroy()
	g.pastInfo = nil
	g.resumption = nil
	return g, msg, nil
}
