package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"

	"github.com/moat-im/moat/crypto/deviceauth"
)

// The session request's channel binding (docs/spec/api.md §Sessions). A
// device signs the tls-exporter value of the connection its Response
// travels on, which need not be the connection that carried the
// challenge: an HTTP client pools connections, and the two requests may
// go over different ones. The device therefore signs only when the
// transport has chosen the session request's connection and reads the
// body: boundResponse is that body.

// responseOverhead is the size of a Response less its challenge: type,
// version, tenant, device and signature.
const responseOverhead = 2 + 16 + 16 + 64

// errNoConnection is returned when the transport did not say which
// connection carries the session request, so its channel binding is
// unknown.
var errNoConnection = errors.New("relay: the HTTP transport did not report the session request's connection; channel binding needs an *http.Transport (or set NoChannelBinding)")

// boundResponse signs the Response over the channel binding of the
// connection the transport last reported for the request (GotConn comes
// before the transport reads the body, on every attempt).
type boundResponse struct {
	sign func(cb []byte) ([]byte, error)
	tls  bool // the request goes over TLS, so it has a binding

	mu   sync.Mutex
	conn net.Conn
	err  error // the first signing error, for Authenticate to return
}

func (b *boundResponse) gotConn(info httptrace.GotConnInfo) {
	b.mu.Lock()
	b.conn = info.Conn
	b.mu.Unlock()
}

// body signs for the current connection; the transport calls it through
// the request's Body and GetBody.
func (b *boundResponse) body() (io.ReadCloser, error) {
	b.mu.Lock()
	conn := b.conn
	b.mu.Unlock()
	ans, err := b.respond(conn)
	if err != nil {
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
		return nil, err
	}
	return io.NopCloser(&sliceReader{b: ans}), nil
}

func (b *boundResponse) respond(conn net.Conn) ([]byte, error) {
	if !b.tls {
		return b.sign(nil)
	}
	cs, ok := conn.(interface{ ConnectionState() tls.ConnectionState })
	if conn == nil || !ok {
		return nil, errNoConnection
	}
	st := cs.ConnectionState()
	cb, err := st.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
	if err != nil {
		return nil, err
	}
	return b.sign(cb)
}

// lazyBody defers the signature to the first Read, when the transport
// has reported the connection.
type lazyBody struct {
	b  *boundResponse
	rc io.ReadCloser
}

func (l *lazyBody) Read(p []byte) (int, error) {
	if l.rc == nil {
		rc, err := l.b.body()
		if err != nil {
			return 0, err
		}
		l.rc = rc
	}
	return l.rc.Read(p)
}

func (l *lazyBody) Close() error { return nil }

type sliceReader struct{ b []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// sessionRequest returns the session request for the challenge chal:
// the Response is signed when the transport reads the body, over the
// channel binding of the connection it chose.
func (c *Client) sessionRequest(ctx context.Context, p deviceauth.Purpose, chal []byte) (*http.Request, *boundResponse, error) {
	b := &boundResponse{sign: func(cb []byte) ([]byte, error) {
		ans, err := deviceauth.Respond(chal, c.name(), p, c.Device.Tenant, c.Device.Device, c.Device.Key, cb)
		if err == nil && len(ans) != len(chal)+responseOverhead {
			err = deviceauth.ErrMalformed
		}
		return ans, err
	}}
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: b.gotConn})
	u := c.url("/relay/v1/auth/session?purpose=" + PurposeName(p))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return nil, nil, err
	}
	b.tls = req.URL.Scheme == "https" && !c.NoChannelBinding
	req.Header.Set("Content-Type", "application/octet-stream")
	req.ContentLength = int64(len(chal) + responseOverhead)
	req.Body = &lazyBody{b: b}
	req.GetBody = func() (io.ReadCloser, error) { return &lazyBody{b: b}, nil }
	return req, b, nil
}
