package vmap

import (
	"errors"
	"testing"
)

func TestNodeEncodingRoundTrip(t *testing.T) {
	nodes := []Node{
		{},
		NewLeaf(Label{1, 2}, Commitment{3}),
		NewInterior(Child{Kind: KindLeaf, Version: 1, Hash: Hash{1}}, Child{}),
		NewInterior(Child{}, Child{Kind: KindInterior, Version: 1 << 63, Hash: Hash{2}}),
		NewInterior(Child{Kind: KindInterior, Version: 5, Hash: Hash{3}}, Child{Kind: KindLeaf, Version: 6, Hash: Hash{4}}),
	}
	for _, n := range nodes {
		enc := n.AppendBinary(nil)
		if len(enc) > MaxNodeSize {
			t.Errorf("%v node encodes to %d bytes", n.Kind(), len(enc))
		}
		got, err := ParseNode(enc)
		if err != nil || got != n {
			t.Errorf("%v node: round trip %v, %v", n.Kind(), got, err)
		}
	}
	bad := [][]byte{
		nil,
		{3},
		{0, 0},
		append([]byte{1}, make([]byte, 63)...),
		{2, 0, 0},    // both children empty
		{2, 1, 0, 0}, // truncated child
		{2, 3, 0},    // unknown child kind
		append(NewLeaf(Label{}, Commitment{}).AppendBinary(nil), 0),
	}
	for _, b := range bad {
		if _, err := ParseNode(b); !errors.Is(err, ErrMalformedNode) {
			t.Errorf("ParseNode(%x) = %v", b, err)
		}
	}
}

func TestNodeKeyEncoding(t *testing.T) {
	keys := []NodeKey{RootKey(0), {Version: 3, Depth: 1, Path: Label{0x80}},
		{Version: 3, Depth: 12, Path: Label{0xab, 0xc0}}, {Version: 3, Depth: 256, Path: Label{31: 1}}, RootKey(1 << 40)}
	for i, k := range keys {
		enc := k.AppendBinary(nil)
		got, err := ParseNodeKey(enc)
		if err != nil || got != k {
			t.Errorf("%v: round trip %v, %v", k, got, err)
		}
		if i > 0 && CompareNodeKeys(keys[i-1], k) >= 0 {
			t.Errorf("keys %d and %d out of order", i-1, i)
		}
	}
	bad := [][]byte{
		nil,
		make([]byte, 9),
		{0, 0, 0, 0, 0, 0, 0, 0, 0, 1},          // depth 1, no path byte
		{0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x40},    // a bit past depth 1
		{0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x80, 0}, // trailing byte
		append([]byte{0, 0, 0, 0, 0, 0, 0, 0, 1, 1}, make([]byte, 33)...), // depth 257
	}
	for _, b := range bad {
		if _, err := ParseNodeKey(b); !errors.Is(err, ErrMalformedNode) {
			t.Errorf("ParseNodeKey(%x) = %v", b, err)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("encoding an invalid key did not panic")
		}
	}()
	NodeKey{Depth: 1, Path: Label{0x40}}.AppendBinary(nil)
}
