package relay

import (
	"encoding/binary"
	"errors"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/internal/httpserve"
)

// Durable quotas (docs/spec/api.md §Anonymous-token issuance,
// docs/spec/attachments.md §Quotas): the per-device and per-tenant
// anonymous-token issuance counts of the day and the attachment byte
// budgets. Each charge reads the records of the device and its tenant
// from a QuotaStore, computes their new values here, and is durable
// before the relay answers the request that relies on it, so a restart
// does not give a device its quota again.

// QuotaStore keeps the relay's quota records. badgertokens.Store
// implements it durably (the relay's token store); NewMemoryQuotas keeps
// them in memory.
type QuotaStore interface {
	// Charge reads the records of keys (nil for an absent or expired
	// one), passes them to f, and stores the values f returns, one per
	// key, each kept for ttl; if f fails nothing is stored. The values
	// are durable when Charge returns nil. Concurrent charges of one key
	// run one after the other.
	Charge(keys [][]byte, f func(old [][]byte) ([][]byte, time.Duration, error)) error
}

// errQuotaRecord is a stored quota record that does not parse.
var errQuotaRecord = errors.New("relay: corrupt quota record")

// Quota record keys: a class byte, a scope byte, then the device's
// mailbox id or the tenant id.
const (
	quotaIssuance = 'i'
	quotaBytes    = 'a'
	scopeDevice   = 'd'
	scopeTenant   = 't'
)

func quotaKeys(class byte, mb []byte, tenant [16]byte) [][]byte {
	return [][]byte{
		append([]byte{class, scopeDevice}, mb...),
		append([]byte{class, scopeTenant}, tenant[:]...),
	}
}

// quotaRefused is f's error for a charge over a limit: scope names the
// limit and wait how long until the charge could fit.
type quotaRefused struct {
	scope string
	wait  time.Duration
}

func (e *quotaRefused) Error() string { return "relay: quota exceeded: " + e.scope }

// A day counter is
//
//	struct { uint64 day; uint64 used; }   /* day = Unix seconds / 86400, UTC */
//
// and counts against a quota of the day; a record of another day counts
// as 0.

// parseDayCounter returns the count of day in b, and whether b is a
// record of day.
func parseDayCounter(b []byte, day int64) (int64, bool, error) {
	if b == nil {
		return 0, false, nil
	}
	if len(b) != 16 || binary.BigEndian.Uint64(b[8:]) > math.MaxInt64 {
		return 0, false, errQuotaRecord
	}
	if int64(binary.BigEndian.Uint64(b)) != day {
		return 0, false, nil
	}
	return int64(binary.BigEndian.Uint64(b[8:])), true, nil
}

func dayCounter(day, used int64) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, uint64(day)), uint64(used))
}

// chargeDay adds n (negative: a refund) to the day counters of the device
// mb and its tenant, within the limits (a refund always fits). A refund
// for a day that is over leaves the records as they are. The records are
// kept until the day is over.
func chargeDay(qs QuotaStore, mb []byte, tenant [16]byte, n int64, lim [2]int64, scopes [2]string, now time.Time) error {
	day := now.UTC().Unix() / 86400
	next := time.Unix((day+1)*86400, 0)
	return qs.Charge(quotaKeys(quotaIssuance, mb, tenant), func(old [][]byte) ([][]byte, time.Duration, error) {
		out := make([][]byte, 2)
		for i := range old {
			used, today, err := parseDayCounter(old[i], day)
			if err != nil {
				return nil, 0, err
			}
			if n < 0 && !today && old[i] != nil {
				out[i] = old[i] // a refund of another day's count
				continue
			}
			if n > 0 && used+n > lim[i] {
				return nil, 0, &quotaRefused{scope: scopes[i], wait: next.Sub(now)}
			}
			out[i] = dayCounter(day, max(used+n, 0))
		}
		return out, next.Sub(now) + time.Hour, nil
	})
}

// A byte bucket is a token bucket counted in bytes,
//
//	struct { uint64 last; uint64 tokens; }   /* Unix ns; IEEE 754 bits */
//
// holding tokens at last. An absent record is a full bucket.

func parseBucket(b []byte, burst float64, now time.Time) (float64, time.Time, error) {
	if b == nil {
		return burst, now, nil
	}
	if len(b) != 16 {
		return 0, now, errQuotaRecord
	}
	tok := math.Float64frombits(binary.BigEndian.Uint64(b[8:]))
	if math.IsNaN(tok) || tok < 0 {
		return 0, now, errQuotaRecord
	}
	// A budget lowered by configuration caps what is left.
	return min(tok, burst), time.Unix(0, int64(binary.BigEndian.Uint64(b))), nil
}

func bucketRecord(tokens float64, at time.Time) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, uint64(at.UnixNano())), math.Float64bits(tokens))
}

// refill returns tok bytes held at last brought up to now at rate r.
func refill(tok float64, last, now time.Time, r Rate) float64 {
	if el := now.Sub(last).Seconds(); el > 0 {
		tok = math.Min(float64(r.Burst), tok+el*r.PerSecond)
	}
	return tok
}

// maxQuotaTTL bounds how long a bucket record is kept: a bucket that
// refills more slowly is kept this long and then counts as full again.
const maxQuotaTTL = 400 * 24 * time.Hour

// chargeBytes takes n bytes (negative: gives them back) from the byte
// buckets of the device mb and its tenant, or takes nothing and returns a
// *quotaRefused. A record is kept until its bucket would be full again.
func chargeBytes(qs QuotaStore, mb []byte, tenant [16]byte, n int64, rates [2]Rate, scopes [2]string, now time.Time) error {
	return qs.Charge(quotaKeys(quotaBytes, mb, tenant), func(old [][]byte) ([][]byte, time.Duration, error) {
		out := make([][]byte, 2)
		ttl := time.Second
		for i := range old {
			r := rates[i]
			burst := float64(r.Burst)
			tok, last, err := parseBucket(old[i], burst, now)
			if err != nil {
				return nil, 0, err
			}
			tok = refill(tok, last, now, r)
			if n > 0 && tok < float64(n) {
				wait := maxQuotaTTL
				if r.PerSecond > 0 && float64(n) <= burst {
					wait = time.Duration((float64(n) - tok) / r.PerSecond * float64(time.Second))
				}
				return nil, 0, &quotaRefused{scope: scopes[i], wait: max(wait, time.Second)}
			}
			tok = math.Min(burst, tok-float64(n))
			out[i] = bucketRecord(tok, now)
			full := maxQuotaTTL
			if r.PerSecond > 0 {
				full = min(full, time.Duration((burst-tok)/r.PerSecond*float64(time.Second)))
			}
			ttl = max(ttl, full+time.Second)
		}
		return out, ttl, nil
	})
}

// MemoryQuotas is an in-memory QuotaStore of at most max records: a
// restart forgets them. A charge that needs a new record when max
// unexpired ones are held is refused (ErrQuotaTableFull).
type MemoryQuotas struct {
	max int
	now func() time.Time

	mu   sync.Mutex
	recs map[string]memQuota
}

type memQuota struct {
	v       []byte
	expires time.Time
}

// ErrQuotaTableFull is returned by MemoryQuotas when it holds its maximum
// of unexpired records.
var ErrQuotaTableFull = errors.New("relay: quota table full")

// NewMemoryQuotas returns an empty MemoryQuotas of at most max records.
func NewMemoryQuotas(max int) *MemoryQuotas {
	return &MemoryQuotas{max: max, now: time.Now, recs: map[string]memQuota{}}
}

// Charge implements QuotaStore.
func (m *MemoryQuotas) Charge(keys [][]byte, f func(old [][]byte) ([][]byte, time.Duration, error)) error {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	old := make([][]byte, len(keys))
	fresh := 0
	for i, k := range keys {
		if r, ok := m.recs[string(k)]; ok && now.Before(r.expires) {
			old[i] = r.v
		} else {
			fresh++
		}
	}
	if fresh > 0 && len(m.recs)+fresh > m.max {
		for k, r := range m.recs {
			if !now.Before(r.expires) {
				delete(m.recs, k)
			}
		}
		if len(m.recs)+fresh > m.max {
			return ErrQuotaTableFull
		}
	}
	updated, ttl, err := f(old)
	if err != nil {
		return err
	}
	if len(updated) != len(keys) {
		return errQuotaRecord
	}
	for i, k := range keys {
		m.recs[string(k)] = memQuota{v: updated[i], expires: now.Add(ttl)}
	}
	return nil
}

var issuanceScopes = [2]string{"issue-device", "issue-tenant"}

// reserveIssuance counts n tokens against the device's and its tenant's
// issuance quotas of the day of now, durably, or answers 429 until the
// next UTC day (over quota) or 503 (the quota store failed) and returns
// false (docs/spec/api.md §Anonymous-token issuance).
func (r *Relay) reserveIssuance(w http.ResponseWriter, mb sealed.MailboxID, n int, l IssuanceLimits, now time.Time) bool {
	err := chargeDay(r.opts.Quotas, mb[:], mb.Tenant(), int64(n), [2]int64{int64(l.PerDevicePerDay), int64(l.PerTenantPerDay)}, issuanceScopes, now)
	var qr *quotaRefused
	switch {
	case err == nil:
		return true
	case errors.As(err, &qr):
		r.met.rateLimited.WithLabelValues(qr.scope).Inc()
		httpserve.TooMany(w, qr.wait)
	default:
		r.quotaUnavailable(w, "issue")
	}
	return false
}

// refundIssuance returns n tokens reserved on the day of now that were
// not issued. A failed refund leaves them counted (an under-grant).
func (r *Relay) refundIssuance(mb sealed.MailboxID, n int, l IssuanceLimits, now time.Time) {
	chargeDay(r.opts.Quotas, mb[:], mb.Tenant(), -int64(n), [2]int64{int64(l.PerDevicePerDay), int64(l.PerTenantPerDay)}, issuanceScopes, now)
}
