package vmap

// A slow reference implementation of docs/spec/vmap.md, written from the
// spec's recursive definition with its own hashing: MapHash(S, d) over the
// set S of entries below a node at depth d. It keeps the whole map in a Go
// map and computes every hash on demand. The differential tests check the
// compressed, versioned tree against it, root by root and proof by proof.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"
)

type refMap map[Label]Commitment

// refEmpty[d] is Empty[d], computed lazily from its definition.
var refEmptyMemo = map[int][32]byte{}

func refEmpty(d int) [32]byte {
	if h, ok := refEmptyMemo[d]; ok {
		return h
	}
	var h [32]byte
	if d == 256 {
		h = sha256.Sum256([]byte{0x02})
	} else {
		e := refEmpty(d + 1)
		h = sha256.Sum256(slices.Concat([]byte{0x01}, e[:], e[:]))
	}
	refEmptyMemo[d] = h
	return h
}

func refLeaf(l Label, c Commitment) [32]byte {
	return sha256.Sum256(slices.Concat([]byte{0x00}, l[:], c[:]))
}

func refBit(l Label, i int) int { return int(l[i/8]>>(7-i%8)) & 1 }

func (r refMap) sorted() []Change {
	out := make([]Change, 0, len(r))
	for l, c := range r {
		out = append(out, Change{l, c})
	}
	slices.SortFunc(out, func(a, b Change) int { return bytes.Compare(a.Label[:], b.Label[:]) })
	return out
}

// refHash is MapHash(S, d) for the sorted entries S, all sharing their
// first d bits.
func refHash(s []Change, d int) [32]byte {
	switch len(s) {
	case 0:
		return refEmpty(d)
	case 1:
		return refLeaf(s[0].Label, s[0].Commitment)
	}
	i := 0
	for i < len(s) && refBit(s[i].Label, d) == 0 {
		i++
	}
	l, r := refHash(s[:i], d+1), refHash(s[i:], d+1)
	return sha256.Sum256(slices.Concat([]byte{0x01}, l[:], r[:]))
}

func (r refMap) root() Hash { return refHash(r.sorted(), 0) }

// prove walks label's path as the spec describes.
func (r refMap) prove(label Label) *Proof {
	s := r.sorted()
	p := &Proof{Siblings: []Hash{}}
	for d := 0; ; d++ {
		switch len(s) {
		case 0:
			p.Kind = ProofAbsenceEmpty
			return p
		case 1:
			if s[0].Label == label {
				p.Kind, p.Commitment = ProofInclusion, s[0].Commitment
			} else {
				p.Kind, p.Label, p.Commitment = ProofAbsenceLeaf, s[0].Label, s[0].Commitment
			}
			return p
		}
		i := 0
		for i < len(s) && refBit(s[i].Label, d) == 0 {
			i++
		}
		if refBit(label, d) == 0 {
			p.Siblings = append(p.Siblings, refHash(s[i:], d+1))
			s = s[:i]
		} else {
			p.Siblings = append(p.Siblings, refHash(s[:i], d+1))
			s = s[i:]
		}
	}
}

// testRNG is a deterministic generator with both IntN and Read.
type testRNG struct {
	*rand.Rand
	c *rand.ChaCha8
}

func (r testRNG) Read(b []byte) { _, _ = r.c.Read(b) }

// testRand returns a deterministic generator.
func testRand(seed uint64) testRNG {
	var s [32]byte
	binary.BigEndian.PutUint64(s[:], seed)
	copy(s[8:], "moat vmap test seed ...........")
	c := rand.NewChaCha8(s)
	return testRNG{rand.New(c), c}
}

// clusteredLabel returns a label whose leading bits come from a small
// alphabet, so that random sets share long prefixes and exercise deep,
// sparse paths; with mode 0 it is uniformly random.
func clusteredLabel(r testRNG, mode int) Label {
	var l Label
	r.Read(l[:])
	switch mode {
	case 1: // a shared 200-bit prefix with a few variations
		for i := 0; i < 25; i++ {
			l[i] = 0xA5
		}
		l[25] &= 0x03
	case 2: // labels that differ only in their last bits
		for i := 0; i < 31; i++ {
			l[i] = 0x3C
		}
		l[31] &= 0x0F
	case 3: // a few leading bits only
		l[0] &= 0x81
	}
	return l
}

// checkAgainstRef compares the root of epoch and the proofs of every probe
// label with the reference.
func checkAgainstRef(t *testing.T, m *Map, epoch uint64, ref refMap, probes []Label) {
	t.Helper()
	root, err := m.Root(epoch)
	if err != nil {
		t.Fatal(err)
	}
	if want := ref.root(); root != want {
		t.Fatalf("epoch %d: root %v, reference %v", epoch, root, Hash(want))
	}
	for _, l := range probes {
		p, err := m.Prove(epoch, l)
		if err != nil {
			t.Fatal(err)
		}
		want := ref.prove(l)
		if p.Kind != want.Kind || p.Label != want.Label || p.Commitment != want.Commitment || !slices.Equal(p.Siblings, want.Siblings) {
			t.Fatalf("epoch %d label %v: proof %+v, reference %+v", epoch, l, p, want)
		}
		res, err := Verify(root, l, p)
		if err != nil {
			t.Fatalf("epoch %d label %v: %v", epoch, l, err)
		}
		c, ok := ref[l]
		if res.Present != ok || res.Commitment != c {
			t.Fatalf("epoch %d label %v: verified %+v, reference present=%v %v", epoch, l, res, ok, c)
		}
		gc, gok, err := m.Lookup(epoch, l)
		if err != nil || gok != ok || gc != c {
			t.Fatalf("epoch %d label %v: Lookup %v %v %v", epoch, l, gc, gok, err)
		}
	}
}

func commitUpdate(t testing.TB, m *Map, s *MemStore, epoch uint64, cs []Change) *Batch {
	t.Helper()
	b, err := m.Update(epoch, cs)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDifferential runs random epochs of inserts and updates against the
// reference, checking every epoch's root and proofs, and every past epoch
// again at the end.
func TestDifferential(t *testing.T) {
	for mode := 0; mode < 4; mode++ {
		r := testRand(uint64(mode))
		s := NewMemStore()
		m := New(s, &Options{Parallelism: 1 + mode%2})
		ref := refMap{}
		var history []refMap
		var all []Label
		epochs := 40
		if testing.Short() {
			epochs = 15
		}
		for e := 0; e < epochs; e++ {
			var cs []Change
			seen := map[Label]bool{}
			n := r.IntN(30)
			if e%7 == 3 {
				n = 0 // an empty epoch
			}
			for i := 0; i < n; i++ {
				var l Label
				if len(all) > 0 && r.IntN(3) == 0 {
					l = all[r.IntN(len(all))] // update an existing label
				} else {
					l = clusteredLabel(r, mode)
				}
				if seen[l] {
					continue
				}
				seen[l] = true
				var c Commitment
				if old, ok := ref[l]; ok && r.IntN(4) == 0 {
					c = old // a no-op change
				} else {
					r.Read(c[:])
				}
				cs = append(cs, Change{l, c})
			}
			b := commitUpdate(t, m, s, uint64(e), cs)
			for _, c := range cs {
				if _, ok := ref[c.Label]; !ok {
					all = append(all, c.Label)
				}
				ref[c.Label] = c.Commitment
			}
			if b.Root != ref.root() {
				t.Fatalf("mode %d epoch %d: batch root differs from reference", mode, e)
			}
			snap := refMap{}
			for k, v := range ref {
				snap[k] = v
			}
			history = append(history, snap)
			probes := slices.Clone(all)
			for i := 0; i < 10; i++ {
				probes = append(probes, clusteredLabel(r, mode))
			}
			checkAgainstRef(t, m, uint64(e), ref, probes)
		}
		for e, snap := range history {
			checkAgainstRef(t, m, uint64(e), snap, all)
		}
	}
}
