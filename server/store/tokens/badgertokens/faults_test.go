package badgertokens_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/internal/faultfs"
	"github.com/moat-im/moat/server/store/tokens/badgertokens"
)

// TestT38DiskFull: with free space below the reserve, Add and Spend fail
// with ErrUnavailable and store nothing while Remove still runs; with
// writes failing (ENOSPC) every write fails and stores nothing; with
// syncs failing every write fails, an Add is retried idempotently
// afterwards and a token whose Spend failed stays spent (refused, never
// accepted twice), also after a restart. After each fault the store
// serves again.
func TestT38DiskFull(t *testing.T) {
	dir := t.TempDir()
	inj := faultfs.New()
	openStore := func() *badgertokens.Store {
		s, err := badgertokens.Open(context.Background(), badgertokens.Options{
			Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), DiskReserve: 1 << 30, Faults: inj,
		})
		ok(t, err)
		return s
	}
	s := openStore()
	defer func() { s.Close() }()
	mb := sealed.NewMailboxID([16]byte{1}, [16]byte{2})
	v := func(i byte) deliverytoken.Verifier { return deliverytoken.Verifier{i} }
	nonce := func(i byte) [32]byte { return [32]byte{i} }
	key := [32]byte{0xee}
	unavailable := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, badgertokens.ErrUnavailable) {
			t.Fatalf("%s: %v, want ErrUnavailable", what, err)
		}
	}
	has := func(i byte) bool {
		t.Helper()
		ok, err := s.HasVerifier(mb, v(i))
		if err != nil {
			t.Fatalf("HasVerifier: %v", err)
		}
		return ok
	}

	ok(t, s.Add(mb, v(1)))
	ok(t, s.Add(mb, v(2)))
	ok(t, s.Spend(key, nonce(1)))

	// 1. Below the reserve: growing writes refused before anything is
	// written; a removal (which frees space) and reads still served.
	inj.SetFree(1 << 20)
	unavailable("Add below the reserve", s.Add(mb, v(3)))
	unavailable("Spend below the reserve", s.Spend(key, nonce(2)))
	ok(t, s.Remove(mb, v(2)))
	if has(2) || has(3) || !has(1) {
		t.Fatal("verifiers after the refused writes")
	}
	inj.SetFree(-1)
	ok(t, s.Spend(key, nonce(2))) // the refused spend stored nothing
	ok(t, s.Add(mb, v(3)))

	// 2. Writes fail (ENOSPC): every write fails and stores nothing.
	inj.SetFull(true)
	unavailable("Add on a full disk", s.Add(mb, v(4)))
	unavailable("Spend on a full disk", s.Spend(key, nonce(3)))
	unavailable("Remove on a full disk", s.Remove(mb, v(1)))
	if has(4) || !has(1) {
		t.Fatal("a failed write was stored")
	}
	inj.SetFull(false)
	ok(t, s.Spend(key, nonce(3)))
	ok(t, s.Add(mb, v(4)))

	// 3. Syncs fail after badger took the batch: nothing is acknowledged.
	before := inj.Injected()
	inj.FailSyncs(2)
	unavailable("Add with a failing sync", s.Add(mb, v(5)))
	unavailable("Spend with a failing sync", s.Spend(key, nonce(4)))
	if inj.Injected() != before+2 {
		t.Fatalf("%d faults injected, want 2", inj.Injected()-before)
	}
	ok(t, s.Add(mb, v(5))) // retried: idempotent
	if err := s.Spend(key, nonce(4)); !errors.Is(err, deliverytoken.ErrDoubleSpend) {
		t.Fatalf("a token whose spend failed: %v, want it to stay spent", err)
	}
	ok(t, s.Spend(key, nonce(5)))

	// Everything acknowledged survives a restart; so does the spend that
	// failed its sync, made durable by the later ones.
	ok(t, s.Close())
	s = openStore()
	for _, i := range []byte{1, 3, 4, 5} {
		if !has(i) {
			t.Errorf("verifier %d lost", i)
		}
	}
	if has(2) {
		t.Error("removed verifier back")
	}
	for i := byte(1); i <= 5; i++ {
		if err := s.Spend(key, nonce(i)); !errors.Is(err, deliverytoken.ErrDoubleSpend) {
			t.Errorf("token %d after a restart: %v", i, err)
		}
	}
	ok(t, s.Spend(key, nonce(6)))
}

// TestT38QuotaDiskFull: quota charges grow the store: below the reserve
// and on a full disk they fail with ErrUnavailable and store nothing
// (the relay then answers 503 and grants nothing); afterwards they serve
// again. A charge whose sync failed may be in badger: the counter stays
// charged (an under-grant, never an over-grant).
func TestT38QuotaDiskFull(t *testing.T) {
	inj := faultfs.New()
	s, err := badgertokens.Open(context.Background(), badgertokens.Options{
		Dir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), DiskReserve: 1 << 30, Faults: inj,
	})
	ok(t, err)
	defer s.Close()
	unavailable := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, badgertokens.ErrUnavailable) {
			t.Fatalf("%s: %v, want ErrUnavailable", what, err)
		}
	}
	add(t, s, 1, "dev")
	inj.SetFree(1 << 20)
	unavailable("Charge below the reserve", s.Charge([][]byte{[]byte("dev")}, func(old [][]byte) ([][]byte, time.Duration, error) {
		return [][]byte{{9}}, time.Hour, nil
	}))
	inj.SetFree(-1)
	inj.SetFull(true)
	unavailable("Charge on a full disk", s.Charge([][]byte{[]byte("dev")}, func(old [][]byte) ([][]byte, time.Duration, error) {
		return [][]byte{{9}}, time.Hour, nil
	}))
	inj.SetFull(false)
	if got := add(t, s, 1, "dev"); got[0] != 2 {
		t.Fatalf("after the refused charges: %d, want 2", got[0])
	}
	inj.FailSyncs(1)
	unavailable("Charge with a failing sync", s.Charge([][]byte{[]byte("dev")}, func(old [][]byte) ([][]byte, time.Duration, error) {
		return [][]byte{binary.BigEndian.AppendUint64(nil, binary.BigEndian.Uint64(old[0])+1)}, time.Hour, nil
	}))
	if got := add(t, s, 0, "dev"); got[0] != 3 {
		t.Fatalf("after a charge whose sync failed: %d, want 3 (kept charged)", got[0])
	}
}
