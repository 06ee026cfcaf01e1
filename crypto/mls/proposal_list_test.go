package mls

// RFC 9420 §12.2 proposal-list validation, one case per rejection rule:
// each Commit is well-formed and signed by a real member (or joiner), and
// fails exactly at the rule under test, leaving the receiver unchanged.

import (
	"errors"
	"strings"
	"testing"
)

// commitWithList has c make an ordinary Commit (signed, with its own
// UpdatePath and confirmation tag) and replaces its proposal list by pors
// (and drops the path if dropPath) before it is signed: a committer that
// skips §12.2.
func commitWithList(t *testing.T, c *testClient, pors []ProposalOrRef, dropPath bool) []byte {
	t.Helper()
	res, err := c.g.commit(CommitOptions{}, func(_ *Group, cm *Commit, _ []byte) {
		cm.Proposals = pors
		if dropPath {
			cm.Path = nil
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	c.g.ClearPendingCommit()
	return res.Message
}

// externalCommitWithList makes a valid external Commit for tg and
// replaces its proposal list by pors, re-signed by the joiner.
func externalCommitWithList(t *testing.T, tg *testGroup, pors func(orig []ProposalOrRef) []ProposalOrRef) []byte {
	t.Helper()
	gi, err := tg.members[0].g.GroupInfo(true)
	if err != nil {
		t.Fatal(err)
	}
	x := newTestClient(t, tg.cs, "joiner")
	_, msg, err := ExternalJoin(x.cfg, gi, &x.kp.LeafNode, x.sig, ExternalJoinOptions{RatchetTree: tg.members[0].g.RatchetTree()})
	if err != nil {
		t.Fatal(err)
	}
	m, err := DecodeMLSMessage(msg)
	if err != nil {
		t.Fatal(err)
	}
	c := m.PublicMessage.Content
	c.Commit.Proposals = pors(c.Commit.Proposals)
	relay := &Group{suite: tg.members[0].g.suite, st: tg.members[0].g.st}
	return forgeMessage(t, relay, &c, x.sig, true, m.PublicMessage.Auth.ConfirmationTag)
}

func inline(ps ...Proposal) []ProposalOrRef {
	var out []ProposalOrRef
	for i := range ps {
		out = append(out, ProposalOrRef{Proposal: &ps[i]})
	}
	return out
}

// plant puts p from sender into g's proposal cache (as if arrival
// validation had let it through) and returns its reference.
func plant(g *Group, p *Proposal, sender Sender) ProposalOrRef {
	ref := ProposalRef{0xee, byte(len(g.st.proposals))}
	g.st.proposals = append(g.st.proposals, cachedProposal{ref: ref, p: p, sender: sender})
	return ProposalOrRef{Reference: ref}
}

func TestCommitProposalListRules(t *testing.T) {
	const policyExt = ExtensionType(0xff0a)
	type env struct {
		tg                     *testGroup
		committer, recv, other *testClient
		nh                     int
	}
	newKP := func(e *env, name string) KeyPackage { return *newTestClient(t, e.tg.cs, name).kp }
	gce := func(exts ...Extension) Proposal {
		return Proposal{Type: ProposalTypeGroupContextExtensions, GroupContextExtensions: &GroupContextExtensions{Extensions: exts}}
	}
	rm := func(l uint32) Proposal { return Proposal{Type: ProposalTypeRemove, Remove: &Remove{Removed: l}} }
	add := func(kp KeyPackage) Proposal { return Proposal{Type: ProposalTypeAdd, Add: &Add{KeyPackage: kp}} }
	psk := func(id PreSharedKeyID) Proposal {
		return Proposal{Type: ProposalTypePSK, PreSharedKey: &PreSharedKey{PSK: id}}
	}
	reinit := func(v ProtocolVersion, cs CipherSuite) Proposal {
		return Proposal{Type: ProposalTypeReInit, ReInit: &ReInit{GroupID: []byte("new"), Version: v, CipherSuite: cs}}
	}
	// otherUpdate is a fresh Update LeafNode of e.other, changed by mod
	// before it is signed.
	otherUpdate := func(e *env, newKey bool) *Proposal {
		ln := *e.other.g.st.tree.leaf(LeafIndex(e.other.g.LeafIndex()))
		if newKey {
			_, pub, err := e.tg.members[0].g.suite.GenerateHPKEKey()
			if err != nil {
				t.Fatal(err)
			}
			ln.EncryptionKey = HPKEPublicKey(pub)
		}
		ln.Source, ln.Lifetime, ln.ParentHash = LeafNodeSourceUpdate, nil, nil
		if err := ln.Sign(e.tg.cs, e.other.sig, e.other.g.GroupID(), e.other.g.LeafIndex()); err != nil {
			t.Fatal(err)
		}
		return &Proposal{Type: ProposalTypeUpdate, Update: &Update{LeafNode: ln}}
	}
	fromOther := func(e *env) Sender { return Sender{Type: SenderTypeMember, Index: e.other.g.LeafIndex()} }
	pskID := func(e *env, n int) PreSharedKeyID {
		return PreSharedKeyID{Type: PSKTypeExternal, PSKID: []byte("k"), Nonce: make([]byte, n)}
	}

	cases := []struct {
		name   string
		make   func(e *env) []byte
		reason string // ProposalError.Reason prefix
		index  int
		want   error // also required, if set
	}{
		{"two GroupContextExtensions", func(e *env) []byte {
			return commitWithList(t, e.committer, inline(gce(), gce()), false)
		}, "more than one GroupContextExtensions proposal", 1, nil},
		{"two Adds of one client", func(e *env) []byte {
			kp := newKP(e, "x")
			return commitWithList(t, e.committer, inline(add(kp), add(kp)), false)
		}, "two Adds of the same client", 1, nil},
		{"Update after a Remove of its leaf", func(e *env) []byte {
			ref := plant(e.recv.g, otherUpdate(e, true), fromOther(e))
			return commitWithList(t, e.committer, append(inline(rm(e.other.g.LeafIndex())), ref), false)
		}, "two Updates or Removes of one leaf", 1, nil},
		{"two Removes of one leaf", func(e *env) []byte {
			l := e.other.g.LeafIndex()
			return commitWithList(t, e.committer, inline(rm(l), rm(l)), false)
		}, "two Updates or Removes of one leaf", 1, nil},
		{"two PreSharedKeys of one PSK", func(e *env) []byte {
			return commitWithList(t, e.committer, inline(psk(pskID(e, e.nh)), psk(pskID(e, e.nh))), false)
		}, "two PreSharedKey proposals for one PSK", 1, nil},
		{"ReInit with another proposal", func(e *env) []byte {
			return commitWithList(t, e.committer, inline(add(newKP(e, "x")), reinit(ProtocolVersionMLS10, e.tg.cs)), false)
		}, "ReInit together with other proposals", 1, nil},
		{"Add of a member", func(e *env) []byte {
			return commitWithList(t, e.committer, inline(add(*e.other.kp)), false)
		}, "Add of a client already in the group", 0, nil},
		{"refused by policy", func(e *env) []byte {
			e.recv.g.cfg.Policy = PolicyFunc(func(_ *GroupContext, _ Sender, _ *LeafNode, p *Proposal) error {
				if p.Type == ProposalTypeRemove {
					return errors.New("no removes")
				}
				return nil
			})
			return commitWithList(t, e.committer, inline(rm(e.other.g.LeafIndex())), false)
		}, "refused by policy", 0, ErrPolicy},
		{"Update from an external sender", func(e *env) []byte {
			ref := plant(e.recv.g, otherUpdate(e, true), Sender{Type: SenderTypeExternal})
			return commitWithList(t, e.committer, []ProposalOrRef{ref}, false)
		}, "external sender may not propose", 0, nil},
		{"new member proposal without a policy", func(e *env) []byte {
			ref := plant(e.recv.g, &Proposal{Type: ProposalTypeAdd, Add: &Add{KeyPackage: newKP(e, "x")}}, Sender{Type: SenderTypeNewMemberProposal})
			return commitWithList(t, e.committer, []ProposalOrRef{ref}, false)
		}, "new member proposal without a policy", 0, ErrPolicy},
		{"invalid KeyPackage", func(e *env) []byte {
			kp := newKP(e, "x")
			kp.Signature = append([]byte(nil), kp.Signature...)
			kp.Signature[0] ^= 1
			return commitWithList(t, e.committer, inline(add(kp)), false)
		}, "invalid KeyPackage", 0, ErrInvalidKeyPackage},
		{"Update by the committer", func(e *env) []byte {
			return commitWithList(t, e.committer, inline(*otherUpdate(e, true)), false)
		}, "Update by the committer", 0, nil},
		{"Update from a blank leaf", func(e *env) []byte {
			ref := plant(e.recv.g, otherUpdate(e, true), Sender{Type: SenderTypeMember, Index: 5})
			return commitWithList(t, e.committer, []ProposalOrRef{ref}, false)
		}, "Update from a blank leaf", 0, nil},
		{"Update with an invalid LeafNode", func(e *env) []byte {
			p := otherUpdate(e, true)
			p.Update.LeafNode.Signature[0] ^= 1
			ref := plant(e.recv.g, p, fromOther(e))
			return commitWithList(t, e.committer, []ProposalOrRef{ref}, false)
		}, "invalid LeafNode in Update", 0, nil},
		{"Update keeping the encryption key", func(e *env) []byte {
			ref := plant(e.recv.g, otherUpdate(e, false), fromOther(e))
			return commitWithList(t, e.committer, []ProposalOrRef{ref}, false)
		}, "Update keeps the leaf's encryption key", 0, nil},
		{"Remove of a blank leaf", func(e *env) []byte {
			return commitWithList(t, e.committer, inline(rm(6)), false)
		}, "Remove of a blank leaf", 0, nil},
		{"Remove of the committer", func(e *env) []byte {
			return commitWithList(t, e.committer, inline(rm(e.committer.g.LeafIndex())), false)
		}, "Remove of the committer", 0, nil},
		{"psk_nonce of the wrong length", func(e *env) []byte {
			return commitWithList(t, e.committer, inline(psk(pskID(e, e.nh-1))), false)
		}, "psk_nonce not KDF.Nh bytes", 0, nil},
		{"reinit resumption PSK", func(e *env) []byte {
			id := PreSharedKeyID{Type: PSKTypeResumption, Usage: ResumptionPSKUsageReInit, PSKGroupID: e.recv.g.GroupID(), Nonce: make([]byte, e.nh)}
			return commitWithList(t, e.committer, inline(psk(id)), false)
		}, "PreSharedKey proposal with a reinit or branch resumption PSK", 0, nil},
		{"ReInit to an older version", func(e *env) []byte {
			return commitWithList(t, e.committer, inline(reinit(0, e.tg.cs)), false)
		}, "ReInit to an older protocol version", 0, nil},
		{"ReInit to a disallowed suite", func(e *env) []byte {
			e.recv.g.cfg.AllowedCipherSuites = []CipherSuite{e.tg.cs}
			return commitWithList(t, e.committer, inline(reinit(ProtocolVersionMLS10, testSuites[1])), false)
		}, "ReInit cipher suite", 0, ErrPolicy},
		{"ReInit without a required extension", func(e *env) []byte {
			e.recv.g.cfg.RequiredGroupExtensions = []ExtensionType{policyExt}
			return commitWithList(t, e.committer, inline(reinit(ProtocolVersionMLS10, e.tg.cs)), false)
		}, "ReInit extensions", 0, ErrPolicy},
		{"ExternalInit in a regular Commit", func(e *env) []byte {
			return commitWithList(t, e.committer, inline(Proposal{Type: ProposalTypeExternalInit, ExternalInit: &ExternalInit{KEMOutput: []byte{1}}}), false)
		}, "ExternalInit in a regular commit", 0, nil},
		{"GroupContextExtensions without a required extension", func(e *env) []byte {
			e.recv.g.cfg.RequiredGroupExtensions = []ExtensionType{policyExt}
			return commitWithList(t, e.committer, inline(gce()), false)
		}, "GroupContextExtensions", 0, ErrPolicy},
		{"malformed required_capabilities", func(e *env) []byte {
			return commitWithList(t, e.committer, inline(gce(Extension{Type: ExtensionTypeRequiredCapabilities, Data: []byte{0xff}})), false)
		}, "malformed required_capabilities", 0, nil},
		{"malformed external_senders", func(e *env) []byte {
			return commitWithList(t, e.committer, inline(gce(Extension{Type: ExtensionTypeExternalSenders, Data: []byte{0xff}})), false)
		}, "malformed external_senders", 0, nil},
		{"external_senders credential refused", func(e *env) []byte {
			e.recv.g.cfg.Credentials = CredentialValidatorFunc(func(c Credential, _ SignaturePublicKey) error {
				if string(c.Identity) == "relay" {
					return errors.New("not a known relay")
				}
				return nil
			})
			es, err := ExternalSenders{{SignatureKey: e.other.kp.LeafNode.SignatureKey, Credential: Credential{Type: CredentialTypeBasic, Identity: []byte("relay")}}}.Encode()
			if err != nil {
				t.Fatal(err)
			}
			return commitWithList(t, e.committer, inline(gce(Extension{Type: ExtensionTypeExternalSenders, Data: es})), false)
		}, "external_senders credential", 0, ErrInvalidCredential},
		{"new extensions a member does not support", func(e *env) []byte {
			rc, err := (&RequiredCapabilities{ExtensionTypes: []ExtensionType{0xff33}}).Encode()
			if err != nil {
				t.Fatal(err)
			}
			return commitWithList(t, e.committer, inline(gce(Extension{Type: ExtensionTypeRequiredCapabilities, Data: rc})), false)
		}, "member 0 does not support the new GroupContext extensions", 0, nil},
		{"Add with a credential type members do not support", func(e *env) []byte {
			x := newTestClient(t, e.tg.cs, "x509")
			kp, _, err := NewKeyPackage(KeyPackageOptions{
				CipherSuite: e.tg.cs, SignatureKey: x.sig,
				Credential:   Credential{Type: CredentialTypeX509, Certificates: [][]byte{{1, 2, 3}}},
				Capabilities: Capabilities{Credentials: []CredentialType{CredentialTypeBasic, CredentialTypeX509}},
				Lifetime:     *x.kp.LeafNode.Lifetime,
			})
			if err != nil {
				t.Fatal(err)
			}
			return commitWithList(t, e.committer, inline(add(*kp)), false)
		}, "Add with a credential type not supported by every member", 0, ErrLeafNodeValidation},
		{"Update to a credential type members do not support", func(e *env) []byte {
			p := otherUpdate(e, true)
			ln := &p.Update.LeafNode
			ln.Credential = Credential{Type: CredentialTypeX509, Certificates: [][]byte{{1, 2, 3}}}
			ln.Capabilities.Credentials = []CredentialType{CredentialTypeBasic, CredentialTypeX509}
			if err := ln.Sign(e.tg.cs, e.other.sig, e.other.g.GroupID(), e.other.g.LeafIndex()); err != nil {
				t.Fatal(err)
			}
			ref := plant(e.recv.g, p, fromOther(e))
			return commitWithList(t, e.committer, []ProposalOrRef{ref}, false)
		}, "Update with a credential type not supported by every member", 0, ErrLeafNodeValidation},
		{"external Commit by reference", func(e *env) []byte {
			ref := plant(e.recv.g, &Proposal{Type: ProposalTypeRemove, Remove: &Remove{Removed: e.other.g.LeafIndex()}}, fromOther(e))
			return externalCommitWithList(t, e.tg, func(o []ProposalOrRef) []ProposalOrRef { return append(o, ref) })
		}, "external commit refers to a proposal by reference", 1, nil},
		{"external Commit with an Add", func(e *env) []byte {
			return externalCommitWithList(t, e.tg, func(o []ProposalOrRef) []ProposalOrRef { return append(o, inline(add(newKP(e, "x")))...) })
		}, "external commit with a proposal other than ExternalInit, Remove and PreSharedKey", 1, nil},
		{"external Commit without ExternalInit", func(e *env) []byte {
			return externalCommitWithList(t, e.tg, func([]ProposalOrRef) []ProposalOrRef { return nil })
		}, "external commit without exactly one ExternalInit", -1, nil},
		{"external Commit with two Removes", func(e *env) []byte {
			return externalCommitWithList(t, e.tg, func(o []ProposalOrRef) []ProposalOrRef {
				return append(o, inline(rm(e.other.g.LeafIndex()), rm(e.committer.g.LeafIndex()))...)
			})
		}, "external commit with more than one Remove", -1, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tg := newTestGroup(t, testSuites[0], 3)
			e := &env{tg: tg, committer: tg.member(0), recv: tg.member(1), other: tg.member(2), nh: tg.members[0].g.suite.Nh()}
			msg := c.make(e)
			err := wantUnchanged(t, e.recv.g, c.name, func() error { _, err := e.recv.g.Process(msg); return err })
			var pe *ProposalError
			if !errors.As(err, &pe) || !strings.HasPrefix(pe.Reason, c.reason) || pe.Index != c.index {
				t.Fatalf("got %v, want proposal %d: %s", err, c.index, c.reason)
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

// TestCommitWithoutRequiredPath: a Commit covering a Remove without an
// UpdatePath (§12.4) is refused with ErrPathRequired.
func TestCommitWithoutRequiredPath(t *testing.T) {
	tg := newTestGroup(t, testSuites[0], 3)
	c, recv, other := tg.member(0), tg.member(1), tg.member(2)
	msg := commitWithList(t, c, inline(Proposal{Type: ProposalTypeRemove, Remove: &Remove{Removed: other.g.LeafIndex()}}), true)
	err := wantUnchanged(t, recv.g, "no path", func() error { _, err := recv.g.Process(msg); return err })
	if !errors.Is(err, ErrPathRequired) {
		t.Fatal(err)
	}
}

// TestCommitUnsupportedInlineProposal: a proposal type the package does
// not implement cannot arrive (the decoder refuses it) but can be given
// to Commit inline: the Commit is refused with ErrUnsupported, the group
// unchanged.
func TestCommitUnsupportedInlineProposal(t *testing.T) {
	tg := newTestGroup(t, testSuites[0], 2)
	g := tg.members[0].g
	err := wantUnchanged(t, g, "custom proposal", func() error {
		_, err := g.Commit(CommitOptions{Proposals: []Proposal{{Type: ProposalType(0x7777)}}})
		return err
	})
	var pe *ProposalError
	if !errors.As(err, &pe) || pe.Reason != "unsupported proposal type" || !errors.Is(err, ErrUnsupported) {
		t.Fatal(err)
	}
}
