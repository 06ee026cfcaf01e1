package relay_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/store/mailbox"
	"github.com/moat-im/moat/server/store/mailbox/memmailbox"
)

// The relay's cost per send without its store (docs/performance.md
// §Relay): a mailbox store that only counts (nullStore), MAC tokens, rate limits off, a
// warn-level logger (as moat-load's relay process), 1 KiB content sealed
// to 4,096-byte envelopes. For callgrind counts run them with
// .ci/instructions (GOMAXPROCS=1: the senders interleave on one thread,
// so receipt heads are still signed in batches).
//
//	BenchmarkSendCostHandler  the relay's handler alone: no HTTP, no TLS
//	BenchmarkSendCostTLS      POST /relay/v1/send over loopback TLS, HTTP/1.1
//	BenchmarkDiscardTLS       the same POSTs to a handler that discards them
//	BenchmarkSendBatchCostTLS 16 sends per POST /relay/v1/send-batch
//	BenchmarkDiscardBatchTLS  the same batches to the discarding handler
//
// SendCostTLS minus DiscardTLS is what the relay adds to HTTP and TLS;
// the client's cost is in both.

const (
	costSenders    = 32 // concurrent senders
	costRecipients = 16 // mailboxes
)

// costWorld is a relay with costRecipients devices that accept MAC
// tokens, one sealed envelope template per device and its token.
type costWorld struct {
	w     *world
	tmpl  [][]byte // an envelope per recipient
	auths [][]byte // its SendAuthorization
	next  atomic.Uint64
}

// nullStore is a mailbox store whose Enqueue only advances the
// mailbox's head (no copy, no digest, no deduplication): the relay's cost
// without its store's. The rest is memmailbox's.
type nullStore struct {
	*memmailbox.Store
	mu    sync.Mutex
	heads map[mailbox.ID]uint64
}

func (s *nullStore) Enqueue(_ context.Context, mb mailbox.ID, _ mailbox.Message) (mailbox.Receipt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.heads[mb]++
	return mailbox.Receipt{Seq: s.heads[mb]}, nil
}

// EnqueueBatch is Enqueue for each item (the embedded store's would
// store them).
func (s *nullStore) EnqueueBatch(_ context.Context, items []mailbox.Item, out []mailbox.Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, it := range items {
		s.heads[it.Mailbox]++
		out[i] = mailbox.Result{Receipt: mailbox.Receipt{Seq: s.heads[it.Mailbox]}}
	}
}

func (s *nullStore) Status(_ context.Context, mb mailbox.ID) (mailbox.Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return mailbox.Status{Head: s.heads[mb]}, nil
}

func newCostWorld(b *testing.B) *costWorld {
	quiet := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st := &nullStore{Store: must(memmailbox.New(memmailbox.Options{})), heads: map[mailbox.ID]uint64{}}
	cw := &costWorld{w: newWorld(b, worldOptions{logger: quiet, mbox: st})}
	a := cw.w.newDevice(tenantA, 0, 0)
	content := make([]byte, 1024)
	for range costRecipients {
		r := cw.w.newDevice(tenantA, 0, 0)
		cw.w.publish(r)
		cw.auths = append(cw.auths, cw.w.token(r, 1))
		cw.tmpl = append(cw.tmpl, envelope(b, a, r, content))
	}
	if len(cw.tmpl[0]) != 4096 {
		b.Fatalf("envelope of %d bytes", len(cw.tmpl[0]))
	}
	return cw
}

// envelope returns send i: the template of recipient i mod
// costRecipients with message id i+1 (the relay reads only the header),
// into buf.
func (cw *costWorld) envelope(buf []byte, i uint64) ([]byte, []byte) {
	k := i % costRecipients
	buf = append(buf[:0], cw.tmpl[k]...)
	off := 2 + len(sealed.MailboxID{})
	clear(buf[off : off+len(sealed.MessageID{})])
	binary.BigEndian.PutUint64(buf[off+8:], i+1)
	return buf, cw.auths[k]
}

// discardHandler reads the body and answers 160 bytes, as a receipt.
func discardHandler() http.Handler {
	receipt := make([]byte, 160)
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(receipt)
	})
}

// nullWriter is a ResponseWriter that keeps the status and drops the
// body.
type nullWriter struct {
	h    http.Header
	code int
}

func (n *nullWriter) Header() http.Header { return n.h }
func (n *nullWriter) WriteHeader(c int) {
	if n.code == 0 {
		n.code = c
	}
}
func (n *nullWriter) Write(p []byte) (int, error) {
	if n.code == 0 {
		n.code = http.StatusOK
	}
	return len(p), nil
}

func BenchmarkSendCostHandler(b *testing.B) {
	cw := newCostWorld(b)
	h := cw.w.relay.Handler()
	u := &url.URL{Path: "/relay/v1/send"}
	b.ReportAllocs()
	b.SetParallelism(costSenders)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var buf []byte
		nw := &nullWriter{h: http.Header{}}
		for pb.Next() {
			env, auth := cw.envelope(buf, cw.next.Add(1)-1)
			buf = env
			req := &http.Request{Method: http.MethodPost, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
				Header: http.Header{relay.HeaderSendAuthorization: {base64.RawURLEncoding.EncodeToString(auth)},
					"Content-Type": {"application/octet-stream"}},
				Body: io.NopCloser(bytes.NewReader(env)), ContentLength: int64(len(env)),
				Host: "relay.test", RemoteAddr: "127.0.0.1:40000", RequestURI: "/relay/v1/send"}
			clear(nw.h)
			nw.code = 0
			h.ServeHTTP(nw, req)
			if nw.code != http.StatusOK {
				b.Errorf("status %d", nw.code)
				return
			}
		}
	})
	b.StopTimer()
	reportReceiptsPerSig(b, cw.w)
}

// tlsServer serves h over TLS (HTTP/1.1 only) and returns its address
// and a client config that trusts it.
func tlsServer(b *testing.B, h http.Handler) (string, *tls.Config) {
	srv := httptest.NewUnstartedServer(h)
	srv.StartTLS()
	b.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return srv.Listener.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "example.com", NextProtos: []string{"http/1.1"}}
}

// h1 is a minimal keep-alive HTTP/1.1 client connection.
type h1 struct {
	c   *tls.Conn
	r   *bufio.Reader
	buf []byte
}

func dialH1(b *testing.B, addr string, cfg *tls.Config) *h1 {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		b.Fatal(err)
	}
	return &h1{c: c, r: bufio.NewReader(c)}
}

func (c *h1) post(path string, auth []byte, body []byte) (int, error) {
	b := append(c.buf[:0], "POST "...)
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: relay.test\r\nContent-Type: application/octet-stream\r\n"...)
	if auth != nil {
		b = append(b, relay.HeaderSendAuthorization+": "...)
		b = base64.RawURLEncoding.AppendEncode(b, auth)
		b = append(b, "\r\n"...)
	}
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	c.buf = b
	if _, err := c.c.Write(b); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}

// runTLS sends b.N envelopes to path, each sender over its own
// connection (its handshake is timed: .ci/instructions' difference of
// two runs cancels it).
func runTLS(b *testing.B, cw *costWorld, addr string, cfg *tls.Config, path string) {
	b.ReportAllocs()
	b.SetParallelism(costSenders)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := dialH1(b, addr, cfg)
		defer c.c.Close()
		var buf []byte
		for pb.Next() {
			env, auth := cw.envelope(buf, cw.next.Add(1)-1)
			buf = env
			code, err := c.post(path, auth, env)
			if err != nil || code != http.StatusOK {
				b.Errorf("status %d, %v", code, err)
				return
			}
		}
	})
	b.StopTimer()
}

func BenchmarkSendCostTLS(b *testing.B) {
	cw := newCostWorld(b)
	addr, cfg := tlsServer(b, cw.w.relay.Handler())
	runTLS(b, cw, addr, cfg, "/relay/v1/send")
	reportReceiptsPerSig(b, cw.w)
}

func BenchmarkDiscardTLS(b *testing.B) {
	cw := newCostWorld(b)
	addr, cfg := tlsServer(b, discardHandler())
	runTLS(b, cw, addr, cfg, "/loadtest/discard")
}

// BenchmarkSendBatchCostTLS sends b.N envelopes in batches of 16 (b.N is
// rounded up to whole batches); per op is per envelope.
func BenchmarkSendBatchCostTLS(b *testing.B) {
	cw := newCostWorld(b)
	addr, cfg := tlsServer(b, cw.w.relay.Handler())
	runBatchTLS(b, cw, addr, cfg, "/relay/v1/send-batch")
	reportReceiptsPerSig(b, cw.w)
}

// BenchmarkDiscardBatchTLS is BenchmarkSendBatchCostTLS's baseline: the
// same batches POSTed to a handler that discards them.
func BenchmarkDiscardBatchTLS(b *testing.B) {
	cw := newCostWorld(b)
	addr, cfg := tlsServer(b, discardHandler())
	runBatchTLS(b, cw, addr, cfg, "/loadtest/discard")
}

func runBatchTLS(b *testing.B, cw *costWorld, addr string, cfg *tls.Config, path string) {
	const k = 16
	conns := make(chan *h1, costSenders)
	for range costSenders {
		conns <- dialH1(b, addr, cfg)
	}
	batches := (b.N + k - 1) / k
	var left atomic.Int64
	left.Store(int64(batches))
	b.ReportAllocs()
	b.ResetTimer()
	done := make(chan error, costSenders)
	for range costSenders {
		go func() {
			c := <-conns
			defer c.c.Close()
			var bufs [k][]byte
			items := make([]relay.BatchItem, k)
			for left.Add(-1) >= 0 {
				for j := range k {
					env, auth := cw.envelope(bufs[j], cw.next.Add(1)-1)
					bufs[j] = env
					items[j] = relay.BatchItem{Auth: auth, Envelope: env}
				}
				body, err := relay.MarshalSendBatch(items)
				if err != nil {
					done <- err
					return
				}
				if code, err := c.post(path, nil, body); err != nil || code != http.StatusOK {
					done <- fmt.Errorf("status %d, %v", code, err)
					return
				}
			}
			done <- nil
		}()
	}
	for range costSenders {
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
}

func reportReceiptsPerSig(b *testing.B, w *world) {
	mfs, err := w.relay.Registry().Gather()
	if err != nil {
		b.Fatal(err)
	}
	var sends, sigs float64
	for _, mf := range mfs {
		switch mf.GetName() {
		case "moat_relay_receipt_signatures_total":
			sigs = mf.GetMetric()[0].GetCounter().GetValue()
		case "moat_relay_sends_total":
			for _, m := range mf.GetMetric() {
				sends += m.GetCounter().GetValue()
			}
		}
	}
	if sigs > 0 {
		b.ReportMetric(sends/sigs, "receipts/sig")
	}
}

// BenchmarkSendBatchCostHandler is BenchmarkSendCostHandler for batches
// of 16 (b.N rounded up to whole batches); per op is per envelope.
func BenchmarkSendBatchCostHandler(b *testing.B) {
	const k = 16
	cw := newCostWorld(b)
	h := cw.w.relay.Handler()
	u := &url.URL{Path: "/relay/v1/send-batch"}
	var left atomic.Int64
	left.Store(int64((b.N + k - 1) / k))
	b.ReportAllocs()
	b.SetParallelism(costSenders / 8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
		}
		var bufs [k][]byte
		items := make([]relay.BatchItem, k)
		nw := &nullWriter{h: http.Header{}}
		for left.Add(-1) >= 0 {
			for j := range k {
				env, auth := cw.envelope(bufs[j], cw.next.Add(1)-1)
				bufs[j] = env
				items[j] = relay.BatchItem{Auth: auth, Envelope: env}
			}
			body, err := relay.MarshalSendBatch(items)
			if err != nil {
				b.Error(err)
				return
			}
			req := &http.Request{Method: http.MethodPost, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
				Header: http.Header{"Content-Type": {"application/octet-stream"}},
				Body:   io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
				Host: "relay.test", RemoteAddr: "127.0.0.1:40000", RequestURI: "/relay/v1/send-batch"}
			clear(nw.h)
			nw.code = 0
			h.ServeHTTP(nw, req)
			if nw.code != http.StatusOK {
				b.Errorf("status %d", nw.code)
				return
			}
		}
	})
	b.StopTimer()
	reportReceiptsPerSig(b, cw.w)
}
