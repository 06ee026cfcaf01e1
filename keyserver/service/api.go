package service

// JSON bodies of the enrolment and admin endpoints
// (docs/spec/directory-api.md). Ids are lowercase hex; binary protocol
// objects are their docs/spec encodings in standard base64 (JSON []byte).

import "github.com/moat-im/moat/keyserver/kt"

// EnrolRequest is the body of POST /v1/{tenant}/enrol.
type EnrolRequest struct {
	// Code is the enrolment code's text form (moat-enrol2:…). It carries
	// a secret: clients send it only here, and the service never logs it.
	Code string `json:"code"`
	// Request is the org.EnrolmentRequest encoding.
	Request []byte `json:"request"`
	// Approvals are org.Approval encodings: one of the user's devices, or
	// admins (admin approvals may also be lodged with admin/approve).
	Approvals [][]byte `json:"approvals,omitempty"`
}

// EnrolResponse is the answer to a successful enrolment.
type EnrolResponse struct {
	User   string `json:"user"`
	Device string `json:"device"`
	// Certificate is the org.DeviceCertificate encoding.
	Certificate []byte `json:"certificate"`
	// TrustBundle is the org.TrustBundle encoding, which the device checks
	// against its code's fingerprint (org.CheckTrustBundle).
	TrustBundle []byte `json:"trust_bundle"`
	// Epoch is the first epoch that can publish the device.
	Epoch uint64 `json:"epoch"`
	// Consistency is the kt.ConsistencyResponse encoding, from tree size
	// 0, of the latest witness-cosigned checkpoint with its last entry, if
	// the directory serves one: the device's first checkpoint, judged
	// against the time floor of its enrolment (docs/spec/org.md §Time
	// floor at enrolment), and the entry it then holds
	// (docs/spec/directory.md §Held entry).
	Consistency []byte `json:"consistency,omitempty"`
}

// Enrolment returns what kt.Enrol verifies of the answer.
func (r *EnrolResponse) Enrolment() *kt.Enrolment {
	return &kt.Enrolment{TrustBundle: r.TrustBundle, Certificate: r.Certificate, Consistency: r.Consistency}
}

// AddUserRequest is admin/add-user. An empty User asks the service for a
// random id.
type AddUserRequest struct {
	User        string `json:"user,omitempty"`
	DisplayName string `json:"display_name"`
	Department  string `json:"department,omitempty"`
}

// UserRequest names a user: admin/remove-user.
type UserRequest struct {
	User string `json:"user"`
}

// DepartmentRequest is admin/add-department, move-department,
// rename-department, remove-department and set-department (which uses
// User and Department).
type DepartmentRequest struct {
	Department string `json:"department,omitempty"`
	Parent     string `json:"parent,omitempty"`
	Name       string `json:"name,omitempty"`
	User       string `json:"user,omitempty"`
}

// IssueCodeRequest is admin/issue-code.
type IssueCodeRequest struct {
	User            string `json:"user"`
	LifetimeSeconds int64  `json:"lifetime_seconds,omitempty"` // default one day
}

// IssueCodeResponse carries a new enrolment code. Code is secret.
type IssueCodeResponse struct {
	Code      string `json:"code"`
	CodeID    string `json:"code_id"`
	ExpiresAt int64  `json:"expires_at"`
}

// CancelCodeRequest is admin/cancel-code.
type CancelCodeRequest struct {
	CodeID string `json:"code_id"`
}

// RevokeDeviceRequest is admin/revoke-device. Reason is one of
// unspecified, lost, compromised, user-removed, retired.
type RevokeDeviceRequest struct {
	User   string `json:"user"`
	Device string `json:"device"`
	Reason string `json:"reason,omitempty"`
}

// RevokeDeviceResponse carries the signed revocation and wipe
// instruction.
type RevokeDeviceResponse struct {
	Serials    []uint64 `json:"serials"`
	Revocation []byte   `json:"revocation"`
	Wipe       []byte   `json:"wipe"`
}

// ApproveRequest is admin/approve: an admin's approval (org.Approval,
// signed by the requesting admin) of an enrolment request, for a user who
// lost every device. It is held, in memory, until the device enrols.
type ApproveRequest struct {
	User     string `json:"user"`
	Request  []byte `json:"request"`
	Approval []byte `json:"approval"`
}

// TrustBundleApproveRequest is admin/set-witnesses: an admin's approval
// (org.ApproveTrustBundle, signed by the requesting admin) of a proposed
// trust bundle (MarshalProposal). Approvals are held, durably, until the
// roster's threshold of admins approved the same proposal.
type TrustBundleApproveRequest struct {
	Bundle   []byte `json:"bundle"`
	Approval []byte `json:"approval"`
}

// TrustBundleApproveResponse counts the approvals of the proposal; Applied
// is set once the threshold is met and the CA signed the new bundle, which
// is published at PendingEpoch.
type TrustBundleApproveResponse struct {
	Approvals    int    `json:"approvals"`
	Threshold    int    `json:"threshold"`
	Applied      bool   `json:"applied,omitempty"`
	Sequence     uint64 `json:"sequence,omitempty"`
	PendingEpoch uint64 `json:"pending_epoch,omitempty"`
	// Certificates is, for an applied CA rotation, the number of device
	// certificates re-issued under the new key.
	Certificates int `json:"certificates,omitempty"`
}

// RotateRequest is admin/rotate-ca and admin/rotate-log-key: empty to get
// the rotation under approval (proposing one with a new key if there is
// none), or the proposal's Bundle with the requesting admin's own
// Approval of it (org.ApproveTrustBundle), answered with a
// TrustBundleApproveResponse.
type RotateRequest struct {
	Bundle   []byte `json:"bundle,omitempty"`
	Approval []byte `json:"approval,omitempty"`
}

// RotationProposal is the rotation under approval: the proposed trust
// bundle (MarshalProposal) naming the new key, that key in its text
// encoding (moat-org1:… or moat-log1:…), the bundle's sequence number,
// and the approvals so far.
type RotationProposal struct {
	Bundle    []byte `json:"bundle"`
	Key       string `json:"key"`
	Sequence  uint64 `json:"sequence"`
	Approvals int    `json:"approvals"`
	Threshold int    `json:"threshold"`
}

// ListResponse is admin/list: the users of the latest published org chart
// and their current devices.
type ListResponse struct {
	Epoch uint64     `json:"epoch"`
	Users []ListUser `json:"users"`
}

// ListUser is one user of ListResponse.
type ListUser struct {
	User        string       `json:"user"`
	DisplayName string       `json:"display_name"`
	Department  string       `json:"department,omitempty"`
	Devices     []ListDevice `json:"devices"`
}

// ListDevice is one device of ListUser.
type ListDevice struct {
	Device   string `json:"device"`
	Serial   uint64 `json:"serial"`
	NotAfter int64  `json:"not_after"`
}

// PublishResponse is admin/publish: the epoch committed on demand.
type PublishResponse struct {
	Epoch    uint64 `json:"epoch"`
	Cosigned bool   `json:"cosigned"`
}

// OKResponse is the answer of admin operations that change the tenant's
// state: the change is published at epoch PendingEpoch or later. User is
// set by add-user, Department by add-department, Sequence (of the signed
// statement) by publish-policy and set-escrow-policy.
type OKResponse struct {
	User         string `json:"user,omitempty"`
	Department   string `json:"department,omitempty"`
	Sequence     uint64 `json:"sequence,omitempty"`
	PendingEpoch uint64 `json:"pending_epoch"`
}

// PolicyEntry is one key and value of a policy bundle.
type PolicyEntry struct {
	Key   string `json:"key"`
	Value []byte `json:"value"`
}

// PublishPolicyRequest is admin/publish-policy: the next version of the
// policy bundle PolicyID (org.PolicyBundle), entries in any order, keys
// distinct.
type PublishPolicyRequest struct {
	PolicyID string        `json:"policy_id"`
	Entries  []PolicyEntry `json:"entries"`
}

// AssignPolicyRequest is admin/assign-policy: the policy bundle the user
// is subject to, empty for none.
type AssignPolicyRequest struct {
	User     string `json:"user"`
	PolicyID string `json:"policy_id,omitempty"`
}

// EscrowPolicyRequest is admin/set-escrow-policy: an org.EscrowPolicy
// signed by its auditors (MarshalEscrowProposal).
type EscrowPolicyRequest struct {
	Policy []byte `json:"policy"`
}

// RosterApproveRequest is admin/update-roster: an admin's approval
// (org.ApproveRoster, signed by the requesting admin) of a proposed admin
// roster (MarshalRosterProposal). The answer is a
// TrustBundleApproveResponse, as for set-witnesses.
type RosterApproveRequest struct {
	Roster   []byte `json:"roster"`
	Approval []byte `json:"approval"`
}

// RosterResponse is admin/get-roster: the org.AdminRoster encoding of the
// tenant's current roster.
type RosterResponse struct {
	Roster []byte `json:"roster"`
}
