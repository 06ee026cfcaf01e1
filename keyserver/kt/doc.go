// Package kt implements the protocol core of Moat's key directory as
// specified in docs/spec/directory.md: how map labels are derived from VRF
// outputs (RFC 9381), the value records and their hash chain, the
// commitments the verifiable map holds, the log's epoch entries, the proof
// bundles the directory serves, and the client that verifies them and
// monitors its own user's label.
//
// It combines three components, each with its own specification: the log
// (crypto/tlog, docs/spec/tlog.md), the verifiable map (keyserver/vmap,
// docs/spec/vmap.md) and the VRF (crypto/vrf, docs/spec/vrf.md); the values
// are keyserver/org's (docs/spec/org.md). The package does no I/O.
//
// # Directory side
//
// At each epoch the directory takes the tenant's org.Update values, derives
// each label with EvaluateLabel on the VRF input Alpha, makes each value
// the label's next ValueRecord with NextRecord, updates the map with the
// records' commitments, appends the EpochEntry that holds the new map root
// to the log, and has the checkpoint signed and cosigned. It answers
// lookups with a LookupResponse, history requests with a HistoryResponse,
// checkpoint requests with a ConsistencyResponse and requests for the
// transitions after a trust bundle with a TransitionsResponse, each
// relative to the tree size the client says it trusts. Package kttest wires all of it up in
// memory and is the reference for a service.
//
// # Client side
//
// A Client holds the trust bundle's anchors and the client's trust state.
// A new device gets its first one from Enrol, which checks the enrolment
// answer and starts the client at the enrolment's authenticated time floor
// (T46); later runs restore it with RestoreClient. VerifyLookup,
// VerifyAbsence, VerifyOrgLookup, VerifyHistory and VerifyOrgHistory (every
// change of an org statement, in order) verify
// responses; Monitor checks the device's own label at every epoch since its
// last step (MonitorResponse, in pages of MaxMonitorEpochs) and returns an
// Alert for every change the device did not make (adversarial case T29),
// and for every epoch at which the map held what the label's records do
// not explain (a rewritten history, a backdated record). A record older
// than a CA rotation the client knows needs a record proof (EpochProof),
// else ErrRecordEpoch. A response
// that the directory cannot justify is a *KTProofError (T26), with the
// evidence; checkpoint failures, a *tlog.ForkError among them, come from
// crypto/tlog unchanged. A key that reaches the client outside the
// directory (a prekey bundle's identity, an MLS credential's key) is used
// only if LookupResult.CheckIdentity or CheckMLSKey finds it in a verified
// lookup; otherwise they return a *KeyNotInDirectoryError, the alarm (T26).
//
// FollowTrustBundle moves the client to a new trust bundle (a CA rotation,
// a new log key, new witnesses) published in the directory;
// FollowTransitions moves a client that was offline across any number of
// them, from the transitions the directory keeps (TransitionsResponse).
// The client keeps the CA keys before its pinned one, learnt as it follows
// CA rotations or from the ca-rotation label's history (VerifyOrgHistory),
// so that records published before a CA rotation still verify. MarshalState and RestoreClient persist
// the client's state with its bundle; a state restores with that bundle or
// a signed successor of it, also right after a rotation.
package kt
