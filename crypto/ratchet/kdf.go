package ratchet

import (
	"encoding/binary"

	"github.com/moat-im/moat/crypto/internal/label"
	"github.com/moat-im/moat/crypto/internal/prim"
	"golang.org/x/crypto/chacha20"
	"golang.org/x/crypto/cryptobyte"
)

const keySize = 32

// chainSecrets is the output of KDF_RK (docs/spec/ratchet.md §KDF_RK).
type chainSecrets struct {
	root       [keySize]byte // becomes a base for the sender's later chains once acknowledged
	chainKey   [keySize]byte // CK_0 of the new chain
	escrowSeed [keySize]byte // reserved: randomness for this chain's escrow blob (issue #7)
}

// kdfRK derives a new chain from a base root:
//
//	HKDF-SHA-256(salt = base_root, IKM = DH || SS,
//	             info = "moat/v1/ratchet/chain-step" || direction || uint32 chain || establishment)
//
// where SS is empty for a chain without a KEM step and establishment is the
// chain's establishment block exactly as encoded in its header.
func kdfRK(baseRoot []byte, dh, ss []byte, dir byte, chain uint32, e *establishment, flags uint8) (chainSecrets, error) {
	ikm := make([]byte, 0, len(dh)+len(ss))
	ikm = append(ikm, dh...)
	ikm = append(ikm, ss...)
	c := cryptobyte.NewBuilder(make([]byte, 0, len(label.RatchetChainStep)+5+4*6+dhSize+len(e.kemCT)+len(e.kemPub)))
	c.AddBytes([]byte(label.RatchetChainStep))
	c.AddUint8(dir)
	c.AddUint32(chain)
	c.AddBytes(appendEstablishment(nil, e, flags))
	info, err := c.Bytes()
	if err != nil {
		return chainSecrets{}, err
	}
	out, err := prim.HKDF(ikm, baseRoot, string(info), 3*keySize)
	if err != nil {
		return chainSecrets{}, err
	}
	var s chainSecrets
	copy(s.root[:], out[:keySize])
	copy(s.chainKey[:], out[keySize:2*keySize])
	copy(s.escrowSeed[:], out[2*keySize:])
	clear(out)
	clear(ikm)
	return s, nil
}

// kdfCK advances a chain key (docs/spec/ratchet.md §KDF_CK):
//
//	MK  = HChaCha20(CK, "moat/v1/ck/mk\x00\x00\x00")
//	CK' = HChaCha20(CK, "moat/v1/ck/ck\x00\x00\x00")
//
// HChaCha20 (draft-irtf-cfrg-xchacha §2.2) is a PRF keyed by the 256-bit
// chain key; each output is a fresh 256-bit key. Signal's specification
// recommends HMAC for KDF_CK and allows any PRF: HChaCha20 needs no key
// setup and no allocation, which is what keeps a steady-state message under
// its cost budget (docs/performance.md). MK is used directly as the
// ChaCha20-Poly1305 key.
func kdfCK(ck *[keySize]byte, mk *[keySize]byte) {
	m, err := chacha20.HChaCha20(ck[:], ckMessageKeyInput[:])
	if err != nil {
		panic("ratchet: HChaCha20: " + err.Error()) // fixed sizes
	}
	n, err := chacha20.HChaCha20(ck[:], ckNextKeyInput[:])
	if err != nil {
		panic("ratchet: HChaCha20: " + err.Error())
	}
	copy(mk[:], m)
	copy(ck[:], n)
}

// The two 16-byte HChaCha20 inputs of KDF_CK (label.RatchetCKMessage and
// label.RatchetCKNext, zero-padded).
var ckMessageKeyInput, ckNextKeyInput = pad16(label.RatchetCKMessage), pad16(label.RatchetCKNext)

func pad16(s string) (b [16]byte) {
	if len(s) > 16 {
		panic("ratchet: HChaCha20 input label too long")
	}
	copy(b[:], s)
	return b
}

// nonceFor returns the AEAD nonce of message n: 8 zero bytes then n,
// big-endian. Each message key encrypts exactly one message, so the nonce
// adds a second guarantee rather than the only one.
func nonceFor(n uint32) [prim.NonceSize]byte {
	var nonce [prim.NonceSize]byte
	binary.BigEndian.PutUint32(nonce[8:], n)
	return nonce
}
