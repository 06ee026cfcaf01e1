package badgermailbox

import (
	"log/slog"

	"github.com/dgraph-io/badger/v4"
)

// BaselineOptions returns the badger options Open gives a database in dir
// under default Options, for measuring raw badger group commit as the
// baseline of this store and of the relay (docs/performance.md §Relay,
// cmd/moat-load). The store itself also runs badger in managed mode.
func BaselineOptions(dir string, logger *slog.Logger) badger.Options {
	if logger == nil {
		logger = slog.Default()
	}
	s := &Store{dir: dir, logger: logger, opts: Options{
		MemTableSize: defaultMemTableSize, NumMemtables: defaultNumMemtables, LogLevel: slog.LevelWarn,
	}}
	return s.badgerOptions()
}
