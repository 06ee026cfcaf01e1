package ratchet

// Message format of docs/spec/ratchet.md §Message format, read and written
// with cryptobyte. Parsing is strict: version 1 only, no unknown flag bits,
// fixed-size fields, sizes checked before allocation, and only the trailing
// ciphertext is variable.
//
//	struct {
//	    uint8  type = 0x23;           /* a ratchet message, version 1 */
//	    uint8  flags;                 /* bit set below; others MUST be 0 */
//	    uint32 chain;                 /* sender's chain index, >= 1 */
//	    uint32 n;                     /* message number in the chain */
//	    uint32 ack;                   /* highest receiver chain established, 0 = none */
//	    select (flags & ESTABLISH) {
//	        case ESTABLISH:
//	            uint32 base;          /* sender chain whose root this chain extends; 0 = initial root */
//	            uint32 prev_chain;    /* sender's previous chain, 0 = none */
//	            uint32 pn;            /* messages sent in prev_chain */
//	            uint32 dh_ref;        /* receiver chain whose DH key was used; 0 = initial */
//	            opaque dh[32];        /* this chain's X25519 ratchet key */
//	            select (flags & KEM_CT)  { case KEM_CT:  uint32 kem_ref; opaque kem_ct[1088]; };
//	            select (flags & KEM_PUB) { case KEM_PUB: uint32 kem_pub_id; opaque kem_pub[1184]; };
//	    };
//	    select (flags & PREAMBLE)   { case PREAMBLE:   opaque preamble<1..4096>; };
//	    select (flags & ATTRIBUTED) { case ATTRIBUTED: uint64 timestamp_ms; };
//	    select (flags & ESCROW)     { case ESCROW:     opaque escrow_ref[32]; };
//	    opaque ciphertext[...];       /* AEAD output, to the end (less a signature) */
//	    select (flags & ATTRIBUTED) { case ATTRIBUTED: opaque signature[64]; };
//	} Message;

import (
	"encoding/binary"

	"github.com/moat-im/moat/crypto/keys"
	"golang.org/x/crypto/cryptobyte"
)

const (
	// messageType starts every ratchet message. It is distinct from every
	// key tag (crypto/keys), the PQXDH types 0x21 and 0x22 and the state
	// type 0x24, so that no two Moat encodings overlap; a new version of the
	// format takes a new type byte.
	messageType = 0x23

	flagEstablish  = 1 << 0
	flagKEMCT      = 1 << 1
	flagKEMPub     = 1 << 2
	flagPreamble   = 1 << 3
	flagAttributed = 1 << 4
	flagEscrow     = 1 << 5
	flagsKnown     = flagEstablish | flagKEMCT | flagKEMPub | flagPreamble | flagAttributed | flagEscrow

	dhSize         = 32
	escrowRefSize  = 32
	signatureSize  = 64
	tagSize        = 16
	fixedHeaderLen = 1 + 1 + 4 + 4 + 4
	// MaxMessageSize bounds a whole message; Decrypt rejects larger input
	// before parsing it.
	MaxMessageSize = fixedHeaderLen + 5*4 + dhSize + 4 + keys.KEMCiphertextSize + 4 + keys.KEMPublicKeySize +
		2 + MaxPreambleSize + 8 + escrowRefSize + MaxPlaintextSize + tagSize + signatureSize
)

// establishment is the part of a header that lets a receiver derive a new
// chain (docs/spec/ratchet.md §Chain establishment).
type establishment struct {
	base, prevChain, pn, dhRef uint32
	dh                         []byte // 32
	hasKEM                     bool
	kemRef                     uint32
	kemCT                      []byte // 1088
	hasKEMPub                  bool
	kemPubID                   uint32
	kemPub                     []byte // 1184
}

type header struct {
	flags       uint8
	chain, n    uint32
	ack         uint32
	est         establishment
	preamble    []byte
	timestampMS uint64
	escrowRef   []byte
}

// appendHeader appends the encoding of h to b.
func appendHeader(b []byte, h *header) []byte {
	b = append(b, messageType, h.flags)
	b = binary.BigEndian.AppendUint32(b, h.chain)
	b = binary.BigEndian.AppendUint32(b, h.n)
	b = binary.BigEndian.AppendUint32(b, h.ack)
	if h.flags&flagEstablish != 0 {
		b = appendEstablishment(b, &h.est, h.flags)
	}
	if h.flags&flagPreamble != 0 {
		b = binary.BigEndian.AppendUint16(b, uint16(len(h.preamble)))
		b = append(b, h.preamble...)
	}
	if h.flags&flagAttributed != 0 {
		b = binary.BigEndian.AppendUint64(b, h.timestampMS)
	}
	if h.flags&flagEscrow != 0 {
		b = append(b, h.escrowRef...)
	}
	return b
}

// appendEstablishment appends the establishment block of e; flags selects
// its optional parts.
func appendEstablishment(b []byte, e *establishment, flags uint8) []byte {
	b = binary.BigEndian.AppendUint32(b, e.base)
	b = binary.BigEndian.AppendUint32(b, e.prevChain)
	b = binary.BigEndian.AppendUint32(b, e.pn)
	b = binary.BigEndian.AppendUint32(b, e.dhRef)
	b = append(b, e.dh...)
	if flags&flagKEMCT != 0 {
		b = binary.BigEndian.AppendUint32(b, e.kemRef)
		b = append(b, e.kemCT...)
	}
	if flags&flagKEMPub != 0 {
		b = binary.BigEndian.AppendUint32(b, e.kemPubID)
		b = append(b, e.kemPub...)
	}
	return b
}

// headerLen returns the encoded size of h.
func headerLen(h *header) int {
	n := fixedHeaderLen
	if h.flags&flagEstablish != 0 {
		n += 4*4 + dhSize
		if h.flags&flagKEMCT != 0 {
			n += 4 + keys.KEMCiphertextSize
		}
		if h.flags&flagKEMPub != 0 {
			n += 4 + keys.KEMPublicKeySize
		}
	}
	if h.flags&flagPreamble != 0 {
		n += 2 + len(h.preamble)
	}
	if h.flags&flagAttributed != 0 {
		n += 8
	}
	if h.flags&flagEscrow != 0 {
		n += escrowRefSize
	}
	return n
}

// parseMessage splits msg into its header, the header's encoding (the
// associated data), the AEAD ciphertext and the optional signature. Slices
// alias msg.
func parseMessage(msg []byte, h *header) (hdr, ct, sig []byte, err error) {
	if len(msg) > MaxMessageSize {
		return nil, nil, nil, ErrMalformed
	}
	s := cryptobyte.String(msg)
	var ver uint8
	if !s.ReadUint8(&ver) || ver != messageType || !s.ReadUint8(&h.flags) || h.flags&^flagsKnown != 0 ||
		!s.ReadUint32(&h.chain) || !s.ReadUint32(&h.n) || !s.ReadUint32(&h.ack) || h.chain == 0 {
		return nil, nil, nil, ErrMalformed
	}
	if h.flags&(flagKEMCT|flagKEMPub) != 0 && h.flags&flagEstablish == 0 {
		return nil, nil, nil, ErrMalformed
	}
	if h.flags&flagEstablish != 0 {
		e := &h.est
		if !s.ReadUint32(&e.base) || !s.ReadUint32(&e.prevChain) || !s.ReadUint32(&e.pn) ||
			!s.ReadUint32(&e.dhRef) || !s.ReadBytes(&e.dh, dhSize) {
			return nil, nil, nil, ErrMalformed
		}
		// A chain extends an older chain of the same sender, and follows
		// its previous chain.
		if e.base >= h.chain || e.prevChain >= h.chain {
			return nil, nil, nil, ErrMalformed
		}
		if h.flags&flagKEMCT != 0 {
			e.hasKEM = true
			if !s.ReadUint32(&e.kemRef) || !s.ReadBytes(&e.kemCT, keys.KEMCiphertextSize) {
				return nil, nil, nil, ErrMalformed
			}
		}
		if h.flags&flagKEMPub != 0 {
			e.hasKEMPub = true
			if !s.ReadUint32(&e.kemPubID) || !s.ReadBytes(&e.kemPub, keys.KEMPublicKeySize) || e.kemPubID == 0 || e.kemPubID > h.chain {
				return nil, nil, nil, ErrMalformed
			}
		}
	}
	if h.flags&flagPreamble != 0 {
		var p cryptobyte.String
		if !s.ReadUint16LengthPrefixed(&p) || len(p) == 0 || len(p) > MaxPreambleSize {
			return nil, nil, nil, ErrMalformed
		}
		h.preamble = p
	}
	if h.flags&flagAttributed != 0 && !s.ReadUint64(&h.timestampMS) {
		return nil, nil, nil, ErrMalformed
	}
	if h.flags&flagEscrow != 0 && !s.ReadBytes(&h.escrowRef, escrowRefSize) {
		return nil, nil, nil, ErrMalformed
	}
	hdr = msg[:len(msg)-len(s)]
	rest := []byte(s)
	if h.flags&flagAttributed != 0 {
		if len(rest) < signatureSize {
			return nil, nil, nil, ErrMalformed
		}
		sig = rest[len(rest)-signatureSize:]
		rest = rest[:len(rest)-signatureSize]
	}
	if len(rest) < tagSize || len(rest) > MaxPlaintextSize+tagSize {
		return nil, nil, nil, ErrMalformed
	}
	return hdr, rest, sig, nil
}

// PeekPreamble returns the PQXDH preamble a message carries, so that a
// responder can run PQXDH before it has a session. The preamble is only
// authenticated once Decrypt succeeds on the session made from it.
func PeekPreamble(msg []byte) ([]byte, error) {
	var h header
	if _, _, _, err := parseMessage(msg, &h); err != nil {
		return nil, err
	}
	if h.flags&flagPreamble == 0 {
		return nil, ErrMalformed
	}
	return append([]byte(nil), h.preamble...), nil
}
