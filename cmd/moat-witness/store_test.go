package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/crypto/tlog/tlogtest"
)

func TestFileStoreConformance(t *testing.T) {
	tlogtest.TestWitnessStore(t, func(t *testing.T) tlog.WitnessStore {
		s, err := openFileStore(filepath.Join(t.TempDir(), "state"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestFileStoreDurable(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "state")
	s, err := openFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	const origin = "log.example/a b/../c" // any bytes: the file name is a hash
	if err := s.CompareAndSwap(ctx, origin, nil, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := s.CompareAndSwap(ctx, origin, []byte("one"), []byte("two")); err != nil {
		t.Fatal(err)
	}
	// A crash between writing and renaming leaves a temporary file.
	stray := filepath.Join(dir, ".tmp-"+originFile(origin)+"-123")
	if err := os.WriteFile(stray, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}

	s2, err := openFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s2.Load(ctx, origin)
	if err != nil || !bytes.Equal(got, []byte("two")) {
		t.Fatalf("reopened Load = %q, %v", got, err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != originFile(origin) {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("store directory holds %q, want only the record", names)
	}
	fi, _ := os.Stat(filepath.Join(dir, originFile(origin)))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("record mode %v", fi.Mode().Perm())
	}
	if err := s2.CompareAndSwap(ctx, origin, []byte("one"), []byte("three")); !errors.Is(err, tlog.ErrRecordChanged) {
		t.Fatalf("stale CompareAndSwap after reopen: %v", err)
	}
	if err := s2.CompareAndSwap(ctx, origin, []byte("two"), nil); err == nil {
		t.Fatal("empty record accepted")
	}
}
