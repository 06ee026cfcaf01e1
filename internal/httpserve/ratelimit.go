package httpserve

import (
	"math"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Rate is a token-bucket rate limit: Burst requests at once, refilled at
// PerSecond. A zero Rate means no limit.
type Rate struct {
	PerSecond float64
	Burst     int
}

// Limiter is a set of token buckets, one per key (a client address, a
// tenant, a device, a token). It holds at most max buckets: when full, it
// first forgets the buckets that have refilled (they are as good as new),
// and if none has, refuses new keys, so that a flood of keys cannot
// exhaust memory. It is safe for concurrent use; a nil Limiter allows
// everything.
type Limiter struct {
	rate Rate
	max  int
	now  func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// NewLimiter returns a limiter of rate r holding at most max buckets, on
// clock now (nil: time.Now).
func NewLimiter(r Rate, max int, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{rate: r, max: max, now: now, buckets: map[string]*bucket{}}
}

// Allow takes a token for key, or returns how long until one is there (at
// least a second).
func (l *Limiter) Allow(key string) (bool, time.Duration) {
	if l == nil || l.rate.PerSecond <= 0 {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	burst := float64(max(l.rate.Burst, 1))
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.max {
			for k, o := range l.buckets {
				if o.tokens+now.Sub(o.last).Seconds()*l.rate.PerSecond >= burst {
					delete(l.buckets, k)
				}
			}
			if len(l.buckets) >= l.max {
				return false, time.Second
			}
		}
		b = &bucket{tokens: burst, last: now}
		l.buckets[key] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(burst, b.tokens+el*l.rate.PerSecond)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate.PerSecond * float64(time.Second))
	return false, max(wait, time.Second)
}

// ClientKey returns the rate-limit key of a remote address: the IP
// address, or for IPv6 its /64 prefix, which one client typically holds
// whole.
func ClientKey(remoteAddr string) string {
	// An IPv4 address and port, as net/http gives them: the address's
	// text is already its key (netip parses IPv4 strictly, so the text is
	// canonical), and slicing it allocates nothing.
	if ap, err := netip.ParseAddrPort(remoteAddr); err == nil && ap.Addr().Is4() {
		return remoteAddr[:strings.LastIndexByte(remoteAddr, ':')]
	}
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
