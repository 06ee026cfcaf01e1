package badgertokens_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/server/store/tokens/badgertokens"
)

// TestGroupCommit: concurrent calls share batches, and a call that fails
// in a batch (a double spend, a full mailbox) leaves the others of its
// batch alone; after a reopen, exactly what succeeded is there. Calls
// after Close, and calls racing with it, fail with ErrClosed or succeed,
// never hang.
func TestGroupCommit(t *testing.T) {
	dir := t.TempDir()
	s, err := badgertokens.Open(context.Background(), badgertokens.Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ok(t, err)
	key := [32]byte{7}
	mb := sealed.NewMailboxID([16]byte{1}, [16]byte{2})
	const spenders, nonces = 16, 64
	var spent [nonces]atomic.Int32
	var added atomic.Int32
	var wg sync.WaitGroup
	for g := range spenders {
		wg.Go(func() {
			for i := range nonces {
				// Every goroutine spends every nonce: exactly one wins each.
				n := [32]byte{byte((i + g) % nonces)}
				switch err := s.Spend(key, n); {
				case err == nil:
					spent[n[0]].Add(1)
				case !errors.Is(err, deliverytoken.ErrDoubleSpend):
					t.Error(err)
				}
			}
		})
	}
	// Meanwhile, more verifiers than a mailbox may hold.
	for g := range 8 {
		wg.Go(func() {
			for i := range deliverytoken.MaxVerifiers/8 + 10 {
				v := deliverytoken.Verifier{byte(g), byte(i >> 8), byte(i)}
				switch err := s.Add(mb, v); {
				case err == nil:
					added.Add(1)
				case !errors.Is(err, deliverytoken.ErrTooManyVerifiers):
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for i := range spent {
		if n := spent[i].Load(); n != 1 {
			t.Errorf("nonce %d spent %d times", i, n)
		}
	}
	if n := added.Load(); n != deliverytoken.MaxVerifiers {
		t.Errorf("%d verifiers added, want %d", n, deliverytoken.MaxVerifiers)
	}

	// Close while calls run: each returns nil or ErrClosed.
	var wg2 sync.WaitGroup
	for g := range 8 {
		wg2.Go(func() {
			for i := range 50 {
				err := s.Spend([32]byte{8}, [32]byte{byte(g), byte(i)})
				if err != nil && !errors.Is(err, badgertokens.ErrClosed) {
					t.Error(err)
				}
			}
		})
	}
	ok(t, s.Close())
	wg2.Wait()
	if err := s.Spend(key, [32]byte{200}); !errors.Is(err, badgertokens.ErrClosed) {
		t.Fatalf("spend after close: %v", err)
	}

	s = open(t, dir)
	for i := range nonces {
		if err := s.Spend(key, [32]byte{byte(i)}); !errors.Is(err, deliverytoken.ErrDoubleSpend) {
			t.Errorf("nonce %d after reopen: %v", i, err)
		}
	}
	if err := s.Add(mb, deliverytoken.Verifier{0xff}); !errors.Is(err, deliverytoken.ErrTooManyVerifiers) {
		t.Errorf("a full mailbox after reopen: %v", err)
	}
}
