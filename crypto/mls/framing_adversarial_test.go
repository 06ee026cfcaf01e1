package mls

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/moat-im/moat/crypto/mls/internal/schedule"
	"github.com/moat-im/moat/crypto/mls/internal/suite"
)

// framingGroup is a four-member group's epoch as framing sees it: one
// GroupContext, the shared epoch secrets, and each member's signing key.
type framingGroup struct {
	s                *suite.Suite
	ctx              *GroupContext
	membershipKey    []byte
	senderDataSecret []byte
	encryptionSecret []byte
	priv             []SignaturePrivateKey
	pub              []SignaturePublicKey
}

func newFramingGroup(t testing.TB, id suite.ID) *framingGroup {
	s, err := suite.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	rnd := func() []byte {
		b := make([]byte, s.Nh())
		rand.Read(b)
		return b
	}
	g := &framingGroup{s: s, ctx: &GroupContext{CipherSuite: CipherSuite(id), GroupID: []byte("framing group"), Epoch: 42,
		TreeHash: rnd(), ConfirmedTranscriptHash: rnd()},
		membershipKey: rnd(), senderDataSecret: rnd(), encryptionSecret: rnd()}
	for range 4 {
		priv, pub, err := s.GenerateSignatureKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		g.priv = append(g.priv, SignaturePrivateKey(priv))
		g.pub = append(g.pub, SignaturePublicKey(pub))
	}
	return g
}

// tree returns a fresh secret tree of the epoch: every member derives the
// same one.
func (g *framingGroup) tree(t testing.TB) *schedule.SecretTree {
	tree, err := schedule.NewSecretTree(g.s, g.encryptionSecret, 4)
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// senderKey treats leaf 3 as blank.
func (g *framingGroup) senderKey(leaf uint32) (SignaturePublicKey, error) {
	if leaf >= 3 {
		return nil, ErrUnknownSender
	}
	return g.pub[leaf], nil
}

func (g *framingGroup) content(sender uint32, data string) *FramedContent {
	return &FramedContent{GroupID: g.ctx.GroupID, Epoch: g.ctx.Epoch, Sender: Sender{Type: SenderTypeMember, Index: sender},
		AuthenticatedData: []byte("ad"), ContentType: ContentTypeApplication, ApplicationData: []byte(data)}
}

// seal signs c with signer's key and encrypts it from a fresh sender tree.
func (g *framingGroup) seal(t testing.TB, signer int, c *FramedContent, block int) *PrivateMessage {
	t.Helper()
	ac, err := signContent(g.s, g.priv[signer], WireFormatPrivateMessage, c, g.ctx)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := protectPrivate(g.s, g.senderDataSecret, g.tree(t), ac, block, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pm
}

func (g *framingGroup) open(tree *schedule.SecretTree, pm *PrivateMessage) (*AuthenticatedContent, error) {
	return unprotectPrivate(g.s, g.senderDataSecret, tree, g.ctx, pm, g.senderKey)
}

// mustStillOpen checks that a tree a failed call was given still opens the
// original message (the key was not consumed) and then refuses a replay.
func (g *framingGroup) mustStillOpen(t *testing.T, tree *schedule.SecretTree, pm *PrivateMessage, want string) {
	t.Helper()
	ac, err := g.open(tree, pm)
	if err != nil {
		t.Fatalf("original no longer opens after a failed attempt: %v", err)
	}
	if string(ac.Content.ApplicationData) != want {
		t.Fatalf("opened %q, want %q", ac.Content.ApplicationData, want)
	}
	if _, err := g.open(tree, pm); !errors.Is(err, schedule.ErrKeyConsumed) {
		t.Fatalf("replay: %v, want ErrKeyConsumed", err)
	}
}

// TestPrivateMessageTamper flips every bit of every field of a
// PrivateMessage: each copy is refused and the receiving tree is untouched.
func TestPrivateMessageTamper(t *testing.T) {
	g := newFramingGroup(t, suite.X25519_AES128GCM_SHA256_Ed25519)
	pm := g.seal(t, 1, g.content(1, "hello"), 32)
	tree := g.tree(t)
	fields := map[string]*[]byte{
		"group_id": &pm.GroupID, "authenticated_data": &pm.AuthenticatedData,
		"encrypted_sender_data": &pm.EncryptedSenderData, "ciphertext": &pm.Ciphertext,
	}
	for name, f := range fields {
		for i := range len(*f) * 8 {
			orig := *f
			*f = bytes.Clone(orig)
			(*f)[i/8] ^= 1 << (i % 8)
			_, err := g.open(tree, pm)
			*f = orig
			if !errors.Is(err, ErrDecrypt) {
				t.Fatalf("%s bit %d: err = %v, want ErrDecrypt", name, i, err)
			}
		}
	}
	for _, mutate := range []func(*PrivateMessage){
		func(p *PrivateMessage) { p.Epoch++ },
		func(p *PrivateMessage) { p.ContentType = ContentTypeProposal },
		func(p *PrivateMessage) { p.Ciphertext = p.Ciphertext[:len(p.Ciphertext)-1] },
		func(p *PrivateMessage) { p.EncryptedSenderData = nil },
	} {
		c := *pm
		mutate(&c)
		if _, err := g.open(tree, &c); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("mutated header: err = %v, want ErrDecrypt", err)
		}
	}
	g.mustStillOpen(t, tree, pm, "hello")
}

// TestT15FramingForgedSenderIndex: a member (leaf 0), who holds the
// epoch's secrets, frames a message as coming from leaf 1. The signature
// check with leaf 1's key fails, for PublicMessage and PrivateMessage, and
// the receiver's state does not change.
func TestT15FramingForgedSenderIndex(t *testing.T) {
	g := newFramingGroup(t, suite.XWING_CHACHA20POLY1305_SHA256_Ed25519)

	// PrivateMessage: encrypted on leaf 1's ratchet, signed by leaf 0.
	forged := g.seal(t, 0, g.content(1, "from bob, honest"), DefaultPaddingBlock)
	tree := g.tree(t)
	if _, err := g.open(tree, forged); !errors.Is(err, ErrInvalidSignature) {
		t.Fatalf("forged PrivateMessage: err = %v, want ErrInvalidSignature", err)
	}
	// Leaf 1's generation 0 was not consumed: its real message opens.
	real := g.seal(t, 1, g.content(1, "real"), DefaultPaddingBlock)
	g.mustStillOpen(t, tree, real, "real")

	// PublicMessage: the membership tag is valid (leaf 0 knows the
	// membership key), the signature is not.
	c := g.content(1, "")
	c.ContentType, c.ApplicationData = ContentTypeProposal, nil
	c.Proposal = &Proposal{Type: ProposalTypeRemove, Remove: &Remove{Removed: 2}}
	ac, err := signContent(g.s, g.priv[0], WireFormatPublicMessage, c, g.ctx)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := protectPublic(g.s, g.membershipKey, g.ctx, ac)
	if err != nil {
		t.Fatal(err)
	}
	got, err := unprotectPublic(g.s, g.membershipKey, g.ctx, pm)
	if err != nil {
		t.Fatalf("membership tag: %v", err)
	}
	key, _ := g.senderKey(got.Content.Sender.Index)
	if err := verifyContent(g.s, got, g.ctx, key); !errors.Is(err, ErrInvalidSignature) {
		t.Fatalf("forged PublicMessage: err = %v, want ErrInvalidSignature", err)
	}
	// Re-pointing a genuine message at another sender breaks the
	// membership tag.
	pm.Content.Sender.Index = 2
	if _, err := unprotectPublic(g.s, g.membershipKey, g.ctx, pm); !errors.Is(err, ErrInvalidMembershipTag) {
		t.Fatalf("re-pointed PublicMessage: err = %v, want ErrInvalidMembershipTag", err)
	}
	// A sender index naming a blank leaf is refused before any key is used.
	blank := g.seal(t, 0, g.content(3, "ghost"), 0)
	if _, err := g.open(tree, blank); !errors.Is(err, ErrUnknownSender) {
		t.Fatalf("blank sender: err = %v, want ErrUnknownSender", err)
	}
}

// TestT16FramingSignatureLabels: a FramedContent signature is bound to its
// label, wire format and epoch: it does not verify as a signature of
// another kind, nor after moving the content between PublicMessage and
// PrivateMessage, nor in another GroupContext.
func TestT16FramingSignatureLabels(t *testing.T) {
	g := newFramingGroup(t, suite.X25519_CHACHA20POLY1305_SHA256_Ed25519)
	c := g.content(0, "x")
	ac, err := signContent(g.s, g.priv[0], WireFormatPrivateMessage, c, g.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyContent(g.s, ac, g.ctx, g.pub[0]); err != nil {
		t.Fatal(err)
	}
	tbs, err := framedContentTBS(WireFormatPrivateMessage, c, g.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, label := range []string{labelLeafNodeTBS, labelKeyPackageTBS, labelGroupInfoTBS} {
		if g.s.VerifyWithLabel(suite.SignaturePublicKey(g.pub[0]), label, tbs, ac.Auth.Signature) == nil {
			t.Errorf("FramedContentTBS signature verifies under label %q", label)
		}
	}
	// Same content as a PublicMessage (a proposal, so it is allowed there).
	p := g.content(0, "")
	p.ContentType, p.ApplicationData, p.Proposal = ContentTypeProposal, nil, &Proposal{Type: ProposalTypeRemove, Remove: &Remove{Removed: 1}}
	priv, err := signContent(g.s, g.priv[0], WireFormatPrivateMessage, p, g.ctx)
	if err != nil {
		t.Fatal(err)
	}
	moved := *priv
	moved.WireFormat = WireFormatPublicMessage
	if err := verifyContent(g.s, &moved, g.ctx, g.pub[0]); !errors.Is(err, ErrInvalidSignature) {
		t.Errorf("signature survived a wire-format change: %v", err)
	}
	other := *g.ctx
	other.Epoch++
	if err := verifyContent(g.s, priv, &other, g.pub[0]); !errors.Is(err, ErrInvalidSignature) {
		t.Errorf("signature survived an epoch change: %v", err)
	}
}

// TestT19FramingGenerationMax: sender data claiming generation 0xffffffff
// (validly encrypted by an insider) is refused by the secret tree's skip
// bound, which it checks before deriving any key, and changes nothing.
func TestT19FramingGenerationMax(t *testing.T) {
	g := newFramingGroup(t, suite.X25519_AES128GCM_SHA256_Ed25519)
	pm := g.seal(t, 1, g.content(1, "hi"), 0)
	// Re-encrypt the sender data with generation 0xffffffff.
	sd, err := openSenderData(g.s, g.senderDataSecret, pm)
	if err != nil {
		t.Fatal(err)
	}
	sd.Generation = 0xffffffff
	key, nonce, err := schedule.SenderDataKeyNonce(g.s, g.senderDataSecret, pm.Ciphertext)
	if err != nil {
		t.Fatal(err)
	}
	aad := mustEncode(t, (&SenderDataAAD{GroupID: pm.GroupID, Epoch: pm.Epoch, ContentType: pm.ContentType}).Encode)
	forged := *pm
	if forged.EncryptedSenderData, err = g.s.Seal(key, nonce, aad, mustEncode(t, sd.Encode)); err != nil {
		t.Fatal(err)
	}
	tree := g.tree(t)
	if _, err := g.open(tree, &forged); !errors.Is(err, schedule.ErrGenerationTooFar) {
		t.Fatalf("err = %v, want ErrGenerationTooFar", err)
	}
	g.mustStillOpen(t, tree, pm, "hi")
}

func TestPrivateMessagePadding(t *testing.T) {
	g := newFramingGroup(t, suite.X25519_AES128GCM_SHA256_Ed25519)
	overhead := 16 // AES-GCM tag
	for _, block := range []int{0, 1, 32, DefaultPaddingBlock, 1000} {
		for _, n := range []int{0, 1, 100, 255, 256, 3000} {
			pm := g.seal(t, 2, g.content(2, string(make([]byte, n))), block)
			pt := len(pm.Ciphertext) - overhead
			if block > 1 && pt%block != 0 {
				t.Errorf("block %d, %d bytes: plaintext of %d bytes", block, n, pt)
			}
			ac, err := g.open(g.tree(t), pm)
			if err != nil || len(ac.Content.ApplicationData) != n {
				t.Fatalf("block %d, %d bytes: %v", block, n, err)
			}
		}
	}
	// Unpadded plaintext is exactly the encoded PrivateMessageContent.
	pm := g.seal(t, 2, g.content(2, "abc"), 0)
	ac, _ := g.open(g.tree(t), pm)
	enc := mustEncode(t, (&PrivateMessageContent{ContentType: ContentTypeApplication, ApplicationData: []byte("abc"), Auth: ac.Auth}).Encode)
	if len(pm.Ciphertext)-overhead != len(enc) {
		t.Errorf("unpadded plaintext %d bytes, want %d", len(pm.Ciphertext)-overhead, len(enc))
	}
	if _, err := protectPrivate(g.s, g.senderDataSecret, g.tree(t), ac, maxPaddingBlock+1, nil); err == nil {
		t.Error("oversized padding block accepted")
	}
}

// TestPrivateMessageNonZeroPadding: an insider encrypts content with a
// non-zero padding octet; the receiver refuses it as malformed (§6.3.1) and
// keeps its state.
func TestPrivateMessageNonZeroPadding(t *testing.T) {
	g := newFramingGroup(t, suite.X25519_AES128GCM_SHA256_Ed25519)
	c := g.content(1, "pad")
	ac, err := signContent(g.s, g.priv[1], WireFormatPrivateMessage, c, g.ctx)
	if err != nil {
		t.Fatal(err)
	}
	pt := mustEncode(t, (&PrivateMessageContent{ContentType: ContentTypeApplication, ApplicationData: c.ApplicationData, Auth: ac.Auth, PaddingLen: 8}).Encode)
	pt[len(pt)-3] = 0x80
	sender := g.tree(t)
	gen, key, nonce, err := sender.NextSend(1, schedule.Application)
	if err != nil {
		t.Fatal(err)
	}
	pm := &PrivateMessage{GroupID: c.GroupID, Epoch: c.Epoch, ContentType: c.ContentType, AuthenticatedData: c.AuthenticatedData}
	aad := mustEncode(t, (&PrivateContentAAD{GroupID: c.GroupID, Epoch: c.Epoch, ContentType: c.ContentType, AuthenticatedData: c.AuthenticatedData}).Encode)
	if pm.Ciphertext, err = g.s.Seal(key, nonce, aad, pt); err != nil {
		t.Fatal(err)
	}
	sdKey, sdNonce, _ := schedule.SenderDataKeyNonce(g.s, g.senderDataSecret, pm.Ciphertext)
	sdAAD := mustEncode(t, (&SenderDataAAD{GroupID: c.GroupID, Epoch: c.Epoch, ContentType: c.ContentType}).Encode)
	if pm.EncryptedSenderData, err = g.s.Seal(sdKey, sdNonce, sdAAD, mustEncode(t, (&SenderData{LeafIndex: 1, Generation: gen}).Encode)); err != nil {
		t.Fatal(err)
	}
	tree := g.tree(t)
	_, err = g.open(tree, pm)
	wantDecodeErr(t, "non-zero padding", err, ErrMalformed)
	g.mustStillOpen(t, tree, g.seal(t, 1, g.content(1, "ok"), 0), "ok")
}

// TestReuseGuard: the reuse guard changes the nonce. Two messages sent at
// the same generation (as after a state loss) with different guards give
// different ciphertexts, and each opens.
func TestReuseGuard(t *testing.T) {
	g := newFramingGroup(t, suite.X25519_AES128GCM_SHA256_Ed25519)
	c := g.content(0, "same message")
	ac, err := signContent(g.s, g.priv[0], WireFormatPrivateMessage, c, g.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var cts [][]byte
	for _, guard := range [][]byte{{0, 0, 0, 0}, {0xde, 0xad, 0xbe, 0xef}} {
		pm, err := protectPrivate(g.s, g.senderDataSecret, g.tree(t), ac, 0, bytes.NewReader(guard))
		if err != nil {
			t.Fatal(err)
		}
		sd, err := openSenderData(g.s, g.senderDataSecret, pm)
		if err != nil || !bytes.Equal(sd.ReuseGuard[:], guard) || sd.Generation != 0 {
			t.Fatalf("sender data %+v %v", sd, err)
		}
		if _, err := g.open(g.tree(t), pm); err != nil {
			t.Fatal(err)
		}
		cts = append(cts, pm.Ciphertext)
	}
	if bytes.Equal(cts[0], cts[1]) {
		t.Error("the reuse guard did not change the ciphertext")
	}
	// A short read from the randomness source fails before any key is
	// consumed from the sender's ratchet.
	tree := g.tree(t)
	if _, err := protectPrivate(g.s, g.senderDataSecret, tree, ac, 0, bytes.NewReader([]byte{1})); err == nil {
		t.Fatal("short reuse guard accepted")
	}
	if gen, _, _, err := tree.NextSend(0, schedule.Application); err != nil || gen != 0 {
		t.Errorf("failed send consumed generation: next is %d (%v)", gen, err)
	}
}

// TestSenderContentRules checks §6.1/§12.1.8: which sender types may send
// which content, and that application data never goes in a PublicMessage.
func TestSenderContentRules(t *testing.T) {
	add := &Proposal{Type: ProposalTypeAdd, Add: &Add{KeyPackage: *testKeyPackage()}}
	upd := &Proposal{Type: ProposalTypeUpdate, Update: &Update{LeafNode: testLeafNode(LeafNodeSourceUpdate)}}
	rem := &Proposal{Type: ProposalTypeRemove, Remove: &Remove{Removed: 1}}
	ext := &Proposal{Type: ProposalTypeExternalInit, ExternalInit: &ExternalInit{KEMOutput: []byte{1}}}
	cases := []struct {
		sender SenderType
		wf     WireFormat
		ct     ContentType
		p      *Proposal
		ok     bool
	}{
		{SenderTypeMember, WireFormatPublicMessage, ContentTypeProposal, upd, true},
		{SenderTypeMember, WireFormatPublicMessage, ContentTypeCommit, nil, true},
		{SenderTypeMember, WireFormatPublicMessage, ContentTypeApplication, nil, false},
		{SenderTypeMember, WireFormatPrivateMessage, ContentTypeApplication, nil, true},
		{SenderTypeMember, WireFormatWelcome, ContentTypeProposal, rem, false},
		{SenderTypeExternal, WireFormatPublicMessage, ContentTypeProposal, add, true},
		{SenderTypeExternal, WireFormatPublicMessage, ContentTypeProposal, rem, true},
		{SenderTypeExternal, WireFormatPublicMessage, ContentTypeProposal, upd, false},
		{SenderTypeExternal, WireFormatPublicMessage, ContentTypeProposal, ext, false},
		{SenderTypeExternal, WireFormatPublicMessage, ContentTypeCommit, nil, false},
		{SenderTypeExternal, WireFormatPrivateMessage, ContentTypeProposal, add, false},
		{SenderTypeNewMemberProposal, WireFormatPublicMessage, ContentTypeProposal, add, true},
		{SenderTypeNewMemberProposal, WireFormatPublicMessage, ContentTypeProposal, rem, false},
		{SenderTypeNewMemberProposal, WireFormatPublicMessage, ContentTypeCommit, nil, false},
		{SenderTypeNewMemberCommit, WireFormatPublicMessage, ContentTypeCommit, nil, true},
		{SenderTypeNewMemberCommit, WireFormatPublicMessage, ContentTypeProposal, add, false},
		{SenderTypeNewMemberCommit, WireFormatPrivateMessage, ContentTypeCommit, nil, false},
	}
	for i, c := range cases {
		fc := &FramedContent{Sender: Sender{Type: c.sender}, ContentType: c.ct, Proposal: c.p}
		if c.ct == ContentTypeCommit {
			fc.Commit = &Commit{}
		}
		err := checkSenderContent(c.wf, fc)
		if (err == nil) != c.ok {
			t.Errorf("case %d (%+v): err = %v", i, c, err)
		}
	}
	// The receiving side applies the same rules: an external sender's
	// Update in a PublicMessage is refused before any signature check.
	g := newFramingGroup(t, suite.X25519_AES128GCM_SHA256_Ed25519)
	pm := &PublicMessage{Content: FramedContent{GroupID: g.ctx.GroupID, Epoch: g.ctx.Epoch, Sender: Sender{Type: SenderTypeExternal},
		ContentType: ContentTypeProposal, Proposal: upd}}
	if _, err := unprotectPublic(g.s, g.membershipKey, g.ctx, pm); !errors.Is(err, ErrSenderContent) {
		t.Errorf("external Update: %v", err)
	}
}

// TestProposalRef checks MakeProposalRef against a hand computation and
// that it depends on the wire format and signature.
func TestProposalRef(t *testing.T) {
	g := newFramingGroup(t, suite.X25519_AES128GCM_SHA256_Ed25519)
	c := g.content(0, "")
	c.ContentType, c.ApplicationData, c.Proposal = ContentTypeProposal, nil, &Proposal{Type: ProposalTypeRemove, Remove: &Remove{Removed: 1}}
	ac, err := signContent(g.s, g.priv[0], WireFormatPublicMessage, c, g.ctx)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := ac.Ref(g.ctx.CipherSuite)
	if err != nil {
		t.Fatal(err)
	}
	if want := g.s.RefHash("MLS 1.0 Proposal Reference", mustEncode(t, ac.Encode)); !bytes.Equal(ref, want) {
		t.Error("ref differs from RefHash of the AuthenticatedContent")
	}
	ac.WireFormat = WireFormatPrivateMessage
	if ref2, _ := ac.Ref(g.ctx.CipherSuite); bytes.Equal(ref, ref2) {
		t.Error("ref does not cover the wire format")
	}
	if _, err := (&AuthenticatedContent{Content: *g.content(0, "x")}).Ref(g.ctx.CipherSuite); err == nil {
		t.Error("ref of application content")
	}
}

// Application message send and receive (issue #5 goals: ≤ 50 µs / ≤ 100
// µs), next to their crypto floor in the same run: one Ed25519 signature
// (send) or verification (receive) of a message of the same size.
var benchSuites = []suite.ID{suite.X25519_AES128GCM_SHA256_Ed25519, suite.XWING_CHACHA20POLY1305_SHA256_Ed25519}

func BenchmarkApplicationSend(b *testing.B) {
	for _, id := range benchSuites {
		g := newFramingGroup(b, id)
		c := g.content(1, string(make([]byte, 100)))
		b.Run(id.String(), func(b *testing.B) {
			tree := g.tree(b)
			for b.Loop() {
				ac, err := signContent(g.s, g.priv[1], WireFormatPrivateMessage, c, g.ctx)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := protectPrivate(g.s, g.senderDataSecret, tree, ac, DefaultPaddingBlock, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkApplicationReceive(b *testing.B) {
	for _, id := range benchSuites {
		g := newFramingGroup(b, id)
		c := g.content(1, string(make([]byte, 100)))
		b.Run(id.String(), func(b *testing.B) {
			const n = 1000 // messages per fresh receiving tree
			pms := make([]*PrivateMessage, n)
			sender := g.tree(b)
			for i := range pms {
				ac, _ := signContent(g.s, g.priv[1], WireFormatPrivateMessage, c, g.ctx)
				pms[i], _ = protectPrivate(g.s, g.senderDataSecret, sender, ac, DefaultPaddingBlock, nil)
			}
			tree, i := g.tree(b), 0
			for b.Loop() {
				if i == n {
					b.StopTimer()
					tree, i = g.tree(b), 0
					b.StartTimer()
				}
				if _, err := g.open(tree, pms[i]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkFloorSign and BenchmarkFloorVerify are the signature floor of
// the two benchmarks above: SignWithLabel / VerifyWithLabel over a
// FramedContentTBS of the same content.
func BenchmarkFloorSign(b *testing.B) {
	g := newFramingGroup(b, benchSuites[0])
	tbs, _ := framedContentTBS(WireFormatPrivateMessage, g.content(1, string(make([]byte, 100))), g.ctx)
	for b.Loop() {
		if _, err := g.s.SignWithLabel(suite.SignaturePrivateKey(g.priv[1]), labelFramedContent, tbs); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFloorVerify(b *testing.B) {
	g := newFramingGroup(b, benchSuites[0])
	tbs, _ := framedContentTBS(WireFormatPrivateMessage, g.content(1, string(make([]byte, 100))), g.ctx)
	sig, _ := g.s.SignWithLabel(suite.SignaturePrivateKey(g.priv[1]), labelFramedContent, tbs)
	for b.Loop() {
		if err := g.s.VerifyWithLabel(suite.SignaturePublicKey(g.pub[1]), labelFramedContent, tbs, sig); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzUnprotectPrivate feeds mutated PrivateMessages to a receiver: only
// the genuine message may ever open, and whatever fails leaves the
// receiver's tree able to open the genuine one.
func FuzzUnprotectPrivate(f *testing.F) {
	g := newFramingGroup(f, suite.X25519_AES128GCM_SHA256_Ed25519)
	pm := g.seal(f, 1, g.content(1, "genuine"), 32)
	genuine := mustEncode(f, (&MLSMessage{WireFormat: WireFormatPrivateMessage, PrivateMessage: pm}).Encode)
	f.Add(genuine)
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := DecodeMLSMessage(in)
		if err != nil || m.PrivateMessage == nil {
			return
		}
		tree := g.tree(t)
		ac, err := g.open(tree, m.PrivateMessage)
		if err == nil {
			if !bytes.Equal(in, genuine) || string(ac.Content.ApplicationData) != "genuine" {
				t.Fatalf("forged message accepted: %x", in)
			}
			return
		}
		g.mustStillOpen(t, tree, pm, "genuine")
	})
}
