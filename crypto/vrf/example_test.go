package vrf_test

import (
	"crypto/rand"
	"fmt"

	"github.com/moat-im/moat/crypto/vrf"
)

func Example() {
	// The prover, holding the private key.
	sk, err := vrf.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	alpha := []byte("input")
	pi := vrf.Prove(sk, alpha)
	beta, err := vrf.ProofToHash(pi)
	if err != nil {
		panic(err)
	}

	// The verifier, holding the public key's 32 bytes.
	pk, err := vrf.NewPublicKey(sk.Public().Bytes())
	if err != nil {
		panic(err)
	}
	verified, err := vrf.Verify(pk, alpha, pi)
	if err != nil {
		panic(err)
	}
	fmt.Println(len(pi), len(beta), string(verified) == string(beta))

	_, err = vrf.Verify(pk, []byte("another input"), pi)
	fmt.Println(err)
	// Output:
	// 80 64 true
	// vrf: invalid proof
}
