package mls

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// TestGroupLifecycle runs a group through every kind of Commit for the
// classical baseline suite and Moat's default: adds with and without a
// path, application messages, Updates by proposal, Removes, an external
// PSK, a GroupContextExtensions change and proposals by reference from
// several members. After every Commit all members agree on the epoch
// authenticator, tree and GroupContext.
func TestGroupLifecycle(t *testing.T) {
	for _, cs := range testSuites {
		t.Run(fmt.Sprintf("suite%04x", uint16(cs)), func(t *testing.T) {
			tg := newTestGroup(t, cs, 4)
			a, b := tg.members[0], tg.members[1]

			// Application messages in both directions, in the epoch.
			for i, sender := range tg.members {
				msg, err := sender.g.Encrypt([]byte(fmt.Sprintf("hello %d", i)), []byte("ad"))
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range tg.members {
					if m == sender {
						continue
					}
					p, err := m.g.Process(msg)
					if err != nil {
						t.Fatalf("%s decrypting %s: %v", m.name, sender.name, err)
					}
					if p.Kind != ProcessedApplication || string(p.ApplicationData) != fmt.Sprintf("hello %d", i) ||
						string(p.AuthenticatedData) != "ad" || p.Sender.Index != sender.g.LeafIndex() {
						t.Fatalf("%s: got %+v", m.name, p)
					}
				}
			}

			// An empty Commit (path only) by b.
			tg.commit(b, CommitOptions{})

			// Add without a path.
			c := newTestClient(t, cs, "late")
			res := tg.commit(a, CommitOptions{Add: []*KeyPackage{c.kp}, NoPath: true}, c)
			if res.Welcome == nil {
				t.Fatal("no Welcome")
			}

			// Update proposed by c, committed by b; Remove proposed by a of
			// the member at leaf 2, committed together.
			upd, err := c.g.ProposeUpdate()
			if err != nil {
				t.Fatal(err)
			}
			tg.deliver(c, upd)
			victim := tg.member(2)
			rem, err := a.g.ProposeRemove(2)
			if err != nil {
				t.Fatal(err)
			}
			tg.deliver(a, rem)
			before := len(tg.members)
			tg.commit(b, CommitOptions{})
			if len(tg.members) != before-1 || victim.g.Active() {
				t.Fatalf("member at leaf 2 not removed")
			}

			// The removed member can no longer decrypt.
			msg, err := a.g.Encrypt([]byte("secret"), nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := victim.g.Process(msg); err == nil {
				t.Fatal("removed member decrypted a message of the next epoch")
			}
			tg.deliver(a, msg)

			// External PSK and a GroupContextExtensions change.
			psk := []byte("0123456789abcdef0123456789abcdef")
			for _, m := range tg.members {
				m.g.cfg.ExternalPSK = func(id []byte) ([]byte, bool) { return psk, string(id) == "psk-1" }
			}
			p, err := b.g.ProposePSK(PreSharedKeyID{Type: PSKTypeExternal, PSKID: []byte("psk-1")})
			if err != nil {
				t.Fatal(err)
			}
			tg.deliver(b, p)
			gce := Extensions{{Type: ExtensionTypeApplicationID, Data: []byte{2, 'h', 'i'}}}
			tg.commit(a, CommitOptions{Proposals: []Proposal{{Type: ProposalTypeGroupContextExtensions,
				GroupContextExtensions: &GroupContextExtensions{Extensions: gce}}}})
			for _, m := range tg.members {
				if !m.g.GroupContext().Extensions.Equal(gce) {
					t.Fatalf("%s: extensions not replaced", m.name)
				}
			}

			// Exporter values agree.
			e0, err := tg.members[0].g.Export("test", []byte("ctx"), 32)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range tg.members[1:] {
				if e, _ := m.g.Export("test", []byte("ctx"), 32); !bytes.Equal(e, e0) {
					t.Fatalf("%s: exporter differs", m.name)
				}
			}
		})
	}
}

// TestLateApplicationMessage decrypts an application message of the
// previous epoch that arrives after the Commit, and refuses one from an
// epoch no longer retained.
func TestLateApplicationMessage(t *testing.T) {
	tg := newTestGroup(t, testSuites[0], 3)
	a, b := tg.members[0], tg.members[1]
	late, err := a.g.Encrypt([]byte("late"), nil)
	if err != nil {
		t.Fatal(err)
	}
	tg.commit(b, CommitOptions{})
	p, err := b.g.Process(late)
	if err != nil || string(p.ApplicationData) != "late" || p.Epoch != tg.members[0].g.Epoch()-1 {
		t.Fatalf("late message: %v %+v", err, p)
	}
	// Twice is refused (the key was consumed).
	wantUnchanged(t, b.g, "late message replayed", func() error { _, err := b.g.Process(late); return err })
	old, err := a.g.Encrypt([]byte("old"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		tg.commit(a, CommitOptions{})
	}
	err = wantUnchanged(t, b.g, "message of an expired epoch", func() error { _, err := b.g.Process(old); return err })
	if !errors.Is(err, ErrWrongEpoch) {
		t.Fatalf("expired epoch: %v", err)
	}
}

// TestExternalJoin has a new member join with an external Commit from a
// published GroupInfo (tree in it and out of band), then resync: join
// again, removing its old leaf.
func TestExternalJoin(t *testing.T) {
	for _, cs := range testSuites {
		t.Run(fmt.Sprintf("suite%04x", uint16(cs)), func(t *testing.T) {
			tg := newTestGroup(t, cs, 3)
			a := tg.members[0]
			for _, withTree := range []bool{true, false} {
				gi, err := a.g.GroupInfo(withTree)
				if err != nil {
					t.Fatal(err)
				}
				x := newTestClient(t, cs, fmt.Sprintf("ext-%v", withTree))
				var opts ExternalJoinOptions
				if !withTree {
					opts.RatchetTree = a.g.RatchetTree()
				}
				g, msg, err := ExternalJoin(x.cfg, gi, &x.kp.LeafNode, x.sig, opts)
				if err != nil {
					t.Fatal(err)
				}
				x.g = g
				for _, m := range tg.members {
					p, err := m.g.Process(msg)
					if err != nil {
						t.Fatalf("%s: %v", m.name, err)
					}
					if !p.Commit.External || len(p.Commit.Added) != 1 || p.Commit.Added[0] != g.LeafIndex() {
						t.Fatalf("%s: %+v", m.name, p.Commit)
					}
				}
				tg.members = append(tg.members, x)
				tg.checkAgree()
			}

			// Resync: the last joiner lost its state and joins again.
			x := tg.members[len(tg.members)-1]
			gi, err := a.g.GroupInfo(true)
			if err != nil {
				t.Fatal(err)
			}
			x.newKeyPackage(t)
			g, msg, err := ExternalJoin(x.cfg, gi, &x.kp.LeafNode, x.sig, ExternalJoinOptions{Resync: true, ResyncLeaf: x.g.LeafIndex()})
			if err != nil {
				t.Fatal(err)
			}
			old := x.g
			tg.members = tg.members[:len(tg.members)-1]
			for _, m := range tg.members {
				p, err := m.g.Process(msg)
				if err != nil {
					t.Fatalf("%s: %v", m.name, err)
				}
				if len(p.Commit.Removed) != 1 || p.Commit.Removed[0] != old.LeafIndex() {
					t.Fatalf("%s: %+v", m.name, p.Commit)
				}
			}
			x.g = g
			tg.members = append(tg.members, x)
			tg.checkAgree()

			// A resync for someone else's leaf is refused by the joiner's
			// own checks.
			gi, _ = a.g.GroupInfo(true)
			y := newTestClient(t, cs, "intruder")
			if _, _, err := ExternalJoin(y.cfg, gi, &y.kp.LeafNode, y.sig, ExternalJoinOptions{Resync: true, ResyncLeaf: 1}); !errors.Is(err, ErrInvalidProposalList) {
				t.Fatalf("resync of another member's leaf: %v", err)
			}
		})
	}
}

// TestReInit moves a classical group to the post-quantum suite: a ReInit
// is committed, after which the old group refuses to send; one member
// creates the new group and the others join it from the Welcome, which
// they check against the ReInit.
func TestReInit(t *testing.T) {
	old := newTestGroup(t, testSuites[0], 3)
	a := old.members[0]
	newID := []byte("reinitialised group")
	r := ReInit{GroupID: newID, Version: ProtocolVersionMLS10, CipherSuite: testSuites[1]}
	p, err := a.g.ProposeReInit(r)
	if err != nil {
		t.Fatal(err)
	}
	old.deliver(a, p)
	res, err := old.members[1].g.Commit(CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	old.deliverCommit(res)
	for _, m := range old.members {
		if m.g.Active() || m.g.ReInitParams() == nil {
			t.Fatalf("%s: still active after the ReInit", m.name)
		}
		if _, err := m.g.Encrypt([]byte("x"), nil); !errors.Is(err, ErrGroupInactive) {
			t.Fatalf("%s: sends after the ReInit: %v", m.name, err)
		}
	}
	// Everyone needs a KeyPackage in the new suite.
	fresh := make([]*testClient, len(old.members))
	for i, m := range old.members {
		c := *m
		c.cs = testSuites[1]
		s, _ := getSuite(c.cs)
		priv, _, _ := s.GenerateSignatureKey(nil)
		c.sig = SignaturePrivateKey(priv)
		c.newKeyPackage(t)
		fresh[i] = &c
	}
	var kps []*KeyPackage
	for _, c := range fresh[1:] {
		kps = append(kps, c.kp)
	}
	ng, cres, err := a.g.ReInit(fresh[0].kp, fresh[0].kps, fresh[0].sig, kps)
	if err != nil {
		t.Fatal(err)
	}
	if ng.Epoch() != 1 || !bytes.Equal(ng.GroupID(), newID) || ng.CipherSuite() != testSuites[1] {
		t.Fatalf("new group: epoch %d suite %#x", ng.Epoch(), uint16(ng.CipherSuite()))
	}
	for i, c := range fresh[1:] {
		// Without the old group the reinit PSK cannot be resolved.
		if _, err := Join(c.cfg, cres.Welcome, c.kp, c.kps, c.sig, JoinOptions{RatchetTree: ng.RatchetTree()}); err == nil {
			t.Fatal("joined a reinitialised group without the old one")
		}
		g, err := Join(c.cfg, cres.Welcome, c.kp, c.kps, c.sig, JoinOptions{RatchetTree: ng.RatchetTree(), Resumes: old.members[i+1].g})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !bytes.Equal(g.EpochAuthenticator(), ng.EpochAuthenticator()) {
			t.Fatalf("%s: disagrees with the creator", c.name)
		}
	}
}

// TestBranch creates a subgroup of two members bound to the parent group,
// and refuses to branch with an outsider.
func TestBranch(t *testing.T) {
	tg := newTestGroup(t, testSuites[1], 3)
	a, b := tg.members[0], tg.members[1]
	a.newKeyPackage(t)
	b.newKeyPackage(t)
	ng, res, err := a.g.Branch(a.kp, a.kps, a.sig, []*KeyPackage{b.kp}, NewGroupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g, err := Join(b.cfg, res.Welcome, b.kp, b.kps, b.sig, JoinOptions{RatchetTree: ng.RatchetTree(), Resumes: b.g})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g.EpochAuthenticator(), ng.EpochAuthenticator()) || g.Epoch() != 1 {
		t.Fatal("branch members disagree")
	}
	outsider := newTestClient(t, testSuites[1], "outsider")
	if _, _, err := a.g.Branch(a.kp, a.kps, a.sig, []*KeyPackage{outsider.kp}, NewGroupOptions{}); err == nil {
		t.Fatal("branched with a non-member")
	}
	// A PreSharedKey proposal with a branch PSK is invalid in the group
	// itself (§12.1.4).
	_, err = a.g.Commit(CommitOptions{Proposals: []Proposal{{Type: ProposalTypePSK, PreSharedKey: &PreSharedKey{PSK: PreSharedKeyID{
		Type: PSKTypeResumption, Usage: ResumptionPSKUsageBranch, PSKGroupID: a.g.GroupID(), PSKEpoch: a.g.Epoch()}}}}})
	if !errors.Is(err, ErrInvalidProposalList) {
		t.Fatalf("branch PSK proposal: %v", err)
	}
}

// TestFailedCommitLeavesStateUnchanged: Commits from a member that decrypt
// and verify but fail a later check (a wrong confirmation tag, an invalid
// proposal list, a missing path) leave the receiver byte-identical, its
// secret tree included, in both wire formats; the member then still
// processes a genuine Commit.
func TestFailedCommitLeavesStateUnchanged(t *testing.T) {
	for _, public := range []bool{false, true} {
		t.Run(fmt.Sprintf("public=%v", public), func(t *testing.T) {
			tg := newTestGroup(t, testSuites[0], 3)
			a, b := tg.members[0], tg.members[1]
			bad := map[string]*Commit{
				"empty without path":        {},
				"remove of blank leaf":      {Proposals: []ProposalOrRef{{Proposal: &Proposal{Type: ProposalTypeRemove, Remove: &Remove{Removed: 9}}}}},
				"unknown reference":         {Proposals: []ProposalOrRef{{Reference: make([]byte, 32)}}},
				"add without path, bad tag": {Proposals: []ProposalOrRef{{Proposal: &Proposal{Type: ProposalTypeAdd, Add: &Add{KeyPackage: *newTestClient(t, testSuites[0], "x").kp}}}}},
			}
			for name, c := range bad {
				fc := a.g.contentFrom(a.g.LeafIndex())
				fc.ContentType, fc.Commit = ContentTypeCommit, c
				msg := forgeMessage(t, a.g, fc, a.sig, public, make([]byte, 32))
				wantUnchanged(t, b.g, name, func() error { _, err := b.g.Process(msg); return err })
			}
			tg.commit(a, CommitOptions{})
		})
	}
}

// TestExternalProposals: a sender listed in external_senders proposes a
// Remove, and a new member proposes its own Add (allowed by the policy);
// a member commits both by reference.
func TestExternalProposals(t *testing.T) {
	cs := testSuites[0]
	s, _ := getSuite(cs)
	extPriv, extPub, err := s.GenerateSignatureKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	es, err := ExternalSenders{{SignatureKey: SignaturePublicKey(extPub), Credential: Credential{Type: CredentialTypeBasic, Identity: []byte("admin bot")}}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	tg := newTestGroup(t, cs, 3)
	a := tg.members[0]
	tg.commit(a, CommitOptions{Proposals: []Proposal{{Type: ProposalTypeGroupContextExtensions,
		GroupContextExtensions: &GroupContextExtensions{Extensions: Extensions{{Type: ExtensionTypeExternalSenders, Data: es}}}}}})
	allowSelfAdd := PolicyFunc(func(*GroupContext, Sender, *LeafNode, *Proposal) error { return nil })
	for _, m := range tg.members {
		m.g.cfg.Policy = allowSelfAdd
	}

	victim := tg.member(2)
	rem := a.g.contentFrom(0)
	rem.Sender = Sender{Type: SenderTypeExternal, Index: 0}
	rem.ContentType, rem.Proposal = ContentTypeProposal, &Proposal{Type: ProposalTypeRemove, Remove: &Remove{Removed: 2}}
	remMsg := forgeMessage(t, a.g, rem, SignaturePrivateKey(extPriv), true, nil)

	joiner := newTestClient(t, cs, "self-adder")
	add := a.g.contentFrom(0)
	add.Sender = Sender{Type: SenderTypeNewMemberProposal}
	add.ContentType, add.Proposal = ContentTypeProposal, &Proposal{Type: ProposalTypeAdd, Add: &Add{KeyPackage: *joiner.kp}}
	addMsg := forgeMessage(t, a.g, add, joiner.sig, true, nil)

	// A proposal signed by anyone else than the listed sender is refused.
	bad := forgeMessage(t, a.g, rem, a.sig, true, nil)
	wantUnchanged(t, a.g, "external proposal with the wrong key", func() error { _, err := a.g.Process(bad); return err })

	for _, m := range tg.members {
		for _, msg := range [][]byte{remMsg, addMsg} {
			if _, err := m.g.Process(msg); err != nil {
				t.Fatalf("%s: %v", m.name, err)
			}
		}
	}
	res, err := tg.member(1).g.Commit(CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tg.deliverCommit(res, joiner)
	if victim.g.Active() || !joiner.g.Active() {
		t.Fatal("external proposals not applied")
	}
}
