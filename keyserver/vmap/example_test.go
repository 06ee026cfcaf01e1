package vmap_test

import (
	"fmt"

	"github.com/moat-im/moat/keyserver/vmap"
)

// A directory builds two epochs, then a client verifies a lookup at the
// first one against the root it learnt from the log.
func Example() {
	store := vmap.NewMemStore()
	m := vmap.New(store, nil)

	alice, bob := vmap.Label{0x11}, vmap.Label{0x99} // VRF outputs in the directory
	b0, _ := m.Update(0, []vmap.Change{{Label: alice, Commitment: vmap.Commitment{1}}})
	_ = store.Commit(b0) // with the epoch's log entry, in one transaction
	b1, _ := m.Update(1, []vmap.Change{{Label: alice, Commitment: vmap.Commitment{2}}, {Label: bob, Commitment: vmap.Commitment{3}}})
	_ = store.Commit(b1)

	// Server: prove alice at epoch 0, and send the encoding.
	p, _ := m.Prove(0, alice)
	enc, _ := p.Marshal()

	// Client: b0.Root came from the verified log entry of epoch 0.
	proof, err := vmap.ParseProof(enc)
	if err != nil {
		panic(err)
	}
	res, err := vmap.Verify(b0.Root, alice, proof)
	fmt.Println(res.Present, res.Commitment[0], err)

	// Bob was absent at epoch 0.
	p, _ = m.Prove(0, bob)
	fmt.Println(vmap.VerifyAbsence(b0.Root, bob, p))
	// Output:
	// true 1 <nil>
	// <nil>
}
