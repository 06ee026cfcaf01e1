package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestRetryTransport(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		switch {
		case r.URL.Path == "/far":
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(http.StatusTooManyRequests)
		case r.URL.Path == "/none":
			w.WriteHeader(http.StatusTooManyRequests)
		case r.URL.Path == "/always":
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
		case n < 3:
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
		default:
			w.Write(body)
		}
	}))
	defer srv.Close()
	var log bytes.Buffer
	c := &http.Client{Transport: &retryTransport{next: http.DefaultTransport, log: &log}}

	resp, err := c.Post(srv.URL+"/ok", "text/plain", strings.NewReader("the body"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(b) != "the body" || calls.Load() != 3 {
		t.Fatalf("status %d body %q after %d calls; want 200, the body resent, 3 calls", resp.StatusCode, b, calls.Load())
	}
	if got := strings.Count(log.String(), "retrying"); got != 2 {
		t.Errorf("logged %d retries, want 2:\n%s", got, log.String())
	}

	for path, want := range map[string]int32{"/far": 1, "/none": 1, "/always": 1 + maxRetries} {
		calls.Store(0)
		resp, err := c.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests || calls.Load() != want {
			t.Errorf("%s: status %d after %d calls, want 429 after %d", path, resp.StatusCode, calls.Load(), want)
		}
	}
}
