package mls

// The proposal list of this member's own Commit (RFC 9420 §12.2, §12.4):
// the cached proposals that form a valid list with the ones given inline,
// and DiscardProposals, which empties the cache.

import (
	"errors"

	"github.com/moat-im/moat/crypto/mls/internal/suite"
)

// DiscardProposals forgets every proposal cached in the current epoch
// (received, or sent by this member, with the private keys of its own
// Updates). The next Commit covers none of them, and Encrypt no longer
// refuses with ErrProposalsPending. A pending own Commit is not affected.
// It returns the number of proposals dropped.
func (g *Group) DiscardProposals() int {
	n := len(g.st.proposals)
	g.st.proposals = nil
	for _, u := range g.st.ownUpdates {
		suite.Zero(u.priv)
	}
	g.st.ownUpdates = nil
	return n
}

// commitProposals builds the proposal list of an own Commit: the cached
// proposals by reference (selectCachedProposals), then inline, and
// validates it (§12.2) and applies it to the tree once as a trial. The
// committer may leave proposals out (§12.4: it SHOULD include those that
// "result in a valid proposal list"): a cached proposal the list
// validation or the trial names is dropped and the rest tried again, so
// one bad or conflicting proposal cannot block every Commit. An error
// about an inline proposal is returned.
func (g *Group) commitProposals(inline []committedProposal) ([]committedProposal, []ProposalOrRef, *proposalPlan, error) {
	me := Sender{Type: SenderTypeMember, Index: uint32(g.self)}
	cached := g.selectCachedProposals(inline)
	for {
		props := append(append([]committedProposal(nil), cached...), inline...)
		plan, err := g.validateProposals(props, me, true)
		if err == nil && len(cached) > 0 {
			// Rules that need the tree as changed by earlier proposals
			// (credential support, the new extensions) are only seen
			// when the plan is applied.
			t := g.st.tree
			t.begin()
			_, err = g.applyPlan(plan)
			t.rollback()
		}
		if err == nil {
			pors := make([]ProposalOrRef, len(props))
			for i := range props {
				if props[i].ref != nil {
					pors[i] = ProposalOrRef{Reference: props[i].ref}
				} else {
					pors[i] = ProposalOrRef{Proposal: props[i].p}
				}
			}
			return props, pors, plan, nil
		}
		var pe *ProposalError
		switch {
		case len(cached) == 0:
			return nil, nil, nil, err
		case errors.As(err, &pe) && pe.Index >= len(cached):
			return nil, nil, nil, err // an inline proposal is at fault
		case errors.As(err, &pe) && pe.Index >= 0:
			cached = append(cached[:pe.Index:pe.Index], cached[pe.Index+1:]...)
		default:
			// Not attributable to one proposal: drop the most recent.
			cached = cached[:len(cached)-1]
		}
	}
}

// selectCachedProposals picks the cached proposals a Commit by this member
// covers (§12.4: all valid ones, by reference), in the order received,
// dropping up front those that would make the list invalid (§12.2): its
// own Updates (the path replaces them), a Remove of itself, Updates of a
// leaf also removed (a Remove wins), the later of two proposals touching
// one leaf, the later of two Adds of one client, the later of two
// PreSharedKeys of one PSK or any PSK this member does not hold, a second
// GroupContextExtensions, and a ReInit when other proposals are pending.
// The inline proposals, the caller's explicit choice, win every such
// conflict (and an inline ReInit leaves no room for cached proposals).
// commitProposals catches what is left.
func (g *Group) selectCachedProposals(inline []committedProposal) []committedProposal {
	removed := map[uint32]bool{}
	nonReInit := len(inline)
	for _, cp := range g.st.proposals {
		switch cp.p.Type {
		case ProposalTypeRemove:
			removed[cp.p.Remove.Removed] = true
		}
		if cp.p.Type != ProposalTypeReInit {
			nonReInit++
		}
	}
	touched := map[uint32]bool{}
	addKeys := map[string]bool{}
	psks := map[string]bool{}
	hasGCE := false
	for _, cp := range inline {
		switch cp.p.Type {
		case ProposalTypeRemove:
			touched[cp.p.Remove.Removed] = true
		case ProposalTypeUpdate:
			touched[cp.sender.Index] = true
		case ProposalTypeAdd:
			addKeys[string(cp.p.Add.KeyPackage.LeafNode.SignatureKey)] = true
		case ProposalTypePSK:
			psks[pskIdentity(&cp.p.PreSharedKey.PSK)] = true
		case ProposalTypeGroupContextExtensions:
			hasGCE = true
		case ProposalTypeReInit:
			return nil
		}
	}
	var props []committedProposal
	for _, cp := range g.st.proposals {
		switch cp.p.Type {
		case ProposalTypeUpdate:
			l := cp.sender.Index
			if cp.sender.Type != SenderTypeMember || LeafIndex(l) == g.self || removed[l] || touched[l] {
				continue
			}
			touched[l] = true
		case ProposalTypeRemove:
			l := cp.p.Remove.Removed
			if LeafIndex(l) == g.self || touched[l] {
				continue
			}
			touched[l] = true
		case ProposalTypeAdd:
			k := string(cp.p.Add.KeyPackage.LeafNode.SignatureKey)
			if addKeys[k] {
				continue
			}
			addKeys[k] = true
		case ProposalTypePSK:
			id := &cp.p.PreSharedKey.PSK
			k := pskIdentity(id)
			if psks[k] {
				continue
			}
			if _, err := g.pskValue(id); err != nil {
				continue
			}
			psks[k] = true
		case ProposalTypeGroupContextExtensions:
			if hasGCE {
				continue
			}
			hasGCE = true
		case ProposalTypeReInit:
			if nonReInit > 0 || len(props) > 0 {
				continue
			}
		}
		props = append(props, committedProposal{p: cp.p, sender: cp.sender, ref: cp.ref})
	}
	return props
}
