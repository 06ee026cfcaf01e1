// Package faultfs injects storage faults for tests (T38): a full disk
// (ENOSPC) and failing syncs (EIO). An Injector holds the faults to
// inject; stores consult it at their write and sync points (the badger
// mailbox, whose files badger writes itself) or write through FS, a
// vfs.FS that fails as the Injector says (the blob store). A nil
// *Injector injects nothing, so production code passes nil.
package faultfs

import (
	"io/fs"
	"os"
	"sync"
	"syscall"

	"github.com/moat-im/moat/internal/vfs"
)

// An Injector decides which writes and syncs fail. Safe for concurrent use.
type Injector struct {
	mu        sync.Mutex
	budget    int64 // bytes writable before ENOSPC; < 0: unlimited
	syncFails int   // syncs to fail with EIO; < 0: all
	syncSkip  int   // syncs to let succeed before failing
	free      int64 // free bytes to report; < 0: the real figure
	injected  int
}

// New returns an Injector that injects nothing yet.
func New() *Injector { return &Injector{budget: -1, free: -1} }

// SetFull makes every later write fail with ENOSPC (full), or lifts that
// (and any write budget).
func (i *Injector) SetFull(full bool) {
	if full {
		i.SetWriteBudget(0)
	} else {
		i.SetWriteBudget(-1)
	}
}

// SetWriteBudget lets n more bytes be written, then fails writes with
// ENOSPC; n < 0 lifts the limit. A write that crosses the budget writes
// what fits and fails (a short write).
func (i *Injector) SetWriteBudget(n int64) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.budget = n
}

// FailSyncs makes the next n syncs fail with EIO (n < 0: every sync until
// FailSyncs(0)).
func (i *Injector) FailSyncs(n int) { i.FailSyncsAfter(0, n) }

// FailSyncsAfter lets ok syncs succeed, then fails n (n < 0: all).
func (i *Injector) FailSyncsAfter(ok, n int) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.syncSkip, i.syncFails = ok, n
}

// SetFree makes free-space queries report n bytes (n < 0: the real
// figure).
func (i *Injector) SetFree(n int64) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.free = n
}

// Injected returns how many faults the Injector has injected.
func (i *Injector) Injected() int {
	if i == nil {
		return 0
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.injected
}

// Write accounts for a write of n bytes: it returns how many may be
// written, and ENOSPC if that is fewer than n.
func (i *Injector) Write(n int) (int, error) {
	if i == nil {
		return n, nil
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.budget < 0 || int64(n) <= i.budget {
		if i.budget >= 0 {
			i.budget -= int64(n)
		}
		return n, nil
	}
	ok := int(i.budget)
	i.budget = 0
	i.injected++
	return ok, syscall.ENOSPC
}

// Sync returns EIO if this sync is to fail.
func (i *Injector) Sync() error {
	if i == nil {
		return nil
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.syncFails == 0 {
		return nil
	}
	if i.syncSkip > 0 {
		i.syncSkip--
		return nil
	}
	if i.syncFails > 0 {
		i.syncFails--
	}
	i.injected++
	return syscall.EIO
}

// Free returns the free bytes to report: the injected figure, or real's.
func (i *Injector) Free(real func() (uint64, error)) (uint64, error) {
	if i != nil {
		i.mu.Lock()
		free := i.free
		i.mu.Unlock()
		if free >= 0 {
			return uint64(free), nil
		}
	}
	return real()
}

// FS returns a vfs.FS that writes through base and fails as i says:
// writes (and file creation, which needs space) with ENOSPC, syncs with
// EIO.
func FS(base vfs.FS, i *Injector) vfs.FS { return &faultFS{base: base, i: i} }

type faultFS struct {
	base vfs.FS
	i    *Injector
}

func (f *faultFS) OpenFile(name string, flag int, perm fs.FileMode) (vfs.File, error) {
	if flag&os.O_CREATE != 0 && f.full() {
		if _, err := f.base.Stat(name); err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.ENOSPC}
		}
	}
	file, err := f.base.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: file, i: f.i}, nil
}

// full reports whether no byte may be written, counting the fault it
// then injects.
func (f *faultFS) full() bool {
	if f.i == nil {
		return false
	}
	f.i.mu.Lock()
	defer f.i.mu.Unlock()
	if f.i.budget == 0 {
		f.i.injected++
		return true
	}
	return false
}

func (f *faultFS) Mkdir(name string, perm fs.FileMode) error {
	if f.full() {
		return &fs.PathError{Op: "mkdir", Path: name, Err: syscall.ENOSPC}
	}
	return f.base.Mkdir(name, perm)
}

func (f *faultFS) Rename(o, n string) error                   { return f.base.Rename(o, n) }
func (f *faultFS) Remove(name string) error                   { return f.base.Remove(name) }
func (f *faultFS) RemoveAll(name string) error                { return f.base.RemoveAll(name) }
func (f *faultFS) ReadDir(name string) ([]fs.DirEntry, error) { return f.base.ReadDir(name) }
func (f *faultFS) Stat(name string) (fs.FileInfo, error)      { return f.base.Stat(name) }
func (f *faultFS) Free(path string) (uint64, error) {
	return f.i.Free(func() (uint64, error) { return f.base.Free(path) })
}

type faultFile struct {
	vfs.File
	i *Injector
}

func (f *faultFile) Write(p []byte) (int, error) {
	n, ferr := f.i.Write(len(p))
	w, err := f.File.Write(p[:n])
	if err != nil {
		return w, err
	}
	if ferr != nil {
		return w, &fs.PathError{Op: "write", Path: f.Name(), Err: ferr}
	}
	return w, nil
}

func (f *faultFile) Sync() error {
	if err := f.i.Sync(); err != nil {
		return &fs.PathError{Op: "sync", Path: f.Name(), Err: err}
	}
	return f.File.Sync()
}
