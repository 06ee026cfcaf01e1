package client_test

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/moat-im/moat/client"
)

// authCounter counts the relay's challenge requests by purpose; with
// refuseAll it answers a challenge for purpose "all" 400, as a relay
// from before purpose "all" would.
type authCounter struct {
	refuseAll bool

	mu         sync.Mutex
	challenges map[string]int
}

func (a *authCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == "/relay/v1/auth/challenge" {
		p := r.URL.Query().Get("purpose")
		a.mu.Lock()
		a.challenges[p]++
		a.mu.Unlock()
		if a.refuseAll && p == "all" {
			return &http.Response{StatusCode: 400, Status: "400 Bad Request", Header: http.Header{},
				Body: http.NoBody, Request: r}, nil
		}
	}
	return http.DefaultTransport.RoundTrip(r)
}

func (a *authCounter) total(skip string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for p, k := range a.challenges {
		if p != skip {
			n += k
		}
	}
	return n
}

// firstMessageChallenges restarts Alice's device (a new process: no
// relay session) and counts the challenge round trips of her first
// message to Bob, a contact she has no session with.
func firstMessageChallenges(t *testing.T, refuseAll bool) *authCounter {
	t.Helper()
	ctx := context.Background()
	_, _, bob, a, _ := twoUsers(t)
	ok(t, a.Close())
	cnt := &authCounter{refuseAll: refuseAll, challenges: map[string]int{}}
	cfg := a.cfg
	cfg.HTTP = &http.Client{Transport: cnt}
	sameTransport(&cfg)
	c, err := client.Open(ctx, cfg, a.st)
	ok(t, err)
	defer c.Close()
	_, err = c.SendText(ctx, bob, "hello, new contact")
	ok(t, err)
	return cnt
}

// TestFirstMessageOneAuthentication: a first message to a new contact
// (verifier registration, the contact's bundle, an anonymous token, after
// a restart of the sender) costs one device authentication with sessions
// of purpose "all" (docs/spec/api.md §Sessions), against one per purpose
// with a relay that refuses "all", where the client falls back to
// per-purpose sessions.
func TestFirstMessageOneAuthentication(t *testing.T) {
	before := firstMessageChallenges(t, true)
	after := firstMessageChallenges(t, false)
	t.Logf("challenge round trips of a first message: per purpose %v (%d after the refused \"all\"), one session %v",
		before.challenges, before.total("all"), after.challenges)
	if n := after.total(""); n != 1 || after.challenges["all"] != 1 {
		t.Fatalf("with purpose all: %v, want one challenge", after.challenges)
	}
	if before.challenges["all"] != 1 {
		t.Fatalf("the fallback asked for purpose all %d times, want once", before.challenges["all"])
	}
	if n := before.total("all"); n < 3 {
		t.Fatalf("per purpose: %d challenges (%v), want one per purpose used (at least 3)", n, before.challenges)
	}
}
