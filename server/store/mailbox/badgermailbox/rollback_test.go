package badgermailbox

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/server/store/mailbox"
	"github.com/moat-im/moat/server/store/mailbox/mailboxtest"
)

// copyDir copies the regular files of src into a new directory dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == "LOCK" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestT40RollbackDetected restores the store from an old backup and
// checks that a device holding a signed head from before the restore
// refuses the restored relay's heads, and that its ack beyond the
// restored head is refused.
func TestT40RollbackDetected(t *testing.T) {
	ctx := context.Background()
	clock := mailboxtest.NewClock()
	relayKey, err := keys.NewRelaySigningKeyFromSeed(bytes.Repeat([]byte{40}, 32))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "data")
	backup := filepath.Join(t.TempDir(), "backup")
	opts := testOptions(dir, mailboxtest.Config{Now: clock.Now})
	mb := mailboxtest.Box(40)
	s := openTest(t, opts)
	for i := range 5 {
		if _, err := s.Enqueue(ctx, mb, mailboxtest.Msg(mb, i, 0, 100, clock.Now(), time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	copyDir(t, dir, backup) // the operator's backup

	// Later: more messages; the device fetches and keeps the signed head.
	s = openTest(t, opts)
	for i := 5; i < 9; i++ {
		if _, err := s.Enqueue(ctx, mb, mailboxtest.Msg(mb, i, 0, 100, clock.Now(), time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	p, err := s.Fetch(ctx, mb, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	seen, err := mailbox.SignHead(relayKey, mb, p.Head, p.Acked, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := seen.Verify(relayKey.Public()); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// The relay is restored from the backup.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	copyDir(t, backup, dir)
	clock.Advance(time.Minute)
	s = openTest(t, opts)
	defer s.Close()
	p2, err := s.Fetch(ctx, mb, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	next, err := mailbox.SignHead(relayKey, mb, p2.Head, p2.Acked, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := next.Verify(relayKey.Public()); err != nil {
		t.Fatal(err)
	}
	if err := mailbox.CheckProgress(seen, next); !errors.Is(err, mailbox.ErrRollback) {
		t.Fatalf("head %d after %d: CheckProgress = %v, want ErrRollback", next.Head, seen.Head, err)
	}
	// The device's cursor is past the restored head: its ack is refused.
	if err := s.Ack(ctx, mb, seen.Head); !errors.Is(err, mailbox.ErrBeyondHead) {
		t.Fatalf("ack at the old head after the restore: %v", err)
	}
	// A head signed with a rewound clock is refused too.
	old, _ := mailbox.SignHead(relayKey, mb, seen.Head, seen.Acked, clock.Now().Add(-time.Hour))
	if err := mailbox.CheckProgress(seen, old); !errors.Is(err, mailbox.ErrRollback) {
		t.Fatalf("a head signed earlier: %v", err)
	}
}
