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
// tenant of the same service is served. Both are counted in the metrics.
// (The directory has no per-device limit: a device's flood is bounded by
// its address and its tenant.)
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
}
