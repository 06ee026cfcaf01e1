// Package httpserve holds the HTTP plumbing that Moat's servers share: an
// http.Server with read-header, read, write and idle timeouts, header and
// HTTP/2 limits; graceful shutdown; request instrumentation (Prometheus
// counters by route pattern, a request log without raw paths or secrets);
// token-bucket rate limits; bounded body reads; and health endpoints.
//
// The key directory (keyserver/service), the relay (server/relay) and the
// witness (cmd/moat-witness) use it.
package httpserve

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Timeouts are an HTTP server's time limits.
type Timeouts struct {
	// ReadHeader bounds reading a request's headers (slowloris, T43).
	ReadHeader time.Duration
	// Read bounds reading a whole request, body included.
	Read time.Duration
	// Write bounds writing a response, from the end of the request
	// headers (slow readers, T43). Streaming handlers lift it per
	// connection (http.ResponseController) and keep their own deadlines.
	Write time.Duration
	// Idle bounds how long a keep-alive connection waits for its next
	// request.
	Idle time.Duration
	// Shutdown is how long a graceful shutdown waits for in-flight
	// requests.
	Shutdown time.Duration
}

// DefaultTimeouts are 5 s to read headers, 30 s to read a request or write
// a response, 120 s idle and 15 s for a graceful shutdown.
var DefaultTimeouts = Timeouts{
	ReadHeader: 5 * time.Second,
	Read:       30 * time.Second,
	Write:      30 * time.Second,
	Idle:       120 * time.Second,
	Shutdown:   15 * time.Second,
}

// HTTP/2 limits of NewServer.
const (
	// MaxConcurrentStreams bounds the streams of one HTTP/2 connection.
	MaxConcurrentStreams = 100
	// MaxReadFrameSize is the largest HTTP/2 frame a server reads.
	MaxReadFrameSize = 64 << 10
	// MaxDecoderHeaderTableSize bounds the HPACK decoder's table.
	MaxDecoderHeaderTableSize = 4 << 10
)

// Options configure NewServer. The zero value of a field selects its
// default.
type Options struct {
	// Timeouts; zero fields take DefaultTimeouts'.
	Timeouts Timeouts
	// MaxHeaderBytes bounds a request's headers. Default 16 KiB.
	MaxHeaderBytes int
	// Logger receives the server's own errors (TLS handshakes, bad
	// requests) at Warn. Default slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	d := DefaultTimeouts
	t := &o.Timeouts
	for _, f := range []struct{ v, d *time.Duration }{
		{&t.ReadHeader, &d.ReadHeader}, {&t.Read, &d.Read}, {&t.Write, &d.Write},
		{&t.Idle, &d.Idle}, {&t.Shutdown, &d.Shutdown},
	} {
		if *f.v == 0 {
			*f.v = *f.d
		}
	}
	if o.MaxHeaderBytes == 0 {
		o.MaxHeaderBytes = 16 << 10
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// NewServer returns an http.Server for h with o's timeouts and header
// limit, and HTTP/2 stream, frame and header-table limits. Go's HTTP/2
// server also bounds the resets a client may send (HTTP/2 rapid reset).
func NewServer(h http.Handler, o Options) *http.Server {
	o = o.withDefaults()
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: o.Timeouts.ReadHeader,
		ReadTimeout:       o.Timeouts.Read,
		WriteTimeout:      o.Timeouts.Write,
		IdleTimeout:       o.Timeouts.Idle,
		MaxHeaderBytes:    o.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn),
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:          MaxConcurrentStreams,
			MaxReadFrameSize:              MaxReadFrameSize,
			MaxDecoderHeaderTableSize:     MaxDecoderHeaderTableSize,
			MaxEncoderHeaderTableSize:     MaxDecoderHeaderTableSize,
			MaxReceiveBufferPerStream:     1 << 20,
			MaxReceiveBufferPerConnection: 4 << 20,
			PingTimeout:                   15 * time.Second,
			SendPingTimeout:               o.Timeouts.Idle,
			WriteByteTimeout:              o.Timeouts.Write,
		},
	}
}

// ServeConfig configures Serve.
type ServeConfig struct {
	// CertFile and KeyFile, both set, serve TLS (the server's TLSConfig,
	// or TLS 1.3 at least if it has none); both empty serve plaintext.
	CertFile, KeyFile string
	// Shutdown bounds the graceful shutdown. Default
	// DefaultTimeouts.Shutdown.
	Shutdown time.Duration
	// Logger logs the shutdown. Default slog.Default().
	Logger *slog.Logger
}

// Serve serves srv on ln until ctx is done, then shuts it down gracefully:
// it stops accepting connections and waits up to cfg.Shutdown for the
// requests in flight. It returns nil after a clean shutdown, or the error
// that stopped the server.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, cfg ServeConfig) error {
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return errors.New("httpserve: give both a certificate and a key file, or neither")
	}
	if cfg.Shutdown == 0 {
		cfg.Shutdown = DefaultTimeouts.Shutdown
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	errc := make(chan error, 1)
	go func() {
		if cfg.CertFile != "" {
			if srv.TLSConfig == nil {
				srv.TLSConfig = TLSConfig()
			}
			errc <- srv.ServeTLS(ln, cfg.CertFile, cfg.KeyFile)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", slog.Duration("timeout", cfg.Shutdown))
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Shutdown)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// IsLoopback reports whether addr's host is a loopback address or
// localhost, where a server may serve plaintext HTTP.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
