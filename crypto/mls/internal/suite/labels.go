package suite

import (
	"io"

	"github.com/moat-im/moat/crypto/mls/internal/wire"
	"golang.org/x/crypto/cryptobyte"
)

// labelPrefix is prepended to every label of ExpandWithLabel,
// SignWithLabel and EncryptWithLabel (RFC 9420 §5.1.2, §5.1.3, §8).
const labelPrefix = "MLS 1.0 "

// kdfLabel encodes RFC 9420 §8 KDFLabel:
//
//	struct {
//	    uint16 length;
//	    opaque label<V>;   /* "MLS 1.0 " + Label */
//	    opaque context<V>;
//	} KDFLabel;
func kdfLabel(length uint16, label string, context []byte) ([]byte, error) {
	b := cryptobyte.NewBuilder(make([]byte, 0, 2+4+len(labelPrefix)+len(label)+4+len(context)))
	b.AddUint16(length)
	addPrefixedLabel(b, label)
	wire.AddVarBytes(b, context)
	out, err := b.Bytes()
	if err != nil {
		return nil, ErrLength
	}
	return out, nil
}

// labelledContent encodes the two-field structs SignContent (§5.1.2) and
// EncryptContext (§5.1.3), which share one shape:
//
//	struct {
//	    opaque label<V>;   /* "MLS 1.0 " + Label */
//	    opaque content<V>;
//	} SignContent / EncryptContext;
func labelledContent(label string, content []byte) ([]byte, error) {
	b := cryptobyte.NewBuilder(make([]byte, 0, 4+len(labelPrefix)+len(label)+4+len(content)))
	addPrefixedLabel(b, label)
	wire.AddVarBytes(b, content)
	out, err := b.Bytes()
	if err != nil {
		return nil, ErrLength
	}
	return out, nil
}

func addPrefixedLabel(b *cryptobyte.Builder, label string) {
	wire.AddVarLen(b, len(labelPrefix)+len(label))
	b.AddBytes([]byte(labelPrefix))
	b.AddBytes([]byte(label))
}

// writeVarBytes writes opaque v<V> to w (used to stream RefHashInput into a
// hash without building it). Lengths above wire.MaxVarLen cannot occur for
// in-memory MLS objects, which are bounded far below 1 GiB by the decoders.
func writeVarBytes(w io.Writer, v []byte) {
	n := len(v)
	switch {
	case n < 1<<6:
		w.Write([]byte{byte(n)})
	case n < 1<<14:
		w.Write([]byte{byte(n>>8) | 0x40, byte(n)})
	case n <= wire.MaxVarLen:
		w.Write([]byte{byte(n>>24) | 0x80, byte(n >> 16), byte(n >> 8), byte(n)})
	default:
		panic("mls/suite: RefHash value longer than 2^30-1 bytes")
	}
	w.Write(v)
}
