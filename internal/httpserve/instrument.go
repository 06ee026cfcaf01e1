package httpserve

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Content types.
const (
	ContentBinary = "application/octet-stream"
	ContentJSON   = "application/json"
	ContentText   = "text/plain; charset=utf-8"
)

// StatusWriter records the status code of a response.
type StatusWriter struct {
	http.ResponseWriter
	code int
}

// WriteHeader implements http.ResponseWriter.
func (w *StatusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (w *StatusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *StatusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Code returns the status written so far: 200 if only a body was, 0 if
// nothing was.
func (w *StatusWriter) Code() int { return w.code }

// Metrics are the request metrics of one server: a counter by route
// pattern and status code, and a latency histogram by route pattern. Route
// patterns, never raw paths, keep label cardinality bounded.
type Metrics struct {
	Requests *prometheus.CounterVec
	Duration *prometheus.HistogramVec

	// children caches the counter and histogram of each (route, code)
	// seen, so that a request does not hash its labels.
	children sync.Map // routeCode → *routeMetrics
}

type routeCode struct {
	route string
	code  int
}

type routeMetrics struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// observe counts a request of route answered with code that took d.
func (m *Metrics) observe(route string, code int, d time.Duration) {
	k := routeCode{route, code}
	v, ok := m.children.Load(k)
	if !ok {
		v, _ = m.children.LoadOrStore(k, &routeMetrics{
			requests: m.Requests.WithLabelValues(route, strconv.Itoa(code)),
			duration: m.Duration.WithLabelValues(route),
		})
	}
	rm := v.(*routeMetrics)
	rm.requests.Inc()
	rm.duration.Observe(d.Seconds())
}

// NewMetrics registers namespace_http_requests_total{routeLabel, code} and
// namespace_http_request_duration_seconds{routeLabel} with reg.
func NewMetrics(reg prometheus.Registerer, namespace, routeLabel string) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: namespace + "_http_requests_total",
			Help: "HTTP requests by route pattern and status code.",
		}, []string{routeLabel, "code"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    namespace + "_http_request_duration_seconds",
			Help:    "HTTP request latency by route pattern.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{routeLabel}),
	}
	reg.MustRegister(m.Requests, m.Duration)
	return m
}

// Route returns the pattern that matched r, or "unmatched".
func Route(r *http.Request) string {
	if r.Pattern == "" {
		return "unmatched"
	}
	return r.Pattern
}

// Instrument wraps next: it counts each request in m (if not nil) by route
// pattern and status, then calls done (if not nil) with the request, the
// route pattern, the status and the start time, for the caller's request
// log.
func Instrument(next http.Handler, m *Metrics, done func(r *http.Request, route string, code int, start time.Time)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &StatusWriter{ResponseWriter: w}
		w.Header()["X-Content-Type-Options"] = nosniff
		next.ServeHTTP(sw, r)
		route := Route(r)
		code := sw.code
		if code == 0 {
			code = http.StatusOK
		}
		if m != nil {
			m.observe(route, code, time.Since(start))
		}
		if done != nil {
			done(r, route, code, start)
		}
	})
}

// nosniff is the value of every response's X-Content-Type-Options,
// shared by all (a header value slice is never changed in place; its
// capacity is its length, so an append copies it).
var nosniff = []string{"nosniff"}

// LogLevel is the level of a request log line: Error for 5xx, Warn for
// 401, 403 and 429, Info otherwise.
func LogLevel(code int) slog.Level {
	switch {
	case code >= 500:
		return slog.LevelError
	case code == http.StatusUnauthorized || code == http.StatusForbidden || code == http.StatusTooManyRequests:
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// RegisterProcess adds the Go and process collectors to reg.
func RegisterProcess(reg prometheus.Registerer) {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

// HandleOps registers GET /healthz (always ok while the process serves),
// GET /readyz (ready() nil, else 503) and GET /metrics (reg) on mux.
// ready nil is always ready; reg nil serves no metrics.
func HandleOps(mux *http.ServeMux, ready func() error, reg prometheus.Gatherer) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ContentText)
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if ready != nil {
			if err := ready(); err != nil {
				w.Header().Set("Retry-After", "5")
				WriteError(w, http.StatusServiceUnavailable, err.Error())
				return
			}
		}
		w.Header().Set("Content-Type", ContentText)
		io.WriteString(w, "ready\n")
	})
	if reg != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	}
}

// WriteError writes a plain-text error response. A 413 closes the
// connection rather than drain the rest of an oversize body.
func WriteError(w http.ResponseWriter, code int, msg string) {
	if code == http.StatusRequestEntityTooLarge {
		w.Header().Set("Connection", "close")
	}
	w.Header().Set("Content-Type", ContentText)
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}

// RetryAfter sets Retry-After to wait, rounded up to whole seconds, at
// least one.
func RetryAfter(w http.ResponseWriter, wait time.Duration) {
	s := int64((wait + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.FormatInt(max(s, 1), 10))
}

// TooMany answers 429 with Retry-After.
func TooMany(w http.ResponseWriter, wait time.Duration) {
	RetryAfter(w, wait)
	WriteError(w, http.StatusTooManyRequests, "rate limited")
}

// Unavailable answers 503 with Retry-After.
func Unavailable(w http.ResponseWriter, wait time.Duration, msg string) {
	RetryAfter(w, wait)
	WriteError(w, http.StatusServiceUnavailable, msg)
}

// ReadBody reads a request body of at most limit bytes. It refuses a body
// whose Content-Length says it is larger with 413 before reading anything,
// and stops reading one that turns out larger at limit (T42). On failure
// it has written the response and returns false.
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	return ReadBodyInto(w, r, limit, nil)
}

// ReadBodyInto is ReadBody reading into buf's memory (from buf[:0]) while
// the body fits it, so that a caller can reuse one buffer across requests;
// the body it returns may alias buf, or be a new slice if buf was too
// small. A nil buf is ReadBody.
func ReadBodyInto(w http.ResponseWriter, r *http.Request, limit int64, buf []byte) ([]byte, bool) {
	if r.ContentLength > limit {
		WriteError(w, http.StatusRequestEntityTooLarge, "request body too large")
		return nil, false
	}
	size := limit
	if r.ContentLength >= 0 {
		size = r.ContentLength
	}
	b, err := readAll(http.MaxBytesReader(w, r.Body, limit), size, buf)
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			WriteError(w, http.StatusRequestEntityTooLarge, "request body too large")
		} else {
			WriteError(w, http.StatusBadRequest, "reading request body")
		}
		return nil, false
	}
	return b, true
}

// readAll reads r to the end into buf's memory while it fits, else into
// a buffer sized for hint bytes (at most 64 KiB up front: a declared
// length is not trusted with memory before the bytes arrive).
func readAll(r io.Reader, hint int64, buf []byte) ([]byte, error) {
	if hint <= int64(cap(buf)) || hint <= 64<<10 {
		// The usual case, a declared length within 64 KiB or within buf:
		// read exactly that, then check for the end with a byte on the
		// stack.
		var b []byte
		if hint <= int64(cap(buf)) {
			b = buf[:hint]
		} else {
			b = make([]byte, hint)
		}
		n, err := io.ReadFull(r, b)
		switch {
		case err == io.ErrUnexpectedEOF || err == io.EOF:
			return b[:n], nil // shorter than declared: the caller sees it
		case err != nil:
			return nil, err
		}
		var one [1]byte
		for {
			m, err := r.Read(one[:])
			if m > 0 {
				// Longer than declared: read on as before.
				b = append(b, one[0])
				break
			}
			if err == io.EOF {
				return b, nil
			}
			if err != nil {
				return nil, err
			}
		}
		return readRest(r, b)
	}
	if cap(buf) > 64<<10 {
		return readRest(r, buf[:0])
	}
	return readRest(r, make([]byte, 0, 64<<10+1))
}

// readRest reads r to the end, appending to b.
func readRest(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return nil, err
		}
	}
}
