package deliverytoken

import "errors"

// Errors of docs/spec/envelope.md §Errors.
var (
	// ErrMalformed is returned for an encoding that does not parse.
	ErrMalformed = errors.New("deliverytoken: malformed encoding")
	// ErrBadToken is the one error of a token that does not authorise a
	// send to the mailbox, whatever the cause.
	ErrBadToken = errors.New("deliverytoken: token does not authorise this send")
	// ErrDoubleSpend is returned for an anonymous token already redeemed.
	ErrDoubleSpend = errors.New("deliverytoken: anonymous token already spent")
	// ErrTooManyVerifiers is returned when a mailbox already has
	// MaxVerifiers registered.
	ErrTooManyVerifiers = errors.New("deliverytoken: too many verifiers for this mailbox")
	// ErrWrongKey is returned by Finalize for an issuance response that
	// does not verify under the issuer key the tokens were requested for.
	ErrWrongKey = errors.New("deliverytoken: issuance response does not verify")
)
