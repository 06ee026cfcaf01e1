package org

import (
	"io"

	"github.com/moat-im/moat/crypto/keys"
)

// Signer holds an org CA key (docs/spec/org.md §Signer). An HSM or KMS
// implementation keeps the private key outside the process.
//
// Sign returns the hybrid org signature of msg exactly as
// keys.OrgPrivateKey.Sign makes it: an Ed25519 signature and an ML-DSA-65
// signature (empty context), each over
// "moat/v1/hybrid-signature/org" || 0x00 || msg, concatenated (3373 bytes).
// This package passes msgs that are already domain-separated; a Signer signs
// what it is given and nothing else. Sign must be safe for concurrent use
// and must not retain or modify msg. Public returns the same key on every
// call.
//
// signertest.TestSigner checks an implementation against these rules.
type Signer interface {
	Public() *keys.OrgPublicKey
	Sign(msg []byte) ([]byte, error)
}

// *keys.OrgPrivateKey is itself a Signer.
var _ Signer = (*keys.OrgPrivateKey)(nil)

// MemorySigner is a Signer holding the org CA key in process memory, for
// tests, development and small deployments.
type MemorySigner struct {
	key *keys.OrgPrivateKey
}

// NewMemorySigner returns a Signer for key.
func NewMemorySigner(key *keys.OrgPrivateKey) *MemorySigner { return &MemorySigner{key: key} }

// GenerateMemorySigner returns a Signer for a new org CA key read from rand.
func GenerateMemorySigner(rand io.Reader) (*MemorySigner, error) {
	k, err := keys.GenerateOrgKey(rand)
	if err != nil {
		return nil, err
	}
	return &MemorySigner{key: k}, nil
}

// Public returns the CA public key.
func (s *MemorySigner) Public() *keys.OrgPublicKey { return s.key.Public() }

// Sign returns the hybrid org signature of msg.
func (s *MemorySigner) Sign(msg []byte) ([]byte, error) { return s.key.Sign(msg) }

// signCA signs label || 0x00 || body with s, and checks the result under
// s.Public() before returning it, so that a faulty or misconfigured signer
// (a wrong key, a fault in ML-DSA signing) never yields a published
// signature that clients would reject.
func signCA(s Signer, label string, body []byte) ([]byte, error) {
	if s == nil {
		return nil, ErrSignerFailed
	}
	pub := s.Public()
	if pub == nil {
		return nil, ErrSignerFailed
	}
	msg := labelled(label, body)
	sig, err := s.Sign(msg)
	if err != nil || len(sig) != SignatureSize || pub.Verify(msg, sig) != nil {
		return nil, ErrSignerFailed
	}
	return clone(sig), nil
}
