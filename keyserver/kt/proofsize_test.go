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
// proofs at 1,000,000 and 10,000,000 labels: the map path, the VRF proof
// and the log inclusion proof (2^20 epochs, a year of 30-second epochs)
// together at most 1.5 KB (1,536 bytes), on average over present labels.
// Every size comes from a real encoding: the map proofs from vmap maps
// built to have each path shape that 200,000 sampled labels have (the
// shape alone sets a proof's size), the VRF proof from kt.EvaluateLabel,
// the inclusion proof from a crypto/tlog tree of 2^20 entries, all inside
// a LookupResponse. The checkpoint note and the value are reported apart.
func TestLookupProofSizeSynthetic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 2^20-leaf log")
	}
	w := newWorld(t, 76)
	rec := must(w.d.Records(org.Label{User: w.alice}))[0]
	label, pi := kt.EvaluateLabel(w.d.VRF, kt.UserAlpha(w.tenant, w.alice))
	// The log: 2^20 entries, the last one proven.
	ctx := context.Background()
	const epochs = 1 << 20
	tree := must(tlog.NewTree(ctx, tlog.NewMemoryNodeStore(), 0))
	leaves := make([][]byte, 0, 1<<16)
	var entry kt.EpochEntry
	for e := range uint64(epochs) {
		entry = kt.EpochEntry{Epoch: e, Time: t0.Add(time.Duration(e) * 30 * time.Second), MapRoot: vmap.Hash{byte(e)}}
		leaves = append(leaves, must(entry.Marshal()))
		if len(leaves) == cap(leaves) {
			must(tree.Append(ctx, leaves...))
			leaves = leaves[:0]
		}
	}
	incl := must(tree.InclusionProof(ctx, epochs-1, epochs))
	r := rand.New(rand.NewPCG(76, 76))
	const target = 1536
	for _, n := range []int{1_000_000, 10_000_000} {
		t.Run(fmt.Sprintf("labels=%d", n), func(t *testing.T) {
			const samples = 200_000
			shapes := pathShapes(n, samples, r)
			type sized struct {
				core, whole, count int
			}
			var all []sized
			var sum, sumWhole float64
			for s, count := range shapes {
				resp := &kt.LookupResponse{
					Proof:  kt.LabelProof{Entry: entry, Inclusion: incl, VRFProof: pi, MapProof: syntheticProof(t, label, s, r)},
					Record: rec,
				}
				enc := must(resp.Marshal())
				mp := must(resp.Proof.MapProof.Marshal())
				// map_proof<1..2^16-1>, vrf_proof[80], inclusion<0..2^16-1>.
				core := 2 + len(mp) + len(resp.Proof.VRFProof) + 2 + 32*len(resp.Proof.Inclusion)
				whole := len(enc) - len(rec.Value) // without the value; the note is empty here
				all = append(all, sized{core, whole, count})
				sum += float64(core * count)
				sumWhole += float64(whole * count)
			}
			slices.SortFunc(all, func(a, b sized) int { return a.core - b.core })
			quantile := func(q float64) int {
				acc := 0
				for _, s := range all {
					if acc += s.count; float64(acc) >= q*samples {
						return s.core
					}
				}
				return all[len(all)-1].core
			}
			mean := sum / samples
			t.Logf("%d labels, %d path shapes over %d labels: map + VRF + log inclusion (%d hashes): mean %.0f B, median %d, 99%% %d, 99.9%% %d, max %d (target ≤ %d)",
				n, len(all), samples, len(incl), mean, quantile(0.5), quantile(0.99), quantile(0.999), all[len(all)-1].core, target)
			t.Logf("the whole LookupResponse without the value and checkpoint note: mean %.0f B", sumWhole/samples)
			if mean > target {
				t.Errorf("map + VRF + log inclusion averages %.0f bytes at %d labels, over %d", mean, n, target)
			}
		})
	}
}
