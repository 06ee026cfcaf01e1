package client_test

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-im/moat/client"
	"github.com/moat-im/moat/client/clienttest"
)

// anonymousRequest reports whether r is one the relay must not link to
// the device: a sealed send, a batch of them, or an attachment download.
func anonymousRequest(r clienttest.Request) bool {
	return r.SendAuthorization || r.Path == "/relay/v1/send-batch" ||
		(r.Method == http.MethodGet && strings.HasPrefix(r.Path, "/relay/v1/attachments/"))
}

// TestSealedSendsOwnConnections: with the SDK's default transports, no
// sealed send, batch send or attachment download travels on a TCP
// connection that also carries an authenticated request (relay session
// or directory), and each opens a connection of its own
// (docs/spec/api.md §Sealed sends).
func TestSealedSendsOwnConnections(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	for _, m := range []string{"one", "two", "three"} {
		_, err := w.a1.SendText(ctx, w.bob, m)
		ok(t, err)
		_, err = w.b1.SendText(ctx, w.alice, m)
		ok(t, err)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "f.bin")
	data := make([]byte, 100<<10)
	rand.Read(data)
	ok(t, os.WriteFile(src, data, 0o600))
	_, err := w.a1.SendFile(ctx, w.bob, src, nil)
	ok(t, err)
	syncAll(t, w.a1, w.a2, w.b1)
	var att *client.Attachment
	for _, r := range history(t, w.b1, w.alice) {
		if r.Attachment != nil {
			att = r.Attachment
		}
	}
	if att == nil {
		t.Fatal("Bob did not receive the file")
	}
	ok(t, w.b1.DownloadAttachment(ctx, att, filepath.Join(dir, "got"), nil))

	reqs := w.s.Requests()
	authed := map[uint64]bool{}
	perConn := map[uint64]int{}
	var anon, sessions int
	for _, r := range reqs {
		if r.Conn == 0 {
			t.Fatalf("request %s %s: no connection recorded", r.Method, r.Path)
		}
		perConn[r.Conn]++
		if r.Authorization {
			authed[r.Conn] = true
		}
		if r.Session {
			sessions++
		}
	}
	for _, r := range reqs {
		if !anonymousRequest(r) {
			continue
		}
		anon++
		if r.Authorization || authed[r.Conn] {
			t.Errorf("%s %s went on connection %d, which carries authenticated requests", r.Method, r.Path, r.Conn)
		}
		if perConn[r.Conn] != 1 {
			t.Errorf("%s %s shares connection %d with %d other requests", r.Method, r.Path, r.Conn, perConn[r.Conn]-1)
		}
	}
	if anon < 7 || sessions == 0 {
		t.Fatalf("%d anonymous and %d session requests: the test saw too little", anon, sessions)
	}
}

// TestAnonymousHTTPConfig: a transport the SDK cannot clone, without an
// AnonymousHTTP, and an AnonymousHTTP that is the HTTP client, are
// refused.
func TestAnonymousHTTPConfig(t *testing.T) {
	s := clienttest.New(t)
	alice := s.AddUser("Alice")
	ctx := context.Background()
	cfg := s.Config()
	cfg.HTTP = &http.Client{Transport: &clienttest.Capture{}}
	if _, err := client.Enrol(ctx, cfg, clienttest.NewStore(), s.IssueCode(alice)); !errors.Is(err, client.ErrAnonymousHTTP) {
		t.Fatalf("custom transport without AnonymousHTTP: %v", err)
	}
	cfg.AnonymousHTTP = cfg.HTTP
	if _, err := client.Enrol(ctx, cfg, clienttest.NewStore(), s.IssueCode(alice)); !errors.Is(err, client.ErrAnonymousHTTP) {
		t.Fatalf("AnonymousHTTP == HTTP: %v", err)
	}
}
