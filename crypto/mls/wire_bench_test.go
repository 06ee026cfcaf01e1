package mls

import (
	"bytes"
	"fmt"
	"testing"
)

// syntheticTree returns a full ratchet tree of n leaves with X-Wing-sized
// HPKE keys (1,216 bytes), Ed25519-sized signature keys and signatures and
// OrgCredentials: the shape, not the validity, of a Moat tree.
func syntheticTree(n int) RatchetTree {
	cred, _ := (&OrgCredential{Tenant: [16]byte{1}, User: [16]byte{2}, Device: [16]byte{3}, Serial: 1}).Credential()
	t := make(RatchetTree, 2*n-1)
	for i := range t {
		key := bytes.Repeat([]byte{byte(i)}, 1216)
		if i%2 == 0 {
			t[i] = &Node{Leaf: &LeafNode{
				EncryptionKey: key, SignatureKey: make([]byte, 32), Credential: cred,
				Capabilities: Capabilities{Versions: []ProtocolVersion{1}, CipherSuites: []CipherSuite{0x4d}, Credentials: []CredentialType{CredentialTypeMoatOrg}},
				Source:       LeafNodeSourceCommit, ParentHash: make([]byte, 32), Signature: make([]byte, 64),
			}}
		} else {
			t[i] = &Node{Parent: &ParentNode{EncryptionKey: key, ParentHash: make([]byte, 32)}}
		}
	}
	return t
}

func BenchmarkRatchetTreeCodec(b *testing.B) {
	for _, n := range []int{1 << 10, 1 << 14} {
		tree := syntheticTree(n)
		enc, err := tree.Encode()
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("decode/%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(enc)))
			for b.Loop() {
				if _, err := DecodeRatchetTree(enc); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("encode/%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(enc)))
			for b.Loop() {
				if _, err := tree.Encode(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
