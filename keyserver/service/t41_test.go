package service_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/service"
)

// TestT41LookupFloods: a flood of lookups from one network address is
// answered 429 (Retry-After: TestRateLimits) while a device on another address is
// served; a flood of lookups to one tenant is answered 429 while another
// tenant of the same service is served; past a device's burst, its signed
// reads are answered 429 (with Retry-After) while another device of the
// tenant is served, and only requests the device signed count against it.
// All are counted in the metrics.
func TestT41LookupFloods(t *testing.T) {
	ctx := context.Background()
	t.Run("per address", func(t *testing.T) {
		w := newWorld(t, worldOptions{seed: 41, limits: service.Limits{PerIP: service.Rate{PerSecond: 0.001, Burst: 40}}})
		alice, bob := w.addUser("Alice"), w.addUser("Bob")
		a1, b1 := w.mustEnrol(alice), w.mustEnrol(bob)
		w.publish()
		// b1 speaks from 127.0.0.2, another loopback address (Linux routes
		// all of 127.0.0.0/8 to loopback).
		b1.api.HTTP = &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
			LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)},
		}).DialContext}}
		var err error
		served := 0
		for range 100 {
			if _, err = a1.api.Lookup(ctx, bob, 0); err != nil {
				break
			}
			served++
		}
		wantStatus(t, err, http.StatusTooManyRequests)
		if served == 0 {
			t.Fatal("no lookup served before the limit")
		}
		must(w.lookup(b1, alice))
		_, err = a1.api.Lookup(ctx, bob, 0)
		wantStatus(t, err, http.StatusTooManyRequests)
		if m := get(t, w.srv.URL+"/metrics"); !strings.Contains(m, `moat_directory_rate_limited_total{scope="ip"} 2`) {
			t.Fatal("not counted")
		}
	})
	t.Run("per tenant", func(t *testing.T) {
		// Two tenants in one service (as in TestMultipleTenants).
		w := newWorld(t, worldOptions{seed: 42})
		w2 := newWorld(t, worldOptions{seed: 43})
		w2.witnesses = w.witnesses
		for _, tw := range w.witnesses {
			tw.w = must(tlog.NewWitness(tlog.WitnessConfig{Keys: tw.keys, Store: tlog.NewMemoryWitnessStore(),
				Logs: map[string]*keys.LogPublicKey{w.origin: w.keys.Log.Public(), w2.origin: w2.keys.Log.Public()}}))
		}
		w.srv.Close()
		w.st, w2.st = w.openStore(), w2.openStore()
		svc := must(service.New(ctx, service.Options{
			Tenants: []service.TenantConfig{w.tenantConfig(), w2.tenantConfig()}, Now: w.clk.Now, Logger: discardLogger(),
			Limits: service.Limits{PerIP: service.Rate{PerSecond: 1e6, Burst: 1e6}, PerTenant: service.Rate{PerSecond: 0.001, Burst: 40}},
		}))
		ok(t, svc.Cosign(ctx))
		w.svc, w2.svc = svc, svc
		w.srv = newServer(t, svc)
		w2.srv = w.srv
		w2.clk = w.clk

		alice, zoe := w.addUser("Alice"), w2.addUser("Zoe")
		a1, z1 := w.mustEnrol(alice), w2.mustEnrol(zoe)
		w.publish()
		w2.publish()
		var err error
		served := 0
		for range 100 {
			if _, err = a1.api.Lookup(ctx, alice, 0); err != nil {
				break
			}
			served++
		}
		wantStatus(t, err, http.StatusTooManyRequests)
		if served == 0 {
			t.Fatal("no lookup served before the limit")
		}
		must(w2.lookup(z1, zoe))
		if m := get(t, w.srv.URL+"/metrics"); !strings.Contains(m, `moat_directory_rate_limited_total{scope="tenant"} 1`) {
			t.Fatal("not counted")
		}
	})
	t.Run("per device", func(t *testing.T) {
		w := newWorld(t, worldOptions{seed: 44, limits: service.Limits{PerDevice: service.Rate{PerSecond: 0.001, Burst: 3}}})
		alice, bob := w.addUser("alice"), w.addUser("bob")
		da, db := w.mustEnrol(alice), w.mustEnrol(bob)
		w.publish()
		// Unsigned requests: refused before the limit.
		url := w.srv.URL + "/v1/" + w.tenant.String() + "/lookup/" + bob.String()
		for range 5 {
			if code, _ := rawRequest(t, must(http.NewRequest(http.MethodGet, url, nil))); code != http.StatusUnauthorized {
				t.Fatalf("unsigned lookup: %d", code)
			}
		}
		for i := range 3 {
			if _, err := w.lookup(da, bob); err != nil {
				t.Fatalf("lookup %d: %v", i, err)
			}
		}
		_, err := w.lookup(da, bob)
		wantStatus(t, err, http.StatusTooManyRequests)
		_, err = da.api.History(context.Background(), bob, 0, da.kt.TreeSize())
		wantStatus(t, err, http.StatusTooManyRequests)
		if _, err := w.lookup(db, alice); err != nil {
			t.Fatalf("another device: %v", err)
		}
		// Retry-After on the raw answer.
		req := must(http.NewRequest(http.MethodGet, url, nil))
		ok(t, service.SignDeviceRequest(req, w.tenant, alice, da.cert.Device, da.id.Signing, nil, w.clk.Now(), w.rnd))
		resp := must(http.DefaultClient.Do(req))
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("status %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		if m := get(t, w.srv.URL+"/metrics"); !strings.Contains(m, `moat_directory_rate_limited_total{scope="device"} 3`) {
			t.Fatal("device rate limit not counted")
		}
	})
}
