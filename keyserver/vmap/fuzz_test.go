package vmap

// Fuzz targets (STYLE items 3, 11). The decoders never panic and what they
// accept re-encodes to the same bytes; FuzzUpdate checks the tree against
// the reference implementation on fuzzer-chosen epochs.

import (
	"bytes"
	"testing"
)

func FuzzParseProof(f *testing.F) {
	fx := newProofFixture(f)
	for e := range fx.roots {
		for _, l := range fx.labels() {
			p, err := fx.m.Prove(uint64(e), l)
			if err != nil {
				f.Fatal(err)
			}
			enc, err := p.Marshal()
			if err != nil {
				f.Fatal(err)
			}
			f.Add(enc, l[:], fx.roots[e][:])
		}
	}
	f.Add([]byte{0x42, 0, 0}, make([]byte, 32), make([]byte, 32))
	f.Fuzz(func(t *testing.T, data, label, root []byte) {
		p, err := ParseProof(data)
		if err != nil {
			return
		}
		re, err := p.Marshal()
		if err != nil {
			t.Fatalf("parsed proof does not marshal: %v", err)
		}
		if !bytes.Equal(re, data) {
			t.Fatalf("round trip:\n in  %x\n out %x", data, re)
		}
		var l Label
		var r Hash
		copy(l[:], label)
		copy(r[:], root)
		// Verify never panics, and what it accepts for a fixture root
		// agrees with the map.
		res, err := Verify(r, l, p)
		if err == nil {
			for e, fr := range fx.roots {
				if fr != r {
					continue
				}
				c, ok, lerr := fx.m.Lookup(uint64(e), l)
				if lerr != nil || ok != res.Present || c != res.Commitment {
					t.Fatalf("a fuzzed proof verifies to %+v, the map says %v %v", res, ok, c)
				}
			}
		}
	})
}

func FuzzParseNode(f *testing.F) {
	f.Add(NewLeaf(Label{1}, Commitment{2}).AppendBinary(nil))
	f.Add(NewInterior(Child{Kind: KindLeaf, Version: 3, Hash: Hash{4}}, Child{}).AppendBinary(nil))
	f.Add(NewInterior(Child{Kind: KindInterior, Version: 5, Hash: Hash{6}}, Child{Kind: KindLeaf, Version: 1, Hash: Hash{7}}).AppendBinary(nil))
	f.Add(Node{}.AppendBinary(nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := ParseNode(data)
		if err != nil {
			return
		}
		if err := n.check(); err != nil {
			t.Fatalf("parsed node fails check: %v", err)
		}
		if re := n.AppendBinary(nil); !bytes.Equal(re, data) {
			t.Fatalf("round trip:\n in  %x\n out %x", data, re)
		}
	})
}

func FuzzParseNodeKey(f *testing.F) {
	f.Add(RootKey(9).AppendBinary(nil))
	f.Add(NodeKey{Version: 1, Depth: 9, Path: Label{0xab, 0x80}}.AppendBinary(nil))
	f.Add(NodeKey{Version: 1 << 60, Depth: 256, Path: Label{0xff, 31: 0xff}}.AppendBinary(nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseNodeKey(data)
		if err != nil {
			return
		}
		if !k.Valid() {
			t.Fatal("parsed key is invalid")
		}
		if re := k.AppendBinary(nil); !bytes.Equal(re, data) {
			t.Fatalf("round trip:\n in  %x\n out %x", data, re)
		}
	})
}

// FuzzUpdate reads epochs of changes from the input: each change is one
// byte choosing a label from a small, deliberately clustered alphabet and
// one byte of commitment; a zero selector byte ends the epoch.
func FuzzUpdate(f *testing.F) {
	f.Add([]byte{1, 1, 2, 2, 0, 0, 3, 3, 1, 9, 0, 0, 200, 1})
	f.Add([]byte{0xff, 1, 0xfe, 2, 0x7f, 3, 0x80, 4})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 512 {
			return
		}
		s := NewMemStore()
		m := New(s, &Options{Parallelism: 2})
		ref := refMap{}
		var probes []Label
		epoch := uint64(0)
		var cs []Change
		seen := map[Label]bool{}
		flush := func() {
			b, err := m.Update(epoch, cs)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Commit(b); err != nil {
				t.Fatal(err)
			}
			for _, c := range cs {
				ref[c.Label] = c.Commitment
			}
			if b.Root != ref.root() {
				t.Fatalf("epoch %d: root differs from the reference", epoch)
			}
			epoch++
			cs, seen = nil, map[Label]bool{}
		}
		for i := 0; i+1 < len(data); i += 2 {
			if data[i] == 0 {
				flush()
				continue
			}
			l := fuzzLabel(data[i])
			probes = append(probes, l, fuzzLabel(data[i]^0x55))
			if seen[l] {
				continue
			}
			seen[l] = true
			cs = append(cs, Change{l, Commitment{data[i+1]}})
		}
		flush()
		checkAgainstRef(t, m, epoch-1, ref, probes)
	})
}

// fuzzLabel spreads a byte over a label so that labels share prefixes of
// many lengths, down to all 255 bits.
func fuzzLabel(b byte) Label {
	var l Label
	switch b >> 6 {
	case 0:
		l[0] = b
	case 1:
		l[15] = b
	case 2:
		l[31] = b
	case 3:
		l[0], l[31] = 0xff, b&0x0f
	}
	return l
}
