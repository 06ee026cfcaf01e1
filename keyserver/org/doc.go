// Package org implements Moat's organisation certificate authority as
// specified in docs/spec/org.md: device certificates, the signed org
// statements and admin actions that the key directory publishes, enrolment
// codes with trust-bundle fingerprints, dual control over adding devices,
// and the in-memory admin-operations state machine of a tenant.
//
// The package does no I/O and reads no clock: times are arguments, and
// randomness comes from an io.Reader the caller passes. Signing goes through
// the Signer interface, so that an HSM or a KMS can hold the org CA key.
//
// Clients use the verification side, which needs nothing but bytes, the
// trusted CA key and the current time:
//
//   - ParseDeviceCertificate and VerifyDeviceCertificate (§Device
//     certificates, §Certificate verification);
//   - ParseEnrolmentCodeText, CheckTrustBundle and VerifyEnrolment (§Trust
//     bootstrap, §Time floor at enrolment);
//   - ParseCARotation and (*CARotation).Verify (§CA rotation);
//   - the Parse functions and Verify methods of the org statements, timeline
//     entries, revocations, wipe instructions and user values.
//
// The key directory service runs a Tenant (§Admin operations): it applies
// admin operations to it, at every epoch calls Publish to obtain the label
// values to write into the map, and persists the state records that
// changed (PendingRecords, MarkPersisted; §Tenant state records), which a
// TenantLoader reads back. MarshalBinary is the whole state in one
// encoding (§Tenant state), for copies.
package org
