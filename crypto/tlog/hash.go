package tlog

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// Merkle tree hashing, [RFC 6962] Section 2.1 (docs/spec/tlog.md §Merkle tree).
//
// [RFC 6962]: https://www.rfc-editor.org/rfc/rfc6962.html

// HashSize is the size of a tree hash: SHA-256.
const HashSize = sha256.Size

// Hash is the hash of a tree node, a leaf or the empty tree.
type Hash [HashSize]byte

// String returns the standard padded base64 encoding used by checkpoints.
func (h Hash) String() string { return base64.StdEncoding.EncodeToString(h[:]) }

var hasher = rfc6962.DefaultHasher

// EmptyRoot is the root hash of the empty tree, SHA-256 of the empty string.
var EmptyRoot = Hash(sha256.Sum256(nil))

// LeafHash returns the RFC 6962 hash of a leaf: SHA-256(0x00 || data).
func LeafHash(data []byte) Hash { return Hash(hasher.HashLeaf(data)) }

func toSlices(hs []Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

// maxProofLen bounds proofs: a tree of at most 2^63-1 leaves has proofs of
// at most 2·63 hashes, and tlog-witness sends at most 63 consistency lines.
const maxProofLen = 2 * 63

// VerifyInclusion checks an RFC 6962 Section 2.1.1 inclusion proof that the
// leaf with hash leaf is at index in the tree of the given size and root.
// Failure wraps ErrBadProof.
func VerifyInclusion(leaf Hash, index, size uint64, p []Hash, root Hash) error {
	if index >= size || len(p) > maxProofLen {
		return fmt.Errorf("%w: inclusion of %d in tree of size %d", ErrBadProof, index, size)
	}
	if err := proof.VerifyInclusion(hasher, index, size, leaf[:], toSlices(p), root[:]); err != nil {
		return fmt.Errorf("%w: %v", ErrBadProof, err)
	}
	return nil
}

// VerifyConsistency checks an RFC 6962 Section 2.1.2 consistency proof
// between the trees of sizes oldSize and newSize. Equal sizes need an empty
// proof and equal roots. A proof from the empty tree is meaningless and
// rejected: callers handle oldSize 0 themselves (everything extends the
// empty tree). Failure wraps ErrBadProof.
func VerifyConsistency(oldSize, newSize uint64, p []Hash, oldRoot, newRoot Hash) error {
	switch {
	case oldSize == 0:
		return fmt.Errorf("%w: consistency proof from the empty tree", ErrBadProof)
	case oldSize > newSize:
		return fmt.Errorf("%w: old size %d > new size %d", ErrBadProof, oldSize, newSize)
	case len(p) > maxProofLen:
		return fmt.Errorf("%w: proof too long", ErrBadProof)
	}
	if err := proof.VerifyConsistency(hasher, oldSize, newSize, toSlices(p), oldRoot[:], newRoot[:]); err != nil {
		return fmt.Errorf("%w: %v", ErrBadProof, err)
	}
	return nil
}

// decodeHash decodes the canonical padded standard base64 encoding of a
// hash: exactly 44 characters that re-encode to themselves.
func decodeHash(s []byte) (Hash, error) {
	if len(s) != base64.StdEncoding.EncodedLen(HashSize) {
		return Hash{}, errors.New("hash is not 44 base64 characters")
	}
	var buf [HashSize + 1]byte // DecodedLen(44) is 33
	n, err := base64.StdEncoding.Strict().Decode(buf[:], s)
	if err != nil || n != HashSize {
		return Hash{}, errors.New("hash is not canonical base64")
	}
	return Hash(buf[:HashSize]), nil
}
