package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/moat-im/moat/client"
	"github.com/moat-im/moat/client/clienttest"
	"github.com/moat-im/moat/client/localstore"
)

// TestDeleteMessageAndConversation: DeleteMessage removes one message of
// this device's history, DeleteConversation all of a conversation's; the
// peer keeps its copies, the conversation goes on, and unknown ids are
// refused.
func TestDeleteMessageAndConversation(t *testing.T) {
	s, alice, bob, a, b := twoUsers(t)
	ctx := context.Background()
	var ids []client.MessageID
	for _, m := range []string{"one", "two", "three"} {
		id, err := a.SendText(ctx, bob, m)
		ok(t, err)
		ids = append(ids, id)
	}
	ok(t, b.Sync(ctx))
	ok(t, b.DeleteMessage(alice, ids[1]))
	if err := b.DeleteMessage(alice, ids[1]); !errors.Is(err, client.ErrUnknownMessage) {
		t.Fatalf("deleting twice: %v", err)
	}
	if err := b.DeleteMessage(bob, ids[0]); !errors.Is(err, client.ErrUnknownMessage) {
		t.Fatalf("deleting from the wrong conversation: %v", err)
	}
	h := history(t, b, alice)
	if len(h) != 2 || h[0].Text != "one" || h[1].Text != "three" {
		t.Fatalf("history after DeleteMessage: %+v", h)
	}
	if r, _ := b.Search("two"); len(r) != 0 {
		t.Fatalf("search finds the deleted message: %+v", r)
	}
	n, err := b.DeleteConversation(alice)
	ok(t, err)
	if n != 2 || len(history(t, b, alice)) != 0 {
		t.Fatalf("DeleteConversation deleted %d, left %+v", n, history(t, b, alice))
	}
	if cs, _ := b.Conversations(); len(cs) != 0 {
		t.Fatalf("conversations after DeleteConversation: %v", cs)
	}
	if len(history(t, a, bob)) != 3 {
		t.Fatal("the peer lost its copies")
	}
	// The conversation goes on.
	_, err = a.SendText(ctx, bob, "four")
	ok(t, err)
	ok(t, b.Sync(ctx))
	if h := history(t, b, alice); len(h) != 1 || h[0].Text != "four" {
		t.Fatalf("history after a new message: %+v", h)
	}
	_ = s
}

// copyFiles copies every file under src to dst, as an attacker copying
// the disk would.
func copyFiles(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	ok(t, err)
}

// TestDeleteConversationErases: after DeleteMessage and
// DeleteConversation on the sealed disk store, an attacker with a copy of
// every file and the key file, who also kept the record files from before
// the deletion (where the sealed messages certainly still are), opens
// none of the deleted messages with the key table as it is after the
// deletion, while the messages not deleted still open
// (docs/spec/client-store.md §Erasure).
func TestDeleteConversationErases(t *testing.T) {
	s := clienttest.New(t)
	ctx := context.Background()
	alice, bob, carol := s.AddUser("Alice"), s.AddUser("Bob"), s.AddUser("Carol")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	root := t.TempDir()
	kf := filepath.Join(root, "key")
	ok(t, localstore.CreateKeyFile(kf))
	open := func(dir string) *localstore.DB {
		t.Helper()
		db, err := localstore.Open(dir, localstore.Options{KeyFile: kf, Logger: quiet})
		ok(t, err)
		return db
	}
	dir := filepath.Join(root, "bob")
	sb := open(dir)
	b, err := client.Enrol(ctx, s.Config(), sb, s.IssueCode(bob))
	ok(t, err)
	a := enrol(t, s, alice, nil)
	c := enrol(t, s, carol, nil)
	s.Publish()
	texts := map[client.UserID][]string{
		alice: {"alice secret one", "alice secret two", "alice secret three"},
		carol: {"carol doomed message", "carol kept message"},
	}
	var carolIDs []client.MessageID
	for _, m := range texts[alice] {
		_, err := a.SendText(ctx, bob, m)
		ok(t, err)
	}
	for _, m := range texts[carol] {
		id, err := c.SendText(ctx, bob, m)
		ok(t, err)
		carolIDs = append(carolIDs, id)
	}
	ok(t, b.Sync(ctx))
	ok(t, b.Close())
	ok(t, sb.Close())
	before := filepath.Join(root, "before")
	copyFiles(t, dir, before)

	sb = open(dir)
	b, err = client.Open(ctx, s.Config(), sb)
	ok(t, err)
	ok(t, b.DeleteMessage(carol, carolIDs[0]))
	n, err := b.DeleteConversation(alice)
	ok(t, err)
	if n != 3 {
		t.Fatalf("DeleteConversation deleted %d messages, want 3", n)
	}
	ok(t, b.Close())
	ok(t, sb.Close())

	// The attacker: the record files from before, the key table of now.
	stolen := filepath.Join(root, "stolen")
	copyFiles(t, before, stolen)
	keys, err := os.ReadFile(filepath.Join(dir, "keys"))
	ok(t, err)
	ok(t, os.WriteFile(filepath.Join(stolen, "keys"), keys, 0o600))
	for _, tc := range []struct {
		dir     string
		deleted bool // the deleted messages must not open
	}{{before, false}, {stolen, true}} {
		st := open(tc.dir)
		for _, u := range []client.UserID{alice, carol} {
			var got []string
			var failed int
			err := st.View(func(tx localstore.Tx) error {
				for i := uint64(1); i <= 16; i++ {
					id := []byte{0, 0, 0, 0, 0, 0, 0, byte(i)}
					v, err := tx.Get("", client.MsgKindOf(u), id)
					if errors.Is(err, localstore.ErrNotFound) {
						continue
					}
					if err != nil {
						failed++
						continue
					}
					got = append(got, string(v))
				}
				return nil
			})
			ok(t, err)
			for i, m := range texts[u] {
				deleted := tc.deleted && (u == alice || i == 0)
				found := false
				for _, v := range got {
					found = found || bytes.Contains([]byte(v), []byte(m))
				}
				if found == deleted {
					t.Errorf("%s: %q (deleted %v) opens: %v", filepath.Base(tc.dir), m, deleted, found)
				}
			}
			if !tc.deleted && failed != 0 {
				t.Errorf("%s: %d records of %v do not open", filepath.Base(tc.dir), failed, u)
			}
		}
		ok(t, st.Close())
	}
}
