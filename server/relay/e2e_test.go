package relay_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/bundle"
	"github.com/moat-im/moat/crypto/pqxdh"
	"github.com/moat-im/moat/crypto/ratchet"
	"github.com/moat-im/moat/crypto/sealed"
)

// TestEndToEnd runs the first vertical slice over HTTP on loopback: device
// A fetches B's bundle from the relay, runs PQXDH and the ratchet, seals
// the message to B's sealed-sender key and sends it anonymously with B's
// delivery token; B, online on its push channel, receives it, opens it,
// binds the sender to the session, decrypts, and acknowledges; after a
// reconnect B catches up on a message sent while it was away. The relay's
// logs hold no token, envelope, message id or content.
func TestEndToEnd(t *testing.T) {
	w := newWorld(t, worldOptions{})
	ctx := context.Background()
	a, b := w.newDevice(tenantA, 2, 1), w.newDevice(tenantA, 2, 1)
	w.publish(a)
	w.publish(b)
	auth := w.token(b, 1) // B gives A a token inside an earlier E2EE message

	push, err := b.c.Push(ctx, 0)
	ok(t, err)
	first, err := push.Next(ctx) // the initial page: empty, with a signed head
	ok(t, err)
	if len(first.Messages) != 0 {
		t.Fatalf("first page has %d messages", len(first.Messages))
	}

	// A: bundle, PQXDH, ratchet, seal, send.
	resp, err := a.c.FetchBundle(ctx, b.mailbox())
	ok(t, err)
	bun, rec, err := bundle.Open(resp, b.idk.Public(), b.mailbox(), time.Now())
	ok(t, err)
	if bun.OneTimePrekey == nil || bun.KEMPrekey.LastResort {
		t.Fatal("bundle without one-time keys while B has some")
	}
	im, res, err := pqxdh.Initiate(rand.Reader, a.idk, bun)
	ok(t, err)
	cfg := ratchet.Config{}
	as, err := ratchet.NewInitiator(cfg, ratchet.Params{SharedKey: res.SharedKey, AD: res.AD, Self: a.idk.Public(), Peer: b.idk.Public()},
		bun.SignedPrekey.Key, bun.KEMPrekey.Key, must(im.Marshal()))
	ok(t, err)
	secret := []byte("the first message, which the relay never sees")
	ct, err := as.Encrypt(secret)
	ok(t, err)
	env, err := rec.Seal(&sealed.Message{MessageID: sealed.NewMessageID(), TTL: 3600,
		Sender:    sealed.Sender{Tenant: a.tenant, User: a.user, Device: a.id, Serial: 1, Identity: a.idk.Public()},
		Timestamp: time.Now(), ContentType: sealed.ContentRatchetMessage, Content: ct})
	ok(t, err)
	rc, err := w.anon().Send(ctx, auth, env)
	ok(t, err)
	if rc.Seq != 1 || rc.Duplicate {
		t.Fatalf("receipt %+v", rc)
	}
	// A retry is idempotent.
	rc2, err := w.anon().Send(ctx, auth, env)
	ok(t, err)
	if rc2.Seq != 1 || !rc2.Duplicate {
		t.Fatalf("retry receipt %+v", rc2)
	}

	// B: push, open, bind, respond, decrypt, ack.
	pg, err := push.Next(ctx)
	ok(t, err)
	if len(pg.Messages) != 1 || !bytes.Equal(pg.Messages[0].Envelope, env) {
		t.Fatalf("pushed page: %d messages", len(pg.Messages))
	}
	kr := sealed.NewKeyring(b.mailbox())
	kr.Add(b.upload.SealedSenderKey.ID, b.ssk)
	o, err := kr.Open(pg.Messages[0].Envelope)
	ok(t, err)
	pre, err := ratchet.PeekPreamble(o.Content)
	ok(t, err)
	m, err := pqxdh.ParseInitialMessage(pre)
	ok(t, err)
	ok(t, o.CheckPeer(m.Identity))
	r, err := pqxdh.Respond(b.idk, m, b.responderKeys(m))
	ok(t, err)
	bs, err := ratchet.NewResponder(cfg, ratchet.Params{SharedKey: r.SharedKey, AD: r.AD, Self: b.idk.Public(), Peer: m.Identity}, b.spk, b.kems[m.KEMPrekeyID])
	ok(t, err)
	got, err := bs.Decrypt(o.Content)
	ok(t, err)
	if !bytes.Equal(got.Plaintext, secret) {
		t.Fatalf("decrypted %q", got.Plaintext)
	}
	ok(t, push.Ack(ctx, pg.Messages[0].Seq))
	ok(t, push.Close())

	// While B is away, A sends again; B catches up after reconnecting.
	ct2, err := as.Encrypt([]byte("second"))
	ok(t, err)
	env2 := envelope(t, a, b, ct2)
	_, err = w.anon().Send(ctx, auth, env2)
	ok(t, err)
	push, err = b.c.Push(ctx, pg.Messages[0].Seq)
	ok(t, err)
	defer push.Close()
	pg2, err := push.Next(ctx)
	ok(t, err)
	if len(pg2.Messages) != 1 || pg2.Messages[0].Seq != 2 || !bytes.Equal(pg2.Messages[0].Envelope, env2) {
		t.Fatalf("catch-up page: %+v", pg2.Messages)
	}
	ok(t, b.c.Ack(ctx, 2))
	// The acknowledged messages are gone.
	pg3, err := b.c.Fetch(ctx, 0, 100)
	ok(t, err)
	if len(pg3.Messages) != 0 || pg3.Head.Head != 2 {
		t.Fatalf("after acks: %d messages, head %d", len(pg3.Messages), pg3.Head.Head)
	}

	// The one-time prekeys A used were handed out once.
	st, err := b.c.PrekeyStatus(ctx)
	ok(t, err)
	if st.OneTimePrekeys != 1 || st.OneTimeKEM != 0 || st.LastResortUses != 0 {
		t.Fatalf("prekey status %+v", st)
	}

	logs := w.logs.String()
	for name, s := range map[string]string{
		"token":      base64.RawURLEncoding.EncodeToString(auth),
		"envelope":   base64.RawURLEncoding.EncodeToString(env[:64]),
		"message id": hex.EncodeToString(env[34:50]),
		"mailbox":    hex.EncodeToString(b.id[:]),
		"content":    string(secret),
	} {
		if strings.Contains(logs, s) {
			t.Errorf("the log holds the %s", name)
		}
	}
	if !strings.Contains(logs, `route="POST /relay/v1/send"`) {
		t.Fatalf("no request log:\n%s", logs)
	}
}
