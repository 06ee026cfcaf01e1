package mls

import (
	"slices"
	"testing"
	"time"
)

// BenchmarkHandOver measures how long a goroutine started for the other
// core waits before it runs while its starter keeps computing: with a
// plain go statement, and with goNow (yieldRunnext). It reports the
// median and 90th percentile wait (docs/performance.md §MLS, "Hand-overs
// between cores"). Each iteration idles 2 ms first, as Process's callers
// do between Commits, so that the other core has gone idle.
func BenchmarkHandOver(b *testing.B) {
	for _, v := range []struct {
		name  string
		start func(func())
	}{{"go", func(f func()) { go f() }}, {"goNow", goNow}} {
		b.Run(v.name, func(b *testing.B) {
			var waits []time.Duration
			for b.Loop() {
				b.StopTimer()
				time.Sleep(2 * time.Millisecond)
				b.StartTimer()
				t0 := time.Now()
				started := make(chan time.Duration, 1)
				v.start(func() { started <- time.Since(t0) })
				for time.Since(t0) < 600*time.Microsecond {
				}
				waits = append(waits, <-started)
			}
			slices.Sort(waits)
			b.ReportMetric(float64(waits[len(waits)/2].Microseconds()), "p50-wait-µs")
			b.ReportMetric(float64(waits[len(waits)*9/10].Microseconds()), "p90-wait-µs")
		})
	}
}
