package fsblob

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/moat-im/moat/server/store/blob"
	"github.com/moat-im/moat/server/store/blob/blobtest"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testOptions(dir string, cfg blobtest.Config) Options {
	return Options{Dir: dir, Limits: cfg.Limits, Now: cfg.Now, Logger: quietLogger(), DiskReserve: -1}
}

func openTest(t testing.TB, opts Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T, cfg blobtest.Config) blob.Store {
		s := openTest(t, testOptions(t.TempDir(), cfg))
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestDurable(t *testing.T) {
	blobtest.RunDurable(t, func(t *testing.T, dir string, cfg blobtest.Config) blob.Store {
		s := openTest(t, testOptions(dir, cfg))
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestStreaming uploads and reads back 64 MiB (2 GiB with MOAT_LONG=1)
// without holding it in memory.
func TestStreaming(t *testing.T) {
	size := int64(64 << 20)
	if os.Getenv("MOAT_LONG") == "1" {
		size = 2 << 30
	}
	s := openTest(t, testOptions(t.TempDir(), blobtest.Config{}))
	defer s.Close()
	blobtest.RunStreaming(t, s, size, 8<<20)
}
