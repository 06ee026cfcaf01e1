package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/moat-im/moat/internal/atomicfile"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/moat-im/moat/crypto/tlog"
)

// maxRecordSize bounds a stored record: the witness record of
// docs/spec/tlog.md holds a checkpoint of at most 2^24-1 bytes.
const maxRecordSize = 1 << 25

// fileStore is a tlog.WitnessStore that keeps each log's record in its own
// file, dir/hex(SHA-256(origin)). Updates are durable before
// CompareAndSwap returns: a temporary file is written and synced, renamed
// over the record, and the directory synced.
//
// Compare-and-swap is atomic among the goroutines of one process (a
// mutex); serve holds an exclusive lock on the witness directory so that
// no other process writes the same files.
type fileStore struct {
	dir string
	mu  sync.Mutex
}

// openFileStore opens (creating it 0700 if needed) a store in dir and
// removes temporary files a crash may have left.
func openFileStore(dir string) (*fileStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), atomicfile.TempPrefix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return nil, err
			}
		}
	}
	return &fileStore{dir: dir}, nil
}

// originFile is the record file name of origin: a fixed-length name that
// needs no escaping, and that the monitoring URL also uses.
func originFile(origin string) string {
	h := sha256.Sum256([]byte(origin))
	return hex.EncodeToString(h[:])
}

// Load implements tlog.WitnessStore.
func (s *fileStore) Load(ctx context.Context, origin string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.read(origin)
}

func (s *fileStore) read(origin string) ([]byte, error) {
	f, err := os.Open(filepath.Join(s.dir, originFile(origin)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRecordSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) == 0 || len(b) > maxRecordSize {
		return nil, fmt.Errorf("witness record of %q: bad file size %d", origin, len(b))
	}
	return b, nil
}

// CompareAndSwap implements tlog.WitnessStore.
func (s *fileStore) CompareAndSwap(ctx context.Context, origin string, old, new []byte) error {
	if len(new) == 0 || len(new) > maxRecordSize {
		return fmt.Errorf("witness record of %d bytes", len(new))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.read(origin)
	if err != nil {
		return err
	}
	if (cur == nil) != (old == nil) || !bytes.Equal(cur, old) {
		return fmt.Errorf("%w: %q", tlog.ErrRecordChanged, origin)
	}
	return atomicfile.WriteFile(filepath.Join(s.dir, originFile(origin)), new, 0o600)
}
