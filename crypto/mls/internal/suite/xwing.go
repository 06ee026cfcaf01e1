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
//     standard library's are used. Open runs crypto/hpke over circl's
//     ML-KEM-768 and X25519 keys (privateKey): crypto/hpke does the X-Wing
//     combiner and the key schedule, circl the two expensive halves
//     (1.6 M instructions per open against 2.9 M).
//
// circl's ML-KEM and X-Wing are reached through internal/pqc, which
// clears the upper YMM state after each call so that the rest of the
// protocol (HKDF, tree hashes) runs at full speed.
//
// The derandomised seal keeps the standard library's refusal of an X25519
// share that is a low-order point, which circl alone would accept.

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/mlkem"
	"crypto/rand"
	"crypto/sha3"
	"errors"

	"github.com/cloudflare/circl/dh/x25519"
	circlhpke "github.com/cloudflare/circl/hpke"

	"github.com/moat-im/moat/internal/pqc"
)

// xwingSeedSize is the X-Wing decapsulation key (seed) size.
const xwingSeedSize = pqc.XWingSeedSize

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
	priv, pub := pqc.XWingDeriveKeyPair(seed)
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

// privateKey expands the seed into a crypto/hpke private key whose ML-KEM
// half is circl's (circlDecapsulator): crypto/hpke's own expansion runs
// crypto/mlkem's key generation and decapsulation, together about 2.5
// times circl's instructions. The expansion is the one crypto/hpke's
// MLKEM768X25519 NewPrivateKey and circl's X-Wing perform
// (draft-connolly-cfrg-xwing-kem-06 expandDecapsulationKey): SHAKE256 of
// the seed, the first 64 bytes the ML-KEM-768 (d, z) seed, the next 32 the
// X25519 private key. Both halves are circl's, behind the interfaces
// crypto/hpke takes (circlDecapsulator, circlX25519).
// TestXWingMatchesStdlib holds the result to crypto/hpke's own key.
func (k *xwingKEM) privateKey(priv HPKEPrivateKey) (hpke.PrivateKey, error) {
	sk, _, _, err := k.expandKey(priv)
	return sk, err
}

// privateKeyFor is privateKey followed by its ahead function for enc.
func (k *xwingKEM) privateKeyFor(priv HPKEPrivateKey, enc []byte) (hpke.PrivateKey, error) {
	sk, ahead, _, err := k.expandKey(priv)
	if err == nil {
		ahead(enc)
	}
	return sk, err
}

// expandKey is privateKey that also returns the key's ahead function (and
// wipe, which zeroes what the key and ahead keep in this package): if
// enc has the size of an X-Wing ciphertext, ahead decapsulates it now
// (circl's ML-KEM-768 decapsulation and the X25519 exchange with its
// ephemeral share, the two expensive halves of X-Wing's Decapsulate).
// crypto/hpke's SetupBaseR for the same enc then gets their results
// (once) instead of computing them again, and does the rest (the X-Wing
// combiner, the HPKE key schedule) itself. This lets the decapsulation
// run on another core before the HPKE info (for an UpdatePath, the new
// GroupContext) is known.
func (k *xwingKEM) expandKey(priv HPKEPrivateKey) (hpke.PrivateKey, func(enc []byte), func(), error) {
	if len(priv) != xwingSeedSize {
		return nil, nil, nil, ErrInvalidKey
	}
	var expanded [pqc.MLKEM768SeedSize + x25519.Size]byte
	defer Zero(expanded[:])
	h := sha3.NewSHAKE256()
	h.Write(priv)
	h.Read(expanded[:])
	_, skm := pqc.NewMLKEM768Key(expanded[:pqc.MLKEM768SeedSize])
	x := &circlX25519{}
	copy(x.sk[:], expanded[pqc.MLKEM768SeedSize:])
	x25519.KeyGen(&x.pk, &x.sk)
	var err error
	if x.pub, err = ecdh.X25519().NewPublicKey(x.pk[:]); err != nil {
		return nil, nil, nil, ErrInvalidKey
	}
	d := &circlDecapsulator{sk: skm}
	sk, err := hpke.NewHybridPrivateKey(d, x)
	if err != nil {
		return nil, nil, nil, ErrInvalidKey
	}
	ahead := func(enc []byte) {
		if len(enc) == pqc.XWingCiphertextSize {
			d.ahead(enc[:pqc.MLKEM768CiphertextSize])
			x.ahead(enc[pqc.MLKEM768CiphertextSize:])
		}
	}
	wipe := func() {
		Zero(x.sk[:])
		Zero(x.aheadOut[:])
		x.aheadSet = false
		Zero(d.aheadSS)
		d.aheadCT, d.aheadSS = nil, nil
	}
	return sk, ahead, wipe, nil
}

// circlX25519 is circl's X25519 behind ecdh.KeyExchanger, for crypto/hpke's
// X-Wing: crypto/ecdh's scalar multiplication executes about twice the
// instructions of circl's.
type circlX25519 struct {
	sk, pk x25519.Key
	pub    *ecdh.PublicKey
	// An exchange done ahead (ahead): with the peer value aheadPeer, the
	// result aheadOut (aheadOK false: refused). Used once.
	aheadSet            bool
	aheadOK             bool
	aheadPeer, aheadOut x25519.Key
}

func (x *circlX25519) PublicKey() *ecdh.PublicKey { return x.pub }
func (x *circlX25519) Curve() ecdh.Curve          { return ecdh.X25519() }

// ECDH is X25519(sk, pub), refused (as crypto/ecdh refuses it) when pub
// is a low-order point: circl's table of them, or an all-zero result.
func (x *circlX25519) ECDH(pub *ecdh.PublicKey) ([]byte, error) {
	if pub.Curve() != ecdh.X25519() {
		return nil, ErrInvalidPublicKey
	}
	var u, out x25519.Key
	copy(u[:], pub.Bytes())
	ok := false
	if x.aheadSet && u == x.aheadPeer {
		out, ok = x.aheadOut, x.aheadOK
		x.aheadSet = false
		Zero(x.aheadOut[:])
	} else {
		ok = x.exchange(&out, &u)
	}
	if !ok {
		return nil, ErrInvalidPublicKey
	}
	return out[:], nil
}

// exchange sets out to X25519(sk, u) and reports whether u is acceptable.
func (x *circlX25519) exchange(out, u *x25519.Key) bool {
	var zero x25519.Key
	return x25519.Shared(out, &x.sk, u) && *out != zero
}

// ahead runs the exchange with the 32-byte peer value u now, for ECDH.
func (x *circlX25519) ahead(u []byte) {
	copy(x.aheadPeer[:], u)
	x.aheadOK = x.exchange(&x.aheadOut, &x.aheadPeer)
	x.aheadSet = true
}

// circlDecapsulator is circl's ML-KEM-768 decapsulation key behind
// crypto.Decapsulator, for crypto/hpke's X-Wing (which does the X25519
// half, the X-Wing combiner and the HPKE key schedule itself).
//
// It serves SetupBaseR only, and its Encapsulator is an empty key:
// crypto/hpke's hybrid needs an encapsulation key only of the type
// *mlkem.EncapsulationKey768 (NewHybridPrivateKey checks the type to pick
// the hybrid) and never reads it when decapsulating, since X-Wing's
// combiner binds the X25519 public key alone (draft-connolly-cfrg-xwing-kem
// §5.3). Building the real one in crypto/mlkem's type (parsing the
// 1,184-byte key, which expands the ML-KEM matrix) costs as many
// instructions as circl's whole key generation. The hpke.PrivateKey built
// on it must not be asked for its PublicKey; TestXWingMatchesStdlib checks
// that it opens crypto/hpke's seals.
type circlDecapsulator struct {
	sk *pqc.MLKEM768PrivateKey
	// A decapsulation done ahead (ahead): of aheadCT, the secret aheadSS.
	// Used once.
	aheadCT []byte
	aheadSS []byte
}

func (d *circlDecapsulator) Encapsulator() crypto.Encapsulator { return new(mlkem.EncapsulationKey768) }

// Decapsulate is ML-KEM-768 decapsulation (FIPS 203 implicit rejection:
// any ciphertext of the right length yields a secret).
func (d *circlDecapsulator) Decapsulate(ct []byte) ([]byte, error) {
	if len(ct) != pqc.MLKEM768CiphertextSize {
		return nil, ErrDecrypt
	}
	if d.aheadSS != nil && bytes.Equal(ct, d.aheadCT) {
		ss := d.aheadSS
		d.aheadCT, d.aheadSS = nil, nil
		return ss, nil
	}
	ss := make([]byte, pqc.MLKEM768SharedSecretSize)
	d.sk.DecapsulateTo(ss, ct)
	return ss, nil
}

// ahead decapsulates ct (of the right length) now, for Decapsulate.
func (d *circlDecapsulator) ahead(ct []byte) {
	d.aheadSS = make([]byte, pqc.MLKEM768SharedSecretSize)
	d.sk.DecapsulateTo(d.aheadSS, ct)
	d.aheadCT = bytes.Clone(ct)
}

func (k *xwingKEM) setupRKey(sk hpke.PrivateKey, enc, info []byte) (receiverCtx, error) {
	r, err := hpke.NewRecipient(enc, sk, k.kdf, k.aead, info)
	if err != nil {
		return nil, ErrDecrypt
	}
	return r, nil
}

func (k *xwingKEM) encapSeedSize() int { return pqc.XWingEncapsulationSeedSize }

// setupSDerand is SetupBaseS with the encapsulation randomness from seed,
// on circl, with the standard library's checks: the ML-KEM encapsulation
// key check (circl's) and no low-order X25519 share.
func (k *xwingKEM) setupSDerand(pub HPKEPublicKey, info, seed []byte) ([]byte, senderCtx, error) {
	if len(seed) != pqc.XWingEncapsulationSeedSize {
		return nil, nil, ErrLength
	}
	if len(pub) != pqc.XWingPublicKeySize || x25519LowOrder(pub[len(pub)-x25519.Size:]) {
		return nil, nil, ErrInvalidPublicKey
	}
	enc, sealer, err := pqc.XWingSetupSender(k.circl, pub, info, seed)
	if errors.Is(err, pqc.ErrMalformed) {
		return nil, nil, ErrInvalidPublicKey
	}
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
