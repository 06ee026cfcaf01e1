package client_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/moat-im/moat/client"
	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/kt"
)

// lookupRecorder records, for every directory lookup, whether the client
// said it holds the checkpoint's last entry and how long the inclusion
// proof of the answer was.
type lookupRecorder struct {
	mu        sync.Mutex
	held      []bool
	inclusion []int
	anchored  []int // the anchored proof's length, -2 if not anchored
	size      []int
}

func (l *lookupRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil || !strings.Contains(r.URL.Path, "/lookup/") || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	n, want := -1, -2
	if lr, err := kt.ParseLookupResponse(b); err == nil {
		n = len(lr.Proof.Inclusion)
		// A new, larger checkpoint than the client's: the anchored
		// proof (directory.md §Anchored inclusion).
		if base, size := lr.Checkpoint.BaseSize, lr.Proof.Entry.Epoch+1; base > 0 && base < size {
			want = tlog.AnchoredInclusionLen(base, size)
		}
	}
	l.mu.Lock()
	l.held = append(l.held, r.URL.Query().Has("entry"))
	l.inclusion = append(l.inclusion, n)
	l.anchored = append(l.anchored, want)
	l.size = append(l.size, len(b))
	l.mu.Unlock()
	return resp, nil
}

// TestHeldEntryLookups: the SDK's first lookup after a new checkpoint
// gets the anchored inclusion proof (docs/spec/directory.md §Anchored
// inclusion); once it has verified it, its next lookups at that
// checkpoint say so and get no log inclusion proof (§Held entry), and
// still verify.
func TestHeldEntryLookups(t *testing.T) {
	w := newWorld(t)
	for range 3 { // a tree whose inclusion proofs are not empty
		w.s.Publish()
	}
	rec := &lookupRecorder{}
	c := enrol(t, w.s, w.s.AddUser("Carol"), nil, func(cfg *client.Config) { cfg.HTTP = &http.Client{Transport: rec} })
	w.s.Publish()
	ctx := context.Background()
	rec.mu.Lock()
	rec.held, rec.inclusion, rec.anchored = nil, nil, nil
	rec.mu.Unlock()
	for _, u := range []client.UserID{w.alice, w.bob, w.alice} {
		ct, err := c.Contact(ctx, u)
		ok(t, err)
		if len(ct.Devices) == 0 {
			t.Fatalf("contact %s has no devices", u)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.held) < 3 {
		t.Fatalf("%d lookups recorded, want at least 3", len(rec.held))
	}
	t.Logf("lookup answers: %v bytes; inclusion proofs: %v hashes", rec.size, rec.inclusion)
	if rec.anchored[0] < 0 || rec.inclusion[0] != rec.anchored[0] {
		t.Fatalf("first lookup after a new checkpoint: inclusion proof of %d hashes, want the anchored proof (%d)", rec.inclusion[0], rec.anchored[0])
	}
	for i := 1; i < len(rec.held); i++ {
		if !rec.held[i] || rec.inclusion[i] != 0 {
			t.Fatalf("lookup %d: held %v, inclusion proof of %d hashes; want held and none", i, rec.held[i], rec.inclusion[i])
		}
	}
}

// TestFirstLookupAfterEnrolmentSDK: the enrolment answer carries the
// checkpoint's last entry (directory-api.md §Enrolment), which Enrol keeps
// in the client state, so that the SDK's very first lookups, while the
// enrolment's checkpoint is still the latest, say so and get no log
// inclusion proof (directory.md §Held entry), and verify.
func TestFirstLookupAfterEnrolmentSDK(t *testing.T) {
	w := newWorld(t)
	for range 3 { // a tree whose inclusion proofs are not empty
		w.s.Publish()
	}
	rec := &lookupRecorder{}
	c := enrol(t, w.s, w.s.AddUser("Carol"), nil, func(cfg *client.Config) { cfg.HTTP = &http.Client{Transport: rec} })
	ctx := context.Background()
	rec.mu.Lock()
	rec.held, rec.inclusion, rec.anchored = nil, nil, nil
	rec.mu.Unlock()
	for _, u := range []client.UserID{w.alice, w.bob} {
		ct, err := c.Contact(ctx, u)
		ok(t, err)
		if len(ct.Devices) == 0 {
			t.Fatalf("contact %s has no devices", u)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.held) < 2 {
		t.Fatalf("%d lookups recorded, want at least 2", len(rec.held))
	}
	t.Logf("lookup answers: %v bytes; inclusion proofs: %v hashes", rec.size, rec.inclusion)
	for i := range rec.held {
		if !rec.held[i] || rec.inclusion[i] != 0 {
			t.Fatalf("lookup %d after enrolment: held %v, inclusion proof of %d hashes; want held and none", i, rec.held[i], rec.inclusion[i])
		}
	}
}
