package fsblob

// On-disk layout (docs/spec/relay-storage.md §File layout).
//
//	<dir>/blobs/<id[0] hex>/<id hex>/meta              the blob's meta record
//	<dir>/blobs/<id[0] hex>/<id hex>/<offset>.chunk    a chunk: bytes from offset
//	<dir>/blobs/<id[0] hex>/<id hex>/.tmp-*            a chunk being written
//	<dir>/blobs/<id[0] hex>/.tmp-<id hex>              a blob being created
//	<dir>/trash/<id hex>-<n>                           a blob being deleted
//
// <offset> is 16 lowercase hexadecimal digits. A blob's chunks, sorted by
// offset, cover [0, committed) without gap or overlap.
//
// Meta record (54 bytes): uint8 version = 2 || uint64 size || int64
// expires_ms || uint8 final (0 or 1) || opaque tag[32] || uint32 crc32c
// of the preceding bytes. A version 1 record (22 bytes, written before
// tags existed) is the same without the tag: it reads as the zero tag and
// is rewritten as version 2 (zero tag) when finalized.
//
// Chunk file: data || crc[ceil(n / 65536)] || trailer, where crc[i] is
// the CRC-32C of the i-th 64 KiB block of data (the last may be shorter),
// and the trailer (28 bytes) is "MOATCHK1" || uint64 offset || uint64 n
// || uint32 crc32c(crc table || "MOATCHK1" || offset || n). Integers are
// big-endian. A reader verifies a block's CRC before it returns any byte
// of it, and the trailer before it trusts the table.
//
// CRC-32C, not a cryptographic hash: it guards against damage on disk
// (T39), not against a malicious relay, which the client's AEAD over the
// attachment already defeats.

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"

	"github.com/moat-im/moat/server/store/blob"
)

const (
	blockSize   = 64 << 10
	trailerSize = 8 + 8 + 8 + 4
	chunkMagic  = "MOATCHK1"
	chunkSuffix = ".chunk"
	tempPrefix  = ".tmp-"
	metaName    = "meta"
	metaVersion = 2
	metaSize    = 1 + 8 + 8 + 1 + 32 + 4
	// metaV1Size is the size of a version 1 meta record (no tag).
	metaV1Size = 1 + 8 + 8 + 1 + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// blocks returns the number of blocks of a chunk of n bytes.
func blocks(n int64) int64 { return (n + blockSize - 1) / blockSize }

// chunkFileSize returns the size of the file of a chunk of n bytes.
func chunkFileSize(n int64) int64 { return n + 4*blocks(n) + trailerSize }

func chunkName(off int64) string { return fmt.Sprintf("%016x%s", off, chunkSuffix) }

// parseChunkName returns the offset of a chunk file name.
func parseChunkName(name string) (int64, bool) {
	h, ok := strings.CutSuffix(name, chunkSuffix)
	if !ok || len(h) != 16 || strings.ToLower(h) != h {
		return 0, false
	}
	off, err := strconv.ParseUint(h, 16, 63)
	if err != nil {
		return 0, false
	}
	return int64(off), true
}

// trailer returns the trailer of a chunk with the given CRC table.
func trailer(crcs []byte, off, n int64) []byte {
	t := make([]byte, 0, trailerSize)
	t = append(t, chunkMagic...)
	t = binary.BigEndian.AppendUint64(t, uint64(off))
	t = binary.BigEndian.AppendUint64(t, uint64(n))
	c := crc32.Update(crc32.Checksum(crcs, castagnoli), castagnoli, t)
	return binary.BigEndian.AppendUint32(t, c)
}

// parseTrailer returns the offset and length a trailer names.
func parseTrailer(t []byte) (off, n int64, err error) {
	if len(t) != trailerSize || string(t[:8]) != chunkMagic {
		return 0, 0, fmt.Errorf("%w: chunk trailer", blob.ErrCorrupt)
	}
	o, l := binary.BigEndian.Uint64(t[8:]), binary.BigEndian.Uint64(t[16:])
	if o > 1<<62 || l == 0 || l > 1<<62 {
		return 0, 0, fmt.Errorf("%w: chunk trailer", blob.ErrCorrupt)
	}
	return int64(o), int64(l), nil
}

// checkTrailer verifies the trailer's CRC over the table.
func checkTrailer(crcs, t []byte) error {
	c := crc32.Update(crc32.Checksum(crcs, castagnoli), castagnoli, t[:trailerSize-4])
	if c != binary.BigEndian.Uint32(t[trailerSize-4:]) {
		return fmt.Errorf("%w: chunk trailer checksum", blob.ErrCorrupt)
	}
	return nil
}

// meta is a blob's meta record.
type meta struct {
	size      int64
	expiresMs int64
	final     bool
	tag       blob.Tag
}

func (m meta) encode() []byte {
	b := make([]byte, 0, metaSize)
	b = append(b, metaVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(m.size))
	b = binary.BigEndian.AppendUint64(b, uint64(m.expiresMs))
	f := byte(0)
	if m.final {
		f = 1
	}
	b = append(b, f)
	b = append(b, m.tag[:]...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// decodeMeta parses a meta record of version 2, or of version 1 (the zero
// tag).
func decodeMeta(b []byte) (meta, error) {
	if len(b) == 0 {
		return meta{}, fmt.Errorf("%w: empty meta record", blob.ErrCorrupt)
	}
	var want int
	switch b[0] {
	case 1:
		want = metaV1Size
	case metaVersion:
		want = metaSize
	default:
		return meta{}, fmt.Errorf("%w: meta record version %d (this store reads 1 and 2)", blob.ErrCorrupt, b[0])
	}
	if len(b) != want || b[17] > 1 ||
		crc32.Checksum(b[:want-4], castagnoli) != binary.BigEndian.Uint32(b[want-4:]) {
		return meta{}, fmt.Errorf("%w: meta record", blob.ErrCorrupt)
	}
	m := meta{
		size:      int64(binary.BigEndian.Uint64(b[1:])),
		expiresMs: int64(binary.BigEndian.Uint64(b[9:])),
		final:     b[17] == 1,
	}
	if b[0] == metaVersion {
		copy(m.tag[:], b[18:18+len(m.tag)])
	}
	if m.size < 1 || m.expiresMs < 0 {
		return meta{}, fmt.Errorf("%w: meta record", blob.ErrCorrupt)
	}
	return m, nil
}
