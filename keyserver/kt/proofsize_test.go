package kt_test

import (
	"context"
	"fmt"
	"math"
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
// proofs, 1.5 KB (1,536 bytes), on the 99th percentile over present
// labels: the map path and the VRF proof of a lookup against a checkpoint
// whose last entry the client holds (docs/spec/directory.md §Held entry:
// every lookup after the first of a checkpoint), at 1,000,000 and
// 10,000,000 labels. The first lookup of each checkpoint also carries the
// log inclusion proof (2^20 epochs, a year of 30-second epochs, the
// longest proof at that size): its sizes are reported, and its mean
// checked against the target. Every size comes from a real encoding: the
// map proofs from vmap maps built to have each path shape that 200,000
// sampled labels have (the shape alone sets a proof's size), the VRF
// proof from kt.EvaluateLabel, the inclusion proof from a crypto/tlog
// tree, all inside a LookupResponse. The checkpoint note and the value
// are reported apart. In -short mode it checks the same bounds on a
// 100,000-label map (20,000 samples) with a 2^10-entry log.
func TestLookupProofSizeSynthetic(t *testing.T) {
	maps, samples, epochs := []int{1_000_000, 10_000_000}, 200_000, uint64(1<<20)
	if testing.Short() {
		maps, samples, epochs = []int{100_000}, 20_000, 1<<10
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
	incl := must(tree.InclusionProof(ctx, epochs-1, epochs))
	r := rand.New(rand.NewPCG(76, 76))
	const target = 1536
	for _, n := range maps {
		t.Run(fmt.Sprintf("labels=%d", n), func(t *testing.T) {
			shapes := pathShapes(n, samples, r)
			// held: map + VRF, the inclusion proof left out; first: with it.
			type sized struct{ held, first, whole, count int }
			var all []sized
			var sumHeld, sumFirst, sumWhole float64
			for s, count := range shapes {
				resp := &kt.LookupResponse{
					Proof:  kt.LabelProof{Entry: entry, Inclusion: incl, VRFProof: pi, MapProof: syntheticProof(t, label, s, r)},
					Record: rec,
				}
				enc := must(resp.Marshal())
				mp := must(resp.Proof.MapProof.Marshal())
				// map_proof<1..2^16-1>, vrf_proof[80], inclusion<0..2^16-1>.
				held := 2 + len(mp) + len(resp.Proof.VRFProof) + 2
				first := held + 32*len(resp.Proof.Inclusion)
				whole := len(enc) - len(rec.Value) // without the value; the note is empty here
				all = append(all, sized{held, first, whole, count})
				sumHeld += float64(held * count)
				sumFirst += float64(first * count)
				sumWhole += float64(whole * count)
			}
			quantile := func(size func(sized) int, q float64) int {
				slices.SortFunc(all, func(a, b sized) int { return size(a) - size(b) })
				acc := 0
				for _, s := range all {
					if acc += s.count; float64(acc) >= q*float64(samples) {
						return size(s)
					}
				}
				return size(all[len(all)-1])
			}
			held := func(s sized) int { return s.held }
			first := func(s sized) int { return s.first }
			heldMean, firstMean := sumHeld/float64(samples), sumFirst/float64(samples)
			heldP99 := quantile(held, 0.99)
			t.Logf("%d labels, %d path shapes over %d labels (target ≤ %d B):", n, len(all), samples, target)
			t.Logf("  held entry, map + VRF: mean %.0f B, median %d, 99%% %d, 99.9%% %d, max %d",
				heldMean, quantile(held, 0.5), heldP99, quantile(held, 0.999), quantile(held, 1))
			t.Logf("  first lookup of a checkpoint, map + VRF + log inclusion (%d hashes, %d epochs): mean %.0f B, median %d, 99%% %d, 99.9%% %d, max %d",
				len(incl), epochs, firstMean, quantile(first, 0.5), quantile(first, 0.99), quantile(first, 0.999), quantile(first, 1))
			t.Logf("  the whole LookupResponse without the value and checkpoint note, with the inclusion proof: mean %.0f B", sumWhole/float64(samples))
			if heldP99 > target {
				t.Errorf("map + VRF is %d bytes on the 99th percentile at %d labels, over %d", heldP99, n, target)
			}
			if firstMean > target {
				t.Errorf("map + VRF + log inclusion averages %.0f bytes at %d labels, over %d", firstMean, n, target)
			}
		})
	}
}
