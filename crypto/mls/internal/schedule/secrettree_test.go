package schedule

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/moat-im/moat/crypto/mls/internal/suite"
	"github.com/moat-im/moat/crypto/mls/internal/treemath"
)

func testSuite(t testing.TB) *suite.Suite {
	t.Helper()
	s, err := suite.Get(suite.XWING_CHACHA20POLY1305_SHA256_Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newTree(t testing.TB, s *suite.Suite, n uint32) (*SecretTree, []byte) {
	t.Helper()
	enc := bytes.Repeat([]byte{0x42}, s.Nh())
	tree, err := NewSecretTree(s, enc, n)
	if err != nil {
		t.Fatal(err)
	}
	return tree, enc
}

// refKey is a slow reference: it derives the key and nonce of (leaf, kind,
// generation) from the encryption secret alone, straight from §9.
func refKey(s *suite.Suite, enc []byte, n uint32, leaf treemath.LeafIndex, kind Kind, gen uint32) (key, nonce []byte) {
	secret := enc
	x, target := treemath.Root(n), leaf.Node()
	for x != target {
		l, r := treemath.Children(x)
		if target < x {
			secret, _ = s.ExpandWithLabel(secret, "tree", []byte("left"), s.Nh())
			x = l
		} else {
			secret, _ = s.ExpandWithLabel(secret, "tree", []byte("right"), s.Nh())
			x = r
		}
	}
	label := "handshake"
	if kind == Application {
		label = "application"
	}
	secret, _ = s.ExpandWithLabel(secret, label, nil, s.Nh())
	for j := uint32(0); j < gen; j++ {
		secret, _ = s.DeriveTreeSecret(secret, "secret", j, s.Nh())
	}
	key, _ = s.DeriveTreeSecret(secret, "key", gen, s.Nk())
	nonce, _ = s.DeriveTreeSecret(secret, "nonce", gen, s.Nn())
	return key, nonce
}

// snapshot is a deep copy of everything in a tree, for "state unchanged"
// checks.
type snapshot struct {
	Nodes    map[treemath.NodeIndex]string
	Leaves   map[treemath.LeafIndex]string
	Retained int
	Version  uint64
	Dead     bool
}

func snap(t *SecretTree) snapshot {
	sn := snapshot{Nodes: map[treemath.NodeIndex]string{}, Leaves: map[treemath.LeafIndex]string{},
		Retained: t.retained, Version: t.version, Dead: t.dead}
	for x, s := range t.nodes {
		sn.Nodes[x] = hex.EncodeToString(s)
	}
	for l, lr := range t.leaves {
		var b strings.Builder
		for k, r := range lr.r {
			fmt.Fprintf(&b, "%d:%x/%d[", k, r.secret, r.next)
			for _, kn := range r.skipped {
				fmt.Fprintf(&b, "%d:%x:%x,", kn.generation, kn.key, kn.nonce)
			}
			b.WriteString("]")
		}
		sn.Leaves[l] = b.String()
	}
	return sn
}

func mustReceive(t *testing.T, tree *SecretTree, leaf treemath.LeafIndex, kind Kind, gen uint32) (key, nonce []byte) {
	t.Helper()
	p, err := tree.Prepare(leaf, kind, gen)
	if err != nil {
		t.Fatalf("Prepare(%d, %v, %d): %v", leaf, kind, gen, err)
	}
	key, nonce = bytes.Clone(p.Key()), bytes.Clone(p.Nonce())
	if err := tree.Commit(p); err != nil {
		t.Fatal(err)
	}
	return key, nonce
}

func TestSecretTreeMatchesReference(t *testing.T) {
	s := testSuite(t)
	for _, n := range []uint32{1, 2, 4, 16} {
		tree, enc := newTree(t, s, n)
		for leaf := treemath.LeafIndex(0); uint32(leaf) < n; leaf++ {
			for _, kind := range []Kind{Application, Handshake} {
				for _, gen := range []uint32{0, 1, 5, 6} {
					key, nonce := mustReceive(t, tree, leaf, kind, gen)
					rk, rn := refKey(s, enc, n, leaf, kind, gen)
					if !bytes.Equal(key, rk) || !bytes.Equal(nonce, rn) {
						t.Fatalf("n=%d leaf %d %v gen %d: differs from reference", n, leaf, kind, gen)
					}
				}
			}
		}
		// Every leaf is initialised: every node secret has been consumed.
		if len(tree.nodes) != 0 {
			t.Errorf("n=%d: %d node secrets left after initialising every leaf", n, len(tree.nodes))
		}
	}
}

func TestSenderReceiverAgree(t *testing.T) {
	s := testSuite(t)
	sender, _ := newTree(t, s, 8)
	receiver, _ := newTree(t, s, 8)
	for i := range 20 {
		kind := Kind(i % 2)
		gen, key, nonce, err := sender.NextSend(5, kind)
		if err != nil {
			t.Fatal(err)
		}
		if gen != uint32(i/2) {
			t.Fatalf("send %d: generation %d", i, gen)
		}
		rkey, rnonce := mustReceive(t, receiver, 5, kind, gen)
		if !bytes.Equal(key, rkey) || !bytes.Equal(nonce, rnonce) {
			t.Fatalf("send %d: receiver key differs", i)
		}
	}
}

func TestOutOfOrder(t *testing.T) {
	s := testSuite(t)
	tree, enc := newTree(t, s, 4)
	order := []uint32{5, 3, 4, 0, 2, 1, 7, 6}
	for _, g := range order {
		key, _ := mustReceive(t, tree, 2, Application, g)
		rk, _ := refKey(s, enc, 4, 2, Application, g)
		if !bytes.Equal(key, rk) {
			t.Fatalf("gen %d: wrong key", g)
		}
	}
	if tree.RetainedKeys() != 0 {
		t.Errorf("%d keys retained after every generation was used", tree.RetainedKeys())
	}
	// Replays of consumed generations fail.
	for _, g := range order {
		before := snap(tree)
		if _, err := tree.Prepare(2, Application, g); err != ErrKeyConsumed {
			t.Errorf("replay of gen %d: %v", g, err)
		}
		if !reflect.DeepEqual(before, snap(tree)) {
			t.Fatal("failed Prepare changed the tree")
		}
	}
}

func TestOutOfOrderWindow(t *testing.T) {
	s := testSuite(t)
	tree, _ := newTree(t, s, 2)
	const g = 100
	mustReceive(t, tree, 1, Application, g)
	if tree.RetainedKeys() != OutOfOrderWindow {
		t.Fatalf("retained %d keys, want %d", tree.RetainedKeys(), OutOfOrderWindow)
	}
	for j := uint32(0); j < g; j++ {
		_, err := tree.Prepare(1, Application, j)
		inWindow := g-j <= OutOfOrderWindow
		if inWindow && err != nil {
			t.Errorf("gen %d (in window): %v", j, err)
		}
		if !inWindow && err != ErrKeyConsumed {
			t.Errorf("gen %d (outside window): %v", j, err)
		}
	}
	// Moving further ahead evicts keys that fall out of the window.
	mustReceive(t, tree, 1, Application, g+10)
	if _, err := tree.Prepare(1, Application, g-OutOfOrderWindow+5); err != ErrKeyConsumed {
		t.Errorf("evicted key still served: %v", err)
	}
	// The window is the OutOfOrderWindow generations below g+10, less
	// the consumed generation g.
	if tree.RetainedKeys() != OutOfOrderWindow-1 {
		t.Errorf("retained %d keys after sliding the window, want %d", tree.RetainedKeys(), OutOfOrderWindow-1)
	}
}

func TestMaxRetainedKeys(t *testing.T) {
	s := testSuite(t)
	const n = 128
	tree, _ := newTree(t, s, n)
	for leaf := treemath.LeafIndex(0); leaf < n; leaf++ {
		mustReceive(t, tree, leaf, Application, OutOfOrderWindow)
	}
	if tree.RetainedKeys() != MaxRetainedKeys {
		t.Fatalf("retained %d keys, want the cap %d", tree.RetainedKeys(), MaxRetainedKeys)
	}
	total := 0
	for _, lr := range tree.leaves {
		total += len(lr.r[0].skipped) + len(lr.r[1].skipped)
	}
	if total != tree.RetainedKeys() {
		t.Fatalf("retained count %d disagrees with the ratchets (%d)", tree.RetainedKeys(), total)
	}
}

func TestMaxGenerationSkip(t *testing.T) {
	s := testSuite(t)
	tree, _ := newTree(t, s, 2)
	before, d := snap(tree), tree.derivations
	_, err := tree.Prepare(0, Application, MaxGenerationSkip+1)
	var ge *GenerationError
	if !errors.As(err, &ge) || !errors.Is(err, ErrGenerationTooFar) || ge.Next != 0 {
		t.Fatalf("gen MaxGenerationSkip+1 on a fresh leaf: %v", err)
	}
	if tree.derivations != d || !reflect.DeepEqual(before, snap(tree)) {
		t.Fatal("rejected generation did KDF work or changed the tree")
	}
	mustReceive(t, tree, 0, Application, MaxGenerationSkip)
	// Relative to the ratchet's position, not to zero.
	next := uint32(MaxGenerationSkip + 1)
	d = tree.derivations
	if _, err := tree.Prepare(0, Application, next+MaxGenerationSkip+1); !errors.Is(err, ErrGenerationTooFar) {
		t.Fatalf("gen next+MaxGenerationSkip+1: %v", err)
	}
	if tree.derivations != d {
		t.Fatal("rejected generation did KDF work")
	}
	mustReceive(t, tree, 0, Application, next+MaxGenerationSkip)
}

// TestT19GenerationMaxUint32 is adversarial case T19 at the secret-tree
// level: generation 0xffffffff is rejected with bounded (zero) work, and
// the tree is untouched, whether or not the sender's ratchet exists yet.
func TestT19GenerationMaxUint32(t *testing.T) {
	s := testSuite(t)
	tree, _ := newTree(t, s, 4)
	mustReceive(t, tree, 1, Handshake, 3)
	for _, leaf := range []treemath.LeafIndex{0, 1} {
		for _, kind := range []Kind{Handshake, Application} {
			before, d := snap(tree), tree.derivations
			_, err := tree.Prepare(leaf, kind, math.MaxUint32)
			if !errors.Is(err, ErrGenerationTooFar) {
				t.Fatalf("leaf %d %v: %v", leaf, kind, err)
			}
			if tree.derivations != d {
				t.Fatalf("leaf %d %v: %d KDF calls for a rejected generation", leaf, kind, tree.derivations-d)
			}
			if !reflect.DeepEqual(before, snap(tree)) {
				t.Fatalf("leaf %d %v: tree changed", leaf, kind)
			}
		}
	}
}

// TestRatchetExhaustion drives a ratchet to its last generation (by
// setting its state, since 2^32 steps are out of reach).
func TestRatchetExhaustion(t *testing.T) {
	s := testSuite(t)
	tree, _ := newTree(t, s, 2)
	mustReceive(t, tree, 0, Application, 0)
	lr := tree.leaves[0]
	lr.r[Application].next = math.MaxUint32 - 1
	g, _, _, err := tree.NextSend(0, Application)
	if err != nil || g != math.MaxUint32-1 {
		t.Fatalf("NextSend: %d %v", g, err)
	}
	g, _, _, err = tree.NextSend(0, Application)
	if err != nil || g != math.MaxUint32 {
		t.Fatalf("NextSend at 2^32-1: %d %v", g, err)
	}
	if _, _, _, err := tree.NextSend(0, Application); err != ErrGenerationExhausted {
		t.Fatalf("NextSend past 2^32-1: %v", err)
	}
	if _, err := tree.Prepare(0, Application, math.MaxUint32); err == nil {
		t.Fatal("last generation served twice")
	}
	// The other ratchet is unaffected.
	if _, _, _, err := tree.NextSend(0, Handshake); err != nil {
		t.Fatal(err)
	}
}

// TestPrepareLeavesStateUnchanged checks that Prepare followed by Discard
// (a message that failed to decrypt or verify) leaves the tree
// byte-identical, for every kind of Prepare: new leaf, in order, skip,
// retained key.
func TestPrepareLeavesStateUnchanged(t *testing.T) {
	s := testSuite(t)
	tree, _ := newTree(t, s, 8)
	mustReceive(t, tree, 3, Application, 10) // retains 0..9
	cases := []struct {
		leaf treemath.LeafIndex
		kind Kind
		gen  uint32
	}{
		{5, Application, 0}, // new leaf
		{3, Application, 11},
		{3, Application, 40}, // skip
		{3, Application, 4},  // retained
		{3, Handshake, 0},
	}
	for _, c := range cases {
		before := snap(tree)
		p, err := tree.Prepare(c.leaf, c.kind, c.gen)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(before, snap(tree)) {
			t.Fatalf("%+v: Prepare changed the tree", c)
		}
		key := p.Key()
		p.Discard()
		if !reflect.DeepEqual(before, snap(tree)) {
			t.Fatalf("%+v: Discard changed the tree", c)
		}
		if !bytes.Equal(key, make([]byte, len(key))) {
			t.Fatalf("%+v: Discard did not zero the key", c)
		}
		// The same generation is still available.
		mustReceive(t, tree, c.leaf, c.kind, c.gen)
	}
}

func TestStalePending(t *testing.T) {
	s := testSuite(t)
	tree, _ := newTree(t, s, 4)
	p1, err := tree.Prepare(0, Application, 0)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := tree.Prepare(0, Application, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := tree.Commit(p1); err != nil {
		t.Fatal(err)
	}
	before := snap(tree)
	if err := tree.Commit(p2); err != ErrStalePending {
		t.Fatalf("second commit of the same key: %v", err)
	}
	if err := tree.Commit(p1); err != ErrStalePending {
		t.Fatalf("re-commit: %v", err)
	}
	if !reflect.DeepEqual(before, snap(tree)) {
		t.Fatal("stale commit changed the tree")
	}
	other, _ := newTree(t, s, 4)
	p3, _ := other.Prepare(1, Application, 0)
	if err := tree.Commit(p3); err != ErrStalePending {
		t.Fatalf("commit into another tree: %v", err)
	}
}

// TestForwardSecrecy checks that consumed secrets are overwritten, not
// just dropped: the ratchet secret a key came from, the retained key a
// late message used, and the node secrets on the way to a leaf.
func TestForwardSecrecy(t *testing.T) {
	s := testSuite(t)
	tree, _ := newTree(t, s, 4)
	root := tree.nodes[treemath.Root(4)]
	mustReceive(t, tree, 0, Application, 3)
	if !bytes.Equal(root, make([]byte, len(root))) {
		t.Error("root secret not zeroed after use")
	}
	r := &tree.leaves[0].r[Application]
	oldSecret := r.secret
	retained := r.skipped[1] // generation 1
	mustReceive(t, tree, 0, Application, 4)
	if !bytes.Equal(oldSecret, make([]byte, len(oldSecret))) {
		t.Error("consumed ratchet secret not zeroed")
	}
	mustReceive(t, tree, 0, Application, 1)
	if !bytes.Equal(retained.key, make([]byte, len(retained.key))) || !bytes.Equal(retained.nonce, make([]byte, len(retained.nonce))) {
		t.Error("used retained key not zeroed")
	}
}

func TestSecretTreeErrors(t *testing.T) {
	s := testSuite(t)
	for _, n := range []uint32{0, 3, 6, 1<<31 + 1, math.MaxUint32} {
		if _, err := NewSecretTree(s, make([]byte, s.Nh()), n); err != ErrInvalidTreeSize {
			t.Errorf("n=%d: %v", n, err)
		}
	}
	if _, err := NewSecretTree(s, make([]byte, 5), 4); err != ErrSecretLength {
		t.Errorf("short secret: %v", err)
	}
	tree, _ := newTree(t, s, 4)
	if _, err := tree.Prepare(4, Application, 0); err != ErrLeafOutOfRange {
		t.Errorf("leaf 4 of 4: %v", err)
	}
	if _, err := tree.Prepare(0, Kind(2), 0); err != ErrInvalidKind {
		t.Errorf("kind 2: %v", err)
	}
	if _, _, _, err := tree.NextSend(7, Application); err != ErrLeafOutOfRange {
		t.Errorf("NextSend leaf 7: %v", err)
	}
	tree.Destroy()
	if _, err := tree.Prepare(0, Application, 0); err != ErrDestroyed {
		t.Errorf("after Destroy: %v", err)
	}
	if _, _, _, err := tree.NextSend(0, Application); err != ErrDestroyed {
		t.Errorf("NextSend after Destroy: %v", err)
	}
}

func TestDestroyZeroes(t *testing.T) {
	s := testSuite(t)
	tree, _ := newTree(t, s, 4)
	mustReceive(t, tree, 0, Application, 5)
	var secrets [][]byte
	for _, v := range tree.nodes {
		secrets = append(secrets, v)
	}
	for _, lr := range tree.leaves {
		for _, r := range lr.r {
			secrets = append(secrets, r.secret)
			for _, kn := range r.skipped {
				secrets = append(secrets, kn.key, kn.nonce)
			}
		}
	}
	if len(secrets) < 5 {
		t.Fatalf("only %d secrets to check", len(secrets))
	}
	tree.Destroy()
	for i, b := range secrets {
		if !bytes.Equal(b, make([]byte, len(b))) {
			t.Errorf("secret %d not zeroed by Destroy", i)
		}
	}
}

func TestRedaction(t *testing.T) {
	s := testSuite(t)
	tree, enc := newTree(t, s, 4)
	p, _ := tree.Prepare(0, Application, 0)
	e, err := Next(s, enc, nil, nil, []byte("gc"))
	if err != nil {
		t.Fatal(err)
	}
	past := &PastEpoch{Epoch: 1, SenderDataSecret: enc, Tree: tree}
	for _, v := range []any{tree, *tree, p, *p, e, *e, past, *past} {
		for _, verb := range []string{"%v", "%+v", "%s", "%#v"} {
			out := fmt.Sprintf(verb, v)
			for _, secret := range [][]byte{enc, p.Key(), e.InitSecret, e.EpochAuthenticator} {
				if strings.Contains(out, hex.EncodeToString(secret)) || strings.Contains(out, fmt.Sprint(secret)) {
					t.Errorf("%s of %T prints a secret: %q", verb, v, out)
				}
			}
		}
	}
}
