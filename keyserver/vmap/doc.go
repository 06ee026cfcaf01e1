// Package vmap implements the verifiable map of Moat's key directory, as
// specified in docs/spec/vmap.md: a compressed sparse Merkle tree from
// 256-bit labels to 32-byte value commitments, versioned by epoch, with
// lookup (inclusion) and absence proofs that clients verify without I/O.
//
// The map is the "map" half of the key directory's combined tree
// (draft-ietf-keytrans-architecture): one map root per epoch, committed in
// that epoch's log entry. Labels are VRF outputs and commitments are opaque
// to this package; the directory decides what they mean.
//
// # Server side
//
// A Map reads immutable nodes from a NodeStore and does no I/O of its own.
// Update computes epoch e from epoch e-1 and returns a Batch holding every
// node created in epoch e; the caller commits the batch atomically (MemStore
// does so in memory; vmaptest.StoreConformance checks any other backend).
// Nodes are never rewritten, so Lookup and Prove work at every committed
// epoch.
//
// # Client side
//
// ParseProof decodes a proof strictly and Verify checks it against a map
// root, returning whether the label is present and, if so, its commitment.
// VerifyInclusion and VerifyAbsence check an expected outcome.
package vmap
