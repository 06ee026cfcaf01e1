package mls

// Protocol-level adversarial cases T15–T21, T23 and T25 of
// ../shared/briefs/adversarial-cases.md, against the group state machine.
// Every rejection is also checked to leave the receiver's state
// byte-identical (stateFingerprint).

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/moat-im/moat/crypto/mls/internal/schedule"
	"github.com/moat-im/moat/crypto/mls/internal/suite"
	"github.com/moat-im/moat/crypto/mls/internal/treemath"
	"github.com/moat-im/moat/crypto/mls/internal/wire"
	"golang.org/x/crypto/cryptobyte"
)

// forgeMessage frames content c (any sender the attacker chooses), signs
// it with sigKey over the current GroupContext of the attacker's group g,
// and protects it with g's epoch keys: an insider can do all of this.
func forgeMessage(t *testing.T, g *Group, c *FramedContent, sigKey SignaturePrivateKey, public bool, confirmationTag []byte) []byte {
	t.Helper()
	wf := WireFormatPrivateMessage
	if public {
		wf = WireFormatPublicMessage
	}
	ac, err := signContent(g.suite, sigKey, wf, c, &g.st.ctx)
	if err != nil {
		t.Fatal(err)
	}
	ac.Auth.ConfirmationTag = confirmationTag
	var m MLSMessage
	if public {
		pm, err := protectPublic(g.suite, g.st.keys.MembershipKey, &g.st.ctx, ac)
		if err != nil {
			t.Fatal(err)
		}
		m = MLSMessage{WireFormat: WireFormatPublicMessage, PublicMessage: pm}
	} else {
		pm, err := protectPrivate(g.suite, g.st.keys.SenderDataSecret, g.st.secrets, ac, 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		m = MLSMessage{WireFormat: WireFormatPrivateMessage, PrivateMessage: pm}
	}
	out, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (g *Group) contentFrom(sender uint32) *FramedContent {
	return &FramedContent{GroupID: g.st.ctx.GroupID, Epoch: g.st.ctx.Epoch, Sender: Sender{Type: SenderTypeMember, Index: sender}}
}

// TestT15ForgedSenderIndex: a member signs with its own key but names
// another member as sender, in every content type and both wire formats.
// The receiver looks up the named member's key and the signature fails.
func TestT15ForgedSenderIndex(t *testing.T) {
	tg := newTestGroup(t, testSuites[1], 3)
	attacker, victim, receiver := tg.members[0], tg.members[1], tg.members[2]
	vi := victim.g.LeafIndex()
	cases := []struct {
		name   string
		public bool
		fill   func(c *FramedContent)
		tag    []byte
	}{
		{"application", false, func(c *FramedContent) {
			c.ContentType, c.ApplicationData = ContentTypeApplication, []byte("from victim")
		}, nil},
		{"proposal/private", false, func(c *FramedContent) {
			c.ContentType, c.Proposal = ContentTypeProposal, &Proposal{Type: ProposalTypeRemove, Remove: &Remove{Removed: receiver.g.LeafIndex()}}
		}, nil},
		{"proposal/public", true, func(c *FramedContent) {
			c.ContentType, c.Proposal = ContentTypeProposal, &Proposal{Type: ProposalTypeRemove, Remove: &Remove{Removed: receiver.g.LeafIndex()}}
		}, nil},
		{"commit/public", true, func(c *FramedContent) { c.ContentType, c.Commit = ContentTypeCommit, &Commit{} }, make([]byte, 32)},
		{"commit/private", false, func(c *FramedContent) { c.ContentType, c.Commit = ContentTypeCommit, &Commit{} }, make([]byte, 32)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := attacker.g.contentFrom(vi)
			tc.fill(c)
			msg := forgeMessage(t, attacker.g, c, attacker.sig, tc.public, tc.tag)
			err := wantUnchanged(t, receiver.g, "forged sender", func() error { _, err := receiver.g.Process(msg); return err })
			if !errors.Is(err, ErrInvalidSignature) {
				t.Fatalf("got %v, want ErrInvalidSignature", err)
			}
			// The same content signed by the victim's key is accepted:
			// the signature was the only thing wrong.
			if tc.name == "application" {
				c := attacker.g.contentFrom(vi)
				tc.fill(c)
				good := forgeMessage(t, attacker.g, c, victim.sig, tc.public, tc.tag)
				if p, err := receiver.g.Process(good); err != nil || string(p.ApplicationData) != "from victim" {
					t.Fatalf("control message: %v", err)
				}
			}
		})
	}
	// A sender index outside the tree or at a blank leaf is unknown.
	for _, idx := range []uint32{7, 1 << 30} {
		c := attacker.g.contentFrom(idx)
		c.ContentType, c.Proposal = ContentTypeProposal, &Proposal{Type: ProposalTypeRemove, Remove: &Remove{Removed: 1}}
		msg := forgeMessage(t, attacker.g, c, attacker.sig, true, nil)
		err := wantUnchanged(t, receiver.g, "unknown sender index", func() error { _, err := receiver.g.Process(msg); return err })
		if !errors.Is(err, ErrUnknownSender) {
			t.Fatalf("sender %d: %v", idx, err)
		}
	}
}

// TestT16CrossContextReplay: signatures and ciphertexts do not carry over
// between wire formats, content types, groups, epochs or uses.
func TestT16CrossContextReplay(t *testing.T) {
	cs := testSuites[0]
	tg := newTestGroup(t, cs, 3)
	a, b := tg.members[0], tg.members[1]

	// A ciphertext delivered twice: the second is refused, state unchanged.
	msg, err := a.g.Encrypt([]byte("once"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.g.Process(msg); err != nil {
		t.Fatal(err)
	}
	wantUnchanged(t, b.g, "replayed ciphertext", func() error { _, err := b.g.Process(msg); return err })

	// The same ciphertext relabelled as a proposal (content_type in the
	// clear header) does not decrypt: content type is in both AADs.
	msg, _ = a.g.Encrypt([]byte("typed"), nil)
	m, _ := DecodeMLSMessage(msg)
	m.PrivateMessage.ContentType = ContentTypeProposal
	relabelled, _ := m.Encode()
	err = wantUnchanged(t, b.g, "content type changed", func() error { _, err := b.g.Process(relabelled); return err })
	if !errors.Is(err, ErrDecrypt) {
		t.Fatalf("relabelled: %v", err)
	}

	// A PublicMessage's signature does not verify for the same content
	// framed as a PrivateMessage (wire_format is signed).
	c := a.g.contentFrom(a.g.LeafIndex())
	c.ContentType, c.Proposal = ContentTypeProposal, &Proposal{Type: ProposalTypeRemove, Remove: &Remove{Removed: 2}}
	pubAC, err := signContent(a.g.suite, a.sig, WireFormatPublicMessage, c, &a.g.st.ctx)
	if err != nil {
		t.Fatal(err)
	}
	privAC := *pubAC
	privAC.WireFormat = WireFormatPrivateMessage
	pm, err := protectPrivate(a.g.suite, a.g.st.keys.SenderDataSecret, a.g.st.secrets, &privAC, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	cross, _ := (&MLSMessage{WireFormat: WireFormatPrivateMessage, PrivateMessage: pm}).Encode()
	err = wantUnchanged(t, b.g, "public signature in a private message", func() error { _, err := b.g.Process(cross); return err })
	if !errors.Is(err, ErrInvalidSignature) {
		t.Fatalf("cross wire format: %v", err)
	}

	// Another group with the same members: its messages are refused as
	// another group's, and relabelled with this group's id they do not
	// decrypt (the keys and the AAD differ).
	other := newTestGroup(t, cs, 2)
	om, err := other.members[0].g.Encrypt([]byte("other group"), nil)
	if err != nil {
		t.Fatal(err)
	}
	err = wantUnchanged(t, b.g, "other group's message", func() error { _, err := b.g.Process(om); return err })
	if !errors.Is(err, ErrWrongGroup) {
		t.Fatalf("other group: %v", err)
	}
	m, _ = DecodeMLSMessage(om)
	m.PrivateMessage.GroupID = b.g.GroupID()
	m.PrivateMessage.Epoch = b.g.Epoch()
	moved, _ := m.Encode()
	err = wantUnchanged(t, b.g, "other group's message relabelled", func() error { _, err := b.g.Process(moved); return err })
	if !errors.Is(err, ErrDecrypt) {
		t.Fatalf("relabelled group: %v", err)
	}

	// A GroupInfo signature (label "GroupInfoTBS") is no FramedContent
	// signature, even over the same bytes.
	gi, err := a.g.GroupInfo(false)
	if err != nil {
		t.Fatal(err)
	}
	gm, _ := DecodeMLSMessage(gi)
	s := a.g.suite
	tbs, _ := gm.GroupInfo.TBS()
	if s.VerifyWithLabel(suite.SignaturePublicKey(a.kp.LeafNode.SignatureKey), labelFramedContent, tbs, gm.GroupInfo.Signature) == nil {
		t.Fatal("GroupInfo signature verifies under the FramedContentTBS label")
	}
	if s.VerifyWithLabel(suite.SignaturePublicKey(a.kp.LeafNode.SignatureKey), labelGroupInfoTBS, tbs, gm.GroupInfo.Signature) != nil {
		t.Fatal("control: GroupInfo signature does not verify")
	}
}

// welcomeForgery describes a Welcome made by a malicious committer, who
// can choose the joiner secret and sign any GroupInfo (§12.4.3.1): only the
// joiner's checks stand between it and a bad group state.
type welcomeForgery struct {
	sent        RatchetTree // the tree the joiner gets (out of band unless inBand)
	hashed      RatchetTree // the tree whose hash the GroupContext carries; nil: sent
	inBandBytes []byte      // raw ratchet_tree extension data, if set
	signer      uint32
	signerKey   SignaturePrivateKey
	badTag      bool
}

func forgeWelcome(t *testing.T, base *Group, joiner *testClient, f welcomeForgery) []byte {
	t.Helper()
	s := base.suite
	hashed := f.hashed
	if hashed == nil {
		hashed = f.sent
	}
	th := treeHashOf(t, s, hashed)
	gc := base.GroupContext()
	gc.TreeHash = slices.Clone(th)
	gcBytes, _ := gc.Encode()
	joinerSecret := make([]byte, s.Nh())
	joinerSecret[0] = 7
	keys, err := schedule.NewEpoch(s, joinerSecret, nil, gcBytes)
	if err != nil {
		t.Fatal(err)
	}
	gi := &GroupInfo{GroupContext: gc, ConfirmationTag: keys.ConfirmationTag(gc.ConfirmedTranscriptHash), Signer: f.signer}
	if f.badTag {
		gi.ConfirmationTag = flipBit(gi.ConfirmationTag, 0)
	}
	if f.inBandBytes != nil {
		gi.Extensions = Extensions{{Type: ExtensionTypeRatchetTree, Data: f.inBandBytes}}
	}
	if err := gi.Sign(f.signerKey); err != nil {
		t.Fatal(err)
	}
	egi, err := encryptGroupInfo(s, keys.WelcomeSecret, gi)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := encryptGroupSecrets(s, joiner.kp.InitKey, &GroupSecrets{JoinerSecret: joinerSecret}, egi)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := joiner.kp.Ref()
	w := &Welcome{CipherSuite: gc.CipherSuite, Secrets: []EncryptedGroupSecrets{{NewMember: ref, EncryptedGroupSecrets: ct}}, EncryptedGroupInfo: egi}
	out, err := (&MLSMessage{WireFormat: WireFormatWelcome, Welcome: w}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// treeHashOf computes the root tree hash (§7.8) of rt directly from its
// nodes, without loading it as a tree (which refuses, for example,
// duplicate keys), using the tree code's TreeHashInput encoders.
func treeHashOf(t *testing.T, s *suite.Suite, rt RatchetTree) []byte {
	t.Helper()
	n := treemath.LeafCount(uint32(len(rt)))
	node := func(x NodeIndex) *Node {
		if int(x) < len(rt) {
			return rt[x]
		}
		return nil
	}
	var rec func(x NodeIndex) []byte
	rec = func(x NodeIndex) []byte {
		var in []byte
		var err error
		if x.IsLeaf() {
			var ln *LeafNode
			if nd := node(x); nd != nil {
				ln = nd.Leaf
			}
			in, err = leafHashInput(nil, x.Leaf(), ln)
		} else {
			var p *ParentNode
			if nd := node(x); nd != nil {
				p = nd.Parent
			}
			l, r := treemath.Children(x)
			in, err = parentHashInput(nil, p, rec(l), rec(r))
		}
		if err != nil {
			t.Fatal(err)
		}
		return s.Hash(in)
	}
	return rec(treemath.Root(n))
}

// cloneTree copies a RatchetTree deeply enough to change any node.
func cloneTree(rt RatchetTree) RatchetTree {
	out := make(RatchetTree, len(rt))
	for i, n := range rt {
		if n == nil {
			continue
		}
		c := &Node{}
		if n.Leaf != nil {
			l := *n.Leaf
			c.Leaf = &l
		}
		if n.Parent != nil {
			p := *n.Parent
			c.Parent = &p
		}
		out[i] = c
	}
	return out
}

// TestT17MaliciousWelcome: a committer-made Welcome with a bad tree hash,
// a bad parent hash, a non-canonical tree, duplicate keys, a non-member
// signer or a bad confirmation tag is rejected, and no group is returned.
func TestT17MaliciousWelcome(t *testing.T) {
	cs := testSuites[0]
	tg := newTestGroup(t, cs, 4)
	committer := tg.members[0]
	joiner := newTestClient(t, cs, "joiner")
	tg.add(committer, joiner) // puts the joiner's leaf into the tree
	base := committer.g
	rt := base.RatchetTree()
	sig, signer := committer.sig, committer.g.LeafIndex()
	parentIdx := -1
	for i, n := range rt {
		if n != nil && n.Parent != nil {
			parentIdx = i
			break
		}
	}
	if parentIdx < 0 {
		t.Fatal("no parent node to tamper with")
	}
	fresh := func() *testClient {
		// A joiner whose KeyPackage is the one in the tree.
		return &testClient{name: "j", cs: cs, sig: joiner.sig, kp: joiner.kp, kps: joiner.kps, cfg: testGroupConfig()}
	}
	join := func(w []byte, oob RatchetTree) (*Group, error) {
		j := fresh()
		return Join(j.cfg, w, j.kp, j.kps, j.sig, JoinOptions{RatchetTree: oob})
	}

	// Control: the forgery machinery with nothing wrong is accepted, so
	// each rejection below is due to its one defect.
	if g, err := join(forgeWelcome(t, base, joiner, welcomeForgery{sent: rt, signer: signer, signerKey: sig}), rt); err != nil || g == nil {
		t.Fatalf("control Welcome refused: %v", err)
	}

	badParentHash := cloneTree(rt)
	badParentHash[parentIdx].Parent.ParentHash = flipBit(badParentHash[parentIdx].Parent.ParentHash, 5)
	if len(rt[parentIdx].Parent.ParentHash) == 0 {
		badParentHash[parentIdx].Parent.ParentHash = []byte{1}
	}
	dupKey := cloneTree(rt)
	dupKey[parentIdx].Parent.EncryptionKey = rt[0].Leaf.EncryptionKey

	// Non-canonical: a trailing blank node appended to the encoding.
	enc, err := rt.Encode()
	if err != nil {
		t.Fatal(err)
	}
	var body []byte
	in := cryptobyte.String(enc)
	if !wire.ReadVarBytes(&in, &body) {
		t.Fatal("cannot re-read the tree encoding")
	}
	b := cryptobyte.NewBuilder(nil)
	wire.AddVarBytes(b, append(slices.Clone(body), 0))
	trailingBlank := b.BytesOrPanic()

	outsider := newTestClient(t, cs, "outsider")
	cases := []struct {
		name string
		f    welcomeForgery
		oob  RatchetTree
		want error
	}{
		{"tree hash mismatch", welcomeForgery{sent: badParentHash, hashed: rt, signer: signer, signerKey: sig}, badParentHash, ErrTreeHashMismatch},
		{"bad parent hash", welcomeForgery{sent: badParentHash, signer: signer, signerKey: sig}, badParentHash, ErrInvalidParentHash},
		{"duplicate key", welcomeForgery{sent: dupKey, signer: signer, signerKey: sig}, dupKey, ErrDuplicateKey},
		{"non-canonical tree", welcomeForgery{sent: rt, signer: signer, signerKey: sig, inBandBytes: trailingBlank}, nil, ErrMalformed},
		{"signer is a blank leaf", welcomeForgery{sent: rt, signer: 1 << 20, signerKey: sig}, rt, ErrInvalidWelcome},
		{"signed by a non-member", welcomeForgery{sent: rt, signer: signer, signerKey: outsider.sig}, rt, ErrInvalidSignature},
		{"bad confirmation tag", welcomeForgery{sent: rt, signer: signer, signerKey: sig, badTag: true}, rt, ErrInvalidConfirmationTag},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g, err := join(forgeWelcome(t, base, joiner, tc.f), tc.oob)
			if g != nil {
				t.Fatal("a group was returned")
			}
			if !errors.Is(err, ErrInvalidWelcome) || !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want ErrInvalidWelcome and %v", err, tc.want)
			}
		})
	}
}

// TestT19GenerationMax: a member re-encrypts a genuine message's sender
// data with generation 0xffffffff. The receiver rejects it before deriving
// any key (GenerationError), with its state unchanged, and still decrypts
// the genuine message afterwards.
func TestT19GenerationMax(t *testing.T) {
	tg := newTestGroup(t, testSuites[0], 3)
	a, b := tg.members[0], tg.members[1]
	msg, err := a.g.Encrypt([]byte("genuine"), nil)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := DecodeMLSMessage(msg)
	pm := m.PrivateMessage
	s := b.g.suite
	sd, err := openSenderData(s, b.g.st.keys.SenderDataSecret, pm)
	if err != nil {
		t.Fatal(err)
	}
	for _, gen := range []uint32{0xffffffff, sd.Generation + schedule.MaxGenerationSkip + 1} {
		sd2 := *sd
		sd2.Generation = gen
		key, nonce, _ := schedule.SenderDataKeyNonce(s, b.g.st.keys.SenderDataSecret, pm.Ciphertext)
		aad, _ := (&SenderDataAAD{GroupID: pm.GroupID, Epoch: pm.Epoch, ContentType: pm.ContentType}).Encode()
		enc, _ := sd2.Encode()
		forged := *pm
		forged.EncryptedSenderData, _ = s.Seal(key, nonce, aad, enc)
		fm, _ := (&MLSMessage{WireFormat: WireFormatPrivateMessage, PrivateMessage: &forged}).Encode()
		err := wantUnchanged(t, b.g, fmt.Sprintf("generation %#x", gen), func() error { _, err := b.g.Process(fm); return err })
		var ge *schedule.GenerationError
		if !errors.As(err, &ge) || !errors.Is(err, schedule.ErrGenerationTooFar) {
			t.Fatalf("generation %#x: %v", gen, err)
		}
	}
	if p, err := b.g.Process(msg); err != nil || string(p.ApplicationData) != "genuine" {
		t.Fatalf("genuine message after the forgeries: %v", err)
	}
}

// TestT20RemovedMember: after its removal a member can read nothing of the
// new epochs, and what it sends afterwards — in the epoch it was removed
// from, where it still holds keys — is refused by the others.
func TestT20RemovedMember(t *testing.T) {
	tg := newTestGroup(t, testSuites[1], 4)
	a := tg.members[0]
	r := tg.member(2)
	rg := r.g
	res := tg.commit(a, CommitOptions{Remove: []uint32{2}})
	if rg.Active() || slices.Contains(tg.members, r) {
		t.Fatal("removed member still active")
	}
	// Nothing of the new epoch: application messages, proposals, commits.
	app, _ := a.g.Encrypt([]byte("after removal"), nil)
	if _, err := rg.Process(app); err == nil {
		t.Fatal("removed member decrypted an application message")
	}
	prop, err := a.g.ProposeRemove(1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rg.Process(prop); err == nil {
		t.Fatal("removed member processed a proposal")
	}
	a.g.st.proposals = nil // drop the proposal again (test shortcut)
	next, _ := a.g.Commit(CommitOptions{})
	a.g.ClearPendingCommit()
	if _, err := rg.Process(next.Message); err == nil {
		t.Fatal("removed member processed a commit of the new epoch")
	}
	if _, err := rg.Encrypt([]byte("x"), nil); !errors.Is(err, ErrGroupInactive) {
		t.Fatalf("removed member encrypts: %v", err)
	}
	_ = res

	// The removed member still holds the old epoch's keys: a message it
	// makes there now is refused as from a removed member.
	oldEpoch := rg.st.ctx.Epoch - 1
	past := rg.history.Get(oldEpoch)
	var info *pastEpochInfo
	for i := range rg.pastInfo {
		if rg.pastInfo[i].ctx.Epoch == oldEpoch {
			info = &rg.pastInfo[i]
		}
	}
	if past == nil || info == nil {
		t.Fatal("removed member kept no past epoch")
	}
	c := &FramedContent{GroupID: info.ctx.GroupID, Epoch: oldEpoch, Sender: Sender{Type: SenderTypeMember, Index: 2},
		ContentType: ContentTypeApplication, ApplicationData: []byte("sent after my removal")}
	ac, err := signContent(rg.suite, r.sig, WireFormatPrivateMessage, c, &info.ctx)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := protectPrivate(rg.suite, past.SenderDataSecret, past.Tree, ac, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	late, _ := (&MLSMessage{WireFormat: WireFormatPrivateMessage, PrivateMessage: pm}).Encode()
	for _, m := range tg.members {
		err := wantUnchanged(t, m.g, "removed member's message", func() error { _, err := m.g.Process(late); return err })
		if !errors.Is(err, ErrUnknownSender) {
			t.Fatalf("%s: %v", m.name, err)
		}
	}
	// Its handshake messages for the old epoch are refused on epoch.
	c2 := &FramedContent{GroupID: info.ctx.GroupID, Epoch: oldEpoch, Sender: Sender{Type: SenderTypeMember, Index: 2},
		ContentType: ContentTypeProposal, Proposal: &Proposal{Type: ProposalTypeRemove, Remove: &Remove{Removed: 0}}}
	ac2, _ := signContent(rg.suite, r.sig, WireFormatPublicMessage, c2, &info.ctx)
	pub, _ := protectPublic(rg.suite, make([]byte, 32), &info.ctx, ac2)
	pmsg, _ := (&MLSMessage{WireFormat: WireFormatPublicMessage, PublicMessage: pub}).Encode()
	err = wantUnchanged(t, a.g, "removed member's proposal", func() error { _, err := a.g.Process(pmsg); return err })
	if !errors.Is(err, ErrWrongEpoch) {
		t.Fatalf("old-epoch proposal: %v", err)
	}
}

// TestT21UnauthorisedAdd: Adds the application does not allow are refused
// by every member — by an admin-only policy, by the credential validator
// (not org-verified or not in key transparency), and from a relay that is
// no member (no membership tag, no external sender).
func TestT21UnauthorisedAdd(t *testing.T) {
	cs := testSuites[1]
	tg := newTestGroup(t, cs, 3)
	admin := tg.member(0)
	plain := tg.member(1)
	// Only leaf 0 may add or remove; only credentials on the allow list
	// are valid (standing in for org certificate + KT proof).
	adminOnly := PolicyFunc(func(ctx *GroupContext, sender Sender, leaf *LeafNode, p *Proposal) error {
		if (p.Type == ProposalTypeAdd || p.Type == ProposalTypeRemove) && (sender.Type != SenderTypeMember || sender.Index != 0) {
			return errors.New("only the admin adds and removes")
		}
		return nil
	})
	allowed := map[string]bool{}
	for _, m := range tg.members {
		allowed[string(m.kp.LeafNode.Credential.Identity)] = true
	}
	allowed["vetted"] = true
	validator := CredentialValidatorFunc(func(c Credential, _ SignaturePublicKey) error {
		if !allowed[string(c.Identity)] {
			return errors.New("not org-verified / not in KT")
		}
		return nil
	})
	for _, m := range tg.members {
		m.g.cfg.Policy = adminOnly
		m.g.cfg.Credentials = validator
		m.g.cfg.PublicHandshake = true
	}

	// A non-admin's Commit adding someone (made with a permissive local
	// config, as a malicious client would).
	intruder := newTestClient(t, cs, "vetted")
	plain.g.cfg.Policy = nil
	res, err := plain.g.Commit(CommitOptions{Add: []*KeyPackage{intruder.kp}})
	if err != nil {
		t.Fatal(err)
	}
	plain.g.ClearPendingCommit()
	plain.g.cfg.Policy = adminOnly
	for _, m := range tg.members {
		if m == plain {
			continue
		}
		err := wantUnchanged(t, m.g, "non-admin Add", func() error { _, err := m.g.Process(res.Message); return err })
		if !errors.Is(err, ErrPolicy) || !errors.Is(err, ErrInvalidProposalList) {
			t.Fatalf("%s: %v", m.name, err)
		}
	}
	// The admin adding someone not org-verified: refused at Commit time,
	// and by every receiver if the admin's client skipped the check.
	stranger := newTestClient(t, cs, "stranger")
	if _, err := admin.g.Commit(CommitOptions{Add: []*KeyPackage{stranger.kp}}); err == nil {
		t.Fatal("committer added an unverified credential")
	}
	admin.g.cfg.Credentials = acceptAllCredentials
	res, err = admin.g.Commit(CommitOptions{Add: []*KeyPackage{stranger.kp}})
	if err != nil {
		t.Fatal(err)
	}
	admin.g.ClearPendingCommit()
	admin.g.cfg.Credentials = validator
	for _, m := range tg.members[1:] {
		err := wantUnchanged(t, m.g, "unverified Add", func() error { _, err := m.g.Process(res.Message); return err })
		if !errors.Is(err, ErrInvalidKeyPackage) {
			t.Fatalf("%s: %v", m.name, err)
		}
	}
	// A relay injecting an Add proposal: as a member without the
	// membership key, as an external sender the group does not list, and
	// as a new member proposing itself.
	addP := &Proposal{Type: ProposalTypeAdd, Add: &Add{KeyPackage: *intruder.kp}}
	asMember := admin.g.contentFrom(0)
	asMember.ContentType, asMember.Proposal = ContentTypeProposal, addP
	relay := &Group{suite: admin.g.suite, st: epochState{ctx: admin.g.st.ctx, keys: &schedule.Epoch{MembershipKey: make([]byte, 32)}}}
	injected := forgeMessage(t, relay, asMember, intruder.sig, true, nil)
	err = wantUnchanged(t, plain.g, "relay as member", func() error { _, err := plain.g.Process(injected); return err })
	if !errors.Is(err, ErrInvalidMembershipTag) {
		t.Fatalf("relay as member: %v", err)
	}
	asExternal := admin.g.contentFrom(0)
	asExternal.Sender = Sender{Type: SenderTypeExternal, Index: 0}
	asExternal.ContentType, asExternal.Proposal = ContentTypeProposal, addP
	injected = forgeMessage(t, relay, asExternal, intruder.sig, true, nil)
	err = wantUnchanged(t, plain.g, "relay as external sender", func() error { _, err := plain.g.Process(injected); return err })
	if !errors.Is(err, ErrUnknownSender) {
		t.Fatalf("relay as external sender: %v", err)
	}
	asNew := admin.g.contentFrom(0)
	asNew.Sender = Sender{Type: SenderTypeNewMemberProposal}
	asNew.ContentType, asNew.Proposal = ContentTypeProposal, addP
	injected = forgeMessage(t, relay, asNew, intruder.sig, true, nil)
	// The proposal is well-formed, but the policy refuses Adds not sent by
	// the admin: every member refuses to cache it, so it cannot block
	// later Commits or application messages.
	for _, m := range tg.members {
		err := wantUnchanged(t, m.g, "self-Add proposal", func() error { _, err := m.g.Process(injected); return err })
		if !errors.Is(err, ErrPolicy) || !errors.Is(err, ErrInvalidProposal) {
			t.Fatalf("%s: self-Add proposal: %v", m.name, err)
		}
	}
	tg.commit(admin, CommitOptions{})
	if _, err := plain.g.Encrypt([]byte("still talking"), nil); err != nil {
		t.Fatalf("after the refused self-Add: %v", err)
	}
}

// TestT23Downgrade: a group limited to the post-quantum suite refuses
// classical Welcomes, GroupInfos and KeyPackages, a ReInit to a classical
// suite, and the removal of its required policy extension.
func TestT23Downgrade(t *testing.T) {
	pq, classical := testSuites[1], testSuites[0]
	const policyExt = ExtensionType(0xff0a)
	strict := func(c *testClient) {
		c.cfg.AllowedCipherSuites = []CipherSuite{pq}
		c.cfg.RequiredGroupExtensions = []ExtensionType{policyExt}
	}

	// A classical group: a strict client refuses to join it either way.
	ctg := newTestGroup(t, classical, 2)
	victim := newTestClient(t, classical, "pq-only")
	strict(victim)
	res, err := ctg.members[0].g.Commit(CommitOptions{Add: []*KeyPackage{victim.kp}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Join(victim.cfg, res.Welcome, victim.kp, victim.kps, victim.sig, JoinOptions{RatchetTree: ctg.members[0].g.RatchetTree()}); !errors.Is(err, ErrPolicy) {
		t.Fatalf("classical Welcome: %v", err)
	}
	gi, _ := ctg.members[0].g.GroupInfo(true)
	if _, _, err := ExternalJoin(victim.cfg, gi, &victim.kp.LeafNode, victim.sig, ExternalJoinOptions{}); !errors.Is(err, ErrPolicy) {
		t.Fatalf("classical GroupInfo: %v", err)
	}
	if _, err := NewGroup(victim.cfg, victim.kp, victim.kps, victim.sig, NewGroupOptions{}); !errors.Is(err, ErrPolicy) {
		t.Fatalf("classical NewGroup: %v", err)
	}

	// A post-quantum group with the policy extension: a member whose
	// client is compromised proposes a ReInit to the classical suite and
	// the removal of the policy extension; the others refuse both.
	creator := newTestClient(t, pq, "c")
	strict(creator)
	creator.kp.LeafNode.Capabilities.Extensions = append(creator.kp.LeafNode.Capabilities.Extensions, policyExt)
	creator.kp.LeafNode.Signature = nil
	creator.reSign(t)
	g, err := NewGroup(creator.cfg, creator.kp, creator.kps, creator.sig, NewGroupOptions{Extensions: Extensions{{Type: policyExt, Data: []byte("policy v1")}}})
	if err != nil {
		t.Fatal(err)
	}
	creator.g = g
	tg := &testGroup{t: t, cs: pq, members: []*testClient{creator}}
	var joiners []*testClient
	for i := range 2 {
		j := newTestClient(t, pq, fmt.Sprintf("j%d", i))
		strict(j)
		j.kp.LeafNode.Capabilities.Extensions = append(j.kp.LeafNode.Capabilities.Extensions, policyExt)
		j.reSign(t)
		joiners = append(joiners, j)
	}
	tg.add(creator, joiners...)
	for _, m := range tg.members {
		m.g.cfg.PublicHandshake = true
	}
	// A classical KeyPackage cannot be added to the PQ group.
	cl := newTestClient(t, classical, "classical")
	if _, err := creator.g.Commit(CommitOptions{Add: []*KeyPackage{cl.kp}}); !errors.Is(err, ErrInvalidKeyPackage) {
		t.Fatalf("classical KeyPackage: %v", err)
	}
	rogue := tg.members[1]
	rogue.g.cfg.AllowedCipherSuites, rogue.g.cfg.RequiredGroupExtensions = nil, nil
	attacks := map[string]Proposal{
		"reinit to classical": {Type: ProposalTypeReInit, ReInit: &ReInit{GroupID: []byte("new"), Version: ProtocolVersionMLS10,
			CipherSuite: classical, Extensions: Extensions{{Type: policyExt, Data: []byte("policy v1")}}}},
		"policy extension removed": {Type: ProposalTypeGroupContextExtensions, GroupContextExtensions: &GroupContextExtensions{}},
	}
	for name, p := range attacks {
		res, err := rogue.g.Commit(CommitOptions{Proposals: []Proposal{p}})
		if err != nil {
			t.Fatalf("%s: rogue commit: %v", name, err)
		}
		rogue.g.ClearPendingCommit()
		for _, m := range tg.members {
			if m == rogue {
				continue
			}
			err := wantUnchanged(t, m.g, name, func() error { _, err := m.g.Process(res.Message); return err })
			if !errors.Is(err, ErrPolicy) {
				t.Fatalf("%s: %s: %v", name, m.name, err)
			}
		}
	}
}

// reSign re-signs the client's KeyPackage after a test changed it.
func (c *testClient) reSign(t *testing.T) {
	t.Helper()
	if err := c.kp.LeafNode.Sign(c.cs, c.sig, nil, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.kp.Sign(c.sig); err != nil {
		t.Fatal(err)
	}
}

// TestT25StaleCommit: a Commit re-delivered after it was applied (to the
// committer too) is rejected on its epoch and changes nothing, in both
// wire formats.
func TestT25StaleCommit(t *testing.T) {
	for _, public := range []bool{false, true} {
		t.Run(fmt.Sprintf("public=%v", public), func(t *testing.T) {
			tg := newTestGroup(t, testSuites[0], 3)
			for _, m := range tg.members {
				m.g.cfg.PublicHandshake = public
			}
			res := tg.commit(tg.members[1], CommitOptions{})
			for _, m := range tg.members {
				err := wantUnchanged(t, m.g, "stale commit", func() error { _, err := m.g.Process(res.Message); return err })
				var ee *EpochError
				if !errors.As(err, &ee) || ee.Got != m.g.Epoch()-1 || ee.Want != m.g.Epoch() {
					t.Fatalf("%s: %v", m.name, err)
				}
			}
			// Two epochs later as well.
			tg.commit(tg.members[0], CommitOptions{})
			for _, m := range tg.members {
				wantUnchanged(t, m.g, "stale commit two epochs late", func() error { _, err := m.g.Process(res.Message); return err })
			}
		})
	}
}

var _ = bytes.Equal
