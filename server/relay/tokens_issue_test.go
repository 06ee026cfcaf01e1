package relay_test

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/deviceauth"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/server/relay"
)

// issuerWorld is a world whose tenant A has an issuer key, with the given
// issuance limits.
func issuerWorld(t *testing.T, lim relay.IssuanceLimits) (*world, *deliverytoken.IssuerPrivateKey) {
	t.Helper()
	k := must(deliverytoken.GenerateIssuerKey())
	set := relay.NewIssuerSet()
	set.Set(tenantA, k)
	w := newWorld(t, worldOptions{issuers: set})
	w.srv.Close()
	w.relay.Close()
	w.opts.TokenIssuer, w.opts.Issuance = set, lim
	now := time.Now() // one day's quota, even across midnight
	w.opts.Now = func() time.Time { return now }
	w.start()
	return w, k
}

// TestTokenIssuance: a device obtains tokens under the key it was given,
// spends them on first-contact sends, and is held to its quotas.
func TestTokenIssuance(t *testing.T) {
	ctx := context.Background()
	w, issuer := issuerWorld(t, relay.IssuanceLimits{PerDevicePerDay: 70, PerTenantPerDay: 100})
	a := w.newDevice(tenantA, 0, 0)
	b := w.newDevice(tenantA, 0, 0)
	c := w.newDevice(tenantA, 0, 0)
	for _, d := range []*device{a, b, c} {
		w.publish(d)
	}

	served, err := a.c.IssuerKey(ctx)
	ok(t, err)
	if served.KeyID() != issuer.Public().KeyID() {
		t.Fatal("relay served another issuer key")
	}
	// 65 tokens: two requests (64 + 1).
	toks, err := a.c.IssueTokens(ctx, issuer.Public(), 65)
	ok(t, err)
	if len(toks) != 65 {
		t.Fatalf("%d tokens", len(toks))
	}
	auth := must(relay.AnonymousAuthorization(toks[0]))
	_, err = w.anon().Send(ctx, auth, envelope(t, a, b, []byte("first contact")))
	ok(t, err)
	_, err = w.anon().Send(ctx, auth, envelope(t, a, b, []byte("again")))
	wantStatus(t, err, http.StatusForbidden)

	// Device quota: 65 + 6 > 70; the refused request issues nothing.
	_, err = a.c.IssueTokens(ctx, issuer.Public(), 6)
	wantStatus(t, err, http.StatusTooManyRequests)
	var ae *relay.APIError
	if !errors.As(err, &ae) || ae.RetryAfter <= 0 {
		t.Fatalf("429 without Retry-After: %v", err)
	}
	_, err = a.c.IssueTokens(ctx, issuer.Public(), 5)
	ok(t, err)
	// Tenant cap: 70 issued, b gets 30 more at most.
	_, err = b.c.IssueTokens(ctx, issuer.Public(), 31)
	wantStatus(t, err, http.StatusTooManyRequests)
	_, err = b.c.IssueTokens(ctx, issuer.Public(), 30)
	ok(t, err)
	_, err = c.c.IssueTokens(ctx, issuer.Public(), 1)
	wantStatus(t, err, http.StatusTooManyRequests)
}

// TestTokenIssuanceRefusals: no session, a session of another purpose, a
// tenant without an issuer, requests for another key, and a relay that
// signs under a key other than the one the device verified.
func TestTokenIssuanceRefusals(t *testing.T) {
	ctx := context.Background()
	w, issuer := issuerWorld(t, relay.IssuanceLimits{PerDevicePerDay: 10})
	a := w.newDevice(tenantA, 0, 0)
	x := w.newDevice(tenantB, 0, 0)
	req, _ := must2(deliverytoken.RequestTokens(issuer.Public(), tenantA, 1))

	if code := w.call(http.MethodPost, "/relay/v1/tokens/issue", "", req); code != http.StatusUnauthorized {
		t.Errorf("no session: %d", code)
	}
	if code := w.call(http.MethodPost, "/relay/v1/tokens/issue", w.session(a, deviceauth.PurposeMailbox), req); code != http.StatusForbidden {
		t.Errorf("mailbox session: %d", code)
	}
	sess := w.session(a, deviceauth.PurposeTokenIssuance)
	for name, body := range map[string][]byte{
		"empty": nil, "truncated": req[:len(req)-1], "trailing": append(bytes.Clone(req), 0),
		"too large": make([]byte, relay.MaxIssuanceRequest+1),
	} {
		if code := w.call(http.MethodPost, "/relay/v1/tokens/issue", sess, body); code != http.StatusBadRequest && code != http.StatusRequestEntityTooLarge {
			t.Errorf("%s: %d", name, code)
		}
	}
	// Another tenant has no issuer here.
	_, err := x.c.IssueTokens(ctx, issuer.Public(), 1)
	wantStatus(t, err, http.StatusNotFound)
	_, err = x.c.IssuerKey(ctx)
	wantStatus(t, err, http.StatusNotFound)

	// Requests blinded under another key: refused before anything is
	// signed, and the quota is refunded.
	other := must(deliverytoken.GenerateIssuerKey())
	for other.Public().KeyID()[31] == issuer.Public().KeyID()[31] {
		other = must(deliverytoken.GenerateIssuerKey())
	}
	_, err = a.c.IssueTokens(ctx, other.Public(), 10)
	wantStatus(t, err, http.StatusBadRequest)
	toks, err := a.c.IssueTokens(ctx, issuer.Public(), 10)
	ok(t, err)
	if len(toks) != 10 {
		t.Fatalf("%d tokens after a refused request", len(toks))
	}

	// A relay that signs under a key of its own cannot hand the device
	// usable tokens: Finalize checks them under the key the device
	// verified. The blinded messages are reduced modulo the rogue key's
	// modulus, which BlindSign requires and which is smaller than the
	// issuer's about half of the time; the handler answers 500 on any
	// failure (t.Fatal must not run on its goroutine), which the check
	// below reports.
	rogue := must(deliverytoken.GenerateIssuerKey())
	rogueN := must(x509.ParsePKCS8PrivateKey(must(rogue.MarshalPKCS8()))).(*rsa.PrivateKey).N
	h := w.relay.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/relay/v1/tokens/issue" {
			h.ServeHTTP(rw, req)
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(rw, err.Error(), http.StatusInternalServerError)
			return
		}
		// TokenRequest{uint16 type; uint8 truncated_key_id; blinded_msg[256]}
		// after the 4-byte TokenIssuanceRequest header.
		for i := 4; i+259 <= len(body); i += 259 {
			body[i+2] = rogue.Public().KeyID()[31]
			m := new(big.Int).SetBytes(body[i+3 : i+259])
			m.Mod(m, rogueN).FillBytes(body[i+3 : i+259])
		}
		resp, _, err := rogue.Issue(body)
		if err != nil {
			http.Error(rw, err.Error(), http.StatusInternalServerError)
			return
		}
		rw.Write(resp)
	}))
	defer srv.Close()
	rc := w.client(a)
	rc.BaseURL = srv.URL
	_, err = rc.IssueTokens(ctx, issuer.Public(), 2)
	if !errors.Is(err, deliverytoken.ErrWrongKey) {
		t.Fatalf("tokens of a rogue key: %v", err)
	}
}

func must2[A, B any](a A, b B, err error) (A, B) {
	if err != nil {
		panic(err)
	}
	return a, b
}

// TestIssuerKeyFromPolicy: the key comes from the tenant's policy bundle.
func TestIssuerKeyFromPolicy(t *testing.T) {
	k := must(deliverytoken.GenerateIssuerKey())
	p := &org.PolicyBundle{PolicyID: relay.IssuerPolicyID, Entries: []org.PolicyEntry{{Key: relay.IssuerPolicyKey, Value: k.Public().Bytes()}}}
	got, err := relay.IssuerKeyFromPolicy(p)
	ok(t, err)
	if got.KeyID() != k.Public().KeyID() {
		t.Fatal("wrong key")
	}
	for name, q := range map[string]*org.PolicyBundle{
		"nil":       nil,
		"other id":  {PolicyID: "dlp", Entries: p.Entries},
		"no entry":  {PolicyID: relay.IssuerPolicyID},
		"malformed": {PolicyID: relay.IssuerPolicyID, Entries: []org.PolicyEntry{{Key: relay.IssuerPolicyKey, Value: []byte("x")}}},
	} {
		if _, err := relay.IssuerKeyFromPolicy(q); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
