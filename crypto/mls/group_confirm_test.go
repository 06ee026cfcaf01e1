package mls

import (
	"errors"
	"fmt"
	"testing"
)

// TestCommitBadConfirmationTag: a Commit with a full UpdatePath, validly
// signed and encrypted by its committer, whose confirmation tag is wrong
// is refused with ErrInvalidConfirmationTag by every other member, each
// left byte-identical (the next epoch's key schedule runs beside the
// path's key pairs and must not leak into the state); the genuine Commit
// is accepted afterwards.
func TestCommitBadConfirmationTag(t *testing.T) {
	for _, cs := range testSuites {
		t.Run(fmt.Sprintf("suite%04x", uint16(cs)), func(t *testing.T) {
			tg := newTestGroup(t, cs, 4)
			committer := tg.member(0)
			res, err := committer.g.Commit(CommitOptions{})
			if err != nil {
				t.Fatal(err)
			}
			content := committer.g.pending.ac.Content
			tag := append([]byte(nil), committer.g.pending.ac.Auth.ConfirmationTag...)
			tag[0] ^= 1
			forged := forgeMessage(t, committer.g, &content, committer.g.sigKey, false, tag)
			for _, m := range tg.members[1:] {
				err := wantUnchanged(t, m.g, "bad confirmation tag", func() error { _, err := m.g.Process(forged); return err })
				if !errors.Is(err, ErrInvalidConfirmationTag) {
					t.Fatalf("%s: %v, want ErrInvalidConfirmationTag", m.name, err)
				}
			}
			tg.deliverCommit(res)
		})
	}
}
