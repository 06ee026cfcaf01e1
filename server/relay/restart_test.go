package relay_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"

	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/server/store/tokens/badgertokens"
)

// TestTokensSurviveRestart: with the durable token store (as moatd serve
// runs it), a relay restart keeps a registered MAC verifier, so its token
// still delivers, and keeps a spent anonymous token spent, so it cannot be
// redeemed again (docs/spec/envelope.md §Anonymous delivery tokens).
func TestTokensSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	openTokens := func() *badgertokens.Store {
		s := must(badgertokens.Open(context.Background(), badgertokens.Options{
			Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
		t.Cleanup(func() { s.Close() })
		return s
	}
	issuer := must(deliverytoken.GenerateIssuerKey())
	iks := deliverytoken.NewMemoryIssuerKeys()
	iks.Add(tenantA, issuer.Public())
	tokens := openTokens()
	w := newWorld(t, worldOptions{issuers: iks, verifiers: tokens, spent: tokens})
	a, b := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0)
	w.publish(b)
	mac := w.token(b, 1)
	req, pending, err := deliverytoken.RequestTokens(issuer.Public(), tenantA, 2)
	ok(t, err)
	resp, _, err := issuer.Issue(req)
	ok(t, err)
	toks, err := pending.Finalize(resp)
	ok(t, err)
	anon := func(i int) []byte {
		return must((&deliverytoken.SendAuthorization{Kind: deliverytoken.KindAnonymous, Anonymous: toks[i]}).Marshal())
	}
	ctx := context.Background()
	_, err = w.anon().Send(ctx, mac, envelope(t, a, b, []byte("mac")))
	ok(t, err)
	_, err = w.anon().Send(ctx, anon(0), envelope(t, a, b, []byte("anonymous")))
	ok(t, err)

	// Restart: the relay and its token store close; both reopen on the
	// same directory.
	w.srv.Close()
	w.relay.Close()
	ok(t, tokens.Close())
	tokens = openTokens()
	w.opts.Verifiers, w.opts.Spent = tokens, tokens
	w.start()

	_, err = w.anon().Send(ctx, mac, envelope(t, a, b, []byte("mac after restart")))
	ok(t, err)
	_, err = w.anon().Send(ctx, anon(0), envelope(t, a, b, []byte("anonymous again")))
	wantStatus(t, err, http.StatusForbidden) // spent before the restart
	_, err = w.anon().Send(ctx, anon(1), envelope(t, a, b, []byte("second anonymous")))
	ok(t, err)
}
