package org

// Type bytes (docs/spec/org.md §Type bytes). Every encoding of this package
// starts with one of them. They are disjoint from the crypto/keys tags
// (0x01–0x12) and from the PQXDH and ratchet encodings (0x21–0x24), so that
// no two Moat encodings overlap. A new version of a format takes a new
// version byte, not a new type byte.
const (
	typeDeviceCertificate = 0x30
	typeTrustBundle       = 0x31
	typeEnrolmentCode     = 0x32
	typeEnrolmentRequest  = 0x33
	typeApproval          = 0x34
	typeCARotation        = 0x35
	typeAdminRoster       = 0x36
	typeOrgChart          = 0x37
	typePolicyBundle      = 0x38
	typeEscrowPolicy      = 0x39
	typeRevocation        = 0x3a
	typeWipeInstruction   = 0x3b
	typeTimelineEntry     = 0x3c
	typeUserValue         = 0x3d
	typeTenantState       = 0x3e

	version1 = 1
	// versionTimelineEntry is the version of TimelineEntry, 2 since its
	// device_added and device_recovered actions carry the hashes of the
	// user's other certificates.
	versionTimelineEntry = 2
)

// Domain-separation labels (docs/spec/org.md §Labels), all in one place.
// Every signature this package makes or checks covers label || 0x00 ||
// message; no label is a prefix of another, nor of a crypto/internal/label
// label (TestLabelsDistinct). The org CA's hybrid signature adds its own
// role label underneath ("moat/v1/hybrid-signature/org", docs/spec/keys.md).
const (
	labelDeviceCertificate = "moat/v1/org/device-certificate"
	labelTrustBundle       = "moat/v1/org/trust-bundle"
	labelTrustFingerprint  = "moat/v1/org/fingerprint/trust-bundle"
	labelEnrolmentSecret   = "moat/v1/org/enrolment-secret"
	labelEnrolmentRequest  = "moat/v1/org/enrolment-request"
	labelDeviceApproval    = "moat/v1/org/device-approval"
	labelRosterApproval    = "moat/v1/org/roster-approval"
	labelBundleApproval    = "moat/v1/org/bundle-approval"
	labelCARotation        = "moat/v1/org/ca-rotation"
	labelAdminRoster       = "moat/v1/org/admin-roster"
	labelOrgChart          = "moat/v1/org/org-chart"
	labelPolicyBundle      = "moat/v1/org/policy-bundle"
	labelEscrowPolicy      = "moat/v1/org/escrow-policy"
	labelEscrowAuditor     = "moat/v1/org/escrow-auditor-signature"
	labelRevocation        = "moat/v1/org/revocation"
	labelWipeInstruction   = "moat/v1/org/wipe-instruction"
	labelTimelineEntry     = "moat/v1/org/timeline-entry"
	labelHybridAdmin       = "moat/v1/org/admin-hybrid-signature"
	labelDeviceID          = "moat/v1/org/device-id"
)

// allLabels lists every label, for the distinctness test.
var allLabels = []string{
	labelDeviceCertificate, labelTrustBundle, labelTrustFingerprint, labelEnrolmentSecret,
	labelEnrolmentRequest, labelDeviceApproval, labelRosterApproval, labelBundleApproval, labelCARotation,
	labelAdminRoster, labelOrgChart, labelPolicyBundle, labelEscrowPolicy, labelEscrowAuditor, labelRevocation,
	labelWipeInstruction, labelTimelineEntry, labelHybridAdmin, labelDeviceID,
}

// labelled returns label || 0x00 || msg.
func labelled(label string, msg []byte) []byte {
	m := make([]byte, 0, len(label)+1+len(msg))
	m = append(m, label...)
	m = append(m, 0)
	return append(m, msg...)
}
