package mailbox

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/crypto/cryptobyte"
)

// Batched signed heads (docs/spec/relay-storage.md §Batched heads). The
// relay signs the heads of many mailboxes at once: the leaves of an RFC
// 6962 Merkle tree, one per (mailbox, head) with a random salt, and one
// signature over the root and the time. Each head travels with its salt,
// its position and its inclusion path, and proves what a SignedHead
// proves: that the relay, at that time, stated that head for that
// mailbox.

// BatchHeadContext starts every signed batch-root statement (the
// HeadBatchTBS of the spec), followed by a zero byte.
const BatchHeadContext = "moat/v1/relay/mailbox-head-batch"

// MaxHeadBatch bounds the heads of one batch.
const MaxHeadBatch = 1024

// SaltSize is the size of a leaf's salt.
const SaltSize = 16

// HashSize is the size of a tree hash (SHA-256).
const HashSize = 32

// ErrMalformedBatchedHead is returned by ParseBatchedHead.
var ErrMalformedBatchedHead = errors.New("mailbox: malformed batched head")

// ErrBadInclusion is returned by BatchedHead.Verify when the inclusion
// path does not lead from the head to a root.
var ErrBadInclusion = errors.New("mailbox: batched head not in its batch")

// HeadLeaf is a (mailbox, head) pair to sign in a batch.
type HeadLeaf struct {
	Mailbox ID
	Head    uint64
}

// A BatchedHead is a relay's statement of a mailbox head, signed as one
// leaf of a batch.
type BatchedHead struct {
	Mailbox ID
	Head    uint64
	// Time is the relay's clock when it signed the batch, at millisecond
	// precision.
	Time        time.Time
	Salt        [SaltSize]byte
	Index, Size int
	Path        [][HashSize]byte
	Signature   []byte
}

var hasher = rfc6962.DefaultHasher

// leafHash returns SHA-256(0x00 || mailbox || uint64 head || salt).
func leafHash(mb ID, head uint64, salt *[SaltSize]byte) []byte {
	h := leafHashArray(mb, head, salt)
	return h[:]
}

// leafHashArray is leafHash into an array, hashed from the stack (the
// signer's path: no allocation per leaf). It equals hasher.HashLeaf of
// the leaf (TestTreeHashes).
func leafHashArray(mb ID, head uint64, salt *[SaltSize]byte) [HashSize]byte {
	var b [1 + 16 + 8 + SaltSize]byte
	b[0] = rfc6962.RFC6962LeafHashPrefix
	copy(b[1:], mb[:])
	binary.BigEndian.PutUint64(b[17:], head)
	copy(b[25:], salt[:])
	return sha256.Sum256(b[:])
}

// nodeHash returns SHA-256(0x01 || left || right), hasher.HashChildren
// from the stack.
func nodeHash(left, right *[HashSize]byte) [HashSize]byte {
	var b [1 + 2*HashSize]byte
	b[0] = rfc6962.RFC6962NodeHashPrefix
	copy(b[1:], left[:])
	copy(b[1+HashSize:], right[:])
	return sha256.Sum256(b[:])
}

// batchTBS returns the signed statement:
//
//	BatchHeadContext || 0x00 || uint64 time_ms || uint16 size || root[32]
func batchTBS(ms uint64, size int, root []byte) []byte {
	b := make([]byte, 0, len(BatchHeadContext)+1+8+2+HashSize)
	b = append(b, BatchHeadContext...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint64(b, ms)
	b = binary.BigEndian.AppendUint16(b, uint16(size))
	return append(b, root...)
}

// pathLen returns the length of the RFC 6962 inclusion path of the leaf
// at index in a tree of size leaves (RFC 9162 §2.1.3.2).
func pathLen(index, size int) int {
	inner := bits.Len64(uint64(index) ^ uint64(size-1))
	border := bits.OnesCount64(uint64(index) >> inner)
	return inner + border
}

// SignHeadBatch signs the heads of leaves (1 to MaxHeadBatch of them) at
// time t with one signature, and returns one BatchedHead per leaf, in
// order.
func SignHeadBatch(s Signer, leaves []HeadLeaf, t time.Time) ([]*BatchedHead, error) {
	n := len(leaves)
	if n == 0 || n > MaxHeadBatch {
		return nil, fmt.Errorf("mailbox: batch of %d heads (1..%d)", n, MaxHeadBatch)
	}
	ms, err := timeMs(t)
	if err != nil {
		return nil, err
	}
	salts := make([]byte, n*SaltSize)
	rand.Read(salts)
	out := make([]*BatchedHead, n)
	// levels[0] holds the leaf hashes; each level above pairs the nodes
	// of the one below and carries an unpaired last node up unchanged,
	// which is RFC 6962's tree of n leaves.
	// The heads, their paths and the tree's levels are carved out of
	// three allocations.
	heads := make([]BatchedHead, n)
	npath := 0
	for i := range n {
		npath += pathLen(i, n)
	}
	paths := make([][HashSize]byte, npath)
	level := make([][HashSize]byte, n, 2*n+bits.Len(uint(n)))
	for i, l := range leaves {
		h := &heads[i]
		*h = BatchedHead{Mailbox: l.Mailbox, Head: l.Head, Time: time.UnixMilli(int64(ms)), Index: i, Size: n}
		copy(h.Salt[:], salts[i*SaltSize:])
		k := pathLen(i, n)
		h.Path, paths = paths[:0:k], paths[k:]
		out[i] = h
		level[i] = leafHashArray(l.Mailbox, l.Head, &h.Salt)
	}
	pos := make([]int, n)
	for i := range pos {
		pos[i] = i
	}
	for len(level) > 1 {
		for i, p := range pos {
			if q := p ^ 1; q < len(level) {
				out[i].Path = append(out[i].Path, level[q])
			}
			pos[i] = p >> 1
		}
		// The next level goes after this one in level's memory, which
		// holds every level: the sum of ceil(n/2^k) is below 2n plus the
		// number of levels.
		m := len(level)
		next := level[m:m]
		for j := 0; j+1 < m; j += 2 {
			next = append(next, nodeHash(&level[j], &level[j+1]))
		}
		if m%2 == 1 {
			next = append(next, level[m-1])
		}
		level = next
	}
	sig, err := s.Sign(batchTBS(ms, n, level[0][:]))
	if err != nil {
		return nil, fmt.Errorf("mailbox: signing head batch: %w", err)
	}
	if len(sig) == 0 || len(sig) > MaxHeadSignatureSize {
		return nil, fmt.Errorf("mailbox: signer returned a signature of %d bytes", len(sig))
	}
	for _, h := range out {
		h.Signature = sig
	}
	return out, nil
}

// Verify checks that h's inclusion path leads to a root that v's key
// signed for h's batch size and time (ErrBadInclusion, or the verifier's
// error).
func (h *BatchedHead) Verify(v Verifier) error {
	ms, err := timeMs(h.Time)
	if err != nil {
		return err
	}
	if h.Size < 1 || h.Size > MaxHeadBatch || h.Index < 0 || h.Index >= h.Size || len(h.Path) != pathLen(h.Index, h.Size) {
		return ErrBadInclusion
	}
	path := make([][]byte, len(h.Path))
	for i := range h.Path {
		path[i] = h.Path[i][:]
	}
	root, err := proof.RootFromInclusionProof(hasher, uint64(h.Index), uint64(h.Size), leafHash(h.Mailbox, h.Head, &h.Salt), path)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadInclusion, err)
	}
	return v.Verify(batchTBS(ms, h.Size, root), h.Signature)
}

// MarshalBinary returns the BatchedMailboxHead encoding:
//
//	struct {
//	    opaque mailbox[16];
//	    uint64 head;
//	    uint64 time;                   /* Unix milliseconds */
//	    opaque salt[16];
//	    uint16 index;
//	    uint16 size;                   /* 1..1024 */
//	    opaque path<0..2^16-1>;        /* 32-byte hashes */
//	    opaque signature<1..2^16-1>;
//	} BatchedMailboxHead;
func (h *BatchedHead) MarshalBinary() ([]byte, error) {
	return h.AppendBinary(nil)
}

// EncodedLen is the length of h's MarshalBinary encoding.
func (h *BatchedHead) EncodedLen() int {
	return 16 + 8 + 8 + SaltSize + 2 + 2 + 2 + HashSize*len(h.Path) + 2 + len(h.Signature)
}

// AppendBinary appends h's MarshalBinary encoding to b, growing b at most
// once, to exactly the room it needs.
func (h *BatchedHead) AppendBinary(b []byte) ([]byte, error) {
	ms, err := timeMs(h.Time)
	if err != nil {
		return nil, err
	}
	if h.Size < 1 || h.Size > MaxHeadBatch || h.Index < 0 || h.Index >= h.Size || len(h.Path) != pathLen(h.Index, h.Size) {
		return nil, fmt.Errorf("mailbox: batched head at %d of %d with a path of %d", h.Index, h.Size, len(h.Path))
	}
	if len(h.Signature) == 0 || len(h.Signature) > MaxHeadSignatureSize {
		return nil, fmt.Errorf("mailbox: signature of %d bytes", len(h.Signature))
	}
	path := HashSize * len(h.Path) // at most 32 × 10: a uint16 length
	b = slices.Grow(b, h.EncodedLen())
	b = append(b, h.Mailbox[:]...)
	b = binary.BigEndian.AppendUint64(b, h.Head)
	b = binary.BigEndian.AppendUint64(b, ms)
	b = append(b, h.Salt[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(h.Index))
	b = binary.BigEndian.AppendUint16(b, uint16(h.Size))
	b = binary.BigEndian.AppendUint16(b, uint16(path))
	for i := range h.Path {
		b = append(b, h.Path[i][:]...)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.Signature)))
	return append(b, h.Signature...), nil
}

// ParseBatchedHead parses a BatchedMailboxHead strictly: a size of 1 to
// MaxHeadBatch, an index below it, exactly the path length of that
// position, a non-empty signature, a time below 2^63 ms, no trailing
// bytes. It does not verify the path or the signature.
func ParseBatchedHead(b []byte) (*BatchedHead, error) {
	s := cryptobyte.String(b)
	var h BatchedHead
	var mb, salt []byte
	var ms uint64
	var index, size uint16
	var path, sig cryptobyte.String
	if !s.ReadBytes(&mb, 16) || !s.ReadUint64(&h.Head) || !s.ReadUint64(&ms) || !s.ReadBytes(&salt, SaltSize) ||
		!s.ReadUint16(&index) || !s.ReadUint16(&size) || !s.ReadUint16LengthPrefixed(&path) ||
		!s.ReadUint16LengthPrefixed(&sig) || !s.Empty() || len(sig) == 0 || ms > math.MaxInt64 ||
		size == 0 || size > MaxHeadBatch || index >= size || len(path) != HashSize*pathLen(int(index), int(size)) {
		return nil, ErrMalformedBatchedHead
	}
	copy(h.Mailbox[:], mb)
	copy(h.Salt[:], salt)
	h.Time = time.UnixMilli(int64(ms))
	h.Index, h.Size = int(index), int(size)
	h.Path = make([][HashSize]byte, len(path)/HashSize)
	for i := range h.Path {
		copy(h.Path[i][:], path[i*HashSize:])
	}
	h.Signature = append([]byte(nil), sig...)
	return &h, nil
}
