package service

// Benchmarks of issue #3's service targets (docs/performance.md):
//
//	go test -run '^$' -bench 'PublishEpoch|VRF32k|CertSign|Enrolment|MonitoringDownload' -benchtime 5x -timeout 60m ./keyserver/service/
//
// BenchmarkPublishEpoch32k and BenchmarkPublishEpoch1k publish epochs of a
// tenant on badgerstore in a temporary directory. Setup: a map of 100,000
// labels (filler labels with cached VRF outputs, plus the benchmark's
// users, whose VRF outputs are precomputed with the real key), one record
// each. Each iteration then publishes one epoch in which every one of the
// benchmark's users gets a new value: value records (nonces, commitments),
// the vmap update, the log append, the checkpoint's hybrid signature and
// one durable badger commit (Tenant.commit, what PublishEpoch does after
// org.Tenant.Publish and before the witnesses). The value is a real
// org.UserValue with one device certificate (the values, and their
// certificates, are precomputed: certificate signing is measured by
// BenchmarkCertSign). Witness cosigning is network-bound and not included.
//
// BenchmarkPublishEpoch32k and 1k start each epoch as the 30-second
// cadence does, after the store's background cleanup of the epoch before
// has run (untimed: cleanup-ms, cleanup-cpu-ms);
// BenchmarkPublishEpoch32kBackToBack runs them back to back, each meeting
// the previous one's cleanup.
//
// Metrics: ms/op (the epoch, mean), median-ms and max-ms (the median and
// the worst epoch's wall time), cpu-ms and median-cpu-ms (the process's
// CPU time per epoch, mean and median, badger's background work
// included, and back to back the store's cleanup after the previous
// epoch), and the epoch's
// phases: records-ms, map-ms, log-ms
// (append + checkpoint signature), store-ms (the durable commit);
// record-B (bytes of one value record). MOAT_BENCH_CPUPROFILE=file writes
// a CPU profile of the timed epochs only.

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"runtime/pprof"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/crypto/vrf"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/store"
	"github.com/moat-im/moat/keyserver/store/badgerstore"
	"github.com/moat-im/moat/keyserver/vmap"
)

var benchT0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func bmust[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// benchTenantParams returns keys and creation parameters of a tenant with
// three hybrid witnesses.
func benchTenantParams(rnd io.Reader, id org.TenantID) (*TenantKeys, *CreateParams, [][]*tlog.WitnessPrivateKey) {
	fk := bmust(GenerateFileKeys(rnd))
	var admins []*org.AdminKey
	for i := range 2 {
		admins = append(admins, bmust(org.GenerateAdminKey(rnd, org.AdminID{0xad, byte(i + 1)}, org.AdminEd25519)).Public())
	}
	ws := org.WitnessSet{Quorum: 2}
	var wkeys [][]*tlog.WitnessPrivateKey
	for i := range 3 {
		name := fmt.Sprintf("witness%d.example/w", i+1)
		ed := bmust(tlog.GenerateWitnessKey(rnd, name, tlog.CosignatureEd25519))
		pq := bmust(tlog.GenerateWitnessKey(rnd, name, tlog.CosignatureMLDSA44))
		ws.Witnesses = append(ws.Witnesses, org.WitnessKey{Name: name, Ed25519: ed.Public().Bytes(), MLDSA44: pq.Public().Bytes()})
		wkeys = append(wkeys, []*tlog.WitnessPrivateKey{ed, pq})
	}
	return fk.TenantKeys(), &CreateParams{Origin: Origin("moat.example", id), Admins: admins, Threshold: 2, Witnesses: ws}, wkeys
}

// realUserValue returns the encoding of a user's value with one device
// certificate, as Publish writes it once the device_added entry is
// published (the steady state of a user with one device).
func realUserValue(b testing.TB) []byte {
	rnd := mrand.NewChaCha8([32]byte{1})
	ca := bmust(keys.GenerateOrgKey(rnd))
	admin := bmust(org.GenerateAdminKey(rnd, org.AdminID{1}, org.AdminEd25519))
	admin2 := bmust(org.GenerateAdminKey(rnd, org.AdminID{2}, org.AdminEd25519))
	wk := bmust(tlog.GenerateWitnessKey(rnd, "w.example/w", tlog.CosignatureEd25519))
	log := bmust(keys.GenerateLogKey(rnd))
	vk := bmust(vrfKey(rnd))
	tn := bmust(org.NewTenant(org.TenantParams{ID: org.TenantID{1}, Admins: []*org.AdminKey{admin.Public(), admin2.Public()}, Threshold: 2,
		LogOrigin: "moat.example/directory/01", Log: log.Public(), VRF: vk.Public(),
		Witnesses: org.WitnessSet{Quorum: 1, Witnesses: []org.WitnessKey{{Name: "w.example/w", Ed25519: wk.Public().Bytes()}}}}, ca, benchT0))
	uid := org.UserID{7}
	bmust(tn.AddUser(admin.Public().ID(), uid, "Alice Example", org.DepartmentID{}, benchT0))
	code := bmust(tn.IssueEnrolmentCode(rnd, admin.Public().ID(), uid, time.Hour, benchT0))
	id := bmust(keys.GenerateDeviceIdentity(rnd))
	mk := bmust(keys.GenerateIdentitySigningKey(rnd))
	mls := bmust(org.NewMLSSignatureKey(org.MLSSchemeEd25519, mk.Public().Raw()))
	bmust(tn.RedeemEnrolmentCode(code, bmust(org.NewEnrolmentRequest(code, id, mls)), nil, benchT0))
	bmust(tn.Publish(benchT0))
	v := bmust(tn.UserValue(uid))
	value := bmust(v.Marshal())
	// The user's records as the epoch that publishes the value writes
	// them: before ValuesStored, the certificate inline; after, referred to.
	userRec := func() []byte {
		for _, r := range bmust(tn.PendingRecords()) {
			if u, ok := r.Key.User(); ok && u == uid {
				return r.Value
			}
		}
		b.Fatal("no user record")
		return nil
	}
	benchRecordsOnce.Do(func() {
		benchRecords.inline = userRec()
		tn.ValuesStored([]org.ValueRef{{User: uid, Label: [32]byte{1}, Version: 1}})
		benchRecords.ref = userRec()
		for _, r := range bmust(tn.PendingRecords()) {
			if r.Key[0] == 0x01 {
				benchRecords.core = r.Value
			}
		}
	})
	return value
}

// benchRecords holds a real user's state record, of the size an epoch
// writes for each user it publishes: with the certificate inline (as
// before records referred to values) and referred to (as now), and the
// tenant's core record.
var (
	benchRecordsOnce sync.Once
	benchRecords     struct{ inline, ref, core []byte }
)

// benchTenant is the tenant id under which the benchmarks write their
// users' state records: records of the real size, which the benchmark's
// tenant does not load (its own state does not hold these users).
var benchTenant = [16]byte{0xbe, 0xbe}

// benchStateWrites returns what an epoch publishing ups writes of the
// tenant state, as MOAT_TENANT_RECORDS selects: "ref" (the default: what
// the directory writes, each user's record referring to the certificate
// in its value), "inline" (each record repeating the certificate, as
// before) or "none" (no tenant records, as the benchmarks measured
// before): a record per user of the real size and the core record, under
// benchTenant. The records' encoding cost is measured by keyserver/org
// BenchmarkEpochState.
func benchStateWrites(ups []org.Update) []store.TenantWrite {
	var tmpl []byte
	switch os.Getenv("MOAT_TENANT_RECORDS") {
	case "none":
		return nil
	case "inline":
		tmpl = benchRecords.inline
	default:
		tmpl = benchRecords.ref
	}
	tw := store.TenantWrite{ID: benchTenant, Records: make([]store.TenantRecord, 0, len(ups)+1)}
	tw.Records = append(tw.Records, store.TenantRecord{Key: store.TenantKey{0x01}, Value: benchRecords.core})
	for _, up := range ups {
		var k store.TenantKey
		k[0] = 0x06
		copy(k[1:], up.Label.User[:])
		v := append([]byte(nil), tmpl...)
		copy(v, up.Label.User[:]) // a user record starts with the user id
		tw.Records = append(tw.Records, store.TenantRecord{Key: k, Value: v})
	}
	return []store.TenantWrite{tw}
}

type benchDir struct {
	t     *Tenant
	st    *badgerstore.Store
	ups   []org.Update
	epoch uint64
	now   time.Time
}

// newBenchDir opens a tenant on badgerstore in dir, with filler labels so
// that the map holds total labels, and the users of n updates with their
// VRF outputs precomputed.
func newBenchDir(b *testing.B, n, total int) *benchDir {
	ctx := context.Background()
	rnd := mrand.NewChaCha8([32]byte{2})
	id := org.TenantID{0xbe, 0x01}
	tk, cp, _ := benchTenantParams(rnd, id)
	st := bmust(badgerstore.Open(ctx, badgerstore.Options{Dir: b.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	b.Cleanup(func() { st.Close() })
	svc := bmust(New(ctx, Options{
		Tenants: []TenantConfig{{ID: id, Store: st, Keys: tk, Create: cp}},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return benchT0 },
	}))
	t := svc.Tenant(id)
	value := realUserValue(b)
	d := &benchDir{t: t, st: st, epoch: t.Head().Epoch + 1, now: benchT0}
	// The benchmark's users, with real VRF outputs (precomputed).
	for i := range n {
		var u org.UserID
		binary.BigEndian.PutUint64(u[:], uint64(i+1))
		u[15] = 0x55
		t.label(kt.UserAlpha(id, u))
		d.ups = append(d.ups, org.Update{Label: org.Label{User: u}, Value: value})
	}
	// Filler users: cached random labels (no VRF evaluation), so that the
	// map has the size of a larger tenant.
	var filler []org.Update
	for i := range max(total-n, 0) {
		var u org.UserID
		binary.BigEndian.PutUint64(u[:], uint64(i+1))
		u[15] = 0xf1
		var l vmap.Label
		rnd.Read(l[:])
		t.vrfCache[string(kt.UserAlpha(id, u))] = vrfOutput{label: l, proof: make([]byte, 80)}
		filler = append(filler, org.Update{Label: org.Label{User: u}, Value: value})
	}
	for len(filler) > 0 {
		k := min(len(filler), 50_000)
		d.publish(b, filler[:k])
		filler = filler[k:]
	}
	d.publish(b, d.ups) // the users' first versions
	return d
}

func (d *benchDir) publish(b *testing.B, ups []org.Update) *Epoch {
	d.t.mu.Lock()
	defer d.t.mu.Unlock()
	d.now = d.now.Add(30 * time.Second)
	ep, err := d.t.commit(context.Background(), d.epoch, d.now, ups, func([]org.ValueRef) ([]store.TenantWrite, error) {
		return benchStateWrites(ups), nil
	})
	if err != nil {
		b.Fatal(err)
	}
	d.epoch++
	return ep
}

// benchPublish publishes b.N epochs of n updates. With cadence, each
// epoch starts as one would at the directory's 30-second cadence: the
// store's cleanup of the epoch before (gc.go), which runs in the
// background after CommitEpoch returns, has run, untimed (its time is
// cleanup-ms, its CPU cleanup-cpu-ms, neither in ms/op or cpu-ms).
// Without, the epochs run back to back and each meets the previous one's
// cleanup.
func benchPublish(b *testing.B, n int, cadence bool) {
	d := newBenchDir(b, n, 100_000)
	if cadence {
		d.st.WaitCleanup()
	}
	var cleanup, cleanupCPU time.Duration
	var tm Timings
	if f := os.Getenv("MOAT_BENCH_CPUPROFILE"); f != "" {
		// The epochs only, without the setup that -test.cpuprofile
		// includes (the last run's: each run rewrites the file).
		out := bmust(os.Create(f))
		if err := pprof.StartCPUProfile(out); err != nil {
			b.Fatal(err)
		}
		defer func() { pprof.StopCPUProfile(); out.Close() }()
	}
	b.ResetTimer()
	cpu0 := processCPU()
	cpus := make([]time.Duration, 0, b.N)
	walls := make([]time.Duration, 0, b.N)
	for range b.N {
		c0, w0 := processCPU(), time.Now()
		ep := d.publish(b, d.ups)
		walls = append(walls, time.Since(w0))
		cpus = append(cpus, processCPU()-c0)
		if cadence {
			b.StopTimer()
			t0, c1 := time.Now(), processCPU()
			d.st.WaitCleanup()
			cleanup += time.Since(t0)
			cleanupCPU += processCPU() - c1
			b.StartTimer()
		}
		tm.Records += ep.Timings.Records
		tm.Map += ep.Timings.Map
		tm.Log += ep.Timings.Log
		tm.Store += ep.Timings.Store
	}
	cpu := processCPU() - cpu0 - cleanupCPU
	nb := float64(b.N)
	if cadence {
		b.ReportMetric(float64(cleanup.Milliseconds())/nb, "cleanup-ms")
		b.ReportMetric(float64(cleanupCPU.Milliseconds())/nb, "cleanup-cpu-ms")
	}
	b.ReportMetric(float64(cpu.Milliseconds())/nb, "cpu-ms")
	slices.Sort(cpus)
	b.ReportMetric(float64(cpus[len(cpus)/2].Milliseconds()), "median-cpu-ms")
	slices.Sort(walls)
	b.ReportMetric(float64(walls[len(walls)/2].Milliseconds()), "median-ms")
	b.ReportMetric(float64(walls[len(walls)-1].Milliseconds()), "max-ms")
	b.ReportMetric(float64(tm.Records.Milliseconds())/nb, "records-ms")
	b.ReportMetric(float64(tm.Map.Milliseconds())/nb, "map-ms")
	b.ReportMetric(float64(tm.Log.Milliseconds())/nb, "log-ms")
	b.ReportMetric(float64(tm.Store.Milliseconds())/nb, "store-ms")
	b.ReportMetric(float64(kt.RecordOverhead+len(d.ups[0].Value)), "record-B")
}

// BenchmarkPublishEpoch32k publishes epochs of 32,768 updates.
func BenchmarkPublishEpoch32k(b *testing.B) { benchPublish(b, 32768, true) }

// BenchmarkPublishEpoch32kBackToBack publishes them back to back.
func BenchmarkPublishEpoch32kBackToBack(b *testing.B) { benchPublish(b, 32768, false) }

// BenchmarkPublishEpoch1k publishes epochs of 1,024 updates.
func BenchmarkPublishEpoch1k(b *testing.B) { benchPublish(b, 1024, true) }

// BenchmarkVRF32k evaluates the map labels of 32,768 users (ECVRF prove
// and proof-to-hash), what an epoch of 32,768 new users costs before the
// VRF cache holds them.
func BenchmarkVRF32k(b *testing.B) {
	sk := bmust(vrfKey(rand.Reader))
	alphas := make([][]byte, 32768)
	for i := range alphas {
		var u org.UserID
		binary.BigEndian.PutUint64(u[:], uint64(i+1))
		alphas[i] = kt.UserAlpha(org.TenantID{1}, u)
	}
	b.ResetTimer()
	for range b.N {
		for _, a := range alphas {
			kt.EvaluateLabel(sk, a)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(len(alphas)), "µs/label")
}

// BenchmarkCertSign signs one device certificate's worth of bytes with the
// org CA's hybrid key (Ed25519 + ML-DSA-65), as org does for each
// certificate and each timeline entry.
func BenchmarkCertSign(b *testing.B) {
	ca := bmust(keys.GenerateOrgKey(rand.Reader))
	tbs := make([]byte, 208) // a DeviceCertificate TBS: ids, validity, keys
	rand.Read(tbs)
	b.ResetTimer()
	for range b.N {
		bmust(ca.Sign(tbs))
	}
}

// BenchmarkEnrolment redeems an enrolment code: the request's signature,
// dual control, the certificate and the device_added timeline entry (two
// CA signatures, each checked after signing).
func BenchmarkEnrolment(b *testing.B) { benchEnrolment(b, false) }

// BenchmarkEnrolmentJournal is BenchmarkEnrolment followed by encoding
// the records the redemption changed (org.Tenant.JournalRecords), which
// the directory writes before answering: its cost over
// BenchmarkEnrolment is the encoding's; the write is
// badgerstore.BenchmarkWritePending.
func BenchmarkEnrolmentJournal(b *testing.B) { benchEnrolment(b, true) }

func benchEnrolment(b *testing.B, journal bool) {
	rnd := mrand.NewChaCha8([32]byte{3})
	ca := bmust(keys.GenerateOrgKey(rnd))
	admin := bmust(org.GenerateAdminKey(rnd, org.AdminID{1}, org.AdminEd25519))
	admin2 := bmust(org.GenerateAdminKey(rnd, org.AdminID{2}, org.AdminEd25519))
	wk := bmust(tlog.GenerateWitnessKey(rnd, "w.example/w", tlog.CosignatureEd25519))
	tn := bmust(org.NewTenant(org.TenantParams{ID: org.TenantID{1}, Admins: []*org.AdminKey{admin.Public(), admin2.Public()}, Threshold: 2,
		LogOrigin: "moat.example/directory/01", Log: bmust(keys.GenerateLogKey(rnd)).Public(), VRF: bmust(vrfKey(rnd)).Public(),
		Witnesses: org.WitnessSet{Quorum: 1, Witnesses: []org.WitnessKey{{Name: "w.example/w", Ed25519: wk.Public().Bytes()}}},
		Config:    org.Config{TenantFailureLimit: 1 << 30}}, ca, benchT0))
	type req struct {
		code *org.EnrolmentCode
		r    *org.EnrolmentRequest
	}
	reqs := make([]req, b.N)
	for i := range reqs {
		var u org.UserID
		binary.BigEndian.PutUint64(u[:], uint64(i+1))
		bmust(tn.AddUser(admin.Public().ID(), u, "User", org.DepartmentID{}, benchT0))
		code := bmust(tn.IssueEnrolmentCode(rnd, admin.Public().ID(), u, time.Hour, benchT0))
		id := bmust(keys.GenerateDeviceIdentity(rnd))
		mk := bmust(keys.GenerateIdentitySigningKey(rnd))
		mls := bmust(org.NewMLSSignatureKey(org.MLSSchemeEd25519, mk.Public().Raw()))
		reqs[i] = req{code, bmust(org.NewEnrolmentRequest(code, id, mls))}
	}
	if journal {
		tn.MarkPersisted()
	}
	b.ResetTimer()
	for _, r := range reqs {
		bmust(tn.RedeemEnrolmentCode(r.code, r.r, nil, benchT0))
		if journal {
			if recs := bmust(tn.JournalRecords()); len(recs) < 2 {
				b.Fatalf("%d records journaled", len(recs))
			}
		}
	}
}

// BenchmarkMonitoringDownload measures what a device downloads a day to
// monitor its own label at 30-second epochs (docs/spec/directory.md
// §Per-epoch monitoring): MonitorResponses for a label that does not
// change, on a synthetic directory of 1,000,000 labels and a log of 2^20
// epochs (a year), whose other labels change k times an epoch (k = 1, 10,
// 100: a day of 2,880 epochs is simulated for each, the map updated epoch
// by epoch). The device polls every epoch, every 15 minutes, every hour or
// once a day; each response carries the new checkpoint (three witnesses
// cosigning with Ed25519 and ML-DSA-44, or with Ed25519 only) and its
// consistency proof, the label's map proof at each epoch since the last
// poll (delta-encoded), and one range proof of their log entries. The
// metrics are MB a day, named k<k>-<interval>-MB/day (hybrid cosignatures)
// and k<k>-<interval>-ed-MB/day (Ed25519 only), and the mean size of an
// epoch's map proof after the first of a page, k<k>-epoch-B. HTTP framing
// is not counted.
func BenchmarkMonitoringDownload(b *testing.B) {
	monitorOnce.Do(func() { monitorData = buildMonitoring(b) })
	md := monitorData
	const perDay = 24 * 60 * 2 // 30-second epochs
	intervals := []struct {
		name   string
		epochs int
	}{{"epoch", 1}, {"15min", 30}, {"hour", 120}, {"day", perDay}}
	type result struct{ hybrid, ed float64 }
	results := map[string]result{}
	b.ResetTimer()
	for range b.N {
		for _, k := range md.ks {
			proofs := md.proofs[k]
			for _, iv := range intervals {
				var hybrid, ed int
				for from := 0; from < perDay; from += iv.epochs {
					page := proofs[from : from+iv.epochs]
					for i, note := range [][]byte{md.hybrid, md.ed} {
						n := len(bmust(md.response(page, note).Marshal()))
						if i == 0 {
							hybrid += n
						} else {
							ed += n
						}
					}
				}
				results[fmt.Sprintf("k%d-%s", k, iv.name)] = result{float64(hybrid) / 1e6, float64(ed) / 1e6}
			}
		}
	}
	b.StopTimer()
	for name, r := range results {
		b.ReportMetric(r.hybrid, name+"-MB/day")
		b.ReportMetric(r.ed, name+"-ed-MB/day")
	}
	for _, k := range md.ks {
		whole := len(bmust(md.response(md.proofs[k], md.ed).Marshal()))
		first := len(bmust(md.response(md.proofs[k][:1], md.ed).Marshal()))
		b.ReportMetric(float64(whole-first)/float64(perDay-1), fmt.Sprintf("k%d-epoch-B", k))
	}
	b.ReportMetric(float64(len(md.hybrid)), "note-hybrid-B")
	b.ReportMetric(float64(len(md.ed)), "note-ed25519-B")
}

// monitoring is the synthetic directory of BenchmarkMonitoringDownload.
type monitoring struct {
	ks       []int
	proofs   map[int][]kt.MonitoredEpoch // per k, the label at each epoch of a day
	pi       []byte
	n        uint64 // the log's size
	tree     *tlog.Tree
	hybrid   []byte // the checkpoint with hybrid cosignatures
	ed       []byte // with Ed25519 cosignatures
	consProf map[int][]tlog.Hash
}

// response returns the MonitorResponse of a poll whose page is the last
// len(page) epochs of the log.
func (m *monitoring) response(page []kt.MonitoredEpoch, note []byte) *kt.MonitorResponse {
	start := m.n - uint64(len(page))
	cons, ok := m.consProf[len(page)]
	if !ok {
		cons = bmust(m.tree.ConsistencyProof(context.Background(), start, m.n))
		m.consProf[len(page)] = cons
	}
	return &kt.MonitorResponse{
		Checkpoint: kt.CheckpointUpdate{BaseSize: start, Note: note, Consistency: cons},
		VRFProof:   m.pi, Since: 1, Start: start, Epochs: page,
		RangeProof: make([]tlog.Hash, tlog.RangeProofLen(start, m.n, m.n)),
	}
}

var (
	monitorOnce sync.Once
	monitorData *monitoring
)

func buildMonitoring(b *testing.B) *monitoring {
	ctx := context.Background()
	rnd := mrand.NewChaCha8([32]byte{4})
	id := org.TenantID{0xbe, 0x02}
	tk, cp, wkeys := benchTenantParams(rnd, id)
	// The device's label and its record.
	label, pi := kt.EvaluateLabel(tk.VRF, kt.UserAlpha(id, org.UserID{0x4d}))
	_, cm := bmust2(kt.NextRecord(tk.Secret, label, 0, nil, realUserValue(b)))
	const labels = 1_000_000
	cs := make([]vmap.Change, labels, labels+1)
	for i := range cs {
		rnd.Read(cs[i].Label[:])
		rnd.Read(cs[i].Commitment[:])
	}
	cs = append(cs, vmap.Change{Label: label, Commitment: cm})
	ms := vmap.NewMemStore()
	mp := vmap.New(ms, nil)
	batch := bmust(mp.Update(0, cs))
	if err := ms.Commit(batch); err != nil {
		b.Fatal(err)
	}
	// A day of epochs for each k, the other labels changing (new labels
	// and new values of existing ones, half each).
	const perDay = 24 * 60 * 2
	md := &monitoring{ks: []int{1, 10, 100}, proofs: map[int][]kt.MonitoredEpoch{}, pi: pi, consProf: map[int][]tlog.Hash{}}
	epoch := uint64(0)
	t0 := benchT0
	for _, k := range md.ks {
		for range perDay {
			epoch++
			ch := make([]vmap.Change, k)
			seen := map[vmap.Label]bool{}
			for i := range ch {
				for ch[i].Label == (vmap.Label{}) || seen[ch[i].Label] {
					if i%2 == 0 {
						ch[i].Label = cs[rnd.Uint64()%labels].Label
					} else {
						rnd.Read(ch[i].Label[:])
					}
				}
				seen[ch[i].Label] = true
				rnd.Read(ch[i].Commitment[:])
			}
			batch := bmust(mp.Update(epoch, ch))
			if err := ms.Commit(batch); err != nil {
				b.Fatal(err)
			}
			md.proofs[k] = append(md.proofs[k], kt.MonitoredEpoch{
				Time: t0.Add(time.Duration(epoch) * 30 * time.Second), MapProof: bmust(mp.Prove(epoch, label))})
		}
	}
	// The log: 2^20 epochs; only its shape matters for the proofs' sizes.
	const n = 1 << 20
	tree := bmust(tlog.NewTree(ctx, tlog.NewMemoryNodeStore(), 0))
	leaves := make([][]byte, 0, 1<<16)
	var entry kt.EpochEntry
	for e := range uint64(n) {
		entry = kt.EpochEntry{Epoch: e, Time: benchT0.Add(time.Duration(e) * 30 * time.Second), MapRoot: batch.Root}
		leaves = append(leaves, bmust(entry.Marshal()))
		if len(leaves) == cap(leaves) || e == n-1 {
			bmust(tree.Append(ctx, leaves...))
			leaves = leaves[:0]
		}
	}
	ckpt := &tlog.Checkpoint{Origin: cp.Origin, Size: n, Root: bmust(tree.Root(ctx, n))}
	signed := bmust(tlog.SignCheckpoint(ckpt, tk.Log))
	hybrid, ed := signed, signed
	for _, ks := range wkeys {
		for i, k := range ks {
			line := bmust(bmust(tlog.CosignCheckpoint(k, ckpt, entry.Time)).Marshal())
			hybrid = bmust(tlog.AddCosignatures(hybrid, line))
			if i == 0 {
				ed = bmust(tlog.AddCosignatures(ed, line))
			}
		}
	}
	md.n, md.tree, md.hybrid, md.ed = n, tree, hybrid, ed
	return md
}

func bmust2[A, B any](a A, c B, err error) (A, B) {
	if err != nil {
		panic(err)
	}
	return a, c
}

func vrfKey(rnd io.Reader) (*vrf.PrivateKey, error) { return vrf.GenerateKey(rnd) }
