package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/service"
)

// TestEnrolmentBundleSwappedOverHTTP: a network attacker in front of the
// directory (or an impostor directory the device is pointed at) answers a
// device's enrolment with the trust bundle of another directory for the
// same tenant id, which certified the device's own keys and cosigns its
// own checkpoints. The device refuses the answer: the bundle does not
// match the fingerprint in its enrolment code (docs/spec/org.md §Trust
// bootstrap). The genuine answer, which the attacker saw, is accepted.
func TestEnrolmentBundleSwappedOverHTTP(t *testing.T) {
	ctx := context.Background()
	real := newWorld(t, worldOptions{seed: 60})
	evil := newWorld(t, worldOptions{seed: 61, tenant: real.tenant})
	alice, evilAlice := real.addUser("Alice"), evil.addUser("Alice")
	real.publish()
	evil.publish()
	d := real.newDeviceKeys(alice)
	code := real.issueCode(alice)
	req := must(org.NewEnrolmentRequest(code, d.id, d.mls))

	// The impostor's answer for the same keys.
	evilCode := evil.issueCode(evilAlice)
	evilReq := must(org.NewEnrolmentRequest(evilCode, d.id, d.mls))
	evilRes := must(evil.api().Enrol(ctx, evilCode, evilReq))

	// The attacker forwards the enrolment to the directory and swaps the
	// answer's bundle, certificate and checkpoint for the impostor's.
	var mu sync.Mutex
	var genuine []byte
	target := must(url.Parse(real.srv.URL))
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(r *http.Response) error {
		if !strings.HasSuffix(r.Request.URL.Path, "/enrol") || r.StatusCode != http.StatusOK {
			return nil
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		var out service.EnrolResponse
		if err := json.Unmarshal(body, &out); err != nil {
			return err
		}
		mu.Lock()
		genuine = body
		mu.Unlock()
		out.TrustBundle, out.Certificate, out.Consistency = evilRes.TrustBundle, evilRes.Certificate, evilRes.Consistency
		out.User, out.Device = evilRes.User, evilRes.Device
		swapped, err := json.Marshal(&out)
		if err != nil {
			return err
		}
		r.Body = io.NopCloser(bytes.NewReader(swapped))
		r.ContentLength = int64(len(swapped))
		r.Header.Set("Content-Length", strconv.Itoa(len(swapped)))
		return nil
	}
	mitm := httptest.NewServer(proxy)
	defer mitm.Close()

	api := &service.Client{BaseURL: mitm.URL, Tenant: real.tenant, Now: real.clk.Now, Rand: real.rnd}
	res := must(api.Enrol(ctx, code, req))
	if !bytes.Equal(res.TrustBundle, evilRes.TrustBundle) || len(res.Consistency) == 0 {
		t.Fatal("the answer was not swapped")
	}
	c, cert, err := kt.Enrol(code, req, res.Enrolment(), maxAge, 0, real.clk.Now())
	if !errors.Is(err, org.ErrFingerprintMismatch) || c != nil || cert != nil {
		t.Fatalf("swapped answer: got %v", err)
	}

	// The contrast: the impostor's answer is consistent, under the
	// impostor's code; and the genuine answer enrols the device.
	if _, _, err := kt.Enrol(evilCode, evilReq, evilRes.Enrolment(), maxAge, 0, evil.clk.Now()); err != nil {
		t.Fatalf("the impostor's answer under its own code: %v", err)
	}
	var gen service.EnrolResponse
	mu.Lock()
	ok(t, json.Unmarshal(genuine, &gen))
	mu.Unlock()
	c, cert, err = kt.Enrol(code, req, gen.Enrolment(), maxAge, 0, real.clk.Now())
	ok(t, err)
	if cert.User != alice || c.TreeSize() == 0 || !c.Bundle().CA.Equal(real.ten().TrustBundle().CA) {
		t.Fatalf("genuine answer: user %v, size %d", cert.User, c.TreeSize())
	}
}

// TestEnrolmentTenantLockoutOverHTTP: after the tenant's limit of failed
// redemptions within its window (org.Config.TenantFailureLimit, guesses
// spread over codes so that no code locks), every redemption is refused
// with 429 and Retry-After, even of a valid code, which is not spent;
// the count survives a restart (it is in the tenant state); once the
// window has passed the valid code enrols.
func TestEnrolmentTenantLockoutOverHTTP(t *testing.T) {
	const limit = 4
	ctx := context.Background()
	w := newWorld(t, worldOptions{seed: 62, badger: true,
		limits:    service.Limits{Enrol: service.Rate{PerSecond: 1e6, Burst: 1e6}},
		orgConfig: org.Config{TenantFailureLimit: limit, TenantFailureWindow: 10 * time.Minute},
	})
	alice := w.addUser("Alice")
	code := w.issueCode(alice)
	w.publish() // nothing but the guesses changes the state from here on
	d := w.newDeviceKeys(alice)
	req := must(org.NewEnrolmentRequest(code, d.id, d.mls))
	// Guesses at other code ids, each refused as a bad code.
	for i := range limit {
		raw := code.Marshal()
		raw[2+16] ^= byte(i + 1) // the code id
		guess := must(org.ParseEnrolmentCode(raw))
		_, err := w.api().Enrol(ctx, guess, must(org.NewEnrolmentRequest(guess, d.id, d.mls)))
		wantStatus(t, err, http.StatusForbidden)
	}
	locked := func(when string) {
		t.Helper()
		body := must(json.Marshal(service.EnrolRequest{Code: code.Text(), Request: must(req.Marshal())}))
		resp := must(http.Post(w.srv.URL+"/v1/"+w.tenant.String()+"/enrol", "application/json", bytes.NewReader(body)))
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("%s: status %d, Retry-After %q", when, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
	locked("valid code after the guesses")
	m := get(t, w.srv.URL+"/metrics")
	if !strings.Contains(m, `moat_directory_enrolments_total{result="locked",tenant="`+w.tenant.String()+`"} 1`) ||
		strings.Contains(m, `moat_directory_rate_limited_total{scope="enrol"}`) {
		t.Fatal("the 429 is not the tenant lock")
	}
	// The epoch commits the failure count; a restart keeps the lock.
	w.publish()
	w.restartBadger()
	locked("after a restart")
	// After the window the valid code, unspent, enrols.
	w.clk.Advance(10 * time.Minute)
	w.publish()
	res := must(w.api().Enrol(ctx, code, req))
	if _, _, err := kt.Enrol(code, req, res.Enrolment(), maxAge, 0, w.clk.Now()); err != nil {
		t.Fatal(err)
	}
}
