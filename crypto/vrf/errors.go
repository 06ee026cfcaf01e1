package vrf

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalidProof is returned when a proof does not verify. Every
	// rejection of a proof, malformed or not, satisfies
	// errors.Is(err, ErrInvalidProof).
	ErrInvalidProof = errors.New("vrf: invalid proof")
	// ErrInvalidKey is returned for a public key that is rejected: malformed
	// (see ErrMalformed) or of small order (RFC 9381, Section 5.4.5). Every
	// rejection of a key satisfies errors.Is(err, ErrInvalidKey).
	ErrInvalidKey = errors.New("vrf: invalid public key")
	// ErrMalformed is returned, alongside ErrInvalidKey or ErrInvalidProof,
	// for an encoding of the wrong length or one that string_to_point or
	// ECVRF_decode_proof rejects: not a point, a point not in its canonical
	// encoding, or s >= q. It is returned alone for a private key seed of the
	// wrong length.
	ErrMalformed = errors.New("vrf: malformed encoding")
)

var (
	errMalformedKey   = fmt.Errorf("%w: %w", ErrInvalidKey, ErrMalformed)
	errMalformedProof = fmt.Errorf("%w: %w", ErrInvalidProof, ErrMalformed)
)
