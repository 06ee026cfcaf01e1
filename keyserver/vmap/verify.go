package vmap

// Proof verification of docs/spec/vmap.md §Verification. No I/O: a client
// holding a map root (from a verified log entry) and a proof calls Verify.

// A Result is what a verified proof establishes about a label at a root.
type Result struct {
	// Present reports whether the label is in the map.
	Present bool
	// Commitment is the label's commitment when Present.
	Commitment Commitment
}

// Verify checks proof for label against the map root and returns what it
// proves. Any failure is a *ProofError, which matches ErrInvalidProof.
func Verify(root Hash, label Label, proof *Proof) (Result, error) {
	h, res, err := ProofRoot(label, proof)
	if err != nil {
		err.(*ProofError).Root = root
		return Result{}, err
	}
	if h != root {
		return Result{}, &ProofError{Label: label, Root: root, Reason: "root mismatch"}
	}
	return res, nil
}

// ProofRoot runs steps 1 to 3 of docs/spec/vmap.md §Verification: it
// checks proof for label and returns the root it leads to and what it
// shows there. It is for a verifier that checks the root by other means
// (the key directory's monitoring finds it in a log leaf, directory.md
// §Monitoring); Verify is ProofRoot followed by the comparison with a
// known root. Any failure is a *ProofError, without a root.
func ProofRoot(label Label, proof *Proof) (Hash, Result, error) {
	fail := func(reason string) (Hash, Result, error) {
		return Hash{}, Result{}, &ProofError{Label: label, Reason: reason}
	}
	depth := len(proof.Siblings)
	if depth > MaxDepth {
		return fail("path longer than 256")
	}
	var h Hash
	var res Result
	switch proof.Kind {
	case ProofInclusion:
		if proof.Label != (Label{}) {
			return fail("inclusion proof carries a label")
		}
		h = leafHash(&label, &proof.Commitment)
		res = Result{Present: true, Commitment: proof.Commitment}
	case ProofAbsenceEmpty:
		if proof.Label != (Label{}) || proof.Commitment != (Commitment{}) {
			return fail("absence proof carries a leaf")
		}
		if depth == MaxDepth {
			return fail("non-canonical: empty subtree at depth 256")
		}
		h = emptyHashes[depth]
	case ProofAbsenceLeaf:
		if proof.Label == label {
			return fail("absence proof ends on the label's own leaf")
		}
		if !proof.Label.hasPrefix(&label, depth) {
			return fail("absence proof ends on a leaf off the label's path")
		}
		h = leafHash(&proof.Label, &proof.Commitment)
	default:
		return fail("unknown proof kind")
	}
	// Compression rule (docs/spec/vmap.md §Compression): a subtree with at
	// most one label is never split, so the last sibling is never empty.
	if depth > 0 && proof.Siblings[depth-1] == emptyHashes[depth] {
		return fail("non-canonical: last sibling is empty")
	}
	for d := depth - 1; d >= 0; d-- {
		if label.bit(d) == 0 {
			h = interiorHash(&h, &proof.Siblings[d])
		} else {
			h = interiorHash(&proof.Siblings[d], &h)
		}
	}
	return h, res, nil
}

// VerifyInclusion checks that proof shows label mapped to commitment at
// root. A valid proof of another outcome is ErrNotIncluded or
// ErrCommitmentMismatch; an invalid proof is a *ProofError.
func VerifyInclusion(root Hash, label Label, commitment Commitment, proof *Proof) error {
	res, err := Verify(root, label, proof)
	switch {
	case err != nil:
		return err
	case !res.Present:
		return ErrNotIncluded
	case res.Commitment != commitment:
		return ErrCommitmentMismatch
	}
	return nil
}

// VerifyAbsence checks that proof shows label absent at root. A valid proof
// that the label is present is ErrIncluded; an invalid proof is a
// *ProofError.
func VerifyAbsence(root Hash, label Label, proof *Proof) error {
	res, err := Verify(root, label, proof)
	if err != nil {
		return err
	}
	if res.Present {
		return ErrIncluded
	}
	return nil
}
