// Package tlog implements Moat's transparency log as specified in
// docs/spec/tlog.md: an append-only RFC 6962 Merkle tree, C2SP
// tlog-checkpoint checkpoints signed with a hybrid Ed25519 + ML-DSA-65 log
// key, C2SP tlog-cosignature witness cosignatures (Ed25519 cosignature/v1
// and ML-DSA-44 subtree/v1), the C2SP tlog-witness add-checkpoint protocol,
// and the client trust state that turns all of these into a decision.
//
// The package does no I/O. It has four users:
//
//   - a log (the key directory, the escrow release log) appends one batch
//     of leaves per epoch to a [Tree], signs the new [Checkpoint] with
//     [SignCheckpoint], sends [AddCheckpointRequest]s to witnesses and
//     merges their cosignatures with [AddCosignatures]; it moves to a new
//     key by announcing it ([NextLogKeyLine]) in a checkpoint signed by
//     the old one (docs/spec/tlog.md §Log key rotation);
//   - a witness runs a [Witness] over a [WitnessStore], and follows such
//     announcements;
//   - a client keeps one [Verifier] per log and passes every checkpoint it
//     sees to [Verifier.VerifyCheckpoint], then checks inclusion proofs
//     against the checkpoint it returns with [VerifyInclusion];
//   - a monitor keeps the [ForkError] a Verifier returns as evidence.
//
// Proofs are plain RFC 6962 proofs that any RFC 6962 verifier accepts, and
// the Ed25519 line of a checkpoint verifies with an unmodified
// golang.org/x/mod/sumdb/note verifier.
package tlog
