// Package deliverytokentest holds the conformance suite that every
// deliverytoken.SpentStore implementation must pass.
package deliverytokentest

import (
	"crypto/rand"
	"sync"
	"testing"

	"github.com/moat-im/moat/crypto/deliverytoken"
)

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
