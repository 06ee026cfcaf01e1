package badgerutil

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// Making badger's writes durable without SyncWrites.
//
// db.Sync fsyncs (msyncs) the active memtable's write-ahead log and the
// active value-log file, and nothing else (badger v4.9.6 DB.Sync). When a
// write fills the memtable or the value-log file, badger rotates to a new
// file and does not sync the old one (with SyncWrites off, neither
// ensureRoomForWrite nor logFile.doneWriting syncs), and it syncs the data
// directory only at Close. So after a write that rotated a file, db.Sync
// alone would leave part of the write, or the new file's directory entry,
// in the page cache.
//
// Syncer.Sync closes that gap: db.Sync, then an fsync of every log file
// that became inactive since the last Sync (fsync through a new descriptor
// writes back pages dirtied through badger's shared mapping), then, if a
// log file was created, an fsync of the directory. A memtable log deleted
// meanwhile was flushed to a level-0 table, which badger msyncs and
// records in its synced manifest before deleting the log.

// A Syncer makes every badger write so far durable. It remembers the
// newest memtable-log and value-log files it has synced. It is not safe
// for concurrent use: callers serialise Sync calls (badger writes may run
// concurrently with it).
type Syncer struct {
	dir       string
	mem, vlog int // newest file numbers at the last Sync; -1 before the first
}

// NewSyncer returns a Syncer for the badger database in dir.
func NewSyncer(dir string) *Syncer { return &Syncer{dir: dir, mem: -1, vlog: -1} }

// Sync makes every write to db that completed before the call durable.
func (s *Syncer) Sync(db *badger.DB) error {
	if err := db.Sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	type logFile struct {
		fid  int
		name string
	}
	var mems, vlogs []logFile
	newMem, newVlog := -1, -1
	for _, e := range entries {
		name := e.Name()
		for _, kind := range []struct {
			ext  string
			list *[]logFile
			max  *int
		}{{".mem", &mems, &newMem}, {".vlog", &vlogs, &newVlog}} {
			base, ok := strings.CutSuffix(name, kind.ext)
			if !ok {
				continue
			}
			fid, err := strconv.Atoi(base)
			if err != nil {
				continue
			}
			*kind.list = append(*kind.list, logFile{fid, name})
			*kind.max = max(*kind.max, fid)
		}
	}
	// The newest file of each kind is the active one, which db.Sync
	// covered; files from the previously newest on were written since.
	for _, f := range mems {
		if f.fid >= s.mem && f.fid < newMem {
			if err := FsyncFile(filepath.Join(s.dir, f.name)); err != nil {
				return err
			}
		}
	}
	for _, f := range vlogs {
		if f.fid >= s.vlog && f.fid < newVlog {
			if err := FsyncFile(filepath.Join(s.dir, f.name)); err != nil {
				return err
			}
		}
	}
	if newMem != s.mem || newVlog != s.vlog {
		if err := FsyncFile(s.dir); err != nil {
			return err
		}
	}
	s.mem, s.vlog = newMem, newVlog
	return nil
}

// SyncAllFiles fsyncs every regular file in dir, then dir itself. A store calls
// it when it opens a database that a crashed process left: badger replays
// its logs from the page cache, which may hold writes that were never
// synced, and the store must not treat them as durable before they are.
func SyncAllFiles(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if err := FsyncFile(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return FsyncFile(dir)
}

// FsyncFile fsyncs a file or directory; a file deleted meanwhile is fine.
func FsyncFile(path string) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", filepath.Base(path), err)
	}
	return nil
}
