package treemath

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"testing"
)

type treeMathVector struct {
	NLeaves uint32    `json:"n_leaves"`
	NNodes  uint32    `json:"n_nodes"`
	Root    uint32    `json:"root"`
	Left    []*uint32 `json:"left"`
	Right   []*uint32 `json:"right"`
	Parent  []*uint32 `json:"parent"`
	Sibling []*uint32 `json:"sibling"`
}

func check(t *testing.T, what string, i int, got NodeIndex, ok bool, want *uint32) {
	t.Helper()
	if want == nil {
		if ok {
			t.Errorf("%s(%d) = %d, want none", what, i, got)
		}
		return
	}
	if !ok || uint32(got) != *want {
		t.Errorf("%s(%d) = %d,%v, want %d", what, i, got, ok, *want)
	}
}

// TestTreeMathVectors runs tree-math.json (RFC 9420 test vectors,
// crypto/mls/testdata/FORMAT.md "Tree Math").
func TestTreeMathVectors(t *testing.T) {
	data, err := os.ReadFile("../../testdata/tree-math.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []treeMathVector
	if err := json.Unmarshal(data, &vs); err != nil {
		t.Fatal(err)
	}
	passed := 0
	for _, v := range vs {
		if t.Run(fmt.Sprintf("n=%d", v.NLeaves), func(t *testing.T) { checkTreeMath(t, v) }) {
			passed++
		}
	}
	t.Logf("tree-math.json: %d/%d vectors passed", passed, len(vs))
	if passed == 0 {
		t.Fatal("no tree-math vector ran")
	}
}

func checkTreeMath(t *testing.T, v treeMathVector) {
	n := v.NLeaves
	if got := NodeWidth(n); got != v.NNodes {
		t.Errorf("n=%d: NodeWidth = %d, want %d", n, got, v.NNodes)
	}
	if got := LeafCount(v.NNodes); got != n {
		t.Errorf("n=%d: LeafCount(%d) = %d", n, v.NNodes, got)
	}
	if got := Root(n); uint32(got) != v.Root {
		t.Errorf("n=%d: Root = %d, want %d", n, got, v.Root)
	}
	for _, l := range [][]*uint32{v.Left, v.Right, v.Parent, v.Sibling} {
		if uint32(len(l)) != v.NNodes {
			t.Fatalf("n=%d: vector arrays have %d entries, want %d", n, len(l), v.NNodes)
		}
	}
	for i := range int(v.NNodes) {
		x := NodeIndex(i)
		got, ok := Left(x)
		check(t, "left", i, got, ok, v.Left[i])
		got, ok = Right(x)
		check(t, "right", i, got, ok, v.Right[i])
		got, ok = Parent(x, n)
		check(t, "parent", i, got, ok, v.Parent[i])
		got, ok = Sibling(x, n)
		check(t, "sibling", i, got, ok, v.Sibling[i])
	}
}

// Reference implementations of Appendix C, written directly from the
// definitions (set-based), to check the fast versions against.

func refDirectPath(x NodeIndex, n uint32) []NodeIndex {
	var d []NodeIndex
	for {
		p, ok := Parent(x, n)
		if !ok {
			return d
		}
		d = append(d, p)
		x = p
	}
}

func refCommonAncestor(x, y NodeIndex, n uint32) NodeIndex {
	dx := append([]NodeIndex{x}, refDirectPath(x, n)...)
	dy := append([]NodeIndex{y}, refDirectPath(y, n)...)
	best, found := NodeIndex(0), false
	for _, a := range dx {
		if slices.Contains(dy, a) && (!found || Level(a) < Level(best)) {
			best, found = a, true
		}
	}
	if !found {
		panic("no common ancestor")
	}
	return best
}

func TestPathsAgainstReference(t *testing.T) {
	for _, n := range []uint32{1, 2, 4, 8, 16, 32, 64} {
		w := NodeWidth(n)
		for x := NodeIndex(0); uint32(x) < w; x++ {
			dp := DirectPath(nil, x, n)
			if want := refDirectPath(x, n); !slices.Equal(dp, want) {
				t.Fatalf("n=%d DirectPath(%d) = %v, want %v", n, x, dp, want)
			}
			cp := Copath(nil, x, n)
			if len(cp) != len(dp) {
				t.Fatalf("n=%d Copath(%d) = %v", n, x, cp)
			}
			prev := x
			for i, c := range cp {
				s, _ := Sibling(prev, n)
				if c != s {
					t.Fatalf("n=%d Copath(%d)[%d] = %d, want %d", n, x, i, c, s)
				}
				prev = dp[i]
			}
			if x.IsLeaf() && len(dp) != PathLength(n) {
				t.Fatalf("n=%d leaf %d path length %d, want %d", n, x, len(dp), PathLength(n))
			}
			// Filtering nothing keeps the direct path; filtering
			// everything empties it.
			if f := FilteredDirectPath(nil, x, n, func(NodeIndex) bool { return false }); !slices.Equal(f, dp) {
				t.Fatalf("unfiltered path differs")
			}
			if f := FilteredDirectPath(nil, x, n, func(NodeIndex) bool { return true }); len(f) != 0 {
				t.Fatalf("fully filtered path not empty")
			}
			first, count := LeafSpan(x)
			for y := NodeIndex(0); uint32(y) < w; y++ {
				inDP := y == x || slices.Contains(refDirectPath(y, n), x)
				if IsDescendant(y, x) != inDP {
					t.Fatalf("n=%d IsDescendant(%d,%d) = %v", n, y, x, !inDP)
				}
				if y.IsLeaf() {
					l := y.Leaf()
					if (l >= first && uint32(l-first) < count) != inDP {
						t.Fatalf("n=%d LeafSpan(%d) = %d,%d wrong for leaf %d", n, x, first, count, l)
					}
				}
				if got, want := CommonAncestor(x, y), refCommonAncestor(x, y, n); got != want {
					t.Fatalf("n=%d CommonAncestor(%d,%d) = %d, want %d", n, x, y, got, want)
				}
			}
		}
	}
}

func TestFilteredDirectPathExample(t *testing.T) {
	// RFC 9420 §4.1.2 Figure 5: leaves A B _ _ E F G _ (0,1,4,5,6);
	// blank parents U=3, V=5, Z=13.
	// Resolution is empty exactly for the blank leaves (2, 3, 7 at nodes
	// 4, 6, 14) and for V (5), whose leaves are both blank.
	empty := func(x NodeIndex) bool {
		switch x {
		case 4, 6, 14, 5:
			return true
		}
		return false
	}
	n := uint32(8)
	for _, c := range []struct {
		leaf LeafIndex
		want []NodeIndex
	}{
		{0, []NodeIndex{1, 7}}, {1, []NodeIndex{1, 7}},
		{4, []NodeIndex{9, 11, 7}}, {5, []NodeIndex{9, 11, 7}},
		{6, []NodeIndex{11, 7}},
	} {
		got, cop := FilteredPath(nil, nil, c.leaf.Node(), n, empty)
		if !slices.Equal(got, c.want) || len(cop) != len(got) {
			t.Errorf("leaf %d: filtered direct path %v, want %v", c.leaf, got, c.want)
		}
	}
}

func TestLargeIndices(t *testing.T) {
	n := uint32(MaxLeaves)
	r := Root(n)
	if r != 1<<31-1 || NodeWidth(n) != 1<<32-1 {
		t.Fatalf("root %d width %d", r, NodeWidth(n))
	}
	last := LeafIndex(n - 1).Node()
	dp := DirectPath(nil, last, n)
	if len(dp) != 31 || dp[len(dp)-1] != r {
		t.Fatalf("direct path of last leaf: %v", dp)
	}
	if CommonAncestor(0, last) != r {
		t.Fatal("common ancestor of first and last leaf is not the root")
	}
}

func TestLeafCount(t *testing.T) {
	for w, want := range map[uint32]uint32{0: 0, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 7: 4, 8: 8, 9: 8, 15: 8, 16: 16} {
		if got := LeafCount(w); got != want {
			t.Errorf("LeafCount(%d) = %d, want %d", w, got, want)
		}
	}
}

func BenchmarkDirectPath(b *testing.B) {
	buf := make([]NodeIndex, 0, 32)
	n := uint32(1 << 16)
	for i := 0; b.Loop(); i++ {
		buf = DirectPath(buf[:0], LeafIndex(i&(1<<16-1)).Node(), n)
	}
}
