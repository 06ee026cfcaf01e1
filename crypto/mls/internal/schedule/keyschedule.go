// Package schedule implements the MLS key schedule (RFC 9420 §8), including
// pre-shared keys (§8.4), external initialisation (§8.3), exporters (§8.5)
// and transcript hashes (§8.2), and the secret tree with its per-sender
// hash ratchets (§9).
//
// The package works on already-encoded structures (GroupContext,
// ConfirmedTranscriptHashInput, PreSharedKeyID) so that it does not depend
// on the message types of package mls. It does no I/O.
//
// Secret-holding types redact themselves when printed and have a Destroy
// method that overwrites their secrets. Zeroing is best effort: Go may
// have copied the bytes (stack growth, garbage collection) and the
// primitives underneath keep their own transient copies.
package schedule

import (
	"errors"

	"github.com/moat-im/moat/crypto/mls/internal/suite"
)

// Labels of the key schedule (RFC 9420 §8, Table 4, §8.3, §12.4.3.1).
const (
	labelJoiner         = "joiner"
	labelWelcome        = "welcome"
	labelEpoch          = "epoch"
	labelInit           = "init"
	labelSenderData     = "sender data"
	labelEncryption     = "encryption"
	labelExporter       = "exporter"
	labelExternal       = "external"
	labelConfirm        = "confirm"
	labelMembership     = "membership"
	labelResumption     = "resumption"
	labelAuthentication = "authentication"
	labelExported       = "exported"
	labelKey            = "key"
	labelNonce          = "nonce"

	// ExternalInitLabel is the HPKE exporter context of an external init
	// (§8.3). Unlike the labels above it carries the "MLS 1.0 " prefix
	// itself, because HPKE's Export does not add it.
	ExternalInitLabel = "MLS 1.0 external init secret"
)

// Errors.
var (
	// ErrSecretLength is returned when a secret input is not KDF.Nh bytes.
	ErrSecretLength = errors.New("mls/schedule: secret has the wrong length")
	// ErrDestroyed is returned by a method of a destroyed value.
	ErrDestroyed = errors.New("mls/schedule: use after Destroy")
)

// zeros returns the all-zero vector of length KDF.Nh, the "0" of §8.
func zeros(s *suite.Suite) []byte { return make([]byte, s.Nh()) }

// orZero returns v, or the all-zero Nh vector if v is nil, checking that
// v is Nh bytes otherwise.
func orZero(s *suite.Suite, v []byte) ([]byte, error) {
	if v == nil {
		return zeros(s), nil
	}
	if len(v) != s.Nh() {
		return nil, ErrSecretLength
	}
	return v, nil
}

// JoinerSecret computes
//
//	joiner_secret = ExpandWithLabel(KDF.Extract(init_secret, commit_secret),
//	                                "joiner", GroupContext_[n], KDF.Nh)
//
// (§8), where initSecret is the previous epoch's init_secret (or the
// initial or external init secret), commitSecret is nil for the all-zero
// vector (a Commit without a path), and groupContext is the encoded
// GroupContext of the new epoch.
func JoinerSecret(s *suite.Suite, initSecret, commitSecret, groupContext []byte) ([]byte, error) {
	if len(initSecret) != s.Nh() {
		return nil, ErrSecretLength
	}
	commitSecret, err := orZero(s, commitSecret)
	if err != nil {
		return nil, err
	}
	prk := s.Extract(initSecret, commitSecret)
	defer suite.Zero(prk)
	return s.ExpandWithLabel(prk, labelJoiner, groupContext, s.Nh())
}

// Epoch holds the secrets derived for one epoch (§8, Table 4). The
// epoch_secret itself is consumed during derivation and not kept.
//
// EncryptionSecret seeds the epoch's SecretTree (NewSecretTree); once the
// tree exists the caller should clear it with ConsumeEncryptionSecret
// (§9.2: it is consumed when the first message key is used).
type Epoch struct {
	suite *suite.Suite

	JoinerSecret  []byte // for GroupSecrets in a Welcome (§12.4.3.1)
	WelcomeSecret []byte // keys the Welcome's GroupInfo (WelcomeKeyNonce)

	SenderDataSecret   []byte
	EncryptionSecret   []byte
	ExporterSecret     []byte
	ExternalSecret     []byte
	ConfirmationKey    []byte
	MembershipKey      []byte
	ResumptionPSK      []byte
	EpochAuthenticator []byte

	// InitSecret is init_secret_[n], the next epoch's init secret.
	InitSecret []byte
}

// NewEpoch runs the key schedule from joiner_secret (§8):
//
//	member  = KDF.Extract(joiner_secret, psk_secret or 0)
//	welcome_secret = DeriveSecret(member, "welcome")
//	epoch_secret   = ExpandWithLabel(member, "epoch", GroupContext_[n], KDF.Nh)
//	<secret>       = DeriveSecret(epoch_secret, <label>)
//
// pskSecret nil means no PSKs (the all-zero vector). groupContext is the
// encoded GroupContext of the epoch. NewEpoch copies its inputs.
func NewEpoch(s *suite.Suite, joinerSecret, pskSecret, groupContext []byte) (*Epoch, error) {
	if len(joinerSecret) != s.Nh() {
		return nil, ErrSecretLength
	}
	pskSecret, err := orZero(s, pskSecret)
	if err != nil {
		return nil, err
	}
	member := s.Extract(joinerSecret, pskSecret)
	defer suite.Zero(member)

	e := &Epoch{suite: s, JoinerSecret: clone(joinerSecret)}
	if e.WelcomeSecret, err = s.DeriveSecret(member, labelWelcome); err != nil {
		return nil, err
	}
	epochSecret, err := s.ExpandWithLabel(member, labelEpoch, groupContext, s.Nh())
	if err != nil {
		return nil, err
	}
	defer suite.Zero(epochSecret)
	for _, d := range []struct {
		dst   *[]byte
		label string
	}{
		{&e.SenderDataSecret, labelSenderData},
		{&e.EncryptionSecret, labelEncryption},
		{&e.ExporterSecret, labelExporter},
		{&e.ExternalSecret, labelExternal},
		{&e.ConfirmationKey, labelConfirm},
		{&e.MembershipKey, labelMembership},
		{&e.ResumptionPSK, labelResumption},
		{&e.EpochAuthenticator, labelAuthentication},
		{&e.InitSecret, labelInit},
	} {
		if *d.dst, err = s.DeriveSecret(epochSecret, d.label); err != nil {
			e.Destroy()
			return nil, err
		}
	}
	return e, nil
}

// Next derives the epoch that follows a Commit: JoinerSecret followed by
// NewEpoch. initSecret is the previous epoch's InitSecret; commitSecret
// and pskSecret may be nil for the all-zero vector.
func Next(s *suite.Suite, initSecret, commitSecret, pskSecret, groupContext []byte) (*Epoch, error) {
	joiner, err := JoinerSecret(s, initSecret, commitSecret, groupContext)
	if err != nil {
		return nil, err
	}
	defer suite.Zero(joiner)
	return NewEpoch(s, joiner, pskSecret, groupContext)
}

// Suite returns the epoch's cipher suite.
func (e *Epoch) Suite() *suite.Suite { return e.suite }

// Exporter is MLS-Exporter (§8.5):
//
//	ExpandWithLabel(DeriveSecret(exporter_secret, label), "exported",
//	                Hash(context), length)
func (e *Epoch) Exporter(label string, context []byte, length int) ([]byte, error) {
	if e.ExporterSecret == nil {
		return nil, ErrDestroyed
	}
	secret, err := e.suite.DeriveSecret(e.ExporterSecret, label)
	if err != nil {
		return nil, err
	}
	defer suite.Zero(secret)
	return e.suite.ExpandWithLabel(secret, labelExported, e.suite.Hash(context), length)
}

// ExternalKeyPair is KEM.DeriveKeyPair(external_secret) (§8): the key pair
// whose public half is published in the external_pub GroupInfo extension.
func (e *Epoch) ExternalKeyPair() (suite.HPKEPrivateKey, suite.HPKEPublicKey, error) {
	if e.ExternalSecret == nil {
		return nil, nil, ErrDestroyed
	}
	return e.suite.DeriveKeyPair(e.ExternalSecret)
}

// ConfirmationTag is MAC(confirmation_key, confirmed_transcript_hash)
// (§6.1).
func (e *Epoch) ConfirmationTag(confirmedTranscriptHash []byte) []byte {
	return e.suite.MAC(e.ConfirmationKey, confirmedTranscriptHash)
}

// VerifyConfirmationTag reports in constant time whether tag is the
// confirmation tag of confirmedTranscriptHash.
func (e *Epoch) VerifyConfirmationTag(confirmedTranscriptHash, tag []byte) bool {
	if e.ConfirmationKey == nil {
		return false
	}
	return e.suite.VerifyMAC(e.ConfirmationKey, confirmedTranscriptHash, tag)
}

// MembershipTag is MAC(membership_key, AuthenticatedContentTBM) (§6.2);
// tbm is the encoded AuthenticatedContentTBM.
func (e *Epoch) MembershipTag(tbm []byte) []byte {
	return e.suite.MAC(e.MembershipKey, tbm)
}

// VerifyMembershipTag reports in constant time whether tag is the
// membership tag of tbm.
func (e *Epoch) VerifyMembershipTag(tbm, tag []byte) bool {
	if e.MembershipKey == nil {
		return false
	}
	return e.suite.VerifyMAC(e.MembershipKey, tbm, tag)
}

// ConsumeEncryptionSecret overwrites and drops EncryptionSecret, once the
// epoch's SecretTree has been built from it.
func (e *Epoch) ConsumeEncryptionSecret() {
	suite.Zero(e.EncryptionSecret)
	e.EncryptionSecret = nil
}

// Destroy overwrites every secret of e (best effort, see the package
// documentation). e is unusable afterwards.
func (e *Epoch) Destroy() {
	for _, p := range []*[]byte{
		&e.JoinerSecret, &e.WelcomeSecret, &e.SenderDataSecret, &e.EncryptionSecret,
		&e.ExporterSecret, &e.ExternalSecret, &e.ConfirmationKey, &e.MembershipKey,
		&e.ResumptionPSK, &e.EpochAuthenticator, &e.InitSecret,
	} {
		suite.Zero(*p)
		*p = nil
	}
}

// String redacts the secrets.
func (e Epoch) String() string { return "schedule.Epoch{REDACTED}" }

// GoString redacts the secrets for %#v.
func (e Epoch) GoString() string { return e.String() }

// WelcomeKeyNonce derives the key and nonce that encrypt a Welcome's
// GroupInfo (§12.4.3.1):
//
//	welcome_nonce = ExpandWithLabel(welcome_secret, "nonce", "", AEAD.Nn)
//	welcome_key   = ExpandWithLabel(welcome_secret, "key", "", AEAD.Nk)
func WelcomeKeyNonce(s *suite.Suite, welcomeSecret []byte) (key, nonce []byte, err error) {
	if key, err = s.ExpandWithLabel(welcomeSecret, labelKey, nil, s.Nk()); err != nil {
		return nil, nil, err
	}
	if nonce, err = s.ExpandWithLabel(welcomeSecret, labelNonce, nil, s.Nn()); err != nil {
		return nil, nil, err
	}
	return key, nonce, nil
}

// WelcomeSecretFromJoiner derives welcome_secret from joiner_secret and
// psk_secret alone, as a new member does before it can decrypt the
// GroupInfo and learn the GroupContext (§12.4.3.1). pskSecret nil means
// the all-zero vector.
func WelcomeSecretFromJoiner(s *suite.Suite, joinerSecret, pskSecret []byte) ([]byte, error) {
	if len(joinerSecret) != s.Nh() {
		return nil, ErrSecretLength
	}
	pskSecret, err := orZero(s, pskSecret)
	if err != nil {
		return nil, err
	}
	member := s.Extract(joinerSecret, pskSecret)
	defer suite.Zero(member)
	return s.DeriveSecret(member, labelWelcome)
}

// ExternalInitSend is the joiner's side of an external init (§8.3):
//
//	kem_output, context = SetupBaseS(external_pub, "")
//	init_secret = context.export("MLS 1.0 external init secret", KDF.Nh)
func ExternalInitSend(s *suite.Suite, externalPub suite.HPKEPublicKey) (kemOutput, initSecret []byte, err error) {
	return s.ExportSend(externalPub, nil, ExternalInitLabel, s.Nh())
}

// ExternalInitReceive is the members' side of an external init (§8.3),
// with external_priv from Epoch.ExternalKeyPair of the previous epoch.
func ExternalInitReceive(s *suite.Suite, externalPriv suite.HPKEPrivateKey, kemOutput []byte) ([]byte, error) {
	return s.ExportReceive(externalPriv, kemOutput, nil, ExternalInitLabel, s.Nh())
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}
