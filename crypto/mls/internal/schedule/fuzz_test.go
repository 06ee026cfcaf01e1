package schedule

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/moat-im/moat/crypto/mls/internal/treemath"
)

type refID struct {
	leaf treemath.LeafIndex
	kind Kind
	gen  uint32
}

// FuzzSecretTree drives one secret tree with a sequence of receives
// (prepare then commit or discard, at generations around, behind and far
// beyond each ratchet) and sends, and checks it against the §9 reference
// derivation: every key served is the right one, no (leaf, kind,
// generation) key is ever served after it was consumed, failures leave
// the tree byte-identical, and the retained-key bounds hold.
func FuzzSecretTree(f *testing.F) {
	f.Add([]byte{0, 0, 5, 0, 0, 0, 3, 0, 0, 0, 4, 1, 1, 1, 0, 2})
	f.Add([]byte{3, 1, 200, 0, 3, 1, 0, 0, 3, 1, 100, 0, 2, 0, 255, 3})
	f.Add([]byte{1, 0, 0, 2, 1, 0, 0, 2, 1, 0, 1, 0, 1, 0, 0, 1})
	s := testSuite(f)
	const n = 4
	enc := bytes.Repeat([]byte{0x42}, s.Nh())
	refCache := map[refID][2][]byte{}
	ref := func(id refID) (key, nonce []byte) {
		if v, ok := refCache[id]; ok {
			return v[0], v[1]
		}
		k, nn := refKey(s, enc, n, id.leaf, id.kind, id.gen)
		refCache[id] = [2][]byte{k, nn}
		return k, nn
	}
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 4*64 {
			return
		}
		tree, err := NewSecretTree(s, enc, n)
		if err != nil {
			t.Fatal(err)
		}
		consumed := map[refID]bool{}
		next := map[refID]uint32{} // per (leaf, kind), gen unused
		for len(ops) >= 4 {
			leaf := treemath.LeafIndex(ops[0] % n)
			kind := Kind(ops[1] & 1)
			arg, action := ops[2], ops[3]%4
			ops = ops[4:]
			chain := refID{leaf, kind, 0}
			if action == 3 { // send
				gen, key, nonce, err := tree.NextSend(leaf, kind)
				if err != nil {
					t.Fatalf("NextSend: %v", err)
				}
				id := refID{leaf, kind, gen}
				if consumed[id] {
					t.Fatalf("NextSend reused %+v", id)
				}
				if rk, rn := ref(id); !bytes.Equal(key, rk) || !bytes.Equal(nonce, rn) {
					t.Fatalf("NextSend %+v: wrong key", id)
				}
				consumed[id] = true
				next[chain] = gen + 1
				continue
			}
			// Generations around the ratchet position, behind it, and far
			// beyond (including beyond MaxGenerationSkip and 2^32-1).
			var gen uint32
			switch {
			case arg < 200:
				gen = next[chain] + uint32(arg) - 100
				if int(next[chain])+int(arg)-100 < 0 {
					gen = uint32(arg)
				}
			case arg < 250:
				gen = next[chain] + MaxGenerationSkip - 25 + uint32(arg-200)
			default:
				gen = ^uint32(0) - uint32(arg-250)
			}
			id := refID{leaf, kind, gen}
			before := snap(tree)
			p, err := tree.Prepare(leaf, kind, gen)
			if err != nil {
				if !errors.Is(err, ErrKeyConsumed) && !errors.Is(err, ErrGenerationTooFar) {
					t.Fatalf("Prepare %+v: unexpected error %v", id, err)
				}
				if errors.Is(err, ErrGenerationTooFar) && gen-next[chain] <= MaxGenerationSkip && gen >= next[chain] {
					t.Fatalf("Prepare %+v: rejected within MaxGenerationSkip of %d", id, next[chain])
				}
				if !reflect.DeepEqual(before, snap(tree)) {
					t.Fatalf("failed Prepare %+v changed the tree", id)
				}
				continue
			}
			if consumed[id] {
				t.Fatalf("Prepare served consumed key %+v", id)
			}
			if rk, rn := ref(id); !bytes.Equal(p.Key(), rk) || !bytes.Equal(p.Nonce(), rn) {
				t.Fatalf("Prepare %+v: wrong key", id)
			}
			if !reflect.DeepEqual(before, snap(tree)) {
				t.Fatalf("Prepare %+v changed the tree", id)
			}
			if action == 0 {
				p.Discard()
				if !reflect.DeepEqual(before, snap(tree)) {
					t.Fatalf("Discard %+v changed the tree", id)
				}
				continue
			}
			if err := tree.Commit(p); err != nil {
				t.Fatal(err)
			}
			consumed[id] = true
			if gen >= next[chain] {
				next[chain] = gen + 1
			}
			if tree.RetainedKeys() > MaxRetainedKeys {
				t.Fatalf("retained %d keys", tree.RetainedKeys())
			}
			for _, lr := range tree.leaves {
				for _, r := range lr.r {
					if len(r.skipped) > OutOfOrderWindow {
						t.Fatalf("ratchet retains %d keys", len(r.skipped))
					}
				}
			}
		}
		tree.Destroy()
	})
}
