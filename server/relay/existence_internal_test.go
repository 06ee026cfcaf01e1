package relay

import (
	"testing"

	"github.com/moat-im/moat/crypto/deliverytoken"
)

// TestDecoyIssuer: an unknown tenant or key id gets the decoy key, which
// verifies nothing; a known key is itself.
func TestDecoyIssuer(t *testing.T) {
	if hideAbsence(nil) != nil {
		t.Fatal("nil issuers must stay nil")
	}
	k, err := deliverytoken.GenerateIssuerKey()
	if err != nil {
		t.Fatal(err)
	}
	m := deliverytoken.NewMemoryIssuerKeys()
	m.Add([16]byte{1}, k.Public())
	u := hideAbsence(m)
	if u.IssuerKey([16]byte{1}, k.Public().KeyID()) != k.Public() {
		t.Fatal("known key not returned")
	}
	if u.IssuerKey([16]byte{2}, k.Public().KeyID()) != decoyIssuer || u.IssuerKey([16]byte{1}, [32]byte{9}) != decoyIssuer {
		t.Fatal("unknown tenant or key without the decoy")
	}
	// A token of the real key does not verify under the decoy.
	req, p, err := deliverytoken.RequestTokens(k.Public(), [16]byte{1}, 1)
	if err != nil {
		t.Fatal(err)
	}
	resp, _, err := k.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	toks, err := p.Finalize(resp)
	if err != nil {
		t.Fatal(err)
	}
	a := &deliverytoken.Authorizer{Issuers: uniformIssuers{deliverytoken.NewMemoryIssuerKeys()}, Spent: deliverytoken.NewMemorySpentStore()}
	auth, _ := AnonymousAuthorization(toks[0])
	var mb [32]byte
	mb[0], mb[16] = 1, 1
	if _, err := a.Authorize(mb, auth); err != deliverytoken.ErrBadToken {
		t.Fatalf("decoy accepted a token: %v", err)
	}
}
