package mls

import "golang.org/x/crypto/cryptobyte"

// ProtocolVersion is an MLS protocol version (RFC 9420 §6).
type ProtocolVersion uint16

// ProtocolVersionMLS10 is the version RFC 9420 defines.
const ProtocolVersionMLS10 ProtocolVersion = 1

// CipherSuite is an MLS cipher suite code point (§5.1, §17.1).
type CipherSuite uint16

// HPKEPublicKey is an HPKE public key in its suite's serialisation (§5.1.1).
type HPKEPublicKey []byte

// SignaturePublicKey is a signature verification key in its suite's
// serialisation (§5.1.1).
type SignaturePublicKey []byte

// ContentType says what a FramedContent carries (§6).
type ContentType uint8

// Content types.
const (
	ContentTypeApplication ContentType = 1
	ContentTypeProposal    ContentType = 2
	ContentTypeCommit      ContentType = 3
)

func (t ContentType) valid() bool { return t >= ContentTypeApplication && t <= ContentTypeCommit }

// SenderType says who sent a message (§6).
type SenderType uint8

// Sender types.
const (
	SenderTypeMember            SenderType = 1
	SenderTypeExternal          SenderType = 2
	SenderTypeNewMemberProposal SenderType = 3
	SenderTypeNewMemberCommit   SenderType = 4
)

// Sender is the sender of a FramedContent (§6).
type Sender struct {
	Type SenderType
	// Index is leaf_index for SenderTypeMember and sender_index (into the
	// external_senders extension) for SenderTypeExternal; it is zero and
	// not encoded for the new-member types.
	Index uint32
}

func (s *Sender) marshal(b *cryptobyte.Builder) {
	b.AddUint8(uint8(s.Type))
	switch s.Type {
	case SenderTypeMember, SenderTypeExternal:
		b.AddUint32(s.Index)
	case SenderTypeNewMemberProposal, SenderTypeNewMemberCommit:
		if s.Index != 0 {
			encodeFail(b, "sender.index", ErrInvalidValue)
		}
	default:
		encodeFail(b, "sender.sender_type", ErrInvalidValue)
	}
}

func (s *Sender) unmarshal(d *decoder) {
	s.Type = SenderType(d.u8("sender.sender_type"))
	switch s.Type {
	case SenderTypeMember:
		s.Index = d.u32("sender.leaf_index")
	case SenderTypeExternal:
		s.Index = d.u32("sender.sender_index")
	case SenderTypeNewMemberProposal, SenderTypeNewMemberCommit:
	default:
		d.fail("sender.sender_type", ErrInvalidValue)
	}
}

// WireFormat says which message an MLSMessage carries (§6, §17.2).
type WireFormat uint16

// Wire formats.
const (
	WireFormatPublicMessage  WireFormat = 1
	WireFormatPrivateMessage WireFormat = 2
	WireFormatWelcome        WireFormat = 3
	WireFormatGroupInfo      WireFormat = 4
	WireFormatKeyPackage     WireFormat = 5
)

// ExtensionType is an "MLS Extension Types" code point (§13, §17.3).
type ExtensionType uint16

// Extension types defined by RFC 9420 (the "default" extensions of §7.2).
const (
	ExtensionTypeApplicationID        ExtensionType = 1
	ExtensionTypeRatchetTree          ExtensionType = 2
	ExtensionTypeRequiredCapabilities ExtensionType = 3
	ExtensionTypeExternalPub          ExtensionType = 4
	ExtensionTypeExternalSenders      ExtensionType = 5
)

// ProposalType is an "MLS Proposal Types" code point (§12.1, §17.4).
type ProposalType uint16

// Proposal types defined by RFC 9420.
const (
	ProposalTypeAdd                    ProposalType = 1
	ProposalTypeUpdate                 ProposalType = 2
	ProposalTypeRemove                 ProposalType = 3
	ProposalTypePSK                    ProposalType = 4
	ProposalTypeReInit                 ProposalType = 5
	ProposalTypeExternalInit           ProposalType = 6
	ProposalTypeGroupContextExtensions ProposalType = 7
)

// CredentialType is an "MLS Credential Types" code point (§5.3, §17.5).
type CredentialType uint16

// Credential types. CredentialTypeMoatOrg is Moat's application-defined
// credential (docs/spec/mls-profile.md "Credential type"), a value in the
// private-use range 0xF000–0xFFFF.
const (
	CredentialTypeBasic   CredentialType = 1
	CredentialTypeX509    CredentialType = 2
	CredentialTypeMoatOrg CredentialType = 0xF00D
)

// isDefaultProposalType reports the proposal types §7.2 says are
// implemented by everyone and MUST NOT be listed in Capabilities.
func isDefaultProposalType(t ProposalType) bool {
	return t >= ProposalTypeAdd && t <= ProposalTypeGroupContextExtensions
}

// isDefaultExtensionType reports the extension types §7.2 says are
// implemented by everyone and MUST NOT be listed in Capabilities.
func isDefaultExtensionType(t ExtensionType) bool {
	return t >= ExtensionTypeApplicationID && t <= ExtensionTypeExternalSenders
}
