package vmap

// Benchmarks of docs/spec/vmap.md's performance targets (not tests):
//
//	go test -run '^$' -bench . -benchtime 5x ./keyserver/vmap/
//	go test -run '^$' -bench ProofSize10M -benchtime 1x -timeout 1h ./keyserver/vmap/
//
// Besides time and allocations, the benchmarks report cpu-ms/op, the
// process's user+system CPU time per operation, which stays meaningful on a
// loaded machine where wall time does not.

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

type benchTree struct {
	s      *MemStore
	m      *Map
	labels []Label
	root   Hash
	epoch  uint64 // the latest committed epoch
	build  time.Duration
	heap   uint64 // live heap after the build, bytes
}

var (
	benchMu    sync.Mutex
	benchTrees = map[int]*benchTree{}
)

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// getBenchTree builds (once per process) a map of n random labels in one
// epoch, committed to a MemStore.
func getBenchTree(b *testing.B, n int) *benchTree {
	benchMu.Lock()
	defer benchMu.Unlock()
	if t, ok := benchTrees[n]; ok {
		return t
	}
	r := testRand(uint64(n))
	cs := make([]Change, n)
	for i := range cs {
		r.Read(cs[i].Label[:])
		r.Read(cs[i].Commitment[:])
	}
	before := heapInUse()
	t := &benchTree{s: NewMemStore()}
	t.m = New(t.s, nil)
	start := time.Now()
	batch, err := t.m.Update(0, cs)
	if err != nil {
		b.Fatal(err)
	}
	if err := t.s.Commit(batch); err != nil {
		b.Fatal(err)
	}
	t.build = time.Since(start)
	t.root = batch.Root
	batch = nil
	t.labels = make([]Label, n)
	for i := range cs {
		t.labels[i] = cs[i].Label
	}
	cs = nil
	t.heap = heapInUse() - before
	b.Logf("built %d labels in %v; heap %.0f MB (%.0f B/label, labels slice included)",
		n, t.build, float64(t.heap)/1e6, float64(t.heap)/float64(n))
	benchTrees[n] = t
	return t
}

func dropBenchTree(n int) {
	benchMu.Lock()
	delete(benchTrees, n)
	benchMu.Unlock()
	runtime.GC()
}

// changeSet returns k changes, half to existing labels, half new.
func (t *benchTree) changeSet(seed uint64, k int) []Change {
	r := testRand(seed)
	cs := make([]Change, k)
	for i := range cs {
		if i%2 == 0 {
			cs[i].Label = t.labels[r.IntN(len(t.labels))]
		} else {
			r.Read(cs[i].Label[:])
		}
		r.Read(cs[i].Commitment[:])
	}
	// Drop repeats of an existing label.
	seen := make(map[Label]bool, k)
	out := cs[:0]
	for _, c := range cs {
		if !seen[c.Label] {
			seen[c.Label] = true
			out = append(out, c)
		}
	}
	return out
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N)/1e6, "cpu-ms/op")
}

func benchUpdate(b *testing.B, base, k int) {
	t := getBenchTree(b, base)
	b.Run("update", func(b *testing.B) {
		cs := t.changeSet(1, k)
		var nodes int
		b.ReportAllocs()
		b.ResetTimer()
		cpu := cpuTime()
		for i := 0; i < b.N; i++ {
			batch, err := t.m.Update(t.epoch+1, cs)
			if err != nil {
				b.Fatal(err)
			}
			nodes = len(batch.Nodes)
		}
		reportCPU(b, cpu)
		b.ReportMetric(float64(nodes), "nodes/epoch")
		b.ReportMetric(float64(len(cs)), "changes")
	})
	b.Run("update+commit", func(b *testing.B) {
		b.ReportAllocs()
		var total time.Duration
		var cpuTotal time.Duration
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			cs := t.changeSet(uint64(100+t.epoch), k)
			b.StartTimer()
			start, cpu := time.Now(), cpuTime()
			batch, err := t.m.Update(t.epoch+1, cs)
			if err != nil {
				b.Fatal(err)
			}
			if err := t.s.Commit(batch); err != nil {
				b.Fatal(err)
			}
			total += time.Since(start)
			cpuTotal += cpuTime() - cpu
			t.epoch++
		}
		b.ReportMetric(float64(cpuTotal)/float64(b.N)/1e6, "cpu-ms/op")
	})
}

// BenchmarkUpdate32k: one epoch of 32,768 changes on a map of 1M labels.
func BenchmarkUpdate32k(b *testing.B) { benchUpdate(b, 1<<20, 1<<15) }

// BenchmarkUpdate1k: one epoch of 1,024 changes on a map of 1M labels.
func BenchmarkUpdate1k(b *testing.B) { benchUpdate(b, 1<<20, 1<<10) }

func BenchmarkProve(b *testing.B) {
	t := getBenchTree(b, 1<<20)
	for _, present := range []bool{true, false} {
		b.Run(fmt.Sprintf("present=%v", present), func(b *testing.B) {
			r := testRand(3)
			labels := make([]Label, 1024)
			for i := range labels {
				if present {
					labels[i] = t.labels[r.IntN(len(t.labels))]
				} else {
					r.Read(labels[i][:])
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := t.m.Prove(0, labels[i%len(labels)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	t := getBenchTree(b, 1<<20)
	r := testRand(4)
	type pl struct {
		l Label
		p *Proof
	}
	proofs := make([]pl, 1024)
	for i := range proofs {
		l := t.labels[r.IntN(len(t.labels))]
		p, err := t.m.Prove(0, l)
		if err != nil {
			b.Fatal(err)
		}
		enc, _ := p.Marshal()
		if p, err = ParseProof(enc); err != nil {
			b.Fatal(err)
		}
		proofs[i] = pl{l, p}
	}
	b.Run("verify", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			x := proofs[i%len(proofs)]
			if _, err := Verify(t.root, x.l, x.p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parse+verify", func(b *testing.B) {
		encs := make([][]byte, len(proofs))
		for i := range proofs {
			encs[i], _ = proofs[i].p.Marshal()
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			p, err := ParseProof(encs[i%len(encs)])
			if err != nil {
				b.Fatal(err)
			}
			if _, err := Verify(t.root, proofs[i%len(proofs)].l, p); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// expectedDepth is the expected depth of the leaf of a random label among n
// uniformly random labels: E[D] = Σ_{d≥0} P(D > d), where D > d exactly when
// another label shares the first d bits, P = 1 - (1 - 2^-d)^(n-1).
func expectedDepth(n int) float64 {
	var e float64
	for d := 0; d < MaxDepth; d++ {
		e += -math.Expm1(float64(n-1) * math.Log1p(-math.Ldexp(1, -d)))
	}
	return e
}

func benchProofSize(b *testing.B, n int) {
	t := getBenchTree(b, n)
	defer func() {
		if n > 1<<20 {
			dropBenchTree(n)
		}
	}()
	r := testRand(5)
	const samples = 20000
	// The sizes are measured once, whatever b.N is; ns/op means nothing.
	{
		for _, present := range []bool{true, false} {
			var bytes, hashes, depth, maxBytes, maxDepth int
			for j := 0; j < samples; j++ {
				var l Label
				if present {
					l = t.labels[r.IntN(len(t.labels))]
				} else {
					r.Read(l[:])
				}
				p, err := t.m.Prove(0, l)
				if err != nil {
					b.Fatal(err)
				}
				enc, err := p.Marshal()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := Verify(t.root, l, p); err != nil {
					b.Fatal(err)
				}
				bytes += len(enc)
				maxBytes = max(maxBytes, len(enc))
				depth += len(p.Siblings)
				maxDepth = max(maxDepth, len(p.Siblings))
				for d := range p.Siblings {
					if p.Siblings[d] != emptyHashes[d+1] {
						hashes++
					}
				}
			}
			kind := "absent"
			if present {
				kind = "present"
			}
			b.ReportMetric(float64(bytes)/samples, kind+"-B/proof")
			b.ReportMetric(float64(hashes)/samples, kind+"-hashes/proof")
			b.ReportMetric(float64(depth)/samples, kind+"-depth")
			b.ReportMetric(float64(maxBytes), kind+"-maxB")
			b.ReportMetric(float64(maxDepth), kind+"-maxdepth")
		}
	}
	b.ReportMetric(expectedDepth(n), "expected-depth")
	b.ReportMetric(float64(t.heap)/float64(n), "heapB/label")
	b.ReportMetric(t.build.Seconds(), "build-s")
}

// BenchmarkProofSize1M and BenchmarkProofSize10M report the size of lookup
// proofs in maps of 1M and 10M random labels, the path depth, and the
// memory the MemStore holds per label. Run with -benchtime 1x.
func BenchmarkProofSize1M(b *testing.B)  { benchProofSize(b, 1_000_000) }
func BenchmarkProofSize10M(b *testing.B) { benchProofSize(b, 10_000_000) }
