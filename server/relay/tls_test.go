package relay_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
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
