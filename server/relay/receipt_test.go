package relay_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/store/mailbox"
)

// TestSendReceiptBatched: concurrent sends get receipts whose batched
// heads verify under the relay key and name each send's own mailbox and
// sequence number.
func TestSendReceiptBatched(t *testing.T) {
	w := newWorld(t, worldOptions{})
	a, b := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0)
	w.publish(a)
	w.publish(b)
	authA, authB := w.token(a, 1), w.token(b, 1)
	ctx := context.Background()
	const n = 40
	var wg sync.WaitGroup
	rcs := make([]*relay.Receipt, n)
	errs := make([]error, n)
	for i := range n {
		to, auth := a, authA
		if i%2 == 1 {
			to, auth = b, authB
		}
		env := envelope(t, b, to, []byte("m"))
		wg.Add(1)
		go func() {
			defer wg.Done()
			rcs[i], errs[i] = w.anon().Send(ctx, auth, env)
		}()
	}
	wg.Wait()
	for i := range n {
		ok(t, errs[i])
		to := a
		if i%2 == 1 {
			to = b
		}
		h := rcs[i].Head
		if h.Mailbox != relay.StoreMailboxID(to.mailbox()) || h.Head < rcs[i].Seq {
			t.Fatalf("receipt %d: %+v", i, h)
		}
		ok(t, h.Verify(w.key.Public()))
	}
}

// tamper is a proxy that changes the receipt of every send.
func tamper(t *testing.T, target string, f func(rc *relay.Receipt)) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		out, err := http.NewRequest(req.Method, target+req.URL.RequestURI(), bytes.NewReader(body))
		ok(t, err)
		out.Header = req.Header.Clone()
		resp, err := http.DefaultClient.Do(out)
		ok(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if req.URL.Path == "/relay/v1/send" && resp.StatusCode == http.StatusOK {
			rc, err := relay.ParseReceipt(b)
			ok(t, err)
			f(rc)
			b, err = rc.Marshal()
			ok(t, err)
		}
		rw.WriteHeader(resp.StatusCode)
		rw.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestSendReceiptForged: Client.Send refuses a receipt whose batched
// head was altered, moved to another position, given another path,
// names another mailbox, or is signed by another key.
func TestSendReceiptForged(t *testing.T) {
	w := newWorld(t, worldOptions{})
	a, b := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0)
	w.publish(a)
	w.publish(b)
	auth := w.token(a, 1)
	ctx := context.Background()
	other := must(mailbox.SignHeadBatch(w.key, []mailbox.HeadLeaf{{Mailbox: relay.StoreMailboxID(b.mailbox()), Head: 5}, {Mailbox: mailbox.ID{9}, Head: 1}}, time.Now()))
	for name, f := range map[string]func(rc *relay.Receipt){
		"head":      func(rc *relay.Receipt) { rc.Head.Head++ },
		"salt":      func(rc *relay.Receipt) { rc.Head.Salt[0] ^= 1 },
		"signature": func(rc *relay.Receipt) { rc.Head.Signature[5] ^= 1 },
		"position": func(rc *relay.Receipt) {
			rc.Head.Size, rc.Head.Index = 2, 1
			rc.Head.Path = [][mailbox.HashSize]byte{{1}}
		},
		"path":          func(rc *relay.Receipt) { rc.Head.Size, rc.Head.Path = 2, other[1].Path },
		"other mailbox": func(rc *relay.Receipt) { rc.Head = other[0] },
		"other key": func(rc *relay.Receipt) {
			hs := must(mailbox.SignHeadBatch(must(keys.GenerateRelaySigningKey(rand.Reader)), []mailbox.HeadLeaf{{Mailbox: rc.Head.Mailbox, Head: rc.Head.Head}}, time.Now()))
			rc.Head = hs[0]
		},
	} {
		p := tamper(t, w.srv.URL, f)
		c := w.anon()
		c.BaseURL = p.URL
		_, err := c.Send(ctx, auth, envelope(t, b, a, []byte(name)))
		if err == nil {
			t.Errorf("%s: forged receipt accepted", name)
		}
		var ae *relay.APIError
		if errors.As(err, &ae) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The untampered path through the same proxy works.
	p := tamper(t, w.srv.URL, func(*relay.Receipt) {})
	c := w.anon()
	c.BaseURL = p.URL
	_, err := c.Send(ctx, auth, envelope(t, b, a, []byte("genuine")))
	ok(t, err)
}
