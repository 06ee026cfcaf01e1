package mls

// TreeKEM (RFC 9420 §7.4–§7.6): creating an UpdatePath for a Commit and
// merging and decrypting a received one.

import (
	"bytes"
	"crypto/rand"
	"io"
	"runtime"
	"slices"

	"github.com/moat-im/moat/crypto/mls/internal/suite"
	"github.com/moat-im/moat/crypto/mls/internal/treemath"
)

// labelUpdatePathNode is the EncryptWithLabel label of path secrets (§7.6).
const labelUpdatePathNode = "UpdatePathNode"

// nodeSecret is the path secret of one node of the committer's filtered
// direct path: what a Welcome gives a new member (§12.4.3.1).
type nodeSecret struct {
	node   NodeIndex
	secret []byte
}

// updatePathResult is what creating an UpdatePath yields. Its secrets must
// be zeroed (Zero) once the Commit and Welcome are built.
type updatePathResult struct {
	path *UpdatePath
	// commitSecret is path_secret[n+1] (§12.4.2).
	commitSecret []byte
	// pathSecrets are the path secrets of the filtered direct path, leaf
	// to root.
	pathSecrets []nodeSecret
	// priv is the committer's private state after the commit.
	priv *privateTree
	// groupContext is the encoded provisional GroupContext the path
	// secrets were encrypted under (its tree_hash is the new tree's).
	groupContext []byte
}

// Zero overwrites the result's secrets (best effort).
func (r *updatePathResult) Zero() {
	suite.Zero(r.commitSecret)
	for _, s := range r.pathSecrets {
		suite.Zero(s.secret)
	}
	if r.priv != nil {
		r.priv.Zero()
	}
}

// pathSecretFor returns the path secret a new member at leaf j gets in its
// Welcome: that of the lowest common ancestor of j and the committer
// (§12.4.3.1), which is on the filtered direct path whenever j is a
// member. It returns nil if it is not.
func (r *updatePathResult) pathSecretFor(from, j LeafIndex) (NodeIndex, []byte) {
	a := treemath.CommonAncestor(from.Node(), j.Node())
	for _, s := range r.pathSecrets {
		if s.node == a {
			return s.node, s.secret
		}
	}
	// Not on the filtered direct path: j's side of a has an empty
	// resolution, so j is not a member.
	return 0, nil
}

// treeKEMRand is where createUpdatePath draws secrets; tests replace it.
var treeKEMRand io.Reader = rand.Reader

// createUpdatePath generates fresh keys for leaf from and its filtered
// direct path, merges them into t, and encrypts each path secret to the
// resolution of the copath child, new members (exclude) left out
// (§7.4–§7.6).
//
// template supplies the new LeafNode's signature key, credential,
// capabilities and extensions; the encryption key, source (commit),
// parent hash and signature are set here, the signature by sigPriv over
// gc.GroupID and from. gc is the provisional GroupContext of the new epoch;
// its tree_hash is replaced by the hash of the tree after the merge.
//
// On error t is unchanged (unless the caller's journal is open, in which
// case the caller rolls back).
func (t *publicTree) createUpdatePath(from LeafIndex, template *LeafNode, sigPriv SignaturePrivateKey, gc GroupContext, exclude []LeafIndex) (res *updatePathResult, err error) {
	const op = "creating UpdatePath"
	s := t.suite
	if uint32(from) >= t.nLeaves {
		return nil, treeErr(op, from.Node(), ErrMalformedTree)
	}
	if j, dup := t.findSignatureKey(template.SignatureKey); dup && j != from {
		return nil, treeErr(op, j.Node(), ErrDuplicateKey)
	}
	exclude = leavesInOrder(exclude)
	fdp, cop := t.filteredDirectPath(nil, nil, from)
	for _, c := range cop {
		t.freshen(c)
	}

	res = &updatePathResult{pathSecrets: make([]nodeSecret, len(fdp))}
	defer func() {
		if err != nil {
			res.Zero()
			res = nil
		}
	}()

	// Secrets (§7.4): leaf_secret at random; path_secret[0] =
	// DeriveSecret(leaf_secret, "path"), each next one the DeriveSecret(.,
	// "path") of the previous; commit_secret one step past the last.
	leafSecret := make([]byte, s.Nh())
	defer suite.Zero(leafSecret)
	if _, err := io.ReadFull(treeKEMRand, leafSecret); err != nil {
		return nil, err
	}
	// The secrets chain; the key pairs (leaf first) are derived from them
	// on all cores.
	secrets := make([][]byte, 1+len(fdp))
	secrets[0] = leafSecret
	ps, err := s.DeriveSecret(leafSecret, "path")
	if err != nil {
		return nil, err
	}
	for i, x := range fdp {
		res.pathSecrets[i] = nodeSecret{node: x, secret: ps}
		secrets[1+i] = ps
		if ps, err = s.DeriveSecret(ps, "path"); err != nil {
			return nil, err
		}
	}
	res.commitSecret = ps
	privs, pubs, err := deriveNodeKeyPairs(s, secrets)
	if err != nil {
		return nil, err
	}
	leafPub := pubs[0]
	res.priv = &privateTree{suite: s, leaf: from}
	res.priv.set(from.Node(), privs[0], HPKEPublicKey(leafPub))
	nodes := make([]ParentNode, len(fdp))
	for i, x := range fdp {
		pub := pubs[1+i]
		if y, dup := t.findEncryptionKey(pub); dup {
			for _, k := range privs[1+i:] {
				suite.Zero(k)
			}
			return nil, treeErr(op, y, ErrDuplicateKey)
		}
		res.priv.set(x, privs[1+i], HPKEPublicKey(pub))
		nodes[i].EncryptionKey = HPKEPublicKey(pub)
	}

	// Parent hashes, root first (§7.9): each node's parent_hash is the
	// parent hash of the next node up with its copath child.
	leafParentHash := t.chainParentHashes(nodes, cop)
	ln := *template
	ln.EncryptionKey = HPKEPublicKey(leafPub)
	ln.Source = LeafNodeSourceCommit
	ln.Lifetime = nil
	ln.ParentHash = leafParentHash
	ln.Signature = nil
	if err := ln.Sign(CipherSuite(s.ID()), sigPriv, gc.GroupID, uint32(from)); err != nil {
		return nil, err
	}

	// Merge (§7.5), then encrypt under the provisional GroupContext.
	own := t.journal == nil
	if own {
		t.begin()
		defer func() {
			if err != nil {
				t.rollback()
			} else {
				t.commit()
			}
		}()
	}
	t.mergePath(from, &ln, nodes, fdp)
	th, err := t.treeHash()
	if err != nil {
		return nil, err
	}
	gc.TreeHash = th
	if res.groupContext, err = gc.Encode(); err != nil {
		return nil, err
	}
	// Encrypt each path secret to the resolution of its copath child
	// (§7.6), the seals on all cores.
	path := &UpdatePath{LeafNode: ln, Nodes: make([]UpdatePathNode, len(fdp))}
	type sealJob struct {
		level int
		to    NodeIndex
		out   *HPKECiphertext
	}
	var jobs []sealJob
	var resBuf []NodeIndex
	for i := range fdp {
		path.Nodes[i].EncryptionKey = nodes[i].EncryptionKey
		resBuf = t.resolutionExcept(resBuf[:0], cop[i], exclude)
		cts := make([]HPKECiphertext, len(resBuf))
		for k, r := range resBuf {
			jobs = append(jobs, sealJob{level: i, to: r, out: &cts[k]})
		}
		path.Nodes[i].EncryptedPathSecret = cts
	}
	errs := make([]error, len(jobs))
	parallelFor(len(jobs), runtime.GOMAXPROCS(0), func(j int, _ *[]byte) {
		job := jobs[j]
		kem, ct, err := s.EncryptWithLabel(suite.HPKEPublicKey(t.encryptionKey(job.to)), labelUpdatePathNode, res.groupContext, res.pathSecrets[job.level].secret)
		*job.out, errs[j] = HPKECiphertext{KEMOutput: kem, Ciphertext: ct}, err
	})
	for j, err := range errs {
		if err != nil {
			return nil, &TreeError{Op: op, Node: uint32(jobs[j].to), Err: ErrInvalidUpdatePath, Cause: err}
		}
	}
	res.path = path
	return res, nil
}

// leavesInOrder returns leaves in increasing order, copying only if they
// are not already.
func leavesInOrder(leaves []LeafIndex) []LeafIndex {
	if slices.IsSorted(leaves) {
		return leaves
	}
	s := slices.Clone(leaves)
	slices.Sort(s)
	return s
}

// freshen brings the cached tree hashes of x's subtree up to date.
func (t *publicTree) freshen(x NodeIndex) {
	n, err := t.computeHash(x, &t.buf)
	t.staleCount -= n
	_ = err // an unencodable node surfaces again from treeHash
}

// chainParentHashes sets the parent_hash of each node of a filtered direct
// path (nodes, leaf to root, with copath children cop) to the parent hash
// of the next node up, the root's to empty, and returns the parent hash
// the leaf must carry (§7.9). The nodes' unmerged lists are empty, so the
// original sibling tree hash is the copath child's current tree hash,
// which must be fresh.
func (t *publicTree) chainParentHashes(nodes []ParentNode, cop []NodeIndex) []byte {
	above := []byte{}
	for i := len(nodes) - 1; i >= 0; i-- {
		nodes[i].ParentHash = above
		nodes[i].UnmergedLeaves = nil
		above = t.parentHash(&t.buf, &nodes[i], t.nodeHash(cop[i]))
	}
	return above
}

// mergePath writes a committer's new leaf and filtered direct path into
// the tree: the direct path is blanked, then the path nodes set (§7.5).
func (t *publicTree) mergePath(from LeafIndex, ln *LeafNode, nodes []ParentNode, fdp []NodeIndex) {
	t.setLeaf(from, nil) // drop the old leaf's keys from the index first
	t.blankDirectPath(from)
	for i, x := range fdp {
		t.setParent(x, &nodes[i])
	}
	t.setLeaf(from, ln)
}

// applyUpdatePathResult is what merging and decrypting an UpdatePath
// yields.
type applyUpdatePathResult struct {
	// commitSecret is path_secret[n+1] (§12.4.2).
	commitSecret []byte
	// pathSecret is the path secret this member decrypted and the node it
	// belongs to.
	pathSecret     []byte
	pathSecretNode NodeIndex
	// priv is this member's private state after the merge.
	priv *privateTree
	// groupContext is the encoded provisional GroupContext.
	groupContext []byte
}

// Zero overwrites the result's secrets (best effort). It accepts nil.
func (r *applyUpdatePathResult) Zero() {
	if r == nil {
		return
	}
	suite.Zero(r.commitSecret)
	suite.Zero(r.pathSecret)
	if r.priv != nil {
		r.priv.Zero()
	}
}

// pathKey finds where priv's member decrypts an UpdatePath from sender
// (§12.4.2), given sender's copath cop and the leaves added by the Commit
// (exclude, sorted): the index pos of the path node whose copath child
// covers its leaf, the index ct, in that child's resolution without the
// excluded leaves, of the first node it holds the private key of, and
// that key. buf is scratch space.
func (t *publicTree) pathKey(priv *privateTree, sender LeafIndex, cop []NodeIndex, exclude []LeafIndex, buf []NodeIndex) (pos, ct int, key suite.HPKEPrivateKey, err error) {
	const op = "applying UpdatePath"
	me := priv.leaf
	if me == sender || containsLeaf(exclude, me) {
		return -1, -1, nil, treeErr(op, me.Node(), ErrPathDecrypt)
	}
	pos = -1
	for i, c := range cop {
		if treemath.IsDescendant(me.Node(), c) {
			pos = i
			break
		}
	}
	if pos < 0 {
		return -1, -1, nil, treeErr(op, me.Node(), ErrPathDecrypt)
	}
	for k, r := range t.resolutionExcept(buf, cop[pos], exclude) {
		if kk, ok := priv.keyFor(t, r); ok {
			return pos, k, kk, nil
		}
	}
	return -1, -1, nil, treeErr(op, cop[pos], ErrPathDecrypt)
}

// applyUpdatePath validates path from leaf sender against t, merges it,
// and decrypts the path secret meant for priv's leaf (§7.5, §12.4.2). t
// must already reflect the Commit's proposals; exclude are the
// leaves those proposals added. gc is the provisional GroupContext; its
// tree_hash is replaced by the new tree's hash. checkLeaf, if not nil, is
// the application's validation of the new LeafNode (credential,
// capabilities); the signature, source, parent hash and key uniqueness
// are checked here.
//
// With priv nil the path is validated and merged but nothing decrypted.
// On error t is unchanged (unless the caller's journal is open) and priv
// is never modified; on success the new private state is in the result.
func (t *publicTree) applyUpdatePath(sender LeafIndex, path *UpdatePath, gc GroupContext, exclude []LeafIndex, priv *privateTree, checkLeaf LeafNodeValidator) (res *applyUpdatePathResult, err error) {
	return t.applyUpdatePathBeside(sender, path, gc, exclude, priv, checkLeaf, nil)
}

// pathBeside is a caller's work run beside the derivation of an
// UpdatePath's key pairs, by the same goroutines (see pathWork).
type pathBeside struct {
	// helper, if not nil, is the helper goroutine to use, started before
	// the Commit was decrypted (startPathHelper).
	helper *pathHelper
	// first is a check with no inputs (the Commit's signature), run
	// ahead of the rest; the caller waits for it itself.
	first *pendingCheck
	// withSecrets runs once the new tree's hash and the commit secret are
	// known (arguments: the caller's copies), before the key pairs are
	// checked: a later check may still fail the whole operation.
	withSecrets func(treeHash, commitSecret []byte)
}

// applyUpdatePathBeside is applyUpdatePath that, when this member
// decrypts a path secret, also runs beside's work (if not nil) with the
// derivation of the path's key pairs. When nothing is decrypted, or the
// decryption fails, beside's work is not done: beside.first is left for
// the caller to wait for, withSecrets is not called.
func (t *publicTree) applyUpdatePathBeside(sender LeafIndex, path *UpdatePath, gc GroupContext, exclude []LeafIndex, priv *privateTree, checkLeaf LeafNodeValidator, beside *pathBeside) (res *applyUpdatePathResult, err error) {
	const op = "applying UpdatePath"
	s := t.suite
	if uint32(sender) >= t.nLeaves {
		return nil, treeErr(op, sender.Node(), ErrMalformedTree)
	}
	ln := &path.LeafNode
	if ln.Source != LeafNodeSourceCommit {
		return nil, treeErr(op, sender.Node(), ErrInvalidLeafNode)
	}
	// The leaf's signature must pass before anything is kept, and its
	// failure takes precedence over any other (as if it had been checked
	// first). checkLeaf (the application's credential validation
	// included) only ever sees a leaf whose signature passed. They run on
	// another core while the structural checks run; when this member
	// decrypts, that core first expands its key and decapsulates, and the
	// check is one of pathWork's tasks: the path is merged (provisionally)
	// and decrypted beside it, and nothing is kept unless it passes.
	leaf := newCheck(func() error {
		if err := ln.verifySignature(s, gc.GroupID, uint32(sender)); err != nil {
			return &TreeError{Op: op, Node: uint32(sender.Node()), Err: ErrInvalidLeafSignature, Cause: err}
		}
		if checkLeaf != nil {
			if err := checkLeaf(sender, ln); err != nil {
				return &TreeError{Op: op, Node: uint32(sender.Node()), Err: ErrInvalidLeafNode, Cause: err}
			}
		}
		return nil
	})
	var (
		fdp, cop []NodeIndex
		nodes    []ParentNode
		resBuf   []NodeIndex
		pos, ct  = -1, -1
		key      suite.HPKEPrivateKey
	)
	exclude = leavesInOrder(exclude)
	fdp, cop = t.filteredDirectPath(nil, nil, sender)
	// Where this member decrypts, found first, so that its key is expanded
	// and the path secret decapsulated (on another core) while the checks
	// run; a failure here is reported after theirs.
	locate := func() error {
		var err error
		pos, ct, key, err = t.pathKey(priv, sender, cop, exclude, resBuf[:0])
		return err
	}
	var errLocate error
	var w *pathWork
	if priv != nil {
		if errLocate = locate(); errLocate == nil {
			w = startPathWork(s, key, path, pos, ct, fdp[pos], len(fdp)-pos, leaf, beside)
			defer w.abort() // no-op once the group context is given
			if testHookPathWork != nil {
				defer testHookPathWork(w) // after zero and abort
			}
		}
	}
	if w == nil {
		leaf.start()
	}
	structural := func() error {
		// New keys (§12.4.2): none of them may already be in the tree (the
		// committer's old leaf included), nor repeat within the path.
		if x, dup := t.findEncryptionKey(ln.EncryptionKey); dup {
			return treeErr(op, x, ErrDuplicateKey)
		}
		if j, dup := t.findSignatureKey(ln.SignatureKey); dup && j != sender {
			return treeErr(op, j.Node(), ErrDuplicateKey)
		}
		if len(path.Nodes) != len(fdp) {
			return treeErr(op, sender.Node(), ErrInvalidUpdatePath)
		}
		nodes = make([]ParentNode, len(fdp))
		for i := range fdp {
			k := path.Nodes[i].EncryptionKey
			if x, dup := t.findEncryptionKey(k); dup {
				return treeErr(op, x, ErrDuplicateKey)
			}
			if bytes.Equal(k, ln.EncryptionKey) {
				return treeErr(op, fdp[i], ErrDuplicateKey)
			}
			for j := range i {
				if bytes.Equal(k, path.Nodes[j].EncryptionKey) {
					return treeErr(op, fdp[i], ErrDuplicateKey)
				}
			}
			resBuf = t.resolutionExcept(resBuf[:0], cop[i], exclude)
			if len(path.Nodes[i].EncryptedPathSecret) != len(resBuf) {
				return treeErr(op, fdp[i], ErrInvalidUpdatePath)
			}
			nodes[i].EncryptionKey = k
		}
		// Parent hashes (§7.9.2): the leaf's parent_hash must be the one the
		// path implies.
		for _, c := range cop {
			t.freshen(c)
		}
		if !bytes.Equal(t.chainParentHashes(nodes, cop), ln.ParentHash) {
			return treeErr(op, sender.Node(), ErrInvalidParentHash)
		}
		return nil
	}
	errStructural := structural()
	if w == nil || errStructural != nil {
		if err := leaf.wait(); err != nil {
			return nil, err
		}
	}
	if errStructural != nil {
		return nil, errStructural
	}
	if errLocate != nil {
		return nil, errLocate
	}

	// Merge, then decrypt under the provisional GroupContext.
	own := t.journal == nil
	if own {
		t.begin()
		defer func() {
			if err != nil {
				t.rollback()
			} else {
				t.commit()
			}
		}()
	}
	// From here the leaf check may still be running (w != nil): its
	// failure comes first.
	fail := func(err error) error {
		if lerr := leaf.wait(); lerr != nil {
			return lerr
		}
		return err
	}
	t.mergePath(sender, ln, nodes, fdp)
	th, err := t.treeHash()
	if err != nil {
		return nil, fail(err)
	}
	gc.TreeHash = th
	res = &applyUpdatePathResult{}
	if res.groupContext, err = gc.Encode(); err != nil {
		return nil, fail(err)
	}
	if w == nil {
		return res, nil
	}
	// The path secret, the rest of the path and every key pair of it
	// (§7.5), with the leaf check and beside's work, on this goroutine and
	// the helpers.
	err = w.run(res.groupContext, th)
	defer w.zero()
	if err = fail(err); err != nil {
		return nil, err
	}
	newPriv := priv.clone()
	for j, pub := range w.pubs {
		i := pos + j
		if !bytes.Equal(pub, nodes[i].EncryptionKey) {
			newPriv.Zero()
			return nil, treeErr(op, fdp[i], ErrPathKeyMismatch)
		}
		newPriv.set(fdp[i], w.privs[j], nodes[i].EncryptionKey)
		w.privs[j] = nil // newPriv's now
	}
	newPriv.prune(t)
	res.pathSecret, res.pathSecretNode = slices.Clone(w.secrets[0]), fdp[pos]
	res.commitSecret, w.commitSecret = w.commitSecret, nil
	res.priv = newPriv
	return res, nil
}
