package mls

import (
	"errors"
	"fmt"
	"testing"

	"github.com/moat-im/moat/crypto/mls/internal/suite"
)

// TestT18InconsistentUpdatePath: an insider's Commit carries a path secret
// for one subtree that does not match the public keys it announces. The
// members of that subtree reject it with a typed error and unchanged
// state; the others cannot tell and accept it. The rejecting member
// recovers by rejoining with an external Commit (resync) from a GroupInfo
// of the new epoch, after which all members agree again.
func TestT18InconsistentUpdatePath(t *testing.T) {
	for _, cs := range testSuites {
		t.Run(fmt.Sprintf("suite%04x", uint16(cs)), func(t *testing.T) {
			tg := newTestGroup(t, cs, 4)
			for _, m := range tg.members {
				m.g.cfg.PublicHandshake = true
			}
			insider := tg.member(0)
			victim := tg.member(1) // the insider's sibling: its own copath node
			s := insider.g.suite
			tamper := func(g *Group, c *Commit, gc []byte) {
				// Node 0 of the path is encrypted to the resolution of the
				// sibling leaf 1: replace it by a valid encryption of a
				// different path secret.
				junk := make([]byte, s.Nh())
				junk[0] = 1
				kem, ct, err := s.EncryptWithLabel(suite.HPKEPublicKey(g.st.tree.leaf(1).EncryptionKey), labelUpdatePathNode, gc, junk)
				if err != nil {
					t.Fatal(err)
				}
				c.Path.Nodes[0].EncryptedPathSecret[0] = HPKECiphertext{KEMOutput: kem, Ciphertext: ct}
			}
			res, err := insider.g.commit(CommitOptions{}, tamper)
			if err != nil {
				t.Fatal(err)
			}
			err = wantUnchanged(t, victim.g, "inconsistent path", func() error { _, err := victim.g.Process(res.Message); return err })
			var te *TreeError
			if !errors.As(err, &te) || !errors.Is(err, ErrPathKeyMismatch) {
				t.Fatalf("victim: %v, want a *TreeError with ErrPathKeyMismatch", err)
			}
			var others []*testClient
			for _, m := range tg.members {
				if m == victim {
					continue
				}
				if _, err := m.g.Process(res.Message); err != nil {
					t.Fatalf("%s: %v", m.name, err)
				}
				others = append(others, m)
			}
			// Recovery: the victim resyncs from another member's GroupInfo.
			gi, err := others[1].g.GroupInfo(true)
			if err != nil {
				t.Fatal(err)
			}
			victim.newKeyPackage(t)
			g, msg, err := ExternalJoin(victim.cfg, gi, &victim.kp.LeafNode, victim.sig,
				ExternalJoinOptions{Resync: true, ResyncLeaf: victim.g.LeafIndex()})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range others {
				if _, err := m.g.Process(msg); err != nil {
					t.Fatalf("%s processing resync: %v", m.name, err)
				}
			}
			victim.g = g
			tg.members = append(others, victim)
			tg.checkAgree()
			tg.commit(victim, CommitOptions{})
		})
	}
}
