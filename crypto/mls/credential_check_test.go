package mls

// The credential hook beyond leaf validation (RFC 9420 §5.3.1): the
// credentials of external_senders, and the successor rule when a member's
// leaf is replaced.

import (
	"errors"
	"sync"
	"testing"
)

func externalSendersExt(t *testing.T, identity string, key SignaturePublicKey) Extension {
	t.Helper()
	data, err := ExternalSenders{{SignatureKey: key, Credential: Credential{Type: CredentialTypeBasic, Identity: []byte(identity)}}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return Extension{Type: ExtensionTypeExternalSenders, Data: data}
}

// refuseIdentity is a CredentialValidator that refuses one identity.
func refuseIdentity(id string) CredentialValidatorFunc {
	return func(c Credential, _ SignaturePublicKey) error {
		if string(c.Identity) == id {
			return errors.New("unknown to the directory")
		}
		return nil
	}
}

// TestExternalSendersCredentials: the credentials of an external_senders
// extension go through the credential hook when a group is created with
// it, when a member joins (Welcome or external Commit) a group that has
// it, and when a GroupContextExtensions proposal sets it (arrival and
// Commit cases are in TestReceivedProposalValidation and
// TestCommitProposalListRules).
func TestExternalSendersCredentials(t *testing.T) {
	cs := testSuites[0]
	relay := newTestClient(t, cs, "relay")
	ext := externalSendersExt(t, "relay", relay.kp.LeafNode.SignatureKey)

	c := newTestClient(t, cs, "creator")
	c.cfg.Credentials = refuseIdentity("relay")
	if _, err := NewGroup(c.cfg, c.kp, c.kps, c.sig, NewGroupOptions{Extensions: Extensions{ext}}); !errors.Is(err, ErrInvalidCredential) {
		t.Fatalf("NewGroup with a refused external sender: %v", err)
	}
	c.cfg.Credentials = acceptAllCredentials
	g, err := NewGroup(c.cfg, c.kp, c.kps, c.sig, NewGroupOptions{Extensions: Extensions{ext}})
	if err != nil {
		t.Fatal(err)
	}
	c.g = g

	j := newTestClient(t, cs, "joiner")
	res, err := c.g.Commit(CommitOptions{Add: []*KeyPackage{j.kp}, GroupInfo: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.g.Process(res.Message); err != nil {
		t.Fatal(err)
	}
	j.cfg.Credentials = refuseIdentity("relay")
	if _, err := Join(j.cfg, res.Welcome, j.kp, j.kps, j.sig, JoinOptions{RatchetTree: c.g.RatchetTree()}); !errors.Is(err, ErrInvalidCredential) {
		t.Fatalf("Join with a refused external sender: %v", err)
	}
	j.cfg.Credentials = acceptAllCredentials
	if _, err := Join(j.cfg, res.Welcome, j.kp, j.kps, j.sig, JoinOptions{RatchetTree: c.g.RatchetTree()}); err != nil {
		t.Fatalf("Join: %v", err)
	}
	gi, err := c.g.GroupInfo(true)
	if err != nil {
		t.Fatal(err)
	}
	x := newTestClient(t, cs, "external")
	x.cfg.Credentials = refuseIdentity("relay")
	if _, _, err := ExternalJoin(x.cfg, gi, &x.kp.LeafNode, x.sig, ExternalJoinOptions{RatchetTree: c.g.RatchetTree()}); !errors.Is(err, ErrInvalidCredential) {
		t.Fatalf("ExternalJoin with a refused external sender: %v", err)
	}
	x.cfg.Credentials = acceptAllCredentials
	if _, _, err := ExternalJoin(x.cfg, gi, &x.kp.LeafNode, x.sig, ExternalJoinOptions{RatchetTree: c.g.RatchetTree()}); err != nil {
		t.Fatalf("ExternalJoin: %v", err)
	}
}

// successorCheck is a CredentialValidator with the successor extension:
// a new credential must name the same identity as the old one. It records
// its calls outside the Group (state fingerprints follow pointers but not
// functions).
type successorCheck struct {
	f func(old, new Credential) error
}

func newSuccessorCheck() (*successorCheck, *[][2]string) {
	var mu sync.Mutex
	calls := new([][2]string)
	return &successorCheck{f: func(old, new Credential) error {
		mu.Lock()
		*calls = append(*calls, [2]string{string(old.Identity), string(new.Identity)})
		mu.Unlock()
		if string(old.Identity) != string(new.Identity) {
			return errors.New("not the same user and device")
		}
		return nil
	}}, calls
}

func (s *successorCheck) ValidateCredential(Credential, SignaturePublicKey) error { return nil }

func (s *successorCheck) ValidateSuccessor(old, new Credential, _ SignaturePublicKey) error {
	return s.f(old, new)
}

// TestCredentialSuccessor: an Update proposal whose credential is no
// successor of the leaf's is refused, state unchanged; a valid Update and
// a Commit's UpdatePath leaf reach the hook with the old and the new
// credential; a hook that refuses the committer's new leaf fails the
// Commit, state unchanged.
func TestCredentialSuccessor(t *testing.T) {
	tg := newTestGroup(t, testSuites[0], 3)
	recv, other, committer := tg.member(0), tg.member(1), tg.member(2)
	sc, calls := newSuccessorCheck()
	recv.g.cfg.Credentials = sc

	// An Update presenting another identity.
	ln := *other.g.st.tree.leaf(LeafIndex(other.g.LeafIndex()))
	_, pub, err := other.g.suite.GenerateHPKEKey()
	if err != nil {
		t.Fatal(err)
	}
	ln.EncryptionKey = HPKEPublicKey(pub)
	ln.Credential = Credential{Type: CredentialTypeBasic, Identity: []byte("mallory")}
	ln.Source, ln.Lifetime, ln.ParentHash = LeafNodeSourceUpdate, nil, nil
	if err := ln.Sign(tg.cs, other.sig, other.g.GroupID(), other.g.LeafIndex()); err != nil {
		t.Fatal(err)
	}
	msg := proposalFrom(t, other, &Proposal{Type: ProposalTypeUpdate, Update: &Update{LeafNode: ln}})
	err = wantUnchanged(t, recv.g, "Update with another identity", func() error { _, err := recv.g.Process(msg); return err })
	if !errors.Is(err, ErrInvalidCredential) || !errors.Is(err, ErrInvalidProposal) {
		t.Fatalf("Update with another identity: %v", err)
	}
	if len((*calls)) != 1 || (*calls)[0] != [2]string{"m1", "mallory"} {
		t.Fatalf("successor hook calls %q", (*calls))
	}

	// A genuine Update.
	msg, err = other.g.ProposeUpdate()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := recv.g.Process(msg); err != nil {
		t.Fatal(err)
	}
	if len((*calls)) != 2 || (*calls)[1] != [2]string{"m1", "m1"} {
		t.Fatalf("successor hook calls %q", (*calls))
	}
	recv.g.DiscardProposals()

	// A Commit's UpdatePath leaf: refused, then accepted.
	res, err := committer.g.Commit(CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	refuseAll := &refusingSuccessor{}
	recv.g.cfg.Credentials = refuseAll
	err = wantUnchanged(t, recv.g, "refused committer leaf", func() error { _, err := recv.g.Process(res.Message); return err })
	if !errors.Is(err, ErrInvalidCredential) {
		t.Fatalf("refused committer leaf: %v", err)
	}
	recv.g.cfg.Credentials = sc
	if _, err := recv.g.Process(res.Message); err != nil {
		t.Fatal(err)
	}
	if last := (*calls)[len((*calls))-1]; last != [2]string{"m2", "m2"} {
		t.Fatalf("successor hook calls %q", (*calls))
	}
}

type refusingSuccessor struct{}

func (refusingSuccessor) ValidateCredential(Credential, SignaturePublicKey) error { return nil }
func (refusingSuccessor) ValidateSuccessor(Credential, Credential, SignaturePublicKey) error {
	return errors.New("revoked device")
}
