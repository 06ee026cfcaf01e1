package badgerstore

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/moat-im/moat/keyserver/vmap"
)

// tileBatch returns the nodes of a real vmap batch: n random labels at
// epoch 0.
func tileBatch(t testing.TB, n int, seed uint64) []vmap.KeyedNode {
	r := rand.New(rand.NewPCG(seed, seed))
	cs := make([]vmap.Change, n)
	for i := range cs {
		for j := range cs[i].Label {
			cs[i].Label[j] = byte(r.Uint32())
		}
		cs[i].Commitment[0] = byte(i)
	}
	b, err := vmap.New(vmap.NewMemStore(), nil).Update(0, cs)
	if err != nil {
		t.Fatal(err)
	}
	return b.Nodes
}

// TestTiles: every node of a batch is found in its tile, a position the
// batch has no node at is ErrNodeNotFound, and tiles come in key order,
// each under the key of its top position.
func TestTiles(t *testing.T) {
	nodes := tileBatch(t, 3000, 1)
	tiles := map[vmap.NodeKey][]byte{}
	var last *vmap.NodeKey
	count := 0
	tiled(nodes, func(k vmap.NodeKey, tile []byte) {
		if k.Depth%tileHeight != 0 || tileKey(k) != k {
			t.Fatalf("tile key %v is not a tile position", k)
		}
		if last != nil && vmap.CompareNodeKeys(*last, k) >= 0 {
			t.Fatalf("tiles out of order at %v", k)
		}
		last = &k
		tiles[k] = tile
		count++
	})
	if count >= len(nodes)/2 {
		t.Fatalf("%d tiles for %d nodes", count, len(nodes))
	}
	present := map[vmap.NodeKey]bool{}
	for _, kn := range nodes {
		present[kn.Key] = true
		n, err := tileNode(tiles[tileKey(kn.Key)], kn.Key)
		if err != nil || !bytes.Equal(n.AppendBinary(nil), kn.Node.AppendBinary(nil)) {
			t.Fatalf("node %v: %v", kn.Key, err)
		}
	}
	// Siblings of stored nodes that the batch did not write.
	missing := 0
	for _, kn := range nodes {
		if kn.Key.Depth == 0 {
			continue
		}
		k := kn.Key
		d := int(k.Depth) - 1
		k.Path[d/8] ^= 0x80 >> (d % 8)
		tile, ok := tiles[tileKey(k)]
		if present[k] || !ok {
			continue
		}
		if _, err := tileNode(tile, k); !errors.Is(err, vmap.ErrNodeNotFound) {
			t.Fatalf("absent node %v: %v", k, err)
		}
		missing++
	}
	if missing == 0 {
		t.Fatal("no absent position tested")
	}
}

// TestTileNodeMalformed: tiles that do not parse strictly are errTile.
func TestTileNodeMalformed(t *testing.T) {
	nodes := tileBatch(t, 50, 2)
	var root []byte
	tiled(nodes, func(k vmap.NodeKey, tile []byte) {
		if k.Depth == 0 {
			root = tile
		}
	})
	key := vmap.RootKey(0)
	deepest := vmap.NodeKey{Depth: tileHeight - 1} // the last node of the root tile is at the bottom band
	for name, tile := range map[string][]byte{
		"empty":            nil,
		"truncated":        root[:len(root)-1],
		"rel_depth":        append([]byte{tileHeight, 0}, root[2:]...),
		"rel_path":         append([]byte{0, 1}, root[2:]...),
		"duplicate":        append(bytes.Clone(root[:2+encodedSizeOf(t, root[2:])]), root...),
		"unknown kind":     {0, 0, 9},
		"trailing garbage": append(bytes.Clone(root), 0xff),
	} {
		_, err1 := tileNode(tile, key)
		_, err2 := tileNode(tile, deepest)
		if !errors.Is(err1, errTile) && !errors.Is(err2, errTile) {
			t.Errorf("%s: %v, %v; want errTile", name, err1, err2)
		}
	}
}

func encodedSizeOf(t *testing.T, b []byte) int {
	n, ok := nodeSize(b)
	if !ok {
		t.Fatal("nodeSize")
	}
	return n
}

// FuzzTileNode: tileNode never panics, and a node it returns re-encodes
// inside the input.
func FuzzTileNode(f *testing.F) {
	tiled(tileBatch(f, 200, 3), func(k vmap.NodeKey, tile []byte) { f.Add(tile, k.Depth, k.Path[:4]) })
	f.Fuzz(func(t *testing.T, tile []byte, depth uint16, path []byte) {
		k := vmap.NodeKey{Depth: depth % (vmap.MaxDepth + 1)}
		copy(k.Path[:], path)
		k = vmap.NodeKey{Version: k.Version, Depth: k.Depth, Path: prefixOf(k.Path, int(k.Depth))}
		n, err := tileNode(tile, k)
		if err == nil && !bytes.Contains(tile, n.AppendBinary(nil)) {
			t.Fatal("node not from the tile")
		}
	})
}

func prefixOf(p vmap.Label, depth int) vmap.Label {
	var out vmap.Label
	n := depth / 8
	copy(out[:n], p[:n])
	if r := depth % 8; r != 0 {
		out[n] = p[n] &^ (0xff >> r)
	}
	return out
}

// TestTileCache: the cache keeps tiles up to its budget, evicting the
// oldest first, and ignores tiles too big for it.
func TestTileCache(t *testing.T) {
	c := newTileCache(16 * 1000)
	key := func(i int) vmap.NodeKey { return vmap.NodeKey{Version: uint64(i) * 16} } // one shard
	tile := func(n int) *parsedTile { return &parsedTile{data: make([]byte, n)} }
	for i := range 30 {
		c.put(key(i), tile(50))
	}
	if sh := c.shard(key(0)); sh.size > 1000 {
		t.Fatalf("shard holds %d bytes over a budget of 1000", sh.size)
	}
	if _, ok := c.get(key(0)); ok {
		t.Fatal("oldest tile not evicted")
	}
	if _, ok := c.get(key(29)); !ok {
		t.Fatal("newest tile evicted")
	}
	c.put(key(100), tile(1000/16+1))
	if _, ok := c.get(key(100)); ok {
		t.Fatal("oversized tile cached")
	}
	var none *tileCache
	none.put(key(1), tile(1))
	if _, ok := none.get(key(1)); ok || newTileCache(-1) != nil {
		t.Fatal("disabled cache")
	}
}
