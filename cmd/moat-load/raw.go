package main

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/moat-im/moat/server/store/mailbox/badgermailbox"
)

// childEnv marks the relay process of a test binary (main_test.go).
const childEnv = "MOAT_LOAD_CHILD"

// Batch bounds of the raw writer, as the mailbox store's.
const (
	rawQueue    = 8192
	rawMaxBatch = 8192
)

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
	type req struct {
		key, val []byte
		done     chan error
	}
	reqs := make(chan *req, rawQueue)
	var batches atomic.Int64
	go func() {
		var batch []*req
		for r := range reqs {
			batch = append(batch[:0], r)
		drain:
			for len(batch) < rawMaxBatch {
				select {
				case r := <-reqs:
					batch = append(batch, r)
				default:
					break drain
				}
			}
			txn := db.NewTransaction(true)
			var err error
			for _, r := range batch {
				if err = txn.Set(r.key, r.val); err != nil {
					break
				}
			}
			if err == nil {
				err = txn.Commit()
			} else {
				txn.Discard()
			}
			if err == nil {
				err = db.Sync()
			}
			batches.Add(1)
			for _, r := range batch {
				r.done <- err
			}
		}
	}()
	defer close(reqs)
	n := len(g.envs)
	g.logf("raw: %d values of %d bytes, %d producers", n, g.envSize(), g.f.producers)
	var next atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	c0, load0 := selfCPU(), loadAvg()
	start := time.Now()
	for range g.f.producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || firstErr.Load() != nil {
					return
				}
				k := make([]byte, 16)
				rand.Read(k)
				r := &req{key: k, val: g.envs[i], done: make(chan error, 1)}
				reqs <- r
				if err := <-r.done; err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
			}
		}()
	}
	wg.Wait()
	el, cpu := time.Since(start), selfCPU()-c0
	if e := firstErr.Load(); e != nil {
		return *e
	}
	rate := float64(n) / el.Seconds()
	g.ratios["raw"] = rate
	g.add(result{metric: fmt.Sprintf("raw badger group commit, %d-byte values (the envelopes' bytes)", g.envSize()),
		goal: "(baseline)", measured: fmt.Sprintf("%.0f msgs/s", rate), ratio: "1×",
		conditions: fmt.Sprintf("%d producers, in the generator's process; one transaction and one db.Sync per drained batch, %.0f msgs/batch; %.1f CPU µs/msg; the mailbox store's badger options (badgermailbox.BaselineOptions); load average %s → %s",
			g.f.producers, float64(n)/float64(batches.Load()), us(cpu, n), load0, loadAvg())})
	return nil
}
