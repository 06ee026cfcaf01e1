package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/internal/httpserve"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// maxBodySize is the largest add-checkpoint body the witness reads: the old
// size line, 63 proof lines and a signed note of at most tlog.MaxNoteSize
// (the bound tlog.ParseAddCheckpointRequest enforces).
const maxBodySize = len("old ") + 20 + tlog.MaxWitnessProofLines*45 + 1 + tlog.MaxNoteSize

const (
	// cosignatureContentType is the Content-Type of a 200 add-checkpoint
	// response (signature lines) and of a monitoring checkpoint.
	cosignatureContentType = "text/plain; charset=utf-8"
	errorContentType       = "text/plain; charset=utf-8"
)

// server is the witness's HTTP interface: C2SP tlog-witness add-checkpoint
// and monitoring checkpoint, plus /healthz and /metrics.
type server struct {
	w       *tlog.Witness
	byHash  map[string]string // hex SHA-256(origin) → origin
	log     *slog.Logger
	reg     *prometheus.Registry
	m       *metrics
	now     func() time.Time
	healthy func(context.Context) error
}

type metrics struct {
	http         *httpserve.Metrics     // requests{handler, code}, duration{handler}
	cosignatures *prometheus.CounterVec // origin
	conflicts    *prometheus.CounterVec // origin
	inconsistent *prometheus.CounterVec // origin
	size         *prometheus.GaugeVec   // origin
	timestamp    *prometheus.GaugeVec   // origin
}

// newServer returns the HTTP server of witness w, which serves origins. Its
// metrics go to a registry of its own.
func newServer(w *tlog.Witness, origins []string, log *slog.Logger) *server {
	s := &server{
		w:       w,
		byHash:  map[string]string{},
		log:     log,
		reg:     prometheus.NewRegistry(),
		now:     time.Now,
		healthy: func(context.Context) error { return nil },
	}
	byOrigin := []string{"origin"}
	s.m = &metrics{
		cosignatures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_witness_cosignatures_total",
			Help: "Checkpoints cosigned (add-checkpoint 200 responses, one cosignature line per witness key each).",
		}, byOrigin),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_witness_conflicts_total",
			Help: "add-checkpoint requests refused with 409 Conflict: the old size was not the witnessed size.",
		}, byOrigin),
		inconsistent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_witness_inconsistent_total",
			Help: "Validly signed add-checkpoint requests refused with 422: inconsistent with the witnessed checkpoint (a failed proof or a split view).",
		}, byOrigin),
		size: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "moat_witness_cosigned_tree_size",
			Help: "Tree size of the latest checkpoint cosigned by this process.",
		}, byOrigin),
		timestamp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "moat_witness_cosigned_timestamp_seconds",
			Help: "Timestamp of the latest cosignature issued by this process.",
		}, byOrigin),
	}
	s.reg.MustRegister(s.m.cosignatures, s.m.conflicts, s.m.inconsistent, s.m.size, s.m.timestamp)
	s.m.http = httpserve.NewMetrics(s.reg, "moat_witness", "handler")
	httpserve.RegisterProcess(s.reg)
	for _, o := range origins {
		s.byHash[originFile(o)] = o
		// Expose zeroes for every configured log, so that rate() and
		// absence alerts work from the start.
		s.m.cosignatures.WithLabelValues(o)
		s.m.conflicts.WithLabelValues(o)
		s.m.inconsistent.WithLabelValues(o)
	}
	return s
}

// handler returns the HTTP handler.
func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /add-checkpoint", s.addCheckpoint)
	mux.HandleFunc("GET /{hash}/checkpoint", s.checkpoint)
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	return s.instrument(mux)
}

// instrument counts requests by route pattern (never by raw path, so that
// label cardinality stays bounded) and status.
func (s *server) instrument(next http.Handler) http.Handler {
	return httpserve.Instrument(next, s.m.http, nil)
}

// addCheckpoint is POST /add-checkpoint (C2SP tlog-witness).
func (s *server) addCheckpoint(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if r.ContentLength > int64(maxBodySize) {
		s.reply(w, r, http.StatusRequestEntityTooLarge, "request body too large", nil, start)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(maxBodySize)))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			s.reply(w, r, http.StatusRequestEntityTooLarge, "request body too large", nil, start)
		} else {
			s.reply(w, r, http.StatusBadRequest, "reading request body", nil, start)
		}
		return
	}
	req, err := tlog.ParseAddCheckpointRequest(body)
	if err != nil {
		s.reply(w, r, tlog.StatusCode(err), err.Error(), nil, start)
		return
	}
	attrs := []slog.Attr{slog.Uint64("old_size", req.OldSize)}
	origin := ""
	if c := noteCheckpoint(req.Checkpoint); c != nil {
		// Unverified until AddCheckpoint succeeds, but labels and logs
		// only ever carry configured origins.
		if _, ok := s.byHash[originFile(c.Origin)]; ok {
			origin = c.Origin
			attrs = append(attrs, slog.String("origin", origin))
		}
		attrs = append(attrs, slog.Uint64("size", c.Size), slog.String("root", c.Root.String()))
	}

	cosigs, err := s.w.AddCheckpoint(r.Context(), req, s.now())
	code := tlog.StatusCode(err)
	switch code {
	case http.StatusOK:
		s.m.cosignatures.WithLabelValues(origin).Inc()
		if c := noteCheckpoint(req.Checkpoint); c != nil {
			s.m.size.WithLabelValues(origin).Set(float64(c.Size))
			if next, _ := tlog.NextLogKey(c); next != nil {
				// Verified and recorded: the witness now requires next
				// for larger trees (docs/spec/tlog.md §Log key rotation).
				fp := sha256.Sum256(next.Bytes())
				s.log.LogAttrs(r.Context(), slog.LevelWarn, "log announced its next key; larger trees must be signed by it",
					slog.String("origin", origin), slog.Uint64("size", c.Size), slog.String("next_key_fingerprint", hex.EncodeToString(fp[:])))
			}
		}
		if cs, perr := tlog.ParseCosignatures(cosigs); perr == nil && len(cs) > 0 {
			s.m.timestamp.WithLabelValues(origin).Set(float64(cs[0].Timestamp))
		}
		w.Header().Set("Content-Type", cosignatureContentType)
		w.WriteHeader(http.StatusOK)
		w.Write(cosigs)
		s.logRequest(r, code, nil, start, attrs...)
		return
	case http.StatusConflict:
		s.m.conflicts.WithLabelValues(origin).Inc()
		conflict, _ := errors.AsType[*tlog.ConflictError](err)
		w.Header().Set("Content-Type", tlog.ConflictContentType)
		w.WriteHeader(http.StatusConflict)
		w.Write(conflict.Body())
		s.logRequest(r, code, err, start, append(attrs, slog.Uint64("witnessed_size", conflict.Size))...)
		return
	case http.StatusUnprocessableEntity:
		// The log signed this checkpoint, so keep it: it may be evidence
		// of a fork (tlog-witness: the witness MAY log such requests).
		s.m.inconsistent.WithLabelValues(origin).Inc()
		attrs = append(attrs, slog.String("checkpoint", string(req.Checkpoint)))
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	s.reply(w, r, code, msg, err, start, attrs...)
}

// noteCheckpoint parses the checkpoint text of a signed note, or returns
// nil. It verifies nothing: it is for logs and metrics only.
func noteCheckpoint(note []byte) *tlog.Checkpoint {
	text, _, ok := bytes.Cut(note, []byte("\n\n"))
	if !ok {
		return nil
	}
	c, err := tlog.ParseCheckpoint(append(text[:len(text):len(text)], '\n'))
	if err != nil {
		return nil
	}
	return c
}

// checkpoint is GET /<hex SHA-256(origin)>/checkpoint (C2SP tlog-witness
// §Monitor Retrieval Mechanism): the latest checkpoint cosigned, with the
// log's signatures and the witness's cosignatures.
func (s *server) checkpoint(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	origin, ok := s.byHash[r.PathValue("hash")]
	if !ok {
		s.reply(w, r, http.StatusNotFound, "unknown log", nil, start)
		return
	}
	cp, err := s.w.Checkpoint(r.Context(), origin)
	if err != nil {
		s.reply(w, r, tlog.StatusCode(err), "no checkpoint", err, start, slog.String("origin", origin))
		return
	}
	w.Header().Set("Content-Type", cosignatureContentType)
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(cp)
}

func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	if err := s.healthy(r.Context()); err != nil {
		s.log.LogAttrs(r.Context(), slog.LevelError, "health check failed", slog.Any("err", err))
		http.Error(w, "unhealthy", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "ok\n")
}

// reply writes an error response and logs the request. Internal errors are
// logged in full but answered with a generic message.
func (s *server) reply(w http.ResponseWriter, r *http.Request, code int, msg string, err error, start time.Time, attrs ...slog.Attr) {
	if code >= 500 {
		msg = "internal error"
	}
	if code == http.StatusRequestEntityTooLarge {
		// Do not drain the rest of an oversize body to reuse the connection.
		w.Header().Set("Connection", "close")
	}
	w.Header().Set("Content-Type", errorContentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
	if err == nil && code != http.StatusOK {
		err = errors.New(msg)
	}
	s.logRequest(r, code, err, start, attrs...)
}

func (s *server) logRequest(r *http.Request, code int, err error, start time.Time, attrs ...slog.Attr) {
	level := slog.LevelInfo
	switch {
	case code >= 500:
		level = slog.LevelError
	case code == http.StatusUnprocessableEntity || code == http.StatusForbidden:
		// 422 from a validly signed checkpoint may be evidence of a fork;
		// 403 may be a misconfigured log key.
		level = slog.LevelWarn
	}
	attrs = append([]slog.Attr{
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", code),
		slog.String("remote", r.RemoteAddr),
		slog.Duration("duration", time.Since(start)),
	}, attrs...)
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	s.log.LogAttrs(r.Context(), level, "request", attrs...)
}
