package badgerstore

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Making badger's writes durable without SyncWrites.
//
// db.Sync fsyncs (msyncs) the active memtable's write-ahead log and the
// active value-log file, and nothing else (badger v4.9.6 DB.Sync). When a
// write fills the memtable or the value-log file, badger rotates to a new
// file and does not sync the old one (with SyncWrites off, neither
// ensureRoomForWrite nor logFile.doneWriting syncs), and it syncs the data
// directory only at Close. So after a commit that rotated a file, db.Sync
// alone would leave part of the commit, or the new file's directory
// entry, in the page cache.
//
// syncAll closes that gap: db.Sync, then an fsync of every log file that
// became inactive since the last syncAll (fsync through a new descriptor
// writes back pages dirtied through badger's shared mapping), then, if a
// log file was created, an fsync of the directory. A memtable log deleted
// meanwhile was flushed to a level-0 table, which badger msyncs and
// records in its synced manifest before deleting the log.

// fileIDs are the newest memtable-log and value-log file numbers.
type fileIDs struct{ mem, vlog int }

// syncAll makes every write so far durable. Callers hold commitMu (or are
// single-threaded in Open).
func (s *Store) syncAll() error {
	if err := s.db.Sync(); err != nil {
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
	newest := fileIDs{mem: -1, vlog: -1}
	for _, e := range entries {
		name := e.Name()
		for _, kind := range []struct {
			ext  string
			list *[]logFile
			max  *int
		}{{".mem", &mems, &newest.mem}, {".vlog", &vlogs, &newest.vlog}} {
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
		if f.fid >= s.synced.mem && f.fid < newest.mem {
			if err := fsyncFile(filepath.Join(s.dir, f.name)); err != nil {
				return err
			}
		}
	}
	for _, f := range vlogs {
		if f.fid >= s.synced.vlog && f.fid < newest.vlog {
			if err := fsyncFile(filepath.Join(s.dir, f.name)); err != nil {
				return err
			}
		}
	}
	if newest != s.synced {
		if err := fsyncFile(s.dir); err != nil {
			return err
		}
	}
	s.synced = newest
	return nil
}

// fsyncFile fsyncs a file or directory; a file deleted meanwhile is fine.
func fsyncFile(path string) error {
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
