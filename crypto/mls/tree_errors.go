package mls

import (
	"errors"
	"fmt"
)

// Ratchet tree failures (RFC 9420 §7, §12.1, §12.4.3.1). A *TreeError wraps
// exactly one of them and names the node concerned.
var (
	// ErrMalformedTree: a tree whose shape is impossible (a leaf at a
	// parent position, an index beyond the tree, a leaf count that is not
	// a power of two, an empty tree).
	ErrMalformedTree = errors.New("malformed ratchet tree")
	// ErrTreeHashMismatch: the tree's root hash is not the tree_hash of
	// the GroupContext or GroupInfo (§7.8, §12.4.3.1).
	ErrTreeHashMismatch = errors.New("tree hash mismatch")
	// ErrInvalidParentHash: a non-blank parent node is not parent-hash
	// valid, or a committer's leaf carries the wrong parent_hash (§7.9.2).
	ErrInvalidParentHash = errors.New("invalid parent hash")
	// ErrDuplicateKey: an encryption or signature key appears in two nodes
	// (§7.3, §12.4.3.1, §16.8).
	ErrDuplicateKey = errors.New("duplicate key in tree")
	// ErrInvalidUnmergedLeaves: an unmerged leaf that is blank, not below
	// its parent node, or missing from a non-blank node between them
	// (§12.4.3.1).
	ErrInvalidUnmergedLeaves = errors.New("invalid unmerged leaves")
	// ErrInvalidLeafSignature: a LeafNode signature does not verify (§7.3).
	ErrInvalidLeafSignature = errors.New("invalid leaf node signature")
	// ErrInvalidLeafNode: a LeafNode refused by the application's leaf
	// validation hook, or with the wrong leaf_node_source (§7.3).
	ErrInvalidLeafNode = errors.New("invalid leaf node")
	// ErrBlankLeaf: an operation names a leaf that is blank (a Remove or
	// Update of an empty leaf, a committer without a leaf) (§12.1).
	ErrBlankLeaf = errors.New("leaf is blank")
	// ErrTreeFull: an Add would grow the tree beyond MaxTreeLeaves.
	ErrTreeFull = errors.New("ratchet tree full")
	// ErrInvalidUpdatePath: an UpdatePath whose shape does not match the
	// tree: wrong number of nodes for the filtered direct path, wrong
	// number of ciphertexts for a resolution, a reused public key (§7.6,
	// §12.4.2).
	ErrInvalidUpdatePath = errors.New("invalid update path")
	// ErrPathKeyMismatch: a public key derived from a decrypted path
	// secret differs from the one the UpdatePath carries (§7.5), or a
	// private key does not match the tree.
	ErrPathKeyMismatch = errors.New("derived path key does not match")
	// ErrPathDecrypt: the path secret meant for this member does not
	// decrypt, or it holds no key for any node it was encrypted to.
	ErrPathDecrypt = errors.New("cannot decrypt path secret")
)

// TreeError reports which node of a ratchet tree an error concerns.
type TreeError struct {
	Op   string // what was being done: "validating tree", "applying UpdatePath", ...
	Node uint32 // the node index (leaf L is node 2L) concerned
	Err  error  // one of the Err* values above
	// Cause is the underlying failure where one exists (a signature or
	// decryption error, the application's leaf validation error).
	Cause error
}

func (e *TreeError) Error() string {
	s := fmt.Sprintf("mls: %s: node %d: %v", e.Op, e.Node, e.Err)
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}

// Unwrap returns the sentinel and, if set, the cause.
func (e *TreeError) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Err, e.Cause}
	}
	return []error{e.Err}
}

func treeErr(op string, x NodeIndex, err error) error {
	return &TreeError{Op: op, Node: uint32(x), Err: err}
}
