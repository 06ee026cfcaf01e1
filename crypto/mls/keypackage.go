package mls

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/moat-im/moat/crypto/mls/internal/suite"
)

// Signature and reference labels this file uses (RFC 9420 §5.1.2, §5.2,
// §17.6). SignWithLabel and RefHash prefix them as the RFC says.
const (
	labelLeafNodeTBS   = "LeafNodeTBS"
	labelKeyPackageTBS = "KeyPackageTBS"
	labelKeyPackageRef = "MLS 1.0 KeyPackage Reference"
	labelGroupInfoTBS  = "GroupInfoTBS"
	labelFramedContent = "FramedContentTBS"
	labelProposalRef   = "MLS 1.0 Proposal Reference"
	labelWelcome       = "Welcome"
)

// Validation failures. Errors from the validation functions wrap one of
// them and say which check failed.
var (
	// ErrInvalidSignature: a signature does not verify.
	ErrInvalidSignature = errors.New("mls: invalid signature")
	// ErrLeafNodeValidation: a LeafNode fails §7.3 (ValidateLeafNode).
	ErrLeafNodeValidation = errors.New("mls: LeafNode validation failed")
	// ErrInvalidKeyPackage: a KeyPackage fails §10.1.
	ErrInvalidKeyPackage = errors.New("mls: invalid KeyPackage")
	// ErrUnsupportedCipherSuite: a cipher suite this package does not
	// implement.
	ErrUnsupportedCipherSuite = errors.New("mls: unsupported cipher suite")
)

// DefaultMaxLifetime is the longest total lifetime (not_after − not_before)
// of a KeyPackage LeafNode that validation accepts when the caller sets no
// other bound (§7.2: applications MUST define one).
const DefaultMaxLifetime = 91 * 24 * time.Hour

func getSuite(cs CipherSuite) (*suite.Suite, error) {
	s, err := suite.Get(suite.ID(cs))
	if err != nil {
		return nil, fmt.Errorf("%w: 0x%04x", ErrUnsupportedCipherSuite, uint16(cs))
	}
	return s, nil
}

// Sign sets ln.Signature to SignWithLabel(priv, "LeafNodeTBS",
// LeafNodeTBS) (§7.2). groupID and leafIndex are covered for the update and
// commit sources only.
func (ln *LeafNode) Sign(cs CipherSuite, priv SignaturePrivateKey, groupID []byte, leafIndex uint32) error {
	s, err := getSuite(cs)
	if err != nil {
		return err
	}
	tbs, err := ln.TBS(groupID, leafIndex)
	if err != nil {
		return err
	}
	sig, err := s.SignWithLabel(suite.SignaturePrivateKey(priv), labelLeafNodeTBS, tbs)
	if err != nil {
		return fmt.Errorf("mls: signing LeafNode: %w", err)
	}
	ln.Signature = sig
	return nil
}

// VerifySignature checks ln.Signature with ln.SignatureKey (§7.3). It
// returns an error wrapping ErrInvalidSignature if it does not verify.
func (ln *LeafNode) VerifySignature(cs CipherSuite, groupID []byte, leafIndex uint32) error {
	s, err := getSuite(cs)
	if err != nil {
		return err
	}
	return ln.verifySignature(s, groupID, leafIndex)
}

func (ln *LeafNode) verifySignature(s *suite.Suite, groupID []byte, leafIndex uint32) error {
	tbs, err := ln.TBS(groupID, leafIndex)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSignature, err)
	}
	if s.VerifyWithLabel(suite.SignaturePublicKey(ln.SignatureKey), labelLeafNodeTBS, tbs, ln.Signature) != nil {
		return ErrInvalidSignature
	}
	return nil
}

// Sign sets kp.Signature to SignWithLabel(priv, "KeyPackageTBS",
// KeyPackageTBS) (§10). The LeafNode must be signed first: its signature is
// part of the KeyPackageTBS.
func (kp *KeyPackage) Sign(priv SignaturePrivateKey) error {
	s, err := getSuite(kp.CipherSuite)
	if err != nil {
		return err
	}
	tbs, err := kp.TBS()
	if err != nil {
		return err
	}
	sig, err := s.SignWithLabel(suite.SignaturePrivateKey(priv), labelKeyPackageTBS, tbs)
	if err != nil {
		return fmt.Errorf("mls: signing KeyPackage: %w", err)
	}
	kp.Signature = sig
	return nil
}

// VerifySignature checks kp.Signature with kp.LeafNode.SignatureKey (§10.1).
func (kp *KeyPackage) VerifySignature() error {
	s, err := getSuite(kp.CipherSuite)
	if err != nil {
		return err
	}
	return kp.verifySignature(s)
}

func (kp *KeyPackage) verifySignature(s *suite.Suite) error {
	tbs, err := kp.TBS()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSignature, err)
	}
	if s.VerifyWithLabel(suite.SignaturePublicKey(kp.LeafNode.SignatureKey), labelKeyPackageTBS, tbs, kp.Signature) != nil {
		return ErrInvalidSignature
	}
	return nil
}

// Ref returns MakeKeyPackageRef(kp) = RefHash("MLS 1.0 KeyPackage
// Reference", encoded KeyPackage) under kp's cipher suite (§5.2).
func (kp *KeyPackage) Ref() (KeyPackageRef, error) {
	s, err := getSuite(kp.CipherSuite)
	if err != nil {
		return nil, err
	}
	enc, err := kp.Encode()
	if err != nil {
		return nil, err
	}
	return s.RefHash(labelKeyPackageRef, enc), nil
}

// KeyPackageOptions are the choices NewKeyPackage leaves to the caller.
type KeyPackageOptions struct {
	// CipherSuite is the suite of the KeyPackage and of a group created
	// from it; zero means DefaultCipherSuite.
	CipherSuite  CipherSuite
	SignatureKey SignaturePrivateKey
	Credential   Credential
	// Capabilities should list only what the client supports (plus GREASE
	// values, §13.5). NewKeyPackage adds the suite, mls10 and the
	// credential's type if they are missing.
	Capabilities Capabilities
	Lifetime     Lifetime
	// LeafExtensions go into the LeafNode; their non-default types are
	// added to Capabilities.Extensions. Extensions go into the KeyPackage.
	LeafExtensions Extensions
	Extensions     Extensions
}

// KeyPackageSecrets are the private keys of a KeyPackage, kept by its owner
// until the KeyPackage is used (§16.8).
type KeyPackageSecrets struct {
	InitKey       HPKEPrivateKey // for the Welcome's GroupSecrets
	EncryptionKey HPKEPrivateKey // for the LeafNode's encryption_key
}

// NewKeyPackage generates fresh init and leaf HPKE key pairs and returns a
// signed KeyPackage and its private keys (§10).
//
// A zero o.CipherSuite means DefaultCipherSuite.
func NewKeyPackage(o KeyPackageOptions) (*KeyPackage, *KeyPackageSecrets, error) {
	o.CipherSuite = o.CipherSuite.orDefault()
	s, err := getSuite(o.CipherSuite)
	if err != nil {
		return nil, nil, err
	}
	sigPub, err := s.SignaturePublicKeyOf(suite.SignaturePrivateKey(o.SignatureKey))
	if err != nil {
		return nil, nil, fmt.Errorf("mls: new KeyPackage: %w", err)
	}
	initPriv, initPub, err := s.GenerateHPKEKey()
	if err != nil {
		return nil, nil, fmt.Errorf("mls: new KeyPackage: %w", err)
	}
	encPriv, encPub, err := s.GenerateHPKEKey()
	if err != nil {
		return nil, nil, fmt.Errorf("mls: new KeyPackage: %w", err)
	}
	caps := o.Capabilities
	caps.Versions = appendMissing(slices.Clone(caps.Versions), ProtocolVersionMLS10)
	caps.CipherSuites = appendMissing(slices.Clone(caps.CipherSuites), o.CipherSuite)
	caps.Credentials = appendMissing(slices.Clone(caps.Credentials), o.Credential.Type)
	caps.Extensions = slices.Clone(caps.Extensions)
	for _, e := range o.LeafExtensions {
		if !isDefaultExtensionType(e.Type) {
			caps.Extensions = appendMissing(caps.Extensions, e.Type)
		}
	}
	lifetime := o.Lifetime
	kp := &KeyPackage{
		Version:     ProtocolVersionMLS10,
		CipherSuite: o.CipherSuite,
		InitKey:     HPKEPublicKey(initPub),
		LeafNode: LeafNode{
			EncryptionKey: HPKEPublicKey(encPub),
			SignatureKey:  SignaturePublicKey(sigPub),
			Credential:    o.Credential,
			Capabilities:  caps,
			Source:        LeafNodeSourceKeyPackage,
			Lifetime:      &lifetime,
			Extensions:    o.LeafExtensions,
		},
		Extensions: o.Extensions,
	}
	if err := kp.LeafNode.Sign(o.CipherSuite, o.SignatureKey, nil, 0); err != nil {
		return nil, nil, err
	}
	if err := kp.Sign(o.SignatureKey); err != nil {
		return nil, nil, err
	}
	return kp, &KeyPackageSecrets{InitKey: HPKEPrivateKey(initPriv), EncryptionKey: HPKEPrivateKey(encPriv)}, nil
}

func appendMissing[T comparable](s []T, v T) []T {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

// GroupParams are the parts of a group's state that LeafNode and
// KeyPackage validation check against (§7.3, §10.1).
type GroupParams struct {
	CipherSuite CipherSuite
	// GroupID is covered by the signature of update and commit leaves.
	GroupID []byte
	// Extensions are the GroupContext extensions: a leaf must support each
	// non-default one (§13.4) and everything a required_capabilities
	// extension lists (§11.1).
	Extensions Extensions
	// CredentialTypesInUse are the credential types of the current members;
	// a new leaf must support all of them (§7.3). Checking that every
	// member supports the new leaf's credential type needs the tree and is
	// the caller's job, as is the uniqueness of signature and encryption
	// keys among members.
	CredentialTypesInUse []CredentialType
	// Now, if not zero, must lie within a KeyPackage leaf's lifetime (§7.3:
	// MUST when sending, RECOMMENDED when receiving). The zero time skips
	// the window check, for processing received messages late.
	Now time.Time
	// MaxLifetime bounds not_after − not_before; zero means
	// DefaultMaxLifetime. A negative value removes the bound, for
	// interoperating with implementations that issue unbounded lifetimes
	// (the RFC 9420 interop vectors use [0, 2^64−1]).
	MaxLifetime time.Duration
	// Credentials validates every credential (§5.3.1). It is required.
	Credentials CredentialValidator
}

// ValidateLeafNode checks ln per §7.3 for a leaf that arrives with the given
// source (key_package in a KeyPackage, update in an Update proposal, commit
// in an UpdatePath) at leafIndex. Checks that need the whole tree (key
// uniqueness, members' support for ln's credential type, an Update's new
// encryption key) are left to the caller.
func ValidateLeafNode(ln *LeafNode, source LeafNodeSource, leafIndex uint32, g *GroupParams) error {
	s, err := getSuite(g.CipherSuite)
	if err != nil {
		return err
	}
	if err := validateLeafNode(s, ln, source, leafIndex, g); err != nil {
		return fmt.Errorf("%w: %w", ErrLeafNodeValidation, err)
	}
	return nil
}

func validateLeafNode(s *suite.Suite, ln *LeafNode, source LeafNodeSource, leafIndex uint32, g *GroupParams) error {
	if ln.Source != source {
		return fmt.Errorf("leaf_node_source %d, want %d", ln.Source, source)
	}
	caps := &ln.Capabilities
	if !slices.Contains(caps.Credentials, ln.Credential.Type) {
		return fmt.Errorf("credential type 0x%04x not in capabilities", uint16(ln.Credential.Type))
	}
	for _, e := range ln.Extensions {
		if !isDefaultExtensionType(e.Type) && !slices.Contains(caps.Extensions, e.Type) {
			return fmt.Errorf("extension 0x%04x not in capabilities", uint16(e.Type))
		}
	}
	if err := checkGroupSupport(caps, g); err != nil {
		return err
	}
	if source == LeafNodeSourceKeyPackage {
		if err := checkLifetime(ln.Lifetime, g); err != nil {
			return err
		}
	}
	if g.Credentials == nil {
		return errors.New("no CredentialValidator")
	}
	if err := g.Credentials.ValidateCredential(ln.Credential, ln.SignatureKey); err != nil {
		return fmt.Errorf("credential: %w", err)
	}
	return ln.verifySignature(s, g.GroupID, leafIndex)
}

// checkGroupSupport checks caps covers the group's GroupContext extensions
// and required_capabilities, and the credential types in use.
func checkGroupSupport(caps *Capabilities, g *GroupParams) error {
	for _, e := range g.Extensions {
		if !isDefaultExtensionType(e.Type) && !slices.Contains(caps.Extensions, e.Type) {
			return fmt.Errorf("group extension 0x%04x not supported", uint16(e.Type))
		}
	}
	if data, ok := g.Extensions.Find(ExtensionTypeRequiredCapabilities); ok {
		rc, err := DecodeRequiredCapabilities(data)
		if err != nil {
			return fmt.Errorf("group required_capabilities: %w", err)
		}
		for _, t := range rc.ExtensionTypes {
			if !isDefaultExtensionType(t) && !slices.Contains(caps.Extensions, t) {
				return fmt.Errorf("required extension 0x%04x not supported", uint16(t))
			}
		}
		for _, t := range rc.ProposalTypes {
			if !isDefaultProposalType(t) && !slices.Contains(caps.Proposals, t) {
				return fmt.Errorf("required proposal 0x%04x not supported", uint16(t))
			}
		}
		for _, t := range rc.CredentialTypes {
			if !slices.Contains(caps.Credentials, t) {
				return fmt.Errorf("required credential type 0x%04x not supported", uint16(t))
			}
		}
	}
	for _, t := range g.CredentialTypesInUse {
		if !slices.Contains(caps.Credentials, t) {
			return fmt.Errorf("credential type 0x%04x in use not supported", uint16(t))
		}
	}
	return nil
}

func checkLifetime(l *Lifetime, g *GroupParams) error {
	if l == nil {
		return errors.New("no lifetime")
	}
	if l.NotAfter < l.NotBefore {
		return fmt.Errorf("lifetime [%d, %d] inverted", l.NotBefore, l.NotAfter)
	}
	max := g.MaxLifetime
	if max == 0 {
		max = DefaultMaxLifetime
	}
	if max > 0 && l.NotAfter-l.NotBefore > uint64(max/time.Second) {
		return fmt.Errorf("lifetime [%d, %d] longer than %v", l.NotBefore, l.NotAfter, max)
	}
	if !g.Now.IsZero() {
		now := g.Now.Unix()
		if now < 0 || uint64(now) < l.NotBefore || uint64(now) > l.NotAfter {
			return fmt.Errorf("lifetime [%d, %d] does not cover now (%d)", l.NotBefore, l.NotAfter, now)
		}
	}
	return nil
}

// ValidateKeyPackage checks kp per §10.1: suite and version match the
// group, the LeafNode is valid for a KeyPackage (§7.3, credential included),
// the KeyPackage signature verifies, and the init key differs from the
// leaf's encryption key.
func ValidateKeyPackage(kp *KeyPackage, g *GroupParams) error {
	if err := validateKeyPackage(kp, g); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidKeyPackage, err)
	}
	return nil
}

func validateKeyPackage(kp *KeyPackage, g *GroupParams) error {
	if kp.Version != ProtocolVersionMLS10 {
		return fmt.Errorf("version %d", kp.Version)
	}
	if kp.CipherSuite != g.CipherSuite {
		return fmt.Errorf("cipher suite 0x%04x, group uses 0x%04x", uint16(kp.CipherSuite), uint16(g.CipherSuite))
	}
	s, err := getSuite(kp.CipherSuite)
	if err != nil {
		return err
	}
	if bytes.Equal(kp.InitKey, kp.LeafNode.EncryptionKey) {
		return errors.New("init_key equals leaf_node.encryption_key")
	}
	if err := validateLeafNode(s, &kp.LeafNode, LeafNodeSourceKeyPackage, 0, g); err != nil {
		return fmt.Errorf("leaf_node: %w", err)
	}
	return kp.verifySignature(s)
}
