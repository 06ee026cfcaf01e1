package localstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/moat-im/moat/internal/atomicfile"
)

// WipeDir destroys the store in dir without its passphrase or key file:
// it overwrites the wrapped table key and every key slot with zeros in
// place, syncs, and removes the directory (docs/spec/client-store.md
// §Wipe). It is for a store that is not open, such as the remote wipe of
// a locked device; an open store is wiped with DB.Wipe. A directory that
// holds no key table is removed all the same.
func WipeDir(dir string) error {
	path := filepath.Join(dir, keyTableName)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("localstore: wiping: %w", err)
	default:
		err = overwrite(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("localstore: wiping: %w", err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("localstore: wiping: %w", err)
	}
	return atomicfile.SyncDir(filepath.Dir(dir))
}

// overwrite zeroes, in place, everything in a key-table file after the
// header's public fields, then syncs it. It does not trust the file's
// contents: the whole file from the wrapped key on is overwritten.
func overwrite(f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	zeros := make([]byte, 64<<10)
	for off := int64(offWrapped); off < st.Size(); off += int64(len(zeros)) {
		n := min(int64(len(zeros)), st.Size()-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return err
		}
	}
	return f.Sync()
}
