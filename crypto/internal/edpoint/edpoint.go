// Package edpoint decodes edwards25519 points strictly, with the decoding
// of RFC 8032, Section 5.1.3, on top of filippo.io/edwards25519, whose
// Point.SetBytes accepts two kinds of non-canonical encoding. It implements
// no curve arithmetic: it only rejects what SetBytes should not accept, and
// does so without the field inversion of re-encoding the point.
package edpoint

import (
	"errors"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// Size is the size of an encoded point.
const Size = 32

var zero = new(field.Element)

// Errors of Decode.
var (
	// ErrNotPoint is a string that is not 32 bytes or encodes no point.
	ErrNotPoint = errors.New("edpoint: not the encoding of a point")
	// ErrNonCanonical is a non-canonical encoding of a point.
	ErrNonCanonical = errors.New("edpoint: non-canonical point encoding")
)

// Decode returns the point that s encodes. It returns ErrNotPoint if s is
// not exactly 32 bytes or encodes no point, and ErrNonCanonical for a
// non-canonical encoding: a y coordinate not less than p = 2^255 - 19, or
// x = 0 with the sign bit set (RFC 8032, Section 5.1.3, steps 1 and 4).
// These are the only non-canonical encodings Point.SetBytes accepts, so
// Decode succeeds exactly when SetBytes succeeds and the point re-encodes
// to s.
func Decode(s []byte) (*edwards25519.Point, error) {
	if len(s) != Size {
		return nil, ErrNotPoint
	}
	p, err := new(edwards25519.Point).SetBytes(s)
	if err != nil {
		return nil, ErrNotPoint
	}
	// y < p: the field element that SetBytes read (ignoring the sign bit)
	// encodes, reduced, to the same bytes.
	y, err := new(field.Element).SetBytes(s)
	if err != nil {
		return nil, ErrNotPoint
	}
	yb := y.Bytes()
	for i := range Size - 1 {
		if yb[i] != s[i] {
			return nil, ErrNonCanonical
		}
	}
	if yb[Size-1] != s[Size-1]&0x7f {
		return nil, ErrNonCanonical
	}
	// x = 0 with the sign bit set: X/Z is zero exactly when X is.
	if s[Size-1]&0x80 != 0 {
		if x, _, _, _ := p.ExtendedCoordinates(); x.Equal(zero) == 1 {
			return nil, ErrNonCanonical
		}
	}
	return p, nil
}

// SmallOrder reports whether p is one of the eight points of small order
// (the identity among them): whether 8*p is the identity.
func SmallOrder(p *edwards25519.Point) bool {
	return new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1
}
