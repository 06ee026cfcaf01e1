// Package badgerutil holds what Moat's badger-backed stores share: making
// badger's writes durable without SyncWrites (Syncer), and passing badger's
// log lines to slog (NewLogger).
package badgerutil

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// NewLogger returns a badger.Logger that passes badger's lines at level or
// above to l, tagged with component. Badger logs file names, sizes,
// recovery and compaction events, never stored values.
func NewLogger(l *slog.Logger, level slog.Leveler, component string) badger.Logger {
	return &slogLogger{l: l, level: level, component: component}
}

type slogLogger struct {
	l         *slog.Logger
	level     slog.Leveler
	component string
}

func (l *slogLogger) log(level slog.Level, format string, args []any) {
	if level < l.level.Level() {
		return
	}
	l.l.Log(context.Background(), level, "badger: "+strings.TrimSpace(fmt.Sprintf(format, args...)), "component", l.component)
}

func (l *slogLogger) Errorf(f string, a ...any)   { l.log(slog.LevelError, f, a) }
func (l *slogLogger) Warningf(f string, a ...any) { l.log(slog.LevelWarn, f, a) }
func (l *slogLogger) Infof(f string, a ...any)    { l.log(slog.LevelInfo, f, a) }
func (l *slogLogger) Debugf(f string, a ...any)   { l.log(slog.LevelDebug, f, a) }

// SmallStoreOptions are the badger options of the relay's small durable
// stores (prekeys, delivery tokens): durability by an explicit Syncer (no
// SyncWrites), checksums verified on every read, no caches, compression or
// conflict detection, one version per key. component names the store in
// its log lines.
func SmallStoreOptions(dir string, memTableSize int64, logger *slog.Logger, component string) badger.Options {
	return badger.DefaultOptions(dir).
		WithLogger(NewLogger(logger, slog.LevelWarn, component)).
		WithSyncWrites(false).
		WithMemTableSize(memTableSize).
		WithNumMemtables(2).
		WithValueThreshold(1 << 20).
		WithChecksumVerificationMode(options.OnBlockRead).
		WithVerifyValueChecksum(true).
		WithCompression(options.None).
		WithBlockCacheSize(0).
		WithIndexCacheSize(0).
		WithDetectConflicts(false).
		WithMetricsEnabled(false).
		WithNumVersionsToKeep(1).
		WithNumCompactors(2)
}

// DeletePrefix deletes, in txn, every key with prefix (keys only: values
// are not read).
func DeletePrefix(txn *badger.Txn, prefix []byte) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	var keys [][]byte
	for it.Rewind(); it.Valid(); it.Next() {
		keys = append(keys, it.Item().KeyCopy(nil))
	}
	it.Close()
	for _, k := range keys {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
