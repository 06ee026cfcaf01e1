package relay

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/coder/websocket"
	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/internal/httpserve"
	"github.com/moat-im/moat/server/store/mailbox"
)

// HeaderSendAuthorization carries the base64url (no padding) encoding of
// a SendAuthorization (docs/spec/envelope.md §Delivery tokens).
const HeaderSendAuthorization = "Moat-Send-Authorization"

// maxAuthHeader bounds the header's text: a SendAuthorization is at most
// 357 bytes.
var maxAuthHeader = base64.RawURLEncoding.EncodedLen(357)

func writeBinary(w http.ResponseWriter, b []byte) {
	h := w.Header()
	h["Content-Type"] = contentBinary
	h["Cache-Control"] = noStore
	w.Write(b)
}

// Header values shared by every response: net/http never changes a value
// slice in place, and an append to one of capacity its length copies it.
var (
	contentBinary = []string{httpserve.ContentBinary}
	noStore       = []string{"no-store"}
)

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		httpserve.WriteError(w, http.StatusInternalServerError, "internal error")
		return
	}
	w.Header().Set("Content-Type", httpserve.ContentJSON)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(append(b, '\n'))
}

// storeError answers a mailbox store error (docs/spec/relay-storage.md
// §Interface, error table).
func (r *Relay) storeError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, mailbox.ErrInvalid):
		httpserve.WriteError(w, http.StatusBadRequest, "invalid request")
	case errors.Is(err, mailbox.ErrIDConflict):
		httpserve.WriteError(w, http.StatusConflict, "message id already used with another envelope")
	case errors.Is(err, mailbox.ErrBeyondHead):
		httpserve.WriteError(w, http.StatusConflict, "ack beyond the mailbox head")
	case errors.Is(err, mailbox.ErrQuota):
		httpserve.WriteError(w, http.StatusInsufficientStorage, "mailbox full")
	case errors.Is(err, mailbox.ErrUnavailable), errors.Is(err, mailbox.ErrClosed), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		r.met.unavailable.Inc()
		httpserve.Unavailable(w, 5*time.Second, "storage unavailable; try again")
	case errors.Is(err, mailbox.ErrCorrupt):
		r.opts.Logger.Error("ALARM: corrupt mailbox store", "err", redactErr(err))
		httpserve.WriteError(w, http.StatusInternalServerError, "internal error")
	default:
		r.opts.Logger.Error("mailbox store", "err", redactErr(err))
		httpserve.WriteError(w, http.StatusInternalServerError, "internal error")
	}
}

// signHead signs the head and acknowledgement floor of mb at the relay's
// clock.
func (r *Relay) signHead(id mailbox.ID, head, acked uint64) (*mailbox.SignedHead, error) {
	return mailbox.SignHead(r.opts.SigningKey, id, head, acked, r.opts.Now())
}

// sendLength returns the body length a send request declares, checked
// before a byte is read or allocated (T42): a missing Content-Length is
// answered 411, one over limit 413 with tooLarge (counted as a too-large
// send).
func (r *Relay) sendLength(w http.ResponseWriter, req *http.Request, limit int64, tooLarge string) (int64, bool) {
	n := req.ContentLength
	switch {
	case n < 0:
		httpserve.WriteError(w, http.StatusLengthRequired, "Content-Length required")
		return 0, false
	case n > limit:
		r.met.sends.WithLabelValues("too-large").Inc()
		httpserve.WriteError(w, http.StatusRequestEntityTooLarge, tooLarge)
		return 0, false
	}
	return n, true
}

// readDeclared reads a body of the n bytes sendLength returned, into
// buf's memory while it fits (httpserve.ReadBodyInto); a shorter one is
// answered 400.
func readDeclared(w http.ResponseWriter, req *http.Request, n int64, buf []byte) ([]byte, bool) {
	body, ok := httpserve.ReadBodyInto(w, req, n, buf)
	if !ok {
		return nil, false
	}
	if int64(len(body)) != n {
		httpserve.WriteError(w, http.StatusBadRequest, "short body")
		return nil, false
	}
	return body, true
}

// postSend is POST /relay/v1/send: an anonymous send of one sealed
// envelope, authorised by the delivery token in HeaderSendAuthorization
// (docs/spec/api.md §Send).
func (r *Relay) postSend(w http.ResponseWriter, req *http.Request) {
	if r.sendAddrLimit != nil {
		if ok, wait := r.sendAddrLimit.Allow(httpserve.ClientKey(req.RemoteAddr)); !ok {
			r.sendRefused(w, "address", wait)
			return
		}
	}
	// Size before allocation (T42): the body must declare its length, and
	// that length must be a size bucket within the limit.
	n, ok := r.sendLength(w, req, int64(r.opts.Limits.MaxEnvelope), "envelope too large")
	if !ok {
		return
	}
	if !sealed.IsBucket(int(n)) {
		r.met.sends.WithLabelValues("malformed").Inc()
		httpserve.WriteError(w, http.StatusBadRequest, "envelope size is not a bucket")
		return
	}
	var authText string // req.Header.Get without canonicalising the key
	if v := req.Header[HeaderSendAuthorization]; len(v) > 0 {
		authText = v[0]
	}
	if len(authText) > maxAuthHeader {
		httpserve.WriteError(w, http.StatusBadRequest, "malformed send authorization")
		return
	}
	if authText == "" {
		r.met.sends.WithLabelValues("unauthorized").Inc()
		httpserve.WriteError(w, http.StatusUnauthorized, "send authorization required")
		return
	}
	auth, err := base64.RawURLEncoding.Strict().DecodeString(authText)
	if err != nil {
		r.met.sends.WithLabelValues("malformed").Inc()
		httpserve.WriteError(w, http.StatusBadRequest, "malformed send authorization")
		return
	}
	sa, err := deliverytoken.ParseSendAuthorization(auth)
	if err != nil {
		r.met.sends.WithLabelValues("malformed").Inc()
		httpserve.WriteError(w, http.StatusBadRequest, "malformed send authorization")
		return
	}
	// Read into a pooled buffer: the store copies the envelope (Enqueue
	// keeps no reference to it), and nothing else keeps it.
	bp := sendBodies.Get().(*[]byte)
	body, ok := readDeclared(w, req, n, *bp)
	defer putBody(&sendBodies, bp, body, maxPooledSendBody)
	if !ok {
		return
	}
	h, err := sealed.ParseHeader(body)
	if err != nil {
		r.met.sends.WithLabelValues("malformed").Inc()
		httpserve.WriteError(w, http.StatusBadRequest, "malformed envelope")
		return
	}
	if v := r.admitSend(h, sa); v.status != 0 {
		v.write(w)
		return
	}
	rc, err := r.enqueueSend(req.Context(), h, body)
	if err != nil {
		if errors.Is(err, errSignHead) {
			httpserve.WriteError(w, http.StatusInternalServerError, "internal error")
		} else {
			r.storeError(w, err)
		}
		return
	}
	out, err := rc.Marshal()
	if err != nil {
		httpserve.WriteError(w, http.StatusInternalServerError, "internal error")
		return
	}
	writeBinary(w, out)
}

// sendVerdict is a refusal by admitSend: the status, its Retry-After
// (429, 503) and the message a single send answers with.
type sendVerdict struct {
	status int
	wait   time.Duration
	msg    string
}

// write answers a single send with v.
func (v sendVerdict) write(w http.ResponseWriter) {
	switch v.status {
	case http.StatusTooManyRequests:
		httpserve.TooMany(w, v.wait)
	case http.StatusServiceUnavailable:
		httpserve.Unavailable(w, v.wait, v.msg)
	default:
		httpserve.WriteError(w, v.status, v.msg)
	}
}

// admitSend runs steps 5-7 of docs/spec/api.md §Send, for a single send:
// the mailbox and token limits, the token, then the device directory.
// Existence hiding (existence.go): the limits and the token come before
// the directory, so that a caller without a valid token gets the same
// answer for a mailbox that does not exist; the token's limit comes
// before the token is redeemed, so that a limited send does not burn an
// anonymous token. The zero verdict admits the send. A batch runs the
// same three steps through sendLimits, authVerdict and deviceVerdict.
func (r *Relay) admitSend(h *sealed.Header, sa *deliverytoken.SendAuthorization) sendVerdict {
	if v := r.sendLimits(h, sa); v.status != 0 {
		return v
	}
	_, err := r.author.AuthorizeParsed(h.Mailbox, sa)
	if v := r.authVerdict(err); v.status != 0 {
		return v
	}
	return r.deviceVerdict(h)
}

// sendLimits is step 5 of §Send: the send rates of the recipient mailbox,
// then of the token.
func (r *Relay) sendLimits(h *sealed.Header, sa *deliverytoken.SendAuthorization) sendVerdict {
	if r.sendMailboxLimit != nil {
		if ok, wait := r.sendMailboxLimit.Allow(string(h.Mailbox[:])); !ok {
			r.itemRefused("mailbox")
			return sendVerdict{status: http.StatusTooManyRequests, wait: wait}
		}
	}
	if r.sendTokenLimit != nil { // nil: the limit is off, and its key unneeded
		var tokenKey string
		if sa.Kind == deliverytoken.KindMAC {
			v := deliverytoken.VerifierOf(h.Mailbox, sa.MAC)
			tokenKey = "mac/" + string(h.Mailbox[:]) + string(v[:])
		} else {
			t := h.Mailbox.Tenant()
			tokenKey = "anon/" + string(t[:])
		}
		if ok, wait := r.sendTokenLimit.Allow(tokenKey); !ok {
			r.itemRefused("token")
			return sendVerdict{status: http.StatusTooManyRequests, wait: wait}
		}
	}
	return sendVerdict{}
}

// authVerdict is step 6 of §Send: the verdict on the token check's error.
func (r *Relay) authVerdict(err error) sendVerdict {
	switch {
	case err == nil:
		return sendVerdict{}
	case errors.Is(err, deliverytoken.ErrBadToken), errors.Is(err, deliverytoken.ErrDoubleSpend):
		r.met.sends.WithLabelValues("forbidden").Inc()
		return sendVerdict{status: http.StatusForbidden, msg: "token does not authorise this send"}
	case errors.Is(err, deliverytoken.ErrMalformed):
		r.met.sends.WithLabelValues("malformed").Inc()
		return sendVerdict{status: http.StatusBadRequest, msg: "malformed send authorization"}
	default:
		r.opts.Logger.Error("token check", "err", redactErr(err))
		return sendVerdict{status: http.StatusServiceUnavailable, wait: 5 * time.Second, msg: "token store unavailable"}
	}
}

// deviceVerdict is step 7 of §Send: the recipient device holds a current
// certificate.
func (r *Relay) deviceVerdict(h *sealed.Header) sendVerdict {
	if _, err := r.opts.Directory.Device(h.Mailbox.Tenant(), h.Mailbox.Device(), r.opts.Now()); err != nil {
		if errors.Is(err, ErrUnknownDevice) {
			r.met.sends.WithLabelValues("unknown-mailbox").Inc()
			return sendVerdict{status: http.StatusNotFound, msg: "no such mailbox"}
		}
		return sendVerdict{status: http.StatusServiceUnavailable, wait: 5 * time.Second, msg: "device directory unavailable"}
	}
	return sendVerdict{}
}

// errSignHead: the relay could not sign the receipt's head (500).
var errSignHead = errors.New("relay: signing the mailbox head")

// enqueueSend is step 8 of §Send: it enqueues the envelope idempotently
// with its expiry, then signs the head the receipt carries. It returns the
// mailbox store's error, or errSignHead.
func (r *Relay) enqueueSend(ctx context.Context, h *sealed.Header, body []byte) (*Receipt, error) {
	e, err := r.enqueue(ctx, StoreMailboxID(h.Mailbox), h, body)
	if err != nil {
		return nil, err
	}
	head, err := r.heads.signHead(e.leaf.Mailbox, e.leaf.Head)
	if err != nil {
		return nil, errors.Join(errSignHead, err)
	}
	return r.receipt(e, head), nil
}

// enqueued is a send the mailbox store holds: its store receipt and the
// head its receipt is to carry, not yet signed.
type enqueued struct {
	rc   mailbox.Receipt
	leaf mailbox.HeadLeaf
	size int
}

// enqueue is the store's part of step 8 of §Send: it enqueues the
// envelope idempotently with its expiry in mailbox id (StoreMailboxID of
// the header's); the store's receipt carries the durable head. It returns the mailbox
// store's error.
func (r *Relay) enqueue(ctx context.Context, id mailbox.ID, h *sealed.Header, body []byte) (enqueued, error) {
	it := r.storeItem(id, h, body, r.opts.Now())
	rc, err := r.opts.Mailboxes.Enqueue(ctx, it.Mailbox, it.Message)
	if err != nil {
		r.met.sends.WithLabelValues("store-error").Inc()
		return enqueued{}, err
	}
	return enqueuedAs(&it, rc), nil
}

// storeItem is the store's message for the envelope body with header h,
// to mailbox id: its id, and its expiry from the header's TTL capped at
// MaxTTL.
func (r *Relay) storeItem(id mailbox.ID, h *sealed.Header, body []byte, now time.Time) mailbox.Item {
	ttl := min(time.Duration(h.TTL)*time.Second, r.opts.Limits.MaxTTL)
	return mailbox.Item{Mailbox: id, Message: mailbox.Message{
		ID: mailbox.MessageID(h.MessageID), Expires: now.Add(ttl), Body: body,
	}}
}

// enqueuedAs is it, stored with receipt rc.
func enqueuedAs(it *mailbox.Item, rc mailbox.Receipt) enqueued {
	return enqueued{rc: rc, leaf: mailbox.HeadLeaf{Mailbox: it.Mailbox, Head: max(rc.Head, rc.Seq)}, size: len(it.Body)}
}

// receipt counts the send e and returns its receipt, with head signed.
func (r *Relay) receipt(e enqueued, head *mailbox.BatchedHead) *Receipt {
	if e.rc.Duplicate {
		r.met.sendsDuplicate.Inc()
	} else {
		r.met.sendsOK.Inc()
		r.met.sendBytes.Observe(float64(e.size))
	}
	return &Receipt{Seq: e.rc.Seq, Duplicate: e.rc.Duplicate, Head: head}
}

func (r *Relay) sendRefused(w http.ResponseWriter, scope string, wait time.Duration) {
	r.itemRefused(scope)
	httpserve.TooMany(w, wait)
}

func uintParam(req *http.Request, name string, def uint64) (uint64, bool) {
	v := req.URL.Query().Get(name)
	if v == "" {
		return def, true
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || strconv.FormatUint(n, 10) != v {
		return 0, false
	}
	return n, true
}

// page fetches the messages after cursor and signs the page's head.
func (r *Relay) page(ctx context.Context, id mailbox.ID, after uint64, limit int) (*Page, error) {
	pg, err := r.opts.Mailboxes.Fetch(ctx, id, after, limit)
	if err != nil {
		return nil, err
	}
	head, err := r.signHead(id, pg.Head, pg.Acked)
	if err != nil {
		return nil, err
	}
	p := &Page{Head: head}
	for _, m := range pg.Messages {
		p.Messages = append(p.Messages, Message{Seq: m.Seq, Envelope: m.Body})
	}
	return p, nil
}

// getMessages is GET /relay/v1/mailboxes/{mailbox}/messages?after=N&limit=L.
func (r *Relay) getMessages(w http.ResponseWriter, req *http.Request, ss *session) {
	after, ok1 := uintParam(req, "after", 0)
	limit, ok2 := uintParam(req, "limit", 100)
	if !ok1 || !ok2 || limit < 1 || limit > mailbox.MaxFetch {
		httpserve.WriteError(w, http.StatusBadRequest, "bad after or limit")
		return
	}
	p, err := r.page(req.Context(), StoreMailboxID(ss.Mailbox()), after, int(limit))
	if err != nil {
		r.storeError(w, err)
		return
	}
	b, err := p.Marshal()
	if err != nil {
		httpserve.WriteError(w, http.StatusInternalServerError, "internal error")
		return
	}
	writeBinary(w, b)
}

// postAck is POST /relay/v1/mailboxes/{mailbox}/ack?up-to=N.
func (r *Relay) postAck(w http.ResponseWriter, req *http.Request, ss *session) {
	upTo, ok := uintParam(req, "up-to", 0)
	if !ok || upTo == 0 {
		httpserve.WriteError(w, http.StatusBadRequest, "bad up-to")
		return
	}
	if err := r.opts.Mailboxes.Ack(req.Context(), StoreMailboxID(ss.Mailbox()), upTo); err != nil {
		r.storeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// getPush is GET /relay/v1/mailboxes/{mailbox}/push?after=N: a WebSocket
// on which the relay sends a MailboxPage of the messages after the cursor,
// then one page whenever new messages arrive; the device sends PushAcks
// (docs/spec/api.md §Push channel).
func (r *Relay) getPush(w http.ResponseWriter, req *http.Request, ss *session) {
	after, ok := uintParam(req, "after", 0)
	if !ok {
		httpserve.WriteError(w, http.StatusBadRequest, "bad after")
		return
	}
	mb := ss.Mailbox()
	r.pushMu.Lock()
	if r.push[mb] >= r.opts.Limits.MaxPushPerDevice {
		r.pushMu.Unlock()
		r.met.rateLimited.WithLabelValues("push").Inc()
		httpserve.TooMany(w, 5*time.Second)
		return
	}
	r.push[mb]++
	r.pushWait.Add(1)
	r.pushMu.Unlock()
	defer func() {
		r.pushMu.Lock()
		if r.push[mb]--; r.push[mb] == 0 {
			delete(r.push, mb)
		}
		r.pushMu.Unlock()
		r.pushWait.Done()
	}()
	// The server's read and write timeouts are for requests; this
	// connection lives on, with the pings below as its liveness check.
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Time{})
	c, err := websocket.Accept(w, req, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(64)
	r.met.pushOpen.Inc()
	defer r.met.pushOpen.Dec()

	ctx, cancel := context.WithCancel(req.Context())
	defer cancel()
	go func() {
		select {
		case <-r.stopCtx.Done():
			c.Close(websocket.StatusGoingAway, "relay shutting down")
			cancel()
		case <-ctx.Done():
		}
	}()
	id := StoreMailboxID(mb)
	acks := make(chan uint64, 1)
	go func() {
		defer cancel()
		for {
			typ, b, err := c.Read(ctx)
			if err != nil {
				return
			}
			upTo, err := ParsePushAck(b)
			if typ != websocket.MessageBinary || err != nil {
				c.Close(websocket.StatusUnsupportedData, "malformed frame")
				return
			}
			select {
			case acks <- upTo:
			case <-ctx.Done():
				return
			}
		}
	}()
	sub := r.opts.Mailboxes.Subscribe(id)
	defer sub.Close()
	ping := time.NewTicker(r.opts.Limits.PushPing)
	defer ping.Stop()
	cursor, first := after, true
	for {
		// T45: a device revoked while connected stops receiving.
		if _, err := r.opts.Directory.Device(ss.Tenant, ss.Device, r.opts.Now()); err != nil {
			c.Close(websocket.StatusPolicyViolation, "device no longer certified")
			return
		}
		if !r.opts.Now().Before(ss.expires) {
			c.Close(websocket.StatusPolicyViolation, "session expired")
			return
		}
		p, err := r.page(ctx, id, cursor, 100)
		if err != nil {
			c.Close(websocket.StatusTryAgainLater, "storage unavailable")
			return
		}
		if len(p.Messages) > 0 || first {
			b, err := p.Marshal()
			if err != nil {
				return
			}
			wctx, wcancel := context.WithTimeout(ctx, r.opts.Limits.PushPing)
			err = c.Write(wctx, websocket.MessageBinary, b)
			wcancel()
			if err != nil {
				return
			}
			r.met.pushPages.Inc()
			first = false
			if n := len(p.Messages); n > 0 {
				cursor = p.Messages[n-1].Seq
				continue // fetch again until the mailbox is drained
			}
		}
		select {
		case <-ctx.Done():
			return
		case _, ok := <-sub.C:
			if !ok {
				c.Close(websocket.StatusGoingAway, "relay shutting down")
				return
			}
		case upTo := <-acks:
			if err := r.opts.Mailboxes.Ack(ctx, id, upTo); err != nil {
				code := websocket.StatusTryAgainLater
				if errors.Is(err, mailbox.ErrBeyondHead) || errors.Is(err, mailbox.ErrInvalid) {
					code = websocket.StatusPolicyViolation
				}
				c.Close(code, "ack failed")
				return
			}
		case <-ping.C:
			pctx, pcancel := context.WithTimeout(ctx, r.opts.Limits.PushPing)
			err := c.Ping(pctx)
			pcancel()
			if err != nil {
				return
			}
		}
	}
}

// parseVerifier parses the hex path text of a verifier.
func parseVerifier(s string) (deliverytoken.Verifier, bool) {
	var v deliverytoken.Verifier
	if len(s) != 64 {
		return v, false
	}
	_, err := hex.Decode(v[:], []byte(s))
	return v, err == nil && hex.EncodeToString(v[:]) == s
}

// putVerifier is PUT /relay/v1/mailboxes/{mailbox}/verifiers/{verifier}.
func (r *Relay) putVerifier(w http.ResponseWriter, req *http.Request, ss *session) {
	v, ok := parseVerifier(req.PathValue("verifier"))
	if !ok {
		httpserve.WriteError(w, http.StatusBadRequest, "bad verifier")
		return
	}
	if err := r.opts.Verifiers.Add(ss.Mailbox(), v); err != nil {
		if errors.Is(err, deliverytoken.ErrTooManyVerifiers) {
			httpserve.WriteError(w, http.StatusInsufficientStorage, "too many verifiers")
			return
		}
		httpserve.Unavailable(w, 5*time.Second, "verifier store unavailable")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// deleteVerifier is DELETE /relay/v1/mailboxes/{mailbox}/verifiers/{verifier}.
func (r *Relay) deleteVerifier(w http.ResponseWriter, req *http.Request, ss *session) {
	v, ok := parseVerifier(req.PathValue("verifier"))
	if !ok {
		httpserve.WriteError(w, http.StatusBadRequest, "bad verifier")
		return
	}
	if err := r.opts.Verifiers.Remove(ss.Mailbox(), v); err != nil {
		httpserve.Unavailable(w, 5*time.Second, "verifier store unavailable")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
