package vmap

// Proof encoding of docs/spec/vmap.md §Proof encoding, read and written
// with cryptobyte. Parsing is strict: known type bytes only, lengths implied
// by the depth and the bitmap, zero padding bits, no sibling sent that the
// bitmap could have omitted, no trailing bytes.

import (
	"math/bits"

	"golang.org/x/crypto/cryptobyte"
)

// ProofKind is the type byte of a proof: what the walk down the label's path
// ended on.
type ProofKind uint8

const (
	// ProofInclusion ends on the label's own leaf: the label is present
	// and Proof.Commitment is its commitment.
	ProofInclusion ProofKind = 0x41
	// ProofAbsenceEmpty ends on an empty subtree: the label is absent.
	ProofAbsenceEmpty ProofKind = 0x42
	// ProofAbsenceLeaf ends on the leaf of another label, Proof.Label,
	// whose commitment is Proof.Commitment: the label is absent.
	ProofAbsenceLeaf ProofKind = 0x43
)

// MaxProofSize is the size of the largest proof encoding: an absence proof
// ending on another leaf at depth 255 with no empty sibling.
const MaxProofSize = 1 + 2 + MaxDepth/8 + (MaxDepth-1)*HashSize + LabelSize + CommitmentSize

// A Proof is a lookup proof for one label against one map root: the hashes
// of the siblings of every node on the label's path, from the root down to
// the node where the walk ended, and what it ended on.
//
// A Proof says nothing until Verify has checked it against a root.
type Proof struct {
	Kind ProofKind
	// Siblings[i] is the hash of the sibling of the path node at depth
	// i+1, Empty[i+1] for an empty sibling. len(Siblings) is the depth at
	// which the walk ended.
	Siblings []Hash
	// Label is the other leaf's label, for ProofAbsenceLeaf only.
	Label Label
	// Commitment is the label's commitment for ProofInclusion, or the other
	// leaf's commitment for ProofAbsenceLeaf.
	Commitment Commitment
}

//	enum { inclusion(0x41), absence_empty(0x42), absence_leaf(0x43), (255) } ProofKind;
//
//	struct {
//	    ProofKind kind;
//	    uint16 depth;                        /* 0..256 */
//	    opaque bitmap[(depth+7)/8];          /* bit i set: sibling i not empty */
//	    opaque siblings[32 * popcount(bitmap)];
//	    select (kind) {
//	        case inclusion:     opaque commitment[32];
//	        case absence_empty: struct {};
//	        case absence_leaf:  opaque label[32]; opaque commitment[32];
//	    };
//	} Proof;

// Marshal returns the proof's encoding. A Proof that ParseProof could not
// have returned (unknown kind, more than MaxDepth siblings, a Label or
// Commitment set where the kind has none) is ErrMalformedProof.
func (p *Proof) Marshal() ([]byte, error) {
	depth := len(p.Siblings)
	if depth > MaxDepth {
		return nil, ErrMalformedProof
	}
	switch p.Kind {
	case ProofInclusion:
		if p.Label != (Label{}) {
			return nil, ErrMalformedProof
		}
	case ProofAbsenceEmpty:
		if p.Label != (Label{}) || p.Commitment != (Commitment{}) {
			return nil, ErrMalformedProof
		}
	case ProofAbsenceLeaf:
	default:
		return nil, ErrMalformedProof
	}
	bitmap := make([]byte, (depth+7)/8)
	n := 0
	for i := range p.Siblings {
		if p.Siblings[i] != emptyHashes[i+1] {
			bitmap[i>>3] |= 0x80 >> uint(i&7)
			n++
		}
	}
	b := cryptobyte.NewFixedBuilder(make([]byte, 0, 3+len(bitmap)+n*HashSize+LabelSize+CommitmentSize))
	b.AddUint8(uint8(p.Kind))
	b.AddUint16(uint16(depth))
	b.AddBytes(bitmap)
	for i := range p.Siblings {
		if bitmap[i>>3]&(0x80>>uint(i&7)) != 0 {
			b.AddBytes(p.Siblings[i][:])
		}
	}
	switch p.Kind {
	case ProofInclusion:
		b.AddBytes(p.Commitment[:])
	case ProofAbsenceLeaf:
		b.AddBytes(p.Label[:])
		b.AddBytes(p.Commitment[:])
	}
	return b.Bytes()
}

// ParseProof decodes a proof encoding strictly. It does not verify it.
func ParseProof(data []byte) (*Proof, error) {
	if len(data) > MaxProofSize {
		return nil, ErrMalformedProof
	}
	s := cryptobyte.String(data)
	var kind uint8
	var depth uint16
	var bitmap []byte
	if !s.ReadUint8(&kind) || !s.ReadUint16(&depth) || depth > MaxDepth ||
		!s.ReadBytes(&bitmap, (int(depth)+7)/8) {
		return nil, ErrMalformedProof
	}
	if r := depth & 7; r != 0 && bitmap[len(bitmap)-1]&(0xff>>r) != 0 {
		return nil, ErrMalformedProof // padding bits set
	}
	p := &Proof{Kind: ProofKind(kind)}
	switch p.Kind {
	case ProofInclusion, ProofAbsenceEmpty, ProofAbsenceLeaf:
	default:
		return nil, ErrMalformedProof
	}
	n := 0
	for _, x := range bitmap {
		n += bits.OnesCount8(x)
	}
	// The size is known before anything is allocated.
	if len(s) < n*HashSize {
		return nil, ErrMalformedProof
	}
	p.Siblings = make([]Hash, depth)
	for i := range p.Siblings {
		if bitmap[i>>3]&(0x80>>uint(i&7)) == 0 {
			p.Siblings[i] = emptyHashes[i+1]
			continue
		}
		if !s.CopyBytes(p.Siblings[i][:]) {
			return nil, ErrMalformedProof
		}
		if p.Siblings[i] == emptyHashes[i+1] {
			return nil, ErrMalformedProof // the bitmap must omit empty siblings
		}
	}
	switch p.Kind {
	case ProofInclusion:
		if !s.CopyBytes(p.Commitment[:]) {
			return nil, ErrMalformedProof
		}
	case ProofAbsenceLeaf:
		if !s.CopyBytes(p.Label[:]) || !s.CopyBytes(p.Commitment[:]) {
			return nil, ErrMalformedProof
		}
	}
	if !s.Empty() {
		return nil, ErrMalformedProof
	}
	return p, nil
}
