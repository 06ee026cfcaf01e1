package relay

import (
	"errors"
	"testing"
	"time"
)

// TestQuotaRecords: the day counters and byte buckets of quota.go over
// MemoryQuotas: limits per device and per tenant, refunds, a refund that
// arrives after the day is over (it must not reset the new day's count),
// refill of byte buckets, corrupt records, and a full table.
func TestQuotaRecords(t *testing.T) {
	q := NewMemoryQuotas(100)
	mb := make([]byte, 32)
	mb[0] = 1
	tenant := [16]byte{1}
	day := time.Date(2030, 1, 1, 23, 59, 59, 0, time.UTC)
	next := day.Add(2 * time.Second)
	lim := [2]int64{5, 8}
	charge := func(n int64, now time.Time) error { return chargeDay(q, mb, tenant, n, lim, issuanceScopes, now) }
	refusal := func(err error) string {
		var qr *quotaRefused
		if !errors.As(err, &qr) {
			t.Fatalf("not a refusal: %v", err)
		}
		return qr.scope
	}
	if err := charge(5, day); err != nil {
		t.Fatal(err)
	}
	if s := refusal(charge(1, day)); s != "issue-device" {
		t.Fatalf("over the device quota: %s", s)
	}
	if err := charge(-2, day); err != nil {
		t.Fatal(err)
	}
	if err := charge(2, day); err != nil {
		t.Fatalf("after a refund: %v", err)
	}
	// The next day starts at 0; a late refund of yesterday's count
	// leaves today's as it is.
	if err := charge(5, next); err != nil {
		t.Fatal(err)
	}
	if err := charge(-5, day); err != nil {
		t.Fatal(err)
	}
	if s := refusal(charge(1, next)); s != "issue-device" {
		t.Fatalf("a late refund reset the day: %s", s)
	}
	// Another device of the tenant meets the tenant's cap.
	other := make([]byte, 32)
	other[0] = 2
	if err := chargeDay(q, other, tenant, 3, lim, issuanceScopes, next); err != nil {
		t.Fatal(err)
	}
	if s := refusal(chargeDay(q, other, tenant, 1, lim, issuanceScopes, next)); s != "issue-tenant" {
		t.Fatalf("over the tenant cap: %s", s)
	}

	// Byte buckets: 100 bytes, refilled at 10/s.
	rates := [2]Rate{{PerSecond: 10, Burst: 100}, {PerSecond: 10, Burst: 1000}}
	take := func(n int64, now time.Time) error { return chargeBytes(q, mb, tenant, n, rates, budgetScopes, now) }
	if err := take(100, day); err != nil {
		t.Fatal(err)
	}
	var qr *quotaRefused
	if err := take(10, day); !errors.As(err, &qr) || qr.scope != "device" || qr.wait != time.Second {
		t.Fatalf("empty bucket: %v", err)
	}
	if err := take(10, day.Add(time.Second)); err != nil {
		t.Fatalf("after a second's refill: %v", err)
	}
	if err := take(-50, day.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := take(50, day.Add(time.Second)); err != nil {
		t.Fatalf("after giving back: %v", err)
	}

	// A corrupt record refuses the charge with errQuotaRecord.
	q.recs[string(quotaKeys(quotaIssuance, mb, tenant)[0])] = memQuota{v: []byte{1}, expires: time.Now().Add(time.Hour)}
	if err := charge(1, next); !errors.Is(err, errQuotaRecord) {
		t.Fatalf("corrupt record: %v", err)
	}
	// A full table refuses new keys.
	small := NewMemoryQuotas(2)
	if err := chargeDay(small, mb, tenant, 1, lim, issuanceScopes, day); err != nil {
		t.Fatal(err)
	}
	if err := chargeDay(small, other, tenant, 1, lim, issuanceScopes, day); !errors.Is(err, ErrQuotaTableFull) {
		t.Fatalf("full table: %v", err)
	}
}

// FuzzQuotaRecords: whatever a stored quota record holds, a charge either
// fails with errQuotaRecord or a refusal, or stores well-formed records
// that parse again; it never panics, never stores a negative count or a
// bucket above its burst.
func FuzzQuotaRecords(f *testing.F) {
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	day := now.Unix() / 86400
	f.Add(dayCounter(day, 3), int64(2))
	f.Add(dayCounter(day-1, 99), int64(-1))
	f.Add(bucketRecord(50, now.Add(-time.Second)), int64(40))
	f.Add([]byte{}, int64(1))
	f.Fuzz(func(t *testing.T, rec []byte, n int64) {
		n %= 1 << 20
		mb, tenant := make([]byte, 32), [16]byte{1}
		for _, class := range []byte{quotaIssuance, quotaBytes} {
			q := NewMemoryQuotas(10)
			keys := quotaKeys(class, mb, tenant)
			q.recs[string(keys[0])] = memQuota{v: rec, expires: time.Now().Add(time.Hour)}
			var err error
			if class == quotaIssuance {
				err = chargeDay(q, mb, tenant, n, [2]int64{100, 1000}, issuanceScopes, now)
			} else {
				err = chargeBytes(q, mb, tenant, n, [2]Rate{{PerSecond: 1, Burst: 100}, {PerSecond: 1, Burst: 1000}}, budgetScopes, now)
			}
			var qr *quotaRefused
			if err != nil {
				if !errors.Is(err, errQuotaRecord) && !errors.As(err, &qr) {
					t.Fatalf("class %c: %v", class, err)
				}
				continue
			}
			v := q.recs[string(keys[0])].v
			if class == quotaIssuance {
				used, today, err := parseDayCounter(v, day)
				if err != nil || (today && used < 0) {
					t.Fatalf("stored day counter %x: %d %v", v, used, err)
				}
			} else {
				tok, _, err := parseBucket(v, 100, now)
				if err != nil || tok < 0 || tok > 100 {
					t.Fatalf("stored bucket %x: %v %v", v, tok, err)
				}
			}
		}
	})
}
