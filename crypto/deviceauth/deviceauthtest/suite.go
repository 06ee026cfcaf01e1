// Package deviceauthtest holds the conformance suite that every
// deviceauth.ReplayCache implementation must pass.
package deviceauthtest

import (
	"crypto/rand"
	"sync"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/deviceauth"
)

// TestReplayCache checks the rules of deviceauth.ReplayCache on caches made
// by newCache, each empty and able to hold at least 1000 entries: a nonce
// is accepted once until it expires, distinct nonces are independent, and
// of concurrent uses of one nonce exactly one succeeds.
func TestReplayCache(t *testing.T, newCache func(t *testing.T) deviceauth.ReplayCache) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	exp := now.Add(time.Minute)
	random := func() (b [32]byte) {
		_, _ = rand.Read(b[:])
		return b
	}
	t.Run("UseOnce", func(t *testing.T) {
		c := newCache(t)
		n := random()
		if err := c.Use(n, exp, now); err != nil {
			t.Fatalf("first use: %v", err)
		}
		for _, at := range []time.Time{now, now.Add(30 * time.Second), exp.Add(-time.Nanosecond)} {
			if err := c.Use(n, exp, at); err != deviceauth.ErrReplayed {
				t.Fatalf("reuse at %v: %v, want ErrReplayed", at, err)
			}
		}
	})
	t.Run("Independent", func(t *testing.T) {
		c := newCache(t)
		nonces := make([][32]byte, 1000)
		for i := range nonces {
			nonces[i] = random()
			if err := c.Use(nonces[i], exp, now); err != nil {
				t.Fatalf("nonce %d: %v", i, err)
			}
		}
		for i, n := range nonces {
			if err := c.Use(n, exp, now); err != deviceauth.ErrReplayed {
				t.Fatalf("nonce %d reused: %v", i, err)
			}
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		c := newCache(t)
		const workers = 16
		for round := range 20 {
			n := random()
			var wg sync.WaitGroup
			errs := make([]error, workers)
			for i := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = c.Use(n, exp, now)
				}()
			}
			wg.Wait()
			ok := 0
			for _, err := range errs {
				switch err {
				case nil:
					ok++
				case deviceauth.ErrReplayed:
				default:
					t.Fatalf("round %d: %v", round, err)
				}
			}
			if ok != 1 {
				t.Fatalf("round %d: %d of %d concurrent uses succeeded, want 1", round, ok, workers)
			}
		}
	})
}
