package badgerstore

// Map tiles (schema.go): the map nodes one epoch writes are stored by
// tile, not one key per node. A tile is a band of tileHeight levels of
// one subtree; its key is the map key of the band's top position, and its
// value holds every node of that version inside it. An epoch of 32,768
// updates on a 1,000,000-label map writes about 238,000 nodes but about
// 61,000 tiles, and badger's cost per epoch (memtable inserts, compaction)
// goes with the number of keys.
//
//	struct {
//	    uint8 rel_depth;        /* depth - tile depth, < tileHeight */
//	    uint8 rel_path;         /* the rel_depth path bits below the tile's position */
//	    Node  node;             /* vmap Node encoding */
//	} TileNode;
//
//	TileNode tile[];            /* at least one; by (rel_depth, rel_path), strictly increasing */

import (
	"errors"
	"slices"
	"sync"

	"github.com/moat-im/moat/keyserver/vmap"
)

// tileHeight is the number of levels of a tile. A tile holds at most
// 2^tileHeight - 1 nodes: with 4, at most 15 (1.3 KB).
const tileHeight = 4

var errTile = errors.New("malformed map tile")

// tileKey returns the key of the tile that holds the node at k: the same
// version, the depth rounded down to a multiple of tileHeight, the path
// cut to that depth.
func tileKey(k vmap.NodeKey) vmap.NodeKey {
	top := k.Depth - k.Depth%tileHeight
	t := vmap.NodeKey{Version: k.Version, Depth: top}
	n := int(top) / 8
	copy(t.Path[:n], k.Path[:n])
	if r := top % 8; r != 0 {
		t.Path[n] = k.Path[n] &^ (0xff >> r)
	}
	return t
}

// relPath returns the bits of path from depth top to depth top+rel, as an
// integer.
func relPath(path *vmap.Label, top, rel int) uint8 {
	var v uint8
	for i := top; i < top+rel; i++ {
		v = v<<1 | path[i/8]>>(7-i%8)&1
	}
	return v
}

// nodeSize returns the length of the vmap Node encoding at the start of
// b, or false.
func nodeSize(b []byte) (int, bool) {
	if len(b) == 0 {
		return 0, false
	}
	child := func(i int) (int, bool) {
		if len(b) <= i {
			return 0, false
		}
		switch vmap.NodeKind(b[i]) {
		case vmap.KindEmpty:
			return 1, true
		case vmap.KindLeaf, vmap.KindInterior:
			return 1 + 8 + vmap.HashSize, true
		}
		return 0, false
	}
	switch vmap.NodeKind(b[0]) {
	case vmap.KindEmpty:
		return 1, true
	case vmap.KindLeaf:
		return 1 + vmap.LabelSize + vmap.CommitmentSize, true
	case vmap.KindInterior:
		l, ok := child(1)
		if !ok {
			return 0, false
		}
		r, ok := child(1 + l)
		return 1 + l + r, ok
	}
	return 0, false
}

// appendTileNode appends the TileNode of the node at k, in the tile at
// depth top.
func appendTileNode(b []byte, k vmap.NodeKey, top uint16, n vmap.Node) []byte {
	rel := int(k.Depth - top)
	b = append(b, byte(rel), relPath(&k.Path, int(top), rel))
	return n.AppendBinary(b)
}

// slots is the number of node positions in a tile.
const slots = 1<<tileHeight - 1

// A parsedTile is a tile parsed strictly, with where each of its nodes is.
type parsedTile struct {
	data []byte
	off  [slots][2]uint16 // start and end in data of the node at slot (1<<rel_depth)-1+rel_path; end 0: none
}

// parseTile parses the tile whose top position is at depth top. Any
// deviation from the encoding is errTile.
func parseTile(b []byte, top int) (*parsedTile, error) {
	if len(b) == 0 || len(b) > slots*(2+vmap.MaxNodeSize) {
		return nil, errTile
	}
	t := &parsedTile{data: b}
	last := -1
	for i := 0; i < len(b); {
		if len(b)-i < 2 || b[i] >= tileHeight || int(b[i+1]) >= 1<<b[i] || top+int(b[i]) > vmap.MaxDepth {
			return nil, errTile
		}
		slot := 1<<b[i] - 1 + int(b[i+1])
		if slot <= last {
			return nil, errTile
		}
		last = slot
		n, ok := nodeSize(b[i+2:])
		if !ok || len(b)-i-2 < n {
			return nil, errTile
		}
		t.off[slot] = [2]uint16{uint16(i + 2), uint16(i + 2 + n)}
		i += 2 + n
	}
	return t, nil
}

// node returns the node at k, which must be in the tile's band and under
// its position: vmap.ErrNodeNotFound if the tile has none there, errTile
// if its encoding does not parse.
func (t *parsedTile) node(k vmap.NodeKey) (vmap.Node, error) {
	top := int(k.Depth - k.Depth%tileHeight)
	rel := int(k.Depth) - top
	o := t.off[1<<rel-1+int(relPath(&k.Path, top, rel))]
	if o[1] == 0 {
		return vmap.Node{}, vmap.ErrNodeNotFound
	}
	n, err := vmap.ParseNode(t.data[o[0]:o[1]])
	if err != nil {
		return vmap.Node{}, errTile
	}
	return n, nil
}

// tileNode finds the node at k in tile, the value of tileKey(k).
func tileNode(tile []byte, k vmap.NodeKey) (vmap.Node, error) {
	t, err := parseTile(tile, int(k.Depth-k.Depth%tileHeight))
	if err != nil {
		return vmap.Node{}, err
	}
	return t.node(k)
}

// encodedSize is the length of n's vmap Node encoding.
func encodedSize(n *vmap.Node) int {
	child := func(c vmap.Child) int {
		if c.Kind == vmap.KindEmpty {
			return 1
		}
		return 1 + 8 + vmap.HashSize
	}
	switch n.Kind() {
	case vmap.KindLeaf:
		return 1 + vmap.LabelSize + vmap.CommitmentSize
	case vmap.KindInterior:
		return 1 + child(n.Left()) + child(n.Right())
	}
	return 1
}

// tiled groups the nodes of a batch (in vmap.CompareNodeKeys order) by
// tile and calls add with each tile's key and value, in key order. Within
// a tile, the batch's depth-then-path order is (rel_depth, rel_path)
// order. The values share one array.
func tiled(nodes []vmap.KeyedNode, add func(key vmap.NodeKey, tile []byte)) {
	type acc struct {
		key        vmap.NodeKey
		start, end int // of the tile's bytes in arena
	}
	index := make(map[vmap.NodeKey]int32, len(nodes)/3+1)
	of := make([]int32, len(nodes)) // each node's tile
	var tiles []acc
	for i := range nodes {
		kn := &nodes[i]
		tk := tileKey(kn.Key)
		j, ok := index[tk]
		if !ok {
			j = int32(len(tiles))
			index[tk] = j
			tiles = append(tiles, acc{key: tk})
		}
		of[i] = j
		tiles[j].end += 2 + encodedSize(&kn.Node) // size, for now
	}
	total := 0
	for j := range tiles {
		size := tiles[j].end
		tiles[j].start, tiles[j].end = total, total
		total += size
	}
	arena := make([]byte, total)
	for i := range nodes {
		kn := &nodes[i]
		t := &tiles[of[i]]
		b := appendTileNode(arena[t.end:t.end], kn.Key, t.key.Depth, kn.Node)
		t.end += len(b)
	}
	slices.SortFunc(tiles, func(a, b acc) int { return vmap.CompareNodeKeys(a.key, b.key) })
	for _, t := range tiles {
		add(t.key, arena[t.start:t.end:t.end])
	}
}

// tileCache keeps recently read map tiles, parsed, up to a byte budget,
// oldest out first, in shards to spread the lock. A visible tile never
// changes (keys are written once and GetNodes reads no tile past the
// head), so a cached tile is never stale. vmap reads a map level by level,
// and a tile holds tileHeight levels: with the cache, a tile is read and
// parsed about once per update instead of once per level.
type tileCache struct {
	shards [16]tileShard
}

type tileShard struct {
	mu     sync.Mutex
	budget int
	size   int
	tiles  map[vmap.NodeKey]*parsedTile
	order  []vmap.NodeKey // insertion order; order[head:] are live
	head   int
}

func newTileCache(budget int) *tileCache {
	if budget <= 0 {
		return nil
	}
	c := &tileCache{}
	for i := range c.shards {
		c.shards[i] = tileShard{budget: budget / len(c.shards), tiles: map[vmap.NodeKey]*parsedTile{}}
	}
	return c
}

func (c *tileCache) shard(k vmap.NodeKey) *tileShard {
	return &c.shards[(k.Path[0]^k.Path[1]^byte(k.Version)^byte(k.Depth))%byte(len(c.shards))]
}

func (c *tileCache) get(k vmap.NodeKey) (*parsedTile, bool) {
	if c == nil {
		return nil, false
	}
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tiles[k]
	return t, ok
}

func (c *tileCache) put(k vmap.NodeKey, t *parsedTile) {
	if c == nil {
		return
	}
	s := c.shard(k)
	if len(t.data) > s.budget/16 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tiles[k]; ok {
		return
	}
	for s.size+len(t.data) > s.budget && s.head < len(s.order) {
		old := s.order[s.head]
		s.head++
		s.size -= len(s.tiles[old].data)
		delete(s.tiles, old)
	}
	if s.head > len(s.order)/2 {
		s.order = append(s.order[:0], s.order[s.head:]...)
		s.head = 0
	}
	s.tiles[k] = t
	s.order = append(s.order, k)
	s.size += len(t.data)
}
