package attach

import (
	"errors"
	"math/bits"

	"github.com/moat-im/moat/server/store/blob"
	"github.com/tink-crypto/tink-go/v2/streamingaead/subtle"
)

// Encryption parameters, version 2 (docs/spec/attachments.md §Encryption):
// version 1 with the plaintext padded (§Padding).
const (
	// Version is the reference and encryption version.
	Version = 2
	// KeySize is the size of a file key.
	KeySize = 32
	// SegmentSize is the ciphertext segment size S.
	SegmentSize = 1 << 20
	// HeaderSize is the size of the ciphertext header.
	HeaderSize = 1 + KeySize + subtle.AESGCMHKDFNoncePrefixSizeInBytes
	// TagSize is the size of each segment's tag.
	TagSize = subtle.AESGCMHKDFTagSizeInBytes
	// FirstSegmentPlaintext is F, the plaintext bytes of the first segment.
	FirstSegmentPlaintext = SegmentSize - TagSize - HeaderSize
	// SegmentPlaintext is C, the plaintext bytes of every other segment.
	SegmentPlaintext = SegmentSize - TagSize
	// MaxPlaintextSize bounds a plaintext.
	MaxPlaintextSize = 1 << 40
	// MinPaddedSize is the smallest padded size: every plaintext of at
	// most 4 KiB is padded to 4 KiB.
	MinPaddedSize = 4 << 10

	// adLabel starts the associated data.
	adLabel = "moat/v1/attachment"
)

// Key is a file key: 32 random bytes, one file only. Its String method
// does not reveal it.
type Key [KeySize]byte

// String implements fmt.Stringer without revealing the key.
func (Key) String() string { return "attach.Key(redacted)" }

// GoString implements fmt.GoStringer without revealing the key.
func (Key) GoString() string { return "attach.Key(redacted)" }

// Segments returns n(P), the number of segments of a plaintext of p bytes.
func Segments(p int64) int64 {
	if p <= FirstSegmentPlaintext {
		return 1
	}
	return 1 + (p-FirstSegmentPlaintext+SegmentPlaintext-1)/SegmentPlaintext
}

// CiphertextSize returns CiphertextSize(P), the size of the encryption of
// p bytes, for 0 ≤ p ≤ MaxPlaintextSize. An attachment of P bytes is
// CiphertextSize(PaddedSize(P)) bytes at the relay.
func CiphertextSize(p int64) int64 { return HeaderSize + p + TagSize*Segments(p) }

// PaddedSize returns PaddedSize(P) (docs/spec/attachments.md §Padding),
// for 0 ≤ p ≤ MaxPlaintextSize: MinPaddedSize for p ≤ MinPaddedSize,
// otherwise Padmé: p rounded up to a multiple of 2^(E−S), where
// E = ⌊log₂ p⌋ and S = ⌊log₂ E⌋ + 1, so that the padded size has at most
// S significant bits, and the padding is less than 2^−S (6.25%) of p.
func PaddedSize(p int64) int64 {
	if p <= MinPaddedSize {
		return MinPaddedSize
	}
	e := bits.Len64(uint64(p)) - 1
	s := bits.Len64(uint64(e))
	mask := int64(1)<<(e-s) - 1
	return (p + mask) &^ mask
}

// AssociatedData returns AD(blob_id).
func AssociatedData(id blob.ID) []byte {
	ad := make([]byte, 0, len(adLabel)+2+len(id))
	ad = append(ad, adLabel...)
	ad = append(ad, 0, Version)
	return append(ad, id[:]...)
}

// newAEAD returns the version-1 streaming AEAD under key.
func newAEAD(key *Key) (*subtle.AESGCMHKDF, error) {
	a, err := subtle.NewAESGCMHKDF(key[:], "SHA256", KeySize, SegmentSize, 0)
	if err != nil {
		return nil, errors.New("attach: streaming AEAD: " + err.Error())
	}
	return a, nil
}
