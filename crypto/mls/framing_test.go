package mls

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/moat-im/moat/crypto/mls/internal/schedule"
	"github.com/moat-im/moat/crypto/mls/internal/suite"
)

type protectionVector struct {
	CipherSuite             uint16   `json:"cipher_suite"`
	GroupID                 hexBytes `json:"group_id"`
	Epoch                   uint64   `json:"epoch"`
	TreeHash                hexBytes `json:"tree_hash"`
	ConfirmedTranscriptHash hexBytes `json:"confirmed_transcript_hash"`
	SignaturePriv           hexBytes `json:"signature_priv"`
	SignaturePub            hexBytes `json:"signature_pub"`
	EncryptionSecret        hexBytes `json:"encryption_secret"`
	SenderDataSecret        hexBytes `json:"sender_data_secret"`
	MembershipKey           hexBytes `json:"membership_key"`
	Proposal                hexBytes `json:"proposal"`
	ProposalPub             hexBytes `json:"proposal_pub"`
	ProposalPriv            hexBytes `json:"proposal_priv"`
	Commit                  hexBytes `json:"commit"`
	CommitPub               hexBytes `json:"commit_pub"`
	CommitPriv              hexBytes `json:"commit_priv"`
	Application             hexBytes `json:"application"`
	ApplicationPriv         hexBytes `json:"application_priv"`
}

// protectionCase is one of the three contents of a message-protection
// vector.
type protectionCase struct {
	name      string
	content   FramedContent // sender and body set; group and epoch filled in
	raw       []byte        // the content body as the vector encodes it
	pub, priv []byte
}

func (v *protectionVector) cases(t *testing.T) []protectionCase {
	p, err := DecodeProposal(v.Proposal)
	if err != nil {
		t.Fatal(err)
	}
	c, err := DecodeCommit(v.Commit)
	if err != nil {
		t.Fatal(err)
	}
	sender := Sender{Type: SenderTypeMember, Index: 1}
	return []protectionCase{
		{"proposal", FramedContent{Sender: sender, ContentType: ContentTypeProposal, Proposal: p}, v.Proposal, v.ProposalPub, v.ProposalPriv},
		{"commit", FramedContent{Sender: sender, ContentType: ContentTypeCommit, Commit: c}, v.Commit, v.CommitPub, v.CommitPriv},
		{"application", FramedContent{Sender: sender, ContentType: ContentTypeApplication, ApplicationData: v.Application}, v.Application, nil, v.ApplicationPriv},
	}
}

func contentBody(t testing.TB, c *FramedContent) []byte {
	switch c.ContentType {
	case ContentTypeProposal:
		return mustEncode(t, c.Proposal.Encode)
	case ContentTypeCommit:
		return mustEncode(t, c.Commit.Encode)
	}
	return c.ApplicationData
}

// TestMessageProtectionVectors runs testdata/message-protection.json
// (FORMAT.md "Message Protection") for every suite.
func TestMessageProtectionVectors(t *testing.T) {
	raw, err := os.ReadFile("testdata/message-protection.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []protectionVector
	if err := json.Unmarshal(raw, &vs); err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		s, err := suite.Get(suite.ID(v.CipherSuite))
		if err != nil {
			t.Errorf("suite %d: %v", v.CipherSuite, err)
			continue
		}
		v.SignaturePriv = padP521Scalar(CipherSuite(v.CipherSuite), v.SignaturePriv)
		passed, total := 0, 0
		for _, c := range v.cases(t) {
			total++
			if err := checkProtectionCase(t, s, &v, c); err != nil {
				t.Errorf("suite %d %s: %v", v.CipherSuite, c.name, err)
				continue
			}
			passed++
		}
		t.Logf("message-protection.json: suite %d: %d/%d contents passed (pub/priv unprotect, protect round trip)", v.CipherSuite, passed, total)
	}
}

func checkProtectionCase(t *testing.T, s *suite.Suite, v *protectionVector, c protectionCase) error {
	ctx := &GroupContext{CipherSuite: CipherSuite(v.CipherSuite), GroupID: v.GroupID, Epoch: v.Epoch,
		TreeHash: v.TreeHash, ConfirmedTranscriptHash: v.ConfirmedTranscriptHash}
	sigPub := SignaturePublicKey(v.SignaturePub)
	senderKey := func(leaf uint32) (SignaturePublicKey, error) {
		if leaf != 1 {
			return nil, ErrUnknownSender
		}
		return sigPub, nil
	}
	newTree := func() *schedule.SecretTree {
		tree, err := schedule.NewSecretTree(s, v.EncryptionSecret, 2)
		if err != nil {
			t.Fatal(err)
		}
		return tree
	}
	content := c.content
	content.GroupID, content.Epoch = v.GroupID, v.Epoch

	// The vector's PublicMessage verifies and yields the raw content.
	if c.pub != nil {
		m, err := DecodeMLSMessage(c.pub)
		if err != nil || m.PublicMessage == nil {
			return fmt.Errorf("pub: %v", err)
		}
		ac, err := unprotectPublic(s, v.MembershipKey, ctx, m.PublicMessage)
		if err != nil {
			return fmt.Errorf("pub: %w", err)
		}
		if err := verifyContent(s, ac, ctx, sigPub); err != nil {
			return fmt.Errorf("pub: %w", err)
		}
		if !bytes.Equal(contentBody(t, &ac.Content), c.raw) || ac.Content.Sender != content.Sender {
			return errors.New("pub: content differs")
		}
	}

	// Our own PublicMessage of the raw content verifies; for application
	// data, protecting as a PublicMessage fails.
	ac, err := signContent(s, SignaturePrivateKey(v.SignaturePriv), WireFormatPublicMessage, &content, ctx)
	if c.content.ContentType == ContentTypeApplication {
		if !errors.Is(err, ErrSenderContent) {
			return fmt.Errorf("application content signed for a PublicMessage: %v", err)
		}
	} else {
		if err != nil {
			return err
		}
		if content.ContentType == ContentTypeCommit {
			ac.Auth.ConfirmationTag = make([]byte, s.Nh())
		}
		pm, err := protectPublic(s, v.MembershipKey, ctx, ac)
		if err != nil {
			return err
		}
		enc := mustEncode(t, (&MLSMessage{WireFormat: WireFormatPublicMessage, PublicMessage: pm}).Encode)
		m, err := DecodeMLSMessage(enc)
		if err != nil {
			return err
		}
		got, err := unprotectPublic(s, v.MembershipKey, ctx, m.PublicMessage)
		if err != nil {
			return fmt.Errorf("own pub: %w", err)
		}
		if err := verifyContent(s, got, ctx, sigPub); err != nil {
			return fmt.Errorf("own pub: %w", err)
		}
		if !bytes.Equal(contentBody(t, &got.Content), c.raw) {
			return errors.New("own pub: content differs")
		}
	}

	// The vector's PrivateMessage decrypts with a fresh secret tree.
	m, err := DecodeMLSMessage(c.priv)
	if err != nil || m.PrivateMessage == nil {
		return fmt.Errorf("priv: %v", err)
	}
	got, err := unprotectPrivate(s, v.SenderDataSecret, newTree(), ctx, m.PrivateMessage, senderKey)
	if err != nil {
		return fmt.Errorf("priv: %w", err)
	}
	if !bytes.Equal(contentBody(t, &got.Content), c.raw) || got.Content.Sender != content.Sender {
		return errors.New("priv: content differs")
	}

	// Our own PrivateMessage of the raw content decrypts with another
	// fresh tree.
	ac, err = signContent(s, SignaturePrivateKey(v.SignaturePriv), WireFormatPrivateMessage, &content, ctx)
	if err != nil {
		return err
	}
	if content.ContentType == ContentTypeCommit {
		ac.Auth.ConfirmationTag = make([]byte, s.Nh())
	}
	pm, err := protectPrivate(s, v.SenderDataSecret, newTree(), ac, DefaultPaddingBlock, rand.Reader)
	if err != nil {
		return err
	}
	enc := mustEncode(t, (&MLSMessage{WireFormat: WireFormatPrivateMessage, PrivateMessage: pm}).Encode)
	m, err = DecodeMLSMessage(enc)
	if err != nil {
		return err
	}
	got, err = unprotectPrivate(s, v.SenderDataSecret, newTree(), ctx, m.PrivateMessage, senderKey)
	if err != nil {
		return fmt.Errorf("own priv: %w", err)
	}
	if !bytes.Equal(contentBody(t, &got.Content), c.raw) {
		return errors.New("own priv: content differs")
	}
	return nil
}

// TestReceivedBody checks that the body bytes recorded by the decoders,
// which the signature, membership tag and transcript hash then cover, are
// exactly the body's encoding, and that only the message processing code
// uses them: Encode of a decoded, then modified, message re-encodes.
func TestReceivedBody(t *testing.T) {
	commit := &Commit{Proposals: []ProposalOrRef{{Proposal: &Proposal{Type: ProposalTypeRemove, Remove: &Remove{Removed: 3}}}}}
	body, err := commit.Encode()
	if err != nil {
		t.Fatal(err)
	}
	pc := &PrivateMessageContent{ContentType: ContentTypeCommit, Commit: commit, Auth: FramedContentAuthData{Signature: []byte{1}, ConfirmationTag: []byte{2}}, PaddingLen: 7}
	enc, err := pc.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodePrivateMessageContent(ContentTypeCommit, enc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.received, body) {
		t.Fatalf("PrivateMessageContent body: got %x, want %x", got.received, body)
	}
	pm := &PublicMessage{Content: FramedContent{GroupID: []byte("g"), Epoch: 1, Sender: Sender{Type: SenderTypeExternal}, ContentType: ContentTypeCommit, Commit: commit},
		Auth: FramedContentAuthData{Signature: []byte{1}, ConfirmationTag: []byte{2}}}
	enc, err = pm.Encode()
	if err != nil {
		t.Fatal(err)
	}
	gotPM, err := DecodePublicMessage(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotPM.received, body) {
		t.Fatalf("PublicMessage body: got %x, want %x", gotPM.received, body)
	}
	gotPM.Content.Commit.Proposals[0].Proposal.Remove.Removed = 4
	enc2, err := gotPM.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(enc2, enc) {
		t.Fatal("Encode of a modified PublicMessage returned the received bytes")
	}
}
