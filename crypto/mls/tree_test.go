package mls

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"testing"

	"github.com/moat-im/moat/crypto/mls/internal/suite"
	"github.com/moat-im/moat/crypto/mls/internal/treemath"
)

type optHex []byte

func (h *optHex) UnmarshalJSON(b []byte) error {
	var s *string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	if s == nil {
		*h = nil
		return nil
	}
	v, err := hex.DecodeString(*s)
	if err != nil {
		return err
	}
	*h = v
	return nil
}

func readJSON(t testing.TB, name string, v any) {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatal(err)
	}
}

// loadTree decodes an encoded ratchet_tree and builds the tree.
func loadTree(t testing.TB, s *suite.Suite, enc []byte) *publicTree {
	t.Helper()
	rt, err := DecodeRatchetTree(enc)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := newTreeFromRatchetTree(s, rt)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func mustSuite(t testing.TB, cs uint16) *suite.Suite {
	t.Helper()
	s, err := suite.Get(suite.ID(cs))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func encodeTree(t testing.TB, tr *publicTree) []byte {
	t.Helper()
	b, err := tr.ratchetTree().Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type treeValidationVector struct {
	CipherSuite uint16     `json:"cipher_suite"`
	Tree        optHex     `json:"tree"`
	GroupID     optHex     `json:"group_id"`
	Resolutions [][]uint32 `json:"resolutions"`
	TreeHashes  []optHex   `json:"tree_hashes"`
}

// TestTreeValidationVectors runs tree-validation.json (FORMAT.md "Tree
// Validation"): per-node resolutions and tree hashes, parent-hash validity
// and leaf signatures as a joiner checks them.
func TestTreeValidationVectors(t *testing.T) {
	var vs []treeValidationVector
	readJSON(t, "tree-validation.json", &vs)
	passed, total := map[uint16]int{}, map[uint16]int{}
	for i, v := range vs {
		total[v.CipherSuite]++
		if t.Run(fmt.Sprintf("%d/suite=%d", i, v.CipherSuite), func(t *testing.T) { checkTreeValidation(t, v) }) {
			passed[v.CipherSuite]++
		}
	}
	logPassCounts(t, "tree-validation.json", passed, total)
}

func checkTreeValidation(t *testing.T, v treeValidationVector) {
	s := mustSuite(t, v.CipherSuite)
	tr := loadTree(t, s, v.Tree)
	if got := encodeTree(t, tr); !bytes.Equal(got, v.Tree) {
		t.Fatal("tree does not re-encode identically")
	}
	if int(tr.width()) != len(v.TreeHashes) || len(v.Resolutions) != len(v.TreeHashes) {
		t.Fatalf("tree width %d, vector has %d hashes, %d resolutions", tr.width(), len(v.TreeHashes), len(v.Resolutions))
	}
	root, err := tr.treeHash()
	if err != nil {
		t.Fatal(err)
	}
	for x := range v.TreeHashes {
		if got := tr.nodeHash(NodeIndex(x)); !bytes.Equal(got, v.TreeHashes[x]) {
			t.Errorf("tree hash of node %d: %x, want %x", x, got, v.TreeHashes[x])
		}
		res := tr.resolution(nil, NodeIndex(x))
		want := make([]NodeIndex, len(v.Resolutions[x]))
		for k, r := range v.Resolutions[x] {
			want[k] = NodeIndex(r)
		}
		if !slices.Equal(res, want) {
			t.Errorf("resolution of node %d: %v, want %v", x, res, want)
		}
		if got := tr.emptyResolution(NodeIndex(x)); got != (len(want) == 0) {
			t.Errorf("emptyResolution(%d) = %v", x, got)
		}
	}
	if err := tr.validate(treeValidation{groupID: v.GroupID, treeHash: root}); err != nil {
		t.Fatalf("validate: %v", err)
	}
}

// TestTreeValidationRejects mutates valid trees from tree-validation.json
// and checks each mutation is refused with the right error.
func TestTreeValidationRejects(t *testing.T) {
	var vs []treeValidationVector
	readJSON(t, "tree-validation.json", &vs)
	ran := 0
	for i, v := range vs {
		// Suites 1 (Ed25519) and 2 (ECDSA P-256); -short keeps suite 1.
		if v.CipherSuite != 1 && (v.CipherSuite != 2 || testing.Short()) {
			continue
		}
		s := mustSuite(t, v.CipherSuite)
		name := fmt.Sprintf("%d/suite=%d", i, v.CipherSuite)
		fresh := func() (*publicTree, []byte) {
			tr := loadTree(t, s, v.Tree)
			h, err := tr.treeHash()
			if err != nil {
				t.Fatal(err)
			}
			return tr, bytes.Clone(h)
		}
		check := func(what string, tr *publicTree, th []byte, want error) {
			t.Helper()
			err := tr.validate(treeValidation{groupID: v.GroupID, treeHash: th})
			if !errors.Is(err, want) {
				t.Errorf("%s: %s: got %v, want %v", name, what, err, want)
			}
			var te *TreeError
			if err != nil && !errors.As(err, &te) {
				t.Errorf("%s: %s: error %T is not a *TreeError", name, what, err)
			}
		}

		tr, th := fresh()
		th[0] ^= 1
		check("wrong tree hash", tr, th, ErrTreeHashMismatch)

		// Only update and commit leaves sign the group_id (§7.2): a tree
		// with one must fail under another group_id, a tree of key_package
		// leaves only must not.
		tr, th = fresh()
		signsGroup := false
		for _, ln := range tr.leaves {
			if ln != nil && ln.Source != LeafNodeSourceKeyPackage {
				signsGroup = true
			}
		}
		err := tr.validate(treeValidation{groupID: []byte("other"), treeHash: th})
		switch {
		case signsGroup && !errors.Is(err, ErrInvalidLeafSignature):
			t.Errorf("%s: wrong group id: got %v, want %v", name, err, ErrInvalidLeafSignature)
		case !signsGroup && err != nil:
			t.Errorf("%s: wrong group id, key_package leaves only: %v", name, err)
		}

		// Flip a bit of each non-blank parent's parent_hash in turn: that
		// parent (or the one it chains to) loses its parent-hash validity.
		tr0, _ := fresh()
		for pi, p := range tr0.parents {
			if p == nil {
				continue
			}
			tr, _ := fresh()
			q := *p
			q.ParentHash = bytes.Clone(p.ParentHash)
			if len(q.ParentHash) == 0 {
				q.ParentHash = []byte{0}
			} else {
				q.ParentHash[0] ^= 1
			}
			tr.setParent(NodeIndex(2*pi+1), &q)
			th, err := tr.treeHash()
			if err != nil {
				t.Fatal(err)
			}
			check(fmt.Sprintf("parent %d parent_hash flipped", 2*pi+1), tr, bytes.Clone(th), ErrInvalidParentHash)
			ran++
		}

		// Corrupt each leaf signature in turn.
		for li, l := range tr0.leaves {
			if l == nil {
				continue
			}
			tr, _ := fresh()
			m := *l
			m.Signature = bytes.Clone(l.Signature)
			m.Signature[len(m.Signature)/2] ^= 0x10
			tr.leaves[li] = &m
			tr.markStale(LeafIndex(li).Node())
			th, err := tr.treeHash()
			if err != nil {
				t.Fatal(err)
			}
			check(fmt.Sprintf("leaf %d signature", li), tr, bytes.Clone(th), ErrInvalidLeafSignature)
			ran++
		}

		// The application's leaf validator is consulted and its error kept.
		tr, th = fresh()
		appErr := errors.New("credential revoked")
		err = tr.validate(treeValidation{groupID: v.GroupID, treeHash: th, leaf: func(i LeafIndex, ln *LeafNode) error {
			if i == 1 {
				return appErr
			}
			return nil
		}})
		if tr.leaf(1) != nil && (!errors.Is(err, ErrInvalidLeafNode) || !errors.Is(err, appErr)) {
			t.Errorf("%s: leaf validator error not reported: %v", name, err)
		}
	}
	if ran == 0 {
		t.Fatal("no mutation ran")
	}
}

// TestFirstErrorKeepsLowest checks the rule that makes parallel tree
// validation deterministic: once task 1 has failed, task 0 (dispatched
// before it but not yet started, as happens under load) must still run,
// and its error wins. Keeping only a "something failed" flag skipped task
// 0 and reported task 1's error, so TestTreeValidationRejects got a parent
// hash error for a corrupted leaf signature now and then.
func TestFirstErrorKeepsLowest(t *testing.T) {
	e0, e1, e2 := errors.New("task 0"), errors.New("task 1"), errors.New("task 2")
	f := newFirstError(4)
	f.record(2, e2)
	f.record(1, e1)
	if f.skip(0) || f.skip(1) {
		t.Fatal("a task below every failure was skipped")
	}
	if !f.skip(3) || !f.skip(2) {
		t.Fatal("a task above a failure was not skipped")
	}
	if err := f.err(); err != e1 {
		t.Fatalf("got %v, want %v", err, e1)
	}
	f.record(0, e0)
	if err := f.err(); err != e0 {
		t.Fatalf("got %v, want %v", err, e0)
	}
	if g := newFirstError(3); g.skip(2) || g.err() != nil {
		t.Fatal("fresh firstError skips or fails")
	}
}

// TestTreeValidationErrorDeterministic validates a tree with two defects in
// different chunks (a leaf signature in the first leaf chunk, a parent hash
// in the last parent chunk) many times on more workers than cores: the
// error is always the one a sequential check finds first.
func TestTreeValidationErrorDeterministic(t *testing.T) {
	bt := buildBenchTree(t, suite.X25519_AES128GCM_SHA256_Ed25519, 3*validationChunk)
	tr := bt.load(t)
	l := *tr.leaves[5]
	l.Signature = bytes.Clone(l.Signature)
	l.Signature[0] ^= 1
	tr.leaves[5] = &l
	tr.markStale(LeafIndex(5).Node())
	last := -1
	for pi, p := range tr.parents {
		if p != nil {
			last = pi
		}
	}
	p := *tr.parents[last]
	p.ParentHash = append(bytes.Clone(p.ParentHash), 0)
	tr.setParent(NodeIndex(2*last+1), &p)
	th, err := tr.treeHash()
	if err != nil {
		t.Fatal(err)
	}
	th = bytes.Clone(th)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(8))
	for range 40 {
		err := tr.validate(treeValidation{groupID: bt.gid, treeHash: th})
		var te *TreeError
		if !errors.Is(err, ErrInvalidLeafSignature) || !errors.As(err, &te) || te.Node != 10 {
			t.Fatalf("got %v, want invalid leaf signature at node 10", err)
		}
	}
}

func TestTreeDuplicateKeysRefused(t *testing.T) {
	var vs []treeValidationVector
	readJSON(t, "tree-validation.json", &vs)
	v := vs[1] // suite 1, four full leaves
	s := mustSuite(t, v.CipherSuite)
	rt, err := DecodeRatchetTree(v.Tree)
	if err != nil {
		t.Fatal(err)
	}
	// Give leaf 1 the encryption key of leaf 0, then a parent the key of a
	// leaf, then leaf 1 the signature key of leaf 0.
	for _, c := range []struct {
		name   string
		mutate func(rt RatchetTree)
	}{
		{"leaf encryption key", func(rt RatchetTree) {
			l := *rt[2].Leaf
			l.EncryptionKey = rt[0].Leaf.EncryptionKey
			rt[2] = &Node{Leaf: &l}
		}},
		{"parent encryption key", func(rt RatchetTree) {
			p := *rt[1].Parent
			p.EncryptionKey = rt[4].Leaf.EncryptionKey
			rt[1] = &Node{Parent: &p}
		}},
		{"signature key", func(rt RatchetTree) {
			l := *rt[2].Leaf
			l.SignatureKey = rt[0].Leaf.SignatureKey
			rt[2] = &Node{Leaf: &l}
		}},
	} {
		m := slices.Clone(rt)
		c.mutate(m)
		if _, err := newTreeFromRatchetTree(s, m); !errors.Is(err, ErrDuplicateKey) {
			t.Errorf("%s: got %v, want ErrDuplicateKey", c.name, err)
		}
	}
}

func TestUnmergedLeavesChecked(t *testing.T) {
	var vs []treeValidationVector
	readJSON(t, "tree-validation.json", &vs)
	s := mustSuite(t, 1)
	ran := 0
	for _, v := range vs {
		if v.CipherSuite != 1 {
			continue
		}
		tr0 := loadTree(t, s, v.Tree)
		for pi, p := range tr0.parents {
			if p == nil {
				continue
			}
			x := NodeIndex(2*pi + 1)
			first, n := treemath.LeafSpan(x)
			// An unmerged leaf outside the node's subtree, one that is
			// blank, and (if any) dropping a leaf from a lower node.
			for _, bad := range []uint32{uint32(first) + n, uint32(first) + n + 7} {
				if bad >= tr0.nLeaves {
					continue
				}
				tr := loadTree(t, s, v.Tree)
				q := *p
				q.UnmergedLeaves = append(slices.Clone(p.UnmergedLeaves), bad)
				slices.Sort(q.UnmergedLeaves)
				q.UnmergedLeaves = slices.Compact(q.UnmergedLeaves)
				tr.setParent(x, &q)
				if err := tr.checkUnmergedLeaves(); !errors.Is(err, ErrInvalidUnmergedLeaves) {
					t.Errorf("parent %d with unmerged leaf %d outside: %v", x, bad, err)
				}
				ran++
			}
			for k := uint32(0); k < n; k++ {
				l := uint32(first) + k
				if tr0.leaves[l] != nil || slices.Contains(p.UnmergedLeaves, l) {
					continue
				}
				tr := loadTree(t, s, v.Tree)
				q := *p
				q.UnmergedLeaves = append(slices.Clone(p.UnmergedLeaves), l)
				slices.Sort(q.UnmergedLeaves)
				tr.setParent(x, &q)
				if err := tr.checkUnmergedLeaves(); !errors.Is(err, ErrInvalidUnmergedLeaves) {
					t.Errorf("parent %d with blank unmerged leaf %d: %v", x, l, err)
				}
				ran++
				break
			}
		}
	}
	if ran == 0 {
		t.Fatal("no case ran")
	}
}

type treeOperationsVector struct {
	CipherSuite    uint16 `json:"cipher_suite"`
	TreeBefore     optHex `json:"tree_before"`
	Proposal       optHex `json:"proposal"`
	ProposalSender uint32 `json:"proposal_sender"`
	TreeHashBefore optHex `json:"tree_hash_before"`
	TreeAfter      optHex `json:"tree_after"`
	TreeHashAfter  optHex `json:"tree_hash_after"`
}

// applyProposalToTree applies one Add, Update or Remove to tr.
func applyProposalToTree(tr *publicTree, p *Proposal, sender LeafIndex) error {
	switch p.Type {
	case ProposalTypeAdd:
		_, err := tr.addLeaf(&p.Add.KeyPackage.LeafNode)
		return err
	case ProposalTypeUpdate:
		return tr.updateLeaf(sender, &p.Update.LeafNode)
	case ProposalTypeRemove:
		return tr.removeLeaf(LeafIndex(p.Remove.Removed))
	}
	return fmt.Errorf("proposal type %d does not change the tree", p.Type)
}

// TestTreeOperationsVectors runs tree-operations.json (FORMAT.md "Tree
// Operations"): apply a proposal, compare the encoded tree and its hash.
// Each case also runs inside a journal that is rolled back, which must
// restore the tree before.
func TestTreeOperationsVectors(t *testing.T) {
	var vs []treeOperationsVector
	readJSON(t, "tree-operations.json", &vs)
	passed, total := map[uint16]int{}, map[uint16]int{}
	for i, v := range vs {
		total[v.CipherSuite]++
		if t.Run(fmt.Sprintf("%d/suite=%d", i, v.CipherSuite), func(t *testing.T) {
			s := mustSuite(t, v.CipherSuite)
			p, err := DecodeProposal(v.Proposal)
			if err != nil {
				t.Fatal(err)
			}
			for _, journal := range []bool{false, true} {
				tr := loadTree(t, s, v.TreeBefore)
				h, err := tr.treeHash()
				if err != nil || !bytes.Equal(h, v.TreeHashBefore) {
					t.Fatalf("tree hash before: %x, %v", h, err)
				}
				if journal {
					tr.begin()
				}
				if err := applyProposalToTree(tr, p, LeafIndex(v.ProposalSender)); err != nil {
					t.Fatal(err)
				}
				if got := encodeTree(t, tr); !bytes.Equal(got, v.TreeAfter) {
					t.Fatalf("tree after differs (journal=%v)", journal)
				}
				h, err = tr.treeHash()
				if err != nil || !bytes.Equal(h, v.TreeHashAfter) {
					t.Fatalf("tree hash after: %x, %v", h, err)
				}
				fresh := loadTree(t, s, v.TreeAfter)
				fh, _ := fresh.treeHash()
				if !bytes.Equal(fh, h) {
					t.Fatal("incremental tree hash differs from a fresh computation")
				}
				if journal {
					tr.rollback()
					assertTreeEqual(t, tr, loadTree(t, s, v.TreeBefore))
				}
			}
		}) {
			passed[v.CipherSuite]++
		}
	}
	logPassCounts(t, "tree-operations.json", passed, total)
}

// assertTreeEqual checks two trees have the same encoding, size, tree
// hashes at every node and key index.
func assertTreeEqual(t testing.TB, got, want *publicTree) {
	t.Helper()
	if !bytes.Equal(encodeTree(t, got), encodeTree(t, want)) || got.nLeaves != want.nLeaves {
		t.Fatal("trees differ")
	}
	if _, err := got.treeHash(); err != nil {
		t.Fatal(err)
	}
	if _, err := want.treeHash(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.hashes, want.hashes) {
		t.Fatal("cached tree hashes differ")
	}
	if len(got.encKeys.m) != len(want.encKeys.m) || len(got.sigKeys.m) != len(want.sigKeys.m) {
		t.Fatalf("key index sizes differ: %d/%d vs %d/%d", len(got.encKeys.m), len(got.sigKeys.m), len(want.encKeys.m), len(want.sigKeys.m))
	}
	for x := NodeIndex(0); uint32(x) < want.width(); x++ {
		if k := want.encryptionKey(x); k != nil {
			if y, ok := got.findEncryptionKey(k); !ok || y != x {
				t.Fatalf("encryption key of node %d indexed at %d, %v", x, y, ok)
			}
		}
	}
	for i, l := range want.leaves {
		if l != nil {
			if j, ok := got.findSignatureKey(l.SignatureKey); !ok || j != LeafIndex(i) {
				t.Fatalf("signature key of leaf %d indexed at %d, %v", i, j, ok)
			}
		}
	}
}

// FuzzTreeLoad feeds arbitrary ratchet_tree encodings through loading and
// joiner validation: no panic, and a tree that loads re-encodes to its
// input.
func FuzzTreeLoad(f *testing.F) {
	var vs []treeValidationVector
	readJSON(f, "tree-validation.json", &vs)
	for _, v := range vs {
		if v.CipherSuite == 1 && len(v.Tree) < 4096 {
			f.Add([]byte(v.Tree))
		}
	}
	s := mustSuite(f, 1)
	f.Fuzz(func(t *testing.T, enc []byte) {
		rt, err := DecodeRatchetTree(enc)
		if err != nil {
			return
		}
		tr, err := newTreeFromRatchetTree(s, rt)
		if err != nil {
			var te *TreeError
			if !errors.As(err, &te) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if got := encodeTree(t, tr); !bytes.Equal(got, enc) {
			t.Fatal("loaded tree does not re-encode to its input")
		}
		th, err := tr.treeHash()
		if err != nil {
			return
		}
		err = tr.validate(treeValidation{groupID: []byte("g"), treeHash: bytes.Clone(th)})
		var te *TreeError
		if err != nil && !errors.As(err, &te) {
			t.Fatalf("untyped error %v", err)
		}
	})
}

func TestTreeClone(t *testing.T) {
	h := newOpsHarness(t, 9)
	r := mrandNew(5)
	for range 20 {
		h.step(r, false)
	}
	c := h.tr.clone()
	assertTreeEqual(t, c, h.tr)
	before := encodeTree(t, h.tr)
	for range 10 {
		h.step(r, false)
	}
	if !bytes.Equal(encodeTree(t, c), before) {
		t.Fatal("changing the original changed the clone")
	}
	assertTreeEqual(t, c, loadTree(t, h.s, before))
}
