package main

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/dgraph-io/badger/v4"

	"github.com/moat-im/moat/server/store/mailbox/badgermailbox"
)

// childEnv marks the relay process of a test binary (main_test.go).
const childEnv = "MOAT_LOAD_CHILD"

// raw runs the raw group-commit baseline: the run's envelopes written
// under random 16-byte keys by --raw-producers producers into badger with
// the mailbox store's options, one writer committing each drained batch
// in one transaction and calling db.Sync once before answering it.
func (g *gen) raw() error {
	dir := filepath.Join(g.tmp, "raw")
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	db, err := badger.Open(badgermailbox.BaselineOptions(dir, log))
	if err != nil {
		return err
	}
	defer db.Close()
	w := badgermailbox.NewBaselineWriter(db)
	defer w.Close()
	n := len(g.envs)
	g.logf("raw: %d values of %d bytes, %d producers", n, g.envSize(), g.f.producers)
	c0, load0 := selfCPU(), loadAvg()
	_, el, err := workers(g.f.producers, n, func(i int) error {
		k := make([]byte, 16)
		rand.Read(k)
		return w.Put(k, g.envs[i])
	})
	cpu := selfCPU() - c0
	if err != nil {
		return err
	}
	rate := float64(n) / el.Seconds()
	g.ratios["raw"] = rate
	g.add(result{metric: fmt.Sprintf("raw badger group commit, %d-byte values (the envelopes' bytes)", g.envSize()),
		goal: "(baseline)", measured: fmt.Sprintf("%.0f msgs/s", rate), ratio: "1×",
		conditions: fmt.Sprintf("%d producers, in the generator's process; one transaction and one db.Sync per drained batch, %.0f msgs/batch; %.1f CPU µs/msg; the mailbox store's badger options (badgermailbox.BaselineOptions); load average %s → %s",
			g.f.producers, float64(n)/float64(w.Batches()), us(cpu, n), load0, loadAvg())})
	return nil
}
