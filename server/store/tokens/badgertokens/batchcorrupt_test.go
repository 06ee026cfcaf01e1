package badgertokens

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/sealed"
)

// TestBatchCorruptVerifierIsolated: one corrupt verifier record fails
// only the items that look it up, in a batch (AuthorizeBatch) as when
// checked one by one (docs/spec/api.md §Batch send: an item that fails
// does not fail the others).
func TestBatchCorruptVerifierIsolated(t *testing.T) {
	s, err := Open(context.Background(), Options{Dir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var mbA, mbB sealed.MailboxID
	mbA[0], mbA[16], mbB[0], mbB[16] = 1, 1, 1, 2
	tokA, tokB := deliverytoken.Token{1}, deliverytoken.Token{2}
	vA, vB := deliverytoken.VerifierOf(mbA, tokA), deliverytoken.VerifierOf(mbB, tokB)
	if err := s.Add(mbA, vA); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(mbB, vB); err != nil {
		t.Fatal(err)
	}
	// Corrupt B's record (as a bit flip on disk would).
	if err := s.write(false, func(txn *badger.Txn) error { return txn.Set(verifierKey(mbB, vB), []byte("x")) }); err != nil {
		t.Fatal(err)
	}
	a := &deliverytoken.Authorizer{Verifiers: s}
	mbs := []sealed.MailboxID{mbA, mbB}
	sas := []*deliverytoken.SendAuthorization{{Kind: deliverytoken.KindMAC, MAC: tokA}, {Kind: deliverytoken.KindMAC, MAC: tokB}}
	errs := make([]error, 2)
	a.AuthorizeBatch(mbs, sas, errs)
	for i := range mbs {
		_, one := a.AuthorizeParsed(mbs[i], sas[i])
		if (one == nil) != (errs[i] == nil) {
			t.Errorf("item %d: one by one %v, batch %v", i, one, errs[i])
		}
	}
}
