package service

// BenchmarkPublishSeries1M (MOAT_LONG=1 only) publishes epochs one after
// another on a tenant whose map holds 1,000,000 labels, on badgerstore,
// over enough epochs for badger's memtable flushes and level compactions
// to fall among them:
//
//	MOAT_LONG=1 go test -run '^$' -bench PublishSeries1M -benchtime 40x -timeout 5h ./keyserver/service/
//
// Setup (untimed): 1,000,000 filler users with cached random labels (no
// VRF evaluation) and one record each of the real size (3.7 KB),
// published in epochs of 100,000; then the benchmark's 32,768 users,
// whose VRF outputs are evaluated once with the real key. Then it waits
// until badger has finished the compactions that the setup left (at most
// 20 minutes), as a directory that grew over months would have. The
// sub-benchmarks then publish epochs in which 1,024 or 32,768 of those
// users get a new value: records, the map update, the log append, the
// checkpoint signature and one durable badger commit, as
// BenchmarkPublishEpoch32k (VRF evaluation and certificate signing are
// reported separately by BenchmarkVRF32k and BenchmarkCertSign).
//
// Environment:
//   - MOAT_SERIES_DIR: keep the directory there and reuse it on the next
//     run (setup then takes seconds; every run adds its epochs to it).
//   - MOAT_MEMTABLE_MB: badger's memtable size (default: the store's).
//   - MOAT_SERIES_CPUPROFILE: write a CPU profile of each series to this
//     path, suffixed with the number of updates.
//   - MOAT_EPOCH_EVERY: the epoch cadence, such as 30s: each epoch starts
//     that long after the previous one started (default 0: back to back,
//     which leaves badger no idle time to compact).
//
// Metrics: median-ms and worst-ms over the epochs, median-cpu-ms (the
// process's CPU time during an epoch, both cores and badger's background
// work included: on a loaded machine it stays meaningful where wall time
// does not), the median and worst
// of each phase (records, map, store: the durable commit), flushes and
// compactions (badger's memtable flushes and level compactions during
// the epochs, from its log), and memory during the epochs, sampled every
// 50 ms: peak-anon-MB (anonymous resident memory: the Go heap, badger's
// memtables, indexes and bloom filters) and peak-rss-MB (all resident
// memory, also counting the pages of badger's memory-mapped table and
// value-log files, which the kernel can reclaim). The benchmark's own
// caches (the VRF outputs of 1,032,768 users) are part of both.

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/store/badgerstore"
	"github.com/moat-im/moat/keyserver/vmap"
)

const (
	seriesLabels = 1_000_000
	seriesUsers  = 32768
)

var (
	seriesOnce sync.Once
	seriesDir  *benchDir
	seriesLog  *countingHandler
	seriesPath string
)

func BenchmarkPublishSeries1M(b *testing.B) {
	if os.Getenv("MOAT_LONG") != "1" {
		b.Skip("MOAT_LONG=1: builds a 1,000,000-label directory on badger (about 5 GB on disk)")
	}
	seriesOnce.Do(func() { seriesDir, seriesLog, seriesPath = newSeriesDir(b) })
	var every time.Duration
	if v := os.Getenv("MOAT_EPOCH_EVERY"); v != "" {
		every = bmust(time.ParseDuration(v))
	}
	for _, n := range []int{1024, seriesUsers} {
		b.Run(fmt.Sprintf("updates=%d", n), func(b *testing.B) { publishSeries(b, seriesDir, seriesLog, seriesPath, n, every) })
	}
}

// countingHandler counts badger's memtable flushes and level compactions
// from its log lines (flushes are logged at debug level).
type countingHandler struct {
	flushes, compactions atomic.Int64
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	switch {
	case strings.Contains(r.Message, "Flushing memtable, mt.size"):
		h.flushes.Add(1)
	case strings.Contains(r.Message, "LOG Compact"):
		h.compactions.Add(1)
	}
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

func newSeriesDir(b *testing.B) (*benchDir, *countingHandler, string) {
	start := time.Now()
	ctx := context.Background()
	rnd := mrand.NewChaCha8([32]byte{5})
	id := org.TenantID{0xbe, 0x03}
	tk, cp, _ := benchTenantParams(rnd, id)
	dir := os.Getenv("MOAT_SERIES_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	built := filepath.Join(dir, "built")
	_, err := os.Stat(built)
	reuse := err == nil
	opts := badgerstore.Options{Dir: filepath.Join(dir, "db"), LogLevel: slog.LevelDebug}
	if mb, err := strconv.Atoi(os.Getenv("MOAT_MEMTABLE_MB")); err == nil {
		opts.MemTableSize = int64(mb) << 20
	}
	h := &countingHandler{}
	opts.Logger = slog.New(h)
	st := bmust(badgerstore.Open(ctx, opts))
	b.Cleanup(func() { st.Close() })
	svc := bmust(New(ctx, Options{
		Tenants: []TenantConfig{{ID: id, Store: st, Keys: tk, Create: cp}},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return benchT0 },
	}))
	t := svc.Tenant(id)
	value := realUserValue(b)
	d := &benchDir{t: t, epoch: t.Head().Epoch + 1, now: benchT0.Add(time.Duration(t.Head().Epoch) * 30 * time.Second)}
	// The benchmark's users: real VRF outputs, evaluated on every core
	// (or read back from the directory).
	alphas := make([][]byte, seriesUsers)
	for i := range alphas {
		var u org.UserID
		binary.BigEndian.PutUint64(u[:], uint64(i+1))
		u[15] = 0x55
		alphas[i] = kt.UserAlpha(id, u)
		d.ups = append(d.ups, org.Update{Label: org.Label{User: u}, Value: value})
	}
	vrfFile := filepath.Join(dir, "vrf")
	if data, err := os.ReadFile(vrfFile); err == nil && len(data) == seriesUsers*(vmap.LabelSize+80) {
		for i, a := range alphas {
			o := data[i*(vmap.LabelSize+80):]
			t.vrfCache[string(a)] = vrfOutput{label: vmap.Label(o[:vmap.LabelSize]), proof: o[vmap.LabelSize : vmap.LabelSize+80]}
		}
	} else {
		t.parallel(len(alphas), func(i int) { t.label(alphas[i]) })
		var out []byte
		for _, a := range alphas {
			o := t.vrfCache[string(a)]
			out = append(append(out, o.label[:]...), o.proof...)
		}
		if err := os.WriteFile(vrfFile, out, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	vrfDone := time.Now()
	if !reuse {
		// Filler users: cached random labels.
		var filler []org.Update
		for i := range seriesLabels {
			var u org.UserID
			binary.BigEndian.PutUint64(u[:], uint64(i+1))
			u[15] = 0xf1
			var l vmap.Label
			rnd.Read(l[:])
			t.vrfCache[string(kt.UserAlpha(id, u))] = vrfOutput{label: l, proof: make([]byte, 80)}
			filler = append(filler, org.Update{Label: org.Label{User: u}, Value: value})
		}
		for len(filler) > 0 {
			k := min(len(filler), 100_000)
			d.publish(b, filler[:k])
			filler = filler[k:]
		}
		d.publish(b, d.ups) // the users' first versions
		// The filler labels' VRF outputs are no longer needed.
		for i := range seriesLabels {
			var u org.UserID
			binary.BigEndian.PutUint64(u[:], uint64(i+1))
			u[15] = 0xf1
			delete(t.vrfCache, string(kt.UserAlpha(id, u)))
		}
		if err := os.WriteFile(built, nil, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	published := time.Now()
	// Let badger finish the compactions the setup left.
	last, quiet := h.compactions.Load(), time.Now()
	for time.Since(quiet) < 20*time.Second && time.Since(published) < 20*time.Minute {
		time.Sleep(time.Second)
		if n := h.compactions.Load(); n != last {
			last, quiet = n, time.Now()
		}
	}
	lsm, vlog := diskUsage(dir)
	b.Logf("setup: users' VRF outputs in %v; labels published in %v (reused: %v); compactions settled after %v; epoch %d; LSM %d MB, value log %d MB on disk",
		vrfDone.Sub(start), published.Sub(vrfDone), reuse, time.Since(published), d.epoch, lsm>>20, vlog>>20)
	return d, h, dir
}

// diskUsage returns the bytes of badger's table files and value-log files
// under dir.
func diskUsage(dir string) (lsm, vlog int64) {
	_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return nil
		}
		switch filepath.Ext(p) {
		case ".sst":
			lsm += info.Size()
		case ".vlog":
			vlog += info.Size()
		}
		return nil
	})
	return lsm, vlog
}

func publishSeries(b *testing.B, d *benchDir, h *countingHandler, dir string, n int, every time.Duration) {
	runtime.GC()
	debug.FreeOSMemory()
	mem := startMemSampler()
	f0, c0 := h.flushes.Load(), h.compactions.Load()
	var ms, rec, mp, sto, cpu []float64
	var worst Timings
	var worstMS float64
	msOf := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	if f := os.Getenv("MOAT_SERIES_CPUPROFILE"); f != "" {
		out := bmust(os.Create(fmt.Sprintf("%s.%d", f, n)))
		if err := pprof.StartCPUProfile(out); err != nil {
			b.Fatal(err)
		}
		defer func() { pprof.StopCPUProfile(); out.Close() }()
	}
	next := time.Now()
	b.ResetTimer()
	for range b.N {
		if every > 0 {
			b.StopTimer()
			time.Sleep(time.Until(next))
			next = time.Now().Add(every)
			b.StartTimer()
		}
		start, cpu0 := time.Now(), processCPU()
		ep := d.publish(b, d.ups[:n])
		el := msOf(time.Since(start))
		ms, cpu = append(ms, el), append(cpu, msOf(processCPU()-cpu0))
		rec, mp, sto = append(rec, msOf(ep.Timings.Records)), append(mp, msOf(ep.Timings.Map)), append(sto, msOf(ep.Timings.Store))
		if el > worstMS {
			worstMS, worst = el, ep.Timings
		}
	}
	b.StopTimer()
	anon, rss := mem.stop()
	median := func(v []float64) float64 {
		v = slices.Clone(v)
		slices.Sort(v)
		return v[len(v)/2]
	}
	b.ReportMetric(median(ms), "median-ms")
	b.ReportMetric(worstMS, "worst-ms")
	b.ReportMetric(median(cpu), "median-cpu-ms")
	b.ReportMetric(median(rec), "median-records-ms")
	b.ReportMetric(median(mp), "median-map-ms")
	b.ReportMetric(median(sto), "median-store-ms")
	b.ReportMetric(msOf(worst.Records), "worst-records-ms")
	b.ReportMetric(msOf(worst.Map), "worst-map-ms")
	b.ReportMetric(msOf(worst.Store), "worst-store-ms")
	b.ReportMetric(float64(h.flushes.Load()-f0), "flushes")
	b.ReportMetric(float64(h.compactions.Load()-c0), "compactions")
	b.ReportMetric(float64(anon)/(1<<20), "peak-anon-MB")
	b.ReportMetric(float64(rss)/(1<<20), "peak-rss-MB")
	lsm, vlog := diskUsage(dir)
	b.Logf("%d epochs of %d updates (every %v); epoch ms: %.0f; CPU ms: %.0f; map ms: %.0f; store ms: %.0f; LSM %d MB, value log %d MB",
		len(ms), n, every, ms, cpu, mp, sto, lsm>>20, vlog>>20)
}

// processCPU returns the process's user and system CPU time, badger's
// background work included.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// memSampler records the peak anonymous and total resident memory of the
// process (Linux /proc/self/status), sampled every 50 ms.
type memSampler struct {
	stopc     chan struct{}
	done      chan struct{}
	anon, rss int64
}

func startMemSampler() *memSampler {
	m := &memSampler{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			a, r := residentMemory()
			m.anon, m.rss = max(m.anon, a), max(m.rss, r)
			select {
			case <-m.stopc:
				return
			case <-tick.C:
			}
		}
	}()
	return m
}

func (m *memSampler) stop() (anon, rss int64) {
	close(m.stopc)
	<-m.done
	return m.anon, m.rss
}

// residentMemory returns RssAnon and VmRSS, in bytes, or zeros.
func residentMemory() (anon, rss int64) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	kb := func(v string) int64 {
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		return n << 10
	}
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "RssAnon:"); ok {
			anon = kb(v)
		} else if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			rss = kb(v)
		}
	}
	return anon, rss
}
