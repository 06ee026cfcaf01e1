package mls

import "golang.org/x/crypto/cryptobyte"

// PSKType says where a pre-shared key comes from (RFC 9420 §8.4).
type PSKType uint8

// PSK types.
const (
	PSKTypeExternal   PSKType = 1
	PSKTypeResumption PSKType = 2
)

// ResumptionPSKUsage says why a resumption PSK is used (§8.4).
type ResumptionPSKUsage uint8

// Resumption PSK usages. Decoders refuse other values.
const (
	ResumptionPSKUsageApplication ResumptionPSKUsage = 1
	ResumptionPSKUsageReInit      ResumptionPSKUsage = 2
	ResumptionPSKUsageBranch      ResumptionPSKUsage = 3
)

// PreSharedKeyID names a PSK to inject into the key schedule (§8.4).
type PreSharedKeyID struct {
	Type PSKType
	// PSKID is psk_id<V>, for PSKTypeExternal.
	PSKID []byte
	// Usage, PSKGroupID and PSKEpoch are for PSKTypeResumption.
	Usage      ResumptionPSKUsage
	PSKGroupID []byte
	PSKEpoch   uint64
	// Nonce is psk_nonce<V>, KDF.Nh fresh random bytes.
	Nonce []byte
}

func (p *PreSharedKeyID) marshal(b *cryptobyte.Builder) {
	b.AddUint8(uint8(p.Type))
	switch p.Type {
	case PSKTypeExternal:
		if p.Usage != 0 || p.PSKGroupID != nil || p.PSKEpoch != 0 {
			encodeFail(b, "psk.psktype", ErrInvalidValue)
		}
		addOpaque(b, "psk.psk_id", p.PSKID, maxOpaque)
	case PSKTypeResumption:
		if p.PSKID != nil || p.Usage < ResumptionPSKUsageApplication || p.Usage > ResumptionPSKUsageBranch {
			encodeFail(b, "psk.usage", ErrInvalidValue)
		}
		b.AddUint8(uint8(p.Usage))
		addOpaque(b, "psk.psk_group_id", p.PSKGroupID, MaxHashSize)
		b.AddUint64(p.PSKEpoch)
	default:
		encodeFail(b, "psk.psktype", ErrInvalidValue)
	}
	addOpaque(b, "psk.psk_nonce", p.Nonce, MaxHashSize)
}

func (p *PreSharedKeyID) unmarshal(d *decoder) {
	p.Type = PSKType(d.u8("psk.psktype"))
	switch p.Type {
	case PSKTypeExternal:
		p.PSKID = d.opaque("psk.psk_id", maxOpaque)
	case PSKTypeResumption:
		p.Usage = ResumptionPSKUsage(d.u8("psk.usage"))
		if d.ok() && (p.Usage < ResumptionPSKUsageApplication || p.Usage > ResumptionPSKUsageBranch) {
			d.fail("psk.usage", ErrInvalidValue)
		}
		p.PSKGroupID = d.opaque("psk.psk_group_id", MaxHashSize)
		p.PSKEpoch = d.u64("psk.psk_epoch")
	default:
		d.fail("psk.psktype", ErrInvalidValue)
	}
	p.Nonce = d.opaque("psk.psk_nonce", MaxHashSize)
}

// Encode returns the §8.4 encoding of p.
func (p *PreSharedKeyID) Encode() ([]byte, error) { return encode("PreSharedKeyID", p.marshal) }

// DecodePreSharedKeyID parses a PreSharedKeyID.
func DecodePreSharedKeyID(b []byte) (*PreSharedKeyID, error) {
	p := new(PreSharedKeyID)
	if err := decode("PreSharedKeyID", b, p.unmarshal); err != nil {
		return nil, err
	}
	return p, nil
}

// Add requests adding the client of a KeyPackage (§12.1.1).
type Add struct {
	KeyPackage KeyPackage
}

// Update replaces the sender's LeafNode (§12.1.2).
type Update struct {
	LeafNode LeafNode
}

// Remove requests removing the member at leaf index Removed (§12.1.3).
type Remove struct {
	Removed uint32
}

// PreSharedKey requests injecting a PSK into the next epoch (§12.1.4).
type PreSharedKey struct {
	PSK PreSharedKeyID
}

// ReInit requests reinitialising the group with new parameters (§12.1.5).
type ReInit struct {
	GroupID     []byte
	Version     ProtocolVersion
	CipherSuite CipherSuite
	Extensions  Extensions
}

// ExternalInit carries the KEM output of an external join (§12.1.6).
type ExternalInit struct {
	KEMOutput []byte
}

// GroupContextExtensions replaces the GroupContext's extensions
// (§12.1.7).
type GroupContextExtensions struct {
	Extensions Extensions
}

func (p *Add) marshal(b *cryptobyte.Builder)    { p.KeyPackage.marshal(b) }
func (p *Add) unmarshal(d *decoder)             { p.KeyPackage.unmarshal(d) }
func (p *Update) marshal(b *cryptobyte.Builder) { p.LeafNode.marshal(b) }
func (p *Update) unmarshal(d *decoder)          { p.LeafNode.unmarshal(d) }
func (p *Remove) marshal(b *cryptobyte.Builder) { b.AddUint32(p.Removed) }
func (p *Remove) unmarshal(d *decoder)          { p.Removed = d.u32("removed") }

func (p *PreSharedKey) marshal(b *cryptobyte.Builder) { p.PSK.marshal(b) }
func (p *PreSharedKey) unmarshal(d *decoder)          { p.PSK.unmarshal(d) }

func (p *ReInit) marshal(b *cryptobyte.Builder) {
	addOpaque(b, "group_id", p.GroupID, MaxHashSize)
	b.AddUint16(uint16(p.Version))
	b.AddUint16(uint16(p.CipherSuite))
	p.Extensions.marshal(b, "extensions")
}

func (p *ReInit) unmarshal(d *decoder) {
	p.GroupID = d.opaque("group_id", MaxHashSize)
	p.Version = ProtocolVersion(d.u16("version"))
	p.CipherSuite = CipherSuite(d.u16("cipher_suite"))
	p.Extensions = readExtensions(d, "extensions")
}

func (p *ExternalInit) marshal(b *cryptobyte.Builder) {
	addOpaque(b, "kem_output", p.KEMOutput, MaxKeySize)
}

func (p *ExternalInit) unmarshal(d *decoder) { p.KEMOutput = d.opaque("kem_output", MaxKeySize) }

func (p *GroupContextExtensions) marshal(b *cryptobyte.Builder) {
	p.Extensions.marshal(b, "extensions")
}

func (p *GroupContextExtensions) unmarshal(d *decoder) {
	p.Extensions = readExtensions(d, "extensions")
}

// Proposal is one proposed change to the group (§12.1). Exactly the field
// matching Type is set. Proposal types other than the seven of RFC 9420
// cannot be parsed (their bodies carry no length) and are refused with
// ErrInvalidValue; §13.5 forbids GREASE in proposal_type.
type Proposal struct {
	Type                   ProposalType
	Add                    *Add
	Update                 *Update
	Remove                 *Remove
	PreSharedKey           *PreSharedKey
	ReInit                 *ReInit
	ExternalInit           *ExternalInit
	GroupContextExtensions *GroupContextExtensions
}

// body returns the proposal's content as a codec, or nil if the set field
// does not match Type (or more than one is set).
func (p *Proposal) body() interface {
	marshal(*cryptobyte.Builder)
	unmarshal(*decoder)
} {
	n := 0
	for _, set := range []bool{p.Add != nil, p.Update != nil, p.Remove != nil, p.PreSharedKey != nil,
		p.ReInit != nil, p.ExternalInit != nil, p.GroupContextExtensions != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil
	}
	switch {
	case p.Type == ProposalTypeAdd && p.Add != nil:
		return p.Add
	case p.Type == ProposalTypeUpdate && p.Update != nil:
		return p.Update
	case p.Type == ProposalTypeRemove && p.Remove != nil:
		return p.Remove
	case p.Type == ProposalTypePSK && p.PreSharedKey != nil:
		return p.PreSharedKey
	case p.Type == ProposalTypeReInit && p.ReInit != nil:
		return p.ReInit
	case p.Type == ProposalTypeExternalInit && p.ExternalInit != nil:
		return p.ExternalInit
	case p.Type == ProposalTypeGroupContextExtensions && p.GroupContextExtensions != nil:
		return p.GroupContextExtensions
	}
	return nil
}

func (p *Proposal) marshal(b *cryptobyte.Builder) {
	body := p.body()
	if body == nil {
		encodeFail(b, "proposal.proposal_type", ErrInvalidValue)
		return
	}
	b.AddUint16(uint16(p.Type))
	body.marshal(b)
}

func (p *Proposal) unmarshal(d *decoder) {
	p.Type = ProposalType(d.u16("proposal.proposal_type"))
	switch p.Type {
	case ProposalTypeAdd:
		p.Add = new(Add)
		p.Add.unmarshal(d)
	case ProposalTypeUpdate:
		p.Update = new(Update)
		p.Update.unmarshal(d)
	case ProposalTypeRemove:
		p.Remove = new(Remove)
		p.Remove.unmarshal(d)
	case ProposalTypePSK:
		p.PreSharedKey = new(PreSharedKey)
		p.PreSharedKey.unmarshal(d)
	case ProposalTypeReInit:
		p.ReInit = new(ReInit)
		p.ReInit.unmarshal(d)
	case ProposalTypeExternalInit:
		p.ExternalInit = new(ExternalInit)
		p.ExternalInit.unmarshal(d)
	case ProposalTypeGroupContextExtensions:
		p.GroupContextExtensions = new(GroupContextExtensions)
		p.GroupContextExtensions.unmarshal(d)
	default:
		d.fail("proposal.proposal_type", ErrInvalidValue)
	}
}

// Encode returns the §12.1 encoding of p.
func (p *Proposal) Encode() ([]byte, error) { return encode("Proposal", p.marshal) }

// DecodeProposal parses a Proposal.
func DecodeProposal(b []byte) (*Proposal, error) {
	p := new(Proposal)
	if err := decode("Proposal", b, p.unmarshal); err != nil {
		return nil, err
	}
	return p, nil
}

// EncodeBody returns the encoding of the proposal's content alone
// (Add, Update, ... without proposal_type), as messages.json carries it.
func (p *Proposal) EncodeBody() ([]byte, error) {
	body := p.body()
	if body == nil {
		return nil, &EncodeError{Struct: "Proposal", Field: "proposal_type", Err: ErrInvalidValue}
	}
	return encode("Proposal", body.marshal)
}

// DecodeProposalBody parses the content of a proposal of type t (Add,
// Update, ... without proposal_type).
func DecodeProposalBody(t ProposalType, b []byte) (*Proposal, error) {
	var in []byte
	in = append(in, byte(t>>8), byte(t))
	in = append(in, b...)
	return DecodeProposal(in)
}

// ProposalRef identifies a proposal: RefHash("MLS 1.0 Proposal Reference",
// AuthenticatedContent) (§5.2).
type ProposalRef []byte

// ProposalOrRefType says how a Commit carries a proposal (§12.4).
type ProposalOrRefType uint8

// ProposalOrRef types.
const (
	ProposalOrRefTypeProposal  ProposalOrRefType = 1
	ProposalOrRefTypeReference ProposalOrRefType = 2
)

// ProposalOrRef is a proposal a Commit covers, inline or by reference
// (§12.4). Exactly one of Proposal and Reference is set.
type ProposalOrRef struct {
	Proposal  *Proposal
	Reference ProposalRef
}

func (p *ProposalOrRef) marshal(b *cryptobyte.Builder) {
	switch {
	case p.Proposal != nil && p.Reference == nil:
		b.AddUint8(uint8(ProposalOrRefTypeProposal))
		p.Proposal.marshal(b)
	case p.Proposal == nil && p.Reference != nil:
		b.AddUint8(uint8(ProposalOrRefTypeReference))
		addOpaque(b, "proposals.reference", p.Reference, MaxHashSize)
	default:
		encodeFail(b, "proposals.type", ErrInvalidValue)
	}
}

func (p *ProposalOrRef) unmarshal(d *decoder) {
	switch ProposalOrRefType(d.u8("proposals.type")) {
	case ProposalOrRefTypeProposal:
		p.Proposal = new(Proposal)
		p.Proposal.unmarshal(d)
	case ProposalOrRefTypeReference:
		p.Reference = d.opaque("proposals.reference", MaxHashSize)
		if d.ok() && p.Reference == nil {
			// An empty reference cannot be told from "no reference" in
			// ProposalOrRef; no suite has an empty hash.
			d.fail("proposals.reference", ErrMalformed)
		}
	default:
		d.fail("proposals.type", ErrInvalidValue)
	}
}

// Commit applies proposals and optionally refreshes the committer's path
// (§12.4).
type Commit struct {
	Proposals []ProposalOrRef
	Path      *UpdatePath // optional<UpdatePath> path
}

func (c *Commit) marshal(b *cryptobyte.Builder) {
	addList(b, "proposals", c.Proposals, MaxTreeLeaves, func(b *cryptobyte.Builder, p *ProposalOrRef) {
		p.marshal(b)
	})
	if c.Path == nil {
		b.AddUint8(0)
		return
	}
	b.AddUint8(1)
	c.Path.marshal(b)
}

func (c *Commit) unmarshal(d *decoder) {
	c.Proposals = readList(d, "proposals", MaxTreeLeaves, func(d *decoder) ProposalOrRef {
		var p ProposalOrRef
		p.unmarshal(d)
		return p
	})
	if d.boolean("path.present") {
		c.Path = new(UpdatePath)
		c.Path.unmarshal(d)
	}
}

// Encode returns the §12.4 encoding of c.
func (c *Commit) Encode() ([]byte, error) { return encode("Commit", c.marshal) }

// DecodeCommit parses a Commit.
func DecodeCommit(b []byte) (*Commit, error) {
	c := new(Commit)
	if err := decode("Commit", b, c.unmarshal); err != nil {
		return nil, err
	}
	return c, nil
}
