package mls

// Group benchmarks (issue #5): a Commit with a full UpdatePath and its
// processing, adding one member, joining from a Welcome next to the cost of
// verifying the tree's leaf signatures, application messages, a member's
// memory, and message sizes. Each cost that has a cryptographic floor is
// reported next to it, measured in the same run.
//
// The groups are built on the synthetic full trees of tree_bench_test.go
// (getBenchTree: every parent node set, valid parent hashes and
// signatures). Sizes above 1,000 members run only without -short.

import (
	"crypto/rand"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/mls/internal/schedule"
	"github.com/moat-im/moat/crypto/mls/internal/suite"
	"github.com/moat-im/moat/crypto/mls/internal/treemath"
)

func benchConfig() Config {
	return Config{Credentials: acceptAllCredentials, IgnoreLifetimeOnReceive: true, MaxLifetime: -1,
		Now: func() time.Time { return groupTestNow }}
}

// benchGroupAt makes the Group of the member at leaf (0 or 1, whose keys
// the bench tree keeps) in a group whose tree is tr, with epoch secrets
// every member derives alike.
func benchGroupAt(tb testing.TB, bt *benchTree, leaf LeafIndex, tr *publicTree) *Group {
	tb.Helper()
	s := bt.s
	th, err := tr.treeHash()
	if err != nil {
		tb.Fatal(err)
	}
	ctx := GroupContext{CipherSuite: CipherSuite(s.ID()), GroupID: bt.gid, Epoch: 1, TreeHash: append([]byte(nil), th...),
		ConfirmedTranscriptHash: make([]byte, s.Nh())}
	ctxBytes, _ := ctx.Encode()
	joiner := make([]byte, s.Nh())
	keys, err := schedule.NewEpoch(s, joiner, nil, ctxBytes)
	if err != nil {
		tb.Fatal(err)
	}
	secrets, err := schedule.NewSecretTree(s, keys.EncryptionSecret, tr.nLeaves)
	if err != nil {
		tb.Fatal(err)
	}
	keys.ConsumeEncryptionSecret()
	signing, err := s.SigningKey(suite.SignaturePrivateKey(bt.sigPriv[leaf]))
	if err != nil {
		tb.Fatal(err)
	}
	g := &Group{cfg: benchConfig(), suite: s, self: leaf, sigKey: SignaturePrivateKey(signing)}
	g.st = epochState{
		ctx: ctx, ctxBytes: ctxBytes, tree: tr,
		priv:  newPrivateTree(s, leaf, HPKEPrivateKey(append([]byte(nil), bt.leafPriv[leaf]...)), tr.leaf(leaf).EncryptionKey),
		stats: computeMemberStats(tr), keys: keys, secrets: secrets,
		interim: make([]byte, s.Nh()), confirmationTag: make([]byte, s.Nh()),
	}
	return g
}

// groupBenchSizes are the member counts of the commit benchmarks.
func groupBenchSizes() []int { return treeBenchSizes(1000, 50000) }

// BenchmarkGroupCommit is a Commit with a full UpdatePath by the member at
// leaf 0 of a full tree (ClearPendingCommit between iterations), next to
// its floor: path length × (DeriveKeyPair + one HPKE seal) + one signature.
func BenchmarkGroupCommit(b *testing.B) {
	for _, id := range treeBenchSuites {
		for _, n := range groupBenchSizes() {
			b.Run(fmt.Sprintf("%s/%d/commit", suiteName(id), n), func(b *testing.B) {
				bt := getBenchTree(b, id, n)
				g := benchGroupAt(b, bt, 0, bt.tr.clone())
				b.ReportAllocs()
				for b.Loop() {
					if _, err := g.Commit(CommitOptions{}); err != nil {
						b.Fatal(err)
					}
					g.ClearPendingCommit()
				}
			})
			b.Run(fmt.Sprintf("%s/%d/floor", suiteName(id), n), func(b *testing.B) {
				benchCommitFloor(b, getBenchTree(b, id, n), 0)
			})
		}
	}
}

// benchCommitFloor measures path length × (DeriveKeyPair + HPKE seal) +
// one signature for the filtered direct path of leaf.
func benchCommitFloor(b *testing.B, bt *benchTree, leaf LeafIndex) {
	s := bt.s
	fdp, _ := bt.tr.filteredDirectPath(nil, nil, leaf)
	pub := bt.tr.encryptionKey(1)
	secret := make([]byte, s.Nh())
	priv := bt.sigPriv[0]
	b.ReportMetric(float64(len(fdp)), "path-nodes")
	for b.Loop() {
		for range fdp {
			if _, _, err := s.DeriveKeyPair(secret); err != nil {
				b.Fatal(err)
			}
			if _, _, err := s.EncryptWithLabel(suite.HPKEPublicKey(pub), labelUpdatePathNode, secret, secret); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := s.SignWithLabel(suite.SignaturePrivateKey(priv), labelFramedContent, secret); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGroupProcessCommit processes leaf 0's full-path Commit at leaf
// 1, its sibling, the member that derives the most path keys (every node
// of the path). The receiver's state is rebuilt outside the timer; the
// "reset" sub-benchmark times that rebuild alone, so that instruction
// counts (which see all work) can subtract it.
func BenchmarkGroupProcessCommit(b *testing.B) {
	for _, id := range treeBenchSuites {
		for _, n := range groupBenchSizes() {
			// process-gc is process with a garbage collection in each
			// untimed reset: the reset allocates 9 MB (the clone of the
			// tree's slices and key index; 18 MB for the far member's) and
			// so starts a collection of the whole heap (287 MB live for
			// xwing at 50,000) every 16-32 iterations, which then runs
			// beside the timed Process; processing Commits alone (0.3-0.6
			// MB each) would start one every few hundred. It also reports
			// the median and fastest call (reportCalls): on a shared
			// machine the mean mostly measures the other processes.
			for _, gc := range []bool{false, true} {
				b.Run(fmt.Sprintf("%s/%d/%s", suiteName(id), n, processName(gc)), func(b *testing.B) {
					bt := getBenchTree(b, id, n)
					committer := benchGroupAt(b, bt, 0, bt.tr.clone())
					benchProcess(b, committer, func() *Group { return benchGroupAt(b, bt, 1, bt.tr.clone()) }, gc)
				})
			}
			b.Run(fmt.Sprintf("%s/%d/reset", suiteName(id), n), func(b *testing.B) {
				bt := getBenchTree(b, id, n)
				for b.Loop() {
					benchGroupAt(b, bt, 1, bt.tr.clone())
				}
			})
			b.Run(fmt.Sprintf("%s/%d/floor", suiteName(id), n), func(b *testing.B) {
				bt := getBenchTree(b, id, n)
				fdp, _ := bt.tr.filteredDirectPath(nil, nil, 0)
				benchProcessFloor(b, bt, benchGroupAt(b, bt, 0, bt.tr.clone()), len(fdp))
			})
		}
	}
}

// benchProcessFloor measures the crypto floor of processing the
// committer's full-path Commit, sequentially on one goroutine: keys ×
// DeriveKeyPair (the path keys the receiver derives and compares), one
// HPKE open (key expansion from the seed, decapsulation, open), and the
// two Ed25519 verifications (the FramedContent over a content the size of
// the Commit, the leaf node over one the size of a leaf). Process runs the
// same work on two cores, with the rest (decryption and decoding of the
// message, hashes, the key schedule) beside it.
func benchProcessFloor(b *testing.B, bt *benchTree, committer *Group, keys int) {
	s := bt.s
	res, err := committer.Commit(CommitOptions{})
	if err != nil {
		b.Fatal(err)
	}
	committer.ClearPendingCommit()
	secret := make([]byte, s.Nh())
	priv, pub, err := s.GenerateHPKEKey()
	if err != nil {
		b.Fatal(err)
	}
	enc, ct, err := s.EncryptWithLabel(pub, labelUpdatePathNode, secret, secret)
	if err != nil {
		b.Fatal(err)
	}
	sigPub := suite.SignaturePublicKey(bt.tr.leaf(0).SignatureKey)
	sigPriv := suite.SignaturePrivateKey(bt.sigPriv[0])
	content := res.Message
	leafContent := content[:min(len(content), 1400)]
	sig, err := s.SignWithLabel(sigPriv, labelFramedContent, content)
	if err != nil {
		b.Fatal(err)
	}
	leafSig, err := s.SignWithLabel(sigPriv, labelLeafNodeTBS, leafContent)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(keys), "path-keys")
	for b.Loop() {
		for range keys {
			if _, _, err := s.DeriveKeyPair(secret); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := s.DecryptWithLabel(priv, labelUpdatePathNode, secret, enc, ct); err != nil {
			b.Fatal(err)
		}
		if err := s.VerifyWithLabel(sigPub, labelFramedContent, content, sig); err != nil {
			b.Fatal(err)
		}
		if err := s.VerifyWithLabel(sigPub, labelLeafNodeTBS, leafContent, leafSig); err != nil {
			b.Fatal(err)
		}
	}
}

// farReceiver is a variant of a bench tree for the common case of
// processing a Commit: the committer (a fresh member at the last leaf) is
// in the other half of the tree, so the receiver at leaf 0 decrypts at the
// root's left child and derives only the root's key pair. The left child
// gets a key pair the receiver knows (the tree's parent hashes no longer
// verify, which processing a Commit does not check).
type farReceiver struct {
	tree       *publicTree
	nodePriv   suite.HPKEPrivateKey
	node       NodeIndex
	committer  LeafIndex
	signingKey SignaturePrivateKey
}

func newFarReceiver(tb testing.TB, bt *benchTree) *farReceiver {
	s := bt.s
	tr := bt.tr.clone()
	f := &farReceiver{tree: tr, committer: LeafIndex(bt.members - 1)}
	f.node, _ = treemath.Left(tr.root())
	priv, pub, err := s.GenerateHPKEKey()
	if err != nil {
		tb.Fatal(err)
	}
	old := tr.parents[f.node>>1]
	tr.setParent(f.node, &ParentNode{EncryptionKey: HPKEPublicKey(pub), ParentHash: old.ParentHash, UnmergedLeaves: old.UnmergedLeaves})
	f.nodePriv = priv
	sk, pk, err := s.GenerateSignatureKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	_, encPub, err := s.GenerateHPKEKey()
	if err != nil {
		tb.Fatal(err)
	}
	ln := *tr.leaf(f.committer)
	ln.SignatureKey, ln.EncryptionKey = SignaturePublicKey(pk), HPKEPublicKey(encPub)
	if err := ln.Sign(CipherSuite(s.ID()), SignaturePrivateKey(sk), bt.gid, uint32(f.committer)); err != nil {
		tb.Fatal(err)
	}
	tr.setLeaf(f.committer, &ln)
	if _, err := tr.treeHash(); err != nil {
		tb.Fatal(err)
	}
	f.signingKey = SignaturePrivateKey(sk)
	return f
}

// groups returns the committer's and the receiver's Group.
func (f *farReceiver) groups(tb testing.TB, bt *benchTree) (committer, receiver *Group) {
	committer = benchGroupAt(tb, bt, 1, f.tree.clone())
	committer.self = f.committer
	signing, err := bt.s.SigningKey(suite.SignaturePrivateKey(f.signingKey))
	if err != nil {
		tb.Fatal(err)
	}
	committer.sigKey = SignaturePrivateKey(signing)
	receiver = benchGroupAt(tb, bt, 0, f.tree.clone())
	receiver.st.priv.set(f.node, append(suite.HPKEPrivateKey(nil), f.nodePriv...), f.tree.encryptionKey(f.node))
	return committer, receiver
}

// BenchmarkGroupProcessCommitFar processes a full-path Commit at a member
// in the other half of the tree from the committer (half of all members
// are there): one path key pair to derive.
func BenchmarkGroupProcessCommitFar(b *testing.B) {
	for _, id := range treeBenchSuites {
		for _, n := range groupBenchSizes() {
			for _, gc := range []bool{false, true} {
				b.Run(fmt.Sprintf("%s/%d/%s", suiteName(id), n, processName(gc)), func(b *testing.B) {
					bt := getBenchTree(b, id, n)
					f := newFarReceiver(b, bt)
					committer, _ := f.groups(b, bt)
					benchProcess(b, committer, func() *Group { _, recv := f.groups(b, bt); return recv }, gc)
				})
			}
			b.Run(fmt.Sprintf("%s/%d/reset", suiteName(id), n), func(b *testing.B) {
				bt := getBenchTree(b, id, n)
				f := newFarReceiver(b, bt)
				for b.Loop() {
					f.groups(b, bt)
				}
			})
			b.Run(fmt.Sprintf("%s/%d/floor", suiteName(id), n), func(b *testing.B) {
				bt := getBenchTree(b, id, n)
				committer, _ := newFarReceiver(b, bt).groups(b, bt)
				benchProcessFloor(b, bt, committer, 1)
			})
		}
	}
}

// BenchmarkGroupAddMember adds one member (with a path and its Welcome) to
// a group of 1,000.
func BenchmarkGroupAddMember(b *testing.B) {
	for _, id := range treeBenchSuites {
		b.Run(fmt.Sprintf("%s/1000/add", suiteName(id)), func(b *testing.B) {
			bt := getBenchTree(b, id, 1000)
			g := benchGroupAt(b, bt, 0, bt.tr.clone())
			j := newTestClient(b, CipherSuite(id), "joiner")
			b.ReportAllocs()
			for b.Loop() {
				res, err := g.Commit(CommitOptions{Add: []*KeyPackage{j.kp}})
				if err != nil || res.Welcome == nil {
					b.Fatal(err)
				}
				g.ClearPendingCommit()
			}
		})
		// The floor: the commit's (path length × (DeriveKeyPair + HPKE
		// seal) + one signature), plus the Welcome's HPKE seal to the new
		// member and the GroupInfo's signature.
		b.Run(fmt.Sprintf("%s/1000/floor", suiteName(id)), func(b *testing.B) {
			bt := getBenchTree(b, id, 1000)
			s := bt.s
			fdp, _ := bt.tr.filteredDirectPath(nil, nil, 0)
			pub := suite.HPKEPublicKey(bt.tr.encryptionKey(1))
			secret := make([]byte, s.Nh())
			priv, err := s.SigningKey(suite.SignaturePrivateKey(bt.sigPriv[0]))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(len(fdp)), "path-nodes")
			for b.Loop() {
				for range fdp {
					if _, _, err := s.DeriveKeyPair(secret); err != nil {
						b.Fatal(err)
					}
					if _, _, err := s.EncryptWithLabel(pub, labelUpdatePathNode, secret, secret); err != nil {
						b.Fatal(err)
					}
				}
				if _, _, err := s.EncryptWithLabel(pub, labelWelcome, secret, secret); err != nil {
					b.Fatal(err)
				}
				for _, label := range []string{labelFramedContent, labelGroupInfoTBS} {
					if _, err := s.SignWithLabel(priv, label, secret); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// benchWelcome has leaf 0 add a fresh client to the bench tree of n
// members and returns the client, the Welcome and the tree (out of band).
func benchWelcome(b *testing.B, bt *benchTree) (*testClient, []byte, RatchetTree) {
	g := benchGroupAt(b, bt, 0, bt.tr.clone())
	j := newTestClient(b, CipherSuite(bt.s.ID()), "joiner")
	j.cfg = benchConfig()
	res, err := g.Commit(CommitOptions{Add: []*KeyPackage{j.kp}})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := g.MergePendingCommit(); err != nil {
		b.Fatal(err)
	}
	return j, res.Welcome, g.RatchetTree()
}

// BenchmarkGroupJoin joins from a Welcome with the tree out of band (basic
// credentials, every leaf's signature checked on all cores), next to the
// time to verify that many leaf signatures on all cores, and with an
// application credential validator that costs one Ed25519 verification
// per leaf (standing in for an org certificate check).
func BenchmarkGroupJoin(b *testing.B) {
	for _, id := range treeBenchSuites {
		for _, n := range treeBenchSizes(1000, 10000, 50000) {
			var once sync.Once
			var bt *benchTree
			var j *testClient
			var w, enc []byte
			var tree RatchetTree
			setup := func(b *testing.B) {
				once.Do(func() {
					bt = getBenchTree(b, id, n)
					j, w, tree = benchWelcome(b, bt)
					var err error
					if enc, err = tree.Encode(); err != nil {
						b.Fatal(err)
					}
				})
			}
			// The tree arrives encoded, out of band: decoding it is part
			// of joining.
			b.Run(fmt.Sprintf("%s/%d/join", suiteName(id), n), func(b *testing.B) {
				setup(b)
				b.ReportMetric(float64(runtime.GOMAXPROCS(0)), "cores")
				for b.Loop() {
					rt, err := DecodeRatchetTree(enc)
					if err != nil {
						b.Fatal(err)
					}
					g, err := Join(j.cfg, w, j.kp, j.kps, j.sig, JoinOptions{RatchetTree: rt})
					if err != nil {
						b.Fatal(err)
					}
					g.Close()
				}
			})
			b.Run(fmt.Sprintf("%s/%d/verify-leaf-signatures", suiteName(id), n), func(b *testing.B) {
				setup(b)
				benchVerifyLeaves(b, bt, tree)
			})
			b.Run(fmt.Sprintf("%s/%d/join-cert-validator", suiteName(id), n), func(b *testing.B) {
				setup(b)
				cfg := j.cfg
				cfg.Credentials = certStandIn(b)
				for b.Loop() {
					rt, err := DecodeRatchetTree(enc)
					if err != nil {
						b.Fatal(err)
					}
					g, err := Join(cfg, w, j.kp, j.kps, j.sig, JoinOptions{RatchetTree: rt})
					if err != nil {
						b.Fatal(err)
					}
					g.Close()
				}
			})
		}
	}
}

// benchVerifyLeaves verifies every leaf signature of tree on all cores:
// the floor of a join.
func benchVerifyLeaves(b *testing.B, bt *benchTree, rt RatchetTree) {
	type leaf struct {
		i  uint32
		ln *LeafNode
	}
	var leaves []leaf
	for x := 0; x < len(rt); x += 2 {
		if rt[x] != nil {
			leaves = append(leaves, leaf{uint32(x / 2), rt[x].Leaf})
		}
	}
	workers := runtime.GOMAXPROCS(0)
	for b.Loop() {
		var wg sync.WaitGroup
		errs := make([]error, workers)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := w; k < len(leaves); k += workers {
					if err := leaves[k].ln.verifySignature(bt.s, bt.gid, leaves[k].i); err != nil {
						errs[w] = err
					}
				}
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}

// certStandIn is a credential validator costing one Ed25519 verification.
func certStandIn(tb testing.TB) CredentialValidator {
	s, _ := suite.Get(suite.X25519_AES128GCM_SHA256_Ed25519)
	priv, pub, _ := s.GenerateSignatureKey(rand.Reader)
	msg := []byte("org certificate")
	sig, err := s.SignWithLabel(priv, "cert", msg)
	if err != nil {
		tb.Fatal(err)
	}
	return CredentialValidatorFunc(func(Credential, SignaturePublicKey) error {
		return s.VerifyWithLabel(pub, "cert", msg, sig)
	})
}

// BenchmarkGroupApplication sends and receives application messages of
// 100 bytes in a group of 2 and of 1,000.
func BenchmarkGroupApplication(b *testing.B) {
	for _, id := range treeBenchSuites {
		for _, n := range []int{2, 1000} {
			msg := make([]byte, 100)
			b.Run(fmt.Sprintf("%s/%d/send", suiteName(id), n), func(b *testing.B) {
				bt := getBenchTree(b, id, n)
				g := benchGroupAt(b, bt, 0, bt.tr.clone())
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if i%50000 == 49999 {
						// Stay below the generation bound of one epoch.
						b.StopTimer()
						g = benchGroupAt(b, bt, 0, bt.tr.clone())
						b.StartTimer()
					}
					if _, err := g.Encrypt(msg, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(fmt.Sprintf("%s/%d/receive", suiteName(id), n), func(b *testing.B) {
				bt := getBenchTree(b, id, n)
				send := benchGroupAt(b, bt, 0, bt.tr.clone())
				recv := benchGroupAt(b, bt, 1, bt.tr.clone())
				const batch = 1000
				msgs := make([][]byte, 0, batch)
				b.ReportAllocs()
				for b.Loop() {
					if len(msgs) == 0 {
						b.StopTimer()
						for range batch {
							m, err := send.Encrypt(msg, nil)
							if err != nil {
								b.Fatal(err)
							}
							msgs = append(msgs, m)
						}
						b.StartTimer()
					}
					if _, err := recv.Process(msgs[0]); err != nil {
						b.Fatal(err)
					}
					msgs = msgs[1:]
				}
			})
			// The floors: one signature (send) and one verification
			// (receive) over a FramedContentTBS the size of the message's.
			b.Run(fmt.Sprintf("%s/%d/send-floor", suiteName(id), n), func(b *testing.B) {
				bt := getBenchTree(b, id, n)
				priv, err := bt.s.SigningKey(suite.SignaturePrivateKey(bt.sigPriv[0])) // expanded once, as a Group holds it
				if err != nil {
					b.Fatal(err)
				}
				tbs := make([]byte, len(msg)+64)
				for b.Loop() {
					if _, err := bt.s.SignWithLabel(priv, labelFramedContent, tbs); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(fmt.Sprintf("%s/%d/receive-floor", suiteName(id), n), func(b *testing.B) {
				bt := getBenchTree(b, id, n)
				priv := suite.SignaturePrivateKey(bt.sigPriv[0])
				pub := suite.SignaturePublicKey(bt.tr.leaf(0).SignatureKey)
				tbs := make([]byte, len(msg)+64)
				sig, err := bt.s.SignWithLabel(priv, labelFramedContent, tbs)
				if err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					if err := bt.s.VerifyWithLabel(pub, labelFramedContent, tbs, sig); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkGroupMemory reports the heap a member's state holds after
// joining a group (bytes/member-state), the ratchet tree included.
func BenchmarkGroupMemory(b *testing.B) {
	for _, id := range treeBenchSuites {
		for _, n := range treeBenchSizes(1000, 50000) {
			b.Run(fmt.Sprintf("%s/%d", suiteName(id), n), func(b *testing.B) {
				bt := getBenchTree(b, id, n)
				j, w, tree := benchWelcome(b, bt)
				enc, _ := tree.Encode()
				var g *Group
				for b.Loop() {
					runtime.GC()
					var before, after runtime.MemStats
					runtime.ReadMemStats(&before)
					rt, err := DecodeRatchetTree(enc)
					if err != nil {
						b.Fatal(err)
					}
					g, err = Join(j.cfg, w, j.kp, j.kps, j.sig, JoinOptions{RatchetTree: rt})
					if err != nil {
						b.Fatal(err)
					}
					rt = nil
					runtime.GC()
					runtime.ReadMemStats(&after)
					b.ReportMetric(float64(after.HeapAlloc)-float64(before.HeapAlloc), "bytes/member-state")
					runtime.KeepAlive(g)
				}
			})
		}
	}
}

// BenchmarkGroupSizes reports encoded sizes: a KeyPackage, the Welcome
// adding one member with the tree out of band and in band, the ratchet
// tree, and a full-path Commit (as a PrivateMessage).
func BenchmarkGroupSizes(b *testing.B) {
	for _, id := range treeBenchSuites {
		for _, n := range treeBenchSizes(2, 1000, 50000) {
			b.Run(fmt.Sprintf("%s/%d", suiteName(id), n), func(b *testing.B) {
				bt := getBenchTree(b, id, n)
				g := benchGroupAt(b, bt, 0, bt.tr.clone())
				j := newTestClient(b, CipherSuite(id), "joiner")
				kp, _ := (&MLSMessage{WireFormat: WireFormatKeyPackage, KeyPackage: j.kp}).Encode()
				var sizes [4]int
				for b.Loop() {
					res, err := g.Commit(CommitOptions{Add: []*KeyPackage{j.kp}})
					if err != nil {
						b.Fatal(err)
					}
					g.ClearPendingCommit()
					resTree, err := g.Commit(CommitOptions{Add: []*KeyPackage{j.kp}, RatchetTreeInWelcome: true})
					if err != nil {
						b.Fatal(err)
					}
					g.ClearPendingCommit()
					c, err := g.Commit(CommitOptions{})
					if err != nil {
						b.Fatal(err)
					}
					g.ClearPendingCommit()
					sizes = [4]int{len(res.Welcome), len(resTree.Welcome), len(c.Message), 0}
				}
				tree, _ := g.RatchetTree().Encode()
				b.ReportMetric(float64(len(kp)), "keypackage-B")
				b.ReportMetric(float64(sizes[0]), "welcome-B")
				b.ReportMetric(float64(sizes[1]), "welcome+tree-B")
				b.ReportMetric(float64(len(tree)), "tree-B")
				b.ReportMetric(float64(sizes[2]), "commit-B")
			})
		}
	}
}

// reportCalls reports the median and the fastest of the timed calls of a
// benchmark that times each call itself.
// processName names the process sub-benchmarks: "process", or with a
// collection in each untimed reset "process-gc".
func processName(gc bool) string {
	if gc {
		return "process-gc"
	}
	return "process"
}

// benchProcess times receiver().Process of committer's full-path Commit;
// receiver builds a fresh receiving member outside the timer. With gc,
// a collection runs in each reset too, and the median and fastest call
// are reported (reportCalls).
func benchProcess(b *testing.B, committer *Group, receiver func() *Group, gc bool) {
	res, err := committer.Commit(CommitOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var calls []time.Duration
	for b.Loop() {
		b.StopTimer()
		recv := receiver()
		if gc {
			runtime.GC()
		}
		b.StartTimer()
		t0 := time.Now()
		if _, err := recv.Process(res.Message); err != nil {
			b.Fatal(err)
		}
		if gc {
			calls = append(calls, time.Since(t0))
		}
	}
	if gc {
		reportCalls(b, calls)
	}
}

func reportCalls(b *testing.B, calls []time.Duration) {
	if len(calls) == 0 {
		return
	}
	slices.Sort(calls)
	b.ReportMetric(float64(calls[len(calls)/2].Nanoseconds()), "p50-ns/op")
	b.ReportMetric(float64(calls[0].Nanoseconds()), "min-ns/op")
}
