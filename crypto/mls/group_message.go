package mls

// Sending and receiving framed messages in a group (RFC 9420 §6, §12.1,
// §15): the group-level checks around framing.go's protect and unprotect
// (group, epoch, sender lookup), and the dispatch of what was received.

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/moat-im/moat/crypto/mls/internal/schedule"
)

// ProcessedKind says what a processed message carried.
type ProcessedKind uint8

// Kinds of processed messages.
const (
	ProcessedApplication ProcessedKind = iota + 1
	ProcessedProposal
	ProcessedCommit
)

// Processed is the outcome of a message a Group accepted.
type Processed struct {
	Kind              ProcessedKind
	Epoch             uint64 // the epoch the message was sent in
	Sender            Sender
	AuthenticatedData []byte

	// ApplicationData is the plaintext of an application message.
	ApplicationData []byte
	// Proposal and ProposalRef are set for a proposal, which is now cached
	// for a later Commit.
	Proposal    *Proposal
	ProposalRef ProposalRef
	// Commit is set for a Commit, which the Group has applied.
	Commit *CommitInfo
}

// CommitInfo describes an applied Commit.
type CommitInfo struct {
	NewEpoch uint64
	// Added are the leaves of new members, Removed those of removed ones,
	// Updated those whose LeafNode an Update or the committer's path
	// replaced.
	Added, Removed, Updated []uint32
	// RemovedSelf is true when the Commit removed this member: the Group is
	// no longer active.
	RemovedSelf bool
	// ReInit is set when the Commit carried a ReInit: the Group is no longer
	// active and the members move to a new group (§11.2).
	ReInit *ReInit
	// External is true for an external Commit (a new member joining).
	External bool
}

// Process accepts one MLSMessage carrying a PublicMessage or PrivateMessage
// for this group: an application message (for the current epoch or, if it
// arrives late, a retained past one), a proposal (cached until a Commit
// refers to it) or a Commit (applied, moving the group to the next epoch).
// A handshake message must be for the current epoch: a stale Commit
// re-delivered fails with an *EpochError and changes nothing.
//
// The member's own Commit, sent with Commit, is applied when it comes back
// from the delivery service (the same bytes); see also MergePendingCommit.
//
// On error the Group is unchanged.
func (g *Group) Process(msg []byte) (*Processed, error) {
	if g.status == statusClosed {
		return nil, ErrGroupInactive
	}
	m, err := DecodeMLSMessage(msg)
	if err != nil {
		return nil, err
	}
	if g.pending != nil && bytes.Equal(msg, g.pending.message) {
		info, err := g.MergePendingCommit()
		if err != nil {
			return nil, err
		}
		return &Processed{Kind: ProcessedCommit, Epoch: info.NewEpoch - 1,
			Sender: Sender{Type: SenderTypeMember, Index: uint32(g.self)}, Commit: info}, nil
	}
	switch m.WireFormat {
	case WireFormatPublicMessage:
		return g.processPublic(m.PublicMessage)
	case WireFormatPrivateMessage:
		return g.processPrivate(m.PrivateMessage)
	}
	return nil, fmt.Errorf("%w: wire format %d is not a group message", ErrUnexpectedContent, m.WireFormat)
}

// Decrypt is Process restricted to application messages: it returns the
// plaintext and the sender's leaf index. Handshake messages are refused
// with ErrUnexpectedContent and change nothing.
func (g *Group) Decrypt(msg []byte) (plaintext []byte, sender uint32, err error) {
	m, err := DecodeMLSMessage(msg)
	if err != nil {
		return nil, 0, err
	}
	if m.WireFormat != WireFormatPrivateMessage || m.PrivateMessage.ContentType != ContentTypeApplication {
		return nil, 0, ErrUnexpectedContent
	}
	p, err := g.processPrivate(m.PrivateMessage)
	if err != nil {
		return nil, 0, err
	}
	return p.ApplicationData, p.Sender.Index, nil
}

// checkHandshakeEpoch refuses a handshake message for any epoch but the
// current one (§12.1, §12.4.2).
func (g *Group) checkHandshakeEpoch(groupID []byte, epoch uint64) error {
	if !bytes.Equal(groupID, g.st.ctx.GroupID) {
		return ErrWrongGroup
	}
	if epoch != g.st.ctx.Epoch {
		return &EpochError{Got: epoch, Want: g.st.ctx.Epoch}
	}
	return g.checkActive()
}

// memberKey returns the signature key of the member at leaf in the current
// epoch.
func (g *Group) memberKey(leaf uint32) (SignaturePublicKey, error) {
	ln := g.st.tree.leaf(LeafIndex(leaf))
	if ln == nil {
		return nil, fmt.Errorf("%w: leaf %d", ErrUnknownSender, leaf)
	}
	return ln.SignatureKey, nil
}

// externalSenderKey returns the signature key of external sender index
// (§12.1.8.1).
func (g *Group) externalSenderKey(index uint32) (SignaturePublicKey, error) {
	data, ok := g.st.ctx.Extensions.Find(ExtensionTypeExternalSenders)
	if !ok {
		return nil, fmt.Errorf("%w: no external_senders extension", ErrUnknownSender)
	}
	es, err := DecodeExternalSenders(data)
	if err != nil || uint64(index) >= uint64(len(es)) {
		return nil, fmt.Errorf("%w: external sender %d", ErrUnknownSender, index)
	}
	return es[index].SignatureKey, nil
}

// processPublic handles a PublicMessage (§6.2): membership tag for member
// senders, then the signature with the key its sender type names.
func (g *Group) processPublic(pm *PublicMessage) (*Processed, error) {
	c := &pm.Content
	if err := g.checkHandshakeEpoch(c.GroupID, c.Epoch); err != nil {
		return nil, err
	}
	if c.ContentType == ContentTypeApplication {
		return nil, fmt.Errorf("%w: application message in a PublicMessage", ErrSenderContent)
	}
	ac, err := unprotectPublic(g.suite, g.st.keys.MembershipKey, &g.st.ctx, pm)
	if err != nil {
		return nil, err
	}
	var key SignaturePublicKey
	switch c.Sender.Type {
	case SenderTypeMember:
		key, err = g.memberKey(c.Sender.Index)
	case SenderTypeExternal:
		key, err = g.externalSenderKey(c.Sender.Index)
	case SenderTypeNewMemberProposal:
		// §12.1.8: signed with the key of the KeyPackage being added.
		key = c.Proposal.Add.KeyPackage.LeafNode.SignatureKey
	case SenderTypeNewMemberCommit:
		// §12.4.3.2: signed with the key of the path's new leaf.
		if c.Commit.Path == nil {
			return nil, fmt.Errorf("%w: external commit without a path", ErrPathRequired)
		}
		key = c.Commit.Path.LeafNode.SignatureKey
	default:
		err = ErrUnknownSender
	}
	if err != nil {
		return nil, err
	}
	if err := verifyContent(g.suite, ac, &g.st.ctx, key); err != nil {
		return nil, err
	}
	return g.handleContent(ac, nil, nil, nil)
}

// processPrivate handles a PrivateMessage (§6.3). Application messages may
// be for a retained past epoch; handshake messages only for the current
// one.
func (g *Group) processPrivate(pm *PrivateMessage) (*Processed, error) {
	if !bytes.Equal(pm.GroupID, g.st.ctx.GroupID) {
		return nil, ErrWrongGroup
	}
	if pm.ContentType == ContentTypeApplication {
		if pm.Epoch != g.st.ctx.Epoch || g.st.keys == nil {
			return g.processPastApplication(pm)
		}
	} else if err := g.checkHandshakeEpoch(pm.GroupID, pm.Epoch); err != nil {
		return nil, err
	}
	// The message key is consumed only once the content is accepted: a
	// Commit that fails a later check leaves the secret tree as it was.
	// A Commit's signature is checked on another core while its path is
	// processed; processCommit waits for it before changing any state, and
	// a bad signature takes precedence over any other error.
	// For a Commit, the key this member most likely decrypts its path
	// secret with is expanded on another core from the moment the sender
	// is known (startPathHelper), while the content is decrypted.
	var early *pathHelper
	defer func() { early.release() }()
	onSender := func(leaf uint32) {
		if pm.ContentType == ContentTypeCommit {
			early = g.startPathHelper(LeafIndex(leaf))
		}
	}
	ac, pending, sig, err := unprotectPrivateDeferred(g.suite, g.st.keys.SenderDataSecret, g.st.secrets, &g.st.ctx, pm, g.memberKey, true, onSender)
	if err != nil {
		return nil, err
	}
	p, err := g.handleContent(ac, pending, sig, early)
	if err != nil {
		if serr := sig.wait(); serr != nil {
			err = serr
		}
		pending.Discard()
		return nil, err
	}
	return p, nil
}

// processPastApplication decrypts a late application message of a retained
// past epoch (docs/spec/mls-profile.md "Old epochs retained").
func (g *Group) processPastApplication(pm *PrivateMessage) (*Processed, error) {
	past := g.history.Get(pm.Epoch)
	var info *pastEpochInfo
	for k := range g.pastInfo {
		if g.pastInfo[k].ctx.Epoch == pm.Epoch {
			info = &g.pastInfo[k]
		}
	}
	if past == nil || info == nil {
		return nil, &EpochError{Got: pm.Epoch, Want: g.st.ctx.Epoch}
	}
	key := func(leaf uint32) (SignaturePublicKey, error) {
		ln := g.pastLeaf(pm.Epoch, LeafIndex(leaf))
		if ln == nil || g.removedSince(pm.Epoch, LeafIndex(leaf)) {
			return nil, fmt.Errorf("%w: leaf %d", ErrUnknownSender, leaf)
		}
		return ln.SignatureKey, nil
	}
	ac, err := unprotectPrivate(g.suite, past.SenderDataSecret, past.Tree, &info.ctx, pm, key)
	if err != nil {
		return nil, err
	}
	return &Processed{Kind: ProcessedApplication, Epoch: pm.Epoch, Sender: ac.Content.Sender,
		AuthenticatedData: ac.Content.AuthenticatedData, ApplicationData: ac.Content.ApplicationData}, nil
}

// handleContent dispatches authenticated content of the current epoch.
// pending, for a PrivateMessage, is its unconsumed message key: it is
// committed to the secret tree exactly when the content is accepted, and
// left to the caller to discard otherwise.
//
// sig, if not nil, is the signature check of a Commit, not yet run: the
// content is accepted only if it passes. early, if not nil, is the
// Commit's path helper (processCommit).
func (g *Group) handleContent(ac *AuthenticatedContent, pending *schedule.Pending, sig *pendingCheck, early *pathHelper) (*Processed, error) {
	if ac.Content.ContentType != ContentTypeCommit {
		if err := sig.wait(); err != nil {
			return nil, err
		}
	}
	c := &ac.Content
	out := &Processed{Epoch: c.Epoch, Sender: c.Sender, AuthenticatedData: c.AuthenticatedData}
	consume := func() error {
		if pending == nil {
			return nil
		}
		return g.st.secrets.Commit(pending)
	}
	switch c.ContentType {
	case ContentTypeApplication:
		if err := consume(); err != nil {
			return nil, err
		}
		out.Kind = ProcessedApplication
		out.ApplicationData = c.ApplicationData
		return out, nil
	case ContentTypeProposal:
		ref, err := ac.Ref(g.st.ctx.CipherSuite)
		if err != nil {
			return nil, err
		}
		if err := g.checkReceivedProposal(ac); err != nil {
			return nil, err
		}
		if g.st.findProposal(ref) == nil && len(g.st.proposals) >= MaxCachedProposals {
			return nil, fmt.Errorf("%w: more than %d proposals in one epoch", ErrInvalidProposal, MaxCachedProposals)
		}
		if err := consume(); err != nil {
			return nil, err
		}
		if g.st.findProposal(ref) == nil {
			g.st.proposals = append(g.st.proposals, cachedProposal{ref: ref, p: c.Proposal, sender: c.Sender})
		}
		out.Kind = ProcessedProposal
		out.Proposal = c.Proposal
		out.ProposalRef = ref
		return out, nil
	case ContentTypeCommit:
		if c.Sender.Type == SenderTypeMember && LeafIndex(c.Sender.Index) == g.self {
			return nil, fmt.Errorf("%w: own commit that is not the pending one", ErrPendingCommit)
		}
		info, err := g.processCommit(ac, pending, sig, early)
		if err != nil {
			return nil, err
		}
		out.Kind = ProcessedCommit
		out.Commit = info
		return out, nil
	}
	return nil, ErrUnexpectedContent
}

// checkReceivedProposal runs the checks a proposal passes or fails on its
// own when it arrives (§12.1, the sender rules of §12.1.8 and the
// application's Policy; checkProposal), so that only proposals a Commit
// can cover are cached. The rules about a whole list (§12.2) are applied
// when a Commit is made or processed. The error wraps ErrInvalidProposal
// and the cause (ErrPolicy, ErrInvalidKeyPackage, ...).
func (g *Group) checkReceivedProposal(ac *AuthenticatedContent) error {
	return g.checkArrivingProposal(committedProposal{p: ac.Content.Proposal, sender: ac.Content.Sender})
}

func (g *Group) checkArrivingProposal(cp committedProposal) error {
	err := g.checkProposal(-1, cp, nil, g.groupParams(g.st.ctx.Extensions, &g.st.stats, false))
	var pe *ProposalError
	if errors.As(err, &pe) {
		if pe.Err != nil {
			return fmt.Errorf("%w: %s: %w", ErrInvalidProposal, pe.Reason, pe.Err)
		}
		return fmt.Errorf("%w: %s", ErrInvalidProposal, pe.Reason)
	}
	return err
}

// protect frames content from this member for the current epoch, signs it
// and wraps it as a PublicMessage or PrivateMessage. It returns the
// AuthenticatedContent (for proposal references and transcript hashes)
// and the encoded MLSMessage. confirmationTag, if set, is computed from
// the signed content before protection (Commits).
func (g *Group) protect(c *FramedContent, public bool, confirm func(*AuthenticatedContent) error) (*AuthenticatedContent, []byte, error) {
	wf := WireFormatPrivateMessage
	if public {
		wf = WireFormatPublicMessage
	}
	ac, err := signContent(g.suite, g.sigKey, wf, c, &g.st.ctx)
	if err != nil {
		return nil, nil, err
	}
	if confirm != nil {
		if err := confirm(ac); err != nil {
			return nil, nil, err
		}
	}
	var m MLSMessage
	if public {
		pm, err := protectPublic(g.suite, g.st.keys.MembershipKey, &g.st.ctx, ac)
		if err != nil {
			return nil, nil, err
		}
		m = MLSMessage{WireFormat: WireFormatPublicMessage, PublicMessage: pm}
	} else {
		pm, err := protectPrivate(g.suite, g.st.keys.SenderDataSecret, g.st.secrets, ac, g.cfg.paddingBlock(), nil)
		if err != nil {
			return nil, nil, err
		}
		m = MLSMessage{WireFormat: WireFormatPrivateMessage, PrivateMessage: pm}
	}
	out, err := m.Encode()
	if err != nil {
		return nil, nil, err
	}
	return ac, out, nil
}

// ErrProposalsPending is returned by Encrypt while the member holds
// proposals of the current epoch: §12.4 ("A group member that has observed
// one or more valid proposals within an epoch MUST send a Commit message
// before sending application data"). Only valid proposals are cached
// (checkReceivedProposal) and Commit covers the subset that forms a valid
// list, so a Commit is always possible; DiscardProposals drops proposals
// the member chooses not to act on.
var ErrProposalsPending = errors.New("mls: proposals pending; commit before sending application data")

// Encrypt protects plaintext as an application message of the current
// epoch (§15), a PrivateMessage from this member. authenticatedData is
// sent in clear but authenticated.
func (g *Group) Encrypt(plaintext, authenticatedData []byte) ([]byte, error) {
	if err := g.checkActive(); err != nil {
		return nil, err
	}
	if len(g.st.proposals) > 0 {
		return nil, ErrProposalsPending
	}
	c := &FramedContent{
		GroupID:           g.st.ctx.GroupID,
		Epoch:             g.st.ctx.Epoch,
		Sender:            Sender{Type: SenderTypeMember, Index: uint32(g.self)},
		AuthenticatedData: slices.Clone(authenticatedData),
		ContentType:       ContentTypeApplication,
		ApplicationData:   plaintext,
	}
	_, out, err := g.protect(c, false, nil)
	return out, err
}
