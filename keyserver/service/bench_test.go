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
// Metrics: ms/op (the epoch), and its phases: records-ms, map-ms, log-ms
// (append + checkpoint signature), store-ms (the durable commit);
// record-B (bytes of one value record).

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/crypto/vrf"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
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
	return bmust(v.Marshal())
}

type benchDir struct {
	t     *Tenant
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
	d := &benchDir{t: t, epoch: t.Head().Epoch + 1, now: benchT0}
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
	ep, err := d.t.commit(context.Background(), d.epoch, d.now, ups, nil)
	if err != nil {
		b.Fatal(err)
	}
	d.epoch++
	return ep
}

func benchPublish(b *testing.B, n int) {
	d := newBenchDir(b, n, 100_000)
	var tm Timings
	b.ResetTimer()
	for range b.N {
		ep := d.publish(b, d.ups)
		tm.Records += ep.Timings.Records
		tm.Map += ep.Timings.Map
		tm.Log += ep.Timings.Log
		tm.Store += ep.Timings.Store
	}
	nb := float64(b.N)
	b.ReportMetric(float64(tm.Records.Milliseconds())/nb, "records-ms")
	b.ReportMetric(float64(tm.Map.Milliseconds())/nb, "map-ms")
	b.ReportMetric(float64(tm.Log.Milliseconds())/nb, "log-ms")
	b.ReportMetric(float64(tm.Store.Milliseconds())/nb, "store-ms")
	b.ReportMetric(float64(kt.RecordOverhead+len(d.ups[0].Value)), "record-B")
}

// BenchmarkPublishEpoch32k publishes epochs of 32,768 updates.
func BenchmarkPublishEpoch32k(b *testing.B) { benchPublish(b, 32768) }

// BenchmarkPublishEpoch1k publishes epochs of 1,024 updates.
func BenchmarkPublishEpoch1k(b *testing.B) { benchPublish(b, 1024) }

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
func BenchmarkEnrolment(b *testing.B) {
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
	b.ResetTimer()
	for _, r := range reqs {
		bmust(tn.RedeemEnrolmentCode(r.code, r.r, nil, benchT0))
	}
}

// BenchmarkMonitoringDownload measures what a device downloads to monitor
// its own label when nothing changed: a HistoryResponse since its latest
// version, with the new checkpoint (the log grew by one epoch) and its
// consistency proof from the previous one. The directory is synthetic:
// 1,000,000 labels in the map, and a log of 2^20 epochs (a year of
// 30-second epochs). It reports the response size with three witnesses
// cosigning with Ed25519 and ML-DSA-44 (hybrid-B) and with Ed25519 only
// (ed25519-B), its parts, and the download per device per day at one
// response per 30-second epoch (hybrid-MB/day, ed25519-MB/day). HTTP
// framing is not counted.
func BenchmarkMonitoringDownload(b *testing.B) {
	monitorOnce.Do(func() { monitorResp, monitorNotes = buildMonitoring(b) })
	resp, hybrid, ed, signed := monitorResp, monitorNotes[0], monitorNotes[1], monitorNotes[2]
	var hybridSize, edSize int
	b.ResetTimer()
	for range b.N {
		resp.Checkpoint.Note = hybrid
		hybridSize = len(bmust(resp.Marshal()))
		resp.Checkpoint.Note = ed
		edSize = len(bmust(resp.Marshal()))
	}
	b.StopTimer()
	mp := bmust(resp.Proof.MapProof.Marshal())
	const perDay = 24 * 60 * 2 // 30-second epochs
	b.ReportMetric(float64(hybridSize), "hybrid-B")
	b.ReportMetric(float64(edSize), "ed25519-B")
	b.ReportMetric(float64(hybridSize*perDay)/1e6, "hybrid-MB/day")
	b.ReportMetric(float64(edSize*perDay)/1e6, "ed25519-MB/day")
	b.ReportMetric(float64(len(hybrid)), "note-hybrid-B")
	b.ReportMetric(float64(len(signed)), "note-log-only-B")
	b.ReportMetric(float64(len(mp)), "map-proof-B")
	b.ReportMetric(float64(32*len(resp.Proof.Inclusion)), "inclusion-B")
	b.ReportMetric(float64(32*len(resp.Checkpoint.Consistency)), "consistency-B")
}

var (
	monitorOnce  sync.Once
	monitorResp  *kt.HistoryResponse
	monitorNotes [3][]byte // hybrid cosignatures, Ed25519 cosignatures, log signatures only
)

func buildMonitoring(b *testing.B) (*kt.HistoryResponse, [3][]byte) {
	ctx := context.Background()
	rnd := mrand.NewChaCha8([32]byte{4})
	id := org.TenantID{0xbe, 0x02}
	tk, cp, wkeys := benchTenantParams(rnd, id)
	// The device's label and its latest record.
	label, pi := kt.EvaluateLabel(tk.VRF, kt.UserAlpha(id, org.UserID{0x4d}))
	rec, cm := bmust2(kt.NextRecord(tk.Secret, label, 0, nil, realUserValue(b)))
	const labels = 1_000_000
	cs := make([]vmap.Change, labels, labels+1)
	for i := range cs {
		rnd.Read(cs[i].Label[:])
		rnd.Read(cs[i].Commitment[:])
	}
	cs = append(cs, vmap.Change{Label: label, Commitment: cm})
	ms := vmap.NewMemStore()
	m := vmap.New(ms, nil)
	batch := bmust(m.Update(0, cs))
	if err := ms.Commit(batch); err != nil {
		b.Fatal(err)
	}
	// The log: 2^20 epochs, the last one's entry with the map root.
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
	resp := &kt.HistoryResponse{
		Checkpoint: kt.CheckpointUpdate{BaseSize: n - 1, Note: hybrid, Consistency: bmust(tree.ConsistencyProof(ctx, n-1, n))},
		Proof: kt.LabelProof{Entry: entry, Inclusion: bmust(tree.InclusionProof(ctx, n-1, n)), VRFProof: pi,
			MapProof: bmust(m.Prove(0, label))},
		Since: rec.Version,
	}
	return resp, [3][]byte{hybrid, ed, signed}
}

func bmust2[A, B any](a A, c B, err error) (A, B) {
	if err != nil {
		panic(err)
	}
	return a, c
}

func vrfKey(rnd io.Reader) (*vrf.PrivateKey, error) { return vrf.GenerateKey(rnd) }
