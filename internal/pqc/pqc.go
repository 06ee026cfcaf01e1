// Package pqc is the only door to circl's post-quantum primitives that Moat
// uses: ML-KEM-768 (FIPS 203), ML-DSA-44 and ML-DSA-65 (FIPS 204).
//
// circl measures 3–4× faster than the standard library's ML-KEM on the
// reference machine (docs/performance.md), but its AVX2 assembly returns
// without VZEROUPPER, which slows every later SSE instruction on the thread
// (SHA-256, AES) until something clears the upper YMM state
// (internal/vecstate). Every function here clears it before returning, so
// no caller can forget; TestOnlyDoor keeps other packages from importing
// those circl packages outside tests.
package pqc

import "errors"

var (
	// ErrMalformed is a public key of the wrong length or one that the
	// standard's input checks reject.
	ErrMalformed = errors.New("pqc: malformed public key")
	// ErrNonCanonical is an ML-DSA public key that does not re-encode to
	// itself.
	ErrNonCanonical = errors.New("pqc: non-canonical public key")
)
