package relay_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/bundle"
	"github.com/moat-im/moat/crypto/pqxdh"
	"github.com/moat-im/moat/crypto/ratchet"
	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/store/mailbox"
)

// TestMaxRatchetMessage: the ratchet's largest message needs the largest
// envelope bucket (docs/spec/envelope.md §Size buckets), and the relay and
// its mailbox store take it: an initial message carrying the largest
// plaintext travels in a 512 KiB envelope from A to B, who opens and
// decrypts it. One byte over the largest bucket is refused from the
// headers alone.
func TestMaxRatchetMessage(t *testing.T) {
	if b := must(sealed.BucketFor(ratchet.MaxMessageSize)); b != sealed.MaxBucket || mailbox.MaxBodySize != sealed.MaxBucket {
		t.Fatalf("MaxMessageSize %d needs bucket %d; largest bucket %d, mailbox body limit %d",
			ratchet.MaxMessageSize, b, sealed.MaxBucket, mailbox.MaxBodySize)
	}
	w := newWorld(t, worldOptions{})
	ctx := context.Background()
	a, b := w.newDevice(tenantA, 1, 1), w.newDevice(tenantA, 1, 1)
	w.publish(a)
	w.publish(b)
	auth := w.token(b, 1)

	resp, err := a.c.FetchBundle(ctx, b.mailbox())
	ok(t, err)
	bun, rec, err := bundle.Open(resp, b.idk.Public(), b.mailbox(), time.Now())
	ok(t, err)
	im, res, err := pqxdh.Initiate(rand.Reader, a.idk, bun)
	ok(t, err)
	as, err := ratchet.NewInitiator(ratchet.Config{}, ratchet.Params{SharedKey: res.SharedKey, AD: res.AD, Self: a.idk.Public(), Peer: b.idk.Public()},
		bun.SignedPrekey.Key, bun.KEMPrekey.Key, must(im.Marshal()))
	ok(t, err)
	secret := make([]byte, ratchet.MaxPlaintextSize)
	_, _ = rand.Read(secret)
	ct, err := as.Encrypt(secret)
	ok(t, err)
	if len(ct) > ratchet.MaxMessageSize || len(ct) <= sealed.MaxBucket/2-sealed.Overhead {
		t.Fatalf("ratchet message of %d bytes does not need the largest bucket", len(ct))
	}
	env, err := rec.Seal(&sealed.Message{MessageID: sealed.NewMessageID(), TTL: 3600,
		Sender:    sealed.Sender{Tenant: a.tenant, User: a.user, Device: a.id, Serial: 1, Identity: a.idk.Public()},
		Timestamp: time.Now(), ContentType: sealed.ContentRatchetMessage, Content: ct})
	ok(t, err)
	if len(env) != sealed.MaxBucket {
		t.Fatalf("envelope of %d bytes, want %d", len(env), sealed.MaxBucket)
	}
	rc, err := w.anon().Send(ctx, auth, env)
	ok(t, err)
	if rc.Seq != 1 || rc.Duplicate {
		t.Fatalf("receipt %+v", rc)
	}

	pg, err := b.c.Fetch(ctx, 0, 10)
	ok(t, err)
	if len(pg.Messages) != 1 || !bytes.Equal(pg.Messages[0].Envelope, env) {
		t.Fatalf("fetched %d messages", len(pg.Messages))
	}
	kr := sealed.NewKeyring(b.mailbox())
	kr.Add(b.upload.SealedSenderKey.ID, b.ssk)
	o, err := kr.Open(pg.Messages[0].Envelope)
	ok(t, err)
	m, err := pqxdh.ParseInitialMessage(must(ratchet.PeekPreamble(o.Content)))
	ok(t, err)
	ok(t, o.CheckPeer(m.Identity))
	r, err := pqxdh.Respond(b.idk, m, b.responderKeys(m))
	ok(t, err)
	bs, err := ratchet.NewResponder(ratchet.Config{}, ratchet.Params{SharedKey: r.SharedKey, AD: r.AD, Self: b.idk.Public(), Peer: m.Identity}, b.spk, b.kems[m.KEMPrekeyID])
	ok(t, err)
	got, err := bs.Decrypt(o.Content)
	ok(t, err)
	if !bytes.Equal(got.Plaintext, secret) {
		t.Fatal("decrypted plaintext differs")
	}

	// One byte over the largest bucket: 413 before the body is read (the
	// body never ends, so reading it would hang the request).
	hang := hangingBody{done: make(chan struct{})}
	defer close(hang.done)
	req := must(http.NewRequest("POST", w.srv.URL+"/relay/v1/send", io.Reader(hang)))
	req.ContentLength = sealed.MaxBucket + 1
	req.Header.Set(relay.HeaderSendAuthorization, encodeAuth(auth))
	if code, _, _ := raw(t, req); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("envelope of %d bytes: %d, want 413", sealed.MaxBucket+1, code)
	}
}
