package vmap

// Stored nodes (docs/spec/vmap.md §Updates and storage, informative). A node is
// immutable once written: an update writes new nodes under the new epoch's
// version and leaves older ones untouched, so every past root stays
// readable.

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
)

// NodeKind says what a node or a child reference is.
type NodeKind uint8

const (
	// KindEmpty is an empty subtree. Only a root node may be empty.
	KindEmpty NodeKind = 0
	// KindLeaf is a leaf: a label and its commitment, stored at the highest
	// node whose subtree holds no other label.
	KindLeaf NodeKind = 1
	// KindInterior is an interior node, whose subtree holds two labels or
	// more.
	KindInterior NodeKind = 2
)

func (k NodeKind) String() string {
	switch k {
	case KindEmpty:
		return "empty"
	case KindLeaf:
		return "leaf"
	case KindInterior:
		return "interior"
	}
	return fmt.Sprintf("NodeKind(%d)", uint8(k))
}

// A Child is an interior node's reference to one of its children: what the
// child is, its hash, and the version (epoch) under which it is stored. An
// empty child is the zero Child.
type Child struct {
	Hash    Hash
	Version uint64
	Kind    NodeKind
}

// hash returns the child's hash when the child is at depth d.
func (c *Child) hash(d int) *Hash {
	if c.Kind == KindEmpty {
		return &emptyHashes[d]
	}
	return &c.Hash
}

// A Node is a stored map node: an empty root, a leaf, or an interior node
// holding references to its two children. Nodes are comparable values.
type Node struct {
	// a and b are the label and commitment of a leaf, or the hashes of the
	// left and right children of an interior node.
	a, b   [32]byte
	va, vb uint64   // interior: versions of the children
	kind   NodeKind // the node's kind
	ka, kb NodeKind // interior: kinds of the children
}

// NewLeaf returns a leaf node.
func NewLeaf(label Label, c Commitment) Node {
	return Node{kind: KindLeaf, a: label, b: c}
}

// NewInterior returns an interior node with the given children, which must
// not both be empty.
func NewInterior(left, right Child) Node {
	if left.Kind == KindEmpty {
		left = Child{}
	}
	if right.Kind == KindEmpty {
		right = Child{}
	}
	return Node{kind: KindInterior,
		a: left.Hash, va: left.Version, ka: left.Kind,
		b: right.Hash, vb: right.Version, kb: right.Kind}
}

// Kind returns the node's kind.
func (n *Node) Kind() NodeKind { return n.kind }

// Label returns a leaf's label.
func (n *Node) Label() Label { return n.a }

// Commitment returns a leaf's commitment.
func (n *Node) Commitment() Commitment { return n.b }

// Left returns an interior node's left child (bit 0).
func (n *Node) Left() Child { return Child{Hash: n.a, Version: n.va, Kind: n.ka} }

// Right returns an interior node's right child (bit 1).
func (n *Node) Right() Child { return Child{Hash: n.b, Version: n.vb, Kind: n.kb} }

// child returns the left child for bit 0 and the right child for bit 1.
func (n *Node) child(bit int) Child {
	if bit == 0 {
		return n.Left()
	}
	return n.Right()
}

// Hash returns the hash of the node when it sits at depth d.
func (n *Node) Hash(d int) Hash {
	switch n.kind {
	case KindLeaf:
		l, c := Label(n.a), Commitment(n.b)
		return leafHash(&l, &c)
	case KindInterior:
		l, r := n.Left(), n.Right()
		return interiorHash(l.hash(d+1), r.hash(d+1))
	}
	return emptyHashes[d]
}

// A NodeKey names a stored node: the version (epoch) that wrote it and its
// position, a depth and the first Depth bits of Path (the rest are zero).
type NodeKey struct {
	Version uint64
	Depth   uint16
	Path    Label
}

// RootKey returns the key of the root node of epoch. Every epoch writes its
// root node, changed or not.
func RootKey(epoch uint64) NodeKey { return NodeKey{Version: epoch} }

// Valid reports whether k is a well-formed key: Depth at most MaxDepth and
// no Path bit set at or past Depth.
func (k *NodeKey) Valid() bool {
	return k.Depth <= MaxDepth && k.Path.prefix(int(k.Depth)) == k.Path
}

// CompareNodeKeys orders keys by version, then depth, then path; it is the
// order of their binary encodings.
func CompareNodeKeys(a, b NodeKey) int {
	if c := cmp.Compare(a.Version, b.Version); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Depth, b.Depth); c != 0 {
		return c
	}
	return bytes.Compare(a.Path[:], b.Path[:])
}

func (k NodeKey) String() string {
	return fmt.Sprintf("%d/%d/%x", k.Version, k.Depth, k.Path[:(k.Depth+7)/8])
}

// A KeyedNode is a node and the key it is stored under.
type KeyedNode struct {
	Key  NodeKey
	Node Node
}

// A Batch is the output of one Update: every node created in Epoch, all
// under version Epoch, in strictly increasing key order, the root node
// first. A store commits a batch atomically.
type Batch struct {
	Epoch uint64
	Root  Hash // the map root of Epoch
	Nodes []KeyedNode
}

// Check verifies a batch's structure cheaply, for stores to call before
// committing: at least the root node, every key valid and of version Epoch,
// keys strictly increasing, the root node first and hashing to Root, empty
// nodes only at the root, and every leaf stored on its own label's path.
// It does not check that interior nodes reference existing children.
func (b *Batch) Check() error {
	if len(b.Nodes) == 0 || b.Nodes[0].Key != RootKey(b.Epoch) {
		return fmt.Errorf("%w: root node missing", ErrInvalidBatch)
	}
	if b.Nodes[0].Node.Hash(0) != b.Root {
		return fmt.Errorf("%w: root node does not hash to the root", ErrInvalidBatch)
	}
	for i := range b.Nodes {
		kn := &b.Nodes[i]
		if kn.Key.Version != b.Epoch || !kn.Key.Valid() {
			return fmt.Errorf("%w: node key %v in batch of epoch %d", ErrInvalidBatch, kn.Key, b.Epoch)
		}
		if i > 0 && CompareNodeKeys(b.Nodes[i-1].Key, kn.Key) >= 0 {
			return fmt.Errorf("%w: node keys out of order at %v", ErrInvalidBatch, kn.Key)
		}
		if err := kn.Node.check(); err != nil {
			return fmt.Errorf("%w: node %v: %v", ErrInvalidBatch, kn.Key, err)
		}
		switch kn.Node.kind {
		case KindEmpty:
			if i != 0 {
				return fmt.Errorf("%w: empty node %v below the root", ErrInvalidBatch, kn.Key)
			}
		case KindLeaf:
			if l := Label(kn.Node.a); l.prefix(int(kn.Key.Depth)) != kn.Key.Path {
				return fmt.Errorf("%w: leaf %v off its label's path", ErrInvalidBatch, kn.Key)
			}
		case KindInterior:
			if kn.Key.Depth >= MaxDepth || kn.Node.va > b.Epoch || kn.Node.vb > b.Epoch {
				return fmt.Errorf("%w: interior node %v", ErrInvalidBatch, kn.Key)
			}
		}
	}
	return nil
}

// check verifies the invariants NewLeaf and NewInterior establish.
func (n *Node) check() error {
	switch n.kind {
	case KindEmpty, KindLeaf:
		if n.va != 0 || n.vb != 0 || n.ka != 0 || n.kb != 0 || (n.kind == KindEmpty && (n.a != [32]byte{} || n.b != [32]byte{})) {
			return errNodeFields
		}
		return nil
	case KindInterior:
		if n.ka > KindInterior || n.kb > KindInterior || (n.ka == KindEmpty && n.kb == KindEmpty) {
			return errNodeFields
		}
		if (n.ka == KindEmpty && (n.a != [32]byte{} || n.va != 0)) || (n.kb == KindEmpty && (n.b != [32]byte{} || n.vb != 0)) {
			return errNodeFields
		}
		return nil
	}
	return errNodeFields
}

// Node and key encodings, for stores that keep bytes (docs/spec/vmap.md
// §Updates and storage):
//
//	struct {
//	    uint64 version; uint16 depth;
//	    opaque path[(depth+7)/8];       /* bits past depth are zero */
//	} NodeKey;
//
//	struct {
//	    NodeKind kind;                   /* empty(0), leaf(1), interior(2) */
//	    select (kind) {
//	        case empty:    struct {};
//	        case leaf:     opaque label[32]; opaque commitment[32];
//	        case interior: Child left; Child right;   /* not both empty */
//	    };
//	} Node;
//
//	struct {
//	    NodeKind kind;
//	    select (kind) {
//	        case empty:          struct {};
//	        case leaf, interior: uint64 version; opaque hash[32];
//	    };
//	} Child;

// MaxNodeKeySize and MaxNodeSize bound the encodings.
const (
	MaxNodeKeySize = 8 + 2 + LabelSize
	MaxNodeSize    = 1 + 2*(1+8+HashSize)
)

// AppendBinary appends the key's encoding to b. It panics on an invalid key.
func (k NodeKey) AppendBinary(b []byte) []byte {
	if !k.Valid() {
		panic("vmap: encoding invalid node key " + k.String())
	}
	b = binary.BigEndian.AppendUint64(b, k.Version)
	b = binary.BigEndian.AppendUint16(b, k.Depth)
	return append(b, k.Path[:(k.Depth+7)/8]...)
}

// ParseNodeKey decodes a key encoding strictly.
func ParseNodeKey(b []byte) (NodeKey, error) {
	var k NodeKey
	if len(b) < 10 {
		return k, ErrMalformedNode
	}
	k.Version = binary.BigEndian.Uint64(b)
	k.Depth = binary.BigEndian.Uint16(b[8:])
	if k.Depth > MaxDepth || len(b) != 10+(int(k.Depth)+7)/8 {
		return NodeKey{}, ErrMalformedNode
	}
	copy(k.Path[:], b[10:])
	if !k.Valid() {
		return NodeKey{}, ErrMalformedNode
	}
	return k, nil
}

// AppendBinary appends the node's encoding to b.
func (n Node) AppendBinary(b []byte) []byte {
	b = append(b, byte(n.kind))
	switch n.kind {
	case KindLeaf:
		b = append(b, n.a[:]...)
		b = append(b, n.b[:]...)
	case KindInterior:
		b = appendChild(b, n.Left())
		b = appendChild(b, n.Right())
	}
	return b
}

func appendChild(b []byte, c Child) []byte {
	b = append(b, byte(c.Kind))
	if c.Kind != KindEmpty {
		b = binary.BigEndian.AppendUint64(b, c.Version)
		b = append(b, c.Hash[:]...)
	}
	return b
}

// ParseNode decodes a node encoding strictly.
func ParseNode(b []byte) (Node, error) {
	if len(b) == 0 {
		return Node{}, ErrMalformedNode
	}
	var n Node
	n.kind = NodeKind(b[0])
	rest := b[1:]
	switch n.kind {
	case KindEmpty:
	case KindLeaf:
		if len(rest) != LabelSize+CommitmentSize {
			return Node{}, ErrMalformedNode
		}
		copy(n.a[:], rest)
		copy(n.b[:], rest[LabelSize:])
		rest = nil
	case KindInterior:
		var l, r Child
		var ok bool
		if l, rest, ok = parseChild(rest); !ok {
			return Node{}, ErrMalformedNode
		}
		if r, rest, ok = parseChild(rest); !ok {
			return Node{}, ErrMalformedNode
		}
		if l.Kind == KindEmpty && r.Kind == KindEmpty {
			return Node{}, ErrMalformedNode
		}
		n = NewInterior(l, r)
	default:
		return Node{}, ErrMalformedNode
	}
	if len(rest) != 0 {
		return Node{}, ErrMalformedNode
	}
	return n, nil
}

func parseChild(b []byte) (Child, []byte, bool) {
	if len(b) == 0 {
		return Child{}, nil, false
	}
	c := Child{Kind: NodeKind(b[0])}
	switch c.Kind {
	case KindEmpty:
		return c, b[1:], true
	case KindLeaf, KindInterior:
		if len(b) < 1+8+HashSize {
			return Child{}, nil, false
		}
		c.Version = binary.BigEndian.Uint64(b[1:])
		copy(c.Hash[:], b[9:])
		return c, b[1+8+HashSize:], true
	}
	return Child{}, nil, false
}
