package mls

// Joining a group from a Welcome (RFC 9420 §12.4.3.1).

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"slices"

	"github.com/moat-im/moat/crypto/mls/internal/schedule"
	"github.com/moat-im/moat/crypto/mls/internal/suite"
	"github.com/moat-im/moat/crypto/mls/internal/treemath"
)

// JoinOptions are the inputs of Join besides the Welcome and KeyPackage.
type JoinOptions struct {
	// RatchetTree is the group's ratchet tree when the Welcome's GroupInfo
	// does not carry one (§12.4.3.3): fetched out of band, it need not
	// come from a trusted source, since Join checks it against the signed
	// tree_hash. It is ignored if the GroupInfo carries a tree.
	RatchetTree RatchetTree
	// Resumes is the old group a reinitialised or branched group resumes
	// (§11.2, §11.3). A Welcome with a reinit or branch PSK needs it: the
	// PSK is its resumption_psk, and the new group is checked against it.
	Resumes *Group
}

// Join processes a Welcome (an MLSMessage) addressed to kp, whose private
// keys are kps and whose signature private key is sigKey, and returns the
// member's state of the group (§12.4.3.1). It verifies the GroupInfo's
// signature and confirmation tag and the whole ratchet tree (tree hash,
// parent hashes, unmerged leaves, key uniqueness, every leaf's signature
// and credential through cfg.Credentials), with the leaf checks spread
// over all cores. Any failure returns an error and no state.
//
// The caller checks that the group_id is not one of a group it is already
// in (§12.4.3.1).
func Join(cfg Config, welcome []byte, kp *KeyPackage, kps *KeyPackageSecrets, sigKey SignaturePrivateKey, opts JoinOptions) (*Group, error) {
	if cfg.Credentials == nil {
		return nil, fmt.Errorf("mls: Config.Credentials is required")
	}
	m, err := DecodeMLSMessage(welcome)
	if err != nil {
		return nil, err
	}
	if m.WireFormat != WireFormatWelcome {
		return nil, fmt.Errorf("%w: not a Welcome", ErrUnexpectedContent)
	}
	w := m.Welcome
	if err := cfg.checkSuite(w.CipherSuite); err != nil {
		return nil, err
	}
	s, err := getSuite(w.CipherSuite)
	if err != nil {
		return nil, err
	}
	if err := checkOwnSignatureKey(s, sigKey, kp.LeafNode.SignatureKey); err != nil {
		return nil, err
	}
	resolve := func(id *PreSharedKeyID) ([]byte, error) {
		if old := opts.Resumes; old != nil && id.Type == PSKTypeResumption && bytes.Equal(id.PSKGroupID, old.st.ctx.GroupID) {
			if v, ok := old.ResumptionPSK(id.PSKEpoch); ok {
				return v, nil
			}
		}
		return cfg.joinerPSK(id)
	}
	js, err := openWelcome(s, w, kp, kps.InitKey, resolve)
	if err != nil {
		return nil, err
	}
	defer suite.Zero(js.secrets.JoinerSecret)
	gi := js.groupInfo
	g, err := joinWithGroupInfo(cfg, s, gi, kp, kps, sigKey, opts.RatchetTree, js.secrets.PathSecret, func(gcBytes []byte) (*schedule.Epoch, error) {
		return schedule.NewEpoch(s, js.secrets.JoinerSecret, js.pskSecret, gcBytes)
	})
	if err != nil {
		return nil, err
	}
	// §12.4.3.1: a reinit or branch PSK starts a new group at epoch 1 that
	// must match the group it resumes.
	for _, p := range js.secrets.PSKs {
		if p.Type != PSKTypeResumption || p.Usage == ResumptionPSKUsageApplication {
			continue
		}
		old := opts.Resumes
		if old == nil || !bytes.Equal(p.PSKGroupID, old.st.ctx.GroupID) {
			g.Close()
			return nil, fmt.Errorf("%w: reinit or branch PSK without the group it resumes", ErrInvalidWelcome)
		}
		if err := checkResumption(g, p.Usage, old); err != nil {
			g.Close()
			return nil, err
		}
	}
	return g, nil
}

// joinerPSK resolves a PSK named in a Welcome from the application.
func (c *Config) joinerPSK(id *PreSharedKeyID) ([]byte, error) {
	switch id.Type {
	case PSKTypeExternal:
		if c.ExternalPSK != nil {
			if v, ok := c.ExternalPSK(id.PSKID); ok {
				return v, nil
			}
		}
	case PSKTypeResumption:
		if c.ResumptionPSK != nil {
			if v, ok := c.ResumptionPSK(id.PSKGroupID, id.PSKEpoch); ok {
				return v, nil
			}
		}
	}
	return nil, ErrMissingPSK
}

// joinWithGroupInfo builds a member's state from a verified-to-be
// GroupInfo: it loads and validates the tree, checks the signature,
// derives the epoch with deriveKeys (which receives the encoded
// GroupContext) and checks the confirmation tag. pathSecret, if set, is
// the Welcome's path secret for the common ancestor with the signer.
func joinWithGroupInfo(cfg Config, s *suite.Suite, gi *GroupInfo, kp *KeyPackage, kps *KeyPackageSecrets, sigKey SignaturePrivateKey,
	outOfBand RatchetTree, pathSecret *PathSecret, deriveKeys func([]byte) (*schedule.Epoch, error)) (*Group, error) {
	gc := &gi.GroupContext
	if gc.CipherSuite != kp.CipherSuite {
		return nil, fmt.Errorf("%w: group cipher suite differs from the key package's", ErrInvalidWelcome)
	}
	if err := cfg.checkRequiredExtensions(gc.Extensions); err != nil {
		return nil, err
	}
	if err := validateExternalSenders(cfg.Credentials, gc.Extensions); err != nil {
		return nil, err
	}
	tree, err := groupInfoTree(s, gi, outOfBand)
	if err != nil {
		return nil, err
	}

	// §12.4.3.1: the signer must be a member; its signature covers the
	// tree_hash, which binds the tree checked below.
	signer := tree.leaf(LeafIndex(gi.Signer))
	if signer == nil {
		return nil, fmt.Errorf("%w: GroupInfo signer %d is not a member", ErrInvalidWelcome, gi.Signer)
	}
	if err := gi.VerifySignature(signer.SignatureKey); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidWelcome, err)
	}

	// The joiner must support the group's extensions and requirements.
	if err := checkGroupSupport(&kp.LeafNode.Capabilities, &GroupParams{CipherSuite: gc.CipherSuite, Extensions: gc.Extensions}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidWelcome, err)
	}

	if err := validateJoinedTree(cfg, tree, gc); err != nil {
		return nil, err
	}

	// Our own leaf: identical to the KeyPackage's LeafNode.
	self, ok := tree.findSignatureKey(kp.LeafNode.SignatureKey)
	if !ok || !leafNodesEqual(tree.leaf(self), &kp.LeafNode) {
		return nil, fmt.Errorf("%w: own leaf not in the tree", ErrInvalidWelcome)
	}
	priv := newPrivateTree(s, self, slices.Clone(kps.EncryptionKey), kp.LeafNode.EncryptionKey)
	ok = false
	defer func() {
		if !ok {
			priv.Zero()
		}
	}()
	if pathSecret != nil {
		// The path secret is that of the lowest common ancestor with the
		// signer, or of the next non-blank node above it if that one was
		// filtered out of the committer's path.
		x := treemath.CommonAncestor(self.Node(), LeafIndex(gi.Signer).Node())
		for tree.blank(x) && x != tree.root() {
			x, _ = treemath.Parent(x, tree.nLeaves)
		}
		cs, err := priv.setPathSecretsFrom(tree, x, pathSecret.PathSecret)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidWelcome, err)
		}
		suite.Zero(cs)
	}

	gcBytes, err := gc.Encode()
	if err != nil {
		return nil, err
	}
	keys, err := deriveKeys(gcBytes)
	if err != nil {
		return nil, err
	}
	if !keys.VerifyConfirmationTag(gc.ConfirmedTranscriptHash, gi.ConfirmationTag) {
		keys.Destroy()
		return nil, fmt.Errorf("%w: %w", ErrInvalidWelcome, ErrInvalidConfirmationTag)
	}
	interim, err := schedule.InterimTranscriptHash(s, gc.ConfirmedTranscriptHash, gi.ConfirmationTag)
	if err != nil {
		keys.Destroy()
		return nil, err
	}
	secrets, err := schedule.NewSecretTree(s, keys.EncryptionSecret, tree.nLeaves)
	if err != nil {
		keys.Destroy()
		return nil, err
	}
	keys.ConsumeEncryptionSecret()
	signing, err := s.SigningKey(suite.SignaturePrivateKey(sigKey))
	if err != nil {
		keys.Destroy()
		secrets.Destroy()
		return nil, err
	}
	g := &Group{cfg: cfg, suite: s, self: self, sigKey: SignaturePrivateKey(signing)}
	g.history.Max = cfg.PastEpochs
	g.st = epochState{
		ctx:             cloneGroupContext(gc),
		ctxBytes:        gcBytes,
		tree:            tree,
		priv:            priv,
		stats:           computeMemberStats(tree),
		keys:            keys,
		secrets:         secrets,
		interim:         interim,
		confirmationTag: slices.Clone(gi.ConfirmationTag),
	}
	ok = true
	return g, nil
}

// groupInfoTree returns the tree from the GroupInfo's ratchet_tree extension, or
// the one supplied out of band.
func groupInfoTree(s *suite.Suite, gi *GroupInfo, outOfBand RatchetTree) (*publicTree, error) {
	rt := outOfBand
	if data, ok := gi.Extensions.Find(ExtensionTypeRatchetTree); ok {
		var err error
		if rt, err = DecodeRatchetTree(data); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidWelcome, err)
		}
	}
	if rt == nil {
		return nil, fmt.Errorf("%w: no ratchet tree in the GroupInfo and none supplied", ErrInvalidWelcome)
	}
	tree, err := newTreeFromRatchetTree(s, rt)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidWelcome, err)
	}
	return tree, nil
}

// validateJoinedTree runs the joiner's tree checks (§12.4.3.1) with the
// application's credential validation and the group's capability rules
// for every leaf.
func validateJoinedTree(cfg Config, tree *publicTree, gc *GroupContext) error {
	stats := computeMemberStats(tree)
	params := &GroupParams{
		CipherSuite: gc.CipherSuite,
		GroupID:     gc.GroupID,
		Extensions:  gc.Extensions,
		MaxLifetime: cfg.MaxLifetime,
		Credentials: cfg.Credentials,
	}
	if !cfg.IgnoreLifetimeOnReceive {
		params.Now = cfg.now()
	}
	leafCheck := func(i LeafIndex, ln *LeafNode) error {
		if err := checkLeafForGroup(ln, params); err != nil {
			return err
		}
		// Each member supports every credential type in use (§7.3).
		for t := range stats.inUseN {
			if !slices.Contains(ln.Capabilities.Credentials, t) {
				return fmt.Errorf("%w: credential type 0x%04x in use not supported", ErrLeafNodeValidation, uint16(t))
			}
		}
		return nil
	}
	if err := tree.validate(treeValidation{groupID: gc.GroupID, treeHash: gc.TreeHash, leaf: leafCheck}); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidWelcome, err)
	}
	return nil
}

// checkLeafForGroup is leaf node validation (§7.3) without the signature,
// which the tree code has checked: credential, capabilities against the
// group, the leaf's own extensions, and the lifetime of a key_package
// leaf.
func checkLeafForGroup(ln *LeafNode, p *GroupParams) error {
	caps := &ln.Capabilities
	if !slices.Contains(caps.Credentials, ln.Credential.Type) {
		return fmt.Errorf("%w: credential type 0x%04x not in capabilities", ErrLeafNodeValidation, uint16(ln.Credential.Type))
	}
	for _, e := range ln.Extensions {
		if !isDefaultExtensionType(e.Type) && !slices.Contains(caps.Extensions, e.Type) {
			return fmt.Errorf("%w: extension 0x%04x not in capabilities", ErrLeafNodeValidation, uint16(e.Type))
		}
	}
	if err := checkGroupSupport(caps, p); err != nil {
		return fmt.Errorf("%w: %w", ErrLeafNodeValidation, err)
	}
	if ln.Source == LeafNodeSourceKeyPackage {
		if err := checkLifetime(ln.Lifetime, p); err != nil {
			return fmt.Errorf("%w: %w", ErrLeafNodeValidation, err)
		}
	}
	if err := p.Credentials.ValidateCredential(ln.Credential, ln.SignatureKey); err != nil {
		return fmt.Errorf("%w: credential: %w", ErrLeafNodeValidation, err)
	}
	return nil
}

// leafNodesEqual reports whether two LeafNodes encode identically.
func leafNodesEqual(a, b *LeafNode) bool {
	ea, err1 := a.Encode()
	eb, err2 := b.Encode()
	return err1 == nil && err2 == nil && bytes.Equal(ea, eb)
}

// randomBytes returns n bytes from crypto/rand.
func randomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		return nil, err
	}
	return b, nil
}
