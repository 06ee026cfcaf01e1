package tlog

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	xtlog "golang.org/x/mod/sumdb/tlog"
)

// xmodTree is an independent RFC 6962 tree: golang.org/x/mod/sumdb/tlog's
// stored-hash layout, computed without any code from this package.
type xmodTree struct {
	hashes []xtlog.Hash
	n      int64
}

func (x *xmodTree) ReadHashes(indexes []int64) ([]xtlog.Hash, error) {
	out := make([]xtlog.Hash, len(indexes))
	for i, j := range indexes {
		if j >= int64(len(x.hashes)) {
			return nil, fmt.Errorf("no hash %d", j)
		}
		out[i] = x.hashes[j]
	}
	return out, nil
}

func (x *xmodTree) add(t testing.TB, data []byte) {
	hs, err := xtlog.StoredHashes(x.n, data, x)
	if err != nil {
		t.Fatal(err)
	}
	x.hashes = append(x.hashes, hs...)
	x.n++
}

func leafData(i uint64) []byte { return []byte(fmt.Sprintf("leaf %d", i)) }

// newTestTree returns a tree and its x/mod twin with n leaves appended in
// random batch sizes.
func newTestTree(t testing.TB, n uint64, rnd *rand.Rand) (*Tree, *xmodTree) {
	ctx := context.Background()
	tr, err := NewTree(ctx, NewMemoryNodeStore(), 0)
	if err != nil {
		t.Fatal(err)
	}
	x := &xmodTree{}
	for tr.Size() < n {
		batch := min(uint64(rnd.IntN(17)), n-tr.Size())
		var leaves [][]byte
		for i := uint64(0); i < batch; i++ {
			d := leafData(tr.Size() + i)
			leaves = append(leaves, d)
			x.add(t, d)
		}
		start, err := tr.Append(ctx, leaves...)
		if err != nil {
			t.Fatal(err)
		}
		if start+batch != tr.Size() {
			t.Fatalf("Append returned %d, size now %d after %d leaves", start, tr.Size(), batch)
		}
	}
	return tr, x
}

// TestTreeAgainstXMod checks every root, inclusion proof and consistency
// proof of trees up to 70 leaves against golang.org/x/mod/sumdb/tlog (which
// must produce the identical proof and accept ours) and
// transparency-dev/merkle/proof.
func TestTreeAgainstXMod(t *testing.T) {
	ctx := context.Background()
	const n = 70
	tr, x := newTestTree(t, n, rand.New(rand.NewPCG(1, 2)))
	for size := uint64(0); size <= n; size++ {
		root, err := tr.Root(ctx, size)
		if err != nil {
			t.Fatal(err)
		}
		want, err := xtlog.TreeHash(int64(size), x)
		if err != nil {
			t.Fatal(err)
		}
		if root != Hash(want) {
			t.Fatalf("Root(%d) = %v, x/mod says %v", size, root, Hash(want))
		}
		for i := uint64(0); i < size; i++ {
			p, err := tr.InclusionProof(ctx, i, size)
			if err != nil {
				t.Fatal(err)
			}
			leaf := LeafHash(leafData(i))
			xp, err := xtlog.ProveRecord(int64(size), int64(i), x)
			if err != nil {
				t.Fatal(err)
			}
			if !equalProofs(p, xp) {
				t.Fatalf("InclusionProof(%d, %d) differs from x/mod's", i, size)
			}
			if err := xtlog.CheckRecord(toXMod(p), int64(size), want, int64(i), xtlog.Hash(leaf)); err != nil {
				t.Fatalf("x/mod rejects inclusion (%d, %d): %v", i, size, err)
			}
			if err := proof.VerifyInclusion(hasher, i, size, leaf[:], toSlices(p), root[:]); err != nil {
				t.Fatalf("merkle/proof rejects inclusion (%d, %d): %v", i, size, err)
			}
			if err := VerifyInclusion(leaf, i, size, p, root); err != nil {
				t.Fatal(err)
			}
		}
		for old := uint64(0); old <= size; old++ {
			p, err := tr.ConsistencyProof(ctx, old, size)
			if err != nil {
				t.Fatal(err)
			}
			oldRoot, _ := tr.Root(ctx, old)
			if err := proof.VerifyConsistency(hasher, old, size, toSlices(p), oldRoot[:], root[:]); err != nil {
				t.Fatalf("merkle/proof rejects consistency (%d, %d): %v", old, size, err)
			}
			if old == 0 {
				if len(p) != 0 {
					t.Fatalf("consistency proof from 0 is not empty")
				}
				continue
			}
			xp, err := xtlog.ProveTree(int64(size), int64(old), x)
			if err != nil {
				t.Fatal(err)
			}
			if !equalProofs(p, xp) {
				t.Fatalf("ConsistencyProof(%d, %d) differs from x/mod's", old, size)
			}
			if err := xtlog.CheckTree(toXMod(p), int64(size), want, int64(old), xtlog.Hash(oldRoot)); err != nil {
				t.Fatalf("x/mod rejects consistency (%d, %d): %v", old, size, err)
			}
			if err := VerifyConsistency(old, size, p, oldRoot, root); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func equalProofs(a []Hash, b []xtlog.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != Hash(b[i]) {
			return false
		}
	}
	return true
}

func toXMod(p []Hash) []xtlog.Hash {
	out := make([]xtlog.Hash, len(p))
	for i := range p {
		out[i] = xtlog.Hash(p[i])
	}
	return out
}

// TestTreeLarge spot-checks a tree of 5000 leaves at random sizes.
func TestTreeLarge(t *testing.T) {
	ctx := context.Background()
	const n = 5000
	rnd := rand.New(rand.NewPCG(3, 4))
	tr, x := newTestTree(t, n, rnd)
	for range 200 {
		size := 1 + rnd.Uint64N(n)
		i, old := rnd.Uint64N(size), 1+rnd.Uint64N(size)
		root, _ := tr.Root(ctx, size)
		oldRoot, _ := tr.Root(ctx, old)
		if err := VerifyConsistency(old, size, mustConsistency(t, tr, old, size), oldRoot, root); err != nil {
			t.Fatal(err)
		}
		ip, err := tr.InclusionProof(ctx, i, size)
		if err != nil {
			t.Fatal(err)
		}
		th, _ := xtlog.TreeHash(int64(size), x)
		if err := xtlog.CheckRecord(toXMod(ip), int64(size), th, int64(i), xtlog.RecordHash(leafData(i))); err != nil {
			t.Fatal(err)
		}
		cp, err := tr.ConsistencyProof(ctx, old, size)
		if err != nil {
			t.Fatal(err)
		}
		if old < size {
			if err := xtlog.CheckTree(toXMod(cp), int64(size), th, int64(old), xtlog.Hash(oldRoot)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestTreeResume(t *testing.T) {
	ctx := context.Background()
	store := NewMemoryNodeStore()
	tr, _ := NewTree(ctx, store, 0)
	for i := uint64(0); i < 37; i++ {
		if _, err := tr.Append(ctx, leafData(i)); err != nil {
			t.Fatal(err)
		}
	}
	root37, _ := tr.Root(ctx, 37)
	// A second writer resuming at 37 (after a restart) continues the same tree.
	tr2, err := NewTree(ctx, store, 37)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := tr2.Root(ctx, 37); r != root37 {
		t.Fatal("resumed root differs")
	}
	for i := uint64(37); i < 100; i++ {
		if _, err := tr2.Append(ctx, leafData(i)); err != nil {
			t.Fatal(err)
		}
	}
	ref, _ := newTestTree(t, 100, rand.New(rand.NewPCG(5, 6)))
	r1, _ := tr2.Root(ctx, 100)
	r2, _ := ref.Root(ctx, 100)
	if r1 != r2 {
		t.Fatal("resumed tree differs from one built in one go")
	}
	// Resuming beyond what the store holds fails.
	if _, err := NewTree(ctx, store, 101); err == nil {
		t.Fatal("NewTree beyond the stored nodes succeeded")
	}
}

type failingStore struct {
	*MemoryNodeStore
	fail bool
}

func (s *failingStore) WriteNodes(ctx context.Context, nodes []Node) error {
	if s.fail {
		return errors.New("disk full")
	}
	return s.MemoryNodeStore.WriteNodes(ctx, nodes)
}

// TestTreeAppendAtomic checks that a failed write leaves the tree as it was.
func TestTreeAppendAtomic(t *testing.T) {
	ctx := context.Background()
	s := &failingStore{MemoryNodeStore: NewMemoryNodeStore()}
	tr, _ := NewTree(ctx, s, 0)
	tr.Append(ctx, leafData(0), leafData(1), leafData(2))
	before, _ := tr.Root(ctx, 3)
	s.fail = true
	if _, err := tr.Append(ctx, leafData(3), leafData(4)); err == nil {
		t.Fatal("Append succeeded with a failing store")
	}
	if tr.Size() != 3 {
		t.Fatalf("size %d after a failed Append", tr.Size())
	}
	s.fail = false
	if _, err := tr.Append(ctx, leafData(3)); err != nil {
		t.Fatal(err)
	}
	if r, _ := tr.Root(ctx, 3); r != before {
		t.Fatal("root changed")
	}
	ref, _ := newTestTree(t, 4, rand.New(rand.NewPCG(7, 8)))
	r1, _ := ref.Root(ctx, 4)
	r2, _ := tr.Root(ctx, 4)
	if r1 != r2 {
		t.Fatal("tree after a failed Append differs")
	}
}

func TestTreeMisuse(t *testing.T) {
	ctx := context.Background()
	tr, _ := newTestTree(t, 10, rand.New(rand.NewPCG(9, 10)))
	if _, err := tr.Root(ctx, 11); err == nil {
		t.Error("Root beyond size")
	}
	if _, err := tr.InclusionProof(ctx, 10, 10); err == nil {
		t.Error("inclusion of index == size")
	}
	if _, err := tr.InclusionProof(ctx, 0, 11); err == nil {
		t.Error("inclusion beyond size")
	}
	if _, err := tr.ConsistencyProof(ctx, 5, 11); err == nil {
		t.Error("consistency beyond size")
	}
	if _, err := tr.ConsistencyProof(ctx, 6, 5); err == nil {
		t.Error("consistency old > new")
	}
	if r, _ := tr.Root(ctx, 0); r != EmptyRoot || EmptyRoot != Hash(sha256.Sum256(nil)) {
		t.Error("empty root")
	}
	if s, err := tr.Append(ctx); err != nil || s != 10 || tr.Size() != 10 {
		t.Error("empty Append")
	}
}

func TestMemoryNodeStoreStrict(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryNodeStore()
	h := func(b byte) Hash { return Hash{b} }
	if err := s.WriteNodes(ctx, []Node{{NodeID{0, 1}, h(1)}}); err == nil {
		t.Error("gap accepted")
	}
	if err := s.WriteNodes(ctx, []Node{{NodeID{0, 0}, h(1)}, {NodeID{0, 0}, h(2)}}); err == nil {
		t.Error("conflicting duplicate in one batch accepted")
	}
	if err := s.WriteNodes(ctx, []Node{{NodeID{0, 0}, h(1)}, {NodeID{0, 2}, h(2)}}); err == nil {
		t.Error("gap after a valid node accepted")
	}
	if _, err := s.ReadNodes(ctx, []NodeID{{0, 0}}); err == nil {
		t.Error("failed batch was partly written")
	}
	if err := s.WriteNodes(ctx, []Node{{NodeID{0, 0}, h(1)}, {NodeID{0, 1}, h(2)}}); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteNodes(ctx, []Node{{NodeID{0, 1}, h(2)}}); err != nil {
		t.Error("idempotent rewrite rejected")
	}
	if err := s.WriteNodes(ctx, []Node{{NodeID{0, 1}, h(3)}}); err == nil {
		t.Error("rewrite with another hash accepted")
	}
}

func mustConsistency(t testing.TB, tr *Tree, old, size uint64) []Hash {
	p, err := tr.ConsistencyProof(context.Background(), old, size)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
