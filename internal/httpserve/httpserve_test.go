package httpserve

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := NewLimiter(Rate{PerSecond: 1, Burst: 2}, 2, func() time.Time { return now })
	for i := range 2 {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatalf("request %d refused", i)
		}
	}
	ok, wait := l.Allow("a")
	if ok || wait < time.Second {
		t.Fatalf("third request: ok %v, wait %v", ok, wait)
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Fatal("another key is limited")
	}
	// Full of buckets that have not refilled: a new key is refused.
	if ok, _ := l.Allow("c"); ok {
		t.Fatal("a third key was let in past max buckets")
	}
	now = now.Add(3 * time.Second)
	if ok, _ := l.Allow("c"); !ok {
		t.Fatal("refilled buckets were not forgotten")
	}
	var nilL *Limiter
	if ok, _ := nilL.Allow("x"); !ok {
		t.Fatal("nil limiter refused")
	}
}

func TestClientKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1:443":           "192.0.2.1",
		"10.0.0.1:65535":          "10.0.0.1",
		"010.0.0.1:1":             "010.0.0.1", // not an address netip accepts: the host, as before
		"[2001:db8:1:2:3::4]:443": "2001:db8:1:2::/64",
		"[::ffff:192.0.2.7]:1":    "192.0.2.7",
		"not an address":          "not an address",
	} {
		if got := ClientKey(in); got != want {
			t.Errorf("ClientKey(%q) = %q, want %q", in, got, want)
		}
	}
	if n := testing.AllocsPerRun(10, func() { ClientKey("192.0.2.1:443") }); n != 0 {
		t.Errorf("ClientKey of an IPv4 address allocates %v times", n)
	}
}

// TestReadBody: a declared length over the limit is refused before any
// byte is read; an undeclared one is cut at the limit.
func TestReadBody(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := ReadBody(w, r, 10)
		if ok {
			w.Write(b)
		}
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	post := func(body io.Reader, n int64) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, body)
		req.ContentLength = n
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := post(strings.NewReader("0123456789"), 10); c != 200 {
		t.Fatalf("10 bytes: %d", c)
	}
	// Claims 1 GiB, sends nothing: refused from the header alone.
	if c := post(&blockingReader{}, 1<<30); c != http.StatusRequestEntityTooLarge {
		t.Fatalf("declared 1 GiB: %d", c)
	}
	if c := post(io.MultiReader(strings.NewReader("0123456789"), strings.NewReader("x")), -1); c != http.StatusRequestEntityTooLarge {
		t.Fatalf("11 chunked bytes: %d", c)
	}
}

// blockingReader never returns data: a request that reads it would hang.
type blockingReader struct{}

func (*blockingReader) Read([]byte) (int, error) { select {} }

func TestInstrumentAndOps(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, "moat_test", "route")
	mux := http.NewServeMux()
	ready := false
	HandleOps(mux, func() error {
		if !ready {
			return io.ErrUnexpectedEOF
		}
		return nil
	}, reg)
	mux.HandleFunc("GET /x/{id}", func(w http.ResponseWriter, r *http.Request) { TooMany(w, 1500*time.Millisecond) })
	var logged []string
	srv := httptest.NewServer(Instrument(mux, m, func(r *http.Request, route string, code int, _ time.Time) {
		logged = append(logged, route)
	}))
	defer srv.Close()
	get := func(p string) *http.Response {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := get("/x/secret-id"); r.StatusCode != 429 || r.Header.Get("Retry-After") != "2" {
		t.Fatalf("429: %d %q", r.StatusCode, r.Header.Get("Retry-After"))
	}
	if r := get("/readyz"); r.StatusCode != 503 {
		t.Fatalf("readyz not ready: %d", r.StatusCode)
	}
	ready = true
	if r := get("/readyz"); r.StatusCode != 200 {
		t.Fatalf("readyz ready: %d", r.StatusCode)
	}
	resp, _ := http.Get(srv.URL + "/metrics")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(body, []byte(`moat_test_http_requests_total{code="429",route="GET /x/{id}"} 1`)) {
		t.Fatalf("metrics:\n%s", body)
	}
	if bytes.Contains(body, []byte("secret-id")) || strings.Contains(strings.Join(logged, " "), "secret-id") {
		t.Fatal("a raw path reached the metrics or the log")
	}
}

// TestServeShutdown: Serve returns nil once ctx is done and the requests
// in flight have finished.
func TestServeShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	srv := NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "done")
	}), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- Serve(ctx, srv, ln, ServeConfig{}) }()
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String())
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-started
	cancel()
	close(release)
	if s := <-got; s != "done" {
		t.Fatalf("in-flight request: %q", s)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestReadBodyInto: a body that fits the buffer is read into its memory,
// whatever its declared length; one that does not is read into a new
// slice; the limits are ReadBody's.
func TestReadBodyInto(t *testing.T) {
	read := func(body string, declared, limit int64, buf []byte) ([]byte, bool, int) {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		r.ContentLength = declared
		w := httptest.NewRecorder()
		b, ok := ReadBodyInto(w, r, limit, buf)
		return b, ok, w.Code
	}
	big := strings.Repeat("a", 70<<10)
	for _, tc := range []struct {
		name     string
		body     string
		declared int64
		bufCap   int
		alias    bool
	}{
		{"fits", "0123456789", 10, 16, true},
		{"fits, undeclared", "0123456789", -1, 16, false}, // hint is the limit, beyond the buffer
		{"larger than the buffer", "0123456789", 10, 4, false},
		{"over 64 KiB, fits", big, int64(len(big)), 80 << 10, true},
		{"over 64 KiB, undeclared, fits", big, -1, 80 << 10, true},
		{"over 64 KiB, larger than the buffer", big, int64(len(big)), 1 << 10, false},
		{"shorter than declared", "01234", 10, 16, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			buf := make([]byte, 3, tc.bufCap)
			b, ok, code := read(tc.body, tc.declared, 1<<20, buf)
			if !ok || string(b) != tc.body {
				t.Fatalf("read %d bytes, ok %v, code %d", len(b), ok, code)
			}
			if alias := cap(b) > 0 && &b[:1][0] == &buf[:1][0]; alias != tc.alias {
				t.Fatalf("aliases the buffer: %v, want %v", alias, tc.alias)
			}
		})
	}
	buf := make([]byte, 0, 64)
	if _, ok, code := read("0123456789", 10, 5, buf); ok || code != http.StatusRequestEntityTooLarge {
		t.Fatalf("declared over the limit: ok %v, code %d", ok, code)
	}
	if _, ok, code := read("0123456789", -1, 5, buf); ok || code != http.StatusRequestEntityTooLarge {
		t.Fatalf("undeclared over the limit: ok %v, code %d", ok, code)
	}
	if _, ok, code := read("0123456789x", 10, 10, buf); ok || code != http.StatusRequestEntityTooLarge {
		t.Fatalf("longer than declared, over the limit: ok %v, code %d", ok, code)
	}
}
