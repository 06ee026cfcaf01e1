package vmap

// Known small trees whose roots can be checked by hand: every expected value
// below is spelled out with crypto/sha256 and the prefixes of
// docs/spec/vmap.md §Hashing, not with the package's own helpers.

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"testing"
)

func h(parts ...[]byte) Hash { return sha256.Sum256(slices.Concat(parts...)) }

func labelFromHex(t *testing.T, s string) Label {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		t.Fatalf("bad label %q", s)
	}
	return Label(b)
}

func TestEmptyHashes(t *testing.T) {
	e256 := h([]byte{0x02})
	if emptyHashes[256] != e256 {
		t.Fatal("Empty[256] != SHA-256(0x02)")
	}
	e255 := h([]byte{0x01}, e256[:], e256[:])
	if emptyHashes[255] != e255 {
		t.Fatal("Empty[255] != SHA-256(0x01 || Empty[256] || Empty[256])")
	}
	e := e256
	for d := 255; d >= 0; d-- {
		e = h([]byte{0x01}, e[:], e[:])
	}
	if EmptyRoot() != e {
		t.Fatal("Empty[0] is not the root of a full empty tree of depth 256")
	}
	// Pinned, so that a change to the definition cannot go unnoticed.
	const want = "9b97517f25140762b9e187bae23a31ab78a4230354dece720bbbefcfce8de5a0"
	if got := EmptyRoot().String(); got != want {
		t.Errorf("Empty[0] = %s, pinned %s", got, want)
	}
}

func TestKnownTrees(t *testing.T) {
	// a and b differ at bit 0; c shares its first three bits with b
	// (b = 100..., c = 101...), so b and c meet at depth 2.
	a := labelFromHex(t, "00000000000000000000000000000000000000000000000000000000000000aa")
	b := labelFromHex(t, "80000000000000000000000000000000000000000000000000000000000000bb")
	c := labelFromHex(t, "a0000000000000000000000000000000000000000000000000000000000000cc")
	// d shares its first 255 bits with a.
	d := a
	d[31] ^= 0x01
	ca, cb, cc, cd := Commitment{1}, Commitment{2}, Commitment{3}, Commitment{4}

	leaf := func(l Label, c Commitment) Hash { return h([]byte{0x00}, l[:], c[:]) }
	node := func(l, r Hash) Hash { return h([]byte{0x01}, l[:], r[:]) }
	e := func(d int) Hash { return emptyHashes[d] }

	tests := []struct {
		name    string
		changes []Change
		root    Hash
	}{
		{"empty", nil, e(0)},
		{"one leaf sits at the root", []Change{{a, ca}}, leaf(a, ca)},
		{"two leaves split at bit 0", []Change{{b, cb}, {a, ca}}, node(leaf(a, ca), leaf(b, cb))},
		{"two leaves meeting at depth 2", []Change{{b, cb}, {c, cc}},
			// root (empty left) -> depth 1 "1" (left "10") -> depth 2 "10": b = 100, c = 101
			node(e(1), node(node(leaf(b, cb), leaf(c, cc)), e(2)))},
		{"three leaves", []Change{{a, ca}, {b, cb}, {c, cc}},
			node(leaf(a, ca), node(node(leaf(b, cb), leaf(c, cc)), e(2)))},
		{"two leaves at depth 256", []Change{{d, cd}, {a, ca}}, func() Hash {
			// a ends in ...1010 1010 and d in ...1010 1011: they split at bit
			// 255, so every sibling above depth 255 is empty, and a (bit
			// 255 = 0) is on the left.
			x := node(leaf(a, ca), leaf(d, cd))
			for depth := 254; depth >= 0; depth-- {
				if a.bit(depth) == 0 {
					x = node(x, e(depth+1))
				} else {
					x = node(e(depth+1), x)
				}
			}
			return x
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewMemStore()
			m := New(s, nil)
			bt := commitUpdate(t, m, s, 0, tt.changes)
			if bt.Root != tt.root {
				t.Fatalf("root %v, want %v", bt.Root, tt.root)
			}
			ref := refMap{}
			for _, c := range tt.changes {
				ref[c.Label] = c.Commitment
			}
			checkAgainstRef(t, m, 0, ref, []Label{a, b, c, d})
		})
	}
}

// TestKnownTreeIncremental builds the "three leaves" tree one label per
// epoch, which moves b down when c arrives, and checks it ends at the same
// root as building it at once.
func TestKnownTreeIncremental(t *testing.T) {
	a := labelFromHex(t, "00000000000000000000000000000000000000000000000000000000000000aa")
	b := labelFromHex(t, "80000000000000000000000000000000000000000000000000000000000000bb")
	c := labelFromHex(t, "a0000000000000000000000000000000000000000000000000000000000000cc")
	s := NewMemStore()
	m := New(s, nil)
	commitUpdate(t, m, s, 0, []Change{{b, Commitment{2}}})
	commitUpdate(t, m, s, 1, []Change{{c, Commitment{3}}})
	b2 := commitUpdate(t, m, s, 2, []Change{{a, Commitment{1}}})

	s2 := NewMemStore()
	once := commitUpdate(t, New(s2, nil), s2, 0, []Change{{a, Commitment{1}}, {b, Commitment{2}}, {c, Commitment{3}}})
	if b2.Root != once.Root {
		t.Fatal("incremental and one-shot roots differ")
	}
	// Epoch 2 wrote the new root and the leaf a only.
	if len(b2.Nodes) != 2 {
		t.Errorf("epoch 2 wrote %d nodes, want 2", len(b2.Nodes))
	}
}
