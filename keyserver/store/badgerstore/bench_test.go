package badgerstore

// Benchmarks of one durable epoch commit (issue #3: "publish an epoch of
// 32,768 updates … one durable commit ≤ 2 s"). Not tests:
//
//	go test -run '^$' -bench CommitEpoch -benchtime 5x -timeout 30m ./keyserver/store/badgerstore/
//
// Setup builds, with vmap, a map of 100,000 labels (one record each)
// committed to badger in a temporary directory, with the default memtable
// (192 MiB) unless the sub-benchmark names another. Each iteration then
// commits one epoch: 32,768 value records, the map nodes of a
// 32,768-update vmap batch (half existing labels, half new), one log leaf
// and a 5 KiB checkpoint. Only CommitEpoch is timed, Sync included. The
// vmap update that produces the batch reads its nodes from badger and is
// reported separately (update-ms/op).
//
// Metrics: ms/op (the commit), MB/op (keys and values written), disk-MB/op (bytes the process sent to storage during
// the commit, from /proc/self/io: WAL, and any flush or compaction that ran
// meanwhile), txns/op, syncs/op and sync-ms/op (badger transactions,
// syncAll calls and the time in them), nodes/op (map nodes in the batch), cpu-ms/op and
// update-cpu-ms/op (process CPU time during the commit and the update: the
// reference machine is shared and loaded, so wall time is an upper bound).

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/store"
	"github.com/moat-im/moat/keyserver/store/storetest"
	"github.com/moat-im/moat/keyserver/vmap"
)

func BenchmarkCommitEpoch(b *testing.B) {
	// 3,600 bytes: one device certificate (3,581 bytes, docs/spec/org.md)
	// and a little framing. 256 bytes: a record that only references its
	// certificates.
	for _, rs := range []int{3600, 256} {
		b.Run("updates=32768/record="+strconv.Itoa(rs), func(b *testing.B) { benchCommit(b, 100_000, 32768, rs, 0) })
	}
	// A memtable too small for the epoch to be one badger transaction
	// (the default is large enough): the commit is staged.
	b.Run("updates=32768/record=3600/memtable=64MiB", func(b *testing.B) { benchCommit(b, 100_000, 32768, 3600, 64<<20) })
	b.Run("updates=1024/record=3600", func(b *testing.B) { benchCommit(b, 100_000, 1024, 3600, 0) })
}

type benchDir struct {
	s      *Store
	m      *vmap.Map
	ts     *store.TreeStore
	tree   *tlog.Tree
	labels []vmap.Label
	latest map[vmap.Label]uint32
	rng    *rand.ChaCha8
	epoch  uint64
}

func newBenchDir(b *testing.B, n, recordSize int, memTable int64) *benchDir {
	b.Helper()
	s, err := Open(context.Background(), Options{Dir: b.TempDir(), Logger: quietLogger(), MemTableSize: memTable})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	d := &benchDir{s: s, m: vmap.New(s, nil), ts: store.NewTreeStore(s), latest: map[vmap.Label]uint32{}}
	var seed [32]byte
	copy(seed[:], "moat badgerstore benchmark")
	d.rng = rand.NewChaCha8(seed)
	d.tree, _ = tlog.NewTree(context.Background(), d.ts, 0)
	start := time.Now()
	c := d.build(b, n, 0, recordSize)
	if err := d.commit(c); err != nil {
		b.Fatal(err)
	}
	b.Logf("setup: %d labels committed in %v (%d badger transactions)", n, time.Since(start), s.stats.txns)
	return d
}

// build returns the next epoch, writing fresh new labels and existing ones
// (repeats dropped), with its log append done.
func (d *benchDir) build(b *testing.B, fresh, existing, recordSize int) *store.EpochCommit {
	b.Helper()
	labels := make([]vmap.Label, 0, existing+fresh)
	for range existing {
		labels = append(labels, d.labels[d.rng.Uint64()%uint64(len(d.labels))])
	}
	for range fresh {
		var l vmap.Label
		_, _ = d.rng.Read(l[:])
		labels = append(labels, l)
	}
	return d.buildLabels(b, labels, recordSize)
}

// buildLabels returns the next epoch, writing labels (repeats dropped),
// with its log append done.
func (d *benchDir) buildLabels(b *testing.B, labels []vmap.Label, recordSize int) *store.EpochCommit {
	b.Helper()
	var changes []vmap.Change
	c := &store.EpochCommit{Epoch: d.epoch}
	seen := map[vmap.Label]bool{}
	for _, l := range labels {
		if seen[l] {
			continue
		}
		seen[l] = true
		rec := make([]byte, recordSize)
		_, _ = d.rng.Read(rec)
		binary.BigEndian.PutUint64(rec, d.epoch)
		c.Values = append(c.Values, store.ValueWrite{Label: l, Version: d.latest[l] + 1, Record: rec})
		changes = append(changes, vmap.Change{Label: l, Commitment: sha256.Sum256(rec)})
	}
	batch, err := d.m.Update(d.epoch, changes)
	if err != nil {
		b.Fatal(err)
	}
	c.Map = batch
	d.ts.Begin(c)
	if _, err := d.tree.Append(context.Background(), batch.Root[:]); err != nil {
		b.Fatal(err)
	}
	cp := make([]byte, 5<<10)
	_, _ = d.rng.Read(cp)
	c.Head = store.Head{Epoch: d.epoch, LogSize: d.tree.Size(), Checkpoint: cp}
	return c
}

func (d *benchDir) commit(c *store.EpochCommit) error {
	if err := d.ts.Commit(context.Background()); err != nil {
		return err
	}
	for _, w := range c.Values {
		if d.latest[w.Label] == 0 {
			d.labels = append(d.labels, w.Label)
		}
		d.latest[w.Label] = w.Version
	}
	d.epoch++
	return nil
}

func benchCommit(b *testing.B, n, updates, recordSize int, memTable int64) {
	d := newBenchDir(b, n, recordSize, memTable)
	var update, updateCPU, commitCPU, syncT time.Duration
	var logical, disk int64
	var txns, syncs, nodes int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		start, cpu0 := time.Now(), cpuTime()
		c := d.build(b, updates/2, updates-updates/2, recordSize)
		update += time.Since(start)
		updateCPU += cpuTime() - cpu0
		nodes += len(c.Map.Nodes)
		before, cpu1 := ioWriteBytes(), cpuTime()
		b.StartTimer()
		if err := d.commit(c); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		commitCPU += cpuTime() - cpu1
		disk += ioWriteBytes() - before
		logical += d.s.stats.bytes
		txns += d.s.stats.txns
		syncs += d.s.stats.syncs
		syncT += d.s.stats.sync
		b.StartTimer()
	}
	b.StopTimer()
	per := float64(b.N)
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/per, "ms/op")
	b.ReportMetric(float64(commitCPU.Milliseconds())/per, "cpu-ms/op")
	b.ReportMetric(float64(update.Milliseconds())/per, "update-ms/op")
	b.ReportMetric(float64(updateCPU.Milliseconds())/per, "update-cpu-ms/op")
	b.ReportMetric(float64(logical)/1e6/per, "MB/op")
	b.ReportMetric(float64(disk)/1e6/per, "disk-MB/op")
	b.ReportMetric(float64(txns)/per, "txns/op")
	b.ReportMetric(float64(syncs)/per, "syncs/op")
	b.ReportMetric(float64(syncT.Milliseconds())/per, "sync-ms/op")
	b.ReportMetric(float64(nodes)/per, "nodes/op")
}

// BenchmarkCommitEpochTenants commits epochs that rewrite the same 2,048
// users of a 20,000-label map, as the directory's epochs do: each user's
// value record (256 bytes) and tenant state record (200 bytes, the size of
// a user record that refers to its certificate), and a 1 KiB core record.
// Each iteration builds the epoch (the vmap update) and commits it; the
// store's cleanup of the last epoch runs before the timer stops (Close).
// Small enough for instruction counts, which do not depend on the load:
//
//	bash .ci/instructions ./keyserver/store/badgerstore 4 BenchmarkCommitEpochTenants
func BenchmarkCommitEpochTenants(b *testing.B) {
	const users = 2048
	d := newBenchDir(b, 20_000, 256, 0)
	labels := d.labels[:users]
	tenant := [16]byte{0x7e}
	rec := make([]byte, 200)
	core := make([]byte, 1024)
	write := func() []store.TenantWrite {
		tw := store.TenantWrite{ID: tenant, Records: make([]store.TenantRecord, 0, users+1)}
		tw.Records = append(tw.Records, store.TenantRecord{Key: store.TenantKey{0x01}, Value: core})
		for _, l := range labels {
			k := store.TenantKey{0x06}
			copy(k[1:], l[:16])
			tw.Records = append(tw.Records, store.TenantRecord{Key: k, Value: rec})
		}
		return []store.TenantWrite{tw}
	}
	// The users' first records, and a rewrite, so that the timed epochs
	// are the steady state.
	for range 2 {
		c := d.buildLabels(b, labels, 256)
		c.Tenants = write()
		if err := d.commit(c); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		c := d.buildLabels(b, labels, 256)
		c.Tenants = write()
		if err := d.commit(c); err != nil {
			b.Fatal(err)
		}
	}
	d.s.Close()
	b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
}

// cpuTime returns the process's user+system CPU time: on a loaded machine
// it stays meaningful where wall time does not. It includes badger's
// background goroutines (flushes, compactions).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ioWriteBytes returns the bytes this process has caused to be sent to
// storage (Linux), or 0.
func ioWriteBytes() int64 {
	f, err := os.Open("/proc/self/io")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "write_bytes: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// BenchmarkUpdateHeadCheckpoint replaces the head's checkpoint with a
// 15 KiB note (a checkpoint cosigned by three hybrid witnesses), as the
// directory does after each cosigning round: one small transaction and a
// sync.
func BenchmarkUpdateHeadCheckpoint(b *testing.B) {
	s, err := Open(context.Background(), Options{Dir: b.TempDir(), Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	m := storetest.NewModel(b, s, 1)
	m.MustCommit(b, storetest.Spec{NewLabels: 1})
	note := make([]byte, 15<<10)
	epoch := m.Head().Epoch
	for i := 0; b.Loop(); i++ {
		note[0] = byte(i)
		if err := s.UpdateHeadCheckpoint(context.Background(), epoch, note); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWritePending writes the pending records of one enrolment, as
// the directory does before answering it (docs/spec/directory.md
// §Storage): the core record (100 B), the user's record (4 KiB: its
// timeline and certificate) and the code's (150 B), replacing the
// previous write's: one small transaction and a sync. With concurrent
// operations one write serves a whole batch (group commit).
func BenchmarkWritePending(b *testing.B) {
	s, err := Open(context.Background(), Options{Dir: b.TempDir(), Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	m := storetest.NewModel(b, s, 1)
	m.MustCommit(b, storetest.Spec{NewLabels: 1, Tenants: 1})
	epoch := m.Head().Epoch
	w := store.TenantWrite{ID: [16]byte{1}, Records: []store.TenantRecord{
		{Key: store.TenantKey{1}, Value: make([]byte, 100)},
		{Key: store.TenantKey{6, 1}, Value: make([]byte, 4<<10)},
		{Key: store.TenantKey{7, 1}, Value: make([]byte, 150)},
	}}
	for i := 0; b.Loop(); i++ {
		w.Records[0].Value[0] = byte(i)
		if err := s.WritePending(context.Background(), epoch, w); err != nil {
			b.Fatal(err)
		}
	}
}
