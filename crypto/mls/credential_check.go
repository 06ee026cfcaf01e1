package mls

// Credential checks beyond the leaf's own validation (RFC 9420 §5.3.1):
// the credentials of the external_senders extension, and the successor
// rule for a leaf whose credential is replaced.

import (
	"errors"
	"fmt"
)

// ErrInvalidCredential: the application's credential hook refused an
// external sender's credential or a leaf's successor credential.
var ErrInvalidCredential = errors.New("mls: credential refused")

// CredentialSuccessorValidator is an optional extension of
// CredentialValidator. If Config.Credentials implements it, it is called
// whenever a member's LeafNode is replaced by one the member signed (an
// Update proposal, the LeafNode of a Commit's UpdatePath), with the
// credential of the replaced leaf, after the new credential has passed
// ValidateCredential. §5.3.1 requires checking that "the new credential
// ... represents the same client as the old": for Moat, same tenant,
// user and device, and a certificate serial not lower than the old one
// (docs/spec/mls-profile.md "Credential type"). A nil error accepts.
// Like CredentialValidator it may be called from a goroutine other than
// the caller's (while Process waits for it); it must not call the Group.
type CredentialSuccessorValidator interface {
	ValidateSuccessor(old, new Credential, newKey SignaturePublicKey) error
}

// checkSuccessor applies CredentialSuccessorValidator, if the application
// supplies one, to the replacement of leaf old by leaf new.
func (c *Config) checkSuccessor(old, new *LeafNode) error {
	sv, ok := c.Credentials.(CredentialSuccessorValidator)
	if !ok || old == nil {
		return nil
	}
	if err := sv.ValidateSuccessor(old.Credential, new.Credential, new.SignatureKey); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidCredential, err)
	}
	return nil
}

// validateExternalSenders passes every credential of an external_senders
// extension in exts to the credential hook (§5.3.1: "the credentials ...
// in the external_senders extension" are validated when it is set).
func validateExternalSenders(v CredentialValidator, exts Extensions) error {
	data, ok := exts.Find(ExtensionTypeExternalSenders)
	if !ok {
		return nil
	}
	es, err := DecodeExternalSenders(data)
	if err != nil {
		return err
	}
	if v == nil {
		return fmt.Errorf("%w: no CredentialValidator", ErrInvalidCredential)
	}
	for i := range es {
		if err := v.ValidateCredential(es[i].Credential, es[i].SignatureKey); err != nil {
			return fmt.Errorf("%w: external sender %d: %w", ErrInvalidCredential, i, err)
		}
	}
	return nil
}
