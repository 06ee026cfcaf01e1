package service

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"testing"
	"time"

	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/store/badgerstore"
)

// BenchmarkFirstEpochAfterRestart publishes, on a tenant just opened over
// a badger store (a restart: empty memory caches), an epoch in which
// 32,768 users published before get a new value:
//
//	go test -run '^$' -bench FirstEpochAfterRestart -benchtime 2x ./keyserver/service/
//
// stored: the VRF outputs the store kept (vrfcache.go) are read in one
// batch; evaluated: the store's outputs are dropped first, so that every
// label is evaluated again, as before the outputs were kept. records-ms
// is the records phase (labels, latest versions, records, commitments)
// after warm-ms, the batch read of the stored outputs (timed apart; the
// epoch's own finds them in memory); vrf-evals the evaluations the epoch
// made. The store was written just
// before, so its files are in the page cache: a restart after a reboot
// also reads them from disk.
func BenchmarkFirstEpochAfterRestart(b *testing.B) {
	for _, drop := range []bool{false, true} {
		name := "stored"
		if drop {
			name = "evaluated"
		}
		b.Run(name, func(b *testing.B) { benchFirstEpoch(b, 32768, drop) })
	}
}

func benchFirstEpoch(b *testing.B, n int, drop bool) {
	ctx := context.Background()
	rnd := mrand.NewChaCha8([32]byte{3})
	id := org.TenantID{0xbe, 0x02}
	tk, cp, _ := benchTenantParams(rnd, id)
	st := bmust(badgerstore.Open(ctx, badgerstore.Options{Dir: b.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	b.Cleanup(func() { st.Close() })
	var svc *Service
	open := func() *Tenant {
		svc = bmust(New(ctx, Options{
			Tenants: []TenantConfig{{ID: id, Store: st, Keys: tk, Create: cp}},
			Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return benchT0 },
		}))
		return svc.Tenant(id)
	}
	// evaluations reads moat_directory_vrf_evaluations_total.
	evaluations := func() int {
		for _, mf := range bmust(svc.reg.Gather()) {
			if mf.GetName() == "moat_directory_vrf_evaluations_total" {
				return int(mf.GetMetric()[0].GetCounter().GetValue())
			}
		}
		return 0
	}
	t := open()
	value := realUserValue(b)
	ups := make([]org.Update, n)
	for i := range ups {
		var u org.UserID
		binary.BigEndian.PutUint64(u[:], uint64(i+1))
		u[15] = 0x77
		ups[i] = org.Update{Label: org.Label{User: u}, Value: value}
	}
	epoch, now := t.Head().Epoch+1, benchT0
	publish := func(t *Tenant) *Epoch {
		t.mu.Lock()
		defer t.mu.Unlock()
		now = now.Add(30 * time.Second)
		ep, err := t.commit(ctx, epoch, now, ups, nil)
		if err != nil {
			b.Fatal(err)
		}
		t.saveLabels(ctx)
		epoch++
		return ep
	}
	publish(t) // evaluates and keeps every label
	var records, warm time.Duration
	evals := 0
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		if drop {
			if err := st.DropVRFOutputs(ctx, [32]byte{}); err != nil {
				b.Fatal(err)
			}
		}
		t = open()
		start := evaluations()
		b.StartTimer()
		ws := time.Now()
		t.warmLabels(ctx, ups) // what commit does first, timed apart
		warm += time.Since(ws)
		ep := publish(t)
		records += ep.Timings.Records
		evals += evaluations() - start
	}
	b.ReportMetric(float64(warm.Milliseconds())/float64(b.N), "warm-ms")
	b.ReportMetric(float64(records.Milliseconds())/float64(b.N), "records-ms")
	b.ReportMetric(float64(evals)/float64(b.N), "vrf-evals")
}
