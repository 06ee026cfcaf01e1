package pqc

import (
	"bytes"

	circlhpke "github.com/cloudflare/circl/hpke"
	"github.com/cloudflare/circl/kem/xwing"

	"github.com/moat-im/moat/internal/vecstate"
)

// X-Wing sizes (draft-connolly-cfrg-xwing-kem §5).
const (
	XWingSeedSize              = xwing.SeedSize
	XWingPublicKeySize         = xwing.PublicKeySize
	XWingCiphertextSize        = xwing.CiphertextSize
	XWingEncapsulationSeedSize = xwing.EncapsulationSeedSize
)

// XWingDeriveKeyPair expands a XWingSeedSize seed into its key pair (the
// draft's GenerateKeyPairDerand); the private key is the seed itself.
func XWingDeriveKeyPair(seed []byte) (priv, pub []byte) {
	defer vecstate.Clean()
	return xwing.DeriveKeyPairPacked(seed)
}

// XWingSetupSender is HPKE SetupBaseS (RFC 9180 §5.1.1) for suite s, whose
// KEM must be X-Wing, to the encoded public key pub, with the
// encapsulation randomness from seed (XWingEncapsulationSeedSize bytes).
// It returns the encapsulated key and the sealing context.
func XWingSetupSender(s circlhpke.Suite, pub, info, seed []byte) ([]byte, circlhpke.Sealer, error) {
	defer vecstate.Clean()
	if len(pub) != XWingPublicKeySize {
		return nil, nil, ErrMalformed
	}
	var pk xwing.PublicKey
	if pk.Unpack(pub) != nil {
		return nil, nil, ErrMalformed
	}
	snd, err := s.NewSender(&pk, info)
	if err != nil {
		return nil, nil, err
	}
	return snd.Setup(bytes.NewReader(seed))
}
