package vmap

import (
	"errors"
	"strings"
	"testing"
)

// foldPath hashes h up label's path through siblings, as Verify does.
func foldPath(label Label, h Hash, siblings []Hash) Hash {
	for d := len(siblings) - 1; d >= 0; d-- {
		if label.bit(d) == 0 {
			h = interiorHash(&h, &siblings[d])
		} else {
			h = interiorHash(&siblings[d], &h)
		}
	}
	return h
}

// TestProofAbsenceLeafOffPath: an absence proof that ends on another
// label's leaf proves absence only if that leaf lies on the label's path
// (docs/spec/vmap.md §Verification). A prover that controls the root can
// place a leaf anywhere and hash it up the label's path, so the root
// matches; the verifier must still refuse a leaf whose label leaves the
// path above the leaf's depth, and accept one that agrees with it there.
func TestProofAbsenceLeafOffPath(t *testing.T) {
	l := Label{0b0000_0000, 0xaa}
	c := Commitment{7}
	sibs := []Hash{{1}, {2}, {3}} // depth 3, none empty
	for _, tc := range []struct {
		name  string
		other Label
		ok    bool
	}{
		{"differs at bit 0", Label{0b1000_0000}, false},
		{"differs at bit 2", Label{0b0010_0000, 0xaa}, false},
		{"differs at bit 3, below the leaf", Label{0b0001_0000}, true},
		{"differs in the last bit", Label{0b0000_0000, 0xab}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Proof{Kind: ProofAbsenceLeaf, Siblings: sibs, Label: tc.other, Commitment: c}
			root := foldPath(l, leafHash(&tc.other, &c), sibs)
			res, err := Verify(root, l, p)
			if tc.ok {
				if err != nil || res.Present {
					t.Fatalf("leaf on the path: %v, present %v", err, res.Present)
				}
				return
			}
			var pe *ProofError
			if !errors.As(err, &pe) || !errors.Is(err, ErrInvalidProof) || !strings.Contains(pe.Reason, "off the label's path") {
				t.Fatalf("leaf off the path: got %v", err)
			}
			if err := VerifyAbsence(root, l, p); !errors.Is(err, ErrInvalidProof) {
				t.Fatalf("VerifyAbsence: got %v", err)
			}
		})
	}
}
