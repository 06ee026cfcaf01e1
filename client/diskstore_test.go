package client_test

import (
	"bytes"
	"context"
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

// TestSealedDiskStore runs two devices on the sealed disk store
// (client/localstore): a conversation, a restart of Bob's device from its
// files, a delete for everyone, and no message text in clear in any file.
func TestSealedDiskStore(t *testing.T) {
	s := clienttest.New(t)
	ctx := context.Background()
	alice, bob := s.AddUser("Alice"), s.AddUser("Bob")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	open := func(dir string) *localstore.DB {
		t.Helper()
		kf := filepath.Join(dir, "key")
		if _, err := os.Stat(kf); err != nil {
			ok(t, os.MkdirAll(dir, 0o700))
			ok(t, localstore.CreateKeyFile(kf))
		}
		db, err := localstore.Open(filepath.Join(dir, "db"), localstore.Options{KeyFile: kf, Logger: quiet})
		ok(t, err)
		return db
	}
	da, db := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	sa, sb := open(da), open(db)
	defer func() { sa.Close() }()
	a, err := client.Enrol(ctx, s.Config(), sa, s.IssueCode(alice))
	ok(t, err)
	b, err := client.Enrol(ctx, s.Config(), sb, s.IssueCode(bob))
	ok(t, err)
	s.Publish()

	secret := "a sentence nobody should find on disk"
	id, err := a.SendText(ctx, bob, secret)
	ok(t, err)
	ok(t, b.Sync(ctx))
	ok(t, b.Close())
	ok(t, sb.Close())

	sb = open(db)
	defer func() { sb.Close() }()
	b, err = client.Open(ctx, s.Config(), sb)
	ok(t, err)
	defer b.Close()
	h, err := b.History(alice, 0)
	ok(t, err)
	if len(h) != 1 || h[0].Text != secret {
		t.Fatalf("history after reopening: %+v", h)
	}
	_, err = b.SendText(ctx, alice, "reply after a restart")
	ok(t, err)
	ok(t, a.Sync(ctx))
	if h, _ := a.History(bob, 0); len(h) != 2 {
		t.Fatalf("Alice's history: %+v", h)
	}
	_, err = a.Send(ctx, bob, client.Message{Kind: client.KindDelete, Target: id})
	ok(t, err)
	ok(t, b.Sync(ctx))
	if h, _ := b.History(alice, 0); len(h) != 1 {
		t.Fatalf("after delete: %+v", h)
	}
	for _, dir := range []string{da, db} {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err == nil && bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s holds the message text in clear", p)
			}
			return nil
		})
	}
}
