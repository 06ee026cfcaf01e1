package client_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-im/moat/client"
)

// prekeyCounter counts the device's prekey-status requests to the relay
// and its device authentications.
type prekeyCounter struct {
	mu            sync.Mutex
	status, auths int
}

func (p *prekeyCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	p.mu.Lock()
	if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/prekeys") {
		p.status++
	}
	if r.URL.Path == "/relay/v1/auth/challenge" {
		p.auths++
	}
	p.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (p *prekeyCounter) get() (status, auths int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status, p.auths
}

// TestPrekeyCheckOnlyWhenDue: Sync asks the relay for its one-time prekey
// count (a prekeys session) only when it may be low: not right after
// enrolment uploaded them, but after an initial message consumed one and
// once prekeyCheckEvery has passed; a
// restarted client (a CLI command) that syncs with nothing new
// authenticates once, for its mailbox.
func TestPrekeyCheckOnlyWhenDue(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	pc, clk := &prekeyCounter{}, &clock{}
	carol := w.s.AddUser("Carol")
	c := enrol(t, w.s, carol, nil, func(cfg *client.Config) {
		cfg.HTTP = &http.Client{Transport: pc}
		cfg.Now = clk.Now
	})
	w.s.Publish()
	step := func(name string, wantStatus int) {
		t.Helper()
		before, _ := pc.get()
		ok(t, c.Sync(ctx))
		if after, _ := pc.get(); after-before != wantStatus {
			t.Fatalf("%s: %d prekey-status requests, want %d", name, after-before, wantStatus)
		}
	}
	// Enrolment uploaded the full set: the first syncs need not ask.
	step("first sync", 0)
	step("second sync", 0)

	// A restarted client with nothing new: one authentication (mailbox).
	c.Close()
	c2, err := client.Open(ctx, c.cfg, c.st)
	ok(t, err)
	defer c2.Close()
	c = &device{c2, c.st, c.cfg}
	_, authsBefore := pc.get()
	step("sync after a restart", 0)
	if _, auths := pc.get(); auths-authsBefore != 1 {
		t.Fatalf("sync after a restart: %d authentications, want 1", auths-authsBefore)
	}

	// Alice starts a session with Carol: her initial message consumes
	// one-time prekeys, which the same sync notices after processing it.
	_, err = w.a1.SendText(ctx, carol, "hello")
	ok(t, err)
	step("sync that receives an initial message", 1)
	step("sync after prekeys were replenished", 0)
	step("and again", 0)
	clk.Advance(11 * time.Minute)
	step("sync once the interval has passed", 1)
}
