package relay_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/internal/faultfs"
	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/store/prekey/badgerprekey"
	"github.com/moat-im/moat/server/store/tokens/badgertokens"
)

// TestT38TokenAndPrekeyStores: with the badger token and prekey stores
// failing their writes (ENOSPC, failed syncs; internal/faultfs), the
// relay answers 503 with Retry-After to verifier registrations and
// removals ("verifier store unavailable"), to anonymous sends whose token
// cannot be recorded as spent ("token store unavailable"), to prekey
// uploads and to bundle fetches, and acknowledges nothing; sends under a
// MAC token (a read) and prekey status still work. Once the disk
// recovers, the refused requests succeed: nothing of them was stored,
// except a spend whose sync failed, which keeps its token spent (refused,
// never accepted twice).
func TestT38TokenAndPrekeyStores(t *testing.T) {
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	tokFaults, pkFaults := faultfs.New(), faultfs.New()
	tk := must(badgertokens.Open(ctx, badgertokens.Options{Dir: t.TempDir(), Logger: logger, DiskReserve: -1, Faults: tokFaults}))
	defer tk.Close()
	pk := must(badgerprekey.Open(ctx, badgerprekey.Options{Dir: t.TempDir(), Logger: logger, DiskReserve: -1, Faults: pkFaults}))
	defer pk.Close()
	issuer := must(deliverytoken.GenerateIssuerKey())
	issuers := relay.NewIssuerSet()
	issuers.Set(tenantA, issuer)
	w := newWorld(t, worldOptions{issuers: issuers, verifiers: tk, spent: tk})
	w.srv.Close()
	w.relay.Close()
	w.opts.Prekeys = pk
	w.start()
	a, b := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 3, 0)
	w.publish(b)
	mac := w.token(b, 1)
	req, pending, err := deliverytoken.RequestTokens(issuer.Public(), tenantA, 2)
	ok(t, err)
	resp, _, err := issuer.Issue(req)
	ok(t, err)
	toks := must(pending.Finalize(resp))
	anon := func(i int) []byte { return must(relay.AnonymousAuthorization(toks[i])) }
	unavailable := func(what string, err error) {
		t.Helper()
		wantStatus(t, err, http.StatusServiceUnavailable)
		if err.(*relay.APIError).RetryAfter < time.Second {
			t.Fatalf("%s: 503 without Retry-After", what)
		}
	}
	extra := b.tokens.Verifier(b.mailbox(), deliverytoken.ContactID{9}, 0)
	opks := func() int {
		t.Helper()
		st, err := b.c.PrekeyStatus(ctx)
		ok(t, err)
		return st.OneTimePrekeys
	}

	// The token store's disk is full.
	tokFaults.SetFull(true)
	unavailable("verifier registration", b.c.AddVerifier(ctx, extra))
	unavailable("verifier removal", b.c.RemoveVerifier(ctx, b.tokens.Verifier(b.mailbox(), deliverytoken.ContactID{1}, 0)))
	_, err = w.anon().Send(ctx, anon(0), envelope(t, a, b, []byte("anonymous, disk full")))
	unavailable("anonymous send", err)
	_, err = w.anon().Send(ctx, mac, envelope(t, a, b, []byte("under a MAC token")))
	ok(t, err) // a read of the verifier store
	pg, err := b.c.Fetch(ctx, 0, 10)
	ok(t, err)
	if len(pg.Messages) != 1 {
		t.Fatalf("%d messages stored; the refused send must not be", len(pg.Messages))
	}
	tokFaults.SetFull(false)
	ok(t, b.c.AddVerifier(ctx, extra))
	_, err = w.anon().Send(ctx, anon(0), envelope(t, a, b, []byte("anonymous, recovered")))
	ok(t, err) // the refused send did not spend the token

	// A spend whose sync fails: 503, and the token stays spent.
	tokFaults.FailSyncs(1)
	_, err = w.anon().Send(ctx, anon(1), envelope(t, a, b, []byte("anonymous, sync fails")))
	unavailable("anonymous send with a failing sync", err)
	_, err = w.anon().Send(ctx, anon(1), envelope(t, a, b, []byte("anonymous, retried")))
	wantStatus(t, err, http.StatusForbidden)

	// The prekey store's disk is full.
	pkFaults.SetFull(true)
	unavailable("prekey upload", b.c.UploadPrekeys(ctx, must(b.upload.Marshal())))
	_, err = a.c.FetchBundle(ctx, b.mailbox())
	unavailable("bundle fetch", err)
	if n := opks(); n != 3 {
		t.Fatalf("%d one-time prekeys left after a refused fetch, want 3", n)
	}
	pkFaults.SetFull(false)
	_, err = a.c.FetchBundle(ctx, b.mailbox())
	ok(t, err)
	if n := opks(); n != 2 {
		t.Fatalf("%d one-time prekeys left after a fetch, want 2", n)
	}
	w.publish(b)
}
