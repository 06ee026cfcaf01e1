// Package wire holds the TLS presentation-language helpers MLS adds on top
// of cryptobyte: variable-length vector headers (RFC 9420 §2.1.2) and
// optional<T> (§2.1.1).
//
// Every reader is strict: a header that is not the minimum-length encoding,
// a 0b11 prefix, or a length beyond what the input holds is an error (the
// reader returns false and consumes nothing useful). Callers bound total
// input size before parsing, so a length can never exceed the bytes at hand.
package wire

import "golang.org/x/crypto/cryptobyte"

// MaxVarLen is the largest length a variable-size vector header can carry
// (30 bits, RFC 9420 §2.1.2).
const MaxVarLen = 1<<30 - 1

// AddVarLen appends n as an RFC 9420 §2.1.2 variable-length integer in its
// minimum encoding. It sets an error on the builder if n > MaxVarLen.
func AddVarLen(b *cryptobyte.Builder, n int) {
	switch {
	case n < 0 || n > MaxVarLen:
		b.SetError(errTooLong)
	case n < 1<<6:
		b.AddUint8(uint8(n))
	case n < 1<<14:
		b.AddUint16(uint16(n) | 0x4000)
	default:
		b.AddUint32(uint32(n) | 0x8000_0000)
	}
}

// ReadVarLen reads a variable-length integer, refusing the reserved 0b11
// prefix and any encoding longer than the minimum.
func ReadVarLen(s *cryptobyte.String, n *int) bool {
	var first uint8
	if !s.ReadUint8(&first) {
		return false
	}
	v := uint32(first & 0x3f)
	switch first >> 6 {
	case 0:
	case 1:
		var b uint8
		if !s.ReadUint8(&b) {
			return false
		}
		v = v<<8 | uint32(b)
		if v < 1<<6 {
			return false
		}
	case 2:
		var b [3]byte
		if !s.CopyBytes(b[:]) {
			return false
		}
		v = v<<24 | uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2])
		if v < 1<<14 {
			return false
		}
	default:
		return false
	}
	*n = int(v)
	return true
}

// AddVarBytes appends opaque v<V>.
func AddVarBytes(b *cryptobyte.Builder, v []byte) {
	AddVarLen(b, len(v))
	b.AddBytes(v)
}

// ReadVarBytes reads opaque v<V> into out. The result aliases the input;
// callers that keep it past the input's lifetime must copy.
func ReadVarBytes(s *cryptobyte.String, out *[]byte) bool {
	var n int
	if !ReadVarLen(s, &n) || len(*s) < n {
		return false
	}
	return s.ReadBytes(out, n)
}

// AddVarVector appends a vector<V> whose body f writes. The body is built
// in a child builder so its length is known before the header is written.
func AddVarVector(b *cryptobyte.Builder, f func(*cryptobyte.Builder)) {
	var child cryptobyte.Builder
	f(&child)
	body, err := child.Bytes()
	if err != nil {
		b.SetError(err)
		return
	}
	AddVarBytes(b, body)
}

// ReadVarVector reads a vector<V> body into out, for the caller to parse
// element by element until it is empty.
func ReadVarVector(s *cryptobyte.String, out *cryptobyte.String) bool {
	var body []byte
	if !ReadVarBytes(s, &body) {
		return false
	}
	*out = body
	return true
}

// AddOptional appends optional<T>: a presence octet, then T if present.
func AddOptional(b *cryptobyte.Builder, present bool, f func(*cryptobyte.Builder)) {
	if !present {
		b.AddUint8(0)
		return
	}
	b.AddUint8(1)
	f(b)
}

// ReadOptional reads the presence octet of optional<T>, refusing values
// other than 0 and 1.
func ReadOptional(s *cryptobyte.String, present *bool) bool {
	var p uint8
	if !s.ReadUint8(&p) || p > 1 {
		return false
	}
	*present = p == 1
	return true
}

// ReadBool reads a TLS bool (one octet, 0 or 1).
func ReadBool(s *cryptobyte.String, v *bool) bool { return ReadOptional(s, v) }

// AddBool appends a TLS bool.
func AddBool(b *cryptobyte.Builder, v bool) {
	if v {
		b.AddUint8(1)
	} else {
		b.AddUint8(0)
	}
}

type wireError string

func (e wireError) Error() string { return string(e) }

const errTooLong = wireError("mls/wire: vector longer than 2^30-1 bytes")
