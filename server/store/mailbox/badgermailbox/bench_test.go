package badgermailbox

// Benchmarks (docs/performance.md §Relay storage). Not tests:
//
//	go test -run '^$' -bench . -benchtime 20000x ./server/store/mailbox/badgermailbox/
//
// BenchmarkRawGroupCommit is the baseline: badger alone, with this store's
// badger options, 1 KiB values under random 16-byte keys, producers
// queueing to one writer that commits each drained batch in one
// transaction and calls db.Sync once. BenchmarkEnqueue is the mailbox
// store doing the same work with everything it adds (deduplication and
// sequence numbers from the in-memory mailbox index, the record's
// checksum, the commit record, the log-file sync of badgerutil.Syncer,
// the watermark). Both report msgs/s and the mean batch size. For CPU
// cost, count instructions instead (docs/performance.md §Relay storage):
//
//	bash .ci/instructions ./server/store/mailbox/badgermailbox 4000 \
//		BenchmarkRawGroupCommit/producers=64 BenchmarkEnqueue/producers=64 BenchmarkEnqueueLatency offers a fixed rate (open
// loop: each enqueue starts at its scheduled time, and its latency counts
// from then) and reports p50 and p99. cpu-µs/msg is the process's CPU
// time (producers included) per message: on a shared machine it is the
// steadier figure. BenchmarkIdleMailbox reports the
// heap each idle mailbox costs (20,000 mailboxes of one 1 KiB message:
// its index entry and one deduplication entry), and each subscription.
// BenchmarkOpen reports the time Open takes to rebuild the index of
// 50,000 messages, with and without Verify.

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/moat-im/moat/server/store/mailbox"
	"github.com/moat-im/moat/server/store/mailbox/mailboxtest"
)

// benchBody is the body size: 1 KiB, or MOAT_BENCH_BODY bytes (4096: the
// relay's sealed 1 KiB content).
var benchBody = func() int {
	if n, err := strconv.Atoi(os.Getenv("MOAT_BENCH_BODY")); err == nil && n > 0 && n <= mailbox.MaxBodySize {
		return n
	}
	return 1024
}()

// benchTTL is a realistic expiry: past the 24 h deduplication window.
const benchTTL = 7 * 24 * time.Hour

var producerCounts = []int{1, 64, 1024}

func benchStore(b *testing.B) *Store {
	b.Helper()
	s, err := Open(context.Background(), Options{Dir: b.TempDir(), Logger: quietLogger(), SweepInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// spread runs n operations over p goroutines and reports msgs/s.
func spread(b *testing.B, p int, op func(worker, i int) error) {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, p)
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	for w := range p {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				if err := op(w, int(i)); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	el, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	close(errc)
	for err := range errc {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/msg")
}

// cpuTime returns the process's user and system CPU time, which stays
// meaningful on a loaded machine where wall time does not. It includes
// the producers and badger's background goroutines.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkRawGroupCommit(b *testing.B) {
	for _, p := range producerCounts[1:] {
		b.Run(fmt.Sprintf("producers=%d", p), func(b *testing.B) {
			s := benchStore(b)
			opts := s.badgerOptions()
			s.Close()
			dir := b.TempDir()
			db, err := badger.Open(opts.WithDir(dir).WithValueDir(dir))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			wr := NewBaselineWriter(db)
			defer wr.Close()
			spread(b, p, func(w, i int) error {
				k := make([]byte, 16)
				crand.Read(k)
				v := make([]byte, benchBody)
				crand.Read(v)
				return wr.Put(k, v)
			})
			b.ReportMetric(float64(b.N)/float64(wr.Batches()), "msgs/batch")
		})
	}
}

func BenchmarkEnqueue(b *testing.B) {
	for _, p := range producerCounts {
		b.Run(fmt.Sprintf("producers=%d", p), func(b *testing.B) {
			s := benchStore(b)
			ts0 := s.readTs.Load()
			now := time.Now()
			spread(b, p, func(w, i int) error {
				mb := mailboxtest.Box(rand.IntN(1000))
				m := mailbox.Message{Expires: now.Add(benchTTL), Body: make([]byte, benchBody)}
				crand.Read(m.ID[:])
				crand.Read(m.Body)
				_, err := s.Enqueue(context.Background(), mb, m)
				return err
			})
			b.ReportMetric(float64(b.N)/float64(s.readTs.Load()-ts0), "msgs/batch")
		})
	}
}

func BenchmarkEnqueueLatency(b *testing.B) {
	for _, rate := range []int{2000, 10000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			s := benchStore(b)
			lat := make([]time.Duration, b.N)
			interval := time.Second / time.Duration(rate)
			var wg sync.WaitGroup
			var failed atomic.Int64
			now := time.Now()
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				at := start.Add(time.Duration(i) * interval)
				if d := time.Until(at); d > 0 {
					time.Sleep(d)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					mb := mailboxtest.Box(rand.IntN(1000))
					m := mailbox.Message{Expires: now.Add(benchTTL), Body: make([]byte, benchBody)}
					crand.Read(m.ID[:])
					if _, err := s.Enqueue(context.Background(), mb, m); err != nil {
						failed.Add(1)
					}
					lat[i] = time.Since(at)
				}()
			}
			wg.Wait()
			el := time.Since(start)
			b.StopTimer()
			if failed.Load() > 0 {
				b.Fatalf("%d enqueues failed", failed.Load())
			}
			slices.Sort(lat)
			q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))].Microseconds()) / 1000 }
			b.ReportMetric(q(0.5), "p50-ms")
			b.ReportMetric(q(0.99), "p99-ms")
			b.ReportMetric(q(1), "max-ms")
			b.ReportMetric(float64(b.N)/el.Seconds(), "achieved-msgs/s")
		})
	}
}

// heapInUse returns the live heap after a GC.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func BenchmarkIdleMailbox(b *testing.B) {
	const n = 20000
	for _, sub := range []bool{false, true} {
		b.Run(fmt.Sprintf("subscribed=%v", sub), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				s := benchStore(b)
				empty := heapInUse()
				now := time.Now()
				var wg sync.WaitGroup
				for w := range 64 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := w; i < n; i += 64 {
							mb := mailboxtest.Box(i)
							if _, err := s.Enqueue(context.Background(), mb, mailboxtest.Msg(mb, 0, 0, benchBody, now, time.Hour)); err != nil {
								panic(err)
							}
						}
					}()
				}
				wg.Wait()
				before := heapInUse()
				subs := make([]*mailbox.Subscription, 0, n)
				if sub {
					for i := range n {
						subs = append(subs, s.Subscribe(mailboxtest.Box(i)))
					}
				}
				after := heapInUse()
				b.ReportMetric(float64(int64(after)-int64(before))/n, "heap-B/subscription")
				b.ReportMetric(float64(int64(before)-int64(empty))/n, "heap-B/mailbox")
				runtime.KeepAlive(subs)
				s.Close()
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	const boxes, perBox = 1000, 50
	dir := b.TempDir()
	s, err := Open(context.Background(), Options{Dir: dir, Logger: quietLogger(), SweepInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	var wg sync.WaitGroup
	for w := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < boxes*perBox; i += 64 {
				mb := mailboxtest.Box(i % boxes)
				if _, err := s.Enqueue(context.Background(), mb, mailboxtest.Msg(mb, i, 0, benchBody, now, benchTTL)); err != nil {
					panic(err)
				}
			}
		}()
	}
	wg.Wait()
	s.Close()
	for _, skip := range []bool{true, false} {
		b.Run(fmt.Sprintf("verify=%v", !skip), func(b *testing.B) {
			for range b.N {
				s, err := Open(context.Background(), Options{Dir: dir, Logger: quietLogger(), SweepInterval: -1, SkipVerify: skip})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if st, err := s.Status(context.Background(), mailboxtest.Box(7)); err != nil || st.Messages != perBox {
					b.Fatalf("status after Open: %+v, %v", st, err)
				}
				s.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/(boxes*perBox), "µs/message")
		})
	}
}

// BenchmarkEnqueueBatch: 64 producers each enqueue batches of 16
// messages (b.N messages in all), as the relay's send-batch requests do:
// mode=batch with one EnqueueBatch per batch, mode=each with one
// goroutine and one Enqueue per message, which is what the relay did
// before EnqueueBatch. For the CPU cost of the difference, count
// instructions:
//
//	bash .ci/instructions ./server/store/mailbox/badgermailbox 4096 \
//		BenchmarkEnqueueBatch/mode=each BenchmarkEnqueueBatch/mode=batch
func BenchmarkEnqueueBatch(b *testing.B) {
	const producers, size = 64, 16
	for _, mode := range []string{"each", "batch"} {
		b.Run("mode="+mode, func(b *testing.B) {
			s := benchStore(b)
			ts0 := s.readTs.Load()
			now := time.Now()
			batches := (b.N + size - 1) / size
			var next atomic.Int64
			var wg sync.WaitGroup
			errc := make(chan error, producers)
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime()
			for range producers {
				wg.Go(func() {
					items := make([]mailbox.Item, size)
					out := make([]mailbox.Result, size)
					for {
						k := int(next.Add(1) - 1)
						if k >= batches {
							return
						}
						n := min(size, b.N-k*size)
						for i := range n {
							it := &items[i]
							it.Mailbox = mailboxtest.Box(rand.IntN(1000))
							it.Message = mailbox.Message{Expires: now.Add(benchTTL), Body: make([]byte, benchBody)}
							crand.Read(it.ID[:])
							crand.Read(it.Body)
						}
						if mode == "batch" {
							s.EnqueueBatch(context.Background(), items[:n], out[:n])
						} else {
							var each sync.WaitGroup
							for i := range n {
								each.Go(func() {
									out[i].Receipt, out[i].Err = s.Enqueue(context.Background(), items[i].Mailbox, items[i].Message)
								})
							}
							each.Wait()
						}
						for _, r := range out[:n] {
							if r.Err != nil {
								errc <- r.Err
								return
							}
						}
					}
				})
			}
			wg.Wait()
			el, cpu := time.Since(start), cpuTime()-cpu0
			b.StopTimer()
			close(errc)
			for err := range errc {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/msg")
			b.ReportMetric(float64(b.N)/float64(s.readTs.Load()-ts0), "msgs/batch")
		})
	}
}
