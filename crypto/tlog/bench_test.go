package tlog

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
)

// Benchmarks of the brief (docs/spec/tlog.md §Performance): an epoch
// append, proofs at 1M leaves, checkpoint signing and verification with
// each half of the hybrid reported separately, cosignature verification.

func BenchmarkAppend32768(b *testing.B) {
	ctx := context.Background()
	leaves := make([][]byte, 32768)
	for i := range leaves {
		leaves[i] = binary.BigEndian.AppendUint64(make([]byte, 0, 32), uint64(i))
		leaves[i] = append(leaves[i], make([]byte, 24)...) // 32-byte entries
	}
	b.ReportAllocs()
	for b.Loop() {
		tr, _ := NewTree(ctx, NewMemoryNodeStore(), 0)
		if _, err := tr.Append(ctx, leaves...); err != nil {
			b.Fatal(err)
		}
		if _, err := tr.Root(ctx, tr.Size()); err != nil {
			b.Fatal(err)
		}
	}
}

var (
	bigTreeOnce sync.Once
	bigTree     *Tree
)

const bigTreeSize = 1 << 20

// millionTree is a synthetic in-memory tree of 2^20 leaves (about 64 MiB of
// node hashes), appended in epochs of 32768.
func millionTree(b *testing.B) *Tree {
	bigTreeOnce.Do(func() {
		ctx := context.Background()
		bigTree, _ = NewTree(ctx, NewMemoryNodeStore(), 0)
		batch := make([][]byte, 32768)
		for bigTree.Size() < bigTreeSize {
			for i := range batch {
				batch[i] = binary.BigEndian.AppendUint64(nil, bigTree.Size()+uint64(i))
			}
			if _, err := bigTree.Append(ctx, batch...); err != nil {
				panic(err)
			}
		}
	})
	return bigTree
}

func BenchmarkInclusionProof1M(b *testing.B) {
	ctx := context.Background()
	tr := millionTree(b)
	size := tr.Size() - 12345 // not a power of two: the proof has an ephemeral node
	b.ReportAllocs()
	i := uint64(0)
	for b.Loop() {
		i = (i + 7919) % size
		if _, err := tr.InclusionProof(ctx, i, size); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyInclusion1M(b *testing.B) {
	ctx := context.Background()
	tr := millionTree(b)
	size := tr.Size() - 12345
	const idx = 777777
	p, _ := tr.InclusionProof(ctx, idx, size)
	root, _ := tr.Root(ctx, size)
	leaf := LeafHash(binary.BigEndian.AppendUint64(nil, idx))
	b.ReportAllocs()
	for b.Loop() {
		if err := VerifyInclusion(leaf, idx, size, p, root); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(p)*HashSize), "proof-bytes")
}

func BenchmarkConsistencyProof1M(b *testing.B) {
	ctx := context.Background()
	tr := millionTree(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tr.ConsistencyProof(ctx, bigTreeSize-32768-999, bigTreeSize-999); err != nil {
			b.Fatal(err)
		}
	}
}

func benchCheckpoint(b *testing.B) (*testLog, *Checkpoint, []byte) {
	l := newTestLog(b, testOrigin, "a")
	l.append("a", "b", "c")
	c := l.checkpoint(3)
	text, _ := c.Marshal()
	return l, c, text
}

func BenchmarkSignCheckpoint(b *testing.B) {
	l, c, text := benchCheckpoint(b)
	b.Run("Hybrid", func(b *testing.B) {
		for b.Loop() {
			if _, err := SignCheckpoint(c, l.key); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Ed25519", func(b *testing.B) {
		s := l.key.Ed25519Signer()
		for b.Loop() {
			s.Sign(nil, text, crypto.Hash(0))
		}
	})
	b.Run("MLDSA65", func(b *testing.B) {
		s := l.key.MLDSA65Signer()
		for b.Loop() {
			s.Sign(nil, text, crypto.Hash(0))
		}
	})
}

func BenchmarkOpenCheckpoint(b *testing.B) {
	l, _, text := benchCheckpoint(b)
	msg := l.sign(3)
	pub := l.key.Public()
	b.Run("Hybrid", func(b *testing.B) {
		for b.Loop() {
			if _, err := OpenCheckpoint(msg, testOrigin, pub); err != nil {
				b.Fatal(err)
			}
		}
	})
	edSig, _ := l.key.Ed25519Signer().Sign(nil, text, crypto.Hash(0))
	pqSig, _ := l.key.MLDSA65Signer().Sign(nil, text, crypto.Hash(0))
	b.Run("Ed25519", func(b *testing.B) {
		edPub := pub.Ed25519()
		for b.Loop() {
			if !ed25519.Verify(edPub, text, edSig) {
				b.Fatal("bad")
			}
		}
	})
	b.Run("MLDSA65", func(b *testing.B) {
		for b.Loop() {
			if !pub.MLDSA65().Verify(text, nil, pqSig) {
				b.Fatal("bad")
			}
		}
	})
}

func BenchmarkVerifyCosignature(b *testing.B) {
	_, c, _ := benchCheckpoint(b)
	for _, typ := range []CosignatureType{CosignatureEd25519, CosignatureMLDSA44} {
		k := testWitnessKey(b, "witness.example/w1", typ)
		cs, _ := CosignCheckpoint(k, c, testTime)
		name := map[CosignatureType]string{CosignatureEd25519: "Ed25519", CosignatureMLDSA44: "MLDSA44"}[typ]
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if err := VerifyCosignature(k.Public(), c, cs); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/Cosign", func(b *testing.B) {
			for b.Loop() {
				CosignCheckpoint(k, c, testTime)
			}
		})
	}
}

// BenchmarkVerifyCheckpoint is a client's whole decision: a hybrid log
// signature and three hybrid (Ed25519 + ML-DSA-44) witnesses, quorum 2.
func BenchmarkVerifyCheckpoint(b *testing.B) {
	l := newTestLog(b, testOrigin, "a")
	l.append("a", "b", "c")
	var ws []*WitnessPrivateKey
	var pubs []*WitnessPublicKey
	for _, n := range []string{"w1.example", "w2.example", "w3.example"} {
		for _, typ := range []CosignatureType{CosignatureEd25519, CosignatureMLDSA44} {
			k := testWitnessKey(b, n, typ)
			ws, pubs = append(ws, k), append(pubs, k.Public())
		}
	}
	msg := cosignNote(b, l.sign(3), testTime, ws...)
	cfg := VerifierConfig{Origin: testOrigin, LogKey: l.key.Public(), Witnesses: pubs, Quorum: 2, MaxAge: time.Hour, NotBefore: testFloor}
	for b.Loop() {
		v, _ := NewVerifier(cfg)
		if _, err := v.VerifyCheckpoint(msg, nil, testTime); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(msg)), "note-bytes")
}

func BenchmarkWitnessAddCheckpoint(b *testing.B) {
	l := newTestLog(b, testOrigin, "a")
	l.append("a", "b", "c")
	msg := l.sign(3)
	ks := []*WitnessPrivateKey{testWitnessKey(b, "w.example", CosignatureEd25519), testWitnessKey(b, "w.example", CosignatureMLDSA44)}
	w, _ := NewWitness(WitnessConfig{Keys: ks, Logs: map[string]*keys.LogPublicKey{testOrigin: l.key.Public()}, Store: NewMemoryWitnessStore()})
	ctx := context.Background()
	if _, err := w.AddCheckpoint(ctx, &AddCheckpointRequest{Checkpoint: msg}, testTime); err != nil {
		b.Fatal(err)
	}
	for b.Loop() { // refreshes of the same checkpoint: verify, cosign twice, store
		if _, err := w.AddCheckpoint(ctx, &AddCheckpointRequest{OldSize: 3, Checkpoint: msg}, testTime); err != nil {
			b.Fatal(err)
		}
	}
}
