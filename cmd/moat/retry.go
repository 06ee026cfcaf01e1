package main

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Retries of a request the server answered 429 Too Many Requests: a CLI
// runs one process per command, each authenticating to the relay afresh,
// so a quick series of commands (a script, or several users on one
// machine, who share the loopback address) meets the relay's per-address
// challenge limit. Every request the SDK makes is safe to repeat after a
// 429, which the server answers before acting on it (sends are idempotent
// on their message id anyway).
const (
	maxRetries    = 5
	maxRetryAfter = 10 * time.Second
)

// retryTransport repeats a request answered 429 with a Retry-After of at
// most maxRetryAfter, up to maxRetries times, saying so on log.
type retryTransport struct {
	next http.RoundTripper
	log  io.Writer
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		resp, err := t.next.RoundTrip(req)
		if err != nil || resp.StatusCode != http.StatusTooManyRequests || attempt == maxRetries {
			return resp, err
		}
		secs, perr := strconv.Atoi(resp.Header.Get("Retry-After"))
		wait := time.Duration(secs) * time.Second
		if perr != nil || secs < 0 || wait > maxRetryAfter || (req.Body != nil && req.GetBody == nil) {
			return resp, nil
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
		fmt.Fprintf(t.log, "moat: the server is rate limiting this address; retrying in %v\n", wait)
		select {
		case <-req.Context().Done():
			return nil, req.Context().Err()
		case <-time.After(wait):
		}
	}
}
