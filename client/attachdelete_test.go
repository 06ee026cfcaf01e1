package client_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-im/moat/client"
	"github.com/moat-im/moat/client/attach"
	"github.com/moat-im/moat/client/clienttest"
)

// kinds counts d's local-store records of kind.
func kinds(d *device, kind string) int {
	n := 0
	for k := range d.st.Snapshot() {
		if strings.Contains(k, "\x00"+kind+"\x00") {
			n++
		}
	}
	return n
}

func sendFile(t *testing.T, from *device, to client.UserID, data []byte) client.MessageID {
	t.Helper()
	src := filepath.Join(t.TempDir(), "f.bin")
	ok(t, os.WriteFile(src, data, 0o600))
	id, err := from.SendFile(context.Background(), to, src, nil)
	ok(t, err)
	return id
}

// TestDeleteForEveryoneDeletesBlob: a file Bob sent and then deleted for
// everyone is deleted at the relay too (docs/spec/attachments.md
// §Sender-side deletion): Alice, who kept the reference, can no longer
// download it. Bob's store held the upload token until then and holds
// nothing of it after; Alice's store never held it.
func TestDeleteForEveryoneDeletesBlob(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	id := sendFile(t, w.b1, w.alice, []byte("a file to take back"))
	if kinds(w.b1, "upload") != 1 {
		t.Fatal("the sender did not keep the upload token")
	}
	syncAll(t, w.a1)
	r := only(t, history(t, w.a1, w.bob))
	var buf bytes.Buffer
	ok(t, w.a1.ReadAttachment(ctx, r.Attachment, &buf, nil))

	_, err := w.b1.Send(ctx, w.alice, client.Message{Kind: client.KindDelete, Target: id})
	ok(t, err)
	if err := w.a1.ReadAttachment(ctx, r.Attachment, &bytes.Buffer{}, nil); !errors.Is(err, attach.ErrNotFound) {
		t.Fatalf("download after delete for everyone: %v, want ErrNotFound", err)
	}
	if n, m := kinds(w.b1, "upload"), kinds(w.b1, "unlink"); n+m != 0 {
		t.Fatalf("sender's store after the deletion: %d tokens, %d queued", n, m)
	}
	for _, d := range []*device{w.a1, w.a2} {
		if kinds(d, "upload")+kinds(d, "unlink") != 0 {
			t.Fatal("a recipient holds an upload token")
		}
	}
}

// TestDisappearingFileDeletesBlob: when the timer destroys a file Bob
// sent, his next Sync deletes it at the relay. A deletion that fails
// (the relay is down) stays queued and is done by a later Sync.
func TestDisappearingFileDeletesBlob(t *testing.T) {
	s := clienttest.New(t)
	ctx := context.Background()
	alice, bob := s.AddUser("Alice"), s.AddUser("Bob")
	cb := &clock{}
	down := &refuseDeletes{}
	a := enrol(t, s, alice, nil)
	b := enrol(t, s, bob, nil, func(c *client.Config) {
		c.Now = cb.Now
		c.HTTP = &http.Client{Transport: down}
	})
	s.Publish()
	_, err := b.Send(ctx, alice, client.Message{Kind: client.KindTimer, Timer: time.Minute})
	ok(t, err)
	sendFile(t, b, alice, []byte("a file that disappears"))
	syncAll(t, a)
	h := history(t, a, bob)
	r := h[len(h)-1]
	if r.Attachment == nil {
		t.Fatalf("Alice's history: %+v", h)
	}
	ok(t, a.ReadAttachment(ctx, r.Attachment, &bytes.Buffer{}, nil))

	cb.Advance(2 * time.Minute)
	if hb := history(t, b, alice); len(hb) != 1 {
		t.Fatalf("Bob's history after the timer: %+v", hb)
	}
	// History destroyed the record and queued the deletion; nothing has
	// gone to the relay yet.
	if kinds(b, "unlink") != 1 {
		t.Fatal("the deletion was not queued")
	}
	ok(t, a.ReadAttachment(ctx, r.Attachment, &bytes.Buffer{}, nil))
	down.on.Store(true)
	syncAll(t, b)
	if kinds(b, "unlink") != 1 || !down.refused.Load() {
		t.Fatal("a deletion the relay did not answer was dropped")
	}
	ok(t, a.ReadAttachment(ctx, r.Attachment, &bytes.Buffer{}, nil))
	down.on.Store(false)
	syncAll(t, b)
	if kinds(b, "unlink")+kinds(b, "upload") != 0 {
		t.Fatal("the deletion is still queued after Sync")
	}
	if err := a.ReadAttachment(ctx, r.Attachment, &bytes.Buffer{}, nil); !errors.Is(err, attach.ErrNotFound) {
		t.Fatalf("download after the timer: %v, want ErrNotFound", err)
	}
}

// refuseDeletes answers every DELETE of an attachment 503 while on.
type refuseDeletes struct {
	on, refused atomic.Bool
}

func (f *refuseDeletes) RoundTrip(r *http.Request) (*http.Response, error) {
	if f.on.Load() && r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/relay/v1/attachments/") {
		f.refused.Store(true)
		return &http.Response{StatusCode: 503, Status: "503 Service Unavailable", Header: http.Header{},
			Body: http.NoBody, Request: r}, nil
	}
	return http.DefaultTransport.RoundTrip(r)
}
