package mls

// Validating a ratchet tree as a joiner does (RFC 9420 §12.4.3.1): tree
// hash, parent hashes (§7.9.2), unmerged leaves, unique keys and every leaf
// node (§7.3). The signature checks, which dominate, run on all cores; the
// rest is linear in the tree (key uniqueness uses the tree's key index,
// built when the tree is loaded).

import (
	"bytes"
	"runtime"
	"sync/atomic"

	"github.com/moat-im/moat/crypto/mls/internal/treemath"
)

// LeafNodeValidator is the application's part of leaf node validation
// (§7.3): credential (§5.3.1), capabilities against the group's
// requirements, lifetime, extensions. The tree code has already checked
// the signature. It is called concurrently from several goroutines and
// must be safe for that.
type LeafNodeValidator func(i LeafIndex, ln *LeafNode) error

// treeValidation parameterises validate.
type treeValidation struct {
	groupID  []byte            // context of update and commit leaf signatures
	treeHash []byte            // the GroupContext's tree_hash
	leaf     LeafNodeValidator // may be nil
}

// validationChunk is the number of leaves or parent nodes one worker
// checks at a time.
const validationChunk = 64

// validate checks the tree as §12.4.3.1 requires of a joiner. Key
// uniqueness was checked when the tree was loaded (indexAll) and is kept by
// every operation.
func (t *publicTree) validate(v treeValidation) error {
	const op = "validating tree"
	if t.memberCount() == 0 {
		return treeErr(op, 0, ErrMalformedTree)
	}
	// Tree hash (§7.8), hashed on all cores when computed from scratch.
	th, err := t.treeHash()
	if err != nil {
		return err
	}
	if !bytes.Equal(th, v.treeHash) {
		return treeErr(op, t.root(), ErrTreeHashMismatch)
	}
	if err := t.checkUnmergedLeaves(); err != nil {
		return err
	}

	// Leaf nodes and parent hashes, in chunks, on a bounded pool. The
	// error reported is the one a sequential check would report (leaves
	// first, then parents, in index order), whatever the scheduling: a
	// tree with several defects, such as a corrupted leaf signature that
	// also breaks a parent hash, always fails the same way.
	nLeafChunks := (int(t.nLeaves) + validationChunk - 1) / validationChunk
	nParentChunks := (len(t.parents) + validationChunk - 1) / validationChunk
	first := newFirstError(nLeafChunks + nParentChunks)
	parallelFor(nLeafChunks+nParentChunks, runtime.GOMAXPROCS(0), func(c int, buf *[]byte) {
		if first.skip(c) {
			return
		}
		var err error
		if c < nLeafChunks {
			err = t.checkLeaves(v, c*validationChunk, min((c+1)*validationChunk, int(t.nLeaves)))
		} else {
			c0 := c - nLeafChunks
			err = t.checkParentHashes(buf, c0*validationChunk, min((c0+1)*validationChunk, len(t.parents)))
		}
		first.record(c, err)
	})
	return first.err()
}

// firstError collects the errors of n tasks run concurrently and keeps the
// one of the lowest-numbered failing task, so that the outcome does not
// depend on scheduling. A task may be skipped once a lower-numbered task
// has failed (its result could not matter); a task below every failure so
// far always runs.
type firstError struct {
	lowest atomic.Int64 // lowest failed task so far; n if none
	errs   []error
}

func newFirstError(n int) *firstError {
	f := &firstError{errs: make([]error, n)}
	f.lowest.Store(int64(n))
	return f
}

// skip reports whether task i need not run.
func (f *firstError) skip(i int) bool { return int64(i) > f.lowest.Load() }

// record stores task i's result. Each task records at most once.
func (f *firstError) record(i int, err error) {
	if err == nil {
		return
	}
	f.errs[i] = err
	for {
		cur := f.lowest.Load()
		if int64(i) >= cur || f.lowest.CompareAndSwap(cur, int64(i)) {
			return
		}
	}
}

// err returns the error of the lowest-numbered failing task, or nil. Call
// it after every task has run or been skipped.
func (f *firstError) err() error {
	for _, err := range f.errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// checkLeaves verifies the signature of leaves [from, to) and runs the
// application's validator on them.
func (t *publicTree) checkLeaves(v treeValidation, from, to int) error {
	for i := from; i < to; i++ {
		ln := t.leaves[i]
		if ln == nil {
			continue
		}
		if err := ln.verifySignature(t.suite, v.groupID, uint32(i)); err != nil {
			return &TreeError{Op: "validating tree", Node: uint32(2 * i), Err: ErrInvalidLeafSignature, Cause: err}
		}
		if v.leaf != nil {
			if err := v.leaf(LeafIndex(i), ln); err != nil {
				return &TreeError{Op: "validating tree", Node: uint32(2 * i), Err: ErrInvalidLeafNode, Cause: err}
			}
		}
	}
	return nil
}

// checkUnmergedLeaves checks, for each non-blank parent P and each leaf L
// in P.unmerged_leaves, that L is a non-blank leaf below P and that every
// non-blank node between L and P also lists L (§12.4.3.1). The decoder
// has already required each list to be strictly increasing.
func (t *publicTree) checkUnmergedLeaves() error {
	const op = "validating tree"
	for pi, p := range t.parents {
		if p == nil || len(p.UnmergedLeaves) == 0 {
			continue
		}
		x := NodeIndex(2*pi + 1)
		first, n := treemath.LeafSpan(x)
		for k, u := range p.UnmergedLeaves {
			if k > 0 && u <= p.UnmergedLeaves[k-1] {
				return treeErr(op, x, ErrInvalidUnmergedLeaves)
			}
			if u < uint32(first) || u >= uint32(first)+n || t.leaves[u] == nil {
				return treeErr(op, x, ErrInvalidUnmergedLeaves)
			}
			for y := LeafIndex(u).Node(); ; {
				y, _ = treemath.Parent(y, t.nLeaves)
				if y == x {
					break
				}
				if q := t.parents[y>>1]; q != nil && !containsU32(q.UnmergedLeaves, u) {
					return treeErr(op, y, ErrInvalidUnmergedLeaves)
				}
			}
		}
	}
	return nil
}

// checkParentHashes checks that each non-blank parent node at array
// position [from, to) of t.parents is parent-hash valid (§7.9.2), top
// down: exactly one node D below it satisfies the parent-hash relation.
// The tree hashes must be fresh.
func (t *publicTree) checkParentHashes(buf *[]byte, from, to int) error {
	var res []NodeIndex
	for pi := from; pi < to; pi++ {
		if t.parents[pi] == nil {
			continue
		}
		x := NodeIndex(2*pi + 1)
		valid, err := t.parentHashValid(buf, &res, x)
		if err != nil {
			return err
		}
		if valid != 1 {
			return treeErr("validating tree", x, ErrInvalidParentHash)
		}
	}
	return nil
}

// parentHashValid counts the children C of non-blank parent x for which
// some D in C's resolution has the parent-hash relation with x (§7.9.2):
//
//   - D's parent_hash is the parent hash of x with copath child S (the
//     other child), and
//   - x's unmerged leaves below C are exactly C's resolution without D.
//
// The second condition makes D the lowest non-blank node below x on its
// side, so each D is tried by exactly one x: the whole check is linear.
func (t *publicTree) parentHashValid(buf *[]byte, res *[]NodeIndex, x NodeIndex) (int, error) {
	p := t.parents[x>>1]
	l, r := treemath.Children(x)
	valid := 0
	for _, cs := range [2][2]NodeIndex{{l, r}, {r, l}} {
		c, s := cs[0], cs[1]
		first, n := treemath.LeafSpan(c)
		lo, hi := leafRange(p.UnmergedLeaves, uint32(first), uint32(first)+n)
		um := p.UnmergedLeaves[lo:hi]
		*res = t.resolution((*res)[:0], c)
		if len(*res) != len(um)+1 {
			continue
		}
		d, ok := soleExtra(*res, um)
		if !ok {
			continue
		}
		var ph []byte
		if d.IsLeaf() {
			ln := t.leaves[d.Leaf()]
			if ln.Source != LeafNodeSourceCommit {
				continue
			}
			ph = ln.ParentHash
		} else {
			ph = t.parents[d>>1].ParentHash
		}
		osth, err := t.originalSiblingTreeHash(buf, s, p.UnmergedLeaves)
		if err != nil {
			return 0, treeErr("validating tree", s, err)
		}
		if bytes.Equal(ph, t.parentHash(buf, p, osth)) {
			valid++
		}
	}
	return valid, nil
}

// soleExtra returns the one element of res (a resolution, in order) that
// is not a leaf listed in um (sorted), if res is exactly um plus that
// element.
func soleExtra(res []NodeIndex, um []uint32) (NodeIndex, bool) {
	var d NodeIndex
	found := false
	j := 0
	for _, y := range res {
		if y.IsLeaf() && j < len(um) && uint32(y.Leaf()) == um[j] {
			j++
			continue
		}
		if found {
			return 0, false
		}
		d, found = y, true
	}
	return d, found && j == len(um)
}
