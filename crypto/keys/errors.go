package keys

import "errors"

var (
	// ErrWrongType is returned when an encoding carries another key type's
	// tag or text prefix (docs/spec/keys.md §Binary encoding).
	ErrWrongType = errors.New("keys: encoding is of another key type")
	// ErrMalformed is returned for an encoding of the wrong length or with
	// invalid characters.
	ErrMalformed = errors.New("keys: malformed key encoding")
	// ErrNonCanonical is returned for a point or scalar that is not in its
	// unique canonical encoding.
	ErrNonCanonical = errors.New("keys: non-canonical key encoding")
	// ErrLowOrder is returned for an X25519 or Ed25519 point of small order,
	// and for an X25519 exchange whose shared secret is all zeros.
	ErrLowOrder = errors.New("keys: low-order point")
	// ErrInvalidKEMKey is returned for an ML-KEM key that fails the FIPS 203
	// encapsulation (modulus) or decapsulation (hash) key checks.
	ErrInvalidKEMKey = errors.New("keys: invalid ML-KEM key")
	// ErrBadSignature is returned when a signature does not verify. It says
	// nothing about why.
	ErrBadSignature = errors.New("keys: signature verification failed")
)
