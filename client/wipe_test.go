package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-im/moat/client"
	"github.com/moat-im/moat/client/clienttest"
	"github.com/moat-im/moat/client/localstore"
)

// wipeSwap is a transport that answers GET .../wipe with a body of the
// test's choosing while swap is set.
type wipeSwap struct {
	mu   sync.Mutex
	swap []byte
}

func (s *wipeSwap) set(b []byte) {
	s.mu.Lock()
	s.swap = b
	s.mu.Unlock()
}

func (s *wipeSwap) RoundTrip(r *http.Request) (*http.Response, error) {
	s.mu.Lock()
	b := s.swap
	s.mu.Unlock()
	if b != nil && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/wipe") {
		return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/octet-stream"}},
			Body: io.NopCloser(bytes.NewReader(b)), Request: r}, nil
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestWipeDelivered: an admin revokes a device through the admin API and
// hands the instruction to nobody; the device's next Sync is refused by
// the relay, it fetches its wipe instruction from the directory, verifies
// it under its CA, wipes its store and refuses further use. Before that,
// a forged instruction (signature flipped) and a genuine one for another
// device, served in its place, change nothing.
func TestWipeDelivered(t *testing.T) {
	s := clienttest.New(t)
	ctx := context.Background()
	alice, dave := s.AddUser("Alice"), s.AddUser("Dave")
	swap := &wipeSwap{}
	a := enrol(t, s, alice, nil, func(c *client.Config) { c.HTTP = &http.Client{Transport: swap} })
	d := enrol(t, s, dave, nil)
	s.Publish()
	ok(t, a.Sync(ctx))

	genuine := s.RevokeDevice(alice, a.Self().Device)
	other := s.RevokeDevice(dave, d.Self().Device)
	forged := bytes.Clone(genuine)
	forged[len(forged)-1] ^= 1
	events := a.Events()
	discardEvents(events)
	for name, b := range map[string][]byte{"forged": forged, "another device's": other, "garbage": []byte("xx")} {
		before := a.st.Snapshot()
		swap.set(b)
		err := a.Sync(ctx)
		if err == nil || errors.Is(err, client.ErrRevoked) {
			t.Fatalf("%s instruction: Sync %v", name, err)
		}
		if a.st.Wiped() || !maps.Equal(before, a.st.Snapshot()) {
			t.Fatalf("%s instruction changed the store", name)
		}
	}
	swap.set(nil)
	if err := a.Sync(ctx); !errors.Is(err, client.ErrRevoked) {
		t.Fatalf("Sync of a revoked device: %v", err)
	}
	if !a.st.Wiped() {
		t.Fatal("store not wiped")
	}
	if !anyEvent(events, func(e client.Event) bool { return e.Kind == client.EventRevoked }) {
		t.Fatal("no EventRevoked")
	}
	if _, err := a.SendText(ctx, dave, "x"); !errors.Is(err, client.ErrRevoked) {
		t.Fatalf("Send after the wipe: %v", err)
	}
}

// TestWipeDeliveredOnSendAndRun: a revoked device learns of its
// revocation when the directory refuses its lookup on Send, and when Run
// connects.
func TestWipeDeliveredOnSendAndRun(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.s.RevokeDevice(w.alice, w.a2.Self().Device)
	if _, err := w.a2.SendText(ctx, w.bob, "x"); !errors.Is(err, client.ErrRevoked) {
		t.Fatalf("Send of a revoked device: %v", err)
	}
	if !w.a2.st.Wiped() {
		t.Fatal("store not wiped on Send")
	}
	b2 := enrol(t, w.s, w.bob, w.b1)
	w.s.RevokeDevice(w.bob, b2.Self().Device)
	ctx, cancel := context.WithTimeout(ctx, time.Minute) // a hang guard
	defer cancel()
	if err := b2.Run(ctx); !errors.Is(err, client.ErrRevoked) {
		t.Fatalf("Run of a revoked device: %v", err)
	}
	if !b2.st.Wiped() {
		t.Fatal("store not wiped on Run")
	}
	ok(t, w.b1.Sync(ctx))
}

// TestWipeDeliveredDiskStore: on the sealed disk store, the delivered
// wipe instruction removes the store's files.
func TestWipeDeliveredDiskStore(t *testing.T) {
	s := clienttest.New(t)
	ctx := context.Background()
	alice := s.AddUser("Alice")
	dir := filepath.Join(t.TempDir(), "a")
	ok(t, os.MkdirAll(dir, 0o700))
	kf := filepath.Join(dir, "key")
	ok(t, localstore.CreateKeyFile(kf))
	db, err := localstore.Open(filepath.Join(dir, "db"), localstore.Options{KeyFile: kf, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ok(t, err)
	defer db.Close()
	a, err := client.Enrol(ctx, s.Config(), db, s.IssueCode(alice))
	ok(t, err)
	defer a.Close()
	s.Publish()
	ok(t, a.Sync(ctx))
	s.RevokeDevice(alice, a.Self().Device)
	if err := a.Sync(ctx); !errors.Is(err, client.ErrRevoked) {
		t.Fatalf("Sync of a revoked device: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the store's directory after the wipe: %v", err)
	}
}
