package bundle

import "errors"

// Errors of docs/spec/bundle.md §Errors. A bad signature is
// keys.ErrUnsignedPrekey and an expired sealed-sender key
// sealed.ErrKeyExpired.
var (
	// ErrMalformed is returned for an upload or response that does not
	// parse, or breaks a limit.
	ErrMalformed = errors.New("bundle: malformed upload or bundle")
	// ErrIdentityMismatch is returned by Open for a bundle of another
	// identity than the one verified in the key directory (T14).
	ErrIdentityMismatch = errors.New("bundle: bundle is for another identity")
)
