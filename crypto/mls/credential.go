package mls

// CredentialValidator is the Authentication Service hook (RFC 9420 §5.3.1)
// the application supplies. ValidateCredential reports whether cred
// legitimately binds its presented identities to sigKey, and whether those
// identities match what the application expects for this member; a nil
// error means valid.
//
// This package calls it wherever §5.3.1 requires a credential to be
// validated: every LeafNode and KeyPackage it validates (tree leaves when
// joining, Adds, Updates, a Commit's UpdatePath leaf) and every entry of an
// external_senders extension (NewGroup, Join, ExternalJoin,
// GroupContextExtensions). The successor rule for a replaced leaf is the
// optional CredentialSuccessorValidator. For Moat the implementation checks a
// CredentialTypeMoatOrg credential: an org certificate over sigKey plus a
// key-transparency proof (docs/spec/mls-profile.md "Credential type").
//
// Implementations must be safe for concurrent use: leaf validation of a
// large tree may call them from several goroutines.
type CredentialValidator interface {
	ValidateCredential(cred Credential, sigKey SignaturePublicKey) error
}

// CredentialValidatorFunc adapts a function to CredentialValidator.
type CredentialValidatorFunc func(cred Credential, sigKey SignaturePublicKey) error

// ValidateCredential calls f.
func (f CredentialValidatorFunc) ValidateCredential(cred Credential, sigKey SignaturePublicKey) error {
	return f(cred, sigKey)
}

// SignaturePrivateKey is a member's MLS signing key (the private half of
// LeafNode.signature_key) in its suite's serialisation (RFC 8032 seed for
// EdDSA, big-endian scalar for ECDSA).
type SignaturePrivateKey []byte

// String redacts the key.
func (SignaturePrivateKey) String() string { return "mls.SignaturePrivateKey(REDACTED)" }

// GoString redacts the key.
func (SignaturePrivateKey) GoString() string { return "mls.SignaturePrivateKey(REDACTED)" }

// HPKEPrivateKey is an HPKE private key (a KeyPackage init key or a tree
// node key) in its suite's RFC 9180 serialisation.
type HPKEPrivateKey []byte

// String redacts the key.
func (HPKEPrivateKey) String() string { return "mls.HPKEPrivateKey(REDACTED)" }

// GoString redacts the key.
func (HPKEPrivateKey) GoString() string { return "mls.HPKEPrivateKey(REDACTED)" }
