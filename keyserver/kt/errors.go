package kt

import (
	"errors"
	"fmt"

	"github.com/moat-im/moat/keyserver/vmap"
)

// Errors (docs/spec/directory.md §Errors). Sentinels name decisions;
// *KTProofError carries the evidence a security monitor must see (STYLE 9).
// Checkpoint failures are crypto/tlog's errors, passed through: in
// particular a *tlog.ForkError, which errors.As finds in any error the
// Client returns.
var (
	// ErrMalformed is returned for an encoding that does not parse
	// strictly, or a value that cannot be encoded.
	ErrMalformed = errors.New("kt: malformed encoding")
	// ErrProof is matched (with errors.Is) by every *KTProofError: a
	// response that does not prove what it claims against a log-signed
	// checkpoint (adversarial case T26). The key it carried MUST NOT be
	// used, and the error SHOULD be reported.
	ErrProof = errors.New("kt: key transparency proof does not verify")
	// ErrNotFound is returned by VerifyLookup for a valid proof that the
	// label is absent: the user has no value in the directory.
	ErrNotFound = errors.New("kt: label not in the directory")
	// ErrIncluded is returned by VerifyAbsence for a valid proof that the
	// label is present.
	ErrIncluded = errors.New("kt: label is in the directory")
	// ErrBaseSize is returned when a response's consistency proof starts
	// from another tree size than the one the client trusts (it raced with
	// another update of the client's state): ask again with TreeSize.
	ErrBaseSize = errors.New("kt: response is not relative to the client's tree size")
	// ErrSince is returned when a history response starts from another
	// version than the one asked for, or Monitor is given a history that
	// does not start at its position.
	ErrSince = errors.New("kt: history does not start at the expected version")
	// ErrNotEnrolled is returned by Monitor when the device's own
	// enrolment is not in its user's timeline (yet): a device monitors
	// from the epoch that publishes its certificate.
	ErrNotEnrolled = errors.New("kt: this device is not in its user's timeline")
	// ErrNoCheckpoint is returned when a response relies on the client's
	// trusted checkpoint (an empty note) and the client has none.
	ErrNoCheckpoint = errors.New("kt: no trusted checkpoint")
	// ErrRecordEpoch is wrapped by the *KTProofError (step
	// StepRecordEpoch) of a record that claims an epoch before a CA
	// rotation the client knows without a valid proof that the map held
	// it then (docs/spec/directory.md §Client verification, step 7): a
	// value a retired CA key may have signed after its rotation.
	ErrRecordEpoch = errors.New("kt: record epoch not proven")
)

// ProofStep names the check of docs/spec/directory.md §Client verification
// that a *KTProofError failed.
type ProofStep uint8

// Proof steps, in verification order.
const (
	// StepEpoch: the epoch entry is not the checkpoint's last leaf, or
	// its epoch or time goes back.
	StepEpoch ProofStep = iota + 1
	// StepLogInclusion: the epoch entry's inclusion proof fails.
	StepLogInclusion
	// StepVRF: the VRF proof does not verify for the label asked for
	// (including a proof for another user's label).
	StepVRF
	// StepMap: the map proof does not verify against the entry's root.
	StepMap
	// StepRecord: the value record does not open the map's commitment,
	// or its fields are inconsistent.
	StepRecord
	// StepHistory: the records do not form the label's hash chain (a gap,
	// a reordering, a wrong prev_hash, epochs not increasing).
	StepHistory
	// StepRollback: the label's version went back, its commitment changed
	// at a version the client saw, or the label vanished.
	StepRollback
	// StepValue: the committed value is not a valid value for the label
	// (it does not parse, names another tenant or user, or is not signed
	// by the org CA).
	StepValue
	// StepRecordEpoch: a record older than a CA rotation the client
	// knows comes without a valid record proof (ErrRecordEpoch).
	StepRecordEpoch
)

var stepNames = [...]string{
	StepEpoch: "epoch entry", StepLogInclusion: "log inclusion", StepVRF: "VRF proof",
	StepMap: "map proof", StepRecord: "value record", StepHistory: "history",
	StepRollback: "rollback", StepValue: "value", StepRecordEpoch: "record epoch",
}

func (s ProofStep) String() string {
	if int(s) < len(stepNames) && stepNames[s] != "" {
		return stepNames[s]
	}
	return fmt.Sprintf("ProofStep(%d)", uint8(s))
}

// KTProofError reports a response that fails key-transparency
// verification after its checkpoint was found signed by the log: evidence
// of misbehaviour by the directory (T26). It matches ErrProof. Checkpoint
// and Response hold the evidence verbatim; a client SHOULD keep them and
// report them to its organisation's monitor.
type KTProofError struct {
	Step       ProofStep
	Label      vmap.Label // zero if the VRF proof failed
	Epoch      uint64     // the epoch entry's epoch
	Reason     string
	Checkpoint []byte // the log-signed checkpoint note the proof was checked against
	Response   []byte // the response's encoding
	Err        error  // the underlying error, if any
}

func (e *KTProofError) Error() string {
	s := fmt.Sprintf("kt: %v at epoch %d: %s", e.Step, e.Epoch, e.Reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is makes errors.Is(err, ErrProof) true.
func (e *KTProofError) Is(target error) bool { return target == ErrProof }

// Unwrap returns the underlying error.
func (e *KTProofError) Unwrap() error { return e.Err }
