package org

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/moat-im/moat/keyserver/store"
	"github.com/moat-im/moat/keyserver/store/badgerstore"
	"github.com/moat-im/moat/keyserver/store/storetest"
	"golang.org/x/crypto/cryptobyte"
)

// syntheticTenant returns a tenant of n users, each with one device whose
// certificate is a copy of a real one (the real size, 3.7 KB; only the
// user, device and serial differ, so the signature does not verify: state
// loading does not re-verify signatures) and one certified-key hash, all
// published and persisted.
func syntheticTenant(tb testing.TB, n int) (*Tenant, Signer) {
	f := newFixture(tb, 60)
	_, e := f.enrol(tb, uid(1), t0)
	must(f.t.Publish(t0))
	tmpl := f.t.users[uid(1)]
	tn := f.t
	clear(tn.users)
	clear(tn.usedKeys)
	clear(tn.codes)
	for i := range n {
		var id UserID
		binary.BigEndian.PutUint64(id[:], uint64(i+1))
		id[15] = 0x5e
		c := *e.Certificate
		c.User = id
		binary.BigEndian.PutUint64(c.Device[:], uint64(i+1))
		c.Serial = uint64(i + 1)
		u := *tmpl
		u.id = id
		// Published: the user's value is stored (ValuesStored), as
		// syntheticValue returns it.
		u.label = syntheticLabel(id)
		u.devices = map[DeviceID]*device{c.Device: {cert: &c, serials: []uint64{c.Serial}, ref: 1}}
		tn.users[id] = &u
		var h [32]byte
		binary.BigEndian.PutUint64(h[:], uint64(i+1))
		h[31] = 0x4b
		tn.usedKeys[h] = true
	}
	tn.nextSerial = uint64(n + 1)
	tn.MarkPersisted()
	return tn, f.signer
}

// syntheticLabel is the map label of a synthetic user.
func syntheticLabel(id UserID) [32]byte { return sha256.Sum256(id[:]) }

// syntheticValues returns the ValueReader of a synthetic tenant: each
// user's value, encoded when read (a directory reads it from its store).
func syntheticValues(tn *Tenant) ValueReader {
	byLabel := make(map[[32]byte]UserID, len(tn.users))
	for id := range tn.users {
		byLabel[syntheticLabel(id)] = id
	}
	return func(label [32]byte, version uint32) ([]byte, error) {
		id, ok := byLabel[label]
		if !ok || version != 1 {
			return nil, ErrUnknownUser
		}
		u := tn.users[id]
		v := &UserValue{Tenant: tn.id, User: id, Head: u.head}
		for _, d := range u.devices {
			v.Certificates = append(v.Certificates, d.cert)
		}
		return v.Marshal()
	}
}

// inlineRecordSize returns the size of user u's record with every
// certificate inline, as records were before they referred to values.
func inlineRecordSize(u *user) int {
	cp := *u
	cp.devices = make(map[DeviceID]*device, len(u.devices))
	for id, d := range u.devices {
		dc := *d
		dc.ref = 0
		cp.devices[id] = &dc
	}
	return len(must(build(func(b *cryptobyte.Builder) { addUserState(b, u.id, &cp, true) })))
}

// BenchmarkEpochState measures what an epoch that changes 1,024 users
// writes of the tenant's state (docs/performance.md §Key directory), and
// what the whole-state encoding it replaced wrote:
//
//	go test -run '^$' -bench EpochState -benchtime 20x ./keyserver/org/
//	MOAT_LONG=1 go test -run '^$' -bench EpochState -benchtime 20x -timeout 1h ./keyserver/org/
//
// MOAT_LONG=1 adds 1,000,000 users in memory; MOAT_STATE_BADGER_1M=1 also
// writes them to badger (about 4 GB) and restarts from it.
//
// The synthetic users' values are stored (their records refer to the
// certificate in the value, UserRecord); the ValueReader encodes a user's
// value when the loader reads it.
//
// Metrics: epoch-B (record values and their 33-byte keys written per
// epoch), inline-epoch-B (the same with every certificate inline, as
// records were before they referred to values), records (per epoch), whole-B (the whole state, which every
// epoch wrote before), whole-encode-ms (encoding it once; the previous
// code did so twice per epoch), whole-decode-ms (decoding it, the
// previous restart), encode+load-ms (every record encoded and loaded
// through a TenantLoader, in memory). ns/op is PendingRecords and MarkPersisted
// for the 1,024 users. The badger sub-benchmark commits the epochs to a
// badgerstore and reports restart-ms: reading every record back
// (TenantRecords) through a TenantLoader after reopening the store.
func BenchmarkEpochState(b *testing.B) {
	sizes := []int{100_000}
	if os.Getenv("MOAT_LONG") == "1" {
		sizes = append(sizes, 1_000_000)
	}
	for _, n := range sizes {
		tn, _ := syntheticTenant(b, n)
		ids := tn.sortedUsers()
		b.Run(fmt.Sprintf("users=%d", n), func(b *testing.B) {
			start := time.Now()
			whole := 0
			if n <= 100_000 {
				whole = len(must(tn.MarshalBinary()))
			} else {
				// The same size without holding 4 GB: the user records
				// are the bulk, encoded as in the whole state.
				for _, k := range tn.recordKeys() {
					whole += len(must(tn.encodeRecord(k)))
				}
			}
			wholeMS := float64(time.Since(start).Microseconds()) / 1000
			var decodeMS float64
			if n <= 100_000 {
				enc := must(tn.MarshalBinary())
				start = time.Now()
				must(UnmarshalTenant(enc, tn.signer))
				decodeMS = float64(time.Since(start).Microseconds()) / 1000
			}
			var loadMS float64
			if n <= 100_000 || os.Getenv("MOAT_STATE_BADGER_1M") == "1" {
				start = time.Now()
				l := NewTenantLoader(syntheticValues(tn))
				for _, k := range tn.recordKeys() {
					ok(b, l.Add(k, must(tn.encodeRecord(k))))
				}
				must(l.Finish(tn.signer))
				loadMS = float64(time.Since(start).Microseconds()) / 1000
			}
			var bytesW, inlineW, recs int
			b.ResetTimer()
			for i := range b.N {
				for j := range 1024 {
					tn.touchUser(tn.users[ids[(i*1024+j*97)%len(ids)]])
				}
				b.StopTimer()
				for j := range 1024 {
					inlineW += StateKeySize + inlineRecordSize(tn.users[ids[(i*1024+j*97)%len(ids)]])
				}
				b.StartTimer()
				rs := must(tn.PendingRecords())
				for _, r := range rs {
					bytesW += len(r.Key) + len(r.Value)
				}
				recs += len(rs)
				tn.MarkPersisted()
			}
			b.StopTimer()
			b.ReportMetric(float64(bytesW)/float64(b.N), "epoch-B")
			b.ReportMetric(float64(inlineW)/float64(b.N), "inline-epoch-B")
			b.ReportMetric(float64(recs)/float64(b.N), "records")
			b.ReportMetric(float64(whole), "whole-B")
			if n <= 100_000 {
				b.ReportMetric(loadMS, "encode+load-ms")
				b.ReportMetric(wholeMS, "whole-encode-ms")
				b.ReportMetric(decodeMS, "whole-decode-ms")
			}
		})
		// An epoch of 32,768 changed users: PendingRecords and
		// MarkPersisted, what the directory's epoch of that size adds to
		// its records phase.
		b.Run(fmt.Sprintf("users=%d/changed=32768", n), func(b *testing.B) {
			var bytesW int
			for i := range b.N {
				b.StopTimer()
				for j := range 32768 {
					tn.touchUser(tn.users[ids[(i*32768+j*97)%len(ids)]])
				}
				b.StartTimer()
				for _, r := range must(tn.PendingRecords()) {
					bytesW += len(r.Key) + len(r.Value)
				}
				tn.MarkPersisted()
			}
			b.ReportMetric(float64(bytesW)/float64(b.N), "epoch-B")
		})
		if n <= 100_000 || os.Getenv("MOAT_STATE_BADGER_1M") == "1" {
			b.Run(fmt.Sprintf("badger/users=%d", n), func(b *testing.B) { benchBadgerState(b, tn, ids) })
		}
	}
}

// recordKeys returns the keys of every record, by key.
func (t *Tenant) recordKeys() []StateKey { return t.stateKeys() }

func benchBadgerState(b *testing.B, tn *Tenant, ids []UserID) {
	ctx := context.Background()
	dir := b.TempDir()
	st := must(badgerstore.Open(ctx, badgerstore.Options{Dir: dir, LogLevel: slog.LevelError}))
	m := storetest.NewModel(b, st, 1)
	// The whole state, in epochs of at most 100,000 records.
	keys := tn.recordKeys()
	for len(keys) > 0 {
		k := min(len(keys), 100_000)
		tw := store.TenantWrite{ID: tn.id}
		for _, key := range keys[:k] {
			tw.Records = append(tw.Records, store.TenantRecord{Key: store.TenantKey(key), Value: must(tn.encodeRecord(key))})
		}
		c := m.Build(b, storetest.Spec{})
		c.Tenants = []store.TenantWrite{tw}
		if err := m.Commit(b, ctx, c); err != nil {
			b.Fatal(err)
		}
		keys = keys[k:]
	}
	var commit time.Duration
	b.ResetTimer()
	for i := range b.N {
		for j := range 1024 {
			tn.touchUser(tn.users[ids[(i*1024+j*97)%len(ids)]])
		}
		rs := must(tn.PendingRecords())
		tw := store.TenantWrite{ID: tn.id, Records: make([]store.TenantRecord, len(rs))}
		for i, r := range rs {
			tw.Records[i] = store.TenantRecord{Key: store.TenantKey(r.Key), Value: r.Value}
		}
		c := m.Build(b, storetest.Spec{})
		c.Tenants = []store.TenantWrite{tw}
		start := time.Now()
		if err := m.Commit(b, ctx, c); err != nil {
			b.Fatal(err)
		}
		commit += time.Since(start)
		tn.MarkPersisted()
	}
	b.StopTimer()
	b.ReportMetric(float64(commit.Microseconds())/1000/float64(b.N), "commit-ms")
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	start := time.Now()
	st = must(badgerstore.Open(ctx, badgerstore.Options{Dir: dir, LogLevel: slog.LevelError}))
	defer st.Close()
	l := NewTenantLoader(syntheticValues(tn))
	if err := st.TenantRecords(ctx, tn.id, func(k store.TenantKey, v []byte) error { return l.Add(StateKey(k), v) }); err != nil {
		b.Fatal(err)
	}
	loaded := must(l.Finish(tn.signer))
	if !bytes.Equal(must(loaded.encodeRecord(stateKey(recCore, nil))), must(tn.encodeRecord(stateKey(recCore, nil)))) {
		b.Fatal("the loaded tenant differs")
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000, "restart-ms")
	// The loaded tenant's memory: the heap with and without it.
	var with, without runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&with)
	users := len(loaded.users)
	loaded = nil
	runtime.GC()
	runtime.ReadMemStats(&without)
	b.ReportMetric(float64(with.HeapAlloc-min(with.HeapAlloc, without.HeapAlloc))/float64(users), "loaded-B/user")
	if users != len(tn.users) {
		b.Fatal("the loaded tenant differs")
	}
}
