package mls

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"testing"

	"github.com/moat-im/moat/crypto/mls/internal/suite"
)

// opsHarness drives a tree with random Add, Update, Remove and UpdatePath
// operations and checks it against a from-scratch reference after each.
type opsHarness struct {
	t    testing.TB
	s    *suite.Suite
	tr   *publicTree
	sig  map[LeafIndex]SignaturePrivateKey // members' signing keys
	rnd  *mrand.ChaCha8
	gid  []byte
	ops  int
	undo int
}

// synthLeaf returns a LeafNode with a fresh signature key and a random
// X25519 encryption key (any 32 bytes are one), signed for leaf i.
func (h *opsHarness) synthLeaf(i LeafIndex, source LeafNodeSource) (*LeafNode, SignaturePrivateKey) {
	h.t.Helper()
	sk, pk, err := h.s.GenerateSignatureKey(h.rnd)
	if err != nil {
		h.t.Fatal(err)
	}
	ek := make([]byte, 32)
	h.rnd.Read(ek)
	ln := &LeafNode{
		EncryptionKey: ek,
		SignatureKey:  SignaturePublicKey(pk),
		Credential:    Credential{Type: CredentialTypeBasic, Identity: []byte{byte(i), byte(i >> 8)}},
		Capabilities: Capabilities{
			Versions:     []ProtocolVersion{ProtocolVersionMLS10},
			CipherSuites: []CipherSuite{1},
			Credentials:  []CredentialType{CredentialTypeBasic},
		},
		Source: source,
	}
	if source == LeafNodeSourceKeyPackage {
		ln.Lifetime = &Lifetime{NotBefore: 0, NotAfter: 1 << 40}
	}
	if err := ln.Sign(1, SignaturePrivateKey(sk), h.gid, uint32(i)); err != nil {
		h.t.Fatal(err)
	}
	return ln, SignaturePrivateKey(sk)
}

func newOpsHarness(t testing.TB, seed uint64) *opsHarness {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	h := &opsHarness{t: t, s: mustSuite(t, 1), sig: map[LeafIndex]SignaturePrivateKey{}, rnd: mrand.NewChaCha8(key), gid: []byte("group")}
	ln, sk := h.synthLeaf(0, LeafNodeSourceKeyPackage)
	h.tr = newPublicTree(h.s, ln)
	h.sig[0] = sk
	return h
}

func mrandNew(seed uint64) *mrand.Rand { return mrand.New(mrand.NewPCG(seed, seed)) }

func (h *opsHarness) randomMember(r *mrand.Rand) LeafIndex {
	for {
		i := LeafIndex(r.IntN(int(h.tr.nLeaves)))
		if h.tr.leaf(i) != nil {
			return i
		}
	}
}

// step applies one operation chosen by r; with undo it runs inside the
// journal and is rolled back.
func (h *opsHarness) step(r *mrand.Rand, undo bool) {
	t := h.t
	t.Helper()
	var before []byte
	var snapshot *publicTree
	if undo {
		before = encodeTree(t, h.tr)
		snapshot = h.tr.clone()
		h.tr.begin()
	}
	members := h.tr.memberCount()
	switch op := r.IntN(10); {
	case op < 4 || members < 2: // Add, sometimes several
		for range 1 + r.IntN(3) {
			ln, sk := h.synthLeaf(0, LeafNodeSourceKeyPackage)
			i, err := h.tr.addLeaf(ln)
			if err != nil {
				t.Fatal(err)
			}
			if !undo {
				h.sig[i] = sk
			}
		}
	case op < 6: // Remove
		i := h.randomMember(r)
		if err := h.tr.removeLeaf(i); err != nil {
			t.Fatal(err)
		}
		if !undo {
			delete(h.sig, i)
		}
	case op < 8: // Update
		i := h.randomMember(r)
		ln, sk := h.synthLeaf(i, LeafNodeSourceUpdate)
		if err := h.tr.updateLeaf(i, ln); err != nil {
			t.Fatal(err)
		}
		if !undo {
			h.sig[i] = sk
		}
	default: // Commit with a path
		i := h.randomMember(r)
		template := *h.tr.leaf(i)
		gc := GroupContext{CipherSuite: 1, GroupID: h.gid, Epoch: uint64(h.ops)}
		res, err := h.tr.createUpdatePath(i, &template, h.sig[i], gc, nil)
		if err != nil {
			t.Fatal(err)
		}
		res.Zero()
	}
	h.ops++
	if undo {
		h.tr.rollback()
		h.undo++
		if !bytes.Equal(encodeTree(t, h.tr), before) {
			t.Fatal("rollback did not restore the tree")
		}
		assertTreeEqual(t, h.tr, snapshot)
	}
	h.check()
}

// check compares the incrementally maintained tree with one loaded from
// its encoding: same hashes at every node, same key index; every 16th
// operation, the tree also validates as a joiner sees it.
func (h *opsHarness) check() {
	t := h.t
	t.Helper()
	fresh := loadTree(t, h.s, encodeTree(t, h.tr))
	assertTreeEqual(t, h.tr, fresh)
	// Truncation (§7.7) and extension keep a member in the right half.
	if n := h.tr.nLeaves; n > 1 && !slices.ContainsFunc(h.tr.leaves[n/2:], func(l *LeafNode) bool { return l != nil }) {
		t.Fatalf("%d leaves but the right half is empty", n)
	}
	if h.ops%16 != 0 {
		return
	}
	th, _ := h.tr.treeHash()
	if err := h.tr.validate(treeValidation{groupID: h.gid, treeHash: bytes.Clone(th)}); err != nil {
		t.Fatalf("after %d operations the tree does not validate: %v", h.ops, err)
	}
}

// TestTreeOperationsRandom runs random operation sequences and compares
// the incremental tree hash, key index and journal rollback with
// from-scratch computations after every step.
func TestTreeOperationsRandom(t *testing.T) {
	steps := 300
	if testing.Short() {
		steps = 80
	}
	for seed := range uint64(3) {
		h := newOpsHarness(t, seed)
		r := mrand.New(mrand.NewPCG(seed, 1))
		for range steps {
			h.step(r, r.IntN(4) == 0)
		}
		if h.undo == 0 || h.ops != steps {
			t.Fatalf("seed %d: %d operations, %d rolled back", seed, h.ops, h.undo)
		}
		t.Logf("seed %d: %d operations (%d rolled back), final tree %d leaves, %d members", seed, h.ops, h.undo, h.tr.nLeaves, h.tr.memberCount())
	}
}

// FuzzTreeOperations drives the same harness from fuzz input.
func FuzzTreeOperations(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add(bytes.Repeat([]byte{0, 0, 0, 5, 9, 7}, 8))
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 64 {
			ops = ops[:64]
		}
		h := newOpsHarness(t, 7)
		for _, b := range ops {
			r := mrand.New(mrand.NewPCG(uint64(b), uint64(h.ops)))
			h.step(r, b&0x80 != 0)
		}
	})
}

func TestTreeOperationErrors(t *testing.T) {
	h := newOpsHarness(t, 42)
	r := mrand.New(mrand.NewPCG(1, 2))
	for range 6 {
		ln, sk := h.synthLeaf(0, LeafNodeSourceKeyPackage)
		i, err := h.tr.addLeaf(ln)
		if err != nil {
			t.Fatal(err)
		}
		h.sig[i] = sk
	}
	tr := h.tr
	before := encodeTree(t, tr)
	unchanged := func(what string, err, want error) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Errorf("%s: got %v, want %v", what, err, want)
		}
		if !bytes.Equal(encodeTree(t, tr), before) {
			t.Errorf("%s: tree changed", what)
		}
	}
	// Duplicate keys in an Add.
	dup, _ := h.synthLeaf(0, LeafNodeSourceKeyPackage)
	dup.EncryptionKey = tr.leaf(3).EncryptionKey
	_, err := tr.addLeaf(dup)
	unchanged("Add with a member's encryption key", err, ErrDuplicateKey)
	dup, _ = h.synthLeaf(0, LeafNodeSourceKeyPackage)
	dup.SignatureKey = tr.leaf(2).SignatureKey
	_, err = tr.addLeaf(dup)
	unchanged("Add with a member's signature key", err, ErrDuplicateKey)
	// Update reusing its own encryption key, or another member's
	// signature key; keeping its own signature key is fine.
	up, _ := h.synthLeaf(1, LeafNodeSourceUpdate)
	up.EncryptionKey = tr.leaf(1).EncryptionKey
	unchanged("Update keeping its encryption key", tr.updateLeaf(1, up), ErrDuplicateKey)
	up, _ = h.synthLeaf(1, LeafNodeSourceUpdate)
	up.SignatureKey = tr.leaf(4).SignatureKey
	unchanged("Update with another member's signature key", tr.updateLeaf(1, up), ErrDuplicateKey)
	// Blank leaves.
	i := h.randomMember(r)
	if err := tr.removeLeaf(i); err != nil {
		t.Fatal(err)
	}
	before = encodeTree(t, tr)
	unchanged("Remove of a blank leaf", tr.removeLeaf(i), ErrBlankLeaf)
	unchanged("Remove beyond the tree", tr.removeLeaf(LeafIndex(tr.nLeaves+3)), ErrBlankLeaf)
	up, _ = h.synthLeaf(i, LeafNodeSourceUpdate)
	unchanged("Update of a blank leaf", tr.updateLeaf(i, up), ErrBlankLeaf)
	up, _ = h.synthLeaf(1, LeafNodeSourceUpdate)
	up.SignatureKey = tr.leaf(1).SignatureKey
	if err := tr.updateLeaf(1, up); err != nil {
		t.Errorf("Update keeping its signature key: %v", err)
	}
}

// TestTruncation checks §7.7's rule on removals from the right: the tree
// shrinks to the smallest power of two above the rightmost member.
func TestTruncation(t *testing.T) {
	h := newOpsHarness(t, 3)
	for range 16 {
		ln, _ := h.synthLeaf(0, LeafNodeSourceKeyPackage)
		if _, err := h.tr.addLeaf(ln); err != nil {
			t.Fatal(err)
		}
	}
	if h.tr.nLeaves != 32 {
		t.Fatalf("17 members in %d leaves", h.tr.nLeaves)
	}
	for _, c := range []struct {
		remove LeafIndex
		want   uint32
	}{{16, 16}, {3, 16}, {15, 16}, {14, 16}, {13, 16}, {12, 16}, {11, 16}, {10, 16}, {9, 16}, {8, 8}, {7, 8}, {6, 8}, {5, 8}, {4, 4}, {2, 2}, {1, 1}} {
		if err := h.tr.removeLeaf(c.remove); err != nil {
			t.Fatal(err)
		}
		if h.tr.nLeaves != c.want {
			t.Fatalf("after removing %d: %d leaves, want %d", c.remove, h.tr.nLeaves, c.want)
		}
		h.check()
	}
	// The next Add fills the leftmost blank leaf (none: extends).
	ln, _ := h.synthLeaf(0, LeafNodeSourceKeyPackage)
	if i, err := h.tr.addLeaf(ln); err != nil || i != 1 || h.tr.nLeaves != 2 {
		t.Fatalf("add after truncation: leaf %d, %d leaves, %v", i, h.tr.nLeaves, err)
	}
}

// TestPrivateTreeRedacted checks private state never prints its keys and
// Zero wipes them.
func TestPrivateTreeRedacted(t *testing.T) {
	s := mustSuite(t, 1)
	ikm := make([]byte, 32)
	rand.Read(ikm)
	priv, pub, err := s.DeriveKeyPair(ikm)
	if err != nil {
		t.Fatal(err)
	}
	p := newPrivateTree(s, 0, HPKEPrivateKey(priv), HPKEPublicKey(pub))
	for _, str := range []string{fmt.Sprintf("%v", p), fmt.Sprintf("%+v", p), fmt.Sprintf("%#v", p), p.String()} {
		if bytes.Contains([]byte(str), []byte(string(priv[:4]))) || !bytes.Contains([]byte(str), []byte("REDACTED")) {
			t.Errorf("private tree prints as %q", str)
		}
	}
	k := p.keys[0].priv
	p.Zero()
	if !bytes.Equal(k, make([]byte, len(k))) || len(p.keys) != 0 {
		t.Error("Zero left key material")
	}
}
