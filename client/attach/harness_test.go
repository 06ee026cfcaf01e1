package attach_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/store/blob"
	"github.com/moat-im/moat/server/store/blob/memblob"
	"github.com/moat-im/moat/server/store/mailbox/memmailbox"
	"github.com/moat-im/moat/server/store/prekey/memprekey"
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func ok(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// env is a relay serving attachments on loopback HTTP, a device client and
// an anonymous client, both through a fault-injecting transport.
type env struct {
	t       testing.TB
	srv     *httptest.Server
	handler atomic.Pointer[http.Handler]
	opts    relay.Options
	relay   *relay.Relay
	faults  *faultTransport
	logs    *logBuffer
	dev     *relay.Client
	anon    *relay.Client
}

func newEnv(t testing.TB, store blob.Store) *env { return newEnvTLS(t, store, false) }

// newEnvTLS is newEnv, serving HTTP/2 over TLS if tls is set.
func newEnvTLS(t testing.TB, store blob.Store, tls bool) *env {
	t.Helper()
	if store == nil {
		store = must(memblob.New(memblob.Options{}))
	}
	off := relay.Rate{PerSecond: -1}
	dir := relay.NewMemoryDirectory()
	e := &env{t: t, logs: &logBuffer{}}
	e.opts = relay.Options{
		Name: "relay.test", SigningKey: must(keys.GenerateRelaySigningKey(rand.Reader)), Directory: dir,
		Mailboxes: must(memmailbox.New(memmailbox.Options{})), Prekeys: memprekey.New(0), Blobs: store,
		Limits: relay.Limits{PerAddress: off, Challenge: off, PerDevice: off, PerTenant: off,
			SendPerAddress: off, SendPerToken: off, SendPerMailbox: off, BundlePerTarget: off},
		AttachmentLimits: relay.AttachmentLimits{MaxSize: 4 << 30, SweepInterval: -1},
		Logger:           slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	e.restart()
	e.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*e.handler.Load()).ServeHTTP(w, r)
	}))
	e.faults = &faultTransport{base: http.DefaultTransport}
	if tls {
		e.srv.EnableHTTP2 = true
		e.srv.StartTLS()
		e.faults.base = e.srv.Client().Transport
	} else {
		e.srv.Start()
	}
	t.Cleanup(func() { e.srv.Close(); e.relay.Close() })
	hc := &http.Client{Transport: e.faults}
	tenant, device := [16]byte{0x7a, 1}, [16]byte{0xde, 1}
	idk := must(keys.GenerateDeviceIdentity(rand.Reader))
	dir.Add(tenant, device, [16]byte{0xa0, 1}, idk.Public(), time.Now().Add(24*time.Hour))
	e.dev = &relay.Client{BaseURL: e.srv.URL, Name: "relay.test", RelayKey: e.opts.SigningKey.Public(), HTTP: hc,
		Device: &relay.DeviceCredentials{Tenant: tenant, Device: device, Key: idk.Signing}}
	e.anon = &relay.Client{BaseURL: e.srv.URL, RelayKey: e.opts.SigningKey.Public(), HTTP: hc}
	return e
}

// restart replaces the relay by a new instance over the same stores: its
// sessions are gone.
func (e *env) restart() {
	if e.relay != nil {
		e.relay.Close()
	}
	e.opts.Registry = nil
	e.relay = must(relay.New(e.opts))
	h := e.relay.Handler()
	e.handler.Store(&h)
}

// fault is what the transport does to one request.
type fault int

const (
	pass       fault = iota
	dropAnswer       // forward, then lose the answer
	cutRequest       // send half the body, then fail
	answer503        // answer 503 without forwarding
	cutAnswer        // forward, then break the answer's body halfway
	restart          // restart the relay, then forward
)

// faultTransport injects faults into requests chosen by plan, which sees
// each request's method, path and its number among requests of that
// method and path kind.
type faultTransport struct {
	base http.RoundTripper
	plan func(kind string, n int) fault
	env  *env

	mu       sync.Mutex
	counts   map[string]int
	injected map[fault]int
}

// kind names a request: its method and its last path element.
func kind(r *http.Request) string {
	p := r.URL.Path
	if strings.HasPrefix(p, "/relay/v1/attachments/") {
		switch {
		case strings.HasSuffix(p, "/upload"):
			return r.Method + " upload"
		case strings.HasSuffix(p, "/finalize"):
			return r.Method + " finalize"
		default:
			return r.Method + " blob"
		}
	}
	return r.Method + " " + p
}

func (f *faultTransport) count(k string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[k]
}

func (f *faultTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	k := kind(r)
	f.mu.Lock()
	if f.counts == nil {
		f.counts, f.injected = map[string]int{}, map[fault]int{}
	}
	f.counts[k]++
	n := f.counts[k]
	what := pass
	if f.plan != nil {
		what = f.plan(k, n)
	}
	if what != pass {
		f.injected[what]++
	}
	f.mu.Unlock()
	injected := errors.New("injected: connection reset")
	switch what {
	case dropAnswer:
		resp, err := f.base.RoundTrip(r)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return nil, injected
	case cutRequest:
		r = r.Clone(r.Context())
		b := must(io.ReadAll(r.Body))
		r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(b[:len(b)/2]), errReader{injected}))
		if resp, err := f.base.RoundTrip(r); err == nil {
			resp.Body.Close()
		}
		return nil, injected
	case answer503:
		if r.Body != nil {
			r.Body.Close()
		}
		return &http.Response{StatusCode: 503, Status: "503 Service Unavailable", Header: http.Header{},
			Body: io.NopCloser(strings.NewReader("injected")), Request: r}, nil
	case cutAnswer:
		resp, err := f.base.RoundTrip(r)
		if err != nil {
			return nil, err
		}
		resp.Body = &cutBody{rc: resp.Body, left: resp.ContentLength / 2, err: injected}
		return resp, nil
	case restart:
		f.env.restart()
	}
	return f.base.RoundTrip(r)
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

type cutBody struct {
	rc   io.ReadCloser
	left int64
	err  error
}

func (c *cutBody) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, c.err
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.rc.Read(p)
	c.left -= int64(n)
	return n, err
}

func (c *cutBody) Close() error { return c.rc.Close() }

// gen returns a generator of n pseudo-random bytes from seed: a file
// that is never in memory.
func gen(seed uint64, n int64) io.Reader {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	return io.LimitReader(mrand.NewChaCha8(s), n)
}

// checker is a writer that compares what it receives with gen(seed).
type checker struct {
	want io.Reader
	n    int64
	buf  []byte
	bad  error
}

func newChecker(seed uint64) *checker {
	return &checker{want: gen(seed, 1<<62), buf: make([]byte, 64<<10)}
}

func (c *checker) Write(p []byte) (int, error) {
	for off := 0; off < len(p); {
		k := min(len(p)-off, len(c.buf))
		io.ReadFull(c.want, c.buf[:k])
		if c.bad == nil && !bytes.Equal(c.buf[:k], p[off:off+k]) {
			c.bad = fmt.Errorf("plaintext differs in the %d bytes from %d", k, c.n+int64(off))
		}
		off += k
	}
	c.n += int64(len(p))
	return len(p), nil
}

var bg = context.Background()

// logBuffer collects log output, safe for concurrent writes.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
