package vmap

// Hashing of docs/spec/vmap.md §Hashing. Every node hash is a SHA-256 hash
// whose first input byte names the kind of node, so that a leaf, an interior
// node and the empty leaf slot can never be confused.

import (
	"crypto/sha256"
	"encoding/hex"
)

const (
	// LabelSize is the size of a label: a 256-bit VRF output.
	LabelSize = 32
	// CommitmentSize is the size of a value commitment.
	CommitmentSize = 32
	// HashSize is the size of a node hash and of a map root.
	HashSize = sha256.Size
	// MaxDepth is the depth of the deepest possible node: a leaf whose label
	// shares its first 255 bits with another label.
	MaxDepth = 8 * LabelSize
)

// Domain-separation prefixes (docs/spec/vmap.md §Hashing), the first byte
// hashed for each kind of node.
const (
	prefixLeaf     = 0x00 // LeafHash = H(0x00 || label || commitment)
	prefixInterior = 0x01 // InteriorHash = H(0x01 || left || right)
	prefixEmpty    = 0x02 // Empty[256] = H(0x02)
)

// A Label is the 256-bit index of a map entry, a VRF output. Bit 0 is the
// most significant bit of the first byte and selects the root's child.
type Label [LabelSize]byte

// A Commitment is the 32-byte value the map stores under a label.
type Commitment [CommitmentSize]byte

// A Hash is a node hash; the hash of the root node is the map root.
type Hash [HashSize]byte

func (l Label) String() string      { return hex.EncodeToString(l[:]) }
func (c Commitment) String() string { return hex.EncodeToString(c[:]) }
func (h Hash) String() string       { return hex.EncodeToString(h[:]) }

// bit returns bit i of l, 0 or 1, counting from the most significant bit.
func (l *Label) bit(i int) int {
	return int(l[i>>3]>>(7-uint(i&7))) & 1
}

// prefix returns l with every bit from bit depth on cleared: the path of the
// node at that depth on l's path.
func (l *Label) prefix(depth int) Label {
	var p Label
	n := depth >> 3
	copy(p[:n], l[:n])
	if r := depth & 7; r != 0 {
		p[n] = l[n] & ^byte(0xff>>uint(r))
	}
	return p
}

// hasPrefix reports whether l and m agree on their first depth bits.
func (l *Label) hasPrefix(m *Label, depth int) bool {
	return l.prefix(depth) == m.prefix(depth)
}

// leafHash is LeafHash(label, commitment) (docs/spec/vmap.md §Hashing).
func leafHash(l *Label, c *Commitment) Hash {
	var b [1 + LabelSize + CommitmentSize]byte
	b[0] = prefixLeaf
	copy(b[1:], l[:])
	copy(b[1+LabelSize:], c[:])
	return sha256.Sum256(b[:])
}

// interiorHash is InteriorHash(left, right) (docs/spec/vmap.md §Hashing).
func interiorHash(left, right *Hash) Hash {
	var b [1 + 2*HashSize]byte
	b[0] = prefixInterior
	copy(b[1:], left[:])
	copy(b[1+HashSize:], right[:])
	return sha256.Sum256(b[:])
}

// emptyHashes[d] is Empty[d], the hash of an empty subtree whose top is at
// depth d (docs/spec/vmap.md §Hashing). 257 hashes, computed once.
var emptyHashes = func() *[MaxDepth + 1]Hash {
	var e [MaxDepth + 1]Hash
	e[MaxDepth] = sha256.Sum256([]byte{prefixEmpty})
	for d := MaxDepth - 1; d >= 0; d-- {
		e[d] = interiorHash(&e[d+1], &e[d+1])
	}
	return &e
}()

// EmptyRoot is the root of the empty map, Empty[0].
func EmptyRoot() Hash { return emptyHashes[0] }
