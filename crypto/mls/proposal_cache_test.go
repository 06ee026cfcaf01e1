package mls

// The proposal cache (RFC 9420 §12.1, §12.2, §12.4): proposals are
// validated when they arrive, the committer covers only a valid subset,
// and no cached proposal can block the group's Commits or application
// messages.

import (
	"errors"
	"testing"
)

// proposalFrom frames p as a proposal from member c, signed with its key
// and protected with its epoch keys as a PublicMessage.
func proposalFrom(t *testing.T, c *testClient, p *Proposal) []byte {
	return proposalFromAs(t, c, p, true)
}

// proposalFromAs is proposalFrom as a PublicMessage or a PrivateMessage.
func proposalFromAs(t *testing.T, c *testClient, p *Proposal, public bool) []byte {
	t.Helper()
	fc := c.g.contentFrom(c.g.LeafIndex())
	fc.ContentType, fc.Proposal = ContentTypeProposal, p
	return forgeMessage(t, c.g, fc, c.sig, public, nil)
}

// TestT21NewMemberProposalDefaultConfig: a non-member (the relay, or
// anyone with a KeyPackage) sends a new_member_proposal Add to a group
// with the default config (no Policy): every member refuses it on
// arrival, state unchanged, and the group goes on committing and talking.
// Before arrival validation it was cached and made every Commit fail.
func TestT21NewMemberProposalDefaultConfig(t *testing.T) {
	for _, cs := range testSuites {
		tg := newTestGroup(t, cs, 3)
		intruder := newTestClient(t, cs, "intruder")
		fc := tg.members[0].g.contentFrom(0)
		fc.Sender = Sender{Type: SenderTypeNewMemberProposal}
		fc.ContentType, fc.Proposal = ContentTypeProposal, &Proposal{Type: ProposalTypeAdd, Add: &Add{KeyPackage: *intruder.kp}}
		relay := &Group{suite: tg.members[0].g.suite, st: tg.members[0].g.st}
		msg := forgeMessage(t, relay, fc, intruder.sig, true, nil)
		for _, m := range tg.members {
			err := wantUnchanged(t, m.g, "new member proposal", func() error { _, err := m.g.Process(msg); return err })
			if !errors.Is(err, ErrInvalidProposal) || !errors.Is(err, ErrPolicy) {
				t.Fatalf("%s: %v", m.name, err)
			}
		}
		tg.commit(tg.members[1], CommitOptions{})
		if _, err := tg.members[2].g.Encrypt([]byte("hi"), nil); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDuplicateAddProposals: two honest members propose adding the same
// KeyPackage. Both proposals are valid alone; a Commit covering both would
// be invalid (§12.2: two Adds of one client). The committer covers the
// first only, every member accepts, and the client joins once.
func TestDuplicateAddProposals(t *testing.T) {
	tg := newTestGroup(t, testSuites[0], 3)
	joiner := newTestClient(t, tg.cs, "joiner")
	a, b, committer := tg.members[1], tg.members[2], tg.members[0]
	for _, p := range []*testClient{a, b} {
		msg, err := p.g.ProposeAdd(joiner.kp)
		if err != nil {
			t.Fatal(err)
		}
		tg.deliver(p, msg)
	}
	if _, err := committer.g.Encrypt([]byte("x"), nil); !errors.Is(err, ErrProposalsPending) {
		t.Fatalf("Encrypt with proposals cached: %v", err)
	}
	res := tg.commit(committer, CommitOptions{}, joiner)
	if res.Welcome == nil {
		t.Fatal("no Welcome")
	}
	if n := tg.members[0].g.MemberCount(); n != 4 {
		t.Fatalf("%d members, want 4", n)
	}
	for _, m := range tg.members {
		if _, err := m.g.Encrypt([]byte("hi"), nil); err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
	}
}

// TestCommitOmitsInvalidCachedProposals: proposals that got into the cache
// but cannot be committed (planted directly: arrival validation keeps them
// out) are left out of the Commit, deterministically, instead of failing
// it; receivers accept the Commit.
func TestCommitOmitsInvalidCachedProposals(t *testing.T) {
	tg := newTestGroup(t, testSuites[0], 4)
	committer := tg.members[0]
	bad := newTestClient(t, tg.cs, "bad")
	bad.kp.LeafNode.Signature[0] ^= 1
	good := newTestClient(t, tg.cs, "good")
	other := tg.members[1]
	plant := func(p *Proposal, from Sender) {
		for _, m := range tg.members {
			m.g.st.proposals = append(m.g.st.proposals, cachedProposal{ref: ProposalRef{byte(len(m.g.st.proposals)), 0xee}, p: p, sender: from})
		}
	}
	fromOther := Sender{Type: SenderTypeMember, Index: other.g.LeafIndex()}
	plant(&Proposal{Type: ProposalTypeAdd, Add: &Add{KeyPackage: *bad.kp}}, fromOther)
	plant(&Proposal{Type: ProposalTypeRemove, Remove: &Remove{Removed: 99}}, fromOther)
	plant(&Proposal{Type: ProposalTypeAdd, Add: &Add{KeyPackage: *good.kp}}, fromOther)
	plant(&Proposal{Type: ProposalTypeAdd, Add: &Add{KeyPackage: *tg.members[2].kp}}, fromOther) // already a member
	res := tg.commit(committer, CommitOptions{}, good)
	if res.Welcome == nil || tg.members[0].g.MemberCount() != 5 {
		t.Fatalf("commit did not add the valid proposal's client: %d members", tg.members[0].g.MemberCount())
	}
}

// TestDiscardProposals: DiscardProposals empties the cache; Encrypt works
// again and the next Commit covers nothing cached.
func TestDiscardProposals(t *testing.T) {
	tg := newTestGroup(t, testSuites[0], 3)
	msg, err := tg.members[1].g.ProposeRemove(tg.members[2].g.LeafIndex())
	if err != nil {
		t.Fatal(err)
	}
	tg.deliver(tg.members[1], msg)
	m := tg.members[0]
	if _, err := m.g.Encrypt([]byte("x"), nil); !errors.Is(err, ErrProposalsPending) {
		t.Fatalf("Encrypt: %v", err)
	}
	if n := m.g.DiscardProposals(); n != 1 {
		t.Fatalf("DiscardProposals dropped %d, want 1", n)
	}
	if _, err := m.g.Encrypt([]byte("x"), nil); err != nil {
		t.Fatalf("Encrypt after DiscardProposals: %v", err)
	}
	if n := tg.members[1].g.DiscardProposals(); n != 1 {
		t.Fatalf("proposer dropped %d, want 1", n)
	}
	tg.members[2].g.DiscardProposals()
	tg.commit(m, CommitOptions{})
	if tg.members[0].g.MemberCount() != 3 {
		t.Fatal("the discarded Remove was committed")
	}
}

// TestReceivedProposalValidation: a member refuses, on arrival and with
// its state unchanged, each proposal that is invalid on its own (§12.1):
// it is never cached, so it can neither be committed nor block a Commit.
func TestReceivedProposalValidation(t *testing.T) {
	tg := newTestGroup(t, testSuites[0], 3)
	sender, recv := tg.members[1], tg.members[0]
	refused := newTestClient(t, tg.cs, "refused")
	recv.g.cfg.Credentials = CredentialValidatorFunc(func(c Credential, _ SignaturePublicKey) error {
		if string(c.Identity) == "refused" {
			return errors.New("not in the directory")
		}
		return nil
	})
	recv.g.cfg.AllowedCipherSuites = []CipherSuite{tg.cs}
	badSig := newTestClient(t, tg.cs, "badsig")
	badSig.kp.Signature[0] ^= 1
	esData, err := ExternalSenders{{SignatureKey: refused.kp.LeafNode.SignatureKey, Credential: refused.kp.LeafNode.Credential}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	staleUpdate := *sender.g.st.tree.leaf(LeafIndex(sender.g.LeafIndex()))
	staleUpdate.Source = LeafNodeSourceUpdate
	staleUpdate.Lifetime, staleUpdate.ParentHash = nil, nil
	if err := staleUpdate.Sign(tg.cs, sender.sig, sender.g.GroupID(), sender.g.LeafIndex()); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		p    *Proposal
		want error
	}{
		{"Add with a refused credential", &Proposal{Type: ProposalTypeAdd, Add: &Add{KeyPackage: *refused.kp}}, ErrInvalidKeyPackage},
		{"Add with a bad signature", &Proposal{Type: ProposalTypeAdd, Add: &Add{KeyPackage: *badSig.kp}}, ErrInvalidKeyPackage},
		{"Remove of a blank leaf", &Proposal{Type: ProposalTypeRemove, Remove: &Remove{Removed: 7}}, ErrInvalidProposal},
		{"PSK with a short nonce", &Proposal{Type: ProposalTypePSK, PreSharedKey: &PreSharedKey{PSK: PreSharedKeyID{Type: PSKTypeExternal, PSKID: []byte("k"), Nonce: []byte{1}}}}, ErrInvalidProposal},
		{"ReInit to a disallowed suite", &Proposal{Type: ProposalTypeReInit, ReInit: &ReInit{GroupID: []byte("g"), Version: ProtocolVersionMLS10, CipherSuite: testSuites[1]}}, ErrPolicy},
		{"external_senders with a refused credential", &Proposal{Type: ProposalTypeGroupContextExtensions, GroupContextExtensions: &GroupContextExtensions{Extensions: Extensions{{Type: ExtensionTypeExternalSenders, Data: esData}}}}, ErrInvalidCredential},
		{"Update keeping the encryption key", &Proposal{Type: ProposalTypeUpdate, Update: &Update{LeafNode: staleUpdate}}, ErrInvalidProposal},
	}
	for _, c := range cases {
		for _, public := range []bool{true, false} {
			// A PrivateMessage's key is not consumed when the proposal
			// is refused.
			msg := proposalFromAs(t, sender, c.p, public)
			err := wantUnchanged(t, recv.g, c.name, func() error { _, err := recv.g.Process(msg); return err })
			if !errors.Is(err, ErrInvalidProposal) || !errors.Is(err, c.want) {
				t.Errorf("%s (public %v): %v, want %v", c.name, public, err, c.want)
			}
		}
	}
	if _, err := recv.g.Encrypt([]byte("x"), nil); err != nil {
		t.Fatalf("Encrypt after refused proposals: %v", err)
	}
}

// TestCommitInlineWinsOverCached: a cached Update of a leaf the committer
// removes inline is left out (§12.2 prefers the Remove), instead of the
// Commit failing.
func TestCommitInlineWinsOverCached(t *testing.T) {
	tg := newTestGroup(t, testSuites[0], 3)
	victim := tg.members[2]
	msg, err := victim.g.ProposeUpdate()
	if err != nil {
		t.Fatal(err)
	}
	tg.deliver(victim, msg)
	tg.commit(tg.members[0], CommitOptions{Remove: []uint32{victim.g.LeafIndex()}})
	if n := tg.members[0].g.MemberCount(); n != 2 {
		t.Fatalf("%d members, want 2", n)
	}
}
