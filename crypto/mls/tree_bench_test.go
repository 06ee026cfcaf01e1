package mls

// Ratchet tree benchmarks (issue #5): tree hash full and incremental,
// UpdatePath create and apply next to their crypto floor, and joiner
// validation next to the cost of verifying its leaf signatures.
//
// Trees of 50,000 members run only without -short; building one takes
// seconds (every leaf and parent gets a real key pair and every leaf a real
// signature) and is done once per process.

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/moat-im/moat/crypto/mls/internal/suite"
	"github.com/moat-im/moat/crypto/mls/internal/treemath"
)

// benchTree is a synthetic but valid group tree: members occupy leaves
// 0..members-1, every parent node whose two subtrees both hold members is
// non-blank, and parent hashes chain through left children (as after a
// history of commits), so the tree passes joiner validation.
type benchTree struct {
	s        *suite.Suite
	tr       *publicTree
	enc      []byte // the ratchet_tree extension encoding
	gid      []byte
	members  int
	sigPriv  [2]SignaturePrivateKey // leaves 0 and 1
	leafPriv [2]suite.HPKEPrivateKey
}

var benchTrees sync.Map // "suite/members" -> *benchTree

// getBenchTree returns the benchmark tree for a suite and size, built
// once per process. With MOAT_BENCH_TREES set to a directory, trees are
// also kept there between runs (the encoded tree and the benchmark's four
// private keys, which protect nothing), so instruction-count runs under
// valgrind need not generate 100,000 key pairs.
func getBenchTree(b testing.TB, id suite.ID, members int) *benchTree {
	key := fmt.Sprintf("%d/%d", id, members)
	if v, ok := benchTrees.Load(key); ok {
		return v.(*benchTree)
	}
	dir := os.Getenv("MOAT_BENCH_TREES")
	file := filepath.Join(dir, fmt.Sprintf("tree-%04x-%d.bin", uint16(id), members))
	var bt *benchTree
	if dir != "" {
		bt = readBenchTree(b, id, members, file)
	}
	if bt == nil {
		bt = buildBenchTree(b, id, members)
		if dir != "" {
			writeBenchTree(b, bt, file)
		}
	}
	benchTrees.Store(key, bt)
	return bt
}

// benchTreeKeys is the key file kept next to a cached tree (the tree
// itself is stored as its ratchet_tree encoding).
type benchTreeKeys struct {
	SigPriv  [2][]byte
	LeafPriv [2][]byte
}

func writeBenchTree(tb testing.TB, bt *benchTree, file string) {
	var k benchTreeKeys
	for i := range 2 {
		k.SigPriv[i], k.LeafPriv[i] = bt.sigPriv[i], bt.leafPriv[i]
	}
	data, err := json.Marshal(k)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(file+".keys", data, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(file, bt.enc, 0o600); err != nil {
		tb.Fatal(err)
	}
}

func readBenchTree(tb testing.TB, id suite.ID, members int, file string) *benchTree {
	data, err := os.ReadFile(file + ".keys")
	if err != nil {
		return nil
	}
	var k benchTreeKeys
	if err := json.Unmarshal(data, &k); err != nil {
		tb.Fatal(err)
	}
	enc, err := os.ReadFile(file)
	if err != nil {
		return nil
	}
	s, err := suite.Get(id)
	if err != nil {
		tb.Fatal(err)
	}
	bt := &benchTree{s: s, enc: enc, gid: []byte("benchmark group"), members: members}
	for i := range 2 {
		bt.sigPriv[i], bt.leafPriv[i] = k.SigPriv[i], k.LeafPriv[i]
	}
	bt.tr = bt.load(tb)
	if _, err := bt.tr.treeHash(); err != nil {
		tb.Fatal(err)
	}
	return bt
}

func buildBenchTree(tb testing.TB, id suite.ID, members int) *benchTree {
	s, err := suite.Get(id)
	if err != nil {
		tb.Fatal(err)
	}
	n := uint32(1)
	for n < uint32(members) {
		n *= 2
	}
	bt := &benchTree{s: s, gid: []byte("benchmark group"), members: members}
	// Key pairs for every leaf and parent, on all cores.
	w := int(treemath.NodeWidth(n))
	encPub := make([]HPKEPublicKey, w)
	sigPub := make([]SignaturePublicKey, n)
	sigPriv := make([]SignaturePrivateKey, n)
	var failed atomic.Bool
	parallelFor(w, runtime.GOMAXPROCS(0), func(x int, _ *[]byte) {
		if x%2 == 0 && x/2 >= members {
			return
		}
		priv, pub, err := s.GenerateHPKEKey()
		if err != nil {
			failed.Store(true)
			return
		}
		encPub[x] = HPKEPublicKey(pub)
		if x%2 == 0 {
			sk, pk, err := s.GenerateSignatureKey(rand.Reader)
			if err != nil {
				failed.Store(true)
				return
			}
			sigPub[x/2], sigPriv[x/2] = SignaturePublicKey(pk), SignaturePrivateKey(sk)
			if x/2 < 2 {
				bt.leafPriv[x/2] = priv
				bt.sigPriv[x/2] = SignaturePrivateKey(sk)
			}
		}
	})
	if failed.Load() {
		tb.Fatal("key generation failed")
	}
	tr := newBlankTree(s, n)
	var build func(x NodeIndex, ph []byte)
	hasMembers := func(x NodeIndex) bool {
		first, _ := treemath.LeafSpan(x)
		return int(first) < members
	}
	build = func(x NodeIndex, ph []byte) {
		if !hasMembers(x) {
			return
		}
		if x.IsLeaf() {
			i := x.Leaf()
			ln := &LeafNode{
				EncryptionKey: encPub[x],
				SignatureKey:  sigPub[i],
				Credential:    Credential{Type: CredentialTypeBasic, Identity: fmt.Appendf(nil, "member-%06d@example.org", i)},
				Capabilities: Capabilities{
					Versions:     []ProtocolVersion{ProtocolVersionMLS10},
					CipherSuites: []CipherSuite{CipherSuite(id)},
					Credentials:  []CredentialType{CredentialTypeBasic},
				},
				Source:   LeafNodeSourceKeyPackage,
				Lifetime: &Lifetime{NotBefore: 0, NotAfter: 1 << 62},
			}
			if ph != nil {
				ln.Source, ln.Lifetime, ln.ParentHash = LeafNodeSourceCommit, nil, ph
			}
			if err := ln.Sign(CipherSuite(id), sigPriv[i], bt.gid, uint32(i)); err != nil {
				tb.Fatal(err)
			}
			tr.setLeaf(i, ln)
			return
		}
		l, r := treemath.Children(x)
		if !hasMembers(r) {
			build(l, ph)
			return
		}
		if ph == nil {
			ph = []byte{}
		}
		p := &ParentNode{EncryptionKey: encPub[x], ParentHash: ph}
		build(r, nil)
		tr.freshen(r)
		build(l, tr.parentHash(&tr.buf, p, tr.nodeHash(r)))
		tr.setParent(x, p)
	}
	build(tr.root(), []byte{})
	if _, err := tr.treeHash(); err != nil {
		tb.Fatal(err)
	}
	bt.tr = tr
	if bt.enc, err = tr.ratchetTree().Encode(); err != nil {
		tb.Fatal(err)
	}
	return bt
}

// load decodes the tree afresh, as a joiner receives it.
func (bt *benchTree) load(tb testing.TB) *publicTree {
	rt, err := DecodeRatchetTree(bt.enc)
	if err != nil {
		tb.Fatal(err)
	}
	tr, err := newTreeFromRatchetTree(bt.s, rt)
	if err != nil {
		tb.Fatal(err)
	}
	return tr
}

var treeBenchSuites = []suite.ID{suite.X25519_AES128GCM_SHA256_Ed25519, suite.XWING_CHACHA20POLY1305_SHA256_Ed25519}

// treeBenchSizes drops the member counts above 1,000 under -short.
func treeBenchSizes(ms ...int) []int {
	var out []int
	for _, m := range ms {
		if m > 1000 && testing.Short() {
			continue
		}
		out = append(out, m)
	}
	return out
}

func suiteName(id suite.ID) string {
	if id == suite.XWING_CHACHA20POLY1305_SHA256_Ed25519 {
		return "xwing"
	}
	return fmt.Sprintf("suite%d", id)
}

// TestBenchTreeValid checks the benchmark tree builder produces trees that
// pass joiner validation (so the benchmarks measure valid trees).
func TestBenchTreeValid(t *testing.T) {
	for _, m := range []int{1, 2, 3, 5, 8, 13} {
		bt := buildBenchTree(t, suite.X25519_AES128GCM_SHA256_Ed25519, m)
		tr := bt.load(t)
		th, _ := bt.tr.treeHash()
		if err := tr.validate(treeValidation{groupID: bt.gid, treeHash: bytes.Clone(th)}); err != nil {
			t.Fatalf("%d members: %v", m, err)
		}
		if tr.memberCount() != m {
			t.Fatalf("%d members, tree has %d", m, tr.memberCount())
		}
	}
}

// BenchmarkTreeHash compares computing every node's hash (a joiner's first
// computation, sequential and on all cores) with recomputing after one leaf
// changes (one path: what a commit costs).
func BenchmarkTreeHash(b *testing.B) {
	for _, id := range treeBenchSuites {
		for _, m := range treeBenchSizes(1000, 50000) {
			var tr *publicTree
			setup := func(b *testing.B) {
				if tr == nil {
					tr = getBenchTree(b, id, m).tr.clone()
				}
			}
			markAll := func() {
				for x := range tr.stale {
					tr.stale[x] = true
				}
				tr.staleCount = len(tr.stale)
			}
			b.Run(fmt.Sprintf("%s/members=%d/full-sequential", suiteName(id), m), func(b *testing.B) {
				setup(b)
				for b.Loop() {
					markAll()
					n, err := tr.computeHash(tr.root(), &tr.buf)
					tr.staleCount -= n
					if err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(fmt.Sprintf("%s/members=%d/full-parallel", suiteName(id), m), func(b *testing.B) {
				setup(b)
				for b.Loop() {
					markAll()
					if _, err := tr.treeHash(); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(fmt.Sprintf("%s/members=%d/incremental-one-leaf", suiteName(id), m), func(b *testing.B) {
				setup(b)
				i := LeafIndex(m / 2)
				a := tr.leaf(i)
				alt := *a
				alt.Signature = append(bytes.Clone(a.Signature[:len(a.Signature)-1]), a.Signature[len(a.Signature)-1]^1)
				if _, err := tr.treeHash(); err != nil {
					b.Fatal(err)
				}
				k := 0
				for b.Loop() {
					if k++; k%2 == 0 {
						tr.setLeaf(i, a)
					} else {
						tr.setLeaf(i, &alt)
					}
					if _, err := tr.treeHash(); err != nil {
						b.Fatal(err)
					}
				}
				tr.setLeaf(i, a)
			})
		}
	}
}

// BenchmarkUpdatePath measures a commit's tree work in a full tree: leaf 0
// creates an UpdatePath (keys for its whole direct path, one encryption per
// level) and leaf 1 applies it (verify, merge, one decryption, derive every
// key of the path: the worst case). Each iteration runs inside the tree's
// journal and rolls back. BenchmarkFloorUpdatePath is the crypto floor.
func BenchmarkUpdatePath(b *testing.B) {
	for _, id := range treeBenchSuites {
		for _, m := range treeBenchSizes(1000, 50000) {
			type fixture struct {
				bt       *benchTree
				tr       *publicTree
				gc       GroupContext
				template LeafNode
			}
			var f *fixture
			setup := func(b *testing.B) *fixture {
				if f == nil {
					bt := getBenchTree(b, id, m)
					f = &fixture{bt: bt, tr: bt.tr.clone()}
					f.gc = GroupContext{CipherSuite: CipherSuite(id), GroupID: bt.gid, Epoch: 7, ConfirmedTranscriptHash: make([]byte, bt.s.Nh())}
					f.template = *f.tr.leaf(0)
				}
				return f
			}
			b.Run(fmt.Sprintf("%s/members=%d/create", suiteName(id), m), func(b *testing.B) {
				f := setup(b)
				for b.Loop() {
					f.tr.begin()
					res, err := f.tr.createUpdatePath(0, &f.template, f.bt.sigPriv[0], f.gc, nil)
					if err != nil {
						b.Fatal(err)
					}
					f.tr.rollback()
					res.Zero()
				}
			})
			b.Run(fmt.Sprintf("%s/members=%d/apply", suiteName(id), m), func(b *testing.B) {
				f := setup(b)
				f.tr.begin()
				res, err := f.tr.createUpdatePath(0, &f.template, f.bt.sigPriv[0], f.gc, nil)
				if err != nil {
					b.Fatal(err)
				}
				f.tr.rollback()
				priv := newPrivateTree(f.bt.s, 1, HPKEPrivateKey(f.bt.leafPriv[1]), f.tr.leaf(1).EncryptionKey)
				for b.Loop() {
					f.tr.begin()
					r, err := f.tr.applyUpdatePath(0, res.path, f.gc, nil, priv, nil)
					if err != nil {
						b.Fatal(err)
					}
					f.tr.rollback()
					r.Zero()
				}
			})
		}
	}
}

// BenchmarkFloorUpdatePath is the crypto floor of BenchmarkUpdatePath at
// the same sizes: for create, path length × (DeriveKeyPair + HPKE seal)
// plus one signature; for apply, one signature verification, one HPKE open
// and path length × DeriveKeyPair.
func BenchmarkFloorUpdatePath(b *testing.B) {
	for _, id := range treeBenchSuites {
		s, _ := suite.Get(id)
		for _, m := range treeBenchSizes(1000, 50000) {
			n := uint32(1)
			for n < uint32(m) {
				n *= 2
			}
			depth := treemath.PathLength(n)
			ikm := make([]byte, s.Nh())
			rand.Read(ikm)
			_, pub, _ := s.DeriveKeyPair(ikm)
			priv2, pub2, _ := s.GenerateHPKEKey()
			sk, pk, _ := s.GenerateSignatureKey(rand.Reader)
			msg := make([]byte, 300)
			sig, _ := s.SignWithLabel(sk, "LeafNodeTBS", msg)
			gcb := make([]byte, 120)
			b.Run(fmt.Sprintf("%s/members=%d/create", suiteName(id), m), func(b *testing.B) {
				for b.Loop() {
					for range depth {
						if _, _, err := s.DeriveKeyPair(ikm); err != nil {
							b.Fatal(err)
						}
						if _, _, err := s.EncryptWithLabel(pub, "UpdatePathNode", gcb, ikm); err != nil {
							b.Fatal(err)
						}
					}
					if _, err := s.SignWithLabel(sk, "LeafNodeTBS", msg); err != nil {
						b.Fatal(err)
					}
				}
			})
			kem, ct, _ := s.EncryptWithLabel(pub2, "UpdatePathNode", gcb, ikm)
			b.Run(fmt.Sprintf("%s/members=%d/apply", suiteName(id), m), func(b *testing.B) {
				for b.Loop() {
					if err := s.VerifyWithLabel(pk, "LeafNodeTBS", msg, sig); err != nil {
						b.Fatal(err)
					}
					if _, err := s.DecryptWithLabel(priv2, "UpdatePathNode", gcb, kem, ct); err != nil {
						b.Fatal(err)
					}
					for range depth {
						if _, _, err := s.DeriveKeyPair(ikm); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		}
	}
}

// BenchmarkTreeValidate measures what a joiner does with a received tree
// (load from its encoding, tree hash, parent hashes, unmerged leaves, every
// leaf signature on all cores) against verifying the same leaf signatures
// on all cores alone (leaf-signatures-parallel, the goal's yardstick) and
// on one (leaf-signatures-sequential).
func BenchmarkTreeValidate(b *testing.B) {
	for _, id := range treeBenchSuites {
		for _, m := range treeBenchSizes(1000, 10000, 50000) {
			b.Run(fmt.Sprintf("%s/members=%d/load-and-validate", suiteName(id), m), func(b *testing.B) {
				bt := getBenchTree(b, id, m)
				th, _ := bt.tr.treeHash()
				th = bytes.Clone(th)
				for b.Loop() {
					tr := bt.load(b)
					if err := tr.validate(treeValidation{groupID: bt.gid, treeHash: th}); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(fmt.Sprintf("%s/members=%d/leaf-signatures-parallel", suiteName(id), m), func(b *testing.B) {
				bt := getBenchTree(b, id, m)
				tr := bt.tr
				chunks := (len(tr.leaves) + validationChunk - 1) / validationChunk
				for b.Loop() {
					parallelFor(chunks, runtime.GOMAXPROCS(0), func(c int, _ *[]byte) {
						for i := c * validationChunk; i < min((c+1)*validationChunk, len(tr.leaves)); i++ {
							if ln := tr.leaves[i]; ln != nil {
								if err := ln.verifySignature(tr.suite, bt.gid, uint32(i)); err != nil {
									panic(err)
								}
							}
						}
					})
				}
			})
			b.Run(fmt.Sprintf("%s/members=%d/leaf-signatures-sequential", suiteName(id), m), func(b *testing.B) {
				bt := getBenchTree(b, id, m)
				for b.Loop() {
					for i, ln := range bt.tr.leaves {
						if ln != nil {
							if err := ln.verifySignature(bt.tr.suite, bt.gid, uint32(i)); err != nil {
								b.Fatal(err)
							}
						}
					}
				}
			})
		}
	}
}

// BenchmarkTreeSize reports the encoded size of the ratchet_tree extension
// and the in-memory tree (approximate heap growth of loading it).
func BenchmarkTreeSize(b *testing.B) {
	for _, id := range treeBenchSuites {
		for _, m := range treeBenchSizes(2, 1000, 50000) {
			b.Run(fmt.Sprintf("%s/members=%d", suiteName(id), m), func(b *testing.B) {
				bt := getBenchTree(b, id, m)
				var before, after runtime.MemStats
				runtime.GC()
				runtime.GC()
				runtime.ReadMemStats(&before)
				tr := bt.load(b)
				if _, err := tr.treeHash(); err != nil {
					b.Fatal(err)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				runtime.KeepAlive(tr)
				for b.Loop() {
				}
				b.ReportMetric(float64(len(bt.enc)), "encoded-bytes")
				b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)), "heap-bytes")
			})
		}
	}
}
