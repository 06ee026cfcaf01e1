package vmap

import (
	"errors"
	"fmt"
)

// Decisions a caller acts on (docs/spec/vmap.md §Errors).
var (
	// ErrInvalidProof is matched (with errors.Is) by every *ProofError: a
	// well-formed proof that does not verify against the root it was
	// checked with. A client that gets it from a server holding a signed
	// root has evidence of misbehaviour (adversarial case T26).
	ErrInvalidProof = errors.New("vmap: proof does not verify")
	// ErrMalformedProof is returned for a proof encoding that does not
	// parse, or a Proof value that cannot be encoded.
	ErrMalformedProof = errors.New("vmap: malformed proof")
	// ErrNotIncluded is returned by VerifyInclusion for a valid proof that
	// the label is absent.
	ErrNotIncluded = errors.New("vmap: label not in the map")
	// ErrCommitmentMismatch is returned by VerifyInclusion for a valid proof
	// that the label maps to another commitment.
	ErrCommitmentMismatch = errors.New("vmap: label maps to another commitment")
	// ErrIncluded is returned by VerifyAbsence for a valid proof that the
	// label is present.
	ErrIncluded = errors.New("vmap: label is in the map")

	// ErrUnknownEpoch is returned for an epoch whose root is not in the
	// store: never committed, or (for Update) the previous epoch missing.
	ErrUnknownEpoch = errors.New("vmap: unknown epoch")
	// ErrDuplicateLabel is returned by Update for a batch that changes a
	// label twice.
	ErrDuplicateLabel = errors.New("vmap: label changed twice in one epoch")
	// ErrNodeNotFound is returned (wrapped) by a NodeStore for a key it
	// does not hold.
	ErrNodeNotFound = errors.New("vmap: node not found")
	// ErrCorrupt is returned when stored nodes do not form a valid map:
	// a store returned something Update or Prove could not have written.
	ErrCorrupt = errors.New("vmap: stored map is corrupt")
	// ErrInvalidBatch is returned by Batch.Check and by stores for a batch
	// that Update could not have produced.
	ErrInvalidBatch = errors.New("vmap: invalid batch")
	// ErrConflict is returned by a store asked to commit an epoch it already
	// holds with different nodes. Nodes are immutable.
	ErrConflict = errors.New("vmap: epoch already committed with other nodes")
	// ErrMalformedNode is returned by ParseNode and ParseNodeKey.
	ErrMalformedNode = errors.New("vmap: malformed node encoding")
)

var errNodeFields = errors.New("fields inconsistent with kind")

// A ProofError reports a proof that does not verify. It is what a security
// monitor records: the label, the root, and the reason. It matches
// ErrInvalidProof.
type ProofError struct {
	Label  Label
	Root   Hash
	Reason string
}

func (e *ProofError) Error() string {
	return fmt.Sprintf("vmap: proof for label %x does not verify against root %x: %s", e.Label[:], e.Root[:], e.Reason)
}

// Is makes errors.Is(err, ErrInvalidProof) true.
func (e *ProofError) Is(target error) bool { return target == ErrInvalidProof }
