package mls

// Message protection (RFC 9420 §6): signing and verifying FramedContent,
// PublicMessage membership tags, and PrivateMessage encryption with sender
// data encryption, the reuse guard and padding.
//
// These functions hold no group state. The group code passes in the
// epoch's GroupContext and keys, looks up senders' signature keys in its
// tree, and checks group_id and epoch before calling them.

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/moat-im/moat/crypto/mls/internal/schedule"
	"github.com/moat-im/moat/crypto/mls/internal/suite"
	"github.com/moat-im/moat/crypto/mls/internal/treemath"
)

// DefaultPaddingBlock is the padding Moat applies to PrivateMessages: the
// PrivateMessageContent is padded with zero octets to a multiple of this
// many bytes (docs/spec/mls-profile.md "Padding").
const DefaultPaddingBlock = 256

// maxPaddingBlock bounds the padding block a caller may configure.
const maxPaddingBlock = 1 << 16

// ErrDecrypt is the one error for every PrivateMessage that does not
// decrypt: a bad sender-data or content tag, a wrong key, a reuse guard or
// generation that was tampered with. It says nothing about which step
// failed.
var ErrDecrypt = errors.New("mls: message does not decrypt")

// ErrSenderContent: a sender type that may not send this content (§6.1,
// §12.1.8): an external sender with anything but an allowed proposal, a
// new member with anything but its Add or its external Commit, or an
// application message outside a PrivateMessage.
var ErrSenderContent = errors.New("mls: sender may not send this content")

// checkSenderContent enforces the sender/content rules of §6.1 and
// §12.1.8.
func checkSenderContent(wf WireFormat, c *FramedContent) error {
	switch c.Sender.Type {
	case SenderTypeMember:
	case SenderTypeExternal:
		if c.ContentType != ContentTypeProposal || c.Proposal == nil {
			return ErrSenderContent
		}
		switch c.Proposal.Type {
		case ProposalTypeAdd, ProposalTypeRemove, ProposalTypePSK, ProposalTypeReInit, ProposalTypeGroupContextExtensions:
		default:
			return ErrSenderContent
		}
	case SenderTypeNewMemberCommit:
		if c.ContentType != ContentTypeCommit {
			return ErrSenderContent
		}
	case SenderTypeNewMemberProposal:
		if c.ContentType != ContentTypeProposal || c.Proposal == nil || c.Proposal.Type != ProposalTypeAdd {
			return ErrSenderContent
		}
	default:
		return ErrSenderContent
	}
	switch wf {
	case WireFormatPublicMessage:
		// §6: application messages MUST be PrivateMessages.
		if c.ContentType == ContentTypeApplication {
			return ErrSenderContent
		}
	case WireFormatPrivateMessage:
		// §6.3.2: only members can derive PrivateMessage keys.
		if c.Sender.Type != SenderTypeMember {
			return ErrSenderContent
		}
	default:
		return ErrSenderContent
	}
	return nil
}

// signContent returns the AuthenticatedContent of c for wire format wf,
// signed with SignWithLabel(priv, "FramedContentTBS", FramedContentTBS)
// (§6.1). ctx is the epoch's GroupContext (covered for member and
// new_member_commit senders). A commit's confirmation tag depends on the
// signature, so the caller sets Auth.ConfirmationTag afterwards.
func signContent(s *suite.Suite, priv SignaturePrivateKey, wf WireFormat, c *FramedContent, ctx *GroupContext) (*AuthenticatedContent, error) {
	if err := checkSenderContent(wf, c); err != nil {
		return nil, err
	}
	tbs, err := framedContentTBS(wf, c, ctx)
	if err != nil {
		return nil, err
	}
	sig, err := s.SignWithLabel(suite.SignaturePrivateKey(priv), labelFramedContent, tbs)
	if err != nil {
		return nil, fmt.Errorf("mls: signing FramedContent: %w", err)
	}
	return &AuthenticatedContent{WireFormat: wf, Content: *c, Auth: FramedContentAuthData{Signature: sig}}, nil
}

// verifyContent checks ac's signature with the sender's key (§6.1) and the
// sender/content rules. The confirmation tag of a commit is checked by the
// group code once it has the new epoch's confirmation key.
func verifyContent(s *suite.Suite, ac *AuthenticatedContent, ctx *GroupContext, key SignaturePublicKey) error {
	if err := checkSenderContent(ac.WireFormat, &ac.Content); err != nil {
		return err
	}
	tbs, err := framedContentTBS(ac.WireFormat, &ac.Content, ctx)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSignature, err)
	}
	if s.VerifyWithLabel(suite.SignaturePublicKey(key), labelFramedContent, tbs, ac.Auth.Signature) != nil {
		return ErrInvalidSignature
	}
	return nil
}

// protectPublic wraps ac in a PublicMessage, adding the membership tag
// MAC(membership_key, AuthenticatedContentTBM) for member senders (§6.2).
func protectPublic(s *suite.Suite, membershipKey []byte, ctx *GroupContext, ac *AuthenticatedContent) (*PublicMessage, error) {
	if ac.WireFormat != WireFormatPublicMessage {
		return nil, ErrSenderContent
	}
	if err := checkSenderContent(ac.WireFormat, &ac.Content); err != nil {
		return nil, err
	}
	pm := &PublicMessage{Content: ac.Content, Auth: ac.Auth}
	if ac.Content.Sender.Type == SenderTypeMember {
		tbm, err := pm.authenticatedContentTBM(ctx)
		if err != nil {
			return nil, err
		}
		pm.MembershipTag = s.MAC(membershipKey, tbm)
	}
	return pm, nil
}

// unprotectPublic checks a PublicMessage's membership tag (for member
// senders, in constant time) and the sender/content rules, and returns its
// AuthenticatedContent. The signature is checked by verifyContent, with
// the key the group looks up for the sender.
func unprotectPublic(s *suite.Suite, membershipKey []byte, ctx *GroupContext, pm *PublicMessage) (*AuthenticatedContent, error) {
	if err := checkSenderContent(WireFormatPublicMessage, &pm.Content); err != nil {
		return nil, err
	}
	// The tag, signature and transcript hash cover the body as received.
	p := PublicMessage{Content: pm.Content, Auth: pm.Auth, MembershipTag: pm.MembershipTag}
	p.Content.received = pm.received
	if p.Content.Sender.Type == SenderTypeMember {
		tbm, err := p.authenticatedContentTBM(ctx)
		if err != nil {
			return nil, err
		}
		if !s.VerifyMAC(membershipKey, tbm, p.MembershipTag) {
			return nil, ErrInvalidMembershipTag
		}
	}
	return &AuthenticatedContent{WireFormat: WireFormatPublicMessage, Content: p.Content, Auth: p.Auth}, nil
}

// ratchetKind returns the secret-tree ratchet for a content type (§9):
// application messages use the application ratchet, proposals and commits
// the handshake ratchet.
func ratchetKind(ct ContentType) schedule.Kind {
	if ct == ContentTypeApplication {
		return schedule.Application
	}
	return schedule.Handshake
}

// paddingFor returns how many zero octets bring n to a multiple of block.
func paddingFor(n, block int) int {
	if block <= 1 {
		return 0
	}
	return (block - n%block) % block
}

// protectPrivate encrypts ac (wire format mls_private_message, a member
// sender) as a PrivateMessage (§6.3): it takes the next generation of the
// sender's ratchet from tree, XORs a fresh reuse guard from rand (nil:
// crypto/rand) into the nonce, pads the PrivateMessageContent with zeros
// to a multiple of paddingBlock (≤ 1: no padding), and encrypts the sender
// data under keys derived from senderDataSecret and the ciphertext sample.
//
// The ratchet generation is consumed even if encryption then fails, so a
// key is never used twice.
func protectPrivate(s *suite.Suite, senderDataSecret []byte, tree *schedule.SecretTree, ac *AuthenticatedContent, paddingBlock int, rnd io.Reader) (*PrivateMessage, error) {
	if ac.WireFormat != WireFormatPrivateMessage {
		return nil, ErrSenderContent
	}
	c := &ac.Content
	if err := checkSenderContent(ac.WireFormat, c); err != nil {
		return nil, err
	}
	if paddingBlock > maxPaddingBlock {
		return nil, fmt.Errorf("mls: padding block %d above %d", paddingBlock, maxPaddingBlock)
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	pc := &PrivateMessageContent{ContentType: c.ContentType, ApplicationData: c.ApplicationData,
		Proposal: c.Proposal, Commit: c.Commit, Auth: ac.Auth}
	plaintext, err := pc.Encode()
	if err != nil {
		return nil, err
	}
	if pad := paddingFor(len(plaintext), paddingBlock); pad > 0 {
		plaintext = append(plaintext, make([]byte, pad)...)
	}
	defer suite.Zero(plaintext)

	sd := SenderData{LeafIndex: c.Sender.Index}
	if _, err := io.ReadFull(rnd, sd.ReuseGuard[:]); err != nil {
		return nil, fmt.Errorf("mls: reuse guard: %w", err)
	}
	generation, key, nonce, err := tree.NextSend(treemath.LeafIndex(c.Sender.Index), ratchetKind(c.ContentType))
	if err != nil {
		return nil, fmt.Errorf("mls: protecting message: %w", err)
	}
	defer suite.Zero(key)
	defer suite.Zero(nonce)
	sd.Generation = generation
	applyReuseGuard(nonce, sd.ReuseGuard)

	pm := &PrivateMessage{GroupID: c.GroupID, Epoch: c.Epoch, ContentType: c.ContentType, AuthenticatedData: c.AuthenticatedData}
	aad, err := (&PrivateContentAAD{GroupID: c.GroupID, Epoch: c.Epoch, ContentType: c.ContentType, AuthenticatedData: c.AuthenticatedData}).Encode()
	if err != nil {
		return nil, err
	}
	if pm.Ciphertext, err = s.Seal(key, nonce, aad, plaintext); err != nil {
		return nil, fmt.Errorf("mls: protecting message: %w", err)
	}

	sdKey, sdNonce, err := schedule.SenderDataKeyNonce(s, senderDataSecret, pm.Ciphertext)
	if err != nil {
		return nil, err
	}
	defer suite.Zero(sdKey)
	sdAAD, err := (&SenderDataAAD{GroupID: c.GroupID, Epoch: c.Epoch, ContentType: c.ContentType}).Encode()
	if err != nil {
		return nil, err
	}
	sdEnc, err := sd.Encode()
	if err != nil {
		return nil, err
	}
	if pm.EncryptedSenderData, err = s.Seal(sdKey, sdNonce, sdAAD, sdEnc); err != nil {
		return nil, fmt.Errorf("mls: protecting sender data: %w", err)
	}
	return pm, nil
}

// applyReuseGuard XORs the reuse guard into the first four octets of the
// ratchet nonce (§6.3.1).
func applyReuseGuard(nonce []byte, guard [4]byte) {
	for i := range guard {
		nonce[i] ^= guard[i]
	}
}

// openSenderData decrypts and parses a PrivateMessage's sender data
// (§6.3.2). Every failure is ErrDecrypt.
func openSenderData(s *suite.Suite, senderDataSecret []byte, pm *PrivateMessage) (*SenderData, error) {
	sdKey, sdNonce, err := schedule.SenderDataKeyNonce(s, senderDataSecret, pm.Ciphertext)
	if err != nil {
		return nil, ErrDecrypt
	}
	defer suite.Zero(sdKey)
	sdAAD, err := (&SenderDataAAD{GroupID: pm.GroupID, Epoch: pm.Epoch, ContentType: pm.ContentType}).Encode()
	if err != nil {
		return nil, ErrDecrypt
	}
	pt, err := s.Open(sdKey, sdNonce, sdAAD, pm.EncryptedSenderData)
	if err != nil {
		return nil, ErrDecrypt
	}
	sd, err := DecodeSenderData(pt)
	if err != nil {
		return nil, ErrDecrypt
	}
	return sd, nil
}

// senderKeyFunc returns the signature key of the member at a leaf, or an
// error (wrapping ErrUnknownSender) if the leaf is blank or outside the
// tree (§6.3.2).
type senderKeyFunc func(leaf uint32) (SignaturePublicKey, error)

// unprotectPrivate decrypts a PrivateMessage (§6.3) with the epoch's
// senderDataSecret and secret tree, checks the padding, looks up the
// sender with senderKey and verifies the signature over ctx. Only when all
// of that succeeds does it consume the message key in tree; on any failure
// tree is left exactly as it was.
//
// Decryption failures are ErrDecrypt; a generation out of range or already
// used is the secret tree's error; an authenticated plaintext that does not
// parse is a *DecodeError; a bad signature is ErrInvalidSignature.
func unprotectPrivate(s *suite.Suite, senderDataSecret []byte, tree *schedule.SecretTree, ctx *GroupContext, pm *PrivateMessage, senderKey senderKeyFunc) (*AuthenticatedContent, error) {
	ac, pending, _, err := unprotectPrivateDeferred(s, senderDataSecret, tree, ctx, pm, senderKey, false, nil)
	if err != nil {
		return nil, err
	}
	if err := tree.Commit(pending); err != nil {
		return nil, fmt.Errorf("mls: unprotecting message: %w", err)
	}
	return ac, nil
}

// unprotectPrivateDeferred is unprotectPrivate without the final
// tree.Commit: on success the caller owns pending and must call
// tree.Commit(pending) once it accepts the message (a Commit, for example,
// only after every check of §12.4.2), or pending.Discard(). On error tree
// is unchanged and nothing is pending.
//
// With concurrentSig, the signature of a Commit is not checked here but
// returned as sig, not yet started, for the caller to run beside the rest
// of the Commit's processing (start, or run in a worker); the caller must
// call sig.wait, and accept the content only if it returns nil, before it
// changes any state (sig is nil for other content types, and wait on nil
// returns nil). ctx must not change until then.
//
// onSender, if not nil, is called with the sender's leaf as soon as the
// sender data is decrypted and the sender is a member, before the content
// is decrypted.
func unprotectPrivateDeferred(s *suite.Suite, senderDataSecret []byte, tree *schedule.SecretTree, ctx *GroupContext, pm *PrivateMessage, senderKey senderKeyFunc, concurrentSig bool, onSender func(leaf uint32)) (ac *AuthenticatedContent, pending *schedule.Pending, sig *pendingCheck, err error) {
	sd, err := openSenderData(s, senderDataSecret, pm)
	if err != nil {
		return nil, nil, nil, err
	}
	key, err := senderKey(sd.LeafIndex)
	if err != nil {
		return nil, nil, nil, err
	}
	if onSender != nil {
		onSender(sd.LeafIndex)
	}
	pending, err = tree.Prepare(treemath.LeafIndex(sd.LeafIndex), ratchetKind(pm.ContentType), sd.Generation)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("mls: unprotecting message: %w", err)
	}
	// A return sets the named results before deferred calls run, so the
	// Pending is captured here.
	p := pending
	defer func() {
		if err != nil {
			p.Discard()
		}
	}()
	nonce := append([]byte(nil), pending.Nonce()...)
	defer suite.Zero(nonce)
	applyReuseGuard(nonce, sd.ReuseGuard)
	aad, err := (&PrivateContentAAD{GroupID: pm.GroupID, Epoch: pm.Epoch, ContentType: pm.ContentType, AuthenticatedData: pm.AuthenticatedData}).Encode()
	if err != nil {
		return nil, nil, nil, ErrDecrypt
	}
	plaintext, err := s.Open(pending.Key(), nonce, aad, pm.Ciphertext)
	if err != nil {
		return nil, nil, nil, ErrDecrypt
	}
	defer suite.Zero(plaintext)
	pc, err := DecodePrivateMessageContent(pm.ContentType, plaintext)
	if err != nil {
		return nil, nil, nil, err
	}
	ac = &AuthenticatedContent{
		WireFormat: WireFormatPrivateMessage,
		Content: FramedContent{
			GroupID: pm.GroupID, Epoch: pm.Epoch,
			Sender:            Sender{Type: SenderTypeMember, Index: sd.LeafIndex},
			AuthenticatedData: pm.AuthenticatedData,
			ContentType:       pm.ContentType, ApplicationData: pc.ApplicationData, Proposal: pc.Proposal, Commit: pc.Commit,
			received: pc.received, // the signature and transcript hash cover the body as received
		},
		Auth: pc.Auth,
	}
	if concurrentSig && ac.Content.ContentType == ContentTypeCommit {
		c := *ctx
		return ac, pending, newCheck(func() error { return verifyContent(s, ac, &c, key) }), nil
	}
	if err = verifyContent(s, ac, ctx, key); err != nil {
		return nil, nil, nil, err
	}
	return ac, pending, nil, nil
}

// pendingCheck is a check that may run on another goroutine (a signature
// verification overlapping the rest of a Commit's processing). It runs
// exactly once: on the goroutine start launched, in a worker that calls
// run, or in wait if nobody has begun it yet, so that a caller never
// waits for a goroutine the scheduler has not yet run.
type pendingCheck struct {
	f    func() error
	once sync.Once
	err  error
}

// newCheck returns f as a check that has not started.
func newCheck(f func() error) *pendingCheck { return &pendingCheck{f: f} }

// start runs the check on another goroutine. A nil check passes.
func (c *pendingCheck) start() {
	if c != nil {
		goNow(c.run)
	}
}

// run runs the check unless it has run or is running (then it waits for
// it). A nil check passes.
func (c *pendingCheck) run() {
	if c != nil {
		c.once.Do(func() { c.err = c.f() })
	}
}

// wait returns the check's result, running it now if nobody has begun it.
// A nil check passes.
func (c *pendingCheck) wait() error {
	if c == nil {
		return nil
	}
	c.run()
	return c.err
}

// Ref returns MakeProposalRef(ac) = RefHash("MLS 1.0 Proposal Reference",
// encoded AuthenticatedContent) (§5.2) under cs, for an
// AuthenticatedContent carrying a proposal.
func (ac *AuthenticatedContent) Ref(cs CipherSuite) (ProposalRef, error) {
	if ac.Content.ContentType != ContentTypeProposal {
		return nil, ErrSenderContent
	}
	s, err := getSuite(cs)
	if err != nil {
		return nil, err
	}
	enc, err := ac.Encode()
	if err != nil {
		return nil, err
	}
	return s.RefHash(labelProposalRef, enc), nil
}
