package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/moat-im/moat/client"
	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/kt"
)

// tamperer rewrites the directory's answers to requests whose path
// contains match, once set.
type tamperer struct {
	mu    sync.Mutex
	match string
	edit  func([]byte) []byte
}

func (tp *tamperer) set(match string, edit func([]byte) []byte) {
	tp.mu.Lock()
	tp.match, tp.edit = match, edit
	tp.mu.Unlock()
}

func (tp *tamperer) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	tp.mu.Lock()
	match, edit := tp.match, tp.edit
	tp.mu.Unlock()
	if err != nil || match == "" || !strings.Contains(r.URL.Path, match) || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	b = edit(b)
	resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
	resp.Header.Del("Content-Length")
	return resp, nil
}

// TestT26OrgDirectoryForged (adversarial case T26, for the org chart and
// held-entry lookups): a directory answer for the org chart that was
// altered does not verify, so OrgDirectory and FindUser fail and no name
// resolves; a lookup whose log inclusion proof was stripped is refused by
// a device that does not hold the checkpoint's entry (a restarted one),
// and the contact is not used.
func TestT26OrgDirectoryForged(t *testing.T) {
	w := newWorld(t)
	for range 3 { // a tree whose inclusion proofs are not empty
		w.s.Publish()
	}
	ctx := context.Background()
	tp := &tamperer{}
	c := enrol(t, w.s, w.s.AddUser("Carol"), nil, func(cfg *client.Config) { cfg.HTTP = &http.Client{Transport: tp} })
	w.s.Publish()
	d, err := c.OrgDirectory(ctx, false)
	ok(t, err)
	if len(d.Users) != 3 {
		t.Fatalf("untampered org directory: %+v", d.Users)
	}

	for _, at := range []func(n int) int{func(n int) int { return n / 3 }, func(n int) int { return n / 2 }, func(n int) int { return n - 40 }} {
		tp.set("/org/", func(b []byte) []byte {
			b = bytes.Clone(b)
			b[at(len(b))] ^= 0x01
			return b
		})
		if d, err := c.OrgDirectory(ctx, false); err == nil {
			t.Fatalf("a tampered org chart verified: %+v", d.Users)
		}
		if u, err := c.FindUser(ctx, "Alice Liddell"); err == nil {
			t.Fatalf("a name resolved through a tampered org chart: %+v", u)
		}
	}

	// A restarted device (which holds its entry, directory.md §Held
	// entry, through its state) refuses a tampered inclusion proof: one
	// cut short, or a hash added where the held entry needs none.
	tp.set("", nil)
	c.Close()
	c2, err := client.Open(ctx, c.cfg, c.st)
	ok(t, err)
	defer c2.Close()
	stripped := false
	tp.set("/lookup/", func(b []byte) []byte {
		r, err := kt.ParseLookupResponse(b)
		if err != nil {
			return b
		}
		if n := len(r.Proof.Inclusion); n > 0 {
			r.Proof.Inclusion = r.Proof.Inclusion[:n-1]
		} else {
			r.Proof.Inclusion = []tlog.Hash{{1}}
		}
		stripped = true
		out, err := r.Marshal()
		if err != nil {
			return b
		}
		return out
	})
	_, err = c2.Contact(ctx, w.bob)
	if !stripped {
		t.Fatal("no inclusion proof to strip: the test exercises nothing")
	}
	var ue *client.UnverifiedContactError
	if !errors.As(err, &ue) {
		t.Fatalf("lookup with a tampered inclusion proof after a restart: %v, want *UnverifiedContactError", err)
	}
	tp.set("", nil)
	ct, err := c2.Contact(ctx, w.bob)
	ok(t, err)
	if len(ct.Devices) != 1 {
		t.Fatalf("Bob after the tampering stopped: %+v", ct)
	}
}
