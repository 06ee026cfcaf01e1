// Package atomicfile replaces small files durably: after a crash a file
// holds either its old or its new contents, and after a successful return
// the new contents have been synced to disk. It is used for key files,
// witness state and similar small records that live beside a store.
package atomicfile

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"github.com/moat-im/moat/internal/vfs"
)

// TempPrefix starts the name of every temporary file WriteFile creates, so
// that a program can remove leftovers of an interrupted write at start.
const TempPrefix = ".tmp-"

// WriteFile replaces file with data and mode perm: it writes a temporary
// file in the same directory, syncs it, renames it over file and syncs the
// directory.
func WriteFile(file string, data []byte, perm fs.FileMode) error {
	return WriteFileFS(vfs.OS, file, data, perm)
}

// WriteFileFS is WriteFile on fsys.
func WriteFileFS(fsys vfs.FS, file string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(file)
	f, err := createTemp(fsys, dir, TempPrefix+filepath.Base(file)+"-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			fsys.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := fsys.Rename(tmp, file); err != nil {
		return err
	}
	// After the rename the new contents are in place; a failing directory
	// sync means only that they may not survive a crash.
	return vfs.SyncDir(fsys, dir)
}

// createTemp creates a new file in dir whose name starts with prefix, as
// os.CreateTemp does (mode 0600).
func createTemp(fsys vfs.FS, dir, prefix string) (vfs.File, error) {
	for range 100 {
		name := filepath.Join(dir, prefix+strconv.FormatUint(uint64(rand.Uint32()), 10))
		f, err := fsys.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, err
	}
	return nil, &fs.PathError{Op: "createtemp", Path: filepath.Join(dir, prefix+"*"), Err: fs.ErrExist}
}

// SyncDir fsyncs a directory, making renames and creations in it durable.
func SyncDir(dir string) error { return vfs.SyncDir(vfs.OS, dir) }
