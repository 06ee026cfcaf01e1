package relay_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/moat-im/moat/crypto/deviceauth"
)

// TestT45Revocation: once the directory reports a device revoked, the
// relay ends its sessions and its push channel, refuses to authenticate
// it, stops accepting sends to its mailbox, and stops serving its bundle.
func TestT45Revocation(t *testing.T) {
	w := newWorld(t, worldOptions{})
	ctx := context.Background()
	a, b := w.newDevice(tenantA, 1, 1), w.newDevice(tenantA, 1, 1)
	w.publish(b)
	tok := w.token(b, 1)
	_, err := w.anon().Send(ctx, tok, envelope(t, a, b, []byte("before")))
	ok(t, err)
	p, err := b.c.Push(ctx, 0)
	ok(t, err)
	pg, err := p.Next(ctx)
	ok(t, err)
	if len(pg.Messages) != 1 {
		t.Fatalf("%d messages", len(pg.Messages))
	}
	sess := w.session(b, deviceauth.PurposeMailbox)

	w.dir.Revoke(b.tenant, b.id)

	// The push channel closes at its next wake-up.
	_, err = w.anon().Send(ctx, tok, envelope(t, a, b, []byte("after")))
	wantStatus(t, err, http.StatusNotFound)
	mb := "/relay/v1/mailboxes/" + mailboxText(b) + "/messages"
	if code := w.call("GET", mb, sess, nil); code != http.StatusUnauthorized {
		t.Fatalf("revoked device's session: %d", code)
	}
	if code := w.call("POST", "/relay/v1/auth/session?purpose=mailbox", "", w.authResponse(b, deviceauth.PurposeMailbox)); code != http.StatusUnauthorized {
		t.Fatalf("revoked device authenticating: %d", code)
	}
	_, err = a.c.FetchBundle(ctx, b.mailbox())
	wantStatus(t, err, http.StatusNotFound)
	// Wake the push channel: an ack makes it check again.
	_ = p.Ack(ctx, 1)
	if _, err := p.Next(ctx); err == nil {
		t.Fatal("the revoked device's push channel delivered")
	}
}
