package org

import (
	"errors"
	"fmt"
)

// Decisions (docs/spec/org.md §Errors). Decoders return ErrMalformed, or a
// *KeyError for a key that crypto/keys rejects; verification returns a
// *CertificateError; dual control returns a *DualControlError. Every other
// refusal of the state machine is one of the sentinels below, wrapped with
// context.
var (
	// ErrMalformed is returned for an encoding that does not parse under
	// the strict rules of docs/spec/org.md §Encoding rules.
	ErrMalformed = errors.New("org: malformed encoding")
	// ErrStateVersion is returned when loading tenant state records of an
	// earlier format (§Tenant state records: a core record of version 2,
	// whose user records repeat every certificate). They are not
	// migrated.
	ErrStateVersion = errors.New("org: tenant state records of an earlier format (core record version 2); not migrated")

	// Certificate and statement verification (§Certificate verification).
	// They are wrapped in a *CertificateError for device certificates.

	// ErrWrongTenant: the object names another tenant (T31).
	ErrWrongTenant = errors.New("org: object belongs to another tenant")
	// ErrUnknownIssuer: the object was issued by a CA key other than the
	// trusted one, such as another tenant's CA or a retired CA (T31).
	ErrUnknownIssuer = errors.New("org: issued by a CA key that is not trusted")
	// ErrBadSignature: the signature does not verify, for any reason.
	ErrBadSignature = errors.New("org: signature verification failed")
	// ErrExpired: now is at or after the certificate's not-after time.
	ErrExpired = errors.New("org: certificate expired")
	// ErrNotYetValid: now is before the certificate's not-before time.
	ErrNotYetValid = errors.New("org: certificate not yet valid")
	// ErrRevoked: the revocation check reports the certificate's serial.
	ErrRevoked = errors.New("org: certificate revoked")
	// ErrNoRevocationCheck: the caller passed no revocation function. Use
	// NoRevocations to state that none is known.
	ErrNoRevocationCheck = errors.New("org: no revocation check given")
	// ErrWrongSubject: a statement addressed to another user or device.
	ErrWrongSubject = errors.New("org: object addressed to another user or device")
	// ErrFingerprintMismatch: a trust bundle does not match the fingerprint
	// carried in the enrolment code (§Trust bootstrap).
	ErrFingerprintMismatch = errors.New("org: trust bundle does not match the enrolment code's fingerprint")
	// ErrStaleEnrolment is returned by VerifyEnrolment for a device
	// certificate issued before the enrolment code: not the answer to
	// this enrolment (a replayed answer, or a directory with a wrong
	// clock).
	ErrStaleEnrolment = errors.New("org: enrolment answer predates the enrolment code")
	// ErrTimelineGap: timeline entries do not continue the chain the
	// verifier holds (§Timeline).
	ErrTimelineGap = errors.New("org: timeline entries do not continue the known chain")
	// ErrWitnessQuorum: a witness set whose quorum is not a strict
	// majority of its witnesses (§Witness keys), in a trust bundle, a
	// proposed bundle or tenant parameters.
	ErrWitnessQuorum = errors.New("org: witness quorum is not a strict majority of the witnesses")

	// Signing (§Signer).

	// ErrSignerFailed: a Signer returned an error or a signature that does
	// not verify under its own public key.
	ErrSignerFailed = errors.New("org: CA signer failed")
	// ErrSignerMismatch: a Signer's public key is not the tenant's CA key.
	ErrSignerMismatch = errors.New("org: signer does not hold the tenant's CA key")

	// Admin operations (§Admin operations).

	// ErrInvalidArgument: an operation's arguments can never succeed
	// (a zero id, an empty name, a threshold below 2, ...).
	ErrInvalidArgument = errors.New("org: invalid argument")
	// ErrUnknownAdmin: the acting or approving admin is not in the roster.
	ErrUnknownAdmin = errors.New("org: unknown admin")
	// ErrUnknownUser: no such user in the tenant.
	ErrUnknownUser = errors.New("org: unknown user")
	// ErrUserExists: the user id is taken, or belonged to a removed user
	// (user ids are never reused).
	ErrUserExists = errors.New("org: user id already used")
	// ErrUserRemoved: the user has been removed.
	ErrUserRemoved = errors.New("org: user removed")
	// ErrUnknownDepartment: no such department.
	ErrUnknownDepartment = errors.New("org: unknown department")
	// ErrDepartmentExists: the department id is taken.
	ErrDepartmentExists = errors.New("org: department id already used")
	// ErrDepartmentCycle: the move would make a department its own ancestor.
	ErrDepartmentCycle = errors.New("org: department move would create a cycle")
	// ErrDepartmentNotEmpty: the department still has sub-departments or members.
	ErrDepartmentNotEmpty = errors.New("org: department not empty")
	// ErrUnknownDevice: no such device for the user.
	ErrUnknownDevice = errors.New("org: unknown device")
	// ErrDeviceRevoked: the device has already been revoked.
	ErrDeviceRevoked = errors.New("org: device already revoked")
	// ErrKeyReused: one of the request's keys (identity signing, identity
	// DH or MLS signature key) was certified before in this tenant, for any
	// user, or the request uses one key twice; keys are never certified
	// twice.
	ErrKeyReused = errors.New("org: identity key already certified in this tenant")
	// ErrBadProofOfPossession: the enrolment request's self-signature does
	// not verify under the identity key it names.
	ErrBadProofOfPossession = errors.New("org: enrolment request not signed by its identity key")

	// Enrolment codes (§Enrolment codes). Unknown code ids and wrong
	// secrets are both ErrBadEnrolmentCode, so that guessing learns nothing.

	// ErrBadEnrolmentCode: unknown code, or wrong secret.
	ErrBadEnrolmentCode = errors.New("org: invalid enrolment code")
	// ErrCodeLocked: the code reached its failed-attempt limit; it stays
	// locked, even for the right secret.
	ErrCodeLocked = errors.New("org: enrolment code locked after too many failed attempts")
	// ErrCodeUsed: the code has been redeemed already (single use).
	ErrCodeUsed = errors.New("org: enrolment code already used")
	// ErrCodeExpired: the code's lifetime is over.
	ErrCodeExpired = errors.New("org: enrolment code expired")
	// ErrTenantLocked: the tenant reached its failed-attempt limit for the
	// current window; every redemption is refused until the window ends.
	ErrTenantLocked = errors.New("org: enrolment locked for this tenant after too many failed attempts")

	// Dual control (§Dual control). Wrapped in a *DualControlError.

	// ErrApprovalRequired: the user already has, or had, a device and the
	// request carries no approval.
	ErrApprovalRequired = errors.New("org: adding a device to this user requires approval")
	// ErrInsufficientApprovals: fewer distinct valid admin approvals than
	// the roster's threshold, and no device approval.
	ErrInsufficientApprovals = errors.New("org: not enough admin approvals")
	// ErrApprovalInvalid: an approval does not verify over this request
	// (another device's keys, another code, another user, a forged or
	// unknown signer).
	ErrApprovalInvalid = errors.New("org: approval does not verify for this request")
	// ErrApprovalReplayed: an approval that was already consumed.
	ErrApprovalReplayed = errors.New("org: approval already used")
	// ErrDuplicateApproval: two approvals by the same signer.
	ErrDuplicateApproval = errors.New("org: duplicate approval by one signer")

	// Org statements (§Org statements, §Escrow policy, §Admin roster).

	// ErrStatementSequence: a statement does not follow the previous one
	// of its label (its sequence, or an escrow policy's version, is not
	// the next one), or a proposal is not for the next statement.
	ErrStatementSequence = errors.New("org: statement does not follow the previous one")
	// ErrAuditorQuorum: an escrow policy carries fewer valid signatures
	// of its auditor set (or of the previous set, for a new set) than
	// that set's threshold. Wrapped in an *AuditorSignatureError.
	ErrAuditorQuorum = errors.New("org: escrow policy lacks its auditor set's signatures")
	// ErrUnknownAuditor: a key that is not an auditor of the set.
	ErrUnknownAuditor = errors.New("org: not an auditor of the escrow policy")
	// ErrRosterTooSmall: a proposed admin roster has fewer admins than
	// its threshold (or a threshold below 2).
	ErrRosterTooSmall = errors.New("org: roster would have fewer admins than its threshold")
)

// CertificateError reports why a device certificate, or a statement signed
// by the org CA, was rejected. Err is one of ErrMalformed, ErrWrongTenant,
// ErrUnknownIssuer, ErrBadSignature, ErrNotYetValid, ErrExpired, ErrRevoked
// or ErrNoRevocationCheck. A security monitor should record every
// CertificateError (T31).
type CertificateError struct {
	Tenant TenantID // as claimed by the certificate, not authenticated
	User   UserID   // as claimed
	Device DeviceID // as claimed
	Serial uint64   // as claimed
	Err    error
}

func (e *CertificateError) Error() string {
	return fmt.Sprintf("org: device certificate %d of device %s rejected: %v", e.Serial, e.Device, e.Err)
}

func (e *CertificateError) Unwrap() error { return e.Err }

// DualControlError reports a device addition refused by dual control
// (§Dual control). It is a security event: a device was about to be added
// to a user without the required approval.
type DualControlError struct {
	User     UserID
	Valid    int // distinct valid admin approvals presented
	Required int // the roster's threshold M
	Err      error
}

func (e *DualControlError) Error() string {
	return fmt.Sprintf("org: dual control refused adding a device to user %s (%d of %d admin approvals): %v", e.User, e.Valid, e.Required, e.Err)
}

func (e *DualControlError) Unwrap() error { return e.Err }

// KeyError wraps a crypto/keys error met while parsing a key, so callers can
// tell a bad key (errors.Is against the keys sentinel) from a bad frame.
type KeyError struct{ Err error }

func (e *KeyError) Error() string { return "org: " + e.Err.Error() }
func (e *KeyError) Unwrap() error { return e.Err }

// AuditorSignatureError reports an escrow policy refused for its auditor
// signatures (§Escrow policy, Verification, steps 2 and 4): Err is
// ErrBadSignature (the signature of auditor Auditor does not verify, or
// names no auditor) or ErrAuditorQuorum (Valid of Required). Previous is
// set for the previous auditor set's signatures. A client must not use an
// escrow key of such a policy.
type AuditorSignatureError struct {
	Previous bool
	Auditor  int // the auditor index of a bad signature, -1 otherwise
	Valid    int // valid signatures, -1 if a bad one stopped the count
	Required int
	Err      error
}

func (e *AuditorSignatureError) Error() string {
	set := "its auditors"
	if e.Previous {
		set = "the previous auditors"
	}
	if e.Auditor >= 0 {
		return fmt.Sprintf("org: escrow policy: signature of auditor %d of %s: %v", e.Auditor, set, e.Err)
	}
	return fmt.Sprintf("org: escrow policy: %d of %d signatures of %s: %v", e.Valid, e.Required, set, e.Err)
}

func (e *AuditorSignatureError) Unwrap() error { return e.Err }
