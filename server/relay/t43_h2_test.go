package relay_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/moat-im/moat/internal/httpserve"
)

// HTTP/2 frame types, flags, settings and error codes (RFC 9113 §6, §7)
// that the raw client of TestT43HTTP2Streams uses. golang.org/x/net/http2
// is not a dependency of the module, and the standard library's client
// neither exceeds a server's stream limit nor resets streams on demand, so
// the test writes frames itself.
const (
	h2Headers  = 0x1
	h2RST      = 0x3
	h2Settings = 0x4
	h2Ping     = 0x6
	h2GoAway   = 0x7

	h2FlagAck        = 0x1 // SETTINGS, PING
	h2FlagEndStream  = 0x1 // HEADERS
	h2FlagEndHeaders = 0x4 // HEADERS

	h2SettingHeaderTableSize      = 0x1
	h2SettingMaxConcurrentStreams = 0x3
	h2SettingMaxFrameSize         = 0x5

	h2ErrProtocol      = 0x1
	h2ErrCancel        = 0x8
	h2ErrRefusedStream = 0x7
)

type h2frame struct {
	typ, flags byte
	stream     uint32
	payload    []byte
}

// h2client is a raw HTTP/2 connection over TLS: it writes the frames the
// test asks for and hands the server's frames to next.
type h2client struct {
	t      testing.TB
	conn   *tls.Conn
	bw     *bufio.Writer
	frames chan h2frame
	done   chan struct{}
}

func dialH2(t testing.TB, srv *httptest.Server) *h2client {
	t.Helper()
	cfg := srv.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	cfg.NextProtos = []string{"h2"}
	conn := must(tls.Dial("tcp", srv.Listener.Addr().String(), cfg))
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN %q, want h2", p)
	}
	conn.SetDeadline(time.Now().Add(60 * time.Second)) // a bound for a broken server, not a timing assertion
	c := &h2client{t: t, conn: conn, bw: bufio.NewWriter(conn), frames: make(chan h2frame), done: make(chan struct{})}
	t.Cleanup(func() { close(c.done); conn.Close() })
	go c.read()
	io.WriteString(c.bw, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	c.frame(h2Settings, 0, 0, nil)
	c.flush()
	return c
}

func (c *h2client) read() {
	defer close(c.frames)
	var hdr [9]byte
	for {
		if _, err := io.ReadFull(c.conn, hdr[:]); err != nil {
			return
		}
		f := h2frame{typ: hdr[3], flags: hdr[4], stream: binary.BigEndian.Uint32(hdr[5:]) & (1<<31 - 1)}
		f.payload = make([]byte, int(hdr[0])<<16|int(hdr[1])<<8|int(hdr[2]))
		if _, err := io.ReadFull(c.conn, f.payload); err != nil {
			return
		}
		select {
		case c.frames <- f:
		case <-c.done:
			return
		}
	}
}

// next returns the server's next frame that match accepts; false if the
// connection ended first.
func (c *h2client) next(match func(h2frame) bool) (h2frame, bool) {
	for f := range c.frames {
		if f.typ == h2Settings && f.flags&h2FlagAck == 0 {
			c.frame(h2Settings, h2FlagAck, 0, nil)
			c.flush()
		}
		if match(f) {
			return f, true
		}
	}
	return h2frame{}, false
}

// frame buffers one frame; write errors surface at flush.
func (c *h2client) frame(typ, flags byte, stream uint32, payload []byte) {
	var hdr [9]byte
	hdr[0], hdr[1], hdr[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	hdr[3], hdr[4] = typ, flags
	binary.BigEndian.PutUint32(hdr[5:], stream)
	c.bw.Write(hdr[:])
	c.bw.Write(payload)
}

func (c *h2client) flush() error { return c.bw.Flush() }

// request buffers a HEADERS frame for method path on stream. A POST
// declares a 100-byte body that never comes, so its handler waits.
func (c *h2client) request(stream uint32, method, path string) {
	// HPACK (RFC 7541): indexed static entries for :method (GET 2, POST
	// 3) and :scheme https (7); literals without indexing, indexed names
	// :authority (1), :path (4), content-length (28), no Huffman coding.
	lit := func(b []byte, name byte, v string) []byte {
		if name < 15 {
			b = append(b, name)
		} else {
			b = append(b, 0x0f, name-15)
		}
		return append(append(b, byte(len(v))), v...)
	}
	b := []byte{0x82, 0x87}
	flags := byte(h2FlagEndHeaders | h2FlagEndStream)
	b = lit(b, 1, "relay.test")
	b = lit(b, 4, path)
	if method == http.MethodPost {
		b[0], flags = 0x83, h2FlagEndHeaders
		b = lit(b, 28, "100")
	}
	c.frame(h2Headers, flags, stream, b)
}

func (c *h2client) reset(stream uint32) {
	c.frame(h2RST, 0, stream, binary.BigEndian.AppendUint32(nil, h2ErrCancel))
}

// TestT43HTTP2Streams: over TLS with HTTP/2, the relay's server announces
// the stream, frame and header-table limits of internal/httpserve; a
// client that opens more concurrent streams than allowed has the extra
// stream refused, and gets new streams once it closes old ones; a client
// that opens and at once resets streams in a burst (HTTP/2 rapid reset,
// CVE-2023-44487) never has more handlers running than the stream limit;
// and through both, other clients are served.
func TestT43HTTP2Streams(t *testing.T) {
	w := newWorld(t, worldOptions{})
	a := w.newDevice(tenantA, 0, 0)
	// The handlers running at once, and the most seen, per connection
	// (client address).
	var mu sync.Mutex
	inflight, peak := map[string]int{}, map[string]int{}
	h := w.relay.Handler()
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = httpserve.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		mu.Lock()
		inflight[req.RemoteAddr]++
		peak[req.RemoteAddr] = max(peak[req.RemoteAddr], inflight[req.RemoteAddr])
		mu.Unlock()
		defer func() { mu.Lock(); inflight[req.RemoteAddr]--; mu.Unlock() }()
		h.ServeHTTP(rw, req)
	}), httpserve.Options{Logger: slog.New(slog.DiscardHandler)})
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	ctx := context.Background()
	served := func(what string) {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL + "/healthz")
		ok(t, err)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			t.Fatalf("%s: another client got %d over %s", what, resp.StatusCode, resp.Proto)
		}
		c := w.client(a)
		c.BaseURL, c.HTTP = srv.URL, srv.Client()
		_, err = c.Fetch(ctx, 0, 1)
		ok(t, err)
	}
	const session = "/relay/v1/auth/session?purpose=mailbox"

	// The server's SETTINGS carry the limits.
	c := dialH2(t, srv)
	f, alive := c.next(func(f h2frame) bool { return f.typ == h2Settings && f.flags&h2FlagAck == 0 })
	if !alive {
		t.Fatal("no SETTINGS from the server")
	}
	settings := map[uint16]uint32{}
	for p := f.payload; len(p) >= 6; p = p[6:] {
		settings[binary.BigEndian.Uint16(p)] = binary.BigEndian.Uint32(p[2:])
	}
	for id, want := range map[uint16]uint32{
		h2SettingMaxConcurrentStreams: httpserve.MaxConcurrentStreams,
		h2SettingMaxFrameSize:         httpserve.MaxReadFrameSize,
		h2SettingHeaderTableSize:      httpserve.MaxDecoderHeaderTableSize,
	} {
		if settings[id] != want {
			t.Errorf("setting %#x: %d, want %d", id, settings[id], want)
		}
	}

	// MaxConcurrentStreams streams whose handlers wait for a body, then
	// one more: refused with RST_STREAM.
	stream := uint32(1)
	for range httpserve.MaxConcurrentStreams {
		c.request(stream, http.MethodPost, session)
		stream += 2
	}
	extra := stream
	c.request(extra, http.MethodPost, session)
	ok(t, c.flush())
	f, alive = c.next(func(f h2frame) bool { return f.typ == h2RST || f.typ == h2GoAway })
	if !alive || f.typ != h2RST || f.stream != extra {
		t.Fatalf("stream %d past the limit: frame %+v (connection alive: %v), want RST_STREAM", extra, f, alive)
	}
	if code := binary.BigEndian.Uint32(f.payload); code != h2ErrRefusedStream && code != h2ErrProtocol {
		t.Fatalf("stream past the limit reset with error %#x", code)
	}
	served("with a connection at its stream limit")
	// Once its streams are closed, the connection may open new ones.
	for s := uint32(1); s < extra; s += 2 {
		c.reset(s)
	}
	stream = extra + 2
	c.request(stream, http.MethodGet, "/healthz")
	ok(t, c.flush())
	if _, alive = c.next(func(f h2frame) bool { return f.typ == h2Headers && f.stream == stream }); !alive {
		t.Fatal("no response on a new stream after the old ones were reset")
	}

	// Rapid reset: thousands of streams opened and reset at once.
	r := dialH2(t, srv)
	const burst = 5000
	stream = 1
	for i := range burst {
		r.request(stream, http.MethodPost, session)
		r.reset(stream)
		stream += 2
		if i%100 == 99 && r.flush() != nil {
			break // the server may close the connection (GOAWAY ENHANCE_YOUR_CALM)
		}
	}
	// The connection either still answers a PING or was closed by the
	// server; both are fine, what matters is what it cost the server.
	r.frame(h2Ping, 0, 0, []byte("moat-t43"))
	if r.flush() == nil {
		f, _ := r.next(func(f h2frame) bool { return f.typ == h2Ping && f.flags&h2FlagAck != 0 || f.typ == h2GoAway })
		t.Logf("after the burst the connection answered with frame type %d", f.typ)
	}
	mu.Lock()
	for addr, p := range peak {
		if p > httpserve.MaxConcurrentStreams {
			t.Errorf("%d handlers of one connection ran at once, past the stream limit of %d", p, httpserve.MaxConcurrentStreams)
		}
		if addr == r.conn.LocalAddr().String() {
			t.Logf("rapid reset: %d streams, at most %d handlers at once", (stream-1)/2, p)
		}
	}
	mu.Unlock()
	served("after a rapid-reset burst")
}
