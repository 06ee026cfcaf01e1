package client_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/moat-im/moat/client"
	"github.com/moat-im/moat/client/clienttest"
)

// sendCounter counts a client's single and batch send requests; with
// noBatch set it answers the batch endpoint 404, as a relay without it
// does.
type sendCounter struct {
	mu            sync.Mutex
	single, batch int
	noBatch       bool
}

func (s *sendCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	s.mu.Lock()
	switch r.URL.Path {
	case "/relay/v1/send":
		s.single++
	case "/relay/v1/send-batch":
		s.batch++
		if s.noBatch {
			s.mu.Unlock()
			if r.Body != nil {
				r.Body.Close()
			}
			return &http.Response{StatusCode: http.StatusNotFound, Status: "404 Not Found", Request: r,
				Header: http.Header{}, Body: io.NopCloser(strings.NewReader("404 page not found"))}, nil
		}
	}
	s.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (s *sendCounter) counts() (int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.single, s.batch
}

// TestSendBatchesFanOut: a message to a user with two devices leaves in
// one batch request (docs/spec/api.md §Batch send), the copy for the
// sender's other device in a request of its own, and every device gets
// the message; against a relay without the batch endpoint the client
// falls back to single sends and drops nothing.
func TestSendBatchesFanOut(t *testing.T) {
	for _, noBatch := range []bool{false, true} {
		s := clienttest.New(t)
		ctx := context.Background()
		alice, bob := s.AddUser("Alice"), s.AddUser("Bob")
		sc := &sendCounter{noBatch: noBatch}
		a1 := enrol(t, s, alice, nil, func(c *client.Config) { c.HTTP = &http.Client{Transport: sc} })
		b1 := enrol(t, s, bob, nil)
		b2 := enrol(t, s, bob, b1)
		a2 := enrol(t, s, alice, a1)
		s.Publish()
		single0, batch0 := sc.counts()
		_, err := a1.SendText(ctx, bob, "to both of Bob's devices")
		ok(t, err)
		single, batch := sc.counts()
		single, batch = single-single0, batch-batch0
		if noBatch {
			if batch != 1 || single != 3 {
				t.Errorf("without the batch endpoint: %d batch requests, %d single sends; want 1 refused, then 3 single sends", batch, single)
			}
		} else if batch != 1 || single != 1 {
			t.Errorf("%d batch requests, %d single sends; want one batch (Bob's devices) and one single send (Alice's other device)", batch, single)
		}
		syncAll(t, b1, b2, a2)
		for _, d := range []*device{b1, b2} {
			if h := history(t, d, alice); len(h) != 1 || h[0].Text != "to both of Bob's devices" {
				t.Errorf("noBatch %v: Bob's device has %+v", noBatch, h)
			}
		}
		if h := history(t, a2, bob); len(h) != 1 || h[0].Text != "to both of Bob's devices" {
			t.Errorf("noBatch %v: Alice's other device has %+v", noBatch, h)
		}
	}
}
