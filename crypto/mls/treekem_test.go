package mls

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/mls/internal/suite"
)

type treeKEMVector struct {
	CipherSuite             uint16 `json:"cipher_suite"`
	GroupID                 optHex `json:"group_id"`
	Epoch                   uint64 `json:"epoch"`
	ConfirmedTranscriptHash optHex `json:"confirmed_transcript_hash"`
	RatchetTree             optHex `json:"ratchet_tree"`
	LeavesPrivate           []struct {
		Index          uint32 `json:"index"`
		EncryptionPriv optHex `json:"encryption_priv"`
		SignaturePriv  optHex `json:"signature_priv"`
		PathSecrets    []struct {
			Node       uint32 `json:"node"`
			PathSecret optHex `json:"path_secret"`
		} `json:"path_secrets"`
	} `json:"leaves_private"`
	UpdatePaths []struct {
		Sender        uint32   `json:"sender"`
		UpdatePath    optHex   `json:"update_path"`
		PathSecrets   []optHex `json:"path_secrets"`
		CommitSecret  optHex   `json:"commit_secret"`
		TreeHashAfter optHex   `json:"tree_hash_after"`
	} `json:"update_paths"`
}

// TestTreeKEMVectors runs treekem.json (FORMAT.md "TreeKEM"): every
// UpdatePath is parent-hash checked, merged and decrypted at every other
// leaf (path secret, commit secret, tree hash after); then a fresh
// UpdatePath from the same sender is created and decrypted at every other
// leaf to the same commit secret.
func TestTreeKEMVectors(t *testing.T) {
	var vs []treeKEMVector
	readJSON(t, "treekem.json", &vs)
	passed, total := map[uint16]int{}, map[uint16]int{}
	decrypted, possible := 0, 0
	for i, v := range vs {
		total[v.CipherSuite]++
		if t.Run(fmt.Sprintf("%d/suite=%d", i, v.CipherSuite), func(t *testing.T) {
			d, p := checkTreeKEM(t, v)
			decrypted, possible = decrypted+d, possible+p
		}) {
			passed[v.CipherSuite]++
		}
	}
	t.Logf("treekem.json: %d of %d path decryptions checked (vector paths and re-created paths, at every receiver holding private keys)", decrypted, possible)
	if testing.Short() {
		t.Logf("treekem.json: -short samples receivers (first, middle and last; the last only for slow suites), re-creates paths of slow suites and validates created trees for the first sender only: a vector counts as passed on that sample; run without -short to check all")
	}
	logPassCounts(t, "treekem.json", passed, total)
}

// checkTreeKEM runs one vector and returns the path decryptions it
// checked and those a full run checks.
func checkTreeKEM(t *testing.T, v treeKEMVector) (decrypted, possible int) {
	s := mustSuite(t, v.CipherSuite)
	gc := GroupContext{
		CipherSuite:             CipherSuite(v.CipherSuite),
		GroupID:                 v.GroupID,
		Epoch:                   v.Epoch,
		ConfirmedTranscriptHash: v.ConfirmedTranscriptHash,
	}
	base := loadTree(t, s, v.RatchetTree)
	th0, err := base.treeHash()
	if err != nil {
		t.Fatal(err)
	}
	if err := base.validate(treeValidation{groupID: v.GroupID, treeHash: bytes.Clone(th0)}); err != nil {
		t.Fatalf("ratchet_tree does not validate: %v", err)
	}

	// Private states, checked against the tree.
	privs := map[LeafIndex]*privateTree{}
	sigPrivs := map[LeafIndex]SignaturePrivateKey{}
	for _, lp := range v.LeavesPrivate {
		i := LeafIndex(lp.Index)
		ln := base.leaf(i)
		if ln == nil {
			t.Fatalf("private leaf %d is blank", i)
		}
		pub, err := s.HPKEPublicKeyOf(suite.HPKEPrivateKey(lp.EncryptionPriv))
		if err != nil || !bytes.Equal(pub, ln.EncryptionKey) {
			t.Fatalf("leaf %d: encryption_priv does not match the tree", i)
		}
		p := newPrivateTree(s, i, HPKEPrivateKey(bytes.Clone(lp.EncryptionPriv)), ln.EncryptionKey)
		for _, ps := range lp.PathSecrets {
			if err := p.setPathSecret(base, NodeIndex(ps.Node), ps.PathSecret); err != nil {
				t.Fatalf("leaf %d node %d: %v", i, ps.Node, err)
			}
		}
		privs[i] = p
		sigPrivs[i] = SignaturePrivateKey(lp.SignaturePriv)
	}

	for _, up := range v.UpdatePaths {
		sender := LeafIndex(up.Sender)
		others := len(privs)
		if privs[sender] != nil {
			others--
		}
		possible += 2 * others
		path, err := DecodeUpdatePath(up.UpdatePath)
		if err != nil {
			t.Fatal(err)
		}
		if len(up.PathSecrets) != int(base.nLeaves) {
			t.Fatalf("path_secrets has %d entries for %d leaves", len(up.PathSecrets), base.nLeaves)
		}
		// Merge without decrypting: parent hashes and tree hash after.
		tr := loadTree(t, s, v.RatchetTree)
		if _, err := tr.applyUpdatePath(sender, path, gc, nil, nil, nil); err != nil {
			t.Fatalf("sender %d: merging: %v", sender, err)
		}
		if h, _ := tr.treeHash(); !bytes.Equal(h, up.TreeHashAfter) {
			t.Fatalf("sender %d: tree hash after %x, want %x", sender, h, up.TreeHashAfter)
		}
		merged := tr
		if decrypted == 0 {
			checkLeafSignatureFirst(t, loadTree(t, s, v.RatchetTree), sender, path, gc)
		}

		for _, j := range receivers(privs, sender, v.CipherSuite) {
			p := privs[j]
			base.begin()
			r, err := base.applyUpdatePath(sender, path, gc, nil, p, nil)
			if err != nil {
				t.Fatalf("sender %d, leaf %d: %v", sender, j, err)
			}
			if !bytes.Equal(r.pathSecret, up.PathSecrets[j]) {
				t.Errorf("sender %d, leaf %d: path secret %x, want %x", sender, j, r.pathSecret, up.PathSecrets[j])
			}
			if !bytes.Equal(r.commitSecret, up.CommitSecret) {
				t.Errorf("sender %d, leaf %d: commit secret differs", sender, j)
			}
			if decrypted == 0 {
				assertTreeEqual(t, base, merged)
			} else if h, _ := base.treeHash(); !bytes.Equal(h, up.TreeHashAfter) {
				t.Fatalf("sender %d, leaf %d: tree hash after differs", sender, j)
			}
			// The new private state matches the merged tree.
			for _, k := range r.priv.keys {
				if pub, err := s.HPKEPublicKeyOf(k.priv); err != nil || !bytes.Equal(pub, base.encryptionKey(k.node)) {
					t.Errorf("leaf %d: private key of node %d does not match", j, k.node)
				}
			}
			base.rollback()
			if decrypted == 0 {
				assertTreeEqual(t, base, loadTree(t, s, v.RatchetTree))
			}
			decrypted++
		}

		// Re-encrypt: a new UpdatePath from the same sender, decrypted by
		// everyone else to the same commit secret. With -short, slow
		// suites do this for the first sender only.
		if testing.Short() && slowSuite(v.CipherSuite) && sender != LeafIndex(v.UpdatePaths[0].Sender) {
			continue
		}
		tr = loadTree(t, s, v.RatchetTree)
		template := *tr.leaf(sender)
		cr, err := tr.createUpdatePath(sender, &template, sigPrivs[sender], gc, nil)
		if err != nil {
			t.Fatalf("sender %d: creating UpdatePath: %v", sender, err)
		}
		enc, err := cr.path.Encode()
		if err != nil {
			t.Fatal(err)
		}
		newPath, err := DecodeUpdatePath(enc)
		if err != nil {
			t.Fatal(err)
		}
		created := tr
		for k, j := range receivers(privs, sender, v.CipherSuite) {
			p := privs[j]
			base.begin()
			r, err := base.applyUpdatePath(sender, newPath, gc, nil, p, nil)
			if err != nil {
				t.Fatalf("new path from %d at leaf %d: %v", sender, j, err)
			}
			if !bytes.Equal(r.commitSecret, cr.commitSecret) {
				t.Errorf("new path from %d at leaf %d: commit secret differs", sender, j)
			}
			if !bytes.Equal(r.groupContext, cr.groupContext) {
				t.Errorf("new path from %d at leaf %d: provisional GroupContext differs", sender, j)
			}
			node, secret := cr.pathSecretFor(sender, j)
			if node != r.pathSecretNode || !bytes.Equal(secret, r.pathSecret) {
				t.Errorf("new path from %d at leaf %d: path secret at node %d, committer says node %d", sender, j, r.pathSecretNode, node)
			}
			if k == 0 {
				assertTreeEqual(t, base, created)
			}
			base.rollback()
			// As a new member would, from the Welcome's path secret
			// (§12.4.3.1): derive from the common ancestor upwards.
			joiner := &privateTree{suite: s, leaf: j}
			commitSecret, err := joiner.setPathSecretsFrom(created, node, secret)
			if err != nil || !bytes.Equal(commitSecret, cr.commitSecret) {
				t.Errorf("joiner at leaf %d from node %d: commit secret differs, %v", j, node, err)
			}
			decrypted++
		}
		// The created tree validates as a joiner would see it.
		th, _ := created.treeHash()
		if testing.Short() && sender != LeafIndex(v.UpdatePaths[0].Sender) {
			cr.Zero()
			continue
		}
		if err := created.validate(treeValidation{groupID: v.GroupID, treeHash: bytes.Clone(th)}); err != nil {
			t.Fatalf("tree after created path does not validate: %v", err)
		}
		cr.Zero()
	}
	return decrypted, possible
}

// receivers lists the leaves other than sender that hold private state, in
// order. With -short it samples: at most three of them (first, middle,
// last: the first and last decrypt at opposite ends of the sender's path),
// and only the last for the suites whose curves the standard library
// implements slowly (P-384, P-521) or that come from circl (X448, Ed448).
func receivers(privs map[LeafIndex]*privateTree, sender LeafIndex, cs uint16) []LeafIndex {
	var all []LeafIndex
	for j := range privs {
		if j != sender {
			all = append(all, j)
		}
	}
	slices.Sort(all)
	if !testing.Short() || len(all) <= 1 {
		return all
	}
	n := len(all)
	if slowSuite(cs) {
		return all[n-1:]
	}
	if n <= 3 {
		return all
	}
	return []LeafIndex{all[0], all[n/2], all[n-1]}
}

func slowSuite(cs uint16) bool {
	return cs == 4 || cs == 5 || cs == 6 || cs == 7
}

// TestApplyUpdatePathRejects feeds corrupted UpdatePaths from treekem.json
// and checks each is refused with its typed error and leaves the tree
// unchanged.
func TestApplyUpdatePathRejects(t *testing.T) {
	var vs []treeKEMVector
	readJSON(t, "treekem.json", &vs)
	ran := 0
	for vi, v := range vs {
		if v.CipherSuite != 1 || len(v.UpdatePaths) == 0 {
			continue
		}
		s := mustSuite(t, 1)
		gc := GroupContext{CipherSuite: 1, GroupID: v.GroupID, Epoch: v.Epoch, ConfirmedTranscriptHash: v.ConfirmedTranscriptHash}
		up := v.UpdatePaths[0]
		sender := LeafIndex(up.Sender)
		var recv *privateTree
		for _, lp := range v.LeavesPrivate {
			if LeafIndex(lp.Index) != sender {
				base := loadTree(t, s, v.RatchetTree)
				recv = newPrivateTree(s, LeafIndex(lp.Index), HPKEPrivateKey(lp.EncryptionPriv), base.leaf(LeafIndex(lp.Index)).EncryptionKey)
				for _, ps := range lp.PathSecrets {
					if err := recv.setPathSecret(base, NodeIndex(ps.Node), ps.PathSecret); err != nil {
						t.Fatal(err)
					}
				}
				break
			}
		}
		var checkLeaf LeafNodeValidator
		try := func(what string, mutate func(p *UpdatePath), want error) {
			t.Helper()
			path, err := DecodeUpdatePath(up.UpdatePath)
			if err != nil {
				t.Fatal(err)
			}
			mutate(path)
			tr := loadTree(t, s, v.RatchetTree)
			before := encodeTree(t, tr)
			_, err = tr.applyUpdatePath(sender, path, gc, nil, recv, checkLeaf)
			if !errors.Is(err, want) {
				t.Errorf("vector %d: %s: got %v, want %v", vi, what, err, want)
			}
			if !bytes.Equal(encodeTree(t, tr), before) {
				t.Errorf("vector %d: %s: tree changed", vi, what)
			}
			assertTreeEqual(t, tr, loadTree(t, s, v.RatchetTree))
			ran++
		}
		try("leaf signature", func(p *UpdatePath) { p.LeafNode.Signature[3] ^= 1 }, ErrInvalidLeafSignature)
		try("leaf source", func(p *UpdatePath) { p.LeafNode.Source = LeafNodeSourceUpdate; p.LeafNode.ParentHash = nil }, ErrInvalidLeafNode)
		if len(up.PathSecrets) > 0 {
			try("too few nodes", func(p *UpdatePath) { p.Nodes = p.Nodes[:len(p.Nodes)-1] }, ErrInvalidUpdatePath)
			try("extra ciphertext", func(p *UpdatePath) {
				p.Nodes[0].EncryptedPathSecret = append(p.Nodes[0].EncryptedPathSecret, p.Nodes[0].EncryptedPathSecret[0])
			}, ErrInvalidUpdatePath)
			try("node key reused", func(p *UpdatePath) {
				p.Nodes[len(p.Nodes)-1].EncryptionKey = p.LeafNode.EncryptionKey
			}, ErrDuplicateKey)
			try("node key changed", func(p *UpdatePath) {
				k := bytes.Clone(p.Nodes[0].EncryptionKey)
				// Another valid key: the receiver's own leaf key would be a
				// duplicate, so take the sender's old leaf key's sibling:
				// swapping two path keys keeps them unique.
				if len(p.Nodes) > 1 {
					p.Nodes[0].EncryptionKey, p.Nodes[1].EncryptionKey = p.Nodes[1].EncryptionKey, k
				} else {
					p.Nodes[0].EncryptionKey = k[:len(k)-1]
				}
			}, ErrInvalidParentHash)
			try("ciphertext", func(p *UpdatePath) {
				for i := range p.Nodes {
					for k := range p.Nodes[i].EncryptedPathSecret {
						p.Nodes[i].EncryptedPathSecret[k].Ciphertext[0] ^= 1
					}
				}
			}, ErrPathDecrypt)
		}
		// The leaf's checks run beside the decryption when this member
		// decrypts (pathWork's tasks): their failures still come first,
		// the validator sees only a leaf whose signature passed, and the
		// tree is left unchanged.
		if len(up.PathSecrets) > 0 {
			validated := 0
			checkLeaf = func(LeafIndex, *LeafNode) error { validated++; return errors.New("refused by the application") }
			try("leaf refused by the validator", func(*UpdatePath) {}, ErrInvalidLeafNode)
			try("leaf refused by the validator, bad ciphertext", func(p *UpdatePath) {
				for i := range p.Nodes {
					for k := range p.Nodes[i].EncryptedPathSecret {
						p.Nodes[i].EncryptedPathSecret[k].Ciphertext[0] ^= 1
					}
				}
			}, ErrInvalidLeafNode)
			if validated != 2 {
				t.Fatalf("vector %d: validator called %d times, want 2", vi, validated)
			}
			try("leaf signature before the validator", func(p *UpdatePath) { p.LeafNode.Signature[3] ^= 1 }, ErrInvalidLeafSignature)
			if validated != 2 {
				t.Fatalf("vector %d: validator saw a leaf whose signature failed", vi)
			}
			checkLeaf = nil
		}
		try("duplicate of old leaf key", func(p *UpdatePath) {
			base := loadTree(t, s, v.RatchetTree)
			p.LeafNode.EncryptionKey = base.leaf(sender).EncryptionKey
		}, ErrInvalidLeafSignature) // the signature covers the key
	}
	if ran == 0 {
		t.Fatal("no case ran")
	}
}

// TestUpdatePathExcludesJoiners builds a group with real keys, adds two
// members, and commits with a path that leaves them out (§7.6, §12.4.2):
// no ciphertext is addressed to them, every old member decrypts, the new
// members reach the same commit secret from the path secret their Welcome
// would carry, and a receiver that does not exclude them refuses the path.
func TestUpdatePathExcludesJoiners(t *testing.T) {
	h := newOpsHarness(t, 11)
	s := h.s
	encPriv := map[LeafIndex]suite.HPKEPrivateKey{}
	addMember := func() LeafIndex {
		ln, sk := h.synthLeaf(0, LeafNodeSourceKeyPackage)
		priv, pub, err := s.GenerateHPKEKey()
		if err != nil {
			t.Fatal(err)
		}
		ln.EncryptionKey = HPKEPublicKey(pub)
		if err := ln.Sign(1, sk, nil, 0); err != nil {
			t.Fatal(err)
		}
		i, err := h.tr.addLeaf(ln)
		if err != nil {
			t.Fatal(err)
		}
		h.sig[i], encPriv[i] = sk, priv
		return i
	}
	// Leaf 0 of the harness has no known private key: replace it.
	h.tr = newBlankTree(s, 1)
	first := addMember()
	for range 6 {
		addMember()
	}
	gc := GroupContext{CipherSuite: 1, GroupID: h.gid, Epoch: 1}
	// Leaf 0 commits so that parent nodes exist; everyone applies it.
	privs := commitFirst(t, h, first, gc, encPriv)

	// Two joiners, then leaf 3 commits excluding them.
	j1, j2 := addMember(), addMember()
	exclude := []LeafIndex{j1, j2}
	committer := LeafIndex(3)
	gc.Epoch = 2
	template := *h.tr.leaf(committer)
	tr := h.tr.clone()
	res, err := tr.createUpdatePath(committer, &template, h.sig[committer], gc, []LeafIndex{j2, j1}) // any order
	if err != nil {
		t.Fatal(err)
	}
	fdp, cop := h.tr.filteredDirectPath(nil, nil, committer)
	withJoiners := 0
	for i := range fdp {
		all := h.tr.resolution(nil, cop[i])
		some := h.tr.resolutionExcept(nil, cop[i], exclude)
		if len(res.path.Nodes[i].EncryptedPathSecret) != len(some) {
			t.Fatalf("node %d: %d ciphertexts for a resolution of %d without joiners", fdp[i], len(res.path.Nodes[i].EncryptedPathSecret), len(some))
		}
		if len(all) > len(some) {
			withJoiners++
		}
		// No ciphertext opens with a joiner's leaf key.
		for _, j := range exclude {
			for _, c := range res.path.Nodes[i].EncryptedPathSecret {
				if _, err := s.DecryptWithLabel(encPriv[j], labelUpdatePathNode, res.groupContext, c.KEMOutput, c.Ciphertext); err == nil {
					t.Fatalf("joiner %d can decrypt the path secret of node %d", j, fdp[i])
				}
			}
		}
	}
	if withJoiners == 0 {
		t.Fatal("the joiners are in no copath resolution; the test checks nothing")
	}
	for i, p := range privs {
		if i == committer {
			continue
		}
		r, err := h.tr.clone().applyUpdatePath(committer, res.path, gc, exclude, p, nil)
		if err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
		if !bytes.Equal(r.commitSecret, res.commitSecret) {
			t.Fatalf("member %d: commit secret differs", i)
		}
	}
	for _, j := range exclude {
		node, secret := res.pathSecretFor(committer, j)
		if secret == nil {
			t.Fatalf("no path secret for joiner %d", j)
		}
		joiner := &privateTree{suite: s, leaf: j}
		cs, err := joiner.setPathSecretsFrom(tr, node, secret)
		if err != nil || !bytes.Equal(cs, res.commitSecret) {
			t.Fatalf("joiner %d: commit secret differs: %v", j, err)
		}
		// A joiner never processes the path itself.
		p := newPrivateTree(s, j, HPKEPrivateKey(encPriv[j]), h.tr.leaf(j).EncryptionKey)
		if _, err := h.tr.clone().applyUpdatePath(committer, res.path, gc, exclude, p, nil); !errors.Is(err, ErrPathDecrypt) {
			t.Fatalf("joiner %d processing the path: %v", j, err)
		}
	}
	// A receiver that does not know the joiners were excluded counts more
	// resolution entries than ciphertexts.
	if _, err := h.tr.clone().applyUpdatePath(committer, res.path, gc, nil, privs[0], nil); !errors.Is(err, ErrInvalidUpdatePath) {
		t.Fatalf("path applied without the exclusion list: %v", err)
	}
}

// FuzzApplyUpdatePath applies arbitrary UpdatePaths (seeded with the
// suite-1 paths of treekem.json) to the vector's tree as a member that
// holds private keys: it must never panic, every refusal must be a
// *TreeError, and a refused path must leave the tree unchanged.
func FuzzApplyUpdatePath(f *testing.F) {
	var vs []treeKEMVector
	readJSON(f, "treekem.json", &vs)
	var v *treeKEMVector
	for i := range vs {
		if vs[i].CipherSuite == 1 && len(vs[i].LeavesPrivate) >= 3 {
			v = &vs[i]
			break
		}
	}
	if v == nil {
		f.Fatal("no suite-1 treekem vector with three private leaves")
	}
	for _, up := range v.UpdatePaths {
		f.Add(uint8(up.Sender), []byte(up.UpdatePath))
	}
	s := mustSuite(f, 1)
	gc := GroupContext{CipherSuite: 1, GroupID: v.GroupID, Epoch: v.Epoch, ConfirmedTranscriptHash: v.ConfirmedTranscriptHash}
	base := loadTree(f, s, v.RatchetTree)
	before := encodeTree(f, base)
	lp := v.LeavesPrivate[0]
	priv := newPrivateTree(s, LeafIndex(lp.Index), HPKEPrivateKey(lp.EncryptionPriv), base.leaf(LeafIndex(lp.Index)).EncryptionKey)
	for _, ps := range lp.PathSecrets {
		if err := priv.setPathSecret(base, NodeIndex(ps.Node), ps.PathSecret); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, sender uint8, enc []byte) {
		path, err := DecodeUpdatePath(enc)
		if err != nil {
			return
		}
		tr := loadTree(t, s, v.RatchetTree)
		res, err := tr.applyUpdatePath(LeafIndex(sender), path, gc, nil, priv, nil)
		if err != nil {
			var te *TreeError
			if !errors.As(err, &te) {
				t.Fatalf("untyped error %v", err)
			}
			if !bytes.Equal(encodeTree(t, tr), before) {
				t.Fatal("refused path changed the tree")
			}
			return
		}
		res.Zero()
	})
}

// checkLeafSignatureFirst: applyUpdatePath checks the leaf signature
// concurrently with the other checks, but a bad signature is reported as
// if it had been checked first, and the tree is left unchanged.
func checkLeafSignatureFirst(t *testing.T, tr *publicTree, sender LeafIndex, path *UpdatePath, gc GroupContext) {
	t.Helper()
	th, err := tr.treeHash()
	if err != nil {
		t.Fatal(err)
	}
	before := bytes.Clone(th)
	bad := *path
	bad.LeafNode.Signature = bytes.Clone(path.LeafNode.Signature)
	bad.LeafNode.Signature[0] ^= 1
	short := bad
	short.Nodes = bad.Nodes[1:]
	for _, p := range []*UpdatePath{&bad, &short} {
		if _, err := tr.applyUpdatePath(sender, p, gc, nil, nil, nil); !errors.Is(err, ErrInvalidLeafSignature) {
			t.Fatalf("bad leaf signature, %d nodes: err = %v, want ErrInvalidLeafSignature", len(p.Nodes), err)
		}
		if th, _ := tr.treeHash(); !bytes.Equal(th, before) {
			t.Fatal("tree changed by a refused UpdatePath")
		}
	}
	// The control: the short path with its genuine signature fails as a
	// malformed path.
	short.LeafNode = path.LeafNode
	if _, err := tr.applyUpdatePath(sender, &short, gc, nil, nil, nil); !errors.Is(err, ErrInvalidUpdatePath) {
		t.Fatalf("short path: err = %v, want ErrInvalidUpdatePath", err)
	}
}

// TestApplyUpdatePathKeyMismatchAtTop: a committer sends an UpdatePath
// whose parent hashes, leaf signature and ciphertexts are all consistent
// but whose top node's public key is not the one its path secret derives
// (§7.5, §12.4.2 step 6). Every receiver refuses it with
// ErrPathKeyMismatch at that node, whether it derives that key pair alone
// (the far half) or all of them (the committer's sibling, whose last task
// it is), and neither the tree nor its private state changes.
func TestApplyUpdatePathKeyMismatchAtTop(t *testing.T) {
	for _, cs := range testSuites {
		t.Run(fmt.Sprintf("suite%04x", uint16(cs)), func(t *testing.T) { testApplyUpdatePathKeyMismatchAtTop(t, cs) })
	}
}

// newKeyedTree returns a harness (seeded with seed) whose tree holds n
// members with signed leaves, and each member's encryption private key.
// updatePathOf is committer's UpdatePath of h's tree (a clone), its leaf
// otherwise unchanged, under gc.
func updatePathOf(t *testing.T, h *opsHarness, committer LeafIndex, gc GroupContext) *updatePathResult {
	t.Helper()
	template := *h.tr.leaf(committer)
	res, err := h.tr.clone().createUpdatePath(committer, &template, h.sig[committer], gc, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func newKeyedTree(t *testing.T, cs CipherSuite, seed uint64, n int) (*opsHarness, map[LeafIndex]suite.HPKEPrivateKey) {
	t.Helper()
	h := newOpsHarness(t, seed)
	h.s = mustSuite(t, uint16(cs))
	encPriv := map[LeafIndex]suite.HPKEPrivateKey{}
	h.tr = newBlankTree(h.s, 1)
	for range n {
		ln, sk := h.synthLeaf(0, LeafNodeSourceKeyPackage)
		priv, pub, err := h.s.GenerateHPKEKey()
		if err != nil {
			t.Fatal(err)
		}
		ln.EncryptionKey = HPKEPublicKey(pub)
		if err := ln.Sign(cs, sk, nil, 0); err != nil {
			t.Fatal(err)
		}
		i, err := h.tr.addLeaf(ln)
		if err != nil {
			t.Fatal(err)
		}
		h.sig[i], encPriv[i] = sk, priv
	}
	return h, encPriv
}

// commitFirst has first commit a full UpdatePath in h's tree and every
// member of encPriv apply it, so that every parent node is set; it
// replaces h's tree with the result and returns each member's private
// tree.
func commitFirst(t *testing.T, h *opsHarness, first LeafIndex, gc GroupContext, encPriv map[LeafIndex]suite.HPKEPrivateKey) map[LeafIndex]*privateTree {
	t.Helper()
	template := *h.tr.leaf(first)
	c0, err := h.tr.clone().createUpdatePath(first, &template, h.sig[first], gc, nil)
	if err != nil {
		t.Fatal(err)
	}
	privs := map[LeafIndex]*privateTree{first: c0.priv}
	merged := h.tr.clone()
	if _, err := merged.applyUpdatePath(first, c0.path, gc, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	for i, k := range encPriv {
		if i == first {
			continue
		}
		r, err := h.tr.clone().applyUpdatePath(first, c0.path, gc, nil, newPrivateTree(h.s, i, HPKEPrivateKey(k), h.tr.leaf(i).EncryptionKey), nil)
		if err != nil {
			t.Fatal(err)
		}
		privs[i] = r.priv
	}
	h.tr = merged
	return privs
}

func testApplyUpdatePathKeyMismatchAtTop(t *testing.T, cs CipherSuite) {
	h, encPriv := newKeyedTree(t, cs, 12, 8)
	s := h.s
	gc := GroupContext{CipherSuite: cs, GroupID: h.gid, Epoch: 1}
	// Leaf 0 commits so that every parent node is set; all apply it.
	first := LeafIndex(0)
	privs := commitFirst(t, h, first, gc, encPriv)

	// Leaf 2 commits; the top node's key is replaced, and the rest made
	// consistent with it: parent hashes, the leaf's signature, and the
	// path secrets encrypted again under the GroupContext of the tree the
	// tampered path yields.
	committer := LeafIndex(2)
	gc.Epoch = 2
	res := updatePathOf(t, h, committer, gc)
	path := res.path
	top := len(path.Nodes) - 1
	_, other, err := s.GenerateHPKEKey()
	if err != nil {
		t.Fatal(err)
	}
	path.Nodes[top].EncryptionKey = HPKEPublicKey(other)
	fdp, cop := h.tr.filteredDirectPath(nil, nil, committer)
	nodes := make([]ParentNode, len(fdp))
	for i := range nodes {
		nodes[i].EncryptionKey = path.Nodes[i].EncryptionKey
	}
	ph := h.tr.clone()
	for _, c := range cop {
		ph.freshen(c)
	}
	path.LeafNode.ParentHash = ph.chainParentHashes(nodes, cop)
	if err := path.LeafNode.Sign(cs, h.sig[committer], gc.GroupID, uint32(committer)); err != nil {
		t.Fatal(err)
	}
	m, err := h.tr.clone().applyUpdatePath(committer, path, gc, nil, nil, nil)
	if err != nil {
		t.Fatalf("the tampered path does not merge: %v", err)
	}
	for i := range fdp {
		for k, r := range h.tr.resolution(nil, cop[i]) {
			kem, ct, err := s.EncryptWithLabel(suite.HPKEPublicKey(h.tr.encryptionKey(r)), labelUpdatePathNode, m.groupContext, res.pathSecrets[i].secret)
			if err != nil {
				t.Fatal(err)
			}
			path.Nodes[i].EncryptedPathSecret[k] = HPKECiphertext{KEMOutput: kem, Ciphertext: ct}
		}
	}

	receivers := 0
	for i, p := range privs {
		if i == committer {
			continue
		}
		tr := h.tr.clone()
		before := p.clone()
		_, err := tr.applyUpdatePath(committer, path, gc, nil, p, nil)
		var te *TreeError
		if !errors.As(err, &te) || !errors.Is(err, ErrPathKeyMismatch) || NodeIndex(te.Node) != fdp[top] {
			t.Fatalf("member %d: %v, want ErrPathKeyMismatch at node %d", i, err, fdp[top])
		}
		assertTreeEqual(t, tr, h.tr)
		if !reflect.DeepEqual(p, before) {
			t.Fatalf("member %d: private state changed", i)
		}
		// The validator's refusal comes before the key mismatch; the
		// derived secrets are wiped either way.
		var works []*pathWork
		testHookPathWork = func(w *pathWork) { works = append(works, w) }
		defer func() { testHookPathWork = nil }()
		refuse := func(LeafIndex, *LeafNode) error { return errors.New("refused") }
		_, err = tr.applyUpdatePath(committer, path, gc, nil, p, refuse)
		testHookPathWork = nil
		if len(works) != 1 || len(works[0].secrets) == 0 {
			t.Fatalf("member %d: %d path works seen, want 1 that decrypted", i, len(works))
		}
		w := works[0]
		held := append(slices.Clone(w.secrets), w.commitSecret, w.key)
		for _, k := range w.privs {
			held = append(held, k)
		}
		for _, x := range held {
			if len(x) > 0 && !bytes.Equal(x, make([]byte, len(x))) {
				t.Fatalf("member %d: a derived secret was not wiped", i)
			}
		}
		if !errors.Is(err, ErrInvalidLeafNode) || errors.Is(err, ErrPathKeyMismatch) {
			t.Fatalf("member %d, validator refusing: %v, want ErrInvalidLeafNode", i, err)
		}
		assertTreeEqual(t, tr, h.tr)
		if !reflect.DeepEqual(p, before) {
			t.Fatalf("member %d: private state changed", i)
		}
		receivers++
	}
	if receivers != 7 {
		t.Fatalf("%d receivers", receivers)
	}
}

// TestPathHelperGuess: the key a pathHelper expands before the Commit is
// decrypted is a guess. Right or wrong (another member's key), or handed
// no work, the path applies exactly as without a helper: the same commit
// secret and private keys.
func TestPathHelperGuess(t *testing.T) {
	for _, cs := range testSuites {
		t.Run(fmt.Sprintf("suite%04x", uint16(cs)), func(t *testing.T) { testPathHelperGuess(t, cs) })
	}
}

func testPathHelperGuess(t *testing.T, cs CipherSuite) {
	h, encPriv := newKeyedTree(t, cs, 13, 5)
	s := h.s
	gc := GroupContext{CipherSuite: cs, GroupID: h.gid, Epoch: 1}
	committer := LeafIndex(3)
	res := updatePathOf(t, h, committer, gc)
	for i, k := range encPriv {
		if i == committer {
			continue
		}
		p := newPrivateTree(s, i, HPKEPrivateKey(k), h.tr.leaf(i).EncryptionKey)
		want, err := h.tr.clone().applyUpdatePath(committer, res.path, gc, nil, p, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(want.commitSecret, res.commitSecret) {
			t.Fatalf("member %d: commit secret differs", i)
		}
		other := encPriv[(i+1)%5]
		if i+1 == committer {
			other = encPriv[(i+2)%5]
		}
		for name, guess := range map[string]suite.HPKEPrivateKey{"right": k, "wrong": other} {
			helper := newPathHelper(s, slices.Clone(guess))
			r, err := h.tr.clone().applyUpdatePathBeside(committer, res.path, gc, nil, p, nil, &pathBeside{helper: helper})
			helper.release() // no-op: handed
			if err != nil {
				t.Fatalf("member %d, %s guess: %v", i, name, err)
			}
			if !bytes.Equal(r.commitSecret, want.commitSecret) || !bytes.Equal(r.pathSecret, want.pathSecret) {
				t.Fatalf("member %d, %s guess: secrets differ", i, name)
			}
			if !reflect.DeepEqual(r.priv.keys, want.priv.keys) {
				t.Fatalf("member %d, %s guess: private keys differ", i, name)
			}
		}
		// A helper never handed work ends on release.
		newPathHelper(s, slices.Clone(k)).release()
	}
}

// TestRefusedUpdatePathEndsHelpers: an UpdatePath refused by the checks
// that run before its decryption (here a bad leaf signature) ends the
// helper goroutines started for it before applyUpdatePathBeside returns,
// so none is left holding (or reading) the member's key.
func TestRefusedUpdatePathEndsHelpers(t *testing.T) {
	for _, cs := range testSuites {
		h, encPriv := newKeyedTree(t, cs, 13, 5)
		s := h.s
		gc := GroupContext{CipherSuite: cs, GroupID: h.gid, Epoch: 1}
		committer := LeafIndex(3)
		res := updatePathOf(t, h, committer, gc)
		res.path.LeafNode.Signature[0] ^= 1
		before := runtime.NumGoroutine()
		for i := range LeafIndex(3) {
			p := newPrivateTree(s, i, HPKEPrivateKey(encPriv[i]), h.tr.leaf(i).EncryptionKey)
			if _, err := h.tr.clone().applyUpdatePathBeside(committer, res.path, gc, nil, p, nil, nil); err == nil {
				t.Fatalf("member %d accepted a bad leaf signature", i)
			}
		}
		// A helper calls Done just before it exits: allow it to finish
		// exiting, but not to stay.
		for range 1000 {
			if runtime.NumGoroutine() <= before {
				break
			}
			time.Sleep(time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			t.Fatalf("suite %04x: %d goroutines left after refused paths", uint16(cs), n-before)
		}
	}
}
