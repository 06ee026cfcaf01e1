package kt_test

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/vmap"
)

// pathShape is the shape of a present label's map proof: the depth of its
// leaf and how many of the siblings on its path are not empty (each a
// 32-byte hash in the encoding; empty ones cost one bitmap bit).
type pathShape struct{ depth, hashes int }

// pathShapes samples the shape of a random present label's path in a map
// of n uniformly random labels. The sibling at depth d is not empty
// exactly when another label shares exactly d leading bits with it, which
// each of the other n-1 labels does with probability 2^-(d+1): with the
// usual Poisson approximation the depths are independent, with
// P(not empty) = 1 - exp(-(n-1) 2^-(d+1)). The leaf sits one below the
// deepest non-empty sibling (vmap.md §Compression).
func pathShapes(n, samples int, r *rand.Rand) map[pathShape]int {
	const maxD = 96 // (n-1) 2^-97 is negligible for any n here
	var p [maxD]float64
	for d := range p {
		p[d] = -math.Expm1(-float64(n-1) * math.Ldexp(1, -(d+1)))
	}
	out := map[pathShape]int{}
	for range samples {
		var s pathShape
		for d := range p {
			if p[d] == 1 || r.Float64() < p[d] {
				s.hashes++
				s.depth = d + 1
			}
		}
		out[s]++
	}
	return out
}

// syntheticProof returns a real map proof of label with the given shape:
// a map holding label and, for each of the shape's non-empty siblings,
// one label that shares exactly that many leading bits with it (depths 0
// to hashes-2, and depth-1). The proof is vmap's own, verified against
// the map's root.
func syntheticProof(t *testing.T, label vmap.Label, s pathShape, r *rand.Rand) *vmap.Proof {
	t.Helper()
	var ds []int
	for d := 0; d < s.hashes-1; d++ {
		ds = append(ds, d)
	}
	if s.hashes > 0 {
		ds = append(ds, s.depth-1)
	}
	cs := []vmap.Change{{Label: label, Commitment: vmap.Commitment{1}}}
	for _, d := range ds {
		l := label
		for i := d + 1; i < vmap.LabelSize*8; i++ { // random below the split
			l[i/8] &^= 0x80 >> (i % 8)
			l[i/8] |= byte(r.IntN(2)<<7) >> (i % 8)
		}
		l[d/8] ^= 0x80 >> (d % 8)
		cs = append(cs, vmap.Change{Label: l, Commitment: vmap.Commitment{2}})
	}
	store := vmap.NewMemStore()
	m := vmap.New(store, nil)
	b := must(m.Update(0, cs))
	ok(t, store.Commit(b))
	p := must(m.Prove(0, label))
	res, err := vmap.Verify(b.Root, label, p)
	ok(t, err)
	// kind, depth, bitmap, the non-empty siblings, the commitment.
	enc := must(p.Marshal())
	hashes := (len(enc) - 3 - (len(p.Siblings)+7)/8 - vmap.CommitmentSize) / vmap.HashSize
	if !res.Present || len(p.Siblings) != s.depth || hashes != s.hashes {
		t.Fatalf("synthetic proof has depth %d and %d hashes, want %+v", len(p.Siblings), hashes, s)
	}
	return p
}

// TestLookupProofSizeSynthetic checks the size target for lookup
// proofs, 1.5 KB, read as 1,500 bytes: map path + VRF proof + log
// inclusion, on the 99th percentile and the largest of 200,000 sampled
// present labels, at 1,000,000 and 10,000,000 labels, in each case a
// lookup can be in (docs/spec/directory.md §Proof bundles):
//
//   - held: against a checkpoint whose last entry the client holds, no
//     inclusion proof (§Held entry);
//   - first after enrolment: a new device's first lookup while its
//     enrolment's checkpoint is still the latest, the inclusion proof of
//     a real lookup after kt.Enrol (the answer carries the checkpoint's
//     last entry, which the device then holds: none);
//   - anchored, g epochs behind: the first lookup of a client that trusts
//     the tree of size n − g and is sent the checkpoint of size n, whose
//     inclusion proof is anchored in the consistency proof (§Anchored
//     inclusion), for g from one epoch to 30 days of 30-second epochs;
//   - whole: the whole inclusion proof of the last entry, for a client
//     that trusts no checkpoint yet (enrolled while the directory served
//     none under its bundle), or one that holds no entry of the
//     checkpoint it trusts while the directory has no newer one (a state
//     saved before entries were held).
//
// It asserts the 99th percentile ≤ 1,500 B for held, first after
// enrolment and every anchored case, and the largest ≤ 1,500 B for held,
// first after enrolment and anchored up to a week behind; the whole-proof
// case is reported. Every size comes from a real
// encoding: the map proofs from vmap maps built to have each path shape
// that the sampled labels have (the shape alone sets a proof's size), the
// VRF proof from kt.EvaluateLabel, the inclusion proofs from a crypto/tlog
// tree of 2^20 epochs (a year: the whole proof of its last entry is 20
// hashes, the most at that size; each anchored proof is taken at the tree
// size that makes it largest for its gap, ⌊log2 g⌋ hashes), all inside a
// LookupResponse. The checkpoint note, its consistency proof and the value
// are reported apart. -short: the same at both sizes with 50,000 samples
// and a 2^16-epoch log (gaps up to a week; the whole proof is then 16
// hashes, not 20).
func TestLookupProofSizeSynthetic(t *testing.T) {
	maps, samples, epochs := []int{1_000_000, 10_000_000}, 200_000, uint64(1<<20)
	if testing.Short() {
		samples, epochs = 50_000, 1<<16
	}
	w := newWorld(t, 76)
	rec := must(w.d.Records(org.Label{User: w.alice}))[0]
	label, pi := kt.EvaluateLabel(w.d.VRF, kt.UserAlpha(w.tenant, w.alice))
	// The log: the last of its entries proven.
	ctx := context.Background()
	tree := must(tlog.NewTree(ctx, tlog.NewMemoryNodeStore(), 0))
	leaves := make([][]byte, 0, 1<<16)
	var entry kt.EpochEntry
	for e := range epochs {
		entry = kt.EpochEntry{Epoch: e, Time: t0.Add(time.Duration(e) * 30 * time.Second), MapRoot: vmap.Hash{byte(e)}}
		leaves = append(leaves, must(entry.Marshal()))
		if len(leaves) == cap(leaves) || e == epochs-1 {
			must(tree.Append(ctx, leaves...))
			leaves = leaves[:0]
		}
	}
	// The log part of each case, and whether its largest size is checked.
	type logCase struct {
		name  string
		incl  []tlog.Hash
		gap   uint64 // epochs behind; 0: not anchored
		isMax bool
	}
	cases := []logCase{{name: "held", isMax: true}}
	// The first lookup after enrolment while the enrolment's checkpoint
	// is still the latest, the real way: kt.Enrol with the directory's
	// answer, which carries the checkpoint's last entry, then the lookup
	// the directory sends for the entry the new client holds.
	ew := newEnrolWorld(t)
	ec, _, err := kt.Enrol(ew.code, ew.req, ew.answer, maxAge, 0, ew.real)
	ok(t, err)
	held, isHeld := ec.HeldEntry()
	if !isHeld {
		t.Fatal("the enrolled client holds no entry")
	}
	first := must(ew.d.LookupHeld(ew.bob, ec.TreeSize(), held))
	must(ec.VerifyLookup(ew.d.Tenant.ID(), ew.bob, first, ew.real))
	cases = append(cases, logCase{name: "first after enrolment", incl: first.Proof.Inclusion, isMax: true})
	for _, g := range []struct {
		name string
		gap  uint64
	}{{"1 epoch", 1}, {"1 hour", 120}, {"1 day", 2880}, {"1 week", 20160}, {"30 days", 86400}} {
		if g.gap >= epochs/2 {
			continue
		}
		// The largest anchored proof for the gap: the consistency proof's
		// node over the last leaf is a perfect subtree of 2^b leaves,
		// b = ⌊log2 g⌋, when the new size is 2^a + 2^b (a > b).
		size := epochs/2 + 1<<(bits.Len64(g.gap)-1)
		cases = append(cases, logCase{
			name: "anchored, " + g.name + " behind", gap: g.gap, isMax: g.gap <= 20160,
			incl: must(tree.AnchoredInclusionProof(ctx, size-g.gap, size)),
		})
	}
	whole := must(tree.InclusionProof(ctx, epochs-1, epochs))
	cases = append(cases, logCase{name: "whole inclusion proof", incl: whole})
	r := rand.New(rand.NewPCG(76, 76))
	const target = 1500
	for _, n := range maps {
		t.Run(fmt.Sprintf("labels=%d", n), func(t *testing.T) {
			shapes := pathShapes(n, samples, r)
			// base: map + VRF and the framing of the three fields
			// (map_proof<1..2^16-1>, vrf_proof[80], inclusion<0..2^16-1>).
			type sized struct{ base, count int }
			var all []sized
			for s, count := range shapes {
				resp := &kt.LookupResponse{
					Proof:  kt.LabelProof{Entry: entry, Inclusion: whole, VRFProof: pi, MapProof: syntheticProof(t, label, s, r)},
					Record: rec,
				}
				enc := must(resp.Marshal())
				mp := must(resp.Proof.MapProof.Marshal())
				base := 2 + len(mp) + len(resp.Proof.VRFProof) + 2
				if got := len(enc) - len(rec.Value); got <= base+32*len(whole) {
					t.Fatalf("LookupResponse of %d bytes without the value, its parts %d", got, base+32*len(whole))
				}
				all = append(all, sized{base, count})
			}
			slices.SortFunc(all, func(a, b sized) int { return a.base - b.base })
			quantile := func(q float64) int {
				acc := 0
				for _, s := range all {
					if acc += s.count; float64(acc) >= q*float64(samples) {
						return s.base
					}
				}
				return all[len(all)-1].base
			}
			var sum float64
			for _, s := range all {
				sum += float64(s.base * s.count)
			}
			mean, median, p99, p999, largest := sum/float64(samples), quantile(0.5), quantile(0.99), quantile(0.999), all[len(all)-1].base
			t.Logf("%d labels, %d path shapes over %d labels, log of %d epochs (target ≤ %d B): map + VRF + log inclusion", n, len(all), samples, epochs, target)
			for _, c := range cases {
				l := 32 * len(c.incl)
				t.Logf("  %-32s %2d hashes: mean %.0f B, median %d, 99%% %d, 99.9%% %d, max %d",
					c.name, len(c.incl), mean+float64(l), median+l, p99+l, p999+l, largest+l)
				if c.gap != 0 && len(c.incl) != bits.Len64(c.gap)-1 {
					t.Errorf("%s: %d hashes, want the largest for the gap, ⌊log2 %d⌋", c.name, len(c.incl), c.gap)
				}
				if c.name == "whole inclusion proof" {
					continue // reported
				}
				if p99+l > target {
					t.Errorf("%s: %d bytes on the 99th percentile at %d labels, over %d", c.name, p99+l, n, target)
				}
				if c.isMax && largest+l > target {
					t.Errorf("%s: largest %d bytes at %d labels, over %d", c.name, largest+l, n, target)
				}
			}
		})
	}
}
