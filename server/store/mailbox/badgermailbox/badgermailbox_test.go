package badgermailbox

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/moat-im/moat/server/store/mailbox"
	"github.com/moat-im/moat/server/store/mailbox/mailboxtest"
)

// testMemTable is the smallest memtable the default limits fit.
const testMemTable = 16 << 20

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testOptions(dir string, cfg mailboxtest.Config) Options {
	return Options{Dir: dir, Limits: cfg.Limits, Now: cfg.Now, Logger: quietLogger(), MemTableSize: testMemTable, SweepInterval: -1}
}

func openTest(t testing.TB, opts Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	mailboxtest.Run(t, func(t *testing.T, cfg mailboxtest.Config) mailbox.Store {
		s := openTest(t, testOptions(t.TempDir(), cfg))
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestDurable(t *testing.T) {
	mailboxtest.RunDurable(t, func(t *testing.T, dir string, cfg mailboxtest.Config) mailbox.Store {
		s := openTest(t, testOptions(dir, cfg))
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestOldSchema checks that Open refuses a store of schema 1 with
// ErrOldSchema, every time (the refused Open changes nothing).
func TestOldSchema(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, testOptions(dir, mailboxtest.Config{}))
	rawUpdate(t, s, func(txn *badger.Txn) {
		if err := txn.Set(keySchema, []byte("moat relay mailbox store, badger schema 1")); err != nil {
			t.Fatal(err)
		}
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		_, err := Open(context.Background(), testOptions(dir, mailboxtest.Config{}))
		if !errors.Is(err, ErrOldSchema) || !strings.Contains(err.Error(), "schema 1") {
			t.Fatalf("Open of a schema 1 store: %v, want ErrOldSchema naming it", err)
		}
	}
}
