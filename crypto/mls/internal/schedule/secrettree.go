package schedule

import (
	"errors"
	"fmt"

	"github.com/moat-im/moat/crypto/mls/internal/suite"
	"github.com/moat-im/moat/crypto/mls/internal/treemath"
)

// Secret tree bounds (docs/spec/mls-profile.md "Maximum generation skip").
const (
	// MaxGenerationSkip is how far ahead of a sender's ratchet a received
	// generation may be. A message whose generation is more than this
	// beyond the next expected one is rejected before any key derivation,
	// so a forged generation costs no KDF work.
	MaxGenerationSkip = 1024

	// OutOfOrderWindow is how many skipped keys one ratchet keeps for
	// messages that arrive late. Keys for older skipped generations are
	// never derived (when the skip is larger than the window) or are
	// evicted, and their messages fail with ErrKeyConsumed.
	OutOfOrderWindow = 64

	// MaxRetainedKeys bounds the skipped keys one secret tree keeps over
	// all ratchets together. Past it, newly skipped keys are not kept.
	MaxRetainedKeys = 4096
)

// Kind selects one of a sender's two ratchets (§9).
type Kind uint8

const (
	Handshake   Kind = iota // proposals and commits
	Application             // application messages
)

func (k Kind) String() string {
	switch k {
	case Handshake:
		return "handshake"
	case Application:
		return "application"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Errors of the secret tree.
var (
	// ErrKeyConsumed: the key for this generation was already used,
	// deleted, or fell out of the out-of-order window.
	ErrKeyConsumed = errors.New("mls/schedule: generation already consumed or out of window")
	// ErrGenerationTooFar matches a *GenerationError.
	ErrGenerationTooFar = errors.New("mls/schedule: generation too far ahead")
	// ErrGenerationExhausted: a ratchet reached generation 2^32-1.
	ErrGenerationExhausted = errors.New("mls/schedule: ratchet generations exhausted")
	// ErrLeafOutOfRange: the leaf is not in the tree.
	ErrLeafOutOfRange = errors.New("mls/schedule: leaf index out of range")
	// ErrStalePending: the tree changed between Prepare and Commit.
	ErrStalePending = errors.New("mls/schedule: pending key is stale")
	// ErrInvalidTreeSize: the leaf count is not a power of two.
	ErrInvalidTreeSize = errors.New("mls/schedule: leaf count is not a power of two")
	// ErrInvalidKind: not Handshake or Application.
	ErrInvalidKind = errors.New("mls/schedule: invalid ratchet kind")
)

// GenerationError reports a generation beyond MaxGenerationSkip. errors.Is
// (err, ErrGenerationTooFar) holds for it.
type GenerationError struct {
	Leaf       treemath.LeafIndex
	Kind       Kind
	Generation uint32 // received
	Next       uint32 // next expected
}

func (e *GenerationError) Error() string {
	return fmt.Sprintf("mls/schedule: %v generation %d of leaf %d is more than %d beyond %d",
		e.Kind, e.Generation, e.Leaf, MaxGenerationSkip, e.Next)
}

// Is makes errors.Is(err, ErrGenerationTooFar) true.
func (e *GenerationError) Is(target error) bool { return target == ErrGenerationTooFar }

// keyNonce is one retained (skipped) generation's key and nonce.
type keyNonce struct {
	generation uint32
	key, nonce []byte
}

// ratchet is one hash ratchet (§9.1): secret is
// ratchet_secret_[N]_[next]. skipped holds keys of skipped generations
// below next, in increasing generation order. Both are treated as
// immutable once stored: updates build new values, so a Pending can be
// prepared without touching the tree.
type ratchet struct {
	secret  []byte
	next    uint32
	skipped []keyNonce
}

type leafRatchets struct {
	r [2]ratchet // indexed by Kind
}

// SecretTree is the secret tree of one epoch (§9) with the hash ratchets
// of every leaf. It derives node secrets lazily and deletes every secret
// as soon as it is consumed (§9.2): a parent's secret once both children
// are derived, a leaf's once its two ratchets are initialised, a ratchet
// secret once the next one is derived, and a key once it is used.
//
// Reading a key for a received message is two-phase: Prepare computes the
// key without changing the tree; Commit, called only after the message
// decrypted and verified, deletes what was consumed. A message that fails
// leaves the tree as it was.
//
// A SecretTree is not safe for concurrent use.
type SecretTree struct {
	suite   *suite.Suite
	nLeaves uint32
	// nodes holds the unconsumed node secrets (at most one per root-leaf
	// path for leaves not yet initialised, plus siblings derived on the
	// way).
	nodes    map[treemath.NodeIndex][]byte
	leaves   map[treemath.LeafIndex]*leafRatchets
	retained int    // total len(skipped) over all ratchets
	version  uint64 // bumped by every mutation; guards Pending
	dead     bool
	// derivations counts KDF calls made by Prepare (tests check bounds
	// are enforced before any).
	derivations uint64
}

// NewSecretTree returns the secret tree of a tree with nLeaves leaves (a
// power of two, as for the ratchet tree, §4.1) rooted at encryptionSecret.
// It copies encryptionSecret; the caller should then drop its copy
// (Epoch.ConsumeEncryptionSecret).
func NewSecretTree(s *suite.Suite, encryptionSecret []byte, nLeaves uint32) (*SecretTree, error) {
	if nLeaves == 0 || nLeaves > treemath.MaxLeaves || !treemath.IsPowerOfTwo(nLeaves) {
		return nil, ErrInvalidTreeSize
	}
	if len(encryptionSecret) != s.Nh() {
		return nil, ErrSecretLength
	}
	return &SecretTree{
		suite:   s,
		nLeaves: nLeaves,
		nodes:   map[treemath.NodeIndex][]byte{treemath.Root(nLeaves): clone(encryptionSecret)},
		leaves:  make(map[treemath.LeafIndex]*leafRatchets),
	}, nil
}

// Leaves returns the tree's leaf count.
func (t *SecretTree) Leaves() uint32 { return t.nLeaves }

// RetainedKeys returns how many skipped keys the tree holds.
func (t *SecretTree) RetainedKeys() int { return t.retained }

// Pending is a key computed by Prepare and not yet consumed. Pass it to
// SecretTree.Commit once the message it decrypts has been verified, or
// call Discard.
type Pending struct {
	tree       *SecretTree
	version    uint64
	leaf       treemath.LeafIndex
	kind       Kind
	generation uint32
	key, nonce []byte

	// Changes to apply on Commit.
	deriveLeaf bool                          // the leaf's ratchets are new
	fromNode   treemath.NodeIndex            // consumed node secret
	siblings   map[treemath.NodeIndex][]byte // node secrets derived on the way
	leafR      leafRatchets                  // the leaf's ratchets after Commit
	// fresh lists the secrets Prepare derived that the tree does not
	// hold yet: Discard zeroes them, Commit hands them to the tree.
	fresh [][]byte
}

// Key returns the AEAD key (AEAD.Nk bytes) for the message.
func (p *Pending) Key() []byte { return p.key }

// Nonce returns the ratchet nonce (AEAD.Nn bytes), before the reuse guard
// is applied (§6.3.1).
func (p *Pending) Nonce() []byte { return p.nonce }

// Generation returns the generation the key belongs to.
func (p *Pending) Generation() uint32 { return p.generation }

// Discard overwrites the pending key, nonce and every secret Prepare
// derived. The tree is unchanged.
func (p *Pending) Discard() {
	for _, b := range p.fresh {
		suite.Zero(b)
	}
	p.fresh = nil
	p.release()
}

// release zeroes the key and nonce and detaches p from its tree.
func (p *Pending) release() {
	suite.Zero(p.key)
	suite.Zero(p.nonce)
	p.key, p.nonce, p.tree = nil, nil, nil
}

func (t *SecretTree) check(leaf treemath.LeafIndex, kind Kind) error {
	if t.dead {
		return ErrDestroyed
	}
	if uint32(leaf) >= t.nLeaves {
		return ErrLeafOutOfRange
	}
	if kind != Handshake && kind != Application {
		return ErrInvalidKind
	}
	return nil
}

// leafState returns the ratchets of leaf, deriving them (without storing
// anything) from the nearest stored ancestor secret if the leaf has not
// been initialised: §9's
//
//	tree_node_[left(N)]_secret  = ExpandWithLabel(., "tree", "left", KDF.Nh)
//	tree_node_[right(N)]_secret = ExpandWithLabel(., "tree", "right", KDF.Nh)
//	handshake_ratchet_secret_[N]_[0]   = ExpandWithLabel(., "handshake", "", KDF.Nh)
//	application_ratchet_secret_[N]_[0] = ExpandWithLabel(., "application", "", KDF.Nh)
func (t *SecretTree) leafState(p *Pending) (leafRatchets, error) {
	if lr, ok := t.leaves[p.leaf]; ok {
		return *lr, nil
	}
	target := p.leaf.Node()
	// Walk from the root towards the leaf; the deepest stored secret on the
	// path is where derivation starts. Deeper nodes on the path are never
	// stored while an ancestor is, so the first hit from the leaf upward
	// is found by walking down and remembering the last stored node.
	path := make([]treemath.NodeIndex, 0, 32)
	x := treemath.Root(t.nLeaves)
	start, found := treemath.NodeIndex(0), false
	for {
		path = append(path, x)
		if _, ok := t.nodes[x]; ok {
			start, found, path = x, true, path[:0]
			path = append(path, x)
		}
		if x == target {
			break
		}
		l, r := treemath.Children(x)
		if target < x {
			x = l
		} else {
			x = r
		}
	}
	if !found {
		// Every secret on the path was consumed but the leaf has no
		// ratchets: cannot happen, since a consumed leaf keeps its
		// ratchets until Destroy.
		return leafRatchets{}, ErrKeyConsumed
	}
	s := t.suite
	secret := t.nodes[start]
	owned := false
	p.siblings = make(map[treemath.NodeIndex][]byte, len(path))
	for i := 0; i+1 < len(path); i++ {
		node, child := path[i], path[i+1]
		l, r := treemath.Children(node)
		t.derivations += 2
		left, err := s.ExpandWithLabel(secret, "tree", []byte("left"), s.Nh())
		if err != nil {
			return leafRatchets{}, err
		}
		right, err := s.ExpandWithLabel(secret, "tree", []byte("right"), s.Nh())
		if err != nil {
			return leafRatchets{}, err
		}
		if owned {
			suite.Zero(secret)
		}
		if child == l {
			secret, p.siblings[r] = left, right
			p.fresh = append(p.fresh, right)
		} else {
			secret, p.siblings[l] = right, left
			p.fresh = append(p.fresh, left)
		}
		owned = true
	}
	var lr leafRatchets
	var err error
	t.derivations += 2
	if lr.r[Handshake].secret, err = s.ExpandWithLabel(secret, "handshake", nil, s.Nh()); err != nil {
		return leafRatchets{}, err
	}
	if lr.r[Application].secret, err = s.ExpandWithLabel(secret, "application", nil, s.Nh()); err != nil {
		return leafRatchets{}, err
	}
	if owned {
		suite.Zero(secret)
	}
	p.fresh = append(p.fresh, lr.r[Handshake].secret, lr.r[Application].secret)
	p.deriveLeaf, p.fromNode = true, start
	return lr, nil
}

// keyAndNonce derives ratchet_key_[N]_[j] and ratchet_nonce_[N]_[j] from
// ratchet_secret_[N]_[j] (§9.1).
func (t *SecretTree) keyAndNonce(secret []byte, j uint32) (key, nonce []byte, err error) {
	s := t.suite
	t.derivations += 2
	if nonce, err = s.DeriveTreeSecret(secret, "nonce", j, s.Nn()); err != nil {
		return nil, nil, err
	}
	if key, err = s.DeriveTreeSecret(secret, "key", j, s.Nk()); err != nil {
		return nil, nil, err
	}
	return key, nonce, nil
}

// advance derives ratchet_secret_[N]_[j+1] from ratchet_secret_[N]_[j].
func (t *SecretTree) advance(secret []byte, j uint32) ([]byte, error) {
	t.derivations++
	return t.suite.DeriveTreeSecret(secret, "secret", j, t.suite.Nh())
}

// Prepare computes the key and nonce of the given generation of leaf's
// ratchet for a received message, without changing the tree. A generation
// below the ratchet's position is served from the retained skipped keys
// (or fails with ErrKeyConsumed); one more than MaxGenerationSkip ahead
// fails with a *GenerationError before any key derivation.
func (t *SecretTree) Prepare(leaf treemath.LeafIndex, kind Kind, generation uint32) (*Pending, error) {
	if err := t.check(leaf, kind); err != nil {
		return nil, err
	}
	p := &Pending{tree: t, version: t.version, leaf: leaf, kind: kind, generation: generation}
	// Bounds first: no KDF work for a generation we will refuse.
	if lr, ok := t.leaves[leaf]; ok {
		r := &lr.r[kind]
		if generation < r.next {
			return t.prepareSkipped(p, *lr, generation)
		}
		if generation-r.next > MaxGenerationSkip {
			return nil, &GenerationError{leaf, kind, generation, r.next}
		}
		if r.secret == nil {
			return nil, ErrGenerationExhausted
		}
	} else if generation > MaxGenerationSkip {
		return nil, &GenerationError{leaf, kind, generation, 0}
	}

	lr, err := t.leafState(p)
	if err != nil {
		return nil, err
	}
	r := lr.r[kind]
	// Ratchet forward from r.next to generation, keeping the keys of the
	// last OutOfOrderWindow skipped generations (within MaxRetainedKeys).
	secret := r.secret
	// A freshly derived leaf's ratchet secret is ours to consume; an
	// existing one belongs to the tree until Commit.
	owned := p.deriveLeaf
	var newSkipped []keyNonce
	keepFrom := uint32(0)
	if generation-r.next > OutOfOrderWindow {
		keepFrom = generation - OutOfOrderWindow
	}
	budget := MaxRetainedKeys - t.retained
	for j := r.next; j < generation; j++ {
		if j >= keepFrom && budget > 0 {
			k, n, err := t.keyAndNonce(secret, j)
			if err != nil {
				return nil, err
			}
			newSkipped = append(newSkipped, keyNonce{j, k, n})
			p.fresh = append(p.fresh, k, n)
			budget--
		}
		next, err := t.advance(secret, j)
		if err != nil {
			return nil, err
		}
		if owned {
			suite.Zero(secret)
		}
		secret, owned = next, true
	}
	if p.key, p.nonce, err = t.keyAndNonce(secret, generation); err != nil {
		return nil, err
	}
	var nextSecret []byte
	if generation < ^uint32(0) {
		if nextSecret, err = t.advance(secret, generation); err != nil {
			return nil, err
		}
		p.fresh = append(p.fresh, nextSecret)
	} // else: the ratchet is exhausted; nextSecret stays nil.
	if owned {
		suite.Zero(secret)
	}
	if len(newSkipped) > 0 {
		all := make([]keyNonce, 0, len(r.skipped)+len(newSkipped))
		all = append(append(all, r.skipped...), newSkipped...)
		r.skipped = trimWindow(all, generation)
	}
	r.secret, r.next = nextSecret, generation+1
	if nextSecret == nil {
		r.next = generation // exhausted: nothing at or above is derivable
	}
	lr.r[kind] = r
	p.leafR = lr
	return p, nil
}

// trimWindow drops retained keys older than OutOfOrderWindow generations
// before gen. The dropped entries are zeroed on Commit (they are shared
// with the current tree until then), see Commit.
func trimWindow(skipped []keyNonce, gen uint32) []keyNonce {
	i := 0
	for i < len(skipped) && gen-skipped[i].generation > OutOfOrderWindow {
		i++
	}
	return skipped[i:]
}

func (t *SecretTree) prepareSkipped(p *Pending, lr leafRatchets, generation uint32) (*Pending, error) {
	r := lr.r[p.kind]
	for i, kn := range r.skipped {
		if kn.generation == generation {
			p.key, p.nonce = clone(kn.key), clone(kn.nonce)
			rest := make([]keyNonce, 0, len(r.skipped)-1)
			rest = append(append(rest, r.skipped[:i]...), r.skipped[i+1:]...)
			r.skipped = rest
			lr.r[p.kind] = r
			p.leafR = lr
			return p, nil
		}
	}
	return nil, ErrKeyConsumed
}

// Commit applies a Pending: it deletes the consumed key, nonce, ratchet
// and node secrets and stores the ratchet's new position and any skipped
// keys. It fails with ErrStalePending if the tree changed since Prepare.
// The pending key and nonce are overwritten: the caller must be done with
// them.
func (t *SecretTree) Commit(p *Pending) error {
	if t.dead {
		return ErrDestroyed
	}
	if p.tree != t || p.version != t.version {
		return ErrStalePending
	}
	old, had := t.leaves[p.leaf]
	if p.deriveLeaf {
		suite.Zero(t.nodes[p.fromNode])
		delete(t.nodes, p.fromNode)
		for x, s := range p.siblings {
			t.nodes[x] = s
		}
	}
	nr := p.leafR
	if had {
		// Zero what the new state no longer references.
		for k := range old.r {
			o, n := &old.r[k], &nr.r[k]
			if o.secret != nil && (n.secret == nil || &o.secret[0] != &n.secret[0]) {
				suite.Zero(o.secret)
			}
			zeroDropped(o.skipped, n.skipped)
		}
		t.retained -= len(old.r[0].skipped) + len(old.r[1].skipped)
	}
	t.retained += len(nr.r[0].skipped) + len(nr.r[1].skipped)
	t.leaves[p.leaf] = &nr
	t.version++
	p.fresh = nil // now owned by the tree
	p.release()
	return nil
}

// zeroDropped zeroes the entries of before that are not in after.
func zeroDropped(before, after []keyNonce) {
	kept := make(map[uint32]bool, len(after))
	for _, kn := range after {
		kept[kn.generation] = true
	}
	for _, kn := range before {
		if !kept[kn.generation] {
			suite.Zero(kn.key)
			suite.Zero(kn.nonce)
		}
	}
}

// NextSend returns the key and nonce for the next message leaf sends on
// its own ratchet and consumes them at once (the sender never needs them
// again). The caller applies the reuse guard to the nonce (§6.3.1) and
// should zero key and nonce after use.
func (t *SecretTree) NextSend(leaf treemath.LeafIndex, kind Kind) (generation uint32, key, nonce []byte, err error) {
	if err := t.check(leaf, kind); err != nil {
		return 0, nil, nil, err
	}
	generation = 0
	if lr, ok := t.leaves[leaf]; ok {
		if lr.r[kind].secret == nil {
			return 0, nil, nil, ErrGenerationExhausted
		}
		generation = lr.r[kind].next
	}
	p, err := t.Prepare(leaf, kind, generation)
	if err != nil {
		return 0, nil, nil, err
	}
	key, nonce = clone(p.key), clone(p.nonce)
	if err := t.Commit(p); err != nil {
		return 0, nil, nil, err
	}
	return generation, key, nonce, nil
}

// Destroy overwrites every secret in the tree; the tree is unusable
// afterwards.
func (t *SecretTree) Destroy() {
	for x, s := range t.nodes {
		suite.Zero(s)
		delete(t.nodes, x)
	}
	for l, lr := range t.leaves {
		for k := range lr.r {
			suite.Zero(lr.r[k].secret)
			zeroDropped(lr.r[k].skipped, nil)
		}
		delete(t.leaves, l)
	}
	t.retained = 0
	t.dead = true
	t.version++
}

// String redacts the secrets.
func (t SecretTree) String() string {
	return fmt.Sprintf("schedule.SecretTree{leaves: %d, REDACTED}", t.nLeaves)
}

// GoString redacts the secrets for %#v.
func (t SecretTree) GoString() string { return t.String() }

// String redacts the key.
func (p Pending) String() string {
	return fmt.Sprintf("schedule.Pending{leaf: %d, %v, generation: %d, REDACTED}", p.leaf, p.kind, p.generation)
}

// GoString redacts the key for %#v.
func (p Pending) GoString() string { return p.String() }

// SenderDataKeyNonce derives the key and nonce that protect a
// PrivateMessage's sender data (§6.3.2):
//
//	ciphertext_sample = ciphertext[0..KDF.Nh-1]
//	sender_data_key   = ExpandWithLabel(sender_data_secret, "key",
//	                                    ciphertext_sample, AEAD.Nk)
//	sender_data_nonce = ExpandWithLabel(sender_data_secret, "nonce",
//	                                    ciphertext_sample, AEAD.Nn)
//
// A ciphertext shorter than KDF.Nh is used whole.
func SenderDataKeyNonce(s *suite.Suite, senderDataSecret, ciphertext []byte) (key, nonce []byte, err error) {
	sample := ciphertext
	if len(sample) > s.Nh() {
		sample = sample[:s.Nh()]
	}
	if key, err = s.ExpandWithLabel(senderDataSecret, labelKey, sample, s.Nk()); err != nil {
		return nil, nil, err
	}
	if nonce, err = s.ExpandWithLabel(senderDataSecret, labelNonce, sample, s.Nn()); err != nil {
		return nil, nil, err
	}
	return key, nonce, nil
}
