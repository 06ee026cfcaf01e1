package suite

// X-Wing (draft-connolly-cfrg-xwing-kem-06, HPKE KEM 0x647a) for suite
// 0x004D. Key pairs come from circl's X-Wing, HPKE seal and open from the
// standard library's crypto/hpke (MLKEM768X25519), derandomised seals (which
// the standard library does not offer) from circl's HPKE. Both produce the
// same bytes (TestXWingMatchesStdlib); the split follows what measured
// fastest on the benchmark machine (BenchmarkXWingBackend,
// docs/performance.md §MLS):
//
//   - Key derivation, done once per tree level by a committer and by every
//     member that processes an UpdatePath: circl 0.57 M instructions, the
//     standard library 1.34 M, and about half the wall-clock time.
//   - Seal and open: circl executes fewer instructions (1.1 M against 2.1 M
//     for a seal) but took more wall-clock time, because its ML-KEM AVX2
//     assembly returns without VZEROUPPER and the SHA-256 of the HPKE key
//     schedule that follows inside circl then runs far slower. The
//     standard library's are used.
//
// After each circl ML-KEM call, vecstate.Clean clears the upper YMM
// state so that the rest of the protocol (HKDF, tree hashes) runs at full
// speed.
//
// The derandomised seal keeps the standard library's refusal of an X25519
// share that is a low-order point, which circl alone would accept.

import (
	"bytes"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha3"

	"github.com/cloudflare/circl/dh/x25519"
	circlhpke "github.com/cloudflare/circl/hpke"
	"github.com/cloudflare/circl/kem/xwing"

	"github.com/moat-im/moat/crypto/internal/vecstate"
)

// xwingSeedSize is the X-Wing decapsulation key (seed) size.
const xwingSeedSize = xwing.SeedSize

// xwingKEM is HPKE base mode with X-Wing, HKDF-SHA256 and the suite's
// AEAD.
type xwingKEM struct {
	kem   hpke.KEM
	kdf   hpke.KDF
	aead  hpke.AEAD
	circl circlhpke.Suite // derandomised seals only
}

func newXWing(a aeadKind) *xwingKEM {
	return &xwingKEM{kem: hpke.MLKEM768X25519(), kdf: hpke.HKDFSHA256(), aead: stdAEAD(a),
		circl: circlhpke.NewSuite(circlhpke.KEM_XWING, circlhpke.KDF_HKDF_SHA256, circlAEAD(a))}
}

// keyPair expands a 32-byte seed into the key pair (the draft's
// GenerateKeyPairDerand); the serialised private key is the seed itself.
func (k *xwingKEM) keyPair(seed []byte) (HPKEPrivateKey, HPKEPublicKey, error) {
	if len(seed) != xwingSeedSize {
		return nil, nil, ErrInvalidKey
	}
	priv, pub := xwing.DeriveKeyPairPacked(seed)
	vecstate.Clean()
	return priv, pub, nil
}

func (k *xwingKEM) generate() (HPKEPrivateKey, HPKEPublicKey, error) {
	seed := make([]byte, xwingSeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, nil, err
	}
	return k.keyPair(seed)
}

// derive is DeriveKeyPair as draft-connolly-cfrg-xwing-kem-06 "Use in
// HPKE" and OpenMLS define it: the seed is SHAKE256(ikm, 32). (crypto/hpke's
// own DeriveKeyPair follows draft-ietf-hpke-pq instead and yields different
// keys.)
func (k *xwingKEM) derive(ikm []byte) (HPKEPrivateKey, HPKEPublicKey, error) {
	var seed [xwingSeedSize]byte
	h := sha3.NewSHAKE256()
	h.Write(ikm)
	h.Read(seed[:])
	defer Zero(seed[:])
	return k.keyPair(seed[:])
}

func (k *xwingKEM) publicOf(priv HPKEPrivateKey) (HPKEPublicKey, error) {
	_, pub, err := k.keyPair(priv)
	return pub, err
}

func (k *xwingKEM) setupS(pub HPKEPublicKey, info []byte) ([]byte, senderCtx, error) {
	pk, err := k.kem.NewPublicKey(pub)
	if err != nil {
		return nil, nil, ErrInvalidPublicKey
	}
	enc, c, err := hpke.NewSender(pk, k.kdf, k.aead, info)
	if err != nil {
		return nil, nil, ErrInvalidPublicKey // a low-order X25519 share
	}
	return enc, c, nil
}

func (k *xwingKEM) setupR(priv HPKEPrivateKey, enc, info []byte) (receiverCtx, error) {
	sk, err := k.privateKey(priv)
	if err != nil {
		return nil, err
	}
	return k.setupRKey(sk, enc, info)
}

// privateKey expands the seed into the standard library's key (ML-KEM
// and X25519 keys).
func (k *xwingKEM) privateKey(priv HPKEPrivateKey) (hpke.PrivateKey, error) {
	sk, err := k.kem.NewPrivateKey(priv)
	if err != nil {
		return nil, ErrInvalidKey
	}
	return sk, nil
}

func (k *xwingKEM) setupRKey(sk hpke.PrivateKey, enc, info []byte) (receiverCtx, error) {
	r, err := hpke.NewRecipient(enc, sk, k.kdf, k.aead, info)
	if err != nil {
		return nil, ErrDecrypt
	}
	return r, nil
}

func (k *xwingKEM) encapSeedSize() int { return xwing.EncapsulationSeedSize }

// setupSDerand is SetupBaseS with the encapsulation randomness from seed,
// on circl, with the standard library's checks: the ML-KEM encapsulation
// key check (circl's) and no low-order X25519 share.
func (k *xwingKEM) setupSDerand(pub HPKEPublicKey, info, seed []byte) ([]byte, senderCtx, error) {
	if len(seed) != xwing.EncapsulationSeedSize {
		return nil, nil, ErrLength
	}
	if len(pub) != xwing.PublicKeySize || x25519LowOrder(pub[len(pub)-x25519.Size:]) {
		return nil, nil, ErrInvalidPublicKey
	}
	defer vecstate.Clean()
	var pk xwing.PublicKey
	if err := pk.Unpack(pub); err != nil {
		return nil, nil, ErrInvalidPublicKey
	}
	snd, err := k.circl.NewSender(&pk, info)
	if err != nil {
		return nil, nil, err
	}
	enc, sealer, err := snd.Setup(bytes.NewReader(seed))
	if err != nil {
		return nil, nil, err
	}
	return enc, circlSealer{sealer}, nil
}

// lowOrderProbe is a fixed X25519 scalar. Clamping makes every scalar a
// multiple of the cofactor 8, and a clamped scalar is below 8 times either
// large prime order, so X25519(probe, u) is all zero exactly when u is a
// point of order dividing 8 (on the curve or its twist): the inputs for
// which the standard library's ECDH fails.
var lowOrderProbe = x25519.Key{9}

// x25519LowOrder reports whether the 32-byte X25519 public value u is a
// low-order point. Both of circl's signals are used: its table of
// low-order points and an all-zero result.
func x25519LowOrder(u []byte) bool {
	var pub, out, zero x25519.Key
	copy(pub[:], u)
	ok := x25519.Shared(&out, &lowOrderProbe, &pub)
	return !ok || out == zero
}
