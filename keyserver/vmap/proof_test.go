package vmap

// Negative tests for proofs (STYLE item 12, adversarial case T26): every bit
// flip of every kind of proof is rejected, a proof does not transfer to
// another label or root, and the parser and verifier refuse every
// non-canonical form.

import (
	"bytes"
	"errors"
	"testing"
)

// proofFixture is a small map with a label of each proof kind, at two
// epochs.
type proofFixture struct {
	m                  *Map
	roots              []Hash
	present, emptyPos  Label // present label; absent label ending on an empty subtree
	leafPos            Label // absent label ending on another leaf
	deep, deepNeighbor Label // labels that split at depth 256
}

func newProofFixture(t testing.TB) *proofFixture {
	r := testRand(99)
	s := NewMemStore()
	f := &proofFixture{m: New(s, nil)}
	var cs []Change
	for i := 0; i < 300; i++ {
		var c Change
		r.Read(c.Label[:])
		c.Label[0] &= 0x7f // the right half of the tree stays sparse
		r.Read(c.Commitment[:])
		cs = append(cs, c)
	}
	f.present = cs[0].Label
	// Two labels under 1xxx... that differ at bit 1: 11... is one leaf.
	a := Label{0x80, 1}
	b := Label{0xc0, 2}
	f.deep = Label{0x80, 1, 2, 3}
	f.deepNeighbor = f.deep
	f.deepNeighbor[31] ^= 1
	cs = append(cs, Change{a, Commitment{1}}, Change{b, Commitment{2}}, Change{f.deep, Commitment{3}}, Change{f.deepNeighbor, Commitment{4}})
	f.leafPos = Label{0xc0, 9} // ends on b's leaf at depth 2
	f.emptyPos = Label{0xa0}   // 101...: the node 10 has no label under 101
	f.roots = append(f.roots, commitUpdate(t, f.m, s, 0, cs).Root)
	f.roots = append(f.roots, commitUpdate(t, f.m, s, 1, []Change{{f.present, Commitment{0xee}}}).Root)
	return f
}

func (f *proofFixture) labels() []Label {
	return []Label{f.present, f.emptyPos, f.leafPos, f.deep, f.deepNeighbor}
}

func TestProofKinds(t *testing.T) {
	f := newProofFixture(t)
	want := map[Label]ProofKind{
		f.present: ProofInclusion, f.emptyPos: ProofAbsenceEmpty, f.leafPos: ProofAbsenceLeaf,
		f.deep: ProofInclusion, f.deepNeighbor: ProofInclusion,
	}
	for l, k := range want {
		p, err := f.m.Prove(1, l)
		if err != nil {
			t.Fatal(err)
		}
		if p.Kind != k {
			t.Errorf("label %v: proof kind %#x, want %#x", l, p.Kind, k)
		}
	}
	if p, _ := f.m.Prove(1, f.deep); len(p.Siblings) != MaxDepth {
		t.Errorf("deep proof has %d siblings, want 256", len(p.Siblings))
	}
}

func TestProofBitFlips(t *testing.T) {
	f := newProofFixture(t)
	for e, root := range f.roots {
		for _, l := range f.labels() {
			p, err := f.m.Prove(uint64(e), l)
			if err != nil {
				t.Fatal(err)
			}
			enc, err := p.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Verify(root, l, p); err != nil {
				t.Fatalf("genuine proof rejected: %v", err)
			}
			for i := 0; i < 8*len(enc); i++ {
				// With -short, the 8 KB proofs of depth 256 get every bit of
				// their header, bitmap and ends, and a sample of the rest.
				if testing.Short() && len(enc) > 2048 && i >= 8*40 && i < 8*(len(enc)-100) && i%61 != 0 {
					continue
				}
				mut := bytes.Clone(enc)
				mut[i/8] ^= 0x80 >> (i % 8)
				q, err := ParseProof(mut)
				if err != nil {
					if !errors.Is(err, ErrMalformedProof) {
						t.Fatalf("flip %d: parse error %v is not ErrMalformedProof", i, err)
					}
					continue
				}
				if res, err := Verify(root, l, q); err == nil {
					t.Fatalf("epoch %d label %v kind %#x: flipping bit %d verifies (%+v)", e, l, p.Kind, i, res)
				} else if !errors.Is(err, ErrInvalidProof) {
					t.Fatalf("flip %d: verify error %v is not ErrInvalidProof", i, err)
				}
			}
			// Every truncation and every extension is malformed.
			for n := 0; n < len(enc); n++ {
				if _, err := ParseProof(enc[:n]); err == nil {
					t.Fatalf("truncation to %d bytes parses", n)
				}
			}
			if _, err := ParseProof(append(bytes.Clone(enc), 0)); err == nil {
				t.Fatal("trailing byte parses")
			}
		}
	}
}

// TestProofOtherLabel checks that an inclusion proof never verifies for
// another label, and that an absence proof verifies for another label only
// when that label is truly absent and shares the proof's path.
func TestProofOtherLabel(t *testing.T) {
	f := newProofFixture(t)
	root := f.roots[1]
	others := append(f.labels(), Label{}, Label{0xff}, Label{0x80, 1})
	for _, l := range f.labels() {
		p, _ := f.m.Prove(1, l)
		for _, o := range others {
			if o == l {
				continue
			}
			res, err := Verify(root, o, p)
			if err != nil {
				continue
			}
			if p.Kind == ProofInclusion {
				t.Fatalf("inclusion proof for %v verifies for %v", l, o)
			}
			if res.Present || !o.hasPrefix(&l, len(p.Siblings)) {
				t.Fatalf("absence proof for %v verifies for %v: %+v", l, o, res)
			}
			if _, ok, _ := f.m.Lookup(1, o); ok {
				t.Fatalf("absence proof for %v shows present label %v absent", l, o)
			}
		}
		// A proof never claims the label present under another commitment.
		if p.Kind == ProofInclusion {
			if err := VerifyInclusion(root, l, Commitment{0x55}, p); !errors.Is(err, ErrCommitmentMismatch) {
				t.Errorf("VerifyInclusion with the wrong commitment = %v", err)
			}
			if err := VerifyAbsence(root, l, p); !errors.Is(err, ErrIncluded) {
				t.Errorf("VerifyAbsence on an inclusion proof = %v", err)
			}
		} else if err := VerifyInclusion(root, l, Commitment{}, p); !errors.Is(err, ErrNotIncluded) {
			t.Errorf("VerifyInclusion on an absence proof = %v", err)
		}
	}
}

// TestProofOtherRoot checks that proofs of epoch 0 fail against epoch 1's
// root and the reverse, including for labels whose path did not change.
func TestProofOtherRoot(t *testing.T) {
	f := newProofFixture(t)
	for e := range f.roots {
		for _, l := range f.labels() {
			p, _ := f.m.Prove(uint64(e), l)
			for _, root := range []Hash{f.roots[1-e], {}, EmptyRoot()} {
				if _, err := Verify(root, l, p); !errors.Is(err, ErrInvalidProof) {
					t.Errorf("epoch %d proof for %v verifies against root %v", e, l, root)
				}
			}
		}
	}
}

func TestProofErrorReport(t *testing.T) {
	f := newProofFixture(t)
	p, _ := f.m.Prove(0, f.present)
	_, err := Verify(f.roots[1], f.present, p)
	var pe *ProofError
	if !errors.As(err, &pe) || pe.Label != f.present || pe.Root != f.roots[1] || pe.Reason != "root mismatch" {
		t.Fatalf("got %#v", err)
	}
}

// TestProofNonCanonical builds proofs that hash to the root of some tree but
// break the compression rule, and checks the verifier refuses them.
func TestProofNonCanonical(t *testing.T) {
	l := Label{0x40}
	other := Label{0x80}
	c := Commitment{7}
	// A leaf at depth 1 with an empty sibling: in a canonical tree it would
	// sit at the root.
	p := &Proof{Kind: ProofInclusion, Siblings: []Hash{emptyHashes[1]}, Commitment: c}
	lh := leafHash(&l, &c)
	root := interiorHash(&lh, &emptyHashes[1])
	if _, err := Verify(root, l, p); !errors.Is(err, ErrInvalidProof) {
		t.Errorf("leaf below an empty sibling: %v", err)
	}
	// The same for an absence proof ending on another leaf.
	q := &Proof{Kind: ProofAbsenceLeaf, Siblings: []Hash{emptyHashes[1]}, Label: Label{0x00, 1}, Commitment: c}
	oh := leafHash(&q.Label, &c)
	if _, err := Verify(interiorHash(&oh, &emptyHashes[1]), l, q); !errors.Is(err, ErrInvalidProof) {
		t.Errorf("other leaf below an empty sibling: %v", err)
	}
	// An empty subtree beside an empty sibling is Empty[d-1].
	z := &Proof{Kind: ProofAbsenceEmpty, Siblings: []Hash{emptyHashes[1]}}
	if _, err := Verify(EmptyRoot(), l, z); !errors.Is(err, ErrInvalidProof) {
		t.Errorf("empty subtree beside an empty sibling: %v", err)
	}
	// An empty subtree at depth 256.
	sib := make([]Hash, MaxDepth)
	for i := range sib {
		sib[i] = Hash{byte(i), 1}
	}
	if _, err := Verify(Hash{}, l, &Proof{Kind: ProofAbsenceEmpty, Siblings: sib}); !errors.Is(err, ErrInvalidProof) {
		t.Errorf("empty subtree at depth 256: %v", err)
	}
	// An absence proof ending on a leaf off the label's path (other starts
	// with 1, l with 0), or on the label itself.
	oh2 := leafHash(&other, &c)
	lh2 := leafHash(&l, &c)
	r2 := interiorHash(&lh2, &oh2)
	bad := &Proof{Kind: ProofAbsenceLeaf, Siblings: []Hash{lh2}, Label: other, Commitment: c}
	if _, err := Verify(r2, l, bad); !errors.Is(err, ErrInvalidProof) {
		t.Errorf("absence proof ending off the path: %v", err)
	}
	self := &Proof{Kind: ProofAbsenceLeaf, Siblings: []Hash{oh2}, Label: l, Commitment: c}
	if _, err := Verify(r2, l, self); !errors.Is(err, ErrInvalidProof) {
		t.Errorf("absence proof ending on the label itself: %v", err)
	}
	// Stray fields.
	if _, err := Verify(lh2, l, &Proof{Kind: ProofInclusion, Commitment: c, Label: other}); !errors.Is(err, ErrInvalidProof) {
		t.Errorf("inclusion proof with a label: %v", err)
	}
	if _, err := Verify(EmptyRoot(), l, &Proof{Kind: ProofAbsenceEmpty, Commitment: c}); !errors.Is(err, ErrInvalidProof) {
		t.Errorf("empty proof with a commitment: %v", err)
	}
	if _, err := Verify(EmptyRoot(), l, &Proof{Kind: 0}); !errors.Is(err, ErrInvalidProof) {
		t.Errorf("unknown kind: %v", err)
	}
	if _, err := Verify(EmptyRoot(), l, &Proof{Kind: ProofAbsenceEmpty, Siblings: make([]Hash, MaxDepth+1)}); !errors.Is(err, ErrInvalidProof) {
		t.Errorf("257 siblings: %v", err)
	}
	// The canonical forms do verify.
	if _, err := Verify(EmptyRoot(), l, &Proof{Kind: ProofAbsenceEmpty}); err != nil {
		t.Errorf("empty map: %v", err)
	}
	if res, err := Verify(lh2, l, &Proof{Kind: ProofInclusion, Commitment: c}); err != nil || !res.Present {
		t.Errorf("single-leaf map: %v", err)
	}
}

func TestParseProofStrict(t *testing.T) {
	c := bytes.Repeat([]byte{7}, 32)
	h1 := bytes.Repeat([]byte{9}, 32)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	good := map[string][]byte{
		"inclusion at root":    cat([]byte{0x41, 0, 0}, c),
		"empty map":            {0x42, 0, 0},
		"depth 1, one sibling": cat([]byte{0x41, 0, 1, 0x80}, h1, c),
		"absence leaf":         cat([]byte{0x43, 0, 1, 0x80}, h1, c, c),
		"depth 9, 2 siblings":  cat([]byte{0x42, 0, 9, 0x00, 0x80}, h1, []byte{}),
	}
	good["depth 9, 2 siblings"] = cat([]byte{0x42, 0, 9, 0x01, 0x80}, h1, h1)
	for name, enc := range good {
		p, err := ParseProof(enc)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		re, err := p.Marshal()
		if err != nil || !bytes.Equal(re, enc) {
			t.Errorf("%s: round trip %x, %v", name, re, err)
		}
	}
	bad := map[string][]byte{
		"empty":                     {},
		"unknown kind":              cat([]byte{0x30, 0, 0}, c),
		"kind 0":                    cat([]byte{0x00, 0, 0}, c),
		"depth 257":                 cat([]byte{0x42, 1, 1}, make([]byte, 33)),
		"padding bit":               cat([]byte{0x41, 0, 1, 0xc0}, h1, c),
		"explicit empty sibling":    cat([]byte{0x41, 0, 1, 0x80}, emptyHashes[1][:], c),
		"missing sibling":           cat([]byte{0x41, 0, 1, 0x80}, c),
		"trailing byte":             cat([]byte{0x41, 0, 0}, c, []byte{0}),
		"empty kind with leaf data": cat([]byte{0x42, 0, 0}, c),
		"leaf kind without label":   cat([]byte{0x43, 0, 0}, c),
		"short depth":               {0x41, 0},
		"oversized":                 make([]byte, MaxProofSize+1),
	}
	for name, enc := range bad {
		if _, err := ParseProof(enc); !errors.Is(err, ErrMalformedProof) {
			t.Errorf("%s: ParseProof = %v, want ErrMalformedProof", name, err)
		}
	}
}

func TestMarshalProofMisuse(t *testing.T) {
	bad := map[string]*Proof{
		"unknown kind":             {Kind: 0x34},
		"257 siblings":             {Kind: ProofInclusion, Siblings: make([]Hash, 257)},
		"inclusion with a label":   {Kind: ProofInclusion, Label: Label{1}},
		"empty with a commitment":  {Kind: ProofAbsenceEmpty, Commitment: Commitment{1}},
		"empty with a leaf label":  {Kind: ProofAbsenceEmpty, Label: Label{1}},
		"zero value has no kind":   {},
		"absence leaf, bad kind 0": {Kind: 0, Label: Label{1}},
	}
	for name, p := range bad {
		if _, err := p.Marshal(); !errors.Is(err, ErrMalformedProof) {
			t.Errorf("%s: Marshal = %v, want ErrMalformedProof", name, err)
		}
	}
}

// TestMaxProofSize checks the bound with the largest possible proof.
func TestMaxProofSize(t *testing.T) {
	f := newProofFixture(t)
	p, _ := f.m.Prove(0, f.deep)
	enc, _ := p.Marshal()
	if len(enc) > MaxProofSize {
		t.Fatalf("deepest inclusion proof is %d bytes, over MaxProofSize %d", len(enc), MaxProofSize)
	}
	big := &Proof{Kind: ProofAbsenceLeaf, Siblings: make([]Hash, MaxDepth-1), Label: Label{1}}
	for i := range big.Siblings {
		big.Siblings[i] = Hash{1}
	}
	enc, err := big.Marshal()
	if err != nil || len(enc) != MaxProofSize {
		t.Fatalf("largest absence proof: %d bytes, %v; MaxProofSize %d", len(enc), err, MaxProofSize)
	}
}

func TestVerifyWrappers(t *testing.T) {
	f := newProofFixture(t)
	root := f.roots[1]
	inc, _ := f.m.Prove(1, f.present)
	abs, _ := f.m.Prove(1, f.emptyPos)
	if err := VerifyInclusion(root, f.present, Commitment{0xee}, inc); err != nil {
		t.Errorf("VerifyInclusion: %v", err)
	}
	if err := VerifyAbsence(root, f.emptyPos, abs); err != nil {
		t.Errorf("VerifyAbsence: %v", err)
	}
	for _, err := range []error{
		VerifyInclusion(f.roots[0], f.present, Commitment{0xee}, inc),
		VerifyAbsence(f.roots[0], f.emptyPos, abs),
	} {
		var pe *ProofError
		if !errors.As(err, &pe) || !errors.Is(err, ErrInvalidProof) || pe.Error() == "" {
			t.Errorf("wrong root: %v", err)
		}
	}
}
