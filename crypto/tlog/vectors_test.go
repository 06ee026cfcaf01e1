package tlog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	xtlog "golang.org/x/mod/sumdb/tlog"
)

// Vectors from transparency-dev/merkle (testdata/README.md): every
// happy-path.json must verify and be exactly what Tree produces; every other
// file is a named mutation that must fail.

// vectorLeaves are transparency-dev/merkle testonly.LeafInputs.
var vectorLeaves = []string{"", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"}

type inclusionProbe struct {
	LeafIdx  uint64   `json:"leafIdx"`
	TreeSize uint64   `json:"treeSize"`
	Root     []byte   `json:"root"`
	LeafHash []byte   `json:"leafHash"`
	Proof    [][]byte `json:"proof"`
	Desc     string   `json:"desc"`
	WantErr  bool     `json:"wantErr"`
}

type consistencyProbe struct {
	Size1   uint64   `json:"size1"`
	Size2   uint64   `json:"size2"`
	Root1   []byte   `json:"root1"`
	Root2   []byte   `json:"root2"`
	Proof   [][]byte `json:"proof"`
	Desc    string   `json:"desc"`
	WantErr bool     `json:"wantErr"`
}

func walkJSON(t *testing.T, dir string, f func(path string, data []byte)) {
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".json" {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		n++
		f(path, data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 50 {
		t.Fatalf("only %d vectors in %s", n, dir)
	}
}

// asHash converts a vector's byte string to a Hash; values that are not 32
// bytes cannot be expressed in the typed API, which is a rejection.
func asHash(b []byte) (Hash, bool) {
	if len(b) != HashSize {
		return Hash{}, false
	}
	return Hash(b), true
}

// asRoot converts a vector's root. Some vectors use "don't care" roots
// that are not 32 bytes and only matter by being equal or different; they
// map to their SHA-256, which keeps that relation.
func asRoot(b []byte) Hash {
	if len(b) == HashSize {
		return Hash(b)
	}
	return Hash(sha256.Sum256(b))
}

func asHashes(bs [][]byte) ([]Hash, bool) {
	out := make([]Hash, len(bs))
	for i, b := range bs {
		h, ok := asHash(b)
		if !ok {
			return nil, false
		}
		out[i] = h
	}
	return out, true
}

func vectorTree(t *testing.T) *Tree {
	ctx := context.Background()
	tr, _ := NewTree(ctx, NewMemoryNodeStore(), 0)
	for _, l := range vectorLeaves {
		b, _ := hex.DecodeString(l)
		if _, err := tr.Append(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	return tr
}

func TestInclusionVectors(t *testing.T) {
	ctx := context.Background()
	tr := vectorTree(t)
	compared := 0
	defer func() {
		if compared < 5 {
			t.Errorf("compared only %d happy paths with Tree", compared)
		}
	}()
	walkJSON(t, "testdata/merkle/inclusion", func(path string, data []byte) {
		var p inclusionProbe
		if err := json.Unmarshal(data, &p); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		leaf, ok1 := asHash(p.LeafHash)
		root := asRoot(p.Root)
		proof, ok3 := asHashes(p.Proof)
		err := errBadInput
		if ok1 && ok3 {
			err = VerifyInclusion(leaf, p.LeafIdx, p.TreeSize, proof, root)
		}
		if (err != nil) != p.WantErr {
			t.Errorf("%s (%s): VerifyInclusion error %v, want error %v", path, p.Desc, err, p.WantErr)
		}
		// Happy paths of the 8-leaf test tree: Tree produces exactly this
		// proof and root, and x/mod accepts it.
		if !p.WantErr && p.TreeSize <= uint64(len(vectorLeaves)) && strings.Contains(path, "/happy-path") &&
			LeafHash(mustHex(vectorLeaves[p.LeafIdx])) == leaf {
			compared++
			got, err := tr.InclusionProof(ctx, p.LeafIdx, p.TreeSize)
			if err != nil {
				t.Fatal(err)
			}
			if r, _ := tr.Root(ctx, p.TreeSize); r != root {
				t.Errorf("%s: Root(%d) = %v, want %v", path, p.TreeSize, r, root)
			}
			if len(got) != len(proof) {
				t.Fatalf("%s: proof length %d, want %d", path, len(got), len(proof))
			}
			for i := range got {
				if got[i] != proof[i] {
					t.Errorf("%s: proof[%d] differs", path, i)
				}
			}
			if err := xtlog.CheckRecord(toXMod(proof), int64(p.TreeSize), xtlog.Hash(root), int64(p.LeafIdx), xtlog.Hash(leaf)); err != nil {
				t.Errorf("%s: x/mod rejects: %v", path, err)
			}
		}
	})
}

func TestConsistencyVectors(t *testing.T) {
	ctx := context.Background()
	tr := vectorTree(t)
	compared := 0
	defer func() {
		if compared < 5 {
			t.Errorf("compared only %d happy paths with Tree", compared)
		}
	}()
	walkJSON(t, "testdata/merkle/consistency", func(path string, data []byte) {
		var p consistencyProbe
		if err := json.Unmarshal(data, &p); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		r1, r2 := asRoot(p.Root1), asRoot(p.Root2)
		proof, ok3 := asHashes(p.Proof)
		err := errBadInput
		if ok3 {
			err = VerifyConsistency(p.Size1, p.Size2, proof, r1, r2)
		}
		if (err != nil) != p.WantErr {
			t.Errorf("%s (%s): VerifyConsistency error %v, want error %v", path, p.Desc, err, p.WantErr)
		}
		if !p.WantErr && strings.Contains(path, "/happy-path") && p.Size2 <= uint64(len(vectorLeaves)) {
			if a, _ := tr.Root(ctx, p.Size1); a != r1 {
				return // a tree of other leaves
			}
			compared++
			got, err := tr.ConsistencyProof(ctx, p.Size1, p.Size2)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(proof) {
				t.Fatalf("%s: proof length %d, want %d", path, len(got), len(proof))
			}
			for i := range got {
				if got[i] != proof[i] {
					t.Errorf("%s: proof[%d] differs", path, i)
				}
			}
			if p.Size1 < p.Size2 {
				if err := xtlog.CheckTree(toXMod(proof), int64(p.Size2), xtlog.Hash(r2), int64(p.Size1), xtlog.Hash(r1)); err != nil {
					t.Errorf("%s: x/mod rejects: %v", path, err)
				}
			}
		}
	})
}

var errBadInput error = errors.New("not expressible: a hash that is not 32 bytes")

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}
