package relay_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/deviceauth"
	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/internal/httpserve"
	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/store/mailbox"
	"github.com/moat-im/moat/server/store/mailbox/memmailbox"
)

// TestT41Floods: a device flooding its mailbox gets 429 with Retry-After
// past its burst while another device of the tenant is served; a tenant
// flooding is limited while another tenant is served; a flood of sends
// with one token is limited while another token's sends go through; a
// flood of sends from one network address, whatever the tokens and
// mailboxes, is limited while another address is served; a flood of
// bundle fetches for one device is limited while another
// device's bundle is served; a flood of challenges from one address is
// limited. The limits are counted in the metrics.
func TestT41Floods(t *testing.T) {
	ctx := context.Background()
	flood := func(n int, f func() error) error {
		var last error
		for range n {
			if last = f(); last != nil {
				return last
			}
		}
		return nil
	}
	t.Run("per device", func(t *testing.T) {
		w := newWorld(t, worldOptions{limits: relay.Limits{PerDevice: relay.Rate{PerSecond: 0.001, Burst: 20}}})
		a, b := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0)
		err := flood(100, func() error { _, err := a.c.Fetch(ctx, 0, 10); return err })
		wantStatus(t, err, http.StatusTooManyRequests)
		if ae := err.(*relay.APIError); ae.RetryAfter < time.Second {
			t.Fatalf("Retry-After %v", ae.RetryAfter)
		}
		_, err = b.c.Fetch(ctx, 0, 10)
		ok(t, err)
		if m := metricsText(t, w); !strings.Contains(m, `moat_relay_rate_limited_total{scope="device"} 1`) {
			t.Fatal("not counted")
		}
	})
	t.Run("per tenant", func(t *testing.T) {
		w := newWorld(t, worldOptions{limits: relay.Limits{PerTenant: relay.Rate{PerSecond: 0.001, Burst: 30}}})
		var as []*device
		for range 5 {
			as = append(as, w.newDevice(tenantA, 0, 0))
		}
		x := w.newDevice(tenantB, 0, 0)
		err := flood(20, func() error {
			for _, a := range as {
				if _, err := a.c.Fetch(ctx, 0, 10); err != nil {
					return err
				}
			}
			return nil
		})
		wantStatus(t, err, http.StatusTooManyRequests)
		_, err = x.c.Fetch(ctx, 0, 10)
		ok(t, err)
	})
	t.Run("per token", func(t *testing.T) {
		w := newWorld(t, worldOptions{limits: relay.Limits{SendPerToken: relay.Rate{PerSecond: 0.001, Burst: 10}}})
		a, b, c := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0)
		w.publish(b)
		tok1, tok2 := w.token(b, 1), w.token(b, 2)
		env := envelope(t, a, b, []byte("flood"))
		err := flood(100, func() error {
			_, err := w.anon().Send(ctx, tok1, envelope(t, a, b, []byte("flood")))
			return err
		})
		wantStatus(t, err, http.StatusTooManyRequests)
		_, err = w.anon().Send(ctx, tok2, env)
		ok(t, err)
		_ = c
	})
	t.Run("per mailbox", func(t *testing.T) {
		w := newWorld(t, worldOptions{limits: relay.Limits{SendPerMailbox: relay.Rate{PerSecond: 0.001, Burst: 10}}})
		a, b, c := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0)
		w.publish(b)
		w.publish(c)
		var toks [][]byte
		for i := range 20 {
			toks = append(toks, w.token(b, byte(i)))
		}
		i := 0
		err := flood(20, func() error {
			i++
			_, err := w.anon().Send(ctx, toks[i-1], envelope(t, a, b, []byte("many tokens")))
			return err
		})
		wantStatus(t, err, http.StatusTooManyRequests)
		_, err = w.anon().Send(ctx, w.token(c, 1), envelope(t, a, c, []byte("other mailbox")))
		ok(t, err)
	})
	t.Run("SendPerAddress", func(t *testing.T) {
		// Sends from one address to three mailboxes, each with its own
		// tokens: only the per-address limit can stop them. Another
		// address (127.0.0.2: Linux routes all of 127.0.0.0/8 to loopback)
		// is served meanwhile.
		w := newWorld(t, worldOptions{limits: relay.Limits{SendPerAddress: relay.Rate{PerSecond: 0.001, Burst: 10}}})
		a := w.newDevice(tenantA, 0, 0)
		rs := []*device{w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0), w.newDevice(tenantB, 0, 0)}
		for _, r := range rs {
			w.publish(r)
		}
		i, sent := 0, 0
		err := flood(30, func() error {
			r := rs[i%len(rs)]
			i++
			_, err := w.anon().Send(ctx, w.token(r, byte(i)), envelope(t, a, r, []byte("from one address")))
			if err == nil {
				sent++
			}
			return err
		})
		wantStatus(t, err, http.StatusTooManyRequests)
		if sent != 10 {
			t.Fatalf("%d sends before the limit, want the burst of 10", sent)
		}
		other := w.anon()
		other.HTTP = &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
			LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)},
		}).DialContext}}
		_, err = other.Send(ctx, w.token(rs[0], 200), envelope(t, a, rs[0], []byte("from another address")))
		ok(t, err)
		_, err = w.anon().Send(ctx, w.token(rs[1], 201), envelope(t, a, rs[1], []byte("still limited")))
		wantStatus(t, err, http.StatusTooManyRequests)
		if m := metricsText(t, w); !strings.Contains(m, `moat_relay_rate_limited_total{scope="send-address"} 2`) {
			t.Fatal("not counted")
		}
	})
	t.Run("bundle fetches", func(t *testing.T) {
		w := newWorld(t, worldOptions{limits: relay.Limits{BundlePerTarget: relay.Rate{PerSecond: 0.001, Burst: 5}}})
		a, b, c := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 10, 10), w.newDevice(tenantA, 1, 1)
		w.publish(b)
		w.publish(c)
		err := flood(50, func() error { _, err := a.c.FetchBundle(ctx, b.mailbox()); return err })
		wantStatus(t, err, http.StatusTooManyRequests)
		st, err := b.c.PrekeyStatus(ctx)
		ok(t, err)
		if st.OneTimePrekeys != 5 {
			t.Fatalf("the flood drained %d one-time prekeys past the limit", 10-st.OneTimePrekeys)
		}
		_, err = a.c.FetchBundle(ctx, c.mailbox())
		ok(t, err)
	})
	t.Run("challenges", func(t *testing.T) {
		w := newWorld(t, worldOptions{limits: relay.Limits{Challenge: relay.Rate{PerSecond: 0.001, Burst: 5}}})
		codes := map[int]int{}
		for range 20 {
			codes[w.call("POST", "/relay/v1/auth/challenge?purpose=mailbox", "", nil)]++
		}
		if codes[200] != 5 || codes[429] != 15 {
			t.Fatalf("codes %v", codes)
		}
	})
}

func metricsText(t testing.TB, w *world) string {
	t.Helper()
	code, _, b := raw(t, must(http.NewRequest("GET", w.srv.URL+"/metrics", nil)))
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	return string(b)
}

// hangingBody is a request body that never delivers a byte: a server that
// waited for it would never answer.
type hangingBody struct{ done chan struct{} }

func (h hangingBody) Read([]byte) (int, error) { <-h.done; return 0, io.EOF }

// TestT42HugeFrames: bodies whose declared length is huge are refused from
// the headers alone, before the relay reads or allocates them; a body with
// no declared length is refused for sends and cut at the limit elsewhere;
// envelope sizes that are not buckets, oversize auth headers and
// malformed frames are refused.
func TestT42HugeFrames(t *testing.T) {
	w := newWorld(t, worldOptions{})
	a, b := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0)
	w.publish(b)
	tok := w.token(b, 1)
	prek := w.session(a, deviceauth.PurposePrekeys)
	hang := hangingBody{done: make(chan struct{})}
	defer close(hang.done)
	for _, c := range []struct {
		name, method, path, auth string
		length                   int64
		want                     int
	}{
		{"send of 1 GiB", "POST", "/relay/v1/send", "", 1 << 30, 413},
		{"send of 2^62", "POST", "/relay/v1/send", "", 1 << 62, 413},
		{"prekey upload of 1 GiB", "PUT", "/relay/v1/devices/" + relay.MailboxText(a.mailbox()) + "/prekeys", prek, 1 << 30, 413},
		{"auth answer of 1 GiB", "POST", "/relay/v1/auth/session?purpose=mailbox", "", 1 << 30, 413},
	} {
		req := must(http.NewRequest(c.method, w.srv.URL+c.path, hang))
		req.ContentLength = c.length
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		if c.path == "/relay/v1/send" {
			req.Header.Set(relay.HeaderSendAuthorization, encodeAuth(tok))
		}
		if code, _, _ := raw(t, req); code != c.want {
			t.Errorf("%s: %d, want %d", c.name, code, c.want)
		}
	}
	env := envelope(t, a, b, []byte("x"))
	send := func(body io.Reader, n int64, auth string) int {
		req := must(http.NewRequest("POST", w.srv.URL+"/relay/v1/send", body))
		req.ContentLength = n
		req.Header.Set(relay.HeaderSendAuthorization, auth)
		code, _, _ := raw(t, req)
		return code
	}
	if code := send(bytes.NewReader(env[:len(env)-1]), int64(len(env)-1), encodeAuth(tok)); code != 400 {
		t.Errorf("envelope one byte short of a bucket: %d", code)
	}
	if code := send(io.MultiReader(bytes.NewReader(env)), -1, encodeAuth(tok)); code != 411 {
		t.Errorf("send without Content-Length: %d", code)
	}
	if code := send(bytes.NewReader(env), int64(len(env)), strings.Repeat("A", 10_000)); code != 400 {
		t.Errorf("oversize send authorization: %d", code)
	}
	bad := bytes.Clone(env)
	bad[0] ^= 0xff
	if code := send(bytes.NewReader(bad), int64(len(bad)), encodeAuth(tok)); code != 400 {
		t.Errorf("envelope of another type: %d", code)
	}
	if code := send(bytes.NewReader(env), int64(len(env)), encodeAuth(tok[:10])); code != 400 {
		t.Errorf("truncated send authorization: %d", code)
	}
	// docs/spec/api.md §Send step 3: absent is 401, not base64url (or
	// padded) is 400.
	for name, c := range map[string]struct {
		auth string
		want int
	}{
		"absent": {"", 401}, "not base64url": {"!!" + encodeAuth(tok)[2:], 400}, "padded": {encodeAuth(tok) + "=", 400},
	} {
		if code := send(bytes.NewReader(env), int64(len(env)), c.auth); code != c.want {
			t.Errorf("send authorization %s: %d, want %d", name, code, c.want)
		}
	}
	// The largest envelope the mailbox store takes goes through; the next
	// bucket is refused before it is read.
	big := envelope(t, a, b, make([]byte, mailbox.MaxBodySize-sealed.Overhead))
	if code := send(bytes.NewReader(big), int64(len(big)), encodeAuth(tok)); code != 200 {
		t.Errorf("envelope of %d bytes: %d", len(big), code)
	}
	if code := send(hang, 2*mailbox.MaxBodySize, encodeAuth(tok)); code != 413 {
		t.Errorf("envelope of the next bucket: %d", code)
	}
	// Malformed prekey uploads: a vector claiming more than the body.
	up := must(a.upload.Marshal())
	up[3] = 0xff
	req := must(http.NewRequest("PUT", w.srv.URL+"/relay/v1/devices/"+relay.MailboxText(a.mailbox())+"/prekeys", bytes.NewReader(up)))
	req.Header.Set("Authorization", prek)
	if code, _, _ := raw(t, req); code != 400 {
		t.Errorf("malformed upload: %d", code)
	}
	// Headers past the limit are refused by the server.
	req = must(http.NewRequest("GET", w.srv.URL+"/healthz", nil))
	req.Header.Set("X-Big", strings.Repeat("x", 2<<20))
	if code, _, _ := raw(t, req); code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("2 MiB of headers: %d", code)
	}
}

// TestT42PushFrames: a device that sends an oversize or malformed frame on
// its push channel is disconnected; the relay stays up.
func TestT42PushFrames(t *testing.T) {
	w := newWorld(t, worldOptions{})
	a := w.newDevice(tenantA, 0, 0)
	ctx := context.Background()
	for _, frame := range [][]byte{make([]byte, 1<<20), []byte("not a push ack")} {
		p, err := a.c.Push(ctx, 0)
		ok(t, err)
		_, err = p.Next(ctx)
		ok(t, err)
		// The relay may reset the connection before the whole frame is
		// written; what matters is that the channel ends.
		_ = pushWriteRaw(p, frame)
		if _, err := p.Next(ctx); err == nil {
			t.Fatal("the relay kept a channel that sent a bad frame")
		}
	}
	_, err := a.c.Fetch(ctx, 0, 1)
	ok(t, err)
}

// TestT43SlowClients: a client that trickles its headers (slowloris) or
// its body, or never reads its response, is disconnected by the server's
// timeouts, and the relay keeps serving others.
func TestT43SlowClients(t *testing.T) {
	w := newWorld(t, worldOptions{})
	a := w.newDevice(tenantA, 0, 0)
	// The same handler behind a server with short timeouts.
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = httpserve.NewServer(w.relay.Handler(), httpserve.Options{Timeouts: httpserve.Timeouts{
		ReadHeader: 200 * time.Millisecond, Read: 500 * time.Millisecond, Write: 500 * time.Millisecond, Idle: time.Second,
	}})
	srv.Start()
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	closed := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(30 * time.Second)) // a bound for a broken server, not a timing assertion
		_, err := io.Copy(io.Discard, c)
		var ne net.Error
		return err == nil || !(errors.As(err, &ne) && ne.Timeout())
	}
	var conns []net.Conn
	for range 20 {
		c := must(net.Dial("tcp", addr))
		conns = append(conns, c)
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n") // and never the end of the headers
	}
	for i, c := range conns {
		if !closed(c) {
			t.Fatalf("slowloris connection %d was not closed", i)
		}
		c.Close()
	}
	// A slow body.
	c := must(net.Dial("tcp", addr))
	fmt.Fprintf(c, "POST /relay/v1/auth/session?purpose=mailbox HTTP/1.1\r\nHost: x\r\nContent-Length: 400\r\n\r\nab")
	if !closed(c) {
		t.Fatal("slow-body connection was not closed")
	}
	c.Close()
	// A slow reader: pipelines requests for a large response and does
	// not read. The server's write blocks, its write timeout closes the
	// connection, and the reader later finds far fewer bytes than it asked
	// for. (Without the timeout it would read every response.)
	one := len(must(io.ReadAll(must(http.Get(srv.URL + "/metrics")).Body)))
	const n = 400
	c = must(net.Dial("tcp", addr))
	c.(*net.TCPConn).SetReadBuffer(4096)
	go func() {
		for range n {
			if _, err := fmt.Fprintf(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				return
			}
		}
	}()
	time.Sleep(2 * time.Second) // let the server block and time out; nothing is asserted about time
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.Copy(io.Discard, c)
	var ne net.Error
	if got >= int64(n*one) || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("a reader that did not read got %d of %d bytes (%v): the server did not close it", got, n*one, err)
	}
	c.Close()
	// The relay still serves.
	a.c.BaseURL = srv.URL
	_, err = a.c.Fetch(context.Background(), 0, 1)
	ok(t, err)
	resp := must(http.Get(srv.URL + "/healthz"))
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("healthz %d", resp.StatusCode)
	}
}

// TestT38StoreTimeout: a store call that runs out of time
// (context.DeadlineExceeded) is answered 503 with Retry-After, like any
// other unavailability, for single and batch sends.
func TestT38StoreTimeout(t *testing.T) {
	fs := &faultyStore{Store: must(memmailbox.New(memmailbox.Options{})), enqueueErr: context.DeadlineExceeded}
	w := newWorld(t, worldOptions{mbox: fs})
	a, b := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0)
	w.publish(b)
	ctx := context.Background()
	fs.down.Store(true)
	_, err := w.anon().Send(ctx, w.token(b, 1), envelope(t, a, b, []byte("timed out")))
	wantStatus(t, err, http.StatusServiceUnavailable)
	if err.(*relay.APIError).RetryAfter < time.Second {
		t.Fatal("no Retry-After")
	}
}

// TestT38StoreUnavailable: when the mailbox store cannot make writes
// durable, sends, fetches and acks are answered 503 with Retry-After and
// nothing is acknowledged; once it recovers the relay serves again.
func TestT38StoreUnavailable(t *testing.T) {
	fs := &faultyStore{Store: must(memmailbox.New(memmailbox.Options{}))}
	w := newWorld(t, worldOptions{mbox: fs})
	a, b := w.newDevice(tenantA, 0, 0), w.newDevice(tenantA, 0, 0)
	w.publish(b)
	tok := w.token(b, 1)
	ctx := context.Background()
	env := envelope(t, a, b, []byte("during the outage"))
	fs.down.Store(true)
	_, err := w.anon().Send(ctx, tok, env)
	wantStatus(t, err, http.StatusServiceUnavailable)
	if err.(*relay.APIError).RetryAfter < time.Second {
		t.Fatal("no Retry-After")
	}
	_, err = b.c.Fetch(ctx, 0, 10)
	wantStatus(t, err, http.StatusServiceUnavailable)
	wantStatus(t, b.c.Ack(ctx, 1), http.StatusServiceUnavailable)
	if code := w.call("GET", "/readyz", "", nil); code != 503 {
		t.Fatalf("readyz during the outage: %d", code)
	}
	fs.down.Store(false)
	rc, err := w.anon().Send(ctx, tok, env)
	ok(t, err)
	if rc.Seq != 1 || rc.Duplicate {
		t.Fatalf("after recovery: %+v (something was stored during the outage)", rc)
	}
	if m := metricsText(t, w); !strings.Contains(m, "moat_relay_store_unavailable_total 3") {
		t.Fatal("outage not counted")
	}
}
