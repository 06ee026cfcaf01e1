package tlog

// Every fixed string and signature type byte of docs/spec/tlog.md, in one
// place (STYLE 6). The Moat labels start with "moat/v1/tlog/" and none is a
// prefix of another (TestLabelsDistinct).

// Signed-note signature type identifier bytes (c2sp.org/signed-note
// §Signature types).
const (
	sigTypeEd25519     = 0x01 // Ed25519 note signature: the log's classical line
	sigTypeCosigV1     = 0x04 // timestamped Ed25519 cosignature/v1
	sigTypeCosigMLDSA  = 0x06 // timestamped ML-DSA-44 subtree/v1 cosignature
	sigTypePrivateUse  = 0xff // followed by a longer identifier
	labelLogMLDSA65    = "moat/v1/tlog/ml-dsa-65-note-signature"
	labelTrustState    = "moat/v1/tlog/trust-state" // the trust state without a floor: read, never written
	labelVerifierState = "moat/v1/tlog/verifier-state"
	labelWitnessRecord = "moat/v1/tlog/witness-record"
	labelNextLogKey    = "moat/v1/tlog/next-log-key"
)

// logMLDSA65Type is the signature type of the log's ML-DSA-65 line, as it
// enters the key ID hash: 0xff, the Moat identifier, a newline
// (docs/spec/tlog.md §ML-DSA-65 log signature).
const logMLDSA65Type = "\xff" + labelLogMLDSA65 + "\n"

// Cosignature message prefixes (c2sp.org/tlog-cosignature).
const (
	cosigV1Header = "cosignature/v1\n" // Ed25519 signed message header line
	cosigV1Time   = "time "            // Ed25519 timestamp line prefix
	subtreeV1     = "subtree/v1\n\x00" // ML-DSA-44 cosigned_message label, 12 bytes
)

// moatLabels lists the Moat labels for the distinctness test.
var moatLabels = []string{labelLogMLDSA65, labelTrustState, labelVerifierState, labelWitnessRecord, labelNextLogKey}
