package mls

// The group state machine (RFC 9420 §8, §11, §12): one member's view of a
// group, advanced only by Commits that pass every check.
//
// A Group holds the current epoch's state (GroupContext, ratchet tree and
// the member's private keys in it, epoch secrets, secret tree, transcript
// hashes, proposal cache) and a short history of past epochs for late
// application messages. Every method that takes input from the network
// works on a candidate: the ratchet tree is changed under its undo journal
// and the new epoch's values are built aside; only when every check has
// passed is the journal committed and the new epoch swapped in. A method
// that returns an error leaves the Group as it was.

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/moat-im/moat/crypto/mls/internal/schedule"
	"github.com/moat-im/moat/crypto/mls/internal/suite"
)

// MaxCachedProposals bounds the proposals a member caches in one epoch; a
// proposal beyond it is refused, so a member cannot be made to hold an
// unbounded cache.
const MaxCachedProposals = 4096

// DefaultResumptionEpochs is how many past epochs' resumption PSKs (§8.6) a
// Group keeps for PreSharedKey proposals and Welcomes that name them
// (docs/spec/mls-profile.md "Old epochs retained").
const DefaultResumptionEpochs = 8

// Policy is the application's extension of proposal validation (§12.2: "An
// application may extend the above procedure by additional rules"), for
// example who may add or remove members. It is called for every proposal
// when it arrives (an error refuses it: it is not cached) and for every
// proposal a Commit covers, by the committer when it commits (which leaves
// a refused cached proposal out) and by every member when it processes the
// Commit, with the GroupContext of the epoch the proposal was sent in.
// senderLeaf is the sender's LeafNode for a member sender and nil
// otherwise. Returning an error for a proposal of a received Commit rejects
// the whole Commit (ErrPolicy).
type Policy interface {
	Authorize(ctx *GroupContext, sender Sender, senderLeaf *LeafNode, p *Proposal) error
}

// PolicyFunc adapts a function to Policy.
type PolicyFunc func(ctx *GroupContext, sender Sender, senderLeaf *LeafNode, p *Proposal) error

// Authorize calls f.
func (f PolicyFunc) Authorize(ctx *GroupContext, sender Sender, senderLeaf *LeafNode, p *Proposal) error {
	return f(ctx, sender, senderLeaf, p)
}

// Config is what a Group needs from the application. Credentials is
// required; every other field has a documented default.
type Config struct {
	// Credentials validates every credential that enters the group: each
	// leaf of a tree being joined, each Add's KeyPackage, each Update, each
	// committer's new leaf and each external sender (§5.3.1). If it also
	// implements CredentialSuccessorValidator, replaced leaves are checked
	// against the old credential.
	Credentials CredentialValidator

	// Policy, if set, authorises every committed proposal.
	Policy Policy

	// AllowedCipherSuites, if not empty, lists the only suites a group may
	// use: NewGroup, Join and ExternalJoin refuse others, and a ReInit to
	// another suite is refused (ErrPolicy). Moat sets it to the default
	// suite only (adversarial case T23).
	AllowedCipherSuites []CipherSuite

	// RequiredGroupExtensions lists GroupContext extension types every
	// epoch must carry (for Moat, the conversation-policy extension): a
	// group without them cannot be joined, and a GroupContextExtensions
	// proposal that drops one is refused (ErrPolicy).
	RequiredGroupExtensions []ExtensionType

	// ExternalPSK returns the external PSK with the given psk_id (§8.4).
	// Nil means the member holds none.
	ExternalPSK func(pskID []byte) ([]byte, bool)

	// ResumptionPSK returns the resumption_psk of another group's epoch,
	// for Welcomes that resume or branch from it (§11.2, §11.3). Nil means
	// none is available.
	ResumptionPSK func(groupID []byte, epoch uint64) ([]byte, bool)

	// Now is the clock for LeafNode lifetimes (§7.3). Nil means time.Now.
	Now func() time.Time
	// IgnoreLifetimeOnReceive skips the lifetime window check for leaves
	// received from others (§7.3 makes it RECOMMENDED, not required). Own
	// leaves and KeyPackages being added are always checked.
	IgnoreLifetimeOnReceive bool
	// MaxLifetime bounds a KeyPackage's lifetime span (see GroupParams);
	// zero means DefaultMaxLifetime, negative no bound.
	MaxLifetime time.Duration

	// PublicHandshake sends proposals and commits as PublicMessages (which
	// the delivery service can read) instead of PrivateMessages.
	PublicHandshake bool
	// PaddingBlock pads PrivateMessage contents to a multiple of this many
	// bytes; zero means DefaultPaddingBlock, 1 none.
	PaddingBlock int

	// PastEpochs overrides schedule.PastEpochs, the number of past epochs
	// whose keys are kept for late application messages; negative keeps
	// none.
	PastEpochs int
	// ResumptionEpochs overrides DefaultResumptionEpochs; negative keeps
	// none.
	ResumptionEpochs int
}

func (c *Config) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Config) paddingBlock() int {
	if c.PaddingBlock == 0 {
		return DefaultPaddingBlock
	}
	return c.PaddingBlock
}

func (c *Config) resumptionEpochs() int {
	switch {
	case c.ResumptionEpochs > 0:
		return c.ResumptionEpochs
	case c.ResumptionEpochs < 0:
		return 0
	}
	return DefaultResumptionEpochs
}

// checkSuite applies AllowedCipherSuites.
func (c *Config) checkSuite(cs CipherSuite) error {
	if len(c.AllowedCipherSuites) > 0 && !slices.Contains(c.AllowedCipherSuites, cs) {
		return fmt.Errorf("%w: cipher suite 0x%04x not allowed", ErrPolicy, uint16(cs))
	}
	return nil
}

// checkRequiredExtensions applies RequiredGroupExtensions to a
// GroupContext's extensions.
func (c *Config) checkRequiredExtensions(exts Extensions) error {
	for _, t := range c.RequiredGroupExtensions {
		if !exts.Has(t) {
			return fmt.Errorf("%w: group context lacks required extension 0x%04x", ErrPolicy, uint16(t))
		}
	}
	return nil
}

// groupStatus is where the state machine is.
type groupStatus uint8

const (
	statusActive  groupStatus = iota
	statusRemoved             // a processed Commit removed this member
	statusReInit              // a Commit with a ReInit was processed: wait for the new group
	statusClosed              // Close was called
)

// epochState is everything of the current epoch. It is replaced as a
// whole when a Commit is accepted; only the secret tree (message keys
// consumed), the proposal cache and the pending commit change within an
// epoch.
type epochState struct {
	ctx      GroupContext
	ctxBytes []byte // encoded ctx, the key schedule's context

	tree  *publicTree
	priv  *privateTree // nil if the member holds no leaf (removed)
	stats memberStats

	keys    *schedule.Epoch
	secrets *schedule.SecretTree

	interim         []byte // interim_transcript_hash
	confirmationTag []byte // of the Commit that started the epoch

	proposals  []cachedProposal
	ownUpdates []ownUpdate // private keys of this member's pending Updates
}

// pastEpochInfo is what a member keeps of a retained past epoch beside its
// receiving keys (schedule.History): the GroupContext its messages were
// signed over, and the leaves the Commit that ended it changed, with their
// values before, so that the signature keys of that epoch's senders can be
// found for late application messages without keeping old trees.
type pastEpochInfo struct {
	ctx     GroupContext
	nLeaves uint32
	old     map[LeafIndex]*LeafNode
	// removed are the leaves the Commit that ended the epoch removed: a
	// late message "from" them may have been made after their removal
	// and is refused (adversarial case T20).
	removed []LeafIndex
}

type resumptionEntry struct {
	epoch uint64
	psk   []byte
}

// Group is one member's state of an MLS group. It is not safe for
// concurrent use.
type Group struct {
	cfg    Config
	suite  *suite.Suite
	self   LeafIndex
	sigKey SignaturePrivateKey
	status groupStatus

	st epochState

	history    schedule.History
	pastInfo   []pastEpochInfo   // newest last, as many as history holds
	resumption []resumptionEntry // newest last
	pending    *pendingCommit    // own Commit awaiting confirmation
	reinit     *ReInit           // the ReInit a processed Commit carried
	// resumingWith is set only while this member builds the first Commit
	// of a group it creates by reinitialisation or branching: the one
	// context where a reinit or branch PSK proposal is valid (§12.1.4).
	resumingWith ResumptionPSKUsage
}

// GroupID returns the group's identifier.
func (g *Group) GroupID() []byte { return slices.Clone(g.st.ctx.GroupID) }

// Epoch returns the current epoch number.
func (g *Group) Epoch() uint64 { return g.st.ctx.Epoch }

// CipherSuite returns the group's cipher suite.
func (g *Group) CipherSuite() CipherSuite { return g.st.ctx.CipherSuite }

// LeafIndex returns the member's own leaf index.
func (g *Group) LeafIndex() uint32 { return uint32(g.self) }

// GroupContext returns a copy of the current GroupContext.
func (g *Group) GroupContext() GroupContext { return cloneGroupContext(&g.st.ctx) }

// Active reports whether the member can still send and process handshake
// messages: it has not been removed, the group has not been reinitialised
// and Close has not been called.
func (g *Group) Active() bool { return g.status == statusActive }

// ReInitParams returns the ReInit proposal of the Commit that ended the
// group, once one was processed (§11.2), or nil.
func (g *Group) ReInitParams() *ReInit { return g.reinit }

// EpochAuthenticator returns the epoch_authenticator of the current epoch
// (§8.7), for comparing views of the group out of band.
func (g *Group) EpochAuthenticator() []byte {
	if g.st.keys == nil {
		return nil
	}
	return slices.Clone(g.st.keys.EpochAuthenticator)
}

// Export is MLS-Exporter(label, context, length) of the current epoch
// (§8.5).
func (g *Group) Export(label string, context []byte, length int) ([]byte, error) {
	if g.st.keys == nil {
		return nil, ErrGroupInactive
	}
	return g.st.keys.Exporter(label, context, length)
}

// ResumptionPSK returns the resumption_psk of the given epoch of this
// group if it is still held (§8.6): the current epoch's or one of the last
// ResumptionEpochs'.
func (g *Group) ResumptionPSK(epoch uint64) ([]byte, bool) {
	if epoch == g.st.ctx.Epoch && g.st.keys != nil {
		return slices.Clone(g.st.keys.ResumptionPSK), true
	}
	for _, r := range g.resumption {
		if r.epoch == epoch {
			return slices.Clone(r.psk), true
		}
	}
	return nil, false
}

// Member is one member as the ratchet tree shows it.
type Member struct {
	LeafIndex    uint32
	Credential   Credential
	SignatureKey SignaturePublicKey
}

// Members lists the members of the current epoch in leaf order.
func (g *Group) Members() []Member {
	var out []Member
	for i, ln := range g.st.tree.leaves {
		if ln != nil {
			out = append(out, Member{LeafIndex: uint32(i), Credential: ln.Credential, SignatureKey: ln.SignatureKey})
		}
	}
	return out
}

// MemberCount is the number of members of the current epoch.
func (g *Group) MemberCount() int { return g.st.stats.members }

// RatchetTree returns the current ratchet tree as the ratchet_tree
// extension carries it (§12.4.3.3), for serving to joiners out of band.
func (g *Group) RatchetTree() RatchetTree { return g.st.tree.ratchetTree() }

// Close destroys the group's secrets (best effort). The Group is unusable
// afterwards.
func (g *Group) Close() {
	g.clearPending()
	g.st.destroy()
	g.history.Destroy()
	g.pastInfo = nil
	for _, r := range g.resumption {
		suite.Zero(r.psk)
	}
	g.resumption = nil
	suite.Zero(g.sigKey)
	g.status = statusClosed
}

func (st *epochState) destroy() {
	if st.keys != nil {
		st.keys.Destroy()
		st.keys = nil
	}
	if st.secrets != nil {
		st.secrets.Destroy()
		st.secrets = nil
	}
	if st.priv != nil {
		st.priv.Zero()
		st.priv = nil
	}
	st.proposals = nil
	for _, u := range st.ownUpdates {
		suite.Zero(u.priv)
	}
	st.ownUpdates = nil
}

func cloneGroupContext(c *GroupContext) GroupContext {
	out := *c
	out.GroupID = slices.Clone(c.GroupID)
	out.TreeHash = slices.Clone(c.TreeHash)
	out.ConfirmedTranscriptHash = slices.Clone(c.ConfirmedTranscriptHash)
	out.Extensions = slices.Clone(c.Extensions)
	return out
}

// checkActive refuses operations on a group that cannot send or process
// handshake messages.
func (g *Group) checkActive() error {
	if g.status != statusActive {
		return ErrGroupInactive
	}
	return nil
}

// NewGroupOptions are the choices a group's creator makes (§11).
type NewGroupOptions struct {
	// GroupID identifies the group; nil means KDF.Nh random bytes.
	GroupID []byte
	// Extensions are the initial GroupContext extensions.
	Extensions Extensions
}

// NewGroup creates a one-member group from the creator's own KeyPackage and
// its secrets (§11), in the KeyPackage's cipher suite (DefaultCipherSuite
// unless NewKeyPackage was given another): the creator's leaf is the
// KeyPackage's LeafNode, the epoch secret is random, and the transcript
// hashes start from the empty string.
func NewGroup(cfg Config, kp *KeyPackage, kps *KeyPackageSecrets, sigKey SignaturePrivateKey, opts NewGroupOptions) (*Group, error) {
	if cfg.Credentials == nil {
		return nil, errors.New("mls: Config.Credentials is required")
	}
	if err := cfg.checkSuite(kp.CipherSuite); err != nil {
		return nil, err
	}
	if err := cfg.checkRequiredExtensions(opts.Extensions); err != nil {
		return nil, err
	}
	if err := validateExternalSenders(cfg.Credentials, opts.Extensions); err != nil {
		return nil, err
	}
	s, err := getSuite(kp.CipherSuite)
	if err != nil {
		return nil, err
	}
	if err := checkOwnSignatureKey(s, sigKey, kp.LeafNode.SignatureKey); err != nil {
		return nil, err
	}
	groupID := opts.GroupID
	if groupID == nil {
		if groupID, err = randomBytes(s.Nh()); err != nil {
			return nil, err
		}
	}
	params := &GroupParams{CipherSuite: kp.CipherSuite, GroupID: groupID, Extensions: opts.Extensions,
		Now: cfg.now(), MaxLifetime: cfg.MaxLifetime, Credentials: cfg.Credentials}
	if err := ValidateKeyPackage(kp, params); err != nil {
		return nil, err
	}
	leaf := kp.LeafNode
	tree := newPublicTree(s, &leaf)
	th, err := tree.treeHash()
	if err != nil {
		return nil, err
	}
	ctx := GroupContext{
		CipherSuite: kp.CipherSuite,
		GroupID:     slices.Clone(groupID),
		Epoch:       0,
		TreeHash:    slices.Clone(th),
		Extensions:  slices.Clone(opts.Extensions),
	}
	ctxBytes, err := ctx.Encode()
	if err != nil {
		return nil, err
	}
	epochSecret, err := randomBytes(s.Nh())
	if err != nil {
		return nil, err
	}
	defer suite.Zero(epochSecret)
	// §11: the epoch secret is random. The key schedule of package schedule
	// starts from joiner_secret; a random joiner_secret with no PSK gives a
	// uniformly random epoch secret just the same.
	keys, err := schedule.NewEpoch(s, epochSecret, nil, ctxBytes)
	if err != nil {
		return nil, err
	}
	signing, err := s.SigningKey(suite.SignaturePrivateKey(sigKey))
	if err != nil {
		return nil, err
	}
	g := &Group{cfg: cfg, suite: s, self: 0, sigKey: SignaturePrivateKey(signing)}
	g.history.Max = cfg.PastEpochs
	st := epochState{ctx: ctx, ctxBytes: ctxBytes, tree: tree, keys: keys}
	st.priv = newPrivateTree(s, 0, kps.EncryptionKey, leaf.EncryptionKey)
	st.stats = computeMemberStats(tree)
	if st.secrets, err = schedule.NewSecretTree(s, keys.EncryptionSecret, tree.nLeaves); err != nil {
		return nil, err
	}
	keys.ConsumeEncryptionSecret()
	// §11: confirmation tag over the empty confirmed transcript hash, then
	// the interim transcript hash.
	st.confirmationTag = keys.ConfirmationTag(nil)
	if st.interim, err = schedule.InterimTranscriptHash(s, nil, st.confirmationTag); err != nil {
		return nil, err
	}
	g.st = st
	return g, nil
}

// checkOwnSignatureKey checks that priv is the private half of pub.
func checkOwnSignatureKey(s *suite.Suite, priv SignaturePrivateKey, pub SignaturePublicKey) error {
	got, err := s.SignaturePublicKeyOf(suite.SignaturePrivateKey(priv))
	if err != nil || !suite.Equal(got, pub) {
		return errors.New("mls: signature private key does not match the leaf's signature key")
	}
	return nil
}

// groupParams returns the GroupParams leaf and KeyPackage validation use in
// this epoch, with the given GroupContext extensions and, if own is set,
// the lifetime window checked against the clock.
func (g *Group) groupParams(exts Extensions, stats *memberStats, checkNow bool) *GroupParams {
	p := &GroupParams{
		CipherSuite:          g.st.ctx.CipherSuite,
		GroupID:              g.st.ctx.GroupID,
		Extensions:           exts,
		CredentialTypesInUse: stats.inUse(),
		MaxLifetime:          g.cfg.MaxLifetime,
		Credentials:          g.cfg.Credentials,
	}
	if checkNow || !g.cfg.IgnoreLifetimeOnReceive {
		p.Now = g.cfg.now()
	}
	return p
}

// pushHistory records the epoch being left: its receiving keys (for late
// application messages), the leaves the Commit changes and its
// resumption PSK.
func (g *Group) pushHistory(old *epochState, ap *appliedPlan) {
	if old.keys == nil {
		return
	}
	if n := g.cfg.resumptionEpochs(); n > 0 {
		g.resumption = append(g.resumption, resumptionEntry{epoch: old.ctx.Epoch, psk: slices.Clone(old.keys.ResumptionPSK)})
		for len(g.resumption) > n {
			suite.Zero(g.resumption[0].psk)
			g.resumption = g.resumption[1:]
		}
	}
	past := &schedule.PastEpoch{
		Epoch:            old.ctx.Epoch,
		SenderDataSecret: slices.Clone(old.keys.SenderDataSecret),
		ResumptionPSK:    slices.Clone(old.keys.ResumptionPSK),
		Tree:             old.secrets,
	}
	old.secrets = nil
	if err := g.history.Push(past); err != nil {
		past.Destroy()
	}
	g.pastInfo = append(g.pastInfo, pastEpochInfo{ctx: old.ctx, nLeaves: old.tree.nLeaves, old: ap.changed, removed: ap.removed})
	for len(g.pastInfo) > g.history.Len() {
		g.pastInfo = g.pastInfo[1:]
	}
}

// removedSince reports whether a Commit since the start of the given past
// epoch removed leaf i.
func (g *Group) removedSince(epoch uint64, i LeafIndex) bool {
	for _, p := range g.pastInfo {
		if p.ctx.Epoch >= epoch && slices.Contains(p.removed, i) {
			return true
		}
	}
	return false
}

// pastLeaf returns leaf i as it was in a retained past epoch.
func (g *Group) pastLeaf(epoch uint64, i LeafIndex) *LeafNode {
	ln := g.st.tree.leaf(i)
	for k := len(g.pastInfo) - 1; k >= 0; k-- {
		p := &g.pastInfo[k]
		if old, ok := p.old[i]; ok {
			ln = old
		}
		if p.ctx.Epoch == epoch {
			if uint32(i) >= p.nLeaves {
				return nil
			}
			return ln
		}
	}
	return nil
}

// GenerateSignatureKey returns a fresh signature key pair for cipher suite
// cs (zero: DefaultCipherSuite), for a member's LeafNode (§5.1.2).
func GenerateSignatureKey(cs CipherSuite) (SignaturePrivateKey, SignaturePublicKey, error) {
	s, err := getSuite(cs.orDefault())
	if err != nil {
		return nil, nil, err
	}
	priv, pub, err := s.GenerateSignatureKey(nil)
	if err != nil {
		return nil, nil, err
	}
	return SignaturePrivateKey(priv), SignaturePublicKey(pub), nil
}
