package mls

import (
	"golang.org/x/crypto/cryptobyte"
)

// Capabilities lists what a client supports (RFC 9420 §7.2). Unknown and
// GREASE values are kept and ignored (§13.4, §13.5).
type Capabilities struct {
	Versions     []ProtocolVersion // versions<V>
	CipherSuites []CipherSuite     // cipher_suites<V>
	Extensions   []ExtensionType   // extensions<V>: non-default extension types
	Proposals    []ProposalType    // proposals<V>: non-default proposal types
	Credentials  []CredentialType  // credentials<V>
}

func (c *Capabilities) marshal(b *cryptobyte.Builder) {
	addU16List(b, "capabilities.versions", c.Versions, MaxCapabilityEntries)
	addU16List(b, "capabilities.cipher_suites", c.CipherSuites, MaxCapabilityEntries)
	addU16List(b, "capabilities.extensions", c.Extensions, MaxCapabilityEntries)
	addU16List(b, "capabilities.proposals", c.Proposals, MaxCapabilityEntries)
	addU16List(b, "capabilities.credentials", c.Credentials, MaxCapabilityEntries)
}

func (c *Capabilities) unmarshal(d *decoder) {
	c.Versions = readU16List[ProtocolVersion](d, "capabilities.versions", MaxCapabilityEntries)
	c.CipherSuites = readU16List[CipherSuite](d, "capabilities.cipher_suites", MaxCapabilityEntries)
	c.Extensions = readU16List[ExtensionType](d, "capabilities.extensions", MaxCapabilityEntries)
	c.Proposals = readU16List[ProposalType](d, "capabilities.proposals", MaxCapabilityEntries)
	c.Credentials = readU16List[CredentialType](d, "capabilities.credentials", MaxCapabilityEntries)
}

// Lifetime is the validity period of a KeyPackage's LeafNode, in seconds
// since the Unix epoch (§7.2).
type Lifetime struct {
	NotBefore uint64
	NotAfter  uint64
}

// LeafNodeSource says how a LeafNode entered the tree (§7.2).
type LeafNodeSource uint8

// Leaf node sources.
const (
	LeafNodeSourceKeyPackage LeafNodeSource = 1
	LeafNodeSourceUpdate     LeafNodeSource = 2
	LeafNodeSourceCommit     LeafNodeSource = 3
)

// LeafNode describes one member, signed by it (§7.2).
type LeafNode struct {
	EncryptionKey HPKEPublicKey
	SignatureKey  SignaturePublicKey
	Credential    Credential
	Capabilities  Capabilities

	Source LeafNodeSource // leaf_node_source
	// Lifetime is set exactly when Source is LeafNodeSourceKeyPackage.
	Lifetime *Lifetime
	// ParentHash is parent_hash<V>, encoded only when Source is
	// LeafNodeSourceCommit.
	ParentHash []byte

	Extensions Extensions
	// Signature is SignWithLabel(., "LeafNodeTBS", LeafNodeTBS).
	Signature []byte
}

// marshalContent writes the fields LeafNode and LeafNodeTBS share.
func (ln *LeafNode) marshalContent(b *cryptobyte.Builder) {
	addOpaque(b, "leaf_node.encryption_key", ln.EncryptionKey, MaxKeySize)
	addOpaque(b, "leaf_node.signature_key", ln.SignatureKey, MaxKeySize)
	ln.Credential.marshal(b)
	ln.Capabilities.marshal(b)
	b.AddUint8(uint8(ln.Source))
	switch ln.Source {
	case LeafNodeSourceKeyPackage:
		if ln.Lifetime == nil || ln.ParentHash != nil {
			encodeFail(b, "leaf_node.lifetime", ErrInvalidValue)
			return
		}
		b.AddUint64(ln.Lifetime.NotBefore)
		b.AddUint64(ln.Lifetime.NotAfter)
	case LeafNodeSourceUpdate:
		if ln.Lifetime != nil || ln.ParentHash != nil {
			encodeFail(b, "leaf_node.leaf_node_source", ErrInvalidValue)
		}
	case LeafNodeSourceCommit:
		if ln.Lifetime != nil {
			encodeFail(b, "leaf_node.leaf_node_source", ErrInvalidValue)
		}
		addOpaque(b, "leaf_node.parent_hash", ln.ParentHash, MaxHashSize)
	default:
		encodeFail(b, "leaf_node.leaf_node_source", ErrInvalidValue)
	}
	ln.Extensions.marshal(b, "leaf_node.extensions")
}

func (ln *LeafNode) marshal(b *cryptobyte.Builder) {
	ln.marshalContent(b)
	addOpaque(b, "leaf_node.signature", ln.Signature, MaxSignatureSize)
}

func (ln *LeafNode) unmarshal(d *decoder) {
	ln.EncryptionKey = d.opaque("leaf_node.encryption_key", MaxKeySize)
	ln.SignatureKey = d.opaque("leaf_node.signature_key", MaxKeySize)
	ln.Credential.unmarshal(d)
	ln.Capabilities.unmarshal(d)
	ln.Source = LeafNodeSource(d.u8("leaf_node.leaf_node_source"))
	switch ln.Source {
	case LeafNodeSourceKeyPackage:
		ln.Lifetime = &Lifetime{
			NotBefore: d.u64("leaf_node.lifetime.not_before"),
			NotAfter:  d.u64("leaf_node.lifetime.not_after"),
		}
	case LeafNodeSourceUpdate:
	case LeafNodeSourceCommit:
		ln.ParentHash = d.opaque("leaf_node.parent_hash", MaxHashSize)
	default:
		d.fail("leaf_node.leaf_node_source", ErrInvalidValue)
	}
	ln.Extensions = readExtensions(d, "leaf_node.extensions")
	ln.Signature = d.opaque("leaf_node.signature", MaxSignatureSize)
}

// Encode returns the §7.2 encoding of ln.
func (ln *LeafNode) Encode() ([]byte, error) { return encode("LeafNode", ln.marshal) }

// DecodeLeafNode parses a LeafNode.
func DecodeLeafNode(b []byte) (*LeafNode, error) {
	ln := new(LeafNode)
	if err := decode("LeafNode", b, ln.unmarshal); err != nil {
		return nil, err
	}
	return ln, nil
}

// TBS returns the encoded LeafNodeTBS (§7.2) that ln's signature covers.
// groupID and leafIndex are the group and position the leaf belongs to;
// they are part of the TBS only for the update and commit sources and are
// ignored for key_package.
func (ln *LeafNode) TBS(groupID []byte, leafIndex uint32) ([]byte, error) {
	return encode("LeafNodeTBS", func(b *cryptobyte.Builder) {
		ln.marshalContent(b)
		switch ln.Source {
		case LeafNodeSourceUpdate, LeafNodeSourceCommit:
			addOpaque(b, "group_id", groupID, MaxHashSize)
			b.AddUint32(leafIndex)
		}
	})
}

// ParentNode is the content of a non-blank parent node (§7.1).
type ParentNode struct {
	EncryptionKey HPKEPublicKey
	ParentHash    []byte
	// UnmergedLeaves are leaf indices in increasing order (§7.1); the
	// decoder enforces the order.
	UnmergedLeaves []uint32
}

func (p *ParentNode) marshal(b *cryptobyte.Builder) {
	addOpaque(b, "parent_node.encryption_key", p.EncryptionKey, MaxKeySize)
	addOpaque(b, "parent_node.parent_hash", p.ParentHash, MaxHashSize)
	if !strictlyIncreasing(p.UnmergedLeaves) {
		encodeFail(b, "parent_node.unmerged_leaves", ErrInvalidValue)
		return
	}
	addList(b, "parent_node.unmerged_leaves", p.UnmergedLeaves, MaxTreeLeaves, func(b *cryptobyte.Builder, l *uint32) {
		b.AddUint32(*l)
	})
}

func (p *ParentNode) unmarshal(d *decoder) {
	p.EncryptionKey = d.opaque("parent_node.encryption_key", MaxKeySize)
	p.ParentHash = d.opaque("parent_node.parent_hash", MaxHashSize)
	p.UnmergedLeaves = readList(d, "parent_node.unmerged_leaves", MaxTreeLeaves, func(d *decoder) uint32 {
		return d.u32("parent_node.unmerged_leaves")
	})
	if d.ok() && !strictlyIncreasing(p.UnmergedLeaves) {
		d.fail("parent_node.unmerged_leaves", ErrMalformed)
	}
}

func strictlyIncreasing(v []uint32) bool {
	for i := 1; i < len(v); i++ {
		if v[i] <= v[i-1] {
			return false
		}
	}
	return true
}

// Encode returns the §7.1 encoding of p.
func (p *ParentNode) Encode() ([]byte, error) { return encode("ParentNode", p.marshal) }

// DecodeParentNode parses a ParentNode.
func DecodeParentNode(b []byte) (*ParentNode, error) {
	p := new(ParentNode)
	if err := decode("ParentNode", b, p.unmarshal); err != nil {
		return nil, err
	}
	return p, nil
}

// NodeType says whether a Node is a leaf or a parent (§7.8).
type NodeType uint8

// Node types.
const (
	NodeTypeLeaf   NodeType = 1
	NodeTypeParent NodeType = 2
)

// Node is a non-blank ratchet tree node as the ratchet_tree extension
// carries it (§12.4.3.3): exactly one of Leaf and Parent is set. A blank
// node is a nil *Node.
type Node struct {
	Leaf   *LeafNode
	Parent *ParentNode
}

// Type returns the node's node_type.
func (n *Node) Type() NodeType {
	if n.Leaf != nil {
		return NodeTypeLeaf
	}
	return NodeTypeParent
}

func (n *Node) marshal(b *cryptobyte.Builder) {
	switch {
	case n.Leaf != nil && n.Parent == nil:
		b.AddUint8(uint8(NodeTypeLeaf))
		n.Leaf.marshal(b)
	case n.Parent != nil && n.Leaf == nil:
		b.AddUint8(uint8(NodeTypeParent))
		n.Parent.marshal(b)
	default:
		encodeFail(b, "node.node_type", ErrInvalidValue)
	}
}

func (n *Node) unmarshal(d *decoder) {
	switch NodeType(d.u8("node.node_type")) {
	case NodeTypeLeaf:
		n.Leaf = new(LeafNode)
		n.Leaf.unmarshal(d)
	case NodeTypeParent:
		n.Parent = new(ParentNode)
		n.Parent.unmarshal(d)
	default:
		d.fail("node.node_type", ErrInvalidValue)
	}
}

// RatchetTree is the ratchet_tree extension's payload (§12.4.3.3),
// optional<Node> ratchet_tree<V>: the tree's nodes in array order (leaf L
// at index 2L), nil for a blank node, with trailing blank nodes omitted.
//
// DecodeRatchetTree checks the structure the encoding itself implies: the
// list is non-empty, has an odd length, its last node is non-blank, leaves
// sit at even and parents at odd indices, and it has at most
// 2·MaxTreeLeaves−1 entries. Everything else (hashes, signatures, unmerged
// leaves) is tree validation (§12.4.3.1) and belongs to the tree code.
type RatchetTree []*Node

const maxTreeNodes = 2*MaxTreeLeaves - 1

func (t RatchetTree) check() error {
	if len(t) == 0 || len(t)%2 == 0 || t[len(t)-1] == nil {
		return ErrMalformed
	}
	if len(t) > maxTreeNodes {
		return ErrTooLarge
	}
	for i, n := range t {
		if n != nil && (n.Type() == NodeTypeLeaf) != (i%2 == 0) {
			return ErrMalformed
		}
	}
	return nil
}

// Encode returns the extension data.
func (t RatchetTree) Encode() ([]byte, error) {
	return encode("RatchetTree", func(b *cryptobyte.Builder) {
		if err := t.check(); err != nil {
			encodeFail(b, "ratchet_tree", err)
			return
		}
		addList(b, "ratchet_tree", t, maxTreeNodes, func(b *cryptobyte.Builder, n **Node) {
			if *n == nil {
				b.AddUint8(0)
				return
			}
			b.AddUint8(1)
			(*n).marshal(b)
		})
	})
}

// DecodeRatchetTree parses the ratchet_tree extension's data.
func DecodeRatchetTree(b []byte) (RatchetTree, error) {
	var t RatchetTree
	err := decode("RatchetTree", b, func(d *decoder) {
		t = readList(d, "ratchet_tree", maxTreeNodes, func(d *decoder) *Node {
			if !d.boolean("ratchet_tree.present") {
				return nil
			}
			n := new(Node)
			n.unmarshal(d)
			return n
		})
		if d.ok() {
			if err := t.check(); err != nil {
				d.fail("ratchet_tree", err)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}
