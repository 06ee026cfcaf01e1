package schedule

import (
	"bytes"
	"testing"

	"github.com/moat-im/moat/crypto/mls/internal/treemath"
)

// BenchmarkNextSend is the key-schedule part of sending one application
// message on an established ratchet (X-Wing suite: HKDF-SHA256).
func BenchmarkNextSend(b *testing.B) {
	s := testSuite(b)
	tree, _ := newTree(b, s, 1<<16)
	for b.Loop() {
		if _, _, _, err := tree.NextSend(1234, Application); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReceiveInOrder is Prepare + Commit for the next generation of
// an established ratchet.
func BenchmarkReceiveInOrder(b *testing.B) {
	s := testSuite(b)
	tree, _ := newTree(b, s, 1<<16)
	gen := uint32(0)
	for b.Loop() {
		p, err := tree.Prepare(1234, Application, gen)
		if err != nil {
			b.Fatal(err)
		}
		if err := tree.Commit(p); err != nil {
			b.Fatal(err)
		}
		gen++
	}
}

// BenchmarkFirstKey65536 is the first key of a sender in a fresh
// 65,536-leaf secret tree: 16 levels of node derivation, both ratchet
// roots, one key.
func BenchmarkFirstKey65536(b *testing.B) {
	s := testSuite(b)
	enc := bytes.Repeat([]byte{1}, s.Nh())
	for b.Loop() {
		tree, err := NewSecretTree(s, enc, 1<<16)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tree.Prepare(treemath.LeafIndex(40000), Application, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNextEpoch is the key schedule of one Commit: joiner, welcome,
// epoch and the nine derived secrets.
func BenchmarkNextEpoch(b *testing.B) {
	s := testSuite(b)
	init := bytes.Repeat([]byte{1}, s.Nh())
	gc := make([]byte, 120)
	for b.Loop() {
		e, err := Next(s, init, init, nil, gc)
		if err != nil {
			b.Fatal(err)
		}
		e.Destroy()
	}
}
