package badgermailbox

import (
	"context"
	"io"
	"log/slog"
	"testing"

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
