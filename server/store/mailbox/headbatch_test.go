package mailbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/transparency-dev/merkle/proof"
)

func testLeaves(n int) []HeadLeaf {
	ls := make([]HeadLeaf, n)
	for i := range ls {
		ls[i] = HeadLeaf{Mailbox: ID{byte(i), byte(i >> 8), 9}, Head: uint64(1000 + i)}
	}
	return ls
}

// TestHeadBatchEverySize: every head of batches of 1 to 70 verifies, its
// path is the RFC 6962 audit path (checked by an independent
// implementation), and it survives a round trip of its encoding.
func TestHeadBatchEverySize(t *testing.T) {
	sk, vk := testKey()
	now := time.UnixMilli(1_800_000_000_123)
	for n := 1; n <= 70; n++ {
		hs, err := SignHeadBatch(sk, testLeaves(n), now.Add(789*time.Microsecond))
		if err != nil {
			t.Fatal(err)
		}
		var root []byte
		for i, h := range hs {
			if h.Index != i || h.Size != n || !h.Time.Equal(now) || h.Head != uint64(1000+i) {
				t.Fatalf("n=%d i=%d: %+v", n, i, h)
			}
			if err := h.Verify(vk); err != nil {
				t.Fatalf("n=%d i=%d: %v", n, i, err)
			}
			path := make([][]byte, len(h.Path))
			for j := range h.Path {
				path[j] = h.Path[j][:]
			}
			r, err := proof.RootFromInclusionProof(hasher, uint64(i), uint64(n), leafHash(h.Mailbox, h.Head, &h.Salt), path)
			if err != nil {
				t.Fatal(err)
			}
			if root == nil {
				root = r
			} else if !bytes.Equal(root, r) {
				t.Fatalf("n=%d: leaf %d leads to another root", n, i)
			}
			b, err := h.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != h.EncodedLen() {
				t.Fatalf("n=%d i=%d: %d bytes in %d, EncodedLen %d", n, i, len(b), cap(b), h.EncodedLen())
			}
			if a, err := h.AppendBinary([]byte("prefix")); err != nil || string(a) != "prefix"+string(b) {
				t.Fatalf("n=%d i=%d: AppendBinary %x, %v", n, i, a, err)
			}
			q, err := ParseBatchedHead(b)
			if err != nil {
				t.Fatal(err)
			}
			if err := q.Verify(vk); err != nil {
				t.Fatal(err)
			}
			b2, _ := q.MarshalBinary()
			if !bytes.Equal(b, b2) {
				t.Fatal("round trip changed the encoding")
			}
		}
		if n > 1 && hs[0].Salt == hs[1].Salt {
			t.Fatal("leaves share a salt")
		}
	}
	// Large batches, whose paths are up to 10 hashes long.
	for _, n := range []int{129, 257, 1000, MaxHeadBatch} {
		hs, err := SignHeadBatch(sk, testLeaves(n), now)
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range []int{0, 1, n / 2, n - 2, n - 1} {
			b, err := hs[i].MarshalBinary()
			if err != nil {
				t.Fatalf("n=%d i=%d: %v", n, i, err)
			}
			q, err := ParseBatchedHead(b)
			if err != nil {
				t.Fatalf("n=%d i=%d: %v", n, i, err)
			}
			if err := q.Verify(vk); err != nil {
				t.Fatalf("n=%d i=%d: %v", n, i, err)
			}
		}
	}
	if _, err := SignHeadBatch(sk, nil, now); err == nil {
		t.Fatal("empty batch signed")
	}
	if _, err := SignHeadBatch(sk, testLeaves(MaxHeadBatch+1), now); err == nil {
		t.Fatal("oversized batch signed")
	}
}

// TestHeadBatchForged: a batched head whose statement, position or path
// was changed does not verify, nor does a head moved into another batch
// or a single head's signature taken for a batch root.
func TestHeadBatchForged(t *testing.T) {
	sk, vk := testKey()
	now := time.UnixMilli(1_800_000_000_000)
	hs, err := SignHeadBatch(sk, testLeaves(13), now)
	if err != nil {
		t.Fatal(err)
	}
	other, err := SignHeadBatch(sk, testLeaves(13), now)
	if err != nil {
		t.Fatal(err)
	}
	cp := func(h *BatchedHead) *BatchedHead {
		c := *h
		c.Path = append([][HashSize]byte(nil), h.Path...)
		c.Signature = append([]byte(nil), h.Signature...)
		return &c
	}
	single, err := SignHead(sk, hs[5].Mailbox, hs[5].Head, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func(h *BatchedHead){
		"mailbox":       func(h *BatchedHead) { h.Mailbox[0] ^= 1 },
		"head":          func(h *BatchedHead) { h.Head++ },
		"time":          func(h *BatchedHead) { h.Time = h.Time.Add(time.Millisecond) },
		"salt":          func(h *BatchedHead) { h.Salt[3] ^= 1 },
		"index":         func(h *BatchedHead) { h.Index = 4 },
		"size":          func(h *BatchedHead) { h.Size = 14 },
		"path":          func(h *BatchedHead) { h.Path[1][0] ^= 1 },
		"path swapped":  func(h *BatchedHead) { h.Path[0], h.Path[1] = h.Path[1], h.Path[0] },
		"path short":    func(h *BatchedHead) { h.Path = h.Path[:len(h.Path)-1] },
		"signature":     func(h *BatchedHead) { h.Signature[0] ^= 1 },
		"other batch":   func(h *BatchedHead) { h.Path = other[5].Path },
		"other salt":    func(h *BatchedHead) { h.Salt = other[5].Salt },
		"single head":   func(h *BatchedHead) { h.Signature = single.Signature },
		"neighbour":     func(h *BatchedHead) { h.Mailbox, h.Head = hs[4].Mailbox, hs[4].Head },
		"index too big": func(h *BatchedHead) { h.Index = 13 },
	} {
		h := cp(hs[5])
		f(h)
		err := h.Verify(vk)
		if err == nil {
			t.Errorf("%s: forged head verifies", name)
		}
	}
	if err := hs[5].Verify(vk); err != nil {
		t.Fatal(err)
	}
	// A batch root signature is not a signed head either.
	sh := &SignedHead{Mailbox: hs[0].Mailbox, Head: hs[0].Head, Time: hs[0].Time, Signature: hs[0].Signature}
	if err := sh.Verify(vk); err == nil {
		t.Fatal("batch signature verifies as a signed head")
	}
	// A one-leaf batch is not a signed head of the same pair.
	one, err := SignHeadBatch(sk, testLeaves(1), now)
	if err != nil {
		t.Fatal(err)
	}
	sh = &SignedHead{Mailbox: one[0].Mailbox, Head: one[0].Head, Time: one[0].Time, Signature: one[0].Signature}
	if err := sh.Verify(vk); err == nil {
		t.Fatal("one-leaf batch verifies as a signed head")
	}
}

// TestParseBatchedHeadStrict: truncation, trailing bytes, a bad position
// or path length, an empty signature and a time of 2^63 ms are refused.
func TestParseBatchedHeadStrict(t *testing.T) {
	sk, _ := testKey()
	hs, err := SignHeadBatch(sk, testLeaves(5), time.UnixMilli(1_800_000_000_000))
	if err != nil {
		t.Fatal(err)
	}
	b, err := hs[4].MarshalBinary() // index 4 of 5: a path of 1 hash
	if err != nil {
		t.Fatal(err)
	}
	bad := func(name string, x []byte) {
		t.Helper()
		if _, err := ParseBatchedHead(x); !errors.Is(err, ErrMalformedBatchedHead) {
			t.Errorf("%s: %v", name, err)
		}
	}
	mod := func(off int, v byte) []byte {
		x := bytes.Clone(b)
		x[off] = v
		return x
	}
	const idx = 16 + 8 + 8 + SaltSize
	for i := range len(b) {
		bad("truncated", b[:i])
	}
	bad("trailing", append(bytes.Clone(b), 0))
	bad("index = size", mod(idx+1, 5))
	bad("size 0", mod(idx+3, 0))
	bad("wrong path length for position", mod(idx+1, 3)) // index 3 of 5 needs 3 hashes
	x := bytes.Clone(b)
	x[idx+2], x[idx+3] = 0x04, 0x01 // size 1025
	bad("size above MaxHeadBatch", x)
	x = bytes.Clone(b)
	x[16+8] = 0x80 // time 2^63 ms or more
	bad("time", x)
	x = bytes.Clone(b)
	x = append(x[:len(x)-2-64], 0, 0)
	bad("empty signature", x)
}

func FuzzParseBatchedHead(f *testing.F) {
	sk, _ := testKey()
	for _, n := range []int{1, 2, 7} {
		hs, err := SignHeadBatch(sk, testLeaves(n), time.UnixMilli(1_800_000_000_000))
		if err != nil {
			f.Fatal(err)
		}
		b, _ := hs[n-1].MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseBatchedHead(data)
		if err != nil {
			return
		}
		b, err := h.MarshalBinary()
		if err != nil {
			t.Fatalf("parsed head does not marshal: %v", err)
		}
		if !bytes.Equal(b, data) {
			t.Fatal("round trip changed the encoding")
		}
	})
}

// BenchmarkSignHead is one head signed on its own, as every receipt was
// before batching.
func BenchmarkSignHead(b *testing.B) {
	sk := relayKey(b)
	t := time.UnixMilli(1_800_000_000_000)
	for i := range b.N {
		if _, err := SignHead(sk, ID{1}, uint64(i), 0, t); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignHeadBatch reports the relay's cost per head in batches of
// 1, 16 and 256 (one op is one head).
func BenchmarkSignHeadBatch(b *testing.B) {
	sk := relayKey(b)
	t := time.UnixMilli(1_800_000_000_000)
	for _, n := range []int{1, 16, 256} {
		ls := testLeaves(n)
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i += n {
				if _, err := SignHeadBatch(sk, ls, t); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifyBatchedHead is a sender's check of a receipt's head from
// a batch of 256.
func BenchmarkVerifyBatchedHead(b *testing.B) {
	sk := relayKey(b)
	hs, err := SignHeadBatch(sk, testLeaves(256), time.UnixMilli(1_800_000_000_000))
	if err != nil {
		b.Fatal(err)
	}
	for i := range b.N {
		if err := hs[i%256].Verify(sk.Public()); err != nil {
			b.Fatal(err)
		}
	}
}

func relayKey(b *testing.B) *keys.RelaySigningPrivateKey {
	k, err := keys.NewRelaySigningKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		b.Fatal(err)
	}
	return k
}

// TestTreeHashes: the signer's stack-hashed leaf and node hashes are
// RFC 6962's (the library's HashLeaf and HashChildren).
func TestTreeHashes(t *testing.T) {
	for i, l := range testLeaves(5) {
		salt := [SaltSize]byte{byte(i), 0xee}
		data := append(append(l.Mailbox[:], binary.BigEndian.AppendUint64(nil, l.Head)...), salt[:]...)
		got := leafHashArray(l.Mailbox, l.Head, &salt)
		if want := hasher.HashLeaf(data); !bytes.Equal(got[:], want) {
			t.Fatalf("leaf %d: %x, want %x", i, got, want)
		}
		other := leafHashArray(l.Mailbox, l.Head+1, &salt)
		if n, want := nodeHash(&got, &other), hasher.HashChildren(got[:], other[:]); !bytes.Equal(n[:], want) {
			t.Fatalf("node %d: %x, want %x", i, n, want)
		}
	}
}
