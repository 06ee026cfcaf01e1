package deliverytoken

import (
	"errors"
	"testing"

	"github.com/moat-im/moat/crypto/sealed"
)

// countingVerifiers counts the lookups of the store it wraps; with
// batch set it offers HasVerifiers, else it hides it (as a plain
// VerifierStore).
type countingVerifiers struct {
	v           *MemoryVerifiers
	single, all int
	fail        error
}

func (c *countingVerifiers) HasVerifier(mb sealed.MailboxID, v Verifier) (bool, error) {
	c.single++
	if c.fail != nil {
		return false, c.fail
	}
	return c.v.HasVerifier(mb, v)
}

type batchVerifiers struct{ *countingVerifiers }

func (b batchVerifiers) HasVerifiers(qs []VerifierQuery, found []bool) error {
	b.all++
	if b.fail != nil {
		return b.fail
	}
	return b.v.HasVerifiers(qs, found)
}

// TestAuthorizeBatch: AuthorizeBatch gives each item the error
// AuthorizeParsed gives it, with one HasVerifiers call for all the MAC
// items of a batch (none per item) when the store has it, and per-item
// lookups when it has not; a failed batch lookup fails each MAC item
// with the store's error, and anonymous tokens are spent in order.
func TestAuthorizeBatch(t *testing.T) {
	k := mustKey(t)
	kx, _ := issuers(t)
	keys := NewMemoryIssuerKeys()
	keys.Add(tenantX, kx.Public())
	mbA, mbB := mbox(tenantX, devA), mbox(tenantX, devB)
	alice := NewContactID(tenantX, userC)
	toks := issue(t, kx, tenantX, 4)
	type item struct {
		mb   sealed.MailboxID
		sa   *SendAuthorization
		want error
	}
	mac := func(tok Token) *SendAuthorization { return &SendAuthorization{Kind: KindMAC, MAC: tok} }
	anon := func(tok *AnonymousToken) *SendAuthorization {
		return &SendAuthorization{Kind: KindAnonymous, Anonymous: tok}
	}
	items := []item{
		{mbA, mac(k.Token(mbA, alice, 0)), nil},
		{mbB, mac(k.Token(mbA, alice, 0)), ErrBadToken}, // another mailbox's token
		{mbA, mac(k.Token(mbA, alice, 1)), ErrBadToken}, // unregistered generation
		{mbA, nil, nil}, // left alone
		{mbB, anon(toks[0]), nil},
		{mbB, anon(toks[0]), ErrDoubleSpend}, // spent by the item before
		{sealed.MailboxID{}, mac(k.Token(mbA, alice, 0)), ErrMalformed},
		{mbB, mac(k.Token(mbB, alice, 0)), nil},
		{mbA, &SendAuthorization{Kind: 9}, ErrMalformed},
	}
	run := func(t *testing.T, vs VerifierStore, anonTok *AnonymousToken) []error {
		mbs := make([]sealed.MailboxID, len(items))
		sas := make([]*SendAuthorization, len(items))
		errs := make([]error, len(items))
		for i, it := range items {
			mbs[i], sas[i] = it.mb, it.sa
			if it.sa != nil && it.sa.Kind == KindAnonymous {
				sas[i] = anon(anonTok)
			}
		}
		errs[3] = errDisk // where sas is nil, AuthorizeBatch leaves errs alone
		a := &Authorizer{Verifiers: vs, Issuers: keys, Spent: NewMemorySpentStore()}
		a.AuthorizeBatch(mbs, sas, errs)
		return errs
	}
	for n, batch := range []bool{true, false} {
		mv := NewMemoryVerifiers()
		must(t, mv.Add(mbA, k.Verifier(mbA, alice, 0)))
		must(t, mv.Add(mbB, k.Verifier(mbB, alice, 0)))
		c := &countingVerifiers{v: mv}
		var vs VerifierStore = c
		if batch {
			vs = batchVerifiers{c}
		}
		errs := run(t, vs, toks[n])
		for i, it := range items {
			want := it.want
			if it.sa == nil {
				want = errDisk
			}
			if errs[i] != want {
				t.Errorf("batch %v: item %d: %v, want %v", batch, i, errs[i], want)
			}
			// The same as AuthorizeParsed on a fresh store.
			if it.sa != nil && it.sa.Kind == KindMAC {
				_, err := (&Authorizer{Verifiers: mv}).AuthorizeParsed(it.mb, it.sa)
				if err != errs[i] {
					t.Errorf("batch %v: item %d: %v, AuthorizeParsed %v", batch, i, errs[i], err)
				}
			}
		}
		if batch && (c.all != 1 || c.single != 0) {
			t.Errorf("batch store: %d HasVerifiers and %d HasVerifier calls, want 1 and 0", c.all, c.single)
		}
		if !batch && (c.all != 0 || c.single != 4) {
			t.Errorf("plain store: %d HasVerifiers and %d HasVerifier calls, want 0 and 4", c.all, c.single)
		}
	}
	// A failed lookup fails every MAC item the lookup covered, as a store
	// error (not a bad token); the anonymous items are unaffected.
	c := &countingVerifiers{v: NewMemoryVerifiers(), fail: errDisk}
	errs := run(t, batchVerifiers{c}, toks[2])
	for i, it := range items {
		switch {
		case it.sa == nil:
		case it.sa.Kind == KindMAC && it.mb.Valid():
			if !errors.Is(errs[i], errDisk) || errors.Is(errs[i], ErrBadToken) {
				t.Errorf("failing store: item %d: %v", i, errs[i])
			}
		case errs[i] != it.want:
			t.Errorf("failing store: item %d: %v, want %v", i, errs[i], it.want)
		}
	}
}
