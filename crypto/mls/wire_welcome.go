package mls

import "golang.org/x/crypto/cryptobyte"

// GroupContext is the group state every member agrees on in an epoch
// (RFC 9420 §8.1). Its version is always mls10: the encoder writes it and
// the decoder refuses anything else with ErrInvalidValue.
type GroupContext struct {
	CipherSuite             CipherSuite
	GroupID                 []byte
	Epoch                   uint64
	TreeHash                []byte
	ConfirmedTranscriptHash []byte
	Extensions              Extensions
}

func (g *GroupContext) marshal(b *cryptobyte.Builder) {
	b.AddUint16(uint16(ProtocolVersionMLS10))
	b.AddUint16(uint16(g.CipherSuite))
	addOpaque(b, "group_id", g.GroupID, MaxHashSize)
	b.AddUint64(g.Epoch)
	addOpaque(b, "tree_hash", g.TreeHash, MaxHashSize)
	addOpaque(b, "confirmed_transcript_hash", g.ConfirmedTranscriptHash, MaxHashSize)
	g.Extensions.marshal(b, "extensions")
}

func (g *GroupContext) unmarshal(d *decoder) {
	if v := ProtocolVersion(d.u16("group_context.version")); d.ok() && v != ProtocolVersionMLS10 {
		d.fail("group_context.version", ErrInvalidValue)
	}
	g.CipherSuite = CipherSuite(d.u16("group_context.cipher_suite"))
	g.GroupID = d.opaque("group_context.group_id", MaxHashSize)
	g.Epoch = d.u64("group_context.epoch")
	g.TreeHash = d.opaque("group_context.tree_hash", MaxHashSize)
	g.ConfirmedTranscriptHash = d.opaque("group_context.confirmed_transcript_hash", MaxHashSize)
	g.Extensions = readExtensions(d, "group_context.extensions")
}

// Encode returns the §8.1 encoding of g, the context of the key schedule's
// ExpandWithLabel calls.
func (g *GroupContext) Encode() ([]byte, error) { return encode("GroupContext", g.marshal) }

// DecodeGroupContext parses a GroupContext.
func DecodeGroupContext(b []byte) (*GroupContext, error) {
	g := new(GroupContext)
	if err := decode("GroupContext", b, g.unmarshal); err != nil {
		return nil, err
	}
	return g, nil
}

// GroupInfo describes a group to a joiner, signed by a member (§12.4.3).
type GroupInfo struct {
	GroupContext    GroupContext
	Extensions      Extensions
	ConfirmationTag []byte // MAC confirmation_tag
	Signer          uint32 // leaf index of the signer
	// Signature is SignWithLabel(., "GroupInfoTBS", GroupInfoTBS).
	Signature []byte
}

func (g *GroupInfo) marshalTBS(b *cryptobyte.Builder) {
	g.GroupContext.marshal(b)
	g.Extensions.marshal(b, "extensions")
	addOpaque(b, "confirmation_tag", g.ConfirmationTag, MaxHashSize)
	b.AddUint32(g.Signer)
}

func (g *GroupInfo) marshal(b *cryptobyte.Builder) {
	g.marshalTBS(b)
	addOpaque(b, "signature", g.Signature, MaxSignatureSize)
}

func (g *GroupInfo) unmarshal(d *decoder) {
	g.GroupContext.unmarshal(d)
	g.Extensions = readExtensions(d, "extensions")
	g.ConfirmationTag = d.opaque("confirmation_tag", MaxHashSize)
	g.Signer = d.u32("signer")
	g.Signature = d.opaque("signature", MaxSignatureSize)
}

// Encode returns the §12.4.3 encoding of g.
func (g *GroupInfo) Encode() ([]byte, error) { return encode("GroupInfo", g.marshal) }

// TBS returns the encoded GroupInfoTBS that g.Signature covers.
func (g *GroupInfo) TBS() ([]byte, error) { return encode("GroupInfoTBS", g.marshalTBS) }

// DecodeGroupInfo parses a GroupInfo (not wrapped in an MLSMessage), as
// found decrypted in a Welcome.
func DecodeGroupInfo(b []byte) (*GroupInfo, error) {
	g := new(GroupInfo)
	if err := decode("GroupInfo", b, g.unmarshal); err != nil {
		return nil, err
	}
	return g, nil
}

// PathSecret is the path secret a Welcome gives a joiner for the lowest
// common ancestor with the committer (§12.4.3.1).
type PathSecret struct {
	PathSecret []byte
}

// GroupSecrets is the secret part of a Welcome, encrypted to each joiner's
// init key (§12.4.3.1).
type GroupSecrets struct {
	JoinerSecret []byte
	PathSecret   *PathSecret // optional<PathSecret>
	PSKs         []PreSharedKeyID
}

func (g *GroupSecrets) marshal(b *cryptobyte.Builder) {
	addOpaque(b, "joiner_secret", g.JoinerSecret, MaxHashSize)
	if g.PathSecret == nil {
		b.AddUint8(0)
	} else {
		b.AddUint8(1)
		addOpaque(b, "path_secret", g.PathSecret.PathSecret, MaxHashSize)
	}
	addList(b, "psks", g.PSKs, MaxPSKs, func(b *cryptobyte.Builder, p *PreSharedKeyID) { p.marshal(b) })
}

func (g *GroupSecrets) unmarshal(d *decoder) {
	g.JoinerSecret = d.opaque("joiner_secret", MaxHashSize)
	if d.boolean("path_secret.present") {
		g.PathSecret = &PathSecret{PathSecret: d.opaque("path_secret", MaxHashSize)}
	}
	g.PSKs = readList(d, "psks", MaxPSKs, func(d *decoder) PreSharedKeyID {
		var p PreSharedKeyID
		p.unmarshal(d)
		return p
	})
}

// Encode returns the §12.4.3.1 encoding of g.
func (g *GroupSecrets) Encode() ([]byte, error) { return encode("GroupSecrets", g.marshal) }

// DecodeGroupSecrets parses a GroupSecrets.
func DecodeGroupSecrets(b []byte) (*GroupSecrets, error) {
	g := new(GroupSecrets)
	if err := decode("GroupSecrets", b, g.unmarshal); err != nil {
		return nil, err
	}
	return g, nil
}

// EncryptedGroupSecrets is the GroupSecrets for one joiner, identified by
// the reference of the KeyPackage it was encrypted to (§12.4.3.1).
type EncryptedGroupSecrets struct {
	NewMember             KeyPackageRef
	EncryptedGroupSecrets HPKECiphertext
}

// Welcome lets new members join a group (§12.4.3.1).
type Welcome struct {
	CipherSuite        CipherSuite
	Secrets            []EncryptedGroupSecrets
	EncryptedGroupInfo []byte
}

func (w *Welcome) marshal(b *cryptobyte.Builder) {
	b.AddUint16(uint16(w.CipherSuite))
	addList(b, "secrets", w.Secrets, MaxTreeLeaves, func(b *cryptobyte.Builder, s *EncryptedGroupSecrets) {
		addOpaque(b, "secrets.new_member", s.NewMember, MaxHashSize)
		s.EncryptedGroupSecrets.marshal(b)
	})
	addOpaque(b, "encrypted_group_info", w.EncryptedGroupInfo, maxOpaque)
}

func (w *Welcome) unmarshal(d *decoder) {
	w.CipherSuite = CipherSuite(d.u16("cipher_suite"))
	w.Secrets = readList(d, "secrets", MaxTreeLeaves, func(d *decoder) EncryptedGroupSecrets {
		var s EncryptedGroupSecrets
		s.NewMember = d.opaque("secrets.new_member", MaxHashSize)
		s.EncryptedGroupSecrets.unmarshal(d)
		return s
	})
	w.EncryptedGroupInfo = d.opaque("encrypted_group_info", maxOpaque)
}

// Encode returns the §12.4.3.1 encoding of w.
func (w *Welcome) Encode() ([]byte, error) { return encode("Welcome", w.marshal) }

// DecodeWelcome parses a Welcome (not wrapped in an MLSMessage).
func DecodeWelcome(b []byte) (*Welcome, error) {
	w := new(Welcome)
	if err := decode("Welcome", b, w.unmarshal); err != nil {
		return nil, err
	}
	return w, nil
}
