// Package deliverytokentest holds the conformance suites that every
// deliverytoken.SpentStore and every relay verifier registry must pass.
package deliverytokentest

import (
	"crypto/rand"
	"errors"
	"sync"
	"testing"

	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/sealed"
)

// Verifiers is a relay's registry of MAC-token verifiers: a
// deliverytoken.VerifierStore that registrations change.
type Verifiers interface {
	deliverytoken.VerifierStore
	Add(mb sealed.MailboxID, v deliverytoken.Verifier) error
	Remove(mb sealed.MailboxID, v deliverytoken.Verifier) error
}

// TestVerifiers checks a verifier registry on stores made by newStore,
// each empty: a verifier is registered per mailbox, twice is once, Remove
// revokes it alone, and a mailbox holds at most deliverytoken.MaxVerifiers
// (a refused Add registers nothing).
func TestVerifiers(t *testing.T, newStore func(t *testing.T) Verifiers) {
	random := func() (b [32]byte) {
		_, _ = rand.Read(b[:])
		return b
	}
	has := func(t *testing.T, s Verifiers, mb sealed.MailboxID, v deliverytoken.Verifier, want bool) {
		t.Helper()
		got, err := s.HasVerifier(mb, v)
		if err != nil || got != want {
			t.Fatalf("HasVerifier = %v, %v; want %v", got, err, want)
		}
	}
	t.Run("AddRemove", func(t *testing.T) {
		s := newStore(t)
		mb1, mb2 := sealed.MailboxID(random()), sealed.MailboxID(random())
		v1, v2 := deliverytoken.Verifier(random()), deliverytoken.Verifier(random())
		has(t, s, mb1, v1, false)
		for range 2 {
			if err := s.Add(mb1, v1); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Add(mb1, v2); err != nil {
			t.Fatal(err)
		}
		has(t, s, mb1, v1, true)
		has(t, s, mb2, v1, false) // another mailbox
		if err := s.Remove(mb1, v1); err != nil {
			t.Fatal(err)
		}
		has(t, s, mb1, v1, false)
		has(t, s, mb1, v2, true)
		if err := s.Remove(mb1, v1); err != nil {
			t.Fatalf("removing an absent verifier: %v", err)
		}
	})
	t.Run("Batch", func(t *testing.T) {
		s := newStore(t)
		bs, ok := s.(deliverytoken.VerifierBatchStore)
		if !ok {
			t.Skip("no HasVerifiers")
		}
		mb1, mb2 := sealed.MailboxID(random()), sealed.MailboxID(random())
		v1, v2 := deliverytoken.Verifier(random()), deliverytoken.Verifier(random())
		for _, q := range []deliverytoken.VerifierQuery{{Mailbox: mb1, Verifier: v1}, {Mailbox: mb2, Verifier: v2}} {
			if err := s.Add(q.Mailbox, q.Verifier); err != nil {
				t.Fatal(err)
			}
		}
		qs := []deliverytoken.VerifierQuery{
			{Mailbox: mb1, Verifier: v1}, {Mailbox: mb1, Verifier: v2}, {Mailbox: mb2, Verifier: v2},
			{Mailbox: mb2, Verifier: v1}, {Mailbox: mb1, Verifier: v1},
		}
		want := []bool{true, false, true, false, true}
		found := []bool{false, true, false, true, false} // overwritten
		if err := bs.HasVerifiers(qs, found); err != nil {
			t.Fatal(err)
		}
		for i := range qs {
			if found[i] != want[i] {
				t.Fatalf("query %d: %v, want %v", i, found[i], want[i])
			}
			has(t, s, qs[i].Mailbox, qs[i].Verifier, want[i])
		}
		if err := bs.HasVerifiers(nil, nil); err != nil {
			t.Fatalf("no queries: %v", err)
		}
	})
	t.Run("MaxVerifiers", func(t *testing.T) {
		if testing.Short() {
			t.Skip("registers MaxVerifiers verifiers")
		}
		s := newStore(t)
		mb := sealed.MailboxID(random())
		vs := make([]deliverytoken.Verifier, deliverytoken.MaxVerifiers)
		for i := range vs {
			vs[i] = random()
			if err := s.Add(mb, vs[i]); err != nil {
				t.Fatalf("verifier %d: %v", i, err)
			}
		}
		extra := deliverytoken.Verifier(random())
		if err := s.Add(mb, extra); !errors.Is(err, deliverytoken.ErrTooManyVerifiers) {
			t.Fatalf("verifier %d: %v, want ErrTooManyVerifiers", len(vs), err)
		}
		has(t, s, mb, extra, false)
		if err := s.Add(mb, vs[0]); err != nil {
			t.Fatalf("re-adding a registered verifier at the limit: %v", err)
		}
		if err := s.Add(sealed.MailboxID(random()), extra); err != nil {
			t.Fatalf("another mailbox at the limit: %v", err)
		}
		if err := s.Remove(mb, vs[0]); err != nil {
			t.Fatal(err)
		}
		if err := s.Add(mb, extra); err != nil {
			t.Fatalf("after a removal: %v", err)
		}
		has(t, s, mb, extra, true)
	})
}

// TestSpentStore checks the rules of deliverytoken.SpentStore on stores
// made by newStore, each empty: a nonce is spent once per key, the same
// nonce under another key is another token, and of concurrent spends of
// one token exactly one succeeds.
func TestSpentStore(t *testing.T, newStore func(t *testing.T) deliverytoken.SpentStore) {
	random := func() (b [32]byte) {
		_, _ = rand.Read(b[:])
		return b
	}
	t.Run("SpendOnce", func(t *testing.T) {
		s := newStore(t)
		k, n := random(), random()
		if err := s.Spend(k, n); err != nil {
			t.Fatalf("first spend: %v", err)
		}
		for range 3 {
			if err := s.Spend(k, n); err != deliverytoken.ErrDoubleSpend {
				t.Fatalf("second spend: %v, want ErrDoubleSpend", err)
			}
		}
	})
	t.Run("KeysAreSeparate", func(t *testing.T) {
		s := newStore(t)
		k1, k2, n := random(), random(), random()
		if err := s.Spend(k1, n); err != nil {
			t.Fatal(err)
		}
		if err := s.Spend(k2, n); err != nil {
			t.Fatalf("same nonce under another key: %v", err)
		}
		if err := s.Spend(k2, n); err != deliverytoken.ErrDoubleSpend {
			t.Fatalf("second spend under the other key: %v", err)
		}
	})
	t.Run("ManyNonces", func(t *testing.T) {
		s := newStore(t)
		k := random()
		nonces := make([][32]byte, 1000)
		for i := range nonces {
			nonces[i] = random()
			if err := s.Spend(k, nonces[i]); err != nil {
				t.Fatalf("nonce %d: %v", i, err)
			}
		}
		for i, n := range nonces {
			if err := s.Spend(k, n); err != deliverytoken.ErrDoubleSpend {
				t.Fatalf("nonce %d spent twice: %v", i, err)
			}
		}
	})
	t.Run("ConcurrentSpend", func(t *testing.T) {
		s := newStore(t)
		const workers = 16
		for round := range 20 {
			k, n := random(), random()
			var wg sync.WaitGroup
			errs := make([]error, workers)
			for i := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = s.Spend(k, n)
				}()
			}
			wg.Wait()
			ok := 0
			for _, err := range errs {
				switch err {
				case nil:
					ok++
				case deliverytoken.ErrDoubleSpend:
				default:
					t.Fatalf("round %d: %v", round, err)
				}
			}
			if ok != 1 {
				t.Fatalf("round %d: %d of %d concurrent spends succeeded, want 1", round, ok, workers)
			}
		}
	})
}
