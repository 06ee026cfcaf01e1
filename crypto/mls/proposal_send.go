package mls

// Sending proposals (RFC 9420 §12.1): each Propose method frames one
// proposal from this member, caches it under its ProposalRef (a Commit
// covers it by reference, the member's own included) and returns the
// MLSMessage to send.

import (
	"bytes"
	"slices"

	"github.com/moat-im/moat/crypto/mls/internal/suite"
)

// ownUpdate is the private key of an Update this member proposed, kept
// until a Commit applies it.
type ownUpdate struct {
	pub  HPKEPublicKey
	priv HPKEPrivateKey
}

// propose frames, protects and caches p.
func (g *Group) propose(p *Proposal, authenticatedData []byte) ([]byte, ProposalRef, error) {
	if err := g.checkActive(); err != nil {
		return nil, nil, err
	}
	if g.pending != nil {
		return nil, nil, ErrPendingCommit
	}
	me := Sender{Type: SenderTypeMember, Index: uint32(g.self)}
	// The checks every receiver applies before caching it.
	if err := g.checkArrivingProposal(committedProposal{p: p, sender: me}); err != nil {
		return nil, nil, err
	}
	c := &FramedContent{
		GroupID:           g.st.ctx.GroupID,
		Epoch:             g.st.ctx.Epoch,
		Sender:            me,
		AuthenticatedData: slices.Clone(authenticatedData),
		ContentType:       ContentTypeProposal,
		Proposal:          p,
	}
	ac, out, err := g.protect(c, g.cfg.PublicHandshake, nil)
	if err != nil {
		return nil, nil, err
	}
	ref, err := ac.Ref(g.st.ctx.CipherSuite)
	if err != nil {
		return nil, nil, err
	}
	g.st.proposals = append(g.st.proposals, cachedProposal{ref: ref, p: p, sender: c.Sender})
	return out, ref, nil
}

// ProposeAdd proposes adding the client of kp (§12.1.1). The KeyPackage is
// validated first.
func (g *Group) ProposeAdd(kp *KeyPackage) ([]byte, error) {
	if err := ValidateKeyPackage(kp, g.groupParams(g.st.ctx.Extensions, &g.st.stats, true)); err != nil {
		return nil, err
	}
	out, _, err := g.propose(&Proposal{Type: ProposalTypeAdd, Add: &Add{KeyPackage: *kp}}, nil)
	return out, err
}

// ProposeRemove proposes removing the member at leaf (§12.1.3).
func (g *Group) ProposeRemove(leaf uint32) ([]byte, error) {
	if g.st.tree.leaf(LeafIndex(leaf)) == nil {
		return nil, proposalErr(-1, "Remove of a blank leaf", nil)
	}
	out, _, err := g.propose(&Proposal{Type: ProposalTypeRemove, Remove: &Remove{Removed: leaf}}, nil)
	return out, err
}

// ProposeUpdate proposes replacing this member's leaf with one holding a
// fresh encryption key (§12.1.2). The private key is kept until a Commit
// applies the Update.
func (g *Group) ProposeUpdate() ([]byte, error) {
	if err := g.checkActive(); err != nil {
		return nil, err
	}
	s := g.suite
	priv, pub, err := s.GenerateHPKEKey()
	if err != nil {
		return nil, err
	}
	ln := *g.st.tree.leaf(g.self)
	ln.EncryptionKey = HPKEPublicKey(pub)
	ln.Source = LeafNodeSourceUpdate
	ln.Lifetime = nil
	ln.ParentHash = nil
	ln.Signature = nil
	if err := ln.Sign(g.st.ctx.CipherSuite, g.sigKey, g.st.ctx.GroupID, uint32(g.self)); err != nil {
		suite.Zero(priv)
		return nil, err
	}
	out, _, err := g.propose(&Proposal{Type: ProposalTypeUpdate, Update: &Update{LeafNode: ln}}, nil)
	if err != nil {
		suite.Zero(priv)
		return nil, err
	}
	g.st.ownUpdates = append(g.st.ownUpdates, ownUpdate{pub: HPKEPublicKey(pub), priv: HPKEPrivateKey(priv)})
	return out, nil
}

// ProposePSK proposes injecting a PSK into the next epoch (§12.1.4). A
// fresh psk_nonce of KDF.Nh bytes is drawn here.
func (g *Group) ProposePSK(id PreSharedKeyID) ([]byte, error) {
	nonce, err := randomBytes(g.suite.Nh())
	if err != nil {
		return nil, err
	}
	id.Nonce = nonce
	if _, err := g.pskValue(&id); err != nil {
		return nil, err
	}
	out, _, err := g.propose(&Proposal{Type: ProposalTypePSK, PreSharedKey: &PreSharedKey{PSK: id}}, nil)
	return out, err
}

// ProposeGroupContextExtensions proposes replacing the GroupContext
// extensions with exts (§12.1.7).
func (g *Group) ProposeGroupContextExtensions(exts Extensions) ([]byte, error) {
	if err := g.cfg.checkRequiredExtensions(exts); err != nil {
		return nil, err
	}
	out, _, err := g.propose(&Proposal{Type: ProposalTypeGroupContextExtensions,
		GroupContextExtensions: &GroupContextExtensions{Extensions: slices.Clone(exts)}}, nil)
	return out, err
}

// ProposeReInit proposes reinitialising the group with new parameters
// (§12.1.5, §11.2).
func (g *Group) ProposeReInit(r ReInit) ([]byte, error) {
	if err := g.cfg.checkSuite(r.CipherSuite); err != nil {
		return nil, err
	}
	out, _, err := g.propose(&Proposal{Type: ProposalTypeReInit, ReInit: &r}, nil)
	return out, err
}

// findOwnUpdate returns the pending own Update whose leaf has encryption
// key pub.
func (st *epochState) findOwnUpdate(pub HPKEPublicKey) *ownUpdate {
	for i := range st.ownUpdates {
		if bytes.Equal(st.ownUpdates[i].pub, pub) {
			return &st.ownUpdates[i]
		}
	}
	return nil
}
