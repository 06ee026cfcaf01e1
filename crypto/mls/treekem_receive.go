package mls

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/moat-im/moat/crypto/mls/internal/suite"
)

// pathWork is a receiver's decryption of an UpdatePath (§12.4.2) and the
// derivation of its key pairs (§7.4), spread over the goroutine that
// applies the path and one helper (more on more cores). On a 50,000-member
// tree the committer's sibling derives 16 key pairs, each an ML-KEM-768
// and an X25519 key generation for X-Wing: the bulk of processing a
// Commit. The order is chosen so that no core waits:
//
//  1. While the applying goroutine runs the structural checks of §12.4.2
//     (key uniqueness, parent hashes) and merges the path, the helper
//     expands this member's private key and decapsulates the path
//     secret's KEM output (suite.PrepareDecryption), which needs no
//     GroupContext.
//  2. Once the new tree hash is known (run), the path secret is opened
//     under the provisional GroupContext and the path secrets above it
//     chained, by whichever goroutine gets there first.
//  3. Both goroutines then take tasks from one list, longest first: the
//     checks that need no secret (the Commit's signature, the leaf's
//     signature and validation), the caller's work (pathBeside: the next
//     epoch's key schedule), then one key pair per path node. A helper
//     done with step 1 before step 2 can start takes the checks first.
//     Nothing is kept unless every check passes.
//
// Each step runs exactly once, on whichever goroutine reaches it first
// (sync.Once), so that the applying goroutine never waits for a helper the
// scheduler has not run yet: on one core it does everything itself.
type pathWork struct {
	s    *suite.Suite
	key  suite.HPKEPrivateKey
	c    *HPKECiphertext // nil if the path has no such ciphertext (refused by the checks)
	node NodeIndex       // the node whose path secret this member decrypts
	n    int             // path secrets from node to the root

	early    *pathHelper // started before the Commit was decrypted, or nil
	prepOnce sync.Once
	dk       *suite.DecryptionKey
	prepErr  error

	ready        chan struct{} // closed by run (groupContext set) or abort (nil)
	groupContext []byte
	treeHash     []byte
	closed       bool // ready is closed (the applying goroutine's own flag)

	openOnce     sync.Once
	openErr      error
	secrets      [][]byte // path secrets of node and the n-1 nodes above it
	commitSecret []byte

	extra       []func() // pathBeside's tasks
	independent int      // how many of them, first, need no path secret
	next        atomic.Int64
	privs       []suite.HPKEPrivateKey
	pubs        []suite.HPKEPublicKey
	errs        []error
	helpers     sync.WaitGroup
}

// startPathWork starts step 1 on a helper goroutine: this member decrypts
// the ct-th ciphertext of path node pos with key (copied), and derives the
// n key pairs from node pos to the root. The caller must end with run or
// abort.
func startPathWork(s *suite.Suite, key suite.HPKEPrivateKey, path *UpdatePath, pos, ct int, node NodeIndex, n int, leaf *pendingCheck, beside *pathBeside) *pathWork {
	w := &pathWork{s: s, key: slices.Clone(key), node: node, n: n, ready: make(chan struct{}),
		privs: make([]suite.HPKEPrivateKey, n), pubs: make([]suite.HPKEPublicKey, n), errs: make([]error, n)}
	if pos < len(path.Nodes) && ct < len(path.Nodes[pos].EncryptedPathSecret) {
		w.c = &path.Nodes[pos].EncryptedPathSecret[ct]
	}
	if beside != nil && beside.first != nil {
		w.extra = append(w.extra, beside.first.run)
	}
	if leaf != nil {
		w.extra = append(w.extra, leaf.run)
	}
	w.independent = len(w.extra)
	if beside != nil {
		if f := beside.withSecrets; f != nil {
			w.extra = append(w.extra, func() {
				if w.open() == nil {
					f(slices.Clone(w.treeHash), slices.Clone(w.commitSecret))
				}
			})
		}
	}
	w.helpers.Add(1)
	if beside != nil && beside.helper != nil {
		w.early = beside.helper
		w.early.hand(w)
	} else {
		goNow(w.help)
	}
	return w
}

// help is the helper goroutine's part. If step 1 ends before the group
// context is known, the helper takes the tasks that need no path secret
// (the Commit's signature, the leaf's signature and validation) instead
// of waiting.
func (w *pathWork) help() {
	defer w.helpers.Done()
	w.prepare()
	for {
		select {
		case <-w.ready:
		default:
			if k := w.next.Load(); k < int64(w.independent) {
				if w.next.CompareAndSwap(k, k+1) {
					w.extra[k]()
				}
				continue
			}
		}
		break
	}
	if w.open() == nil {
		w.work()
	}
}

// prepare is step 1.
func (w *pathWork) prepare() {
	w.prepOnce.Do(func() {
		if w.c == nil {
			w.prepErr = ErrPathDecrypt
			return
		}
		var dk *suite.DecryptionKey
		var err error
		if h := w.early; h != nil && suite.Equal(h.key, w.key) {
			h.expand()
			dk, err = h.dk, h.err
		} else {
			if h != nil {
				h.once.Do(func() {}) // a wrong guess: wait out its expansion,
				h.dk.Wipe()          // then wipe it
			}
			dk, err = w.s.PrepareDecryptionKey(w.key)
		}
		if err == nil {
			dk.Ahead(w.c.KEMOutput)
		}
		w.dk, w.prepErr = dk, err
	})
}

// open is step 2; it waits for run (or abort).
func (w *pathWork) open() error {
	w.openOnce.Do(func() {
		<-w.ready
		if w.groupContext == nil {
			w.openErr = ErrPathDecrypt // aborted: the caller reports its own error
			return
		}
		w.prepare()
		s := w.s
		err := w.prepErr
		var ps []byte
		if err == nil {
			ps, err = s.DecryptWithLabelKey(w.dk, labelUpdatePathNode, w.groupContext, w.c.KEMOutput, w.c.Ciphertext)
		}
		if err != nil || len(ps) != s.Nh() {
			suite.Zero(ps)
			w.openErr = &TreeError{Op: "applying UpdatePath", Node: uint32(w.node), Err: ErrPathDecrypt, Cause: err}
			return
		}
		secrets := make([][]byte, w.n)
		cur := ps
		for i := range secrets {
			secrets[i] = cur
			if cur, err = s.DeriveSecret(cur, "path"); err != nil {
				for _, x := range secrets[:i+1] {
					suite.Zero(x)
				}
				w.openErr = err
				return
			}
		}
		w.secrets, w.commitSecret = secrets, cur
		// More cores: more helpers for the key pairs.
		for range min(runtime.GOMAXPROCS(0)-2, w.n-1) {
			w.helpers.Add(1)
			go func() {
				defer w.helpers.Done()
				w.work()
			}()
		}
	})
	return w.openErr
}

// work is step 3: it takes tasks until none is left.
func (w *pathWork) work() {
	nt := int64(len(w.extra) + w.n)
	for {
		k := w.next.Add(1) - 1
		if k >= nt {
			return
		}
		if k < int64(len(w.extra)) {
			w.extra[k]()
			continue
		}
		i := int(k) - len(w.extra)
		if w.open() == nil {
			w.privs[i], w.pubs[i], w.errs[i] = deriveNodeKeyPair(w.s, w.secrets[i])
		}
	}
}

// run gives the helpers the provisional GroupContext (encoded) and the new
// tree's hash, takes part in steps 2 and 3, and returns once every task
// is done. The first error (decryption, then key pairs in path order) is
// in err.
func (w *pathWork) run(groupContext, treeHash []byte) (err error) {
	w.groupContext, w.treeHash = groupContext, treeHash
	w.closed = true
	close(w.ready)
	yieldRunnext()
	w.work()
	w.helpers.Wait()
	if err := w.open(); err != nil {
		return err
	}
	for _, err := range w.errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// abort ends the work without a decryption (the checks failed): the
// helper stops after step 1, and abort waits for it, so that nothing
// reads the caller's key once Process has returned, then wipes the
// expanded key. A no-op after run.
func (w *pathWork) abort() {
	if !w.closed {
		w.closed = true
		close(w.ready)
		w.helpers.Wait()
		w.dk.Wipe()
		suite.Zero(w.key)
	}
}

// testHookPathWork, if set (tests only), sees each pathWork once
// applyUpdatePathBeside is done with it, after it was wiped.
var testHookPathWork func(*pathWork)

// zero wipes what the work still holds: the path secrets and the key
// pairs not taken over (set to nil by the caller), the commit secret if
// not taken over. Only after run.
func (w *pathWork) zero() {
	for _, x := range w.secrets {
		suite.Zero(x)
	}
	for _, k := range w.privs {
		suite.Zero(k)
	}
	suite.Zero(w.commitSecret)
	w.dk.Wipe()
	suite.Zero(w.key)
}

// pathHelper is the helper goroutine of a pathWork started as soon as the
// sender of a Commit is known, before its content is decrypted (§6.3.2:
// the sender data comes first): it expands the private key this member
// will most likely decrypt the path secret with (the one pathKey finds
// in the current tree; the Commit's proposals may change that), then
// waits for its pathWork (hand) and runs the helper's part of it. If the
// guess is wrong, the expansion is discarded; if no pathWork comes
// (release), the goroutine ends.
type pathHelper struct {
	s      *suite.Suite
	key    suite.HPKEPrivateKey // a copy, wiped when the goroutine ends
	once   sync.Once
	dk     *suite.DecryptionKey
	err    error
	job    chan *pathWork
	handed bool // hand or release was called (the applying goroutine's flag)
}

// startPathHelper starts the pathHelper for a Commit from sender, or
// returns nil if this member has no key to decrypt its path with in the
// current tree.
func (g *Group) startPathHelper(sender LeafIndex) *pathHelper {
	t, priv := g.st.tree, g.st.priv
	if priv == nil || uint32(sender) >= t.nLeaves {
		return nil
	}
	_, cop := t.filteredDirectPath(nil, nil, sender)
	_, _, key, err := t.pathKey(priv, sender, cop, nil, nil)
	if err != nil {
		return nil
	}
	return newPathHelper(g.suite, slices.Clone(key))
}

// newPathHelper starts a pathHelper expanding key, which it owns.
func newPathHelper(s *suite.Suite, key suite.HPKEPrivateKey) *pathHelper {
	h := &pathHelper{s: s, key: key, job: make(chan *pathWork, 1)}
	goNow(func() {
		defer suite.Zero(h.key) // after any prepare that compares it
		h.expand()
		if w, ok := <-h.job; ok {
			w.help()
		}
	})
	return h
}

// expand expands the guessed key, unless it has been (or is being).
func (h *pathHelper) expand() {
	h.once.Do(func() {
		h.dk, h.err = h.s.PrepareDecryptionKey(h.key)
	})
}

// hand gives the helper its pathWork.
func (h *pathHelper) hand(w *pathWork) {
	h.handed = true
	h.job <- w
	close(h.job)
	yieldRunnext()
}

// release ends the helper if it was not handed a pathWork. It accepts
// nil.
func (h *pathHelper) release() {
	if h != nil && !h.handed {
		h.handed = true
		close(h.job)
	}
}
