package kat

import (
	"encoding/binary"
	"errors"

	"github.com/moat-im/moat/crypto/keys"
)

// Header flag bits (docs/spec/ratchet.md §Message format). This decoder is
// written from the specification, not shared with crypto/ratchet, so that
// it checks the format rather than repeats it.
const (
	flagEstablish  = 1 << 0
	flagKEMCT      = 1 << 1
	flagKEMPub     = 1 << 2
	flagPreamble   = 1 << 3
	flagAttributed = 1 << 4
	flagEscrow     = 1 << 5
)

var flagNames = []string{"establish", "kem_ct", "kem_pub", "preamble", "attributed", "escrow"}

const (
	wireVersion   = 0x23
	signatureSize = 64
	tagSize       = 16
)

var errHeader = errors.New("message header does not decode")

// parseHeader decodes a ratchet message's header.
func parseHeader(msg []byte) (Header, error) {
	d := decoder{b: msg}
	var h Header
	h.Version = d.u8()
	h.Flags = d.u8()
	h.Chain, h.N, h.Ack = d.u32(), d.u32(), d.u32()
	if h.Version != wireVersion || h.Flags>>len(flagNames) != 0 || h.Chain == 0 {
		return Header{}, errHeader
	}
	h.FlagNames = []string{}
	for i, n := range flagNames {
		if h.Flags&(1<<i) != 0 {
			h.FlagNames = append(h.FlagNames, n)
		}
	}
	if h.Flags&flagEstablish != 0 {
		e := &Establishment{Base: d.u32(), PrevChain: d.u32(), PN: d.u32(), DHRef: d.u32(), DH: d.bytes(32)}
		if h.Flags&flagKEMCT != 0 {
			e.KEMRef, h.kemCT = d.u32(), d.bytes(keys.KEMCiphertextSize)
		}
		if h.Flags&flagKEMPub != 0 {
			e.KEMPubID, h.kemPub = d.u32(), d.bytes(keys.KEMPublicKeySize)
		}
		h.Establishment = e
	} else if h.Flags&(flagKEMCT|flagKEMPub) != 0 {
		return Header{}, errHeader
	}
	if h.Flags&flagPreamble != 0 {
		h.preamble = d.bytes(int(d.u16()))
		h.PreambleLen = len(h.preamble)
	}
	if h.Flags&flagAttributed != 0 {
		h.TimestampMS = d.u64()
	}
	if h.Flags&flagEscrow != 0 {
		d.bytes(32)
	}
	h.Len = d.off
	rest := len(msg) - d.off
	if h.Flags&flagAttributed != 0 {
		rest -= signatureSize
	}
	if d.bad || rest < tagSize {
		return Header{}, errHeader
	}
	return h, nil
}

type decoder struct {
	b   []byte
	off int
	bad bool
}

func (d *decoder) bytes(n int) []byte {
	if d.bad || len(d.b)-d.off < n {
		d.bad = true
		return nil
	}
	out := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return out
}

func (d *decoder) u8() uint8 {
	if b := d.bytes(1); b != nil {
		return b[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if b := d.bytes(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if b := d.bytes(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if b := d.bytes(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}
