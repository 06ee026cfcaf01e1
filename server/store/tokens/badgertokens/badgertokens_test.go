package badgertokens_test

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/deliverytoken/deliverytokentest"
	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/server/store/tokens/badgertokens"
)

func open(t testing.TB, dir string) *badgertokens.Store {
	t.Helper()
	s, err := badgertokens.Open(context.Background(), badgertokens.Options{
		Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ok(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestSpentStore(t *testing.T) {
	deliverytokentest.TestSpentStore(t, func(t *testing.T) deliverytoken.SpentStore { return open(t, t.TempDir()) })
}

func TestVerifiers(t *testing.T) {
	deliverytokentest.TestVerifiers(t, func(t *testing.T) deliverytokentest.Verifiers { return open(t, t.TempDir()) })
}

// TestRestart: a relay restart (close, reopen the same directory) keeps
// every registered verifier, every revocation and every spent anonymous
// token (docs/spec/envelope.md: an anonymous token is redeemed at most
// once), checked through deliverytoken.Authorizer as the relay uses it.
func TestRestart(t *testing.T) {
	dir := t.TempDir()
	tenant := [16]byte{1}
	mb := sealed.NewMailboxID(tenant, [16]byte{2})
	tk, err := deliverytoken.GenerateTokenKey(rand.Reader)
	ok(t, err)
	alice, bob := deliverytoken.ContactID{1}, deliverytoken.ContactID{2}
	issuer, err := deliverytoken.GenerateIssuerKey()
	ok(t, err)
	issuers := deliverytoken.NewMemoryIssuerKeys()
	issuers.Add(tenant, issuer.Public())
	req, pending, err := deliverytoken.RequestTokens(issuer.Public(), tenant, 2)
	ok(t, err)
	resp, _, err := issuer.Issue(req)
	ok(t, err)
	anon, err := pending.Finalize(resp)
	ok(t, err)
	auth := func(sa *deliverytoken.SendAuthorization) []byte {
		b, err := sa.Marshal()
		ok(t, err)
		return b
	}
	macAuth := func(c deliverytoken.ContactID) []byte {
		return auth(&deliverytoken.SendAuthorization{Kind: deliverytoken.KindMAC, MAC: tk.Token(mb, c, 0)})
	}
	anonAuth := func(i int) []byte {
		return auth(&deliverytoken.SendAuthorization{Kind: deliverytoken.KindAnonymous, Anonymous: anon[i]})
	}

	s := open(t, dir)
	a := &deliverytoken.Authorizer{Verifiers: s, Issuers: issuers, Spent: s}
	ok(t, s.Add(mb, tk.Verifier(mb, alice, 0)))
	ok(t, s.Add(mb, tk.Verifier(mb, bob, 0)))
	ok(t, s.Remove(mb, tk.Verifier(mb, bob, 0)))
	if _, err := a.Authorize(mb, anonAuth(0)); err != nil {
		t.Fatalf("first redemption: %v", err)
	}
	ok(t, s.Close())
	if _, err := s.HasVerifier(mb, tk.Verifier(mb, alice, 0)); !errors.Is(err, badgertokens.ErrClosed) {
		t.Fatalf("HasVerifier after Close: %v", err)
	}
	if err := s.HasVerifiers([]deliverytoken.VerifierQuery{{Mailbox: mb, Verifier: tk.Verifier(mb, alice, 0)}}, make([]bool, 1)); !errors.Is(err, badgertokens.ErrClosed) {
		t.Fatalf("HasVerifiers after Close: %v", err)
	}

	s = open(t, dir)
	a = &deliverytoken.Authorizer{Verifiers: s, Issuers: issuers, Spent: s}
	if _, err := a.Authorize(mb, macAuth(alice)); err != nil {
		t.Fatalf("registered token after a restart: %v", err)
	}
	if _, err := a.Authorize(mb, macAuth(bob)); err != deliverytoken.ErrBadToken {
		t.Fatalf("revoked token after a restart: %v, want ErrBadToken", err)
	}
	if _, err := a.Authorize(mb, anonAuth(0)); err != deliverytoken.ErrDoubleSpend {
		t.Fatalf("spent token after a restart: %v, want ErrDoubleSpend", err)
	}
	if _, err := a.Authorize(mb, anonAuth(1)); err != nil {
		t.Fatalf("unspent token after a restart: %v", err)
	}

	// Forget drops a retired key's spent nonces, and only that key's.
	other := [32]byte{9}
	ok(t, s.Spend(other, [32]byte{1}))
	ok(t, s.Forget(anon[0].KeyID))
	if err := s.Spend(anon[0].KeyID, anon[0].Nonce); err != nil {
		t.Fatalf("spend after Forget: %v", err)
	}
	if err := s.Spend(other, [32]byte{1}); err != deliverytoken.ErrDoubleSpend {
		t.Fatalf("another key after Forget: %v", err)
	}
}
