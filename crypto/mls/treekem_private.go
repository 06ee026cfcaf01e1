package mls

// The private half of a member's ratchet tree state (RFC 9420 §4.2, §7.4):
// the HPKE private keys it holds for its own leaf and for nodes on its
// direct path. Kept apart from the public tree so the public tree can be
// shared, encoded and logged without secrets.

import (
	"runtime"

	"github.com/moat-im/moat/crypto/mls/internal/suite"
	"github.com/moat-im/moat/crypto/mls/internal/treemath"
)

// nodeKey is the private key a member holds for one node, with the public
// key it belongs to so a key for a node that has since changed is never
// used.
type nodeKey struct {
	node NodeIndex
	priv suite.HPKEPrivateKey
	pub  HPKEPublicKey
}

// privateTree is one member's private tree state. It never prints its
// keys; Zero overwrites them (best effort).
type privateTree struct {
	suite *suite.Suite
	leaf  LeafIndex
	keys  []nodeKey // the leaf's key and keys of nodes on its direct path
}

func (p *privateTree) String() string   { return "mls.privateTree(REDACTED)" }
func (p *privateTree) GoString() string { return "mls.privateTree(REDACTED)" }

// newPrivateTree starts the private state of the member at leaf with the
// private key of its leaf's encryption key (copied; the caller keeps and
// wipes its own).
func newPrivateTree(s *suite.Suite, leaf LeafIndex, leafPriv HPKEPrivateKey, leafPub HPKEPublicKey) *privateTree {
	p := &privateTree{suite: s, leaf: leaf}
	p.set(leaf.Node(), append(suite.HPKEPrivateKey(nil), leafPriv...), leafPub)
	return p
}

// clone returns a deep copy.
func (p *privateTree) clone() *privateTree {
	c := &privateTree{suite: p.suite, leaf: p.leaf, keys: make([]nodeKey, len(p.keys))}
	for i, k := range p.keys {
		c.keys[i] = nodeKey{node: k.node, priv: append(suite.HPKEPrivateKey(nil), k.priv...), pub: k.pub}
	}
	return c
}

// Zero overwrites every private key (best effort: copies made by the
// primitives underneath are out of reach) and forgets them.
func (p *privateTree) Zero() {
	for i := range p.keys {
		suite.Zero(p.keys[i].priv)
	}
	p.keys = nil
}

// set records priv as the key of node x, replacing any older one.
func (p *privateTree) set(x NodeIndex, priv suite.HPKEPrivateKey, pub HPKEPublicKey) {
	for i := range p.keys {
		if p.keys[i].node == x {
			suite.Zero(p.keys[i].priv)
			p.keys[i].priv, p.keys[i].pub = priv, pub
			return
		}
	}
	p.keys = append(p.keys, nodeKey{node: x, priv: priv, pub: pub})
}

// keyFor returns the private key for node x if this member holds the one
// matching the public key now in t.
func (p *privateTree) keyFor(t *publicTree, x NodeIndex) (suite.HPKEPrivateKey, bool) {
	if !treemath.InTree(x, t.nLeaves) {
		return nil, false
	}
	pub := t.encryptionKey(x)
	if pub == nil {
		return nil, false
	}
	for _, k := range p.keys {
		if k.node == x && string(k.pub) == string(pub) {
			return k.priv, true
		}
	}
	return nil, false
}

// prune drops (and zeroes) every key whose node is gone from t, blank, or
// holds another public key: after Update, Remove, truncation or a merged
// UpdatePath (§7.5: delete outdated key material).
func (p *privateTree) prune(t *publicTree) {
	kept := p.keys[:0]
	for _, k := range p.keys {
		if treemath.InTree(k.node, t.nLeaves) && string(t.encryptionKey(k.node)) == string(k.pub) {
			kept = append(kept, k)
			continue
		}
		suite.Zero(k.priv)
	}
	clear(p.keys[len(kept):])
	p.keys = kept
}

// setPathSecret derives the key pair of node x from its path secret
// (§7.4: node_secret = DeriveSecret(path_secret, "node"), then
// DeriveKeyPair) and records it, after checking the public key is the one
// in t.
func (p *privateTree) setPathSecret(t *publicTree, x NodeIndex, pathSecret []byte) error {
	priv, pub, err := deriveNodeKeyPair(p.suite, pathSecret)
	if err != nil {
		return err
	}
	if !treemath.InTree(x, t.nLeaves) || string(t.encryptionKey(x)) != string(pub) {
		suite.Zero(priv)
		return treeErr("setting path secret", x, ErrPathKeyMismatch)
	}
	p.set(x, priv, HPKEPublicKey(pub))
	return nil
}

// deriveNodeKeyPair is §7.4's node_secret = DeriveSecret(path_secret,
// "node"); node_priv, node_pub = KEM.DeriveKeyPair(node_secret).
func deriveNodeKeyPair(s *suite.Suite, pathSecret []byte) (suite.HPKEPrivateKey, suite.HPKEPublicKey, error) {
	nodeSecret, err := s.DeriveSecret(pathSecret, "node")
	if err != nil {
		return nil, nil, err
	}
	defer suite.Zero(nodeSecret)
	return s.DeriveKeyPair(nodeSecret)
}

// deriveNodeKeyPairs is deriveNodeKeyPair for each path secret, on all
// cores: the path secrets of an UpdatePath chain cheaply, but each key
// pair costs a KEM key generation (for X-Wing an ML-KEM-768 one), and
// they are independent. On error (the first by index) nothing is returned.
func deriveNodeKeyPairs(s *suite.Suite, secrets [][]byte) ([]suite.HPKEPrivateKey, []suite.HPKEPublicKey, error) {
	privs := make([]suite.HPKEPrivateKey, len(secrets))
	pubs := make([]suite.HPKEPublicKey, len(secrets))
	errs := make([]error, len(secrets))
	parallelFor(len(secrets), runtime.GOMAXPROCS(0), func(i int, _ *[]byte) {
		privs[i], pubs[i], errs[i] = deriveNodeKeyPair(s, secrets[i])
	})
	for _, err := range errs {
		if err != nil {
			for _, k := range privs {
				suite.Zero(k)
			}
			return nil, nil, err
		}
	}
	return privs, pubs, nil
}

// setPathSecretsFrom is the joiner's step of §12.4.3.1: given the path
// secret of node x (the lowest common ancestor of its leaf and the
// committer's), derive the keys of x and of every non-blank node above it,
// each path secret the DeriveSecret(., "path") of the one below. The nodes
// so reached are exactly the rest of the committer's filtered direct path;
// each derived public key must match the tree. It returns the commit
// secret, DeriveSecret(., "path") of the last path secret.
func (p *privateTree) setPathSecretsFrom(t *publicTree, x NodeIndex, pathSecret []byte) ([]byte, error) {
	if !treemath.InTree(x, t.nLeaves) || t.blank(x) {
		return nil, treeErr("setting path secret", x, ErrPathKeyMismatch)
	}
	ps := append([]byte(nil), pathSecret...)
	r := t.root()
	for {
		if !t.blank(x) {
			if err := p.setPathSecret(t, x, ps); err != nil {
				suite.Zero(ps)
				return nil, err
			}
			next, err := p.suite.DeriveSecret(ps, "path")
			suite.Zero(ps)
			if err != nil {
				return nil, err
			}
			ps = next
		}
		if x == r {
			return ps, nil
		}
		x, _ = treemath.Parent(x, t.nLeaves)
	}
}
