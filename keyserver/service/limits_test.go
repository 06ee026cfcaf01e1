package service_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/service"
)

// TestRateLimits: past the per-address burst, /v1 requests get 429 with
// Retry-After; so do requests past a tenant's burst. Health endpoints are
// not limited.
func TestRateLimits(t *testing.T) {
	t.Run("per address", func(t *testing.T) {
		w := newWorld(t, worldOptions{seed: 30, limits: service.Limits{PerIP: service.Rate{PerSecond: 0.001, Burst: 5}}})
		url := w.srv.URL + "/v1/" + w.tenant.String() + "/trust-bundle"
		for i := range 5 {
			if code, _ := rawRequest(t, must(http.NewRequest(http.MethodGet, url, nil))); code != http.StatusOK {
				t.Fatalf("request %d: %d", i, code)
			}
		}
		resp := must(http.Get(url))
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("status %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		if code, _ := rawRequest(t, must(http.NewRequest(http.MethodGet, w.srv.URL+"/healthz", nil))); code != http.StatusOK {
			t.Fatalf("healthz: %d", code)
		}
		metrics := get(t, w.srv.URL+"/metrics")
		if !strings.Contains(metrics, `moat_directory_rate_limited_total{scope="ip"} 1`) {
			t.Fatal("rate limit not counted")
		}
	})
	t.Run("per tenant", func(t *testing.T) {
		w := newWorld(t, worldOptions{seed: 31, limits: service.Limits{PerTenant: service.Rate{PerSecond: 0.001, Burst: 3}}})
		url := w.srv.URL + "/v1/" + w.tenant.String() + "/checkpoint"
		codes := []int{}
		for range 4 {
			code, _ := rawRequest(t, must(http.NewRequest(http.MethodGet, url, nil)))
			codes = append(codes, code)
		}
		if codes[2] != http.StatusOK || codes[3] != http.StatusTooManyRequests {
			t.Fatalf("codes %v", codes)
		}
	})
}

func get(t testing.TB, url string) string {
	t.Helper()
	resp := must(http.Get(url))
	defer resp.Body.Close()
	return string(must(io.ReadAll(resp.Body)))
}

// TestBodyLimits: an oversize enrolment or admin body is refused with 413,
// whether its Content-Length says so or not (chunked); a GET with a body
// too.
func TestBodyLimits(t *testing.T) {
	w := newWorld(t, worldOptions{seed: 32, limits: service.Limits{MaxBody: 4096}})
	big := bytes.Repeat([]byte("a"), 8192)
	base := w.srv.URL + "/v1/" + w.tenant.String()
	for _, path := range []string{"/enrol", "/admin/add-user"} {
		req := must(http.NewRequest(http.MethodPost, base+path, bytes.NewReader(big)))
		if code, _ := rawRequest(t, req); code != http.StatusRequestEntityTooLarge {
			t.Errorf("%s with Content-Length: %d", path, code)
		}
		req = must(http.NewRequest(http.MethodPost, base+path, io.MultiReader(bytes.NewReader(big))))
		req.ContentLength = -1 // chunked
		if code, _ := rawRequest(t, req); code != http.StatusRequestEntityTooLarge {
			t.Errorf("%s chunked: %d", path, code)
		}
	}
	req := must(http.NewRequest(http.MethodGet, base+"/lookup/"+strings.Repeat("ab", 16), bytes.NewReader(big)))
	if code, _ := rawRequest(t, req); code != http.StatusRequestEntityTooLarge {
		t.Errorf("GET with a body: %d", code)
	}
	// Malformed enrolment bodies are 400.
	req = must(http.NewRequest(http.MethodPost, base+"/enrol", strings.NewReader(`{"code":"x","extra":1}`)))
	if code, _ := rawRequest(t, req); code != http.StatusBadRequest {
		t.Errorf("unknown field: %d", code)
	}
}

// TestHealthReadyMetricsAndLogs: /healthz, /readyz, /metrics; and the
// access log names the route pattern and tenant, never a user id, device
// id or enrolment code.
func TestHealthReadyMetricsAndLogs(t *testing.T) {
	w := newWorld(t, worldOptions{seed: 33})
	alice := w.addUser("Alice")
	code := w.issueCode(alice)
	a1 := w.mustEnrol(alice)
	w.publish()
	must(w.lookup(a1, alice))
	must(a1.api.History(t.Context(), alice, 0, 0))

	if s := get(t, w.srv.URL+"/healthz"); s != "ok\n" {
		t.Fatalf("healthz %q", s)
	}
	if s := get(t, w.srv.URL+"/readyz"); s != "ready\n" {
		t.Fatalf("readyz %q", s)
	}
	m := get(t, w.srv.URL+"/metrics")
	for _, want := range []string{
		`moat_directory_http_requests_total{code="200",route="GET /v1/{tenant}/lookup/{user}"} 1`,
		`moat_directory_epochs_total{tenant="` + w.tenant.String() + `"} 2`,
		`moat_directory_served_size{tenant="` + w.tenant.String() + `"} 2`,
		`moat_directory_witness_requests_total{result="ok",tenant="` + w.tenant.String() + `",witness=`,
		`moat_directory_enrolments_total{result="ok",tenant="` + w.tenant.String() + `"} 1`,
		"go_goroutines",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	logs := w.logs.String()
	if !strings.Contains(logs, `route="GET /v1/{tenant}/lookup/{user}" tenant=`+w.tenant.String()) {
		t.Errorf("access log lacks the lookup route:\n%s", logs)
	}
	for _, secret := range []string{alice.String(), a1.cert.Device.String(), code.Text(), org.EnrolmentCodePrefix, org.EnrolmentCodePrefixV1} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q", secret)
		}
	}
}
