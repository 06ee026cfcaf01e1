package mls

// The strict decoder and the encoder helpers every wire_*.go file uses to
// implement RFC 9420's TLS presentation language (§2.1) on top of
// cryptobyte and internal/wire.

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/moat-im/moat/crypto/mls/internal/wire"
	"golang.org/x/crypto/cryptobyte"
)

// Size bounds. Every decoder checks them before it allocates; every encoder
// refuses to produce what the decoders would refuse.
const (
	// MaxMessageSize bounds the input of every Decode function, and so of
	// any single encoded object, ratchet trees included. A 50,000-member
	// X-Wing tree is about 130 MB; Moat serves trees that large out of band
	// (docs/spec/mls-profile.md), so the bound is generous on purpose.
	MaxMessageSize = 1 << 28

	// MaxExtensions bounds the entries of one extension list (§13).
	MaxExtensions = 256

	// MaxCapabilityEntries bounds each list in Capabilities and
	// RequiredCapabilities (§7.2, §11.1), GREASE values included.
	MaxCapabilityEntries = 256

	// MaxCertificates bounds the chain of an X.509 credential (§5.3).
	MaxCertificates = 32

	// MaxKeySize bounds HPKE and signature public keys, KEM outputs and
	// other key-sized opaque fields (X-Wing keys are 1,216 bytes, ML-DSA-87
	// keys 2,592).
	MaxKeySize = 1 << 13

	// MaxSignatureSize bounds signatures (ML-DSA-87: 4,627 bytes; SLH-DSA
	// up to 49,856).
	MaxSignatureSize = 1 << 16

	// MaxHashSize bounds hash outputs, MACs, references, group IDs, PSK
	// IDs and nonces, and secrets.
	MaxHashSize = 1 << 8

	// MaxTreeLeaves bounds the leaves a decoded structure may refer to: the
	// entries of a ratchet tree (2·MaxTreeLeaves−1 nodes), unmerged leaves,
	// the ciphertexts of one UpdatePathNode, the proposals of one Commit and
	// the recipients of one Welcome.
	MaxTreeLeaves = 1 << 20

	// MaxPathLength bounds the nodes of one UpdatePath (the depth of a tree
	// of MaxTreeLeaves leaves).
	MaxPathLength = 20

	// MaxPSKs bounds the PreSharedKeyIDs of one GroupSecrets.
	MaxPSKs = 1 << 10

	// maxOpaque bounds opaque fields without a tighter bound (credentials,
	// certificates, extension data, application data, ciphertexts).
	maxOpaque = wire.MaxVarLen
)

// Decoding failures. A *DecodeError wraps exactly one of them.
var (
	// ErrMalformed: truncated input, a non-minimal or reserved
	// variable-length header, a bool or optional presence octet other than
	// 0 or 1, non-zero padding, or a structural rule of the encoding broken.
	ErrMalformed = errors.New("malformed encoding")
	// ErrTrailingData: bytes left after a complete structure.
	ErrTrailingData = errors.New("trailing data")
	// ErrTooLarge: a length or count above one of the Max bounds.
	ErrTooLarge = errors.New("size bound exceeded")
	// ErrInvalidValue: an enum value the specification does not define
	// (or reserves) where the value selects the structure that follows.
	ErrInvalidValue = errors.New("invalid enum value")
	// ErrDuplicateExtension: two extensions of one type in a list (§13.4).
	ErrDuplicateExtension = errors.New("duplicate extension type")
)

// DecodeError reports why an encoded structure was refused.
type DecodeError struct {
	Struct string // the top-level structure being decoded, e.g. "KeyPackage"
	Field  string // the §-named field where decoding stopped, e.g. "leaf_node.signature"
	Err    error  // ErrMalformed, ErrTrailingData, ErrTooLarge, ErrInvalidValue or ErrDuplicateExtension
}

func (e *DecodeError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("mls: decoding %s: %v", e.Struct, e.Err)
	}
	return fmt.Sprintf("mls: decoding %s: %s: %v", e.Struct, e.Field, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// EncodeError reports a structure that cannot be encoded: a select field
// that does not match the value present, or a bound exceeded.
type EncodeError struct {
	Struct string
	Field  string
	Err    error // ErrInvalidValue or ErrTooLarge
}

func (e *EncodeError) Error() string {
	return fmt.Sprintf("mls: encoding %s: %s: %v", e.Struct, e.Field, e.Err)
}

func (e *EncodeError) Unwrap() error { return e.Err }

// decoder reads one structure. The first failure sticks: later reads return
// zero values, so decode functions read like the spec's struct definitions
// and check d.err once at the end.
type decoder struct {
	s   cryptobyte.String
	err *DecodeError
}

func (d *decoder) fail(field string, err error) {
	if d.err == nil {
		d.err = &DecodeError{Field: field, Err: err}
	}
}

func (d *decoder) ok() bool    { return d.err == nil }
func (d *decoder) empty() bool { return len(d.s) == 0 }

func (d *decoder) u8(field string) uint8 {
	var v uint8
	if d.err == nil && !d.s.ReadUint8(&v) {
		d.fail(field, ErrMalformed)
	}
	return v
}

func (d *decoder) u16(field string) uint16 {
	var v uint16
	if d.err == nil && !d.s.ReadUint16(&v) {
		d.fail(field, ErrMalformed)
	}
	return v
}

func (d *decoder) u32(field string) uint32 {
	var v uint32
	if d.err == nil && !d.s.ReadUint32(&v) {
		d.fail(field, ErrMalformed)
	}
	return v
}

func (d *decoder) u64(field string) uint64 {
	var v uint64
	if d.err == nil && !d.s.ReadUint64(&v) {
		d.fail(field, ErrMalformed)
	}
	return v
}

// boolean reads a TLS bool or the presence octet of optional<T> (§2.1.1).
func (d *decoder) boolean(field string) bool {
	var v bool
	if d.err == nil && !wire.ReadBool(&d.s, &v) {
		d.fail(field, ErrMalformed)
	}
	return v
}

// fixed reads opaque field[n].
func (d *decoder) fixed(field string, n int) []byte {
	var v []byte
	if d.err == nil && !d.s.ReadBytes(&v, n) {
		d.fail(field, ErrMalformed)
	}
	return v[:len(v):len(v)]
}

// length reads a §2.1.2 variable-length header and checks it against max
// and against the input left.
func (d *decoder) length(field string, max int) int {
	if d.err != nil {
		return 0
	}
	var n int
	switch {
	case !wire.ReadVarLen(&d.s, &n):
		d.fail(field, ErrMalformed)
	case n > max:
		d.fail(field, ErrTooLarge)
	case n > len(d.s):
		d.fail(field, ErrMalformed)
	default:
		return n
	}
	return 0
}

// opaque reads opaque field<V> of at most max bytes. The result aliases the
// decoder's private copy of the input (see decode), never the caller's, and
// has no spare capacity; an empty field decodes as nil.
func (d *decoder) opaque(field string, max int) []byte {
	n := d.length(field, max)
	if d.err != nil || n == 0 {
		return nil
	}
	v := d.s[:n:n]
	d.s = d.s[n:]
	return v
}

// vector reads the body of a vector<V> of at most maxBytes bytes into a
// sub-decoder for its elements.
func (d *decoder) vector(field string, maxBytes int) *decoder {
	n := d.length(field, maxBytes)
	sub := &decoder{s: d.s[:n:n]}
	d.s = d.s[n:]
	return sub
}

// join copies a sub-decoder's failure into d.
func (d *decoder) join(sub *decoder) {
	if d.err == nil && sub.err != nil {
		d.err = sub.err
	}
}

// readList reads T elements<V>: at most max elements, elements read by elem
// until the vector body is exhausted.
func readList[T any](d *decoder, field string, max int, elem func(*decoder) T) []T {
	sub := d.vector(field, maxOpaque)
	if d.err != nil {
		return nil
	}
	var out []T
	for !sub.empty() && sub.ok() {
		if len(out) == max {
			sub.fail(field, ErrTooLarge)
			break
		}
		out = append(out, elem(sub))
	}
	d.join(sub)
	if d.err != nil {
		return nil
	}
	return out
}

// readU16List reads uint16 elements<V>, as Capabilities uses.
func readU16List[T ~uint16](d *decoder, field string, max int) []T {
	n := d.length(field, 2*max+1)
	if d.err != nil {
		return nil
	}
	if n%2 != 0 {
		d.fail(field, ErrMalformed)
		return nil
	}
	if n/2 > max {
		d.fail(field, ErrTooLarge)
		return nil
	}
	if n == 0 {
		return nil
	}
	out := make([]T, n/2)
	for i := range out {
		out[i] = T(uint16(d.s[2*i])<<8 | uint16(d.s[2*i+1]))
	}
	d.s = d.s[n:]
	return out
}

// decode runs f over a private copy of in and requires it to consume all of
// it. The copy means decoded slices never alias the caller's buffer.
func decode(name string, in []byte, f func(*decoder)) error {
	if len(in) > MaxMessageSize {
		return &DecodeError{Struct: name, Err: ErrTooLarge}
	}
	d := &decoder{s: bytes.Clone(in)}
	f(d)
	if d.err == nil && !d.empty() {
		d.err = &DecodeError{Err: ErrTrailingData}
	}
	if d.err != nil {
		d.err.Struct = name
		return d.err
	}
	return nil
}

// encode runs f into a fresh builder.
func encode(name string, f func(*cryptobyte.Builder)) ([]byte, error) {
	var b cryptobyte.Builder
	f(&b)
	out, err := b.Bytes()
	if err != nil {
		var ee *EncodeError
		if errors.As(err, &ee) {
			ee.Struct = name
			return nil, ee
		}
		return nil, &EncodeError{Struct: name, Err: ErrTooLarge}
	}
	return out, nil
}

func encodeFail(b *cryptobyte.Builder, field string, err error) {
	b.SetError(&EncodeError{Field: field, Err: err})
}

// addOpaque appends opaque v<V>, refusing more than max bytes.
func addOpaque(b *cryptobyte.Builder, field string, v []byte, max int) {
	if len(v) > max {
		encodeFail(b, field, ErrTooLarge)
		return
	}
	wire.AddVarBytes(b, v)
}

// addList appends T elements<V>, refusing more than max elements.
func addList[T any](b *cryptobyte.Builder, field string, v []T, max int, elem func(*cryptobyte.Builder, *T)) {
	if len(v) > max {
		encodeFail(b, field, ErrTooLarge)
		return
	}
	wire.AddVarVector(b, func(b *cryptobyte.Builder) {
		for i := range v {
			elem(b, &v[i])
		}
	})
}

func addU16List[T ~uint16](b *cryptobyte.Builder, field string, v []T, max int) {
	addList(b, field, v, max, func(b *cryptobyte.Builder, x *T) { b.AddUint16(uint16(*x)) })
}
