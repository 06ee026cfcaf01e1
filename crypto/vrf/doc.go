// Package vrf implements the verifiable random function
// ECVRF-EDWARDS25519-SHA512-TAI (suite_string 0x03) as specified in
// [RFC 9381], Section 5, and profiled in docs/spec/vrf.md.
//
// A VRF is a keyed hash whose output anyone holding the public key can check:
// Prove computes a proof pi for an input alpha under a PrivateKey,
// ProofToHash turns pi into the 64-byte output beta, and Verify checks pi
// against a PublicKey and alpha and returns the same beta. For a given key
// and alpha exactly one beta verifies (full uniqueness), and beta is
// pseudorandom to anyone without the private key. Moat's key directory uses
// beta to derive map labels, so that the directory does not enumerate users
// (the derivation is specified by the directory, not here).
//
// This package is a construction on top of primitives it does not implement:
// group arithmetic comes from [filippo.io/edwards25519] and hashing from
// crypto/sha512. Every step is written against the RFC, cites its section,
// and uses the RFC's names; it is checked against the RFC 9381 Appendix B.3
// vectors including their intermediate values.
//
// Choices the RFC leaves to an implementation (docs/spec/vrf.md):
//
//   - Verification always runs ECVRF_validate_key (validate_key = TRUE):
//     NewPublicKey rejects public keys of small order, so the VRF also has
//     full collision resistance and unpredictability under malicious key
//     generation (RFC 9381, Section 7.1).
//   - string_to_point is strict, as RFC 8032, Section 5.1.3 requires: an
//     encoding of y that is not reduced modulo p, or of x = 0 with the sign
//     bit set, is rejected, in public keys, in proofs and inside
//     encode_to_curve.
//
// Timing: Prove runs in time independent of the private key and nonce.
// Encode-to-curve by try-and-increment takes a number of attempts that
// depends on alpha (RFC 9381, Section 7.5), so the time Prove and Verify take
// reveals about one bit of alpha on average. Verification works on public
// values only and uses variable-time arithmetic.
//
// A proof reveals its input: anyone holding pi and the public key can test
// guesses for alpha with Verify (RFC 9381, Section 7.6). Only beta is
// pseudorandom.
//
// [RFC 9381]: https://www.rfc-editor.org/rfc/rfc9381.html
package vrf
