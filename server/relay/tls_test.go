package relay_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/moat-im/moat/crypto/deviceauth"
)

// TestChannelBinding: over TLS the device signs the connection's
// tls-exporter value (RFC 9266) and the relay checks it; a device that
// leaves the binding out, as one behind a TLS-terminating proxy would, is
// refused by a relay that terminates TLS itself.
func TestChannelBinding(t *testing.T) {
	w := newWorld(t, worldOptions{})
	srv := httptest.NewTLSServer(w.relay.Handler())
	defer srv.Close()
	a := w.newDevice(tenantA, 0, 0)
	c := w.client(a)
	c.BaseURL, c.HTTP = srv.URL, srv.Client()
	ctx := context.Background()
	_, err := c.Fetch(ctx, 0, 1)
	ok(t, err)

	c = w.client(a)
	c.BaseURL, c.HTTP, c.NoChannelBinding = srv.URL, srv.Client(), true
	_, err = c.Fetch(ctx, 0, 1)
	wantStatus(t, err, http.StatusUnauthorized)
}

// TestChannelBindingNewConnectionPerRequest: the challenge and the session
// request may travel over different connections of the client's pool; the
// device signs the binding of the connection that carries its Response,
// so authentication succeeds however the transport spreads the requests.
// With DisableKeepAlives every request dials a new connection: before the
// client signed the session request's own binding, this was a 401 every
// time (and about once in 8,000 under load, when a pool split the two).
func TestChannelBindingNewConnectionPerRequest(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		w := newWorld(t, worldOptions{})
		srv := httptest.NewUnstartedServer(w.relay.Handler())
		srv.EnableHTTP2 = h2
		srv.StartTLS()
		tr := srv.Client().Transport.(*http.Transport).Clone()
		tr.DisableKeepAlives = true
		var dials atomic.Int64
		dial := tr.DialContext
		if dial == nil {
			dial = (&net.Dialer{}).DialContext
		}
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return dial(ctx, network, addr)
		}
		a := w.newDevice(tenantA, 0, 0)
		c := w.client(a)
		c.BaseURL, c.HTTP = srv.URL, &http.Client{Transport: tr}
		ctx := context.Background()
		for p := range 3 {
			ok(t, c.Authenticate(ctx, deviceauth.PurposeMailbox))
			if _, err := c.Fetch(ctx, 0, 1); err != nil {
				t.Fatalf("h2=%v, round %d: %v", h2, p, err)
			}
		}
		if n := dials.Load(); n < 9 {
			t.Fatalf("h2=%v: %d dials for 9 requests; the test needs a connection per request", h2, n)
		}
		srv.Close()
	}
}

// TestChannelBindingHTTP2: over HTTP/2 the transport reports the
// connection too, and the device signs its binding.
func TestChannelBindingHTTP2(t *testing.T) {
	w := newWorld(t, worldOptions{})
	srv := httptest.NewUnstartedServer(w.relay.Handler())
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	a := w.newDevice(tenantA, 0, 0)
	c := w.client(a)
	c.BaseURL, c.HTTP = srv.URL, srv.Client()
	ctx := context.Background()
	ok(t, c.Authenticate(ctx, deviceauth.PurposeMailbox))
	resp, err := srv.Client().Get(srv.URL + "/healthz")
	ok(t, err)
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("protocol %s, want HTTP/2", resp.Proto)
	}
}
