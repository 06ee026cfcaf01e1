package relay

import (
	"math"
	"sync"
	"time"
)

// byteBudget is a set of token buckets counted in bytes, one per key (a
// device, a tenant): docs/spec/attachments.md §Quotas. It holds at most
// max buckets, forgetting full ones first and refusing new keys when none
// is full. A nil byteBudget allows everything.
type byteBudget struct {
	rate Rate
	max  int

	mu      sync.Mutex
	buckets map[string]*bucketBytes
}

type bucketBytes struct {
	tokens float64
	last   time.Time
}

func newByteBudget(r Rate, max int) *byteBudget {
	if r.PerSecond < 0 {
		return nil
	}
	return &byteBudget{rate: r, max: max, buckets: map[string]*bucketBytes{}}
}

// refill brings b up to now and returns it.
func (l *byteBudget) refill(b *bucketBytes, now time.Time) {
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(float64(l.rate.Burst), b.tokens+el*l.rate.PerSecond)
	}
	b.last = now
}

// take takes n bytes from key's bucket, or takes nothing and returns how
// long until there are n (at least a second).
func (l *byteBudget) take(key string, n int64) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	burst := float64(l.rate.Burst)
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.max {
			for k, o := range l.buckets {
				if l.refill(o, now); o.tokens >= burst {
					delete(l.buckets, k)
				}
			}
			if len(l.buckets) >= l.max {
				return false, time.Second
			}
		}
		b = &bucketBytes{tokens: burst, last: now}
		l.buckets[key] = b
	}
	l.refill(b, now)
	if b.tokens >= float64(n) {
		b.tokens -= float64(n)
		return true, 0
	}
	wait := time.Hour * 24 * 365
	if l.rate.PerSecond > 0 && float64(n) <= burst {
		wait = time.Duration((float64(n) - b.tokens) / l.rate.PerSecond * float64(time.Second))
	}
	return false, max(wait, time.Second)
}

// give returns n bytes to key's bucket (a creation that failed after
// take).
func (l *byteBudget) give(key string, n int64) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if b, ok := l.buckets[key]; ok {
		b.tokens = math.Min(float64(l.rate.Burst), b.tokens+float64(n))
	}
}
