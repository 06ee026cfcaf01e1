package keyserverdir_test

import (
	"crypto/rand"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/org"
)

func randomID() ([16]byte, error) {
	var b [16]byte
	_, err := rand.Read(b[:])
	return b, err
}

// tlogWitnessKey returns the key of a witness that never runs: the
// tenant's trust bundle needs one, and nothing here cosigns.
func tlogWitnessKey() (org.WitnessKey, error) {
	ed, err := tlog.GenerateWitnessKey(rand.Reader, "witness.example/w", tlog.CosignatureEd25519)
	if err != nil {
		return org.WitnessKey{}, err
	}
	pq, err := tlog.GenerateWitnessKey(rand.Reader, "witness.example/w", tlog.CosignatureMLDSA44)
	if err != nil {
		return org.WitnessKey{}, err
	}
	return org.WitnessKey{Name: "witness.example/w", Ed25519: ed.Public().Bytes(), MLDSA44: pq.Public().Bytes()}, nil
}
