package attach

import (
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/moat-im/moat/server/store/blob"
)

// ReferenceSize is the size of an encoded AttachmentReference.
const ReferenceSize = 1 + 32 + KeySize + 8 + 8 + 32 + 8

// Reference is what a recipient needs to download and decrypt an
// attachment (docs/spec/attachments.md §Reference). It travels inside an
// end-to-end encrypted message; Key is a secret.
type Reference struct {
	ID             blob.ID
	Key            Key
	PlaintextSize  int64
	CiphertextSize int64
	// Digest is the SHA-256 of the whole ciphertext.
	Digest  [32]byte
	Expires time.Time
}

// check applies §Reference's rules.
func (r *Reference) check() error {
	var zero [32]byte
	switch {
	case r.PlaintextSize < 0 || r.PlaintextSize > MaxPlaintextSize:
		return fmt.Errorf("%w: plaintext size %d", ErrMalformedReference, r.PlaintextSize)
	case r.CiphertextSize != CiphertextSize(PaddedSize(r.PlaintextSize)):
		return fmt.Errorf("%w: ciphertext size %d does not match plaintext size", ErrMalformedReference, r.CiphertextSize)
	case subtle.ConstantTimeCompare(r.ID[:], zero[:]) == 1:
		return fmt.Errorf("%w: zero blob id", ErrMalformedReference)
	case subtle.ConstantTimeCompare(r.Key[:], zero[:]) == 1:
		return fmt.Errorf("%w: zero key", ErrMalformedReference)
	case r.Expires.UnixMilli() <= 0:
		return fmt.Errorf("%w: expiry", ErrMalformedReference)
	}
	return nil
}

// Marshal returns the AttachmentReference encoding, or an error for a
// reference that breaks §Reference's rules.
func (r *Reference) Marshal() ([]byte, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, ReferenceSize)
	b = append(b, Version)
	b = append(b, r.ID[:]...)
	b = append(b, r.Key[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.PlaintextSize))
	b = binary.BigEndian.AppendUint64(b, uint64(r.CiphertextSize))
	b = append(b, r.Digest[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Expires.UnixMilli()))
	return b, nil
}

// ParseReference parses an AttachmentReference strictly: errors match
// ErrMalformedReference.
func ParseReference(b []byte) (*Reference, error) {
	if len(b) != ReferenceSize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrMalformedReference, len(b), ReferenceSize)
	}
	if b[0] != Version {
		return nil, fmt.Errorf("%w: version %d", ErrMalformedReference, b[0])
	}
	r := &Reference{}
	b = b[1:]
	b = b[copy(r.ID[:], b):]
	b = b[copy(r.Key[:], b):]
	p, c := binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])
	b = b[16:]
	b = b[copy(r.Digest[:], b):]
	exp := binary.BigEndian.Uint64(b)
	if p > MaxPlaintextSize || c > math.MaxInt64 || exp > math.MaxInt64 {
		return nil, fmt.Errorf("%w: size or expiry out of range", ErrMalformedReference)
	}
	r.PlaintextSize, r.CiphertextSize, r.Expires = int64(p), int64(c), time.UnixMilli(int64(exp))
	if err := r.check(); err != nil {
		return nil, err
	}
	return r, nil
}
