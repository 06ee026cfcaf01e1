package pqc

import (
	"github.com/cloudflare/circl/kem/mlkem/mlkem768"

	"github.com/moat-im/moat/internal/vecstate"
)

// ML-KEM-768 sizes (FIPS 203 Table 3).
const (
	MLKEM768PublicKeySize    = mlkem768.PublicKeySize
	MLKEM768CiphertextSize   = mlkem768.CiphertextSize
	MLKEM768SharedSecretSize = mlkem768.SharedKeySize
	// MLKEM768SeedSize is the size of the (d, z) seed of ML-KEM.KeyGen_internal.
	MLKEM768SeedSize = mlkem768.KeySeedSize
	// MLKEM768EncapsulationSeedSize is the size of the randomness m of
	// ML-KEM.Encaps_internal.
	MLKEM768EncapsulationSeedSize = mlkem768.EncapsulationSeedSize
)

// MLKEM768PublicKey is an ML-KEM-768 encapsulation key.
type MLKEM768PublicKey struct{ k *mlkem768.PublicKey }

// MLKEM768PrivateKey is an ML-KEM-768 decapsulation key.
type MLKEM768PrivateKey struct{ k *mlkem768.PrivateKey }

// NewMLKEM768Key derives the key pair of a (d, z) seed of
// MLKEM768SeedSize bytes (FIPS 203 ML-KEM.KeyGen_internal).
func NewMLKEM768Key(seed []byte) (*MLKEM768PublicKey, *MLKEM768PrivateKey) {
	defer vecstate.Clean()
	pk, sk := mlkem768.NewKeyFromSeed(seed)
	return &MLKEM768PublicKey{pk}, &MLKEM768PrivateKey{sk}
}

// ParseMLKEM768PublicKey decodes an encapsulation key, with the FIPS 203
// §7.2 modulus check.
func ParseMLKEM768PublicKey(raw []byte) (*MLKEM768PublicKey, error) {
	defer vecstate.Clean()
	if len(raw) != MLKEM768PublicKeySize {
		return nil, ErrMalformed
	}
	pk := new(mlkem768.PublicKey)
	if pk.Unpack(raw) != nil {
		return nil, ErrMalformed
	}
	return &MLKEM768PublicKey{pk}, nil
}

// Bytes returns the encapsulation key's encoding.
func (k *MLKEM768PublicKey) Bytes() []byte {
	defer vecstate.Clean()
	raw := make([]byte, MLKEM768PublicKeySize)
	k.k.Pack(raw)
	return raw
}

// EncapsulateTo writes the ciphertext and shared secret of randomness m
// (FIPS 203 ML-KEM.Encaps_internal) into ct and ss.
func (k *MLKEM768PublicKey) EncapsulateTo(ct, ss, m []byte) {
	defer vecstate.Clean()
	k.k.EncapsulateTo(ct, ss, m)
}

// DecapsulateTo writes the shared secret of ct into ss (FIPS 203
// ML-KEM.Decaps, implicit rejection).
func (k *MLKEM768PrivateKey) DecapsulateTo(ss, ct []byte) {
	defer vecstate.Clean()
	k.k.DecapsulateTo(ss, ct)
}

// MLKEM768ExpandedPrivateKeySize is the size of a FIPS 203 expanded
// decapsulation key.
const MLKEM768ExpandedPrivateKeySize = mlkem768.PrivateKeySize

// ParseMLKEM768ExpandedPrivateKey decodes a FIPS 203 expanded
// decapsulation key, with the §7.3 hash check. Moat keeps decapsulation
// keys as seeds; this is for test vectors that give only the expanded form.
func ParseMLKEM768ExpandedPrivateKey(dk []byte) (*MLKEM768PrivateKey, error) {
	defer vecstate.Clean()
	if len(dk) != MLKEM768ExpandedPrivateKeySize {
		return nil, ErrMalformed
	}
	sk := new(mlkem768.PrivateKey)
	if sk.Unpack(dk) != nil {
		return nil, ErrMalformed
	}
	return &MLKEM768PrivateKey{sk}, nil
}

// ExpandedBytes returns the FIPS 203 expanded decapsulation key, for tests
// that compare with vectors. It is secret.
func (k *MLKEM768PrivateKey) ExpandedBytes() []byte {
	defer vecstate.Clean()
	dk := make([]byte, MLKEM768ExpandedPrivateKeySize)
	k.k.Pack(dk)
	return dk
}
