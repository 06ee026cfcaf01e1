package relay_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/store/blob/memblob"
	"github.com/moat-im/moat/server/store/tokens/badgertokens"
)

// TestQuotasSurviveRestart: with the durable token store as the quota
// store (as moatd serve runs it), a relay restart does not give a device
// its anonymous-token issuance quota or its attachment byte budget back,
// nor its tenant's (docs/spec/api.md §Anonymous-token issuance,
// docs/spec/attachments.md §Quotas).
func TestQuotasSurviveRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	openStore := func() *badgertokens.Store {
		s := must(badgertokens.Open(ctx, badgertokens.Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
		t.Cleanup(func() { s.Close() })
		return s
	}
	k := must(deliverytoken.GenerateIssuerKey())
	set := relay.NewIssuerSet()
	set.Set(tenantA, k)
	w := newWorld(t, worldOptions{issuers: set})
	w.srv.Close()
	w.relay.Close()
	qs := openStore()
	now := time.Now() // one day's quota, even across midnight
	w.opts.Now = func() time.Time { return now }
	w.opts.TokenIssuer, w.opts.Quotas = set, qs
	w.opts.Issuance = relay.IssuanceLimits{PerDevicePerDay: 5, PerTenantPerDay: 8}
	w.opts.Blobs = must(memblob.New(memblob.Options{Now: w.opts.Now}))
	w.opts.AttachmentLimits = relay.AttachmentLimits{
		DeviceBudget: relay.Rate{PerSecond: 0.001, Burst: 3 << 20},
		TenantBudget: relay.Rate{PerSecond: 0.001, Burst: 5 << 20}}
	w.start()
	a, b := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0)
	exp := now.Add(time.Hour)

	// Before the restart: a takes 4 of its 5 tokens and 2 of its 3 MiB;
	// b takes 3 tokens (the tenant is at 7 of 8) and 2 MiB (the tenant
	// is at 4 of 5 MiB).
	_, err := a.c.IssueTokens(ctx, k.Public(), 4)
	ok(t, err)
	_, err = b.c.IssueTokens(ctx, k.Public(), 3)
	ok(t, err)
	for _, d := range []*device{a, a, b, b} {
		_, err = d.c.CreateAttachment(ctx, 1<<20, exp)
		ok(t, err)
	}

	// Restart: the relay and its token store close and reopen on the same
	// directory.
	w.srv.Close()
	w.relay.Close()
	ok(t, qs.Close())
	qs = openStore()
	w.opts.Quotas = qs
	w.start()
	a.c, b.c = w.client(a), w.client(b)

	// a has 1 token left, and the tenant 1: 2 are refused, 1 is issued,
	// and then the tenant's cap refuses b.
	_, err = a.c.IssueTokens(ctx, k.Public(), 2)
	wantStatus(t, err, http.StatusTooManyRequests)
	_, err = a.c.IssueTokens(ctx, k.Public(), 1)
	ok(t, err)
	_, err = b.c.IssueTokens(ctx, k.Public(), 1)
	wantStatus(t, err, http.StatusTooManyRequests)
	// a has 1 MiB left and the tenant 1 MiB: 2 MiB are refused, 1 MiB
	// fits, and then the tenant's budget refuses b.
	_, err = a.c.CreateAttachment(ctx, 2<<20, exp)
	wantStatus(t, err, http.StatusInsufficientStorage)
	_, err = a.c.CreateAttachment(ctx, 1<<20, exp)
	ok(t, err)
	_, err = b.c.CreateAttachment(ctx, 1, exp)
	wantStatus(t, err, http.StatusInsufficientStorage)
}

// TestQuotasInMemoryReset documents the default: without a durable quota
// store a restart resets the quotas (a relay for tests; moatd serve
// passes its token store).
func TestQuotasInMemoryReset(t *testing.T) {
	ctx := context.Background()
	w, k := issuerWorld(t, relay.IssuanceLimits{PerDevicePerDay: 2})
	a := w.newDevice(tenantA, 0, 0)
	_, err := a.c.IssueTokens(ctx, k.Public(), 2)
	ok(t, err)
	_, err = a.c.IssueTokens(ctx, k.Public(), 1)
	wantStatus(t, err, http.StatusTooManyRequests)
	w.srv.Close()
	w.relay.Close()
	w.start()
	a.c = w.client(a)
	_, err = a.c.IssueTokens(ctx, k.Public(), 1)
	ok(t, err)
}
