package mls

import "golang.org/x/crypto/cryptobyte"

// HPKECiphertext is the output of EncryptWithLabel (RFC 9420 §7.6).
type HPKECiphertext struct {
	KEMOutput  []byte
	Ciphertext []byte
}

func (c *HPKECiphertext) marshal(b *cryptobyte.Builder) {
	addOpaque(b, "kem_output", c.KEMOutput, MaxKeySize)
	addOpaque(b, "ciphertext", c.Ciphertext, maxOpaque)
}

func (c *HPKECiphertext) unmarshal(d *decoder) {
	c.KEMOutput = d.opaque("kem_output", MaxKeySize)
	c.Ciphertext = d.opaque("ciphertext", maxOpaque)
}

// UpdatePathNode carries a new parent-node key and its path secret
// encrypted to each node of the copath child's resolution (§7.6).
type UpdatePathNode struct {
	EncryptionKey       HPKEPublicKey
	EncryptedPathSecret []HPKECiphertext
}

func (n *UpdatePathNode) marshal(b *cryptobyte.Builder) {
	addOpaque(b, "update_path_node.encryption_key", n.EncryptionKey, MaxKeySize)
	addList(b, "update_path_node.encrypted_path_secret", n.EncryptedPathSecret, MaxTreeLeaves, func(b *cryptobyte.Builder, c *HPKECiphertext) {
		c.marshal(b)
	})
}

func (n *UpdatePathNode) unmarshal(d *decoder) {
	n.EncryptionKey = d.opaque("update_path_node.encryption_key", MaxKeySize)
	n.EncryptedPathSecret = readList(d, "update_path_node.encrypted_path_secret", MaxTreeLeaves, func(d *decoder) HPKECiphertext {
		var c HPKECiphertext
		c.unmarshal(d)
		return c
	})
}

// UpdatePath is a committer's new leaf and the new keys of its filtered
// direct path (§7.6).
type UpdatePath struct {
	LeafNode LeafNode
	Nodes    []UpdatePathNode
}

func (p *UpdatePath) marshal(b *cryptobyte.Builder) {
	p.LeafNode.marshal(b)
	addList(b, "update_path.nodes", p.Nodes, MaxPathLength, func(b *cryptobyte.Builder, n *UpdatePathNode) {
		n.marshal(b)
	})
}

func (p *UpdatePath) unmarshal(d *decoder) {
	p.LeafNode.unmarshal(d)
	p.Nodes = readList(d, "update_path.nodes", MaxPathLength, func(d *decoder) UpdatePathNode {
		var n UpdatePathNode
		n.unmarshal(d)
		return n
	})
}

// Encode returns the §7.6 encoding of p.
func (p *UpdatePath) Encode() ([]byte, error) { return encode("UpdatePath", p.marshal) }

// DecodeUpdatePath parses an UpdatePath.
func DecodeUpdatePath(b []byte) (*UpdatePath, error) {
	p := new(UpdatePath)
	if err := decode("UpdatePath", b, p.unmarshal); err != nil {
		return nil, err
	}
	return p, nil
}
