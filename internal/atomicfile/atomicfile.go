// Package atomicfile replaces small files durably: after a crash a file
// holds either its old or its new contents, and after a successful return
// the new contents have been synced to disk. It is used for key files,
// witness state and similar small records that live beside a store.
package atomicfile

import (
	"io/fs"
	"os"
	"path/filepath"
)

// TempPrefix starts the name of every temporary file WriteFile creates, so
// that a program can remove leftovers of an interrupted write at start.
const TempPrefix = ".tmp-"

// WriteFile replaces file with data and mode perm: it writes a temporary
// file in the same directory, syncs it, renames it over file and syncs the
// directory.
func WriteFile(file string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(file)
	f, err := os.CreateTemp(dir, TempPrefix+filepath.Base(file)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
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
	if err := os.Rename(tmp, file); err != nil {
		return err
	}
	// After the rename the new contents are in place; a failing directory
	// sync means only that they may not survive a crash.
	return SyncDir(dir)
}

// SyncDir fsyncs a directory, making renames and creations in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
