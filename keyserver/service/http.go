package service

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/internal/httpserve"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/store"
)

// Content types.
const (
	contentBinary = httpserve.ContentBinary
	contentJSON   = httpserve.ContentJSON
	contentText   = httpserve.ContentText
)

// Handler returns the service's HTTP handler: the /v1 API of
// docs/spec/directory-api.md, /healthz, /readyz and /metrics.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	httpserve.HandleOps(mux, s.Ready, s.reg)
	mux.HandleFunc("GET /v1/{tenant}/trust-bundle", s.tenantRoute(s.getTrustBundle))
	mux.HandleFunc("GET /v1/{tenant}/checkpoint", s.tenantRoute(s.getCheckpoint))
	mux.HandleFunc("GET /v1/{tenant}/consistency", s.tenantRoute(s.getConsistency))
	mux.HandleFunc("GET /v1/{tenant}/transitions", s.tenantRoute(s.getTransitions))
	mux.HandleFunc("GET /v1/{tenant}/lookup/{user}", s.tenantRoute(s.getLookup))
	mux.HandleFunc("GET /v1/{tenant}/org/{name...}", s.tenantRoute(s.getOrgLookup))
	mux.HandleFunc("GET /v1/{tenant}/history/{user}", s.tenantRoute(s.getHistory))
	mux.HandleFunc("GET /v1/{tenant}/org-history/{name...}", s.tenantRoute(s.getOrgHistory))
	mux.HandleFunc("GET /v1/{tenant}/monitor/{user}", s.tenantRoute(s.getMonitor))
	mux.HandleFunc("GET /v1/{tenant}/wipe", s.tenantRoute(s.getWipe))
	mux.HandleFunc("POST /v1/{tenant}/enrol", s.tenantRoute(s.postEnrol))
	mux.HandleFunc("POST /v1/{tenant}/admin/{op}", s.tenantRoute(s.postAdmin))
	return s.instrument(mux)
}

// instrument applies the per-address rate limit to /v1, counts requests
// by route pattern and status, and writes the access log: method, route
// pattern, tenant, status and duration. It never logs raw paths, user or
// device ids, codes or addresses.
func (s *Service) instrument(next http.Handler) http.Handler {
	limited := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.URL.Path) >= 4 && r.URL.Path[:4] == "/v1/" {
			if ok, wait := s.ipLimit.Allow(httpserve.ClientKey(r.RemoteAddr)); !ok {
				s.met.rateLimited.WithLabelValues("ip").Inc()
				tooMany(w, wait)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
	return httpserve.Instrument(limited, s.met.http, func(r *http.Request, route string, code int, start time.Time) {
		tenant := "-"
		if id, err := ParseTenantID(r.PathValue("tenant")); err == nil && s.tenants[id] != nil {
			tenant = id.String()
		}
		if code == http.StatusTooManyRequests && route == "unmatched" {
			route = "rate-limited"
		}
		s.opts.Logger.LogAttrs(r.Context(), httpserve.LogLevel(code), "request",
			slog.String("route", route), slog.String("tenant", tenant),
			slog.Int("status", code), slog.Duration("duration", time.Since(start)))
	})
}

var (
	tooMany    = httpserve.TooMany
	writeError = httpserve.WriteError
	readBody   = httpserve.ReadBody
)

func writeBinary(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", contentBinary)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal error")
		return
	}
	w.Header().Set("Content-Type", contentJSON)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(append(b, '\n'))
}

// tenantRoute resolves the tenant of the path, applies the per-tenant rate
// limit, and calls h.
func (s *Service) tenantRoute(h func(http.ResponseWriter, *http.Request, *Tenant)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := ParseTenantID(r.PathValue("tenant"))
		t := s.tenants[id]
		if err != nil || t == nil {
			writeError(w, http.StatusNotFound, "unknown tenant")
			return
		}
		if ok, wait := s.tenantLimit.Allow(id.String()); !ok {
			s.met.rateLimited.WithLabelValues("tenant").Inc()
			tooMany(w, wait)
			return
		}
		h(w, r, t)
	}
}

// sizeParam parses a tree size query parameter: absent is 0.
func sizeParam(r *http.Request, name string) (uint64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n > tlog.MaxTreeSize || strconv.FormatUint(n, 10) != v {
		return 0, fmt.Errorf("bad %s", name)
	}
	return n, nil
}

// readError writes the error of a read operation.
func (s *Service) readError(w http.ResponseWriter, t *Tenant, err error) {
	var ahead *errAhead
	var since *errSince
	var start *errStart
	switch {
	case errors.Is(err, errNotServing):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "no cosigned checkpoint yet")
	case errors.As(err, &ahead):
		// The client trusts a larger tree than the one served (a restart,
		// or another replica): it should ask again later, and must not
		// accept a smaller tree.
		w.Header().Set("Content-Type", tlog.ConflictContentType)
		w.WriteHeader(http.StatusConflict)
		fmt.Fprintf(w, "%d\n", ahead.served)
	case errors.As(err, &since):
		writeError(w, http.StatusBadRequest, "since is after the latest version")
	case errors.As(err, &start):
		writeError(w, http.StatusBadRequest, "start is after the served epoch")
	case errors.Is(err, context.Canceled):
		writeError(w, http.StatusServiceUnavailable, "canceled")
	default:
		if errors.Is(err, store.ErrCorrupt) {
			t.log.Error("ALARM: corrupt store", slog.Any("err", err))
		} else {
			t.log.Error("read failed", slog.Any("err", err))
		}
		writeError(w, http.StatusInternalServerError, "internal error")
	}
}

func (s *Service) getTrustBundle(w http.ResponseWriter, r *http.Request, t *Tenant) {
	writeBinary(w, t.trust.Load().enc)
}

func (s *Service) getCheckpoint(w http.ResponseWriter, r *http.Request, t *Tenant) {
	sv, err := t.servedState()
	if err != nil {
		s.readError(w, t, err)
		return
	}
	w.Header().Set("Content-Type", contentText)
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(sv.note)
}

func (s *Service) getConsistency(w http.ResponseWriter, r *http.Request, t *Tenant) {
	from, err := sizeParam(r, "from")
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var to uint64
	if r.URL.Query().Has("to") {
		if to, err = sizeParam(r, "to"); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	resp, err := t.Consistency(r.Context(), from)
	if err != nil {
		s.readError(w, t, err)
		return
	}
	if r.URL.Query().Has("to") && to != t.served.Load().size {
		// Only the latest cosigned checkpoint is served.
		s.readError(w, t, &errAhead{t.served.Load().size})
		return
	}
	b, err := resp.Marshal()
	if err != nil {
		s.readError(w, t, err)
		return
	}
	writeBinary(w, b)
}

// getTransitions serves the transitions after the trust bundle of
// sequence after, to a client at tree size size (§Transitions). It is
// public, like the trust bundle and the checkpoint: it carries trust
// bundles, CA rotations and checkpoints, and the VRF proofs of the two org
// labels that hold them, which reveal nothing about users; a device whose
// certificate expired while it was offline can still catch up.
func (s *Service) getTransitions(w http.ResponseWriter, r *http.Request, t *Tenant) {
	size, err := sizeParam(r, "size")
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	after, err := sequenceParam(r, "after")
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	resp, err := t.Transitions(r.Context(), after, size)
	if err != nil {
		s.readError(w, t, err)
		return
	}
	b, err := resp.Marshal()
	if err != nil {
		s.readError(w, t, err)
		return
	}
	writeBinary(w, b)
}

// sequenceParam parses a trust bundle sequence query parameter: absent
// is 0.
func sequenceParam(r *http.Request, name string) (uint64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || strconv.FormatUint(n, 10) != v {
		return 0, fmt.Errorf("bad %s", name)
	}
	return n, nil
}

// deviceAuth authenticates a read request that returns VRF proofs: only
// active devices of the tenant may have them (docs/spec/directory.md
// §Labels).
func (s *Service) deviceAuth(w http.ResponseWriter, r *http.Request, t *Tenant) bool {
	_, ok := s.devicePrincipal(w, r, t)
	return ok
}

// devicePrincipal is deviceAuth, returning the signing device.
func (s *Service) devicePrincipal(w http.ResponseWriter, r *http.Request, t *Tenant) (principal, bool) {
	body, ok := readBody(w, r, 0)
	if !ok {
		return principal{}, false
	}
	p, err := t.authenticate(r, body, s.opts.Now())
	if err != nil {
		writeAuthError(w, err)
		return principal{}, false
	}
	if p.admin {
		writeError(w, http.StatusForbidden, "lookups are for the tenant's devices")
		return principal{}, false
	}
	// Limited after authentication, so that no one can spend another
	// device's budget by naming it.
	if ok, wait := s.deviceLimit.Allow(string(t.id[:]) + string(p.device[:])); !ok {
		s.met.rateLimited.WithLabelValues("device").Inc()
		tooMany(w, wait)
		return principal{}, false
	}
	return *p, true
}

func writeAuthError(w http.ResponseWriter, err error) {
	var ae *authError
	if errors.As(err, &ae) {
		if ae.status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Moat-Signature realm="moat-directory"`)
		}
		writeError(w, ae.status, ae.msg)
		return
	}
	writeError(w, http.StatusUnauthorized, "unauthenticated")
}

func (s *Service) getLookup(w http.ResponseWriter, r *http.Request, t *Tenant) {
	user, err := ParseUserID(r.PathValue("user"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad user id")
		return
	}
	s.lookup(w, r, t, org.Label{User: user})
}

func (s *Service) getOrgLookup(w http.ResponseWriter, r *http.Request, t *Tenant) {
	name := r.PathValue("name")
	if _, err := kt.OrgAlpha(t.id, name); err != nil {
		writeError(w, http.StatusBadRequest, "bad org label")
		return
	}
	s.lookup(w, r, t, org.Label{Org: name})
}

func (s *Service) lookup(w http.ResponseWriter, r *http.Request, t *Tenant, l org.Label) {
	size, err := sizeParam(r, "size")
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	held, err := heldParam(r, size)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !s.deviceAuth(w, r, t) {
		return
	}
	resp, err := t.LookupHeld(r.Context(), l, size, held)
	if err != nil {
		s.readError(w, t, err)
		return
	}
	b, err := resp.Marshal()
	if err != nil {
		s.readError(w, t, err)
		return
	}
	writeBinary(w, b)
}

func (s *Service) getHistory(w http.ResponseWriter, r *http.Request, t *Tenant) {
	user, err := ParseUserID(r.PathValue("user"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad user id")
		return
	}
	s.history(w, r, t, org.Label{User: user})
}

func (s *Service) history(w http.ResponseWriter, r *http.Request, t *Tenant, l org.Label) {
	size, err := sizeParam(r, "size")
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	since, err := sizeParam(r, "since")
	if err != nil || since > uint64(^uint32(0)) {
		writeError(w, http.StatusBadRequest, "bad since")
		return
	}
	if !s.deviceAuth(w, r, t) {
		return
	}
	resp, err := t.LabelHistory(r.Context(), l, uint32(since), size)
	if err != nil {
		s.readError(w, t, err)
		return
	}
	b, err := resp.Marshal()
	if err != nil {
		s.readError(w, t, err)
		return
	}
	writeBinary(w, b)
}

// postEnrol redeems an enrolment code: it is authenticated by the code
// itself, and rate-limited by address on top of org's per-code and
// per-tenant failure limits.
func (s *Service) postEnrol(w http.ResponseWriter, r *http.Request, t *Tenant) {
	tid := t.id.String()
	if ok, wait := s.enrolLimit.Allow(httpserve.ClientKey(r.RemoteAddr)); !ok {
		s.met.rateLimited.WithLabelValues("enrol").Inc()
		tooMany(w, wait)
		return
	}
	body, ok := readBody(w, r, s.opts.Limits.MaxBody)
	if !ok {
		return
	}
	var in EnrolRequest
	if err := decodeJSON(body, &in); err != nil {
		writeError(w, http.StatusBadRequest, "malformed enrolment")
		return
	}
	code, err := org.ParseEnrolmentCodeText(in.Code)
	if err != nil {
		s.met.enrolments.WithLabelValues(tid, "bad-code").Inc()
		writeError(w, http.StatusBadRequest, "malformed enrolment code")
		return
	}
	req, err := org.ParseEnrolmentRequest(in.Request)
	if err != nil {
		writeError(w, http.StatusBadRequest, "malformed enrolment request")
		return
	}
	if len(in.Approvals) > 255 {
		writeError(w, http.StatusBadRequest, "too many approvals")
		return
	}
	var approvals []*org.Approval
	for _, a := range in.Approvals {
		ap, err := org.ParseApproval(a)
		if err != nil {
			writeError(w, http.StatusBadRequest, "malformed approval")
			return
		}
		approvals = append(approvals, ap)
	}
	now := s.opts.Now()
	reqHash := sha256.Sum256(in.Request)
	t.mu.Lock()
	// An attempt is answered once its effect, an enrolment or a failure
	// counted against the code and the tenant, is durable (journal.go):
	// none is tried while that cannot be done.
	if err := t.jr.check(); err != nil {
		t.mu.Unlock()
		writeError(w, http.StatusServiceUnavailable, "enrolment unavailable; try later")
		return
	}
	if p := t.approvals[reqHash]; p != nil && now.Before(p.expires) {
		approvals = append(approvals, p.approvals...)
	}
	en, err := t.org.RedeemEnrolmentCode(code, req, approvals, now)
	t.dirty = true // failed attempts are counted in the state
	if err == nil {
		if _, ok := t.approvals[reqHash]; ok {
			delete(t.approvals, reqHash)
			t.unlodge(lodgedKey(lodgedDevice, reqHash))
		}
		t.indexUser(en.User)
	}
	pending := t.Head().Epoch + 1
	je, jerr := t.durable()
	unlodged := t.takeUnlodged()
	t.mu.Unlock()
	if jerr == nil {
		jerr = je.wait()
	}
	if jerr == nil {
		t.dropLodged(unlodged)
	}
	if jerr != nil {
		t.log.Error("enrolment attempt not made durable", slog.Any("err", jerr))
		s.met.enrolments.WithLabelValues(tid, "unavailable").Inc()
		writeError(w, http.StatusServiceUnavailable, "enrolment unavailable; try later")
		return
	}
	if err != nil {
		status, result, msg := enrolError(err)
		s.met.enrolments.WithLabelValues(tid, result).Inc()
		if status == http.StatusTooManyRequests {
			tooMany(w, time.Minute)
			return
		}
		writeError(w, status, msg)
		return
	}
	s.met.enrolments.WithLabelValues(tid, "ok").Inc()
	cert, err := en.Certificate.Marshal()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal error")
		return
	}
	// The served checkpoint with its last entry, if the bundle sent is the
	// one it is under: none before the first cosigned epoch, and in the
	// epoch that publishes a new bundle (its checkpoint is under the one
	// before).
	ti := t.trust.Load()
	var cons []byte
	// The enrolment is made: an error here only leaves the checkpoint out.
	cr, err := t.Consistency(r.Context(), 0)
	switch {
	case err != nil:
		if !errors.Is(err, errNotServing) {
			t.log.Warn("enrolment answered without a checkpoint", slog.Any("err", err))
		}
	case cr.Last != nil && ti.checkpointTrust(cr.Last.Entry.Epoch+1) == ti:
		if cons, err = cr.Marshal(); err != nil {
			t.log.Warn("enrolment answered without a checkpoint", slog.Any("err", err))
			cons = nil
		}
	}
	writeJSON(w, &EnrolResponse{
		User: en.User.String(), Device: en.Certificate.Device.String(), Certificate: cert,
		TrustBundle: ti.enc, Epoch: pending, Consistency: cons,
	})
}

// enrolError maps a redemption error to a status, a metric result and a
// message that tells a guesser nothing.
func enrolError(err error) (int, string, string) {
	var dc *org.DualControlError
	switch {
	case errors.Is(err, org.ErrTenantLocked):
		return http.StatusTooManyRequests, "locked", "enrolment locked; try later"
	case errors.Is(err, org.ErrBadEnrolmentCode), errors.Is(err, org.ErrCodeLocked),
		errors.Is(err, org.ErrCodeUsed), errors.Is(err, org.ErrCodeExpired), errors.Is(err, org.ErrWrongTenant):
		return http.StatusForbidden, "bad-code", "invalid enrolment code"
	case errors.As(err, &dc):
		return http.StatusForbidden, "dual-control", "approval required: " + dc.Err.Error()
	case errors.Is(err, org.ErrKeyReused):
		return http.StatusConflict, "key-reused", "key already certified"
	case errors.Is(err, org.ErrUserRemoved), errors.Is(err, org.ErrUnknownUser):
		return http.StatusForbidden, "bad-code", "invalid enrolment code"
	}
	return http.StatusBadRequest, "invalid", "invalid enrolment request"
}

// decodeJSON decodes one JSON value, refusing unknown fields and trailing
// data.
func decodeJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}
