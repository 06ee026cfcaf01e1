package mls

import "golang.org/x/crypto/cryptobyte"

// FramedContent is the content of a handshake or application message with
// its group, epoch and sender (RFC 9420 §6). Exactly the body field
// matching ContentType is set: ApplicationData (which may be empty),
// Proposal or Commit.
type FramedContent struct {
	GroupID           []byte
	Epoch             uint64
	Sender            Sender
	AuthenticatedData []byte

	ContentType     ContentType
	ApplicationData []byte
	Proposal        *Proposal
	Commit          *Commit

	// received is the body (the select on content_type) exactly as it
	// was received, or nil. Only the message processing code sets it, on
	// content it decoded itself and never changes, so that the signature,
	// membership tag and transcript hash cover the received bytes
	// without encoding a large Commit again (the decoders are strict:
	// re-encoding would give the same bytes).
	received []byte
}

// marshalBody writes the select on content_type (shared with
// PrivateMessageContent).
func (c *FramedContent) marshalBody(b *cryptobyte.Builder) {
	switch {
	case c.ContentType == ContentTypeApplication && c.Proposal == nil && c.Commit == nil:
		addOpaque(b, "application_data", c.ApplicationData, maxOpaque)
	case c.ContentType == ContentTypeProposal && c.Proposal != nil && c.Commit == nil && c.ApplicationData == nil:
		if c.received != nil {
			b.AddBytes(c.received)
			return
		}
		c.Proposal.marshal(b)
	case c.ContentType == ContentTypeCommit && c.Commit != nil && c.Proposal == nil && c.ApplicationData == nil:
		if c.received != nil {
			b.AddBytes(c.received)
			return
		}
		c.Commit.marshal(b)
	default:
		encodeFail(b, "content_type", ErrInvalidValue)
	}
}

// unmarshalBody reads the select on content_type and returns the bytes it
// read (aliasing d's input).
func (c *FramedContent) unmarshalBody(d *decoder) []byte {
	start := d.s
	switch c.ContentType {
	case ContentTypeApplication:
		c.ApplicationData = d.opaque("application_data", maxOpaque)
	case ContentTypeProposal:
		c.Proposal = new(Proposal)
		c.Proposal.unmarshal(d)
	case ContentTypeCommit:
		c.Commit = new(Commit)
		c.Commit.unmarshal(d)
	default:
		d.fail("content_type", ErrInvalidValue)
	}
	return start[: len(start)-len(d.s) : len(start)-len(d.s)]
}

func (c *FramedContent) marshal(b *cryptobyte.Builder) {
	addOpaque(b, "group_id", c.GroupID, MaxHashSize)
	b.AddUint64(c.Epoch)
	c.Sender.marshal(b)
	addOpaque(b, "authenticated_data", c.AuthenticatedData, maxOpaque)
	b.AddUint8(uint8(c.ContentType))
	c.marshalBody(b)
}

// unmarshal reads c and returns the bytes of its body as unmarshalBody.
func (c *FramedContent) unmarshal(d *decoder) []byte {
	c.GroupID = d.opaque("group_id", MaxHashSize)
	c.Epoch = d.u64("epoch")
	c.Sender.unmarshal(d)
	c.AuthenticatedData = d.opaque("authenticated_data", maxOpaque)
	c.ContentType = ContentType(d.u8("content_type"))
	return c.unmarshalBody(d)
}

// Encode returns the §6 encoding of c.
func (c *FramedContent) Encode() ([]byte, error) { return encode("FramedContent", c.marshal) }

// DecodeFramedContent parses a FramedContent.
func DecodeFramedContent(b []byte) (*FramedContent, error) {
	c := new(FramedContent)
	if err := decode("FramedContent", b, func(d *decoder) { c.unmarshal(d) }); err != nil {
		return nil, err
	}
	return c, nil
}

// FramedContentAuthData authenticates a FramedContent (§6.1): the
// sender's signature and, for commits, the confirmation tag.
type FramedContentAuthData struct {
	// Signature is SignWithLabel(., "FramedContentTBS", FramedContentTBS).
	Signature []byte
	// ConfirmationTag is MAC(confirmation_key, confirmed_transcript_hash),
	// encoded only for ContentTypeCommit.
	ConfirmationTag []byte
}

func (a *FramedContentAuthData) marshal(b *cryptobyte.Builder, ct ContentType) {
	addOpaque(b, "auth.signature", a.Signature, MaxSignatureSize)
	switch ct {
	case ContentTypeCommit:
		addOpaque(b, "auth.confirmation_tag", a.ConfirmationTag, MaxHashSize)
	case ContentTypeApplication, ContentTypeProposal:
		if a.ConfirmationTag != nil {
			encodeFail(b, "auth.confirmation_tag", ErrInvalidValue)
		}
	default:
		encodeFail(b, "content_type", ErrInvalidValue)
	}
}

func (a *FramedContentAuthData) unmarshal(d *decoder, ct ContentType) {
	a.Signature = d.opaque("auth.signature", MaxSignatureSize)
	if ct == ContentTypeCommit {
		a.ConfirmationTag = d.opaque("auth.confirmation_tag", MaxHashSize)
	}
}

// framedContentTBS returns the encoded FramedContentTBS (§6.1). ctx is the
// epoch's GroupContext, covered for member and new_member_commit senders
// and ignored for the others.
func framedContentTBS(wf WireFormat, c *FramedContent, ctx *GroupContext) ([]byte, error) {
	return encode("FramedContentTBS", func(b *cryptobyte.Builder) { marshalFramedContentTBS(b, wf, c, ctx) })
}

func marshalFramedContentTBS(b *cryptobyte.Builder, wf WireFormat, c *FramedContent, ctx *GroupContext) {
	b.AddUint16(uint16(ProtocolVersionMLS10))
	b.AddUint16(uint16(wf))
	c.marshal(b)
	switch c.Sender.Type {
	case SenderTypeMember, SenderTypeNewMemberCommit:
		if ctx == nil {
			encodeFail(b, "context", ErrInvalidValue)
			return
		}
		ctx.marshal(b)
	}
}

// AuthenticatedContent is a FramedContent with its authentication, the
// form in which messages are processed (§6).
type AuthenticatedContent struct {
	WireFormat WireFormat
	Content    FramedContent
	Auth       FramedContentAuthData
}

func (a *AuthenticatedContent) marshal(b *cryptobyte.Builder) {
	b.AddUint16(uint16(a.WireFormat))
	a.Content.marshal(b)
	a.Auth.marshal(b, a.Content.ContentType)
}

func (a *AuthenticatedContent) unmarshal(d *decoder) {
	a.WireFormat = WireFormat(d.u16("wire_format"))
	if d.ok() && a.WireFormat != WireFormatPublicMessage && a.WireFormat != WireFormatPrivateMessage {
		d.fail("wire_format", ErrInvalidValue)
	}
	a.Content.unmarshal(d)
	a.Auth.unmarshal(d, a.Content.ContentType)
}

// Encode returns the §6 encoding of a, the input of ProposalRef.
func (a *AuthenticatedContent) Encode() ([]byte, error) {
	return encode("AuthenticatedContent", a.marshal)
}

// DecodeAuthenticatedContent parses an AuthenticatedContent; its
// wire_format must be mls_public_message or mls_private_message.
func DecodeAuthenticatedContent(b []byte) (*AuthenticatedContent, error) {
	a := new(AuthenticatedContent)
	if err := decode("AuthenticatedContent", b, a.unmarshal); err != nil {
		return nil, err
	}
	return a, nil
}

// ConfirmedTranscriptHashInput returns the encoded
// ConfirmedTranscriptHashInput (§8.2) of a commit: wire_format, content and
// signature.
func (a *AuthenticatedContent) ConfirmedTranscriptHashInput() ([]byte, error) {
	return encode("ConfirmedTranscriptHashInput", func(b *cryptobyte.Builder) {
		if a.Content.ContentType != ContentTypeCommit {
			encodeFail(b, "content.content_type", ErrInvalidValue)
			return
		}
		b.AddUint16(uint16(a.WireFormat))
		a.Content.marshal(b)
		addOpaque(b, "signature", a.Auth.Signature, MaxSignatureSize)
	})
}

// PublicMessage is a signed, unencrypted message (§6.2).
type PublicMessage struct {
	Content FramedContent
	Auth    FramedContentAuthData
	// MembershipTag is MAC(membership_key, AuthenticatedContentTBM),
	// encoded only for member senders.
	MembershipTag []byte

	received []byte // the body as decoded, for FramedContent.received
}

func (p *PublicMessage) marshal(b *cryptobyte.Builder) {
	p.Content.marshal(b)
	p.Auth.marshal(b, p.Content.ContentType)
	if p.Content.Sender.Type == SenderTypeMember {
		addOpaque(b, "membership_tag", p.MembershipTag, MaxHashSize)
	} else if p.MembershipTag != nil {
		encodeFail(b, "membership_tag", ErrInvalidValue)
	}
}

func (p *PublicMessage) unmarshal(d *decoder) {
	p.received = p.Content.unmarshal(d)
	p.Auth.unmarshal(d, p.Content.ContentType)
	if p.Content.Sender.Type == SenderTypeMember {
		p.MembershipTag = d.opaque("membership_tag", MaxHashSize)
	}
}

// Encode returns the §6.2 encoding of p.
func (p *PublicMessage) Encode() ([]byte, error) { return encode("PublicMessage", p.marshal) }

// DecodePublicMessage parses a PublicMessage (not wrapped in an MLSMessage).
func DecodePublicMessage(b []byte) (*PublicMessage, error) {
	p := new(PublicMessage)
	if err := decode("PublicMessage", b, p.unmarshal); err != nil {
		return nil, err
	}
	return p, nil
}

// authenticatedContentTBM returns the encoded AuthenticatedContentTBM
// (§6.2) the membership tag covers.
func (p *PublicMessage) authenticatedContentTBM(ctx *GroupContext) ([]byte, error) {
	return encode("AuthenticatedContentTBM", func(b *cryptobyte.Builder) {
		marshalFramedContentTBS(b, WireFormatPublicMessage, &p.Content, ctx)
		p.Auth.marshal(b, p.Content.ContentType)
	})
}

// PrivateMessage is a signed and encrypted message (§6.3).
type PrivateMessage struct {
	GroupID             []byte
	Epoch               uint64
	ContentType         ContentType
	AuthenticatedData   []byte
	EncryptedSenderData []byte
	Ciphertext          []byte
}

func (p *PrivateMessage) marshal(b *cryptobyte.Builder) {
	addOpaque(b, "group_id", p.GroupID, MaxHashSize)
	b.AddUint64(p.Epoch)
	if !p.ContentType.valid() {
		encodeFail(b, "content_type", ErrInvalidValue)
	}
	b.AddUint8(uint8(p.ContentType))
	addOpaque(b, "authenticated_data", p.AuthenticatedData, maxOpaque)
	addOpaque(b, "encrypted_sender_data", p.EncryptedSenderData, maxOpaque)
	addOpaque(b, "ciphertext", p.Ciphertext, maxOpaque)
}

func (p *PrivateMessage) unmarshal(d *decoder) {
	p.GroupID = d.opaque("group_id", MaxHashSize)
	p.Epoch = d.u64("epoch")
	p.ContentType = ContentType(d.u8("content_type"))
	if d.ok() && !p.ContentType.valid() {
		d.fail("content_type", ErrInvalidValue)
	}
	p.AuthenticatedData = d.opaque("authenticated_data", maxOpaque)
	p.EncryptedSenderData = d.opaque("encrypted_sender_data", maxOpaque)
	p.Ciphertext = d.opaque("ciphertext", maxOpaque)
}

// Encode returns the §6.3 encoding of p.
func (p *PrivateMessage) Encode() ([]byte, error) { return encode("PrivateMessage", p.marshal) }

// DecodePrivateMessage parses a PrivateMessage (not wrapped in an
// MLSMessage).
func DecodePrivateMessage(b []byte) (*PrivateMessage, error) {
	p := new(PrivateMessage)
	if err := decode("PrivateMessage", b, p.unmarshal); err != nil {
		return nil, err
	}
	return p, nil
}

// PrivateMessageContent is the plaintext of PrivateMessage.ciphertext
// (§6.3.1): the content body, its authentication and zero padding. The
// content type is not encoded; it comes from the PrivateMessage.
type PrivateMessageContent struct {
	ContentType     ContentType
	ApplicationData []byte
	Proposal        *Proposal
	Commit          *Commit
	Auth            FramedContentAuthData
	// PaddingLen is the number of zero bytes after auth.
	PaddingLen int

	received []byte // the body as decoded, for FramedContent.received
}

func (p *PrivateMessageContent) framed() *FramedContent {
	return &FramedContent{ContentType: p.ContentType, ApplicationData: p.ApplicationData, Proposal: p.Proposal, Commit: p.Commit}
}

func (p *PrivateMessageContent) marshal(b *cryptobyte.Builder) {
	p.framed().marshalBody(b)
	p.Auth.marshal(b, p.ContentType)
	if p.PaddingLen < 0 || p.PaddingLen > maxOpaque {
		encodeFail(b, "padding", ErrTooLarge)
		return
	}
	b.AddBytes(make([]byte, p.PaddingLen))
}

func (p *PrivateMessageContent) unmarshal(d *decoder) {
	f := FramedContent{ContentType: p.ContentType}
	p.received = f.unmarshalBody(d)
	p.ApplicationData, p.Proposal, p.Commit = f.ApplicationData, f.Proposal, f.Commit
	p.Auth.unmarshal(d, p.ContentType)
	if !d.ok() {
		return
	}
	// §6.3.1: the padding MUST be all zero; the check runs over every byte.
	var acc byte
	for _, c := range d.s {
		acc |= c
	}
	if acc != 0 {
		d.fail("padding", ErrMalformed)
		return
	}
	p.PaddingLen = len(d.s)
	d.s = d.s[len(d.s):]
}

// Encode returns the §6.3.1 encoding of p, padding included.
func (p *PrivateMessageContent) Encode() ([]byte, error) {
	return encode("PrivateMessageContent", p.marshal)
}

// DecodePrivateMessageContent parses the plaintext of a PrivateMessage
// whose content_type is ct, refusing non-zero padding with ErrMalformed.
func DecodePrivateMessageContent(ct ContentType, b []byte) (*PrivateMessageContent, error) {
	p := &PrivateMessageContent{ContentType: ct}
	if err := decode("PrivateMessageContent", b, p.unmarshal); err != nil {
		return nil, err
	}
	return p, nil
}

// SenderData identifies the sender and ratchet generation of a
// PrivateMessage (§6.3.2).
type SenderData struct {
	LeafIndex  uint32
	Generation uint32
	ReuseGuard [4]byte
}

func (s *SenderData) marshal(b *cryptobyte.Builder) {
	b.AddUint32(s.LeafIndex)
	b.AddUint32(s.Generation)
	b.AddBytes(s.ReuseGuard[:])
}

func (s *SenderData) unmarshal(d *decoder) {
	s.LeafIndex = d.u32("leaf_index")
	s.Generation = d.u32("generation")
	copy(s.ReuseGuard[:], d.fixed("reuse_guard", 4))
}

// Encode returns the §6.3.2 encoding of s.
func (s *SenderData) Encode() ([]byte, error) { return encode("SenderData", s.marshal) }

// DecodeSenderData parses a SenderData.
func DecodeSenderData(b []byte) (*SenderData, error) {
	s := new(SenderData)
	if err := decode("SenderData", b, s.unmarshal); err != nil {
		return nil, err
	}
	return s, nil
}

// SenderDataAAD is the AAD of the sender data encryption (§6.3.2).
type SenderDataAAD struct {
	GroupID     []byte
	Epoch       uint64
	ContentType ContentType
}

// Encode returns the §6.3.2 encoding of a.
func (a *SenderDataAAD) Encode() ([]byte, error) {
	return encode("SenderDataAAD", func(b *cryptobyte.Builder) {
		addOpaque(b, "group_id", a.GroupID, MaxHashSize)
		b.AddUint64(a.Epoch)
		b.AddUint8(uint8(a.ContentType))
	})
}

// PrivateContentAAD is the AAD of the content encryption (§6.3.1).
type PrivateContentAAD struct {
	GroupID           []byte
	Epoch             uint64
	ContentType       ContentType
	AuthenticatedData []byte
}

// Encode returns the §6.3.1 encoding of a.
func (a *PrivateContentAAD) Encode() ([]byte, error) {
	return encode("PrivateContentAAD", func(b *cryptobyte.Builder) {
		addOpaque(b, "group_id", a.GroupID, MaxHashSize)
		b.AddUint64(a.Epoch)
		b.AddUint8(uint8(a.ContentType))
		addOpaque(b, "authenticated_data", a.AuthenticatedData, maxOpaque)
	})
}

// MLSMessage is the top-level message (§6). Exactly the field matching
// WireFormat is set. Its version is always mls10: the encoder writes it and
// the decoder refuses anything else with ErrInvalidValue, as it does a
// KeyPackage whose version differs from the message's (§10).
type MLSMessage struct {
	WireFormat     WireFormat
	PublicMessage  *PublicMessage
	PrivateMessage *PrivateMessage
	Welcome        *Welcome
	GroupInfo      *GroupInfo
	KeyPackage     *KeyPackage
}

func (m *MLSMessage) marshal(b *cryptobyte.Builder) {
	n := 0
	for _, set := range []bool{m.PublicMessage != nil, m.PrivateMessage != nil, m.Welcome != nil, m.GroupInfo != nil, m.KeyPackage != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		encodeFail(b, "wire_format", ErrInvalidValue)
		return
	}
	b.AddUint16(uint16(ProtocolVersionMLS10))
	b.AddUint16(uint16(m.WireFormat))
	switch {
	case m.WireFormat == WireFormatPublicMessage && m.PublicMessage != nil:
		m.PublicMessage.marshal(b)
	case m.WireFormat == WireFormatPrivateMessage && m.PrivateMessage != nil:
		m.PrivateMessage.marshal(b)
	case m.WireFormat == WireFormatWelcome && m.Welcome != nil:
		m.Welcome.marshal(b)
	case m.WireFormat == WireFormatGroupInfo && m.GroupInfo != nil:
		m.GroupInfo.marshal(b)
	case m.WireFormat == WireFormatKeyPackage && m.KeyPackage != nil:
		m.KeyPackage.marshal(b)
	default:
		encodeFail(b, "wire_format", ErrInvalidValue)
	}
}

func (m *MLSMessage) unmarshal(d *decoder) {
	if v := ProtocolVersion(d.u16("version")); d.ok() && v != ProtocolVersionMLS10 {
		d.fail("version", ErrInvalidValue)
		return
	}
	m.WireFormat = WireFormat(d.u16("wire_format"))
	switch m.WireFormat {
	case WireFormatPublicMessage:
		m.PublicMessage = new(PublicMessage)
		m.PublicMessage.unmarshal(d)
	case WireFormatPrivateMessage:
		m.PrivateMessage = new(PrivateMessage)
		m.PrivateMessage.unmarshal(d)
	case WireFormatWelcome:
		m.Welcome = new(Welcome)
		m.Welcome.unmarshal(d)
	case WireFormatGroupInfo:
		m.GroupInfo = new(GroupInfo)
		m.GroupInfo.unmarshal(d)
	case WireFormatKeyPackage:
		m.KeyPackage = new(KeyPackage)
		m.KeyPackage.unmarshal(d)
		if d.ok() && m.KeyPackage.Version != ProtocolVersionMLS10 {
			d.fail("key_package.version", ErrInvalidValue)
		}
	default:
		d.fail("wire_format", ErrInvalidValue)
	}
}

// Encode returns the §6 encoding of m.
func (m *MLSMessage) Encode() ([]byte, error) { return encode("MLSMessage", m.marshal) }

// DecodeMLSMessage parses an MLSMessage.
func DecodeMLSMessage(b []byte) (*MLSMessage, error) {
	m := new(MLSMessage)
	if err := decode("MLSMessage", b, m.unmarshal); err != nil {
		return nil, err
	}
	return m, nil
}
