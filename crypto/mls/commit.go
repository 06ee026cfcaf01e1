package mls

// Commits (RFC 9420 §12.4): creating one with its Welcome (§12.4.1,
// §12.4.3.1), processing one from another member or an external joiner
// (§12.4.2, §12.4.3.2), and merging one's own once the delivery service has
// accepted it.

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/moat-im/moat/crypto/mls/internal/schedule"
	"github.com/moat-im/moat/crypto/mls/internal/suite"
)

// CommitOptions choose what a Commit covers.
type CommitOptions struct {
	// Add, Remove and Proposals are proposals included by value, after the
	// cached proposals of the epoch (which are included by reference).
	Add       []*KeyPackage
	Remove    []uint32
	Proposals []Proposal
	// NoPath omits the UpdatePath when the proposals allow it (§12.4: only
	// Add, PreSharedKey and ReInit). By default every Commit carries one,
	// for post-compromise security of the committer.
	NoPath bool
	// RatchetTreeInWelcome puts the ratchet tree into the Welcome's
	// GroupInfo (§12.4.3.3). Off by default: Moat serves trees out of band
	// (docs/spec/mls-profile.md).
	RatchetTreeInWelcome bool
	// AuthenticatedData is sent in clear with the Commit, authenticated.
	AuthenticatedData []byte
	// GroupInfo asks for the new epoch's signed GroupInfo (with
	// external_pub) in the result, for publishing to external joiners.
	GroupInfo bool
}

// CommitResult is what Commit produces.
type CommitResult struct {
	// Message is the Commit for the group (an MLSMessage).
	Message []byte
	// Welcome is the Welcome for the new members (an MLSMessage), nil if
	// the Commit adds none.
	Welcome []byte
	// GroupInfo is the signed GroupInfo of the new epoch (an MLSMessage),
	// with external_pub, if CommitOptions.GroupInfo asked for it.
	GroupInfo []byte
}

// newEpochValues are the values of the epoch a Commit starts, derived
// before the new state is installed.
type newEpochValues struct {
	ctx             GroupContext
	ctxBytes        []byte
	keys            *schedule.Epoch
	confirmed       []byte
	interim         []byte
	confirmationTag []byte
}

func (v *newEpochValues) destroy() {
	if v != nil && v.keys != nil {
		v.keys.Destroy()
	}
}

// deriveEpoch runs §8 for the epoch a Commit starts: the confirmed
// transcript hash over the signed Commit, the new GroupContext and the key
// schedule from initSecret, commitSecret (nil: zero) and pskSecret (nil:
// zero).
func (g *Group) deriveEpoch(ac *AuthenticatedContent, treeHash []byte, exts Extensions, initSecret, commitSecret, pskSecret []byte) (*newEpochValues, error) {
	in, err := ac.ConfirmedTranscriptHashInput()
	if err != nil {
		return nil, err
	}
	v := &newEpochValues{confirmed: schedule.ConfirmedTranscriptHash(g.suite, g.st.interim, in)}
	v.ctx = GroupContext{
		CipherSuite:             g.st.ctx.CipherSuite,
		GroupID:                 g.st.ctx.GroupID,
		Epoch:                   g.st.ctx.Epoch + 1,
		TreeHash:                slices.Clone(treeHash),
		ConfirmedTranscriptHash: v.confirmed,
		Extensions:              exts,
	}
	if v.ctxBytes, err = v.ctx.Encode(); err != nil {
		return nil, err
	}
	if v.keys, err = schedule.Next(g.suite, initSecret, commitSecret, pskSecret, v.ctxBytes); err != nil {
		return nil, err
	}
	return v, nil
}

// setConfirmation records the Commit's confirmation tag and the interim
// transcript hash that follows from it (§8.2).
func (v *newEpochValues) setConfirmation(s *suite.Suite, tag []byte) error {
	v.confirmationTag = slices.Clone(tag)
	var err error
	v.interim, err = schedule.InterimTranscriptHash(s, v.confirmed, tag)
	return err
}

// pendingCommit is this member's own Commit, created but not yet merged.
type pendingCommit struct {
	message []byte
	ac      *AuthenticatedContent
	props   []committedProposal
	plan    *proposalPlan
	path    *UpdatePath
	priv    *privateTree // own private keys after the Commit
	epoch   *newEpochValues
}

func (g *Group) clearPending() {
	if g.pending != nil {
		g.pending.epoch.destroy()
		if g.pending.priv != nil {
			g.pending.priv.Zero()
		}
		g.pending = nil
	}
}

// ClearPendingCommit forgets the member's own pending Commit (for example
// when the delivery service refused it). Its proposals stay cached.
func (g *Group) ClearPendingCommit() { g.clearPending() }

// HasPendingCommit reports whether Commit was called and the result not
// yet merged or cleared.
func (g *Group) HasPendingCommit() bool { return g.pending != nil }

// Commit creates a Commit covering the proposals cached in this epoch
// (by reference; an own Update is left out, as are proposals that would
// make the list invalid, preferring Removes, §12.2; see commitProposals)
// plus the proposals in opts (by value), and the Welcome for the members it adds. The group does
// not change until the Commit is merged: by Process when the delivery
// service echoes it, or by MergePendingCommit.
func (g *Group) Commit(opts CommitOptions) (res *CommitResult, err error) {
	return g.commit(opts, nil)
}

// commitTamper, passed to commit only by this package's tests, changes a
// Commit after its UpdatePath is built (gc is the encoded provisional
// GroupContext the path secrets are encrypted under) and before it is
// signed: it plays a malicious committer (adversarial case T18, §12.2
// rejection tests).
type commitTamper func(g *Group, c *Commit, gc []byte)

// commit is Commit with an optional tamper step (nil in production).
func (g *Group) commit(opts CommitOptions, tamper commitTamper) (res *CommitResult, err error) {
	if err := g.checkActive(); err != nil {
		return nil, err
	}
	if g.pending != nil {
		return nil, ErrPendingCommit
	}
	s := g.suite
	me := Sender{Type: SenderTypeMember, Index: uint32(g.self)}

	// The proposal list: cached proposals by reference, then opts inline.
	var inline []Proposal
	for _, kp := range opts.Add {
		inline = append(inline, Proposal{Type: ProposalTypeAdd, Add: &Add{KeyPackage: *kp}})
	}
	for _, r := range opts.Remove {
		inline = append(inline, Proposal{Type: ProposalTypeRemove, Remove: &Remove{Removed: r}})
	}
	inline = append(inline, opts.Proposals...)
	var inlineProps []committedProposal
	for i := range inline {
		p := &inline[i]
		if p.Type == ProposalTypePSK && len(p.PreSharedKey.PSK.Nonce) == 0 {
			q := *p.PreSharedKey
			if q.PSK.Nonce, err = randomBytes(s.Nh()); err != nil {
				return nil, err
			}
			p.PreSharedKey = &q
		}
		inlineProps = append(inlineProps, committedProposal{p: p, sender: me})
	}
	// Own Commits check leaf lifetimes against the clock (§7.3: MUST when
	// sending).
	props, pors, plan, err := g.commitProposals(inlineProps)
	if err != nil {
		return nil, err
	}
	withPath := pathRequired(props) || !opts.NoPath
	pskSecret, err := g.pskSecret(plan.psks)
	if err != nil {
		return nil, err
	}

	// Work on the tree under its journal; it is rolled back at the end,
	// the Commit being only pending.
	t := g.st.tree
	t.begin()
	defer t.rollback()
	ap, err := g.applyPlan(plan)
	if err != nil {
		return nil, err
	}
	exclude := sortedLeaves(ap.added)
	pc := &pendingCommit{props: props, plan: plan}
	var commitSecret []byte
	var upr *updatePathResult
	if withPath {
		template := *t.leaf(g.self)
		gc := GroupContext{
			CipherSuite:             g.st.ctx.CipherSuite,
			GroupID:                 g.st.ctx.GroupID,
			Epoch:                   g.st.ctx.Epoch + 1,
			ConfirmedTranscriptHash: g.st.ctx.ConfirmedTranscriptHash,
			Extensions:              ap.exts,
		}
		if upr, err = t.createUpdatePath(g.self, &template, g.sigKey, gc, exclude); err != nil {
			return nil, err
		}
		defer upr.Zero()
		commitSecret = upr.commitSecret
		pc.path = upr.path
		pc.priv = upr.priv.clone()
	}
	th, err := t.treeHash()
	if err != nil {
		return nil, err
	}

	commit := &Commit{Proposals: pors, Path: pc.path}
	if tamper != nil && upr != nil {
		tamper(g, commit, upr.groupContext)
	}
	content := &FramedContent{
		GroupID:           g.st.ctx.GroupID,
		Epoch:             g.st.ctx.Epoch,
		Sender:            me,
		AuthenticatedData: slices.Clone(opts.AuthenticatedData),
		ContentType:       ContentTypeCommit,
		Commit:            commit,
	}
	var ne *newEpochValues
	defer func() {
		if err != nil {
			ne.destroy()
			pc.epoch = nil
			if pc.priv != nil {
				pc.priv.Zero()
			}
		}
	}()
	confirm := func(ac *AuthenticatedContent) error {
		var err error
		if ne, err = g.deriveEpoch(ac, th, ap.exts, g.st.keys.InitSecret, commitSecret, pskSecret); err != nil {
			return err
		}
		ac.Auth.ConfirmationTag = ne.keys.ConfirmationTag(ne.confirmed)
		return ne.setConfirmation(s, ac.Auth.ConfirmationTag)
	}
	ac, msg, err := g.protect(content, g.cfg.PublicHandshake, confirm)
	if err != nil {
		return nil, err
	}
	pc.message, pc.ac, pc.epoch = msg, ac, ne
	res = &CommitResult{Message: msg}

	// GroupInfo of the new epoch (§12.4.3), for the Welcome and for
	// external joiners.
	if len(ap.added) > 0 {
		gi, err := g.newGroupInfo(ne, t, false, opts.RatchetTreeInWelcome)
		if err != nil {
			return nil, err
		}
		w, err := g.newWelcome(ne, gi, ap, upr, plan.psks)
		if err != nil {
			return nil, err
		}
		if res.Welcome, err = (&MLSMessage{WireFormat: WireFormatWelcome, Welcome: w}).Encode(); err != nil {
			return nil, err
		}
	}
	if opts.GroupInfo {
		gi, err := g.newGroupInfo(ne, t, true, false)
		if err != nil {
			return nil, err
		}
		if res.GroupInfo, err = (&MLSMessage{WireFormat: WireFormatGroupInfo, GroupInfo: gi}).Encode(); err != nil {
			return nil, err
		}
	}
	g.pending = pc
	return res, nil
}

// newGroupInfo builds and signs the GroupInfo of the epoch ne describes
// (§12.4.3) over tree t (already reflecting the Commit), with the
// external_pub extension if withExternalPub and the ratchet_tree extension
// if withTree.
func (g *Group) newGroupInfo(ne *newEpochValues, t *publicTree, withExternalPub, withTree bool) (*GroupInfo, error) {
	var exts Extensions
	if withExternalPub {
		_, extPub, err := ne.keys.ExternalKeyPair()
		if err != nil {
			return nil, err
		}
		epData, err := (&ExternalPub{ExternalPub: HPKEPublicKey(extPub)}).Encode()
		if err != nil {
			return nil, err
		}
		exts = append(exts, Extension{Type: ExtensionTypeExternalPub, Data: epData})
	}
	if withTree {
		rt, err := t.ratchetTree().Encode()
		if err != nil {
			return nil, err
		}
		exts = append(exts, Extension{Type: ExtensionTypeRatchetTree, Data: rt})
	}
	gi := &GroupInfo{
		GroupContext:    cloneGroupContext(&ne.ctx),
		Extensions:      exts,
		ConfirmationTag: slices.Clone(ne.confirmationTag),
		Signer:          uint32(g.self),
	}
	if err := gi.Sign(g.sigKey); err != nil {
		return nil, err
	}
	return gi, nil
}

// newWelcome builds the Welcome for the members a Commit adds
// (§12.4.3.1): the GroupInfo encrypted under the welcome secret, and for
// each new member its GroupSecrets (joiner secret, the path secret of its
// lowest common ancestor with the committer, the PSKs) encrypted to its
// KeyPackage's init key.
func (g *Group) newWelcome(ne *newEpochValues, gi *GroupInfo, ap *appliedPlan, upr *updatePathResult, psks []PreSharedKeyID) (*Welcome, error) {
	s := g.suite
	egi, err := encryptGroupInfo(s, ne.keys.WelcomeSecret, gi)
	if err != nil {
		return nil, err
	}
	w := &Welcome{CipherSuite: g.st.ctx.CipherSuite, EncryptedGroupInfo: egi}
	for k, leaf := range ap.added {
		kp := ap.addedKP[k]
		ref, err := kp.Ref()
		if err != nil {
			return nil, err
		}
		gs := &GroupSecrets{JoinerSecret: ne.keys.JoinerSecret, PSKs: psks}
		if upr != nil {
			if _, ps := upr.pathSecretFor(g.self, leaf); ps != nil {
				gs.PathSecret = &PathSecret{PathSecret: ps}
			}
		}
		ct, err := encryptGroupSecrets(s, kp.InitKey, gs, egi)
		if err != nil {
			return nil, err
		}
		w.Secrets = append(w.Secrets, EncryptedGroupSecrets{NewMember: ref, EncryptedGroupSecrets: ct})
	}
	return w, nil
}

// MergePendingCommit applies the member's own pending Commit: the
// delivery service accepted it. Process calls it when the Commit's bytes
// come back.
func (g *Group) MergePendingCommit() (*CommitInfo, error) {
	pc := g.pending
	if pc == nil {
		return nil, fmt.Errorf("%w: none", ErrPendingCommit)
	}
	if err := g.checkActive(); err != nil {
		return nil, err
	}
	t := g.st.tree
	t.begin()
	committed := false
	defer func() {
		if !committed {
			t.rollback()
		}
	}()
	ap, err := g.applyPlan(pc.plan)
	if err != nil {
		return nil, err
	}
	info := g.commitInfo(ap, pc.plan, false)
	priv := pc.priv
	if pc.path != nil {
		gc := GroupContext{
			CipherSuite:             g.st.ctx.CipherSuite,
			GroupID:                 g.st.ctx.GroupID,
			Epoch:                   g.st.ctx.Epoch + 1,
			ConfirmedTranscriptHash: g.st.ctx.ConfirmedTranscriptHash,
			Extensions:              ap.exts,
		}
		ap.stats.remove(t.leaf(g.self))
		if _, ok := ap.changed[g.self]; !ok {
			ap.changed[g.self] = t.leaf(g.self)
		}
		if _, err := t.applyUpdatePath(g.self, pc.path, gc, sortedLeaves(ap.added), nil, nil); err != nil {
			return nil, err
		}
		ap.stats.add(&pc.path.LeafNode)
		info.Updated = appendLeaf(info.Updated, uint32(g.self))
	} else {
		priv = g.st.priv.clone()
		priv.prune(t)
	}
	th, err := t.treeHash()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(th, pc.epoch.ctx.TreeHash) {
		return nil, fmt.Errorf("mls: merging own commit: tree hash differs from the one committed to")
	}
	if err := g.install(pc.epoch, ap, priv, nil); err != nil {
		return nil, err
	}
	t.commit()
	committed = true
	if pc.plan.reinit != nil {
		g.reinit = pc.plan.reinit
		g.status = statusReInit
		info.ReInit = pc.plan.reinit
	}
	pc.priv = nil // now owned by the state
	pc.epoch = nil
	g.pending = nil
	return info, nil
}

func appendLeaf(s []uint32, l uint32) []uint32 {
	if slices.Contains(s, l) {
		return s
	}
	return append(s, l)
}

// commitInfo summarises an applied plan.
func (g *Group) commitInfo(ap *appliedPlan, plan *proposalPlan, external bool) *CommitInfo {
	info := &CommitInfo{NewEpoch: g.st.ctx.Epoch + 1, External: external, RemovedSelf: ap.removedSelf}
	for _, l := range ap.added {
		info.Added = append(info.Added, uint32(l))
	}
	for _, cp := range plan.removes {
		info.Removed = append(info.Removed, cp.p.Remove.Removed)
	}
	for _, cp := range plan.updates {
		info.Updated = append(info.Updated, cp.sender.Index)
	}
	return info
}

// install makes the epoch ne the current one, with the tree as changed by
// the Commit (the caller commits its journal right after), priv the
// member's private keys in it and ap what the proposals did. The old
// epoch's receiving keys go to the history. Nothing after the secret tree
// is built can fail.
func (g *Group) install(ne *newEpochValues, ap *appliedPlan, priv *privateTree, pending *schedule.Pending) error {
	s := g.suite
	t := g.st.tree
	secrets, err := schedule.NewSecretTree(s, ne.keys.EncryptionSecret, t.nLeaves)
	if err != nil {
		return err
	}
	if pending != nil {
		// The Commit's own message key, consumed now that it is accepted.
		if err := g.st.secrets.Commit(pending); err != nil {
			secrets.Destroy()
			return err
		}
	}
	ne.keys.ConsumeEncryptionSecret()
	old := g.st
	g.pushHistory(&old, ap)
	if old.keys != nil {
		old.keys.Destroy()
	}
	if old.priv != nil && old.priv != priv {
		old.priv.Zero()
	}
	g.st = epochState{
		ctx:             ne.ctx,
		ctxBytes:        ne.ctxBytes,
		tree:            t,
		priv:            priv,
		stats:           ap.stats,
		keys:            ne.keys,
		secrets:         secrets,
		interim:         ne.interim,
		confirmationTag: ne.confirmationTag,
	}
	return nil
}

// processCommit applies a Commit from another member or an external
// joiner (§12.4.2). ac has passed framing: membership tag or decryption,
// and the signature, or the signature check is sig, not yet run, which
// processCommit runs beside its other work and waits for before it
// changes any state. helper, if not nil, is a helper goroutine already
// expanding the key this member probably decrypts the path with
// (startPathHelper).
//
// pending is the Commit's unconsumed PrivateMessage key (nil for a
// PublicMessage): it is consumed only once every check has passed.
func (g *Group) processCommit(ac *AuthenticatedContent, pending *schedule.Pending, sig *pendingCheck, helper *pathHelper) (info *CommitInfo, err error) {
	st := &g.st
	s := g.suite
	c := ac.Content.Commit
	committer := ac.Content.Sender
	external := committer.Type == SenderTypeNewMemberCommit

	props, err := st.resolveProposals(c, committer)
	if err != nil {
		return nil, err
	}
	plan, err := g.validateProposals(props, committer, false)
	if err != nil {
		return nil, err
	}
	if c.Path == nil && pathRequired(props) {
		return nil, ErrPathRequired
	}
	if c.Path == nil {
		sig.start() // beside the rest; with a path, beside its key pairs
	}
	if external {
		if err := g.checkResync(plan, &c.Path.LeafNode); err != nil {
			return nil, err
		}
	}
	pskSecret, err := g.pskSecret(plan.psks)
	if err != nil {
		return nil, err
	}
	initSecret := st.keys.InitSecret
	if external {
		// §8.3: the new epoch's init secret comes from the joiner's KEM
		// output to the external key pair of this epoch.
		extPriv, _, err := st.keys.ExternalKeyPair()
		if err != nil {
			return nil, err
		}
		defer suite.Zero(extPriv)
		if initSecret, err = schedule.ExternalInitReceive(s, extPriv, plan.extInit.KEMOutput); err != nil {
			return nil, fmt.Errorf("%w: external init does not decrypt", ErrInvalidProposalList)
		}
		defer suite.Zero(initSecret)
	}

	t := st.tree
	t.begin()
	committed := false
	defer func() {
		if !committed {
			t.rollback()
		}
	}()
	ap, err := g.applyPlan(plan)
	if err != nil {
		return nil, err
	}
	info = g.commitInfo(ap, plan, external)

	// An Update of this member's own leaf (proposed by it, committed by
	// another) brings the private key kept when it was proposed.
	basePriv := st.priv
	for _, cp := range plan.updates {
		if LeafIndex(cp.sender.Index) != g.self {
			continue
		}
		ln := &cp.p.Update.LeafNode
		u := st.findOwnUpdate(ln.EncryptionKey)
		if u == nil {
			return nil, proposalErr(-1, "Update of this member's leaf that it did not propose", nil)
		}
		basePriv = st.priv.clone()
		basePriv.set(g.self.Node(), suite.HPKEPrivateKey(slices.Clone(u.priv)), ln.EncryptionKey)
		basePriv.prune(t)
		defer func(p *privateTree) {
			if err != nil {
				p.Zero()
			}
		}(basePriv)
	}

	var commitSecret []byte
	priv := (*privateTree)(nil)
	// early is the next epoch, derived beside the path's key pairs.
	// Values processCommit did not take over are destroyed here (those it
	// took, it installs or destroys itself).
	var early *earlyEpoch
	defer func() {
		if early != nil && early.ne != nil && !early.used {
			early.ne.destroy()
		}
	}()
	if c.Path != nil {
		var sender LeafIndex
		if external {
			// §12.4.3.2: the joiner takes the leftmost blank leaf,
			// extending the tree if there is none.
			var ok bool
			if sender, ok = t.leftmostBlankLeaf(); !ok {
				if t.nLeaves >= MaxTreeLeaves {
					return nil, treeErr("applying external commit", 0, ErrTreeFull)
				}
				sender = LeafIndex(t.nLeaves)
				t.resize(2 * t.nLeaves)
			}
			info.Added = append(info.Added, uint32(sender))
		} else {
			sender = LeafIndex(committer.Index)
			if t.leaf(sender) == nil {
				return nil, fmt.Errorf("%w: committer leaf %d", ErrUnknownSender, sender)
			}
			info.Updated = appendLeaf(info.Updated, uint32(sender))
		}
		if old := t.leaf(sender); old != nil {
			ap.stats.remove(old)
		}
		if _, ok := ap.changed[sender]; !ok {
			ap.changed[sender] = t.leaf(sender)
		}
		params := g.groupParams(ap.exts, &ap.stats, false)
		// applyUpdatePath checks the signature, source, parent hash and
		// key uniqueness; the rest of §7.3 is here.
		prevLeaf := ap.changed[sender] // nil for a joiner
		checkLeaf := func(i LeafIndex, ln *LeafNode) error {
			if err := checkLeafForGroup(ln, params); err != nil {
				return err
			}
			if err := g.cfg.checkSuccessor(prevLeaf, ln); err != nil {
				return err
			}
			return ap.stats.checkCredentialSupport(ln)
		}
		gc := GroupContext{
			CipherSuite:             st.ctx.CipherSuite,
			GroupID:                 st.ctx.GroupID,
			Epoch:                   st.ctx.Epoch + 1,
			ConfirmedTranscriptHash: st.ctx.ConfirmedTranscriptHash,
			Extensions:              ap.exts,
		}
		myPriv := basePriv
		if ap.removedSelf {
			myPriv = nil // nothing to decrypt: this member is leaving
			sig.start()
		}
		// The Commit's signature, and the next epoch's key schedule and
		// confirmation tag (which need only the new tree hash and the
		// commit secret), run while the path's key pairs are derived and
		// checked (§7.5); they count only if every check passes.
		beside := &pathBeside{helper: helper, first: sig, withSecrets: func(th, commitSecret []byte) {
			defer suite.Zero(commitSecret)
			ne, tagOK, err := g.deriveAndConfirm(ac, th, ap.exts, initSecret, commitSecret, pskSecret)
			early = &earlyEpoch{treeHash: th, ne: ne, tagOK: tagOK, err: err}
		}}
		res, err := t.applyUpdatePathBeside(sender, c.Path, gc, sortedLeaves(ap.added), myPriv, checkLeaf, beside)
		if err != nil {
			return nil, err
		}
		ap.stats.add(&c.Path.LeafNode)
		if myPriv != nil {
			commitSecret = res.commitSecret
			priv = res.priv
			suite.Zero(res.pathSecret)
		}
	} else if !ap.removedSelf {
		priv = basePriv.clone()
		priv.prune(t)
	}
	// The FramedContent signature (§6.1), if still being checked, must
	// pass before anything is committed.
	if err := sig.wait(); err != nil {
		return nil, err
	}
	if ap.removedSelf {
		// §12.4.2: the member cannot derive the new epoch. Record the
		// removal; the last epoch's receiving keys stay in the history
		// for late application messages.
		if pending != nil {
			if err := st.secrets.Commit(pending); err != nil {
				return nil, err
			}
		}
		old := g.st
		g.pushHistory(&old, ap)
		old.keys.Destroy()
		if old.priv != nil {
			old.priv.Zero()
		}
		g.st.keys, g.st.secrets, g.st.priv, g.st.proposals = nil, nil, nil, nil
		g.st.ctx.Epoch++
		g.st.stats = ap.stats
		g.status = statusRemoved
		g.clearPending()
		t.commit()
		committed = true
		return info, nil
	}
	defer func() {
		if err != nil && priv != nil && priv != st.priv && priv != basePriv {
			priv.Zero()
		}
	}()

	th, err := t.treeHash()
	if err != nil {
		return nil, err
	}
	var ne *newEpochValues
	var tagOK bool
	if early != nil && bytes.Equal(early.treeHash, th) {
		ne, tagOK, err = early.ne, early.tagOK, early.err
		early.used = true // installed or destroyed below
	} else {
		ne, tagOK, err = g.deriveAndConfirm(ac, th, ap.exts, initSecret, commitSecret, pskSecret)
	}
	if err != nil {
		return nil, err
	}
	if !tagOK {
		ne.destroy()
		return nil, ErrInvalidConfirmationTag
	}
	if err := ne.setConfirmation(s, ac.Auth.ConfirmationTag); err != nil {
		ne.destroy()
		return nil, err
	}
	if err := g.cfg.checkRequiredExtensions(ne.ctx.Extensions); err != nil {
		ne.destroy()
		return nil, err
	}
	if err := g.install(ne, ap, priv, pending); err != nil {
		ne.destroy()
		return nil, err
	}
	t.commit()
	committed = true
	// Another member's Commit won the epoch: the own pending one is void.
	g.clearPending()
	if plan.reinit != nil {
		g.reinit = plan.reinit
		g.status = statusReInit
		info.ReInit = plan.reinit
	}
	return info, nil
}

// deriveAndConfirm is deriveEpoch followed by the check of the Commit's
// confirmation tag (§8.1, §12.4.2) against the new epoch's
// confirmation_key.
func (g *Group) deriveAndConfirm(ac *AuthenticatedContent, treeHash []byte, exts Extensions, initSecret, commitSecret, pskSecret []byte) (*newEpochValues, bool, error) {
	ne, err := g.deriveEpoch(ac, treeHash, exts, initSecret, commitSecret, pskSecret)
	if err != nil {
		return nil, false, err
	}
	return ne, ne.keys.VerifyConfirmationTag(ne.confirmed, ac.Auth.ConfirmationTag), nil
}

// earlyEpoch is the result of deriveAndConfirm for the tree whose hash is
// treeHash, computed beside the path's key pairs.
type earlyEpoch struct {
	treeHash []byte
	ne       *newEpochValues
	tagOK    bool
	err      error
	used     bool // processCommit took ne over
}

// checkResync applies §12.2 to an external Commit that removes a member
// (a "resync"): the new leaf must be acceptable as an Update of the removed
// leaf, which by default means the same credential.
func (g *Group) checkResync(plan *proposalPlan, ln *LeafNode) error {
	if len(plan.removes) == 0 {
		return nil
	}
	old := g.st.tree.leaf(LeafIndex(plan.removes[0].p.Remove.Removed))
	if old == nil || !old.Credential.Equal(&ln.Credential) {
		return proposalErr(-1, "external commit removes a member with another credential", nil)
	}
	return nil
}
