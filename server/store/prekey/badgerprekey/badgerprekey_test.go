package badgerprekey_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/moat-im/moat/server/store/prekey"
	"github.com/moat-im/moat/server/store/prekey/badgerprekey"
	"github.com/moat-im/moat/server/store/prekey/prekeytest"
)

func open(t *testing.T, dir string, maxPool int) prekey.Store {
	s, err := badgerprekey.Open(context.Background(), badgerprekey.Options{
		Dir: dir, MaxPool: maxPool, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	prekeytest.Run(t, func(t *testing.T, maxPool int) prekey.Store { return open(t, t.TempDir(), maxPool) })
}

func TestDurable(t *testing.T) {
	dir := t.TempDir()
	prekeytest.RunDurable(t, func(t *testing.T) prekey.Store { return open(t, dir, 0) })
}
