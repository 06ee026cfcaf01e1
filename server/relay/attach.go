package relay

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/moat-im/moat/crypto/deviceauth"
	"github.com/moat-im/moat/internal/httpserve"
	"github.com/moat-im/moat/server/store/blob"
)

// Attachments (docs/spec/attachments.md §Relay API): resumable uploads of
// encrypted attachments by authenticated devices, each under the upload
// token its creation answered (attach_token.go), within per-device and
// per-tenant byte budgets, and anonymous downloads by blob id.

// AttachmentLimits bound attachments (docs/spec/attachments.md §Quotas).
// A zero field selects its default.
type AttachmentLimits struct {
	// MaxSize bounds one blob's ciphertext. Default blob.DefaultMaxSize
	// (4 GiB); it must not exceed the blob store's.
	MaxSize int64
	// MaxChunk bounds one PATCH body. Default blob.DefaultMaxChunk
	// (16 MiB); it must not exceed the blob store's.
	MaxChunk int64
	// MaxTTL bounds expiry − now at creation. Default 30 days; it must not
	// exceed the blob store's.
	MaxTTL time.Duration
	// DeviceBudget is one device's creation budget in bytes: PerSecond
	// bytes refilled per second up to Burst. Default 8 GiB per 24 h, burst
	// 8 GiB. A negative PerSecond disables it.
	DeviceBudget Rate
	// TenantBudget is one tenant's. Default 256 GiB per 24 h, burst
	// 256 GiB.
	TenantBudget Rate
	// SweepInterval is how often the relay deletes expired blobs. Default
	// 1 minute; negative disables the sweeper.
	SweepInterval time.Duration
}

func (l *AttachmentLimits) defaults() {
	if l.MaxSize == 0 {
		l.MaxSize = blob.DefaultMaxSize
	}
	if l.MaxChunk == 0 {
		l.MaxChunk = blob.DefaultMaxChunk
	}
	if l.MaxTTL == 0 {
		l.MaxTTL = blob.DefaultMaxTTL
	}
	const day = 24 * 60 * 60
	if l.DeviceBudget == (Rate{}) {
		l.DeviceBudget = Rate{PerSecond: float64(8<<30) / day, Burst: 8 << 30}
	}
	if l.TenantBudget == (Rate{}) {
		l.TenantBudget = Rate{PerSecond: float64(256<<30) / day, Burst: 256 << 30}
	}
	if l.SweepInterval == 0 {
		l.SweepInterval = time.Minute
	}
}

// Upload-Offset is the header of a committed offset
// (docs/spec/attachments.md §Upload).
const HeaderUploadOffset = "Upload-Offset"

// AttachmentCreated answers a creation.
type AttachmentCreated struct {
	ID          string `json:"id"`           // 64 hex digits
	Size        int64  `json:"size"`         // ciphertext size
	Expires     int64  `json:"expires"`      // Unix ms
	UploadToken string `json:"upload_token"` // FormatUploadToken; a secret
}

// AttachmentStatus answers GET …/upload.
type AttachmentStatus struct {
	Size      int64 `json:"size"`
	Committed int64 `json:"committed"`
	Expires   int64 `json:"expires"` // Unix ms
	Final     bool  `json:"final"`
}

// attachments is the relay's attachment state.
type attachments struct {
	store  blob.Store
	limits AttachmentLimits
	met    *attachMetrics
}

// initAttachments sets up the attachment endpoints, and the sweeper if
// there is a blob store.
func (r *Relay) initAttachments() {
	l := r.opts.AttachmentLimits
	l.defaults()
	a := &attachments{store: r.opts.Blobs, limits: l, met: newAttachMetrics(r.reg)}
	r.att = a
	if a.store != nil && l.SweepInterval > 0 {
		go a.sweeper(r.stopCtx, l.SweepInterval, r)
	}
}

// sweeper deletes expired blobs every interval until ctx ends.
func (a *attachments) sweeper(ctx context.Context, every time.Duration, r *Relay) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.SweepAttachments(ctx)
		}
	}
}

// SweepAttachments deletes expired blobs now and returns how many it
// deleted (the sweeper calls it every SweepInterval).
func (r *Relay) SweepAttachments(ctx context.Context) (int, error) {
	if r.att.store == nil {
		return 0, nil
	}
	n, err := r.att.store.Sweep(ctx)
	r.att.met.swept.Add(float64(n))
	if err != nil && !errors.Is(err, blob.ErrClosed) && ctx.Err() == nil {
		// The store's error text may name a blob: log its class only.
		class := "error"
		if errors.Is(err, blob.ErrUnavailable) {
			class = "unavailable"
		} else if errors.Is(err, blob.ErrCorrupt) {
			class = "corrupt"
		}
		r.opts.Logger.Warn("attachment sweep failed", "result", class)
	}
	return n, err
}

// authedAttach wraps an upload handler: an attachments session, and a
// blob store.
func (r *Relay) authedAttach(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		if r.att.store == nil {
			httpserve.WriteError(w, http.StatusNotFound, "attachments not served")
			return
		}
		ss := r.authn(w, req, deviceauth.PurposeAttachments)
		if ss == nil {
			return
		}
		h(w, req, ss)
	}
}

// ParseBlobID parses the path text of a blob id: 64 lower-case hex
// digits.
func ParseBlobID(s string) (blob.ID, error) {
	var id blob.ID
	if len(s) != 2*len(id) || strings.ToLower(s) != s {
		return id, ErrMalformed
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, ErrMalformed
	}
	return id, nil
}

// parseDecimal parses a non-negative decimal integer without sign or
// leading zeros.
func parseDecimal(s string) (int64, bool) {
	if s == "" || len(s) > 19 || (len(s) > 1 && s[0] == '0') || s[0] == '+' || s[0] == '-' {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil
}

func (r *Relay) blobID(w http.ResponseWriter, req *http.Request) (blob.ID, bool) {
	id, err := ParseBlobID(req.PathValue("id"))
	if err != nil {
		httpserve.WriteError(w, http.StatusBadRequest, "bad attachment id")
	}
	return id, err == nil
}

// blobError answers a blob store error.
func (r *Relay) blobError(w http.ResponseWriter, op string, err error) {
	result := "error"
	switch {
	case errors.Is(err, blob.ErrNotFound):
		result = "not-found"
		httpserve.WriteError(w, http.StatusNotFound, "no such attachment")
	case errors.Is(err, blob.ErrInvalid):
		result = "invalid"
		httpserve.WriteError(w, http.StatusBadRequest, "invalid attachment request")
	case errors.Is(err, blob.ErrUnavailable), errors.Is(err, blob.ErrClosed):
		result = "unavailable"
		r.met.unavailable.Inc()
		httpserve.Unavailable(w, 5*time.Second, "attachment storage unavailable")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		result = "canceled"
		httpserve.WriteError(w, http.StatusServiceUnavailable, "request canceled")
	default:
		if errors.Is(err, blob.ErrCorrupt) {
			result = "corrupt"
		}
		r.opts.Logger.Error("attachment store error", "op", op, "result", result)
		httpserve.WriteError(w, http.StatusInternalServerError, "internal error")
	}
	r.att.met.requests.WithLabelValues(op, result).Inc()
}

// conflict answers 409 with the committed offset.
func (r *Relay) conflict(w http.ResponseWriter, op string, committed int64, msg string) {
	w.Header().Set(HeaderUploadOffset, strconv.FormatInt(committed, 10))
	httpserve.WriteError(w, http.StatusConflict, msg)
	r.att.met.requests.WithLabelValues(op, "conflict").Inc()
}

// postAttachment is POST /relay/v1/attachments?size=N&expires=T
// (docs/spec/attachments.md §Create).
func (r *Relay) postAttachment(w http.ResponseWriter, req *http.Request, ss *session) {
	a := r.att
	q := req.URL.Query()
	size, ok1 := parseDecimal(q.Get("size"))
	exp, ok2 := parseDecimal(q.Get("expires"))
	if !ok1 || !ok2 || size < 1 || len(q) != 2 {
		httpserve.WriteError(w, http.StatusBadRequest, "size and expires required")
		a.met.requests.WithLabelValues("create", "invalid").Inc()
		return
	}
	if size > a.limits.MaxSize {
		a.met.quota.WithLabelValues("size").Inc()
		httpserve.WriteError(w, http.StatusRequestEntityTooLarge, "attachment too large")
		return
	}
	now := r.opts.Now()
	if exp <= now.UnixMilli() || exp-now.UnixMilli() > a.limits.MaxTTL.Milliseconds() {
		httpserve.WriteError(w, http.StatusBadRequest, "expiry out of range")
		a.met.requests.WithLabelValues("create", "invalid").Inc()
		return
	}
	if !r.takeAttachmentBudget(w, ss, size) {
		return
	}
	expires := time.UnixMilli(exp)
	tok := newUploadToken()
	id, err := a.store.Create(req.Context(), size, expires, uploadTag(&ss.Authenticated, &tok))
	if err != nil {
		r.giveAttachmentBudget(ss, size)
		r.blobError(w, "create", err)
		return
	}
	a.met.requests.WithLabelValues("create", "ok").Inc()
	b, _ := json.Marshal(&AttachmentCreated{ID: id.String(), Size: size, Expires: exp, UploadToken: FormatUploadToken(&tok)})
	w.Header().Set("Content-Type", httpserve.ContentJSON)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", Prefix+"attachments/"+id.String()+"/upload")
	w.WriteHeader(http.StatusCreated)
	w.Write(append(b, '\n'))
}

// uploadToken returns the request's upload token, or answers 400 if the
// Moat-Upload-Token header is missing or malformed. It is called before the
// store is asked, so that answer says nothing about the blob.
func (r *Relay) uploadToken(w http.ResponseWriter, req *http.Request, op string) (UploadToken, bool) {
	v := req.Header.Values(HeaderUploadToken)
	if len(v) == 1 {
		if t, err := ParseUploadToken(v[0]); err == nil {
			return t, true
		}
	}
	httpserve.WriteError(w, http.StatusBadRequest, "Moat-Upload-Token required")
	r.att.met.requests.WithLabelValues(op, "invalid").Inc()
	return UploadToken{}, false
}

// upload returns the state of upload id if tok, presented by the session's
// device, is its upload token. Otherwise it answers 404 as for an unknown
// blob (docs/spec/attachments.md §Upload capability).
func (r *Relay) upload(w http.ResponseWriter, req *http.Request, ss *session, op string, id blob.ID, tok *UploadToken) (blob.Info, bool) {
	info, err := r.att.store.Info(req.Context(), id)
	if err != nil {
		r.blobError(w, op, err)
		return info, false
	}
	if !uploadAllowed(&ss.Authenticated, tok, info.Tag) {
		httpserve.WriteError(w, http.StatusNotFound, "no such attachment")
		r.att.met.requests.WithLabelValues(op, "denied").Inc()
		return info, false
	}
	return info, true
}

// getAttachmentUpload is GET /relay/v1/attachments/{id}/upload.
func (r *Relay) getAttachmentUpload(w http.ResponseWriter, req *http.Request, ss *session) {
	id, ok := r.blobID(w, req)
	if !ok {
		return
	}
	tok, ok := r.uploadToken(w, req, "status")
	if !ok {
		return
	}
	info, ok := r.upload(w, req, ss, "status", id, &tok)
	if !ok {
		return
	}
	r.att.met.requests.WithLabelValues("status", "ok").Inc()
	w.Header().Set(HeaderUploadOffset, strconv.FormatInt(info.Committed, 10))
	writeJSON(w, &AttachmentStatus{Size: info.Size, Committed: info.Committed, Expires: info.Expires.UnixMilli(), Final: info.Final})
}

// minUploadRate is the slowest request body a PATCH is given time for.
const minUploadRate = 128 << 10

// patchAttachmentUpload is PATCH /relay/v1/attachments/{id}/upload
// (docs/spec/attachments.md §Upload).
func (r *Relay) patchAttachmentUpload(w http.ResponseWriter, req *http.Request, ss *session) {
	a := r.att
	id, ok := r.blobID(w, req)
	if !ok {
		return
	}
	n := req.ContentLength
	if n < 0 {
		httpserve.WriteError(w, http.StatusLengthRequired, "Content-Length required")
		return
	}
	if n > a.limits.MaxChunk {
		a.met.quota.WithLabelValues("size").Inc()
		httpserve.WriteError(w, http.StatusRequestEntityTooLarge, "chunk too large")
		return
	}
	offset, okOff := parseDecimal(req.Header.Get(HeaderUploadOffset))
	if n == 0 || !okOff {
		httpserve.WriteError(w, http.StatusBadRequest, "Upload-Offset and a non-empty body required")
		a.met.requests.WithLabelValues("append", "invalid").Inc()
		return
	}
	tok, ok := r.uploadToken(w, req, "append")
	if !ok {
		return
	}
	info, ok := r.upload(w, req, ss, "append", id, &tok)
	if !ok {
		return
	}
	if info.Final {
		r.conflict(w, "append", info.Committed, "attachment is finalized")
		return
	}
	if offset > info.Size || n > info.Size-offset {
		httpserve.WriteError(w, http.StatusBadRequest, "chunk beyond the declared size")
		a.met.requests.WithLabelValues("append", "invalid").Inc()
		return
	}
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(30*time.Second + time.Duration(n)*time.Second/minUploadRate))
	committed, err := a.store.Append(req.Context(), id, offset, http.MaxBytesReader(w, req.Body, n), n)
	switch {
	case err == nil:
	case errors.Is(err, blob.ErrGap), errors.Is(err, blob.ErrMismatch):
		r.conflict(w, "append", committed, "chunk conflicts with the committed offset")
		return
	default:
		r.blobError(w, "append", err)
		return
	}
	a.met.requests.WithLabelValues("append", "ok").Inc()
	a.met.bytes.WithLabelValues("up").Add(float64(n))
	w.Header().Set(HeaderUploadOffset, strconv.FormatInt(committed, 10))
	w.WriteHeader(http.StatusNoContent)
}

// postAttachmentFinalize is POST /relay/v1/attachments/{id}/finalize.
func (r *Relay) postAttachmentFinalize(w http.ResponseWriter, req *http.Request, ss *session) {
	id, ok := r.blobID(w, req)
	if !ok {
		return
	}
	tok, ok := r.uploadToken(w, req, "finalize")
	if !ok {
		return
	}
	if _, ok := r.upload(w, req, ss, "finalize", id, &tok); !ok {
		return
	}
	err := r.att.store.Finalize(req.Context(), id)
	if errors.Is(err, blob.ErrIncomplete) {
		info, ierr := r.att.store.Info(req.Context(), id)
		if ierr != nil {
			r.blobError(w, "finalize", ierr)
			return
		}
		r.conflict(w, "finalize", info.Committed, "upload incomplete")
		return
	}
	if err != nil {
		r.blobError(w, "finalize", err)
		return
	}
	r.att.met.requests.WithLabelValues("finalize", "ok").Inc()
	w.WriteHeader(http.StatusNoContent)
}

// parseRange parses a Range value of the form bytes=a-b or bytes=a- against
// a blob of size bytes and returns the offset and length, or false.
func parseRange(v string, size int64) (int64, int64, bool) {
	spec, ok := strings.CutPrefix(v, "bytes=")
	if !ok {
		return 0, 0, false
	}
	first, last, ok := strings.Cut(spec, "-")
	if !ok {
		return 0, 0, false
	}
	a, ok := parseDecimal(first)
	if !ok || a >= size {
		return 0, 0, false
	}
	b := size - 1
	if last != "" {
		if b, ok = parseDecimal(last); !ok || b < a {
			return 0, 0, false
		}
		b = min(b, size-1)
	}
	return a, b - a + 1, true
}

// getAttachment is GET /relay/v1/attachments/{id}: anonymous, by id
// (docs/spec/attachments.md §Download, §Who may download).
func (r *Relay) getAttachment(w http.ResponseWriter, req *http.Request) {
	a := r.att
	if a.store == nil {
		httpserve.WriteError(w, http.StatusNotFound, "attachments not served")
		return
	}
	id, ok := r.blobID(w, req)
	if !ok {
		return
	}
	info, err := a.store.Info(req.Context(), id)
	if err == nil && !info.Final {
		err = blob.ErrNotFound
	}
	if err != nil {
		r.blobError(w, "download", err)
		return
	}
	offset, length, status := int64(0), info.Size, http.StatusOK
	if v := req.Header.Get("Range"); v != "" {
		if offset, length, ok = parseRange(v, info.Size); !ok {
			w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(info.Size, 10))
			httpserve.WriteError(w, http.StatusRequestedRangeNotSatisfiable, "unsatisfiable range")
			a.met.requests.WithLabelValues("download", "invalid").Inc()
			return
		}
		status = http.StatusPartialContent
	}
	rd, err := a.store.Open(req.Context(), id, offset, length)
	if err != nil {
		r.blobError(w, "download", err)
		return
	}
	defer rd.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("Accept-Ranges", "bytes")
	h.Set("Content-Length", strconv.FormatInt(length, 10))
	if status == http.StatusPartialContent {
		h.Set("Content-Range", "bytes "+strconv.FormatInt(offset, 10)+"-"+strconv.FormatInt(offset+length-1, 10)+"/"+strconv.FormatInt(info.Size, 10))
	}
	w.WriteHeader(status)
	if req.Method == http.MethodHead {
		return
	}
	dw := &deadlineWriter{w: w, rc: http.NewResponseController(w)}
	n, err := io.CopyBuffer(dw, rd, make([]byte, 64<<10))
	a.met.bytes.WithLabelValues("down").Add(float64(n))
	switch {
	case err == nil:
		a.met.requests.WithLabelValues("download", "ok").Inc()
	case errors.Is(err, blob.ErrCorrupt):
		a.met.requests.WithLabelValues("download", "corrupt").Inc()
		r.opts.Logger.Error("attachment store error", "op", "download", "result", "corrupt")
	default:
		a.met.requests.WithLabelValues("download", "aborted").Inc()
	}
}

// deadlineWriter extends the connection's write deadline by 30 s for
// every MiB it writes.
type deadlineWriter struct {
	w       io.Writer
	rc      *http.ResponseController
	written int64
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	if d.written%(1<<20)+int64(len(p)) >= 1<<20 || d.written == 0 {
		d.rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
	}
	n, err := d.w.Write(p)
	d.written += int64(n)
	return n, err
}
