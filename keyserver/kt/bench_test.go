package kt_test

// Sizes and verification times of docs/spec/directory.md §Performance:
//
//	go test -run TestLookupProofSize -v ./keyserver/kt/
//	go test -run '^$' -bench VerifyLookup ./keyserver/kt/
//
// TestLookupProofSize and BenchmarkVerifyLookup1M build a synthetic
// directory once per process: a map of 1,000,000 random labels plus one
// real user, and a log of 2^20 epochs (a year of 30-second epochs) whose
// last entry holds that map's root.

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/vmap"
)

const (
	synthLabels = 1_000_000
	synthEpochs = 1 << 20
)

type synth struct {
	w      *world
	m      *vmap.Map
	labels []vmap.Label // random labels
	tree   *tlog.Tree
	resp   *kt.LookupResponse // alice at the last epoch, relative to size 0
	absent *kt.LookupResponse // a user who does not exist, likewise
	signed []byte             // the checkpoint with the log's signatures only
	now    time.Time
	build  time.Duration
}

var (
	synthOnce sync.Once
	synthDir  *synth
)

func getSynth(t testing.TB) *synth {
	synthOnce.Do(func() {
		start := time.Now()
		s := &synth{w: newWorld(t, 70)}
		d := s.w.d
		// Alice's real record, from the real directory.
		rec := must(d.Records(org.Label{User: s.w.alice}))[0]
		alpha := kt.UserAlpha(s.w.tenant, s.w.alice)
		label, pi := kt.EvaluateLabel(d.VRF, alpha)
		cm := must(kt.Commit(label, rec))
		// The map: 1M random labels and alice, in one epoch.
		r := rand.New(rand.NewPCG(70, 70))
		cs := make([]vmap.Change, synthLabels, synthLabels+1)
		s.labels = make([]vmap.Label, synthLabels)
		for i := range cs {
			binary.LittleEndian.PutUint64(cs[i].Label[:], r.Uint64())
			binary.LittleEndian.PutUint64(cs[i].Label[8:], r.Uint64())
			binary.LittleEndian.PutUint64(cs[i].Label[16:], r.Uint64())
			binary.LittleEndian.PutUint64(cs[i].Label[24:], r.Uint64())
			binary.LittleEndian.PutUint64(cs[i].Commitment[:], r.Uint64())
			s.labels[i] = cs[i].Label
		}
		cs = append(cs, vmap.Change{Label: label, Commitment: cm})
		store := vmap.NewMemStore()
		s.m = vmap.New(store, nil)
		b := must(s.m.Update(0, cs))
		ok(t, store.Commit(b))
		// The log: 2^20-1 filler epochs, then the entry with the map root.
		ctx := context.Background()
		s.tree = must(tlog.NewTree(ctx, tlog.NewMemoryNodeStore(), 0))
		filler := make([][]byte, 0, 1<<16)
		for i := 0; i < synthEpochs-1; i++ {
			e := kt.EpochEntry{Epoch: uint64(i), Time: t0.Add(time.Duration(i) * 30 * time.Second), MapRoot: vmap.Hash{byte(i)}}
			filler = append(filler, must(e.Marshal()))
			if len(filler) == cap(filler) || i == synthEpochs-2 {
				must(s.tree.Append(ctx, filler...))
				filler = filler[:0]
			}
		}
		s.now = t0.Add(time.Duration(synthEpochs) * 30 * time.Second)
		entry := kt.EpochEntry{Epoch: synthEpochs - 1, Time: s.now, MapRoot: b.Root}
		must(s.tree.Append(ctx, must(entry.Marshal())))
		cp := &tlog.Checkpoint{Origin: d.Origin, Size: synthEpochs, Root: must(s.tree.Root(ctx, synthEpochs))}
		s.signed = must(tlog.SignCheckpoint(cp, d.LogKey))
		note := s.signed
		for _, ks := range d.WitnessKeys {
			for _, k := range ks {
				cs := must(tlog.CosignCheckpoint(k, cp, s.now))
				note = must(tlog.AddCosignatures(note, must(cs.Marshal())))
			}
		}
		s.resp = &kt.LookupResponse{
			Checkpoint: kt.CheckpointUpdate{Note: note},
			Proof: kt.LabelProof{
				Entry: entry, Inclusion: must(s.tree.InclusionProof(ctx, synthEpochs-1, synthEpochs)),
				VRFProof: pi, MapProof: must(s.m.Prove(0, label)),
			},
			Record: rec,
		}
		alpha9 := kt.UserAlpha(s.w.tenant, uid(9))
		label9, pi9 := kt.EvaluateLabel(d.VRF, alpha9)
		s.absent = &kt.LookupResponse{Checkpoint: s.resp.Checkpoint, Proof: s.resp.Proof}
		s.absent.Proof.VRFProof, s.absent.Proof.MapProof = pi9, must(s.m.Prove(0, label9))
		s.build = time.Since(start)
		synthDir = s
	})
	return synthDir
}

// proofSize is the size of a lookup response without the checkpoint note
// and without the value's bytes: framing, the checkpoint update's fixed
// fields, the epoch entry, the log inclusion proof, the VRF proof, the map
// proof and the record's fixed fields.
func proofSize(t testing.TB, r *kt.LookupResponse) (total, mapProof, inclusion int) {
	enc := must(r.Marshal())
	mp := must(r.Proof.MapProof.Marshal())
	total = len(enc) - len(r.Checkpoint.Note)
	if r.Record != nil {
		total -= len(r.Record.Value)
	}
	return total, 2 + len(mp), 2 + 32*len(r.Proof.Inclusion)
}

// TestLookupProofSize measures the lookup proof at 1,000,000 labels and
// 2^20 epochs, and checks the target: map path + VRF proof + log
// inclusion at most 1.5 KB (checkpoint and cosignatures reported apart).
func TestLookupProofSize(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 1M-label map and a 2^20-leaf log")
	}
	s := getSynth(t)
	t.Logf("synthetic directory built in %v", s.build)
	// The real response verifies.
	c := s.w.client(t)
	res := must(c.VerifyLookup(s.w.tenant, s.w.alice, s.resp, s.now.Add(time.Minute)))
	if res.Epoch != synthEpochs-1 {
		t.Fatal("epoch")
	}
	// Mean over random present labels (an inclusion proof each).
	var sumMap, maxMap int
	n := 2000
	for i := range n {
		mp := must(must(s.m.Prove(0, s.labels[i*(synthLabels/n)])).Marshal())
		sumMap += 2 + len(mp)
		maxMap = max(maxMap, 2+len(mp))
	}
	meanMap := float64(sumMap) / float64(n)
	total, aliceMap, incl := proofSize(t, s.resp)
	const vrfProof = 80
	core := meanMap + vrfProof + float64(incl)
	other := float64(total - aliceMap - incl - vrfProof)
	note := len(s.resp.Checkpoint.Note)
	t.Logf("labels %d, epochs %d", synthLabels, synthEpochs)
	t.Logf("map proof: mean %.0f bytes, max %d (of %d labels); alice's %d", meanMap, maxMap, n, aliceMap)
	t.Logf("VRF proof %d bytes; log inclusion %d bytes (%d hashes)", vrfProof, incl, len(s.resp.Proof.Inclusion))
	t.Logf("map + VRF + log inclusion: mean %.0f bytes (target ≤ 1536)", core)
	t.Logf("epoch entry, record fields and framing: %.0f bytes; whole proof without value and checkpoint: mean %.0f bytes", other, core+other)
	t.Logf("checkpoint note %d bytes, of which log signatures and text %d, cosignatures %d (%d witnesses, Ed25519 + ML-DSA-44)",
		note, len(s.signed), note-len(s.signed), len(s.w.d.Witnesses))
	t.Logf("value (alice's UserValue, 1 device) %d bytes", len(s.resp.Record.Value))
	if core > 1536 {
		t.Errorf("map + VRF + log inclusion is %.0f bytes, over 1.5 KB", core)
	}
	// Monitoring: a history with nothing new, at every epoch (a new
	// checkpoint each time) or every 15 minutes.
	h := &kt.HistoryResponse{Checkpoint: s.resp.Checkpoint, Proof: s.resp.Proof, Since: 1}
	hs := len(must(h.Marshal()))
	t.Logf("monitoring, no change: %d bytes per step (%d without the checkpoint); per day: %.1f MB at every 30 s epoch, %.2f MB every 15 min",
		hs, hs-note, float64(hs*2880)/1e6, float64(hs*96)/1e6)
	// A day of 30-second epochs: 2,880 leaves.
	day := must(tlog.NewTree(context.Background(), tlog.NewMemoryNodeStore(), 0))
	leaves := make([][]byte, 2880)
	for i := range leaves {
		leaves[i] = []byte{byte(i), byte(i >> 8)}
	}
	must(day.Append(context.Background(), leaves...))
	p := must(day.InclusionProof(context.Background(), 2879, 2880))
	t.Logf("at 2,880 epochs (a day): log inclusion %d bytes (%d hashes), map + VRF + log %.0f bytes", 2+32*len(p), len(p), meanMap+vrfProof+float64(2+32*len(p)))
}

// benchVerify runs the sub-benchmarks of the verification of resp, a
// lookup of user relative to tree size 0:
//
//   - first: a client that trusts the checkpoint already (so no signature
//     on the checkpoint is checked) but has not seen this label: the VRF
//     proof, the log inclusion, the map proof, the record and, for a user
//     who has a value, the value's CA signatures (each certificate and
//     timeline entry carries a hybrid Ed25519 + ML-DSA-65 signature);
//   - first-cached: as first, but the client's signature cache already
//     holds the value's certificates and entries (verified in an earlier
//     version of the value, and kept in the client state);
//   - repeat: the same client again, for an unchanged value: its VRF proof
//     and its value were verified before and are cached;
//   - new-checkpoint: a client with no checkpoint, which also checks the
//     checkpoint's hybrid log signature and the witnesses' cosignatures
//     (Ed25519 and ML-DSA-44 for each of three witnesses, quorum 2).
func benchVerify(b *testing.B, w *world, user org.UserID, resp *kt.LookupResponse, now time.Time) {
	verify := func(c *kt.Client, r *kt.LookupResponse) {
		_, err := c.VerifyLookup(w.tenant, user, r, now)
		if err != nil && err != kt.ErrNotFound {
			b.Fatal(err)
		}
	}
	c0 := w.client(b)
	must(c0.UpdateCheckpoint(&kt.ConsistencyResponse{Checkpoint: resp.Checkpoint}, now))
	state := must(c0.MarshalState())
	r := *resp
	r.Checkpoint = kt.CheckpointUpdate{BaseSize: c0.TreeSize()} // the trusted checkpoint
	b.Run("first", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			c := must(kt.RestoreClient(w.d.Config(maxAge), state))
			b.StartTimer()
			verify(c, &r)
		}
	})
	// first-cached: as first, with the state of a client that verified
	// the same value before, whose signature cache holds the value's
	// certificates and entries, so only the KT proof and the
	// certificates' validity remain.
	cv := must(kt.RestoreClient(w.d.Config(maxAge), state))
	verify(cv, &r)
	cached := must(cv.MarshalState())
	b.Run("first-cached", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			c := must(kt.RestoreClient(w.d.Config(maxAge), cached))
			b.StartTimer()
			verify(c, &r)
		}
	})
	b.Run("repeat", func(b *testing.B) {
		c := must(kt.RestoreClient(w.d.Config(maxAge), state))
		verify(c, &r)
		for b.Loop() {
			verify(c, &r)
		}
	})
	b.Run("new-checkpoint", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			c := w.client(b)
			b.StartTimer()
			verify(c, resp)
		}
	})
}

// BenchmarkVerifyLookup1M verifies lookups in the synthetic directory of
// 1,000,000 labels and 2^20 epochs: "absence" of a user who does not exist
// (the key-transparency proof alone), "user" of alice (one device; her
// first value, with two timeline entries).
func BenchmarkVerifyLookup1M(b *testing.B) {
	s := getSynth(b)
	b.Run("absence", func(b *testing.B) { benchVerify(b, s.w, uid(9), s.absent, s.now.Add(time.Minute)) })
	b.Run("user", func(b *testing.B) { benchVerify(b, s.w, s.w.alice, s.resp, s.now.Add(time.Minute)) })
}

// BenchmarkVerifyLookup verifies lookups in a small directory: "absence"
// of a user who does not exist (the key-transparency proof alone), "user"
// of alice as in BenchmarkVerifyLookup1M.
func BenchmarkVerifyLookup(b *testing.B) {
	w := newWorld(b, 71)
	b.Run("absence", func(b *testing.B) { benchVerify(b, w, uid(9), must(w.d.Lookup(uid(9), 0)), at(2)) })
	b.Run("user", func(b *testing.B) { benchVerify(b, w, w.alice, must(w.d.Lookup(w.alice, 0)), at(2)) })
}

// BenchmarkVerifyLookupDevices verifies the lookup of a user with 1, 2 and
// 3 devices, and of a user who does not exist (devices=0: the
// key-transparency proof alone), on a client that already trusts the
// checkpoint (so the checkpoint's signatures are not part of it):
//
//   - cold: first sight of the label, nothing cached: the VRF proof, the
//     log inclusion, the map proof, the record, and every hybrid CA
//     signature of the value (a user with n devices has n certificates
//     and n+1 timeline entries: user added, then one device added per
//     device);
//   - warm: the same, with the value's certificates and entries in the
//     signature cache (verified before, in an earlier version of the
//     value).
//
// A lookup verifies only the last entry's CA signature, which
// authenticates the other entries and the certificates they carry
// (directory.md §Client verification, step 8): for these users, whose
// devices were all added in the epoch of their latest value, that one
// signature covers every certificate too. spread-3 is a user
// whose three devices were added in three epochs, the latest value
// carrying the last one's entry only: a cold lookup verifies that entry
// and the two other certificates (sub-benchmark spread-3).
//
// Each iteration drops the client's caches (DropCaches) rather than
// building a new client, so that instruction counts (.ci/instructions)
// measure the verification alone.
func BenchmarkVerifyLookupDevices(b *testing.B) {
	w := newWorld(b, 73) // alice: 1 device, bob: 2
	carol, dave := uid(3), uid(4)
	ok(b, w.d.AddUser(carol, "Carol", at(1)))
	c1 := must(w.d.Enrol(carol, nil, at(1)))
	must(w.d.Enrol(carol, c1, at(1)))
	must(w.d.Enrol(carol, c1, at(1)))
	ok(b, w.d.AddUser(dave, "Dave", at(1)))
	d1 := must(w.d.Enrol(dave, nil, at(1)))
	must(w.d.PublishEpoch(at(2)))
	must(w.d.Enrol(dave, d1, at(2)))
	must(w.d.PublishEpoch(at(2)))
	must(w.d.Enrol(dave, d1, at(2)))
	must(w.d.PublishEpoch(at(2)))
	now := at(3)
	for _, u := range []struct {
		name string
		user org.UserID
		n    int
	}{{"devices=0", uid(9), 0}, {"devices=1", w.alice, 1}, {"devices=2", w.bob, 2}, {"devices=3", carol, 3},
		{"spread-3", dave, 3}} { // not "devices=3…": -bench devices=3 would match it too
		user, n := u.user, u.n
		resp := must(w.d.Lookup(user, 0))
		b.Run(u.name, func(b *testing.B) {
			c := w.client(b)
			must(c.UpdateCheckpoint(&kt.ConsistencyResponse{Checkpoint: resp.Checkpoint}, now))
			r := *resp
			r.Checkpoint = kt.CheckpointUpdate{BaseSize: c.TreeSize()}
			verify := func() {
				res, err := c.VerifyLookup(w.tenant, user, &r, now)
				if n == 0 && err == kt.ErrNotFound {
					return
				}
				if err != nil || len(res.Devices) != n {
					b.Fatal(err)
				}
			}
			b.Run("cold", func(b *testing.B) {
				for b.Loop() {
					c.DropCaches(false)
					verify()
				}
			})
			verify()
			b.Run("warm", func(b *testing.B) {
				for b.Loop() {
					c.DropCaches(true)
					verify()
				}
			})
		})
	}
}

// BenchmarkPrimitive measures the primitives a cold lookup is made of:
// one hybrid CA signature over a device certificate's TBS size (both
// halves, as keys.OrgPublicKey.Verify does them), each half alone, and
// the VRF proof verification.
func BenchmarkPrimitive(b *testing.B) {
	w := newWorld(b, 74)
	ca := must(keys.GenerateOrgKey(rand.NewChaCha8([32]byte{74})))
	msg := make([]byte, 290)
	sig := must(ca.Sign(msg))
	edMsg := make([]byte, 256)
	edSig := must(ca.Ed25519Signer().Sign(nil, edMsg, crypto.Hash(0)))
	pqSig := must(ca.MLDSA65Signer().Sign(nil, edMsg, crypto.Hash(0)))
	pub := ca.Public()
	b.Run("hybrid-verify", func(b *testing.B) {
		for b.Loop() {
			ok(b, pub.Verify(msg, sig))
		}
	})
	b.Run("ed25519-verify", func(b *testing.B) {
		for b.Loop() {
			if !ed25519.Verify(pub.Ed25519(), edMsg, edSig) {
				b.Fatal("ed25519")
			}
		}
	})
	b.Run("mldsa65-verify", func(b *testing.B) {
		for b.Loop() {
			if !pub.MLDSA65().Verify(edMsg, nil, pqSig) {
				b.Fatal("mldsa65")
			}
		}
	})
	alpha := kt.UserAlpha(w.tenant, w.alice)
	_, pi := kt.EvaluateLabel(w.d.VRF, alpha)
	b.Run("vrf-verify", func(b *testing.B) {
		for b.Loop() {
			must(kt.VerifyLabel(w.d.VRF.Public(), alpha, pi))
		}
	})
}
