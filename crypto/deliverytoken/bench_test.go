package deliverytoken

import (
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"testing"
)

// benchIssuer is the fixed issuer key of the RFC 9578 vector, so that
// instruction counts do not depend on the randomness of RSA key generation.
func benchIssuer(b *testing.B) *IssuerPrivateKey {
	data, err := os.ReadFile("testdata/rfc9578-type2.json")
	must(b, err)
	var v vector
	must(b, json.Unmarshal(data, &v))
	der, err := hex.DecodeString(v.SkS)
	must(b, err)
	block, _ := pem.Decode(der)
	k, err := ParseIssuerPrivateKey(block.Bytes)
	must(b, err)
	return k
}

// Benchmarks of docs/performance.md §Sealed sender: the relay's check of
// each kind of token, and the issuer's and client's work per token.

func BenchmarkAuthorizeMAC(b *testing.B) {
	k := mustKey(b)
	mb := mbox(tenantX, devB)
	tok := k.Token(mb, SharedContact, 0)
	v := NewMemoryVerifiers()
	must(b, v.Add(mb, VerifierOf(mb, tok)))
	a := &Authorizer{Verifiers: v}
	auth := macAuth(b, tok)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Authorize(mb, auth); err != nil {
			b.Fatal(err)
		}
	}
}

// nopSpent accepts every token, so that one token can be redeemed b.N
// times and the benchmark measures parsing and verification.
type nopSpent struct{}

func (nopSpent) Spend(_, _ [32]byte) error { return nil }

func BenchmarkAuthorizeAnonymous(b *testing.B) {
	kx := benchIssuer(b)
	keys := NewMemoryIssuerKeys()
	keys.Add(tenantX, kx.Public())
	a := &Authorizer{Issuers: keys, Spent: nopSpent{}}
	mb := mbox(tenantX, devB)
	auth := anonAuth(b, issue(b, kx, tenantX, 1)[0])
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Authorize(mb, auth); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIssue is the issuer's cost of one token (one blind RSA
// signature with a 2048-bit key).
func BenchmarkIssue(b *testing.B) {
	kx := benchIssuer(b)
	req, _, err := RequestTokens(kx.Public(), tenantX, 1)
	must(b, err)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := kx.Issue(req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRequestIssueFinalize is one whole issuance of one token: the
// client's blinding and finalisation (which verifies) and the issuer's
// signature; the client's share is this less BenchmarkIssue.
func BenchmarkRequestIssueFinalize(b *testing.B) {
	kx := benchIssuer(b)
	b.ReportAllocs()
	for b.Loop() {
		req, p, err := RequestTokens(kx.Public(), tenantX, 1)
		if err != nil {
			b.Fatal(err)
		}
		resp, _, err := kx.Issue(req)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.Finalize(resp); err != nil {
			b.Fatal(err)
		}
	}
}
