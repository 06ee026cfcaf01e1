package tlog

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Errors (docs/spec/tlog.md §Errors). Sentinels name decisions; callers
// test them with errors.Is. Data-carrying errors are *ConflictError and
// *ForkError; a *ForkError is what a security monitor must see.
var (
	// ErrMalformed is returned for an encoding that does not parse
	// strictly: a checkpoint, signed note, cosignature, vkey, witness
	// request or stored state.
	ErrMalformed = errors.New("tlog: malformed encoding")
	// ErrBadProof is returned when an inclusion or consistency proof does
	// not verify.
	ErrBadProof = errors.New("tlog: proof does not verify")
	// ErrBadSignature is returned when a checkpoint lacks a valid log
	// signature line, either of them, or carries a signature line from a
	// known key that does not verify (tlog-witness: 403 Forbidden).
	ErrBadSignature = errors.New("tlog: bad or missing log signature")
	// ErrUnknownOrigin is returned for a checkpoint of a log the verifier
	// or witness is not configured for (tlog-witness: 404 Not Found).
	ErrUnknownOrigin = errors.New("tlog: unknown log origin")
	// ErrNoQuorum is returned when fewer than the configured number of
	// distinct witnesses validly cosigned a checkpoint.
	ErrNoQuorum = errors.New("tlog: not enough witness cosignatures")
	// ErrStale is returned when a checkpoint's witnessed time is older than
	// MaxAge (docs/spec/tlog.md §Freshness).
	ErrStale = errors.New("tlog: checkpoint is stale")
	// ErrFuture is returned when cosignatures are too far ahead of the
	// verifier's clock to count: the local clock is probably behind.
	ErrFuture = errors.New("tlog: cosignature times are ahead of the local clock")
	// ErrClockBehind is matched by a *ClockError: the local clock is
	// behind the verifier's authenticated time floor by more than MaxSkew
	// (docs/spec/tlog.md §Time floor).
	ErrClockBehind = errors.New("tlog: local clock is behind signed time")
	// ErrTimeRollback is returned for a checkpoint whose witnessed time is
	// older than that of the checkpoint the verifier last accepted.
	ErrTimeRollback = errors.New("tlog: checkpoint is older than the last accepted one")
	// ErrSizeRollback is returned for a checkpoint of a smaller tree than
	// the one the verifier last accepted.
	ErrSizeRollback = errors.New("tlog: tree size went backwards")
	// ErrInconsistent is returned by a witness for a checkpoint that is not
	// consistent with the one it last cosigned, a consistency proof that
	// does not verify, or an empty tree with the wrong root (tlog-witness:
	// 422 Unprocessable Entity). It wraps the detail.
	ErrInconsistent = errors.New("tlog: checkpoint is inconsistent with the witnessed state")
	// ErrRecordChanged is returned by WitnessStore.CompareAndSwap when the
	// stored record is not the expected one.
	ErrRecordChanged = errors.New("tlog: witness record changed concurrently")
)

// ClockError reports a local clock that is provably behind: Now, the
// verifier's local time, is more than MaxSkew before Floor, a time the
// verifier authenticated (a time floor of docs/spec/tlog.md §Time floor:
// the enrolment's, or a witness quorum's). The client refuses to decide on
// such a clock; it SHOULD tell its user to correct the device's clock. It
// matches ErrClockBehind.
type ClockError struct {
	Now, Floor time.Time
}

func (e *ClockError) Error() string {
	return fmt.Sprintf("tlog: local clock %v is %v behind signed time %v",
		e.Now.UTC().Format(time.RFC3339), e.Floor.Sub(e.Now).Truncate(time.Second), e.Floor.UTC().Format(time.RFC3339))
}

// Is makes errors.Is(err, ErrClockBehind) true.
func (e *ClockError) Is(target error) bool { return target == ErrClockBehind }

// ConflictError is a witness's answer to an add-checkpoint request whose old
// size is not the size of the checkpoint it last cosigned for that log
// (tlog-witness: 409 Conflict). Size is that size; Body is the response body.
type ConflictError struct {
	Size uint64
}

func (e *ConflictError) Error() string {
	return "tlog: witness has cosigned size " + strconv.FormatUint(e.Size, 10)
}

// ConflictContentType is the Content-Type of a 409 response body.
const ConflictContentType = "text/x.tlog.size"

// Body returns the 409 response body: the size in decimal and a newline.
func (e *ConflictError) Body() []byte {
	return append(strconv.AppendUint(nil, e.Size, 10), '\n')
}

// ParseConflictBody parses a 409 response body, for a log that retries
// with the witness's size.
func ParseConflictBody(b []byte) (uint64, error) {
	if len(b) == 0 || b[len(b)-1] != '\n' {
		return 0, fmt.Errorf("%w: conflict body", ErrMalformed)
	}
	n, err := parseDecimal(b[:len(b)-1])
	if err != nil {
		return 0, fmt.Errorf("%w: conflict body: %v", ErrMalformed, err)
	}
	return n, nil
}

// ForkError is evidence that the log signed two checkpoints that are not
// consistent with each other (docs/spec/tlog.md §Fork evidence). Trusted is
// the signed note the Verifier had accepted; Conflicting is a note the log
// also signed. Both are kept verbatim, with every signature line, so that
// anyone holding the log's public key can check them.
//
// If the sizes are equal (Proven reports true), the two notes alone prove
// the fork. Otherwise Conflicting is the larger tree, it was cosigned by a
// witness quorum, and Proof is the consistency proof that was offered with
// it and failed: the evidence then is that no valid proof exists, which a
// third party checks by asking the log for one.
type ForkError struct {
	Trusted     []byte
	Conflicting []byte
	Proof       []Hash
}

func (e *ForkError) Error() string {
	if e.Proven() {
		return "tlog: log fork: two signed checkpoints of the same size with different roots"
	}
	return "tlog: possible log fork: cosigned checkpoint without a valid consistency proof"
}

// Proven reports whether the two checkpoints have the same size, so that
// they prove the fork without any proof.
func (e *ForkError) Proven() bool {
	a, errA := checkpointOfNote(e.Trusted)
	b, errB := checkpointOfNote(e.Conflicting)
	return errA == nil && errB == nil && a.Size == b.Size && a.Root != b.Root
}
