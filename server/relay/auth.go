package relay

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/moat-im/moat/crypto/deviceauth"
	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/internal/httpserve"
)

// Sessions (docs/spec/api.md §Sessions). After a device answers a
// challenge, the relay gives it a session token: 32 random bytes, valid
// for one purpose and SessionLifetime, sent as
// "Authorization: Moat-Session <base64url>". The relay keeps only the
// SHA-256 of each token, in memory: a restart ends every session, and a
// copy of the relay's memory cannot be replayed as a token.

const (
	// AuthScheme is the Authorization scheme of a session token.
	AuthScheme = "Moat-Session"
	// SessionTokenSize is the size of a session token.
	SessionTokenSize = 32
)

var purposeNames = map[string]deviceauth.Purpose{
	"mailbox":         deviceauth.PurposeMailbox,
	"prekeys":         deviceauth.PurposePrekeys,
	"attachments":     deviceauth.PurposeAttachments,
	"delivery-tokens": deviceauth.PurposeDeliveryTokens,
	"token-issuance":  deviceauth.PurposeTokenIssuance,
	"all":             deviceauth.PurposeAll,
}

// PurposeName returns the name of p in the API (the purpose query
// parameter), or "".
func PurposeName(p deviceauth.Purpose) string {
	for n, q := range purposeNames {
		if q == p {
			return n
		}
	}
	return ""
}

type session struct {
	deviceauth.Authenticated
	expires time.Time
	hash    [32]byte
}

type sessions struct {
	max, perDevice int

	mu       sync.Mutex
	byHash   map[[32]byte]*session
	byDevice map[sealed.MailboxID][]*session
}

func newSessions(max, perDevice int) *sessions {
	return &sessions{max: max, perDevice: perDevice, byHash: map[[32]byte]*session{}, byDevice: map[sealed.MailboxID][]*session{}}
}

// add records a new session and returns its token, or false if the table
// is full of unexpired sessions.
func (s *sessions) add(a *deviceauth.Authenticated, expires, now time.Time) ([]byte, bool) {
	token := make([]byte, SessionTokenSize)
	rand.Read(token)
	ss := &session{Authenticated: *a, expires: expires, hash: sha256.Sum256(token)}
	mb := a.Mailbox()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.byHash) >= s.max {
		for h, o := range s.byHash {
			if !now.Before(o.expires) {
				s.removeLocked(h)
			}
		}
		if len(s.byHash) >= s.max {
			return nil, false
		}
	}
	if list := s.byDevice[mb]; len(list) >= s.perDevice {
		s.removeLocked(list[0].hash)
	}
	s.byHash[ss.hash] = ss
	s.byDevice[mb] = append(s.byDevice[mb], ss)
	return token, true
}

func (s *sessions) removeLocked(h [32]byte) {
	ss := s.byHash[h]
	if ss == nil {
		return
	}
	delete(s.byHash, h)
	mb := ss.Mailbox()
	list := s.byDevice[mb]
	for i, o := range list {
		if o == ss {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(s.byDevice, mb)
	} else {
		s.byDevice[mb] = list
	}
}

// lookup returns the unexpired session of token.
func (s *sessions) lookup(token []byte, now time.Time) *session {
	h := sha256.Sum256(token)
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.byHash[h]
	if ss == nil {
		return nil
	}
	if !now.Before(ss.expires) {
		s.removeLocked(h)
		return nil
	}
	return ss
}

// dropDevice ends every session of a device (it was found revoked).
func (s *sessions) dropDevice(mb sealed.MailboxID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ss := range append([]*session(nil), s.byDevice[mb]...) {
		s.removeLocked(ss.hash)
	}
}

// channelBinding returns the RFC 9266 tls-exporter value of the request's
// connection, or nil without TLS.
func (r *Relay) channelBinding(req *http.Request) []byte {
	if req.TLS == nil || r.opts.NoChannelBinding {
		return nil
	}
	cb, err := req.TLS.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
	if err != nil {
		return nil
	}
	return cb
}

func (r *Relay) purpose(w http.ResponseWriter, req *http.Request) (deviceauth.Purpose, bool) {
	p, ok := purposeNames[req.URL.Query().Get("purpose")]
	if !ok {
		httpserve.WriteError(w, http.StatusBadRequest, "unknown purpose")
	}
	return p, ok
}

// postChallenge is POST /relay/v1/auth/challenge?purpose=P.
func (r *Relay) postChallenge(w http.ResponseWriter, req *http.Request) {
	if ok, wait := r.challengeLimit.Allow(httpserve.ClientKey(req.RemoteAddr)); !ok {
		r.met.rateLimited.WithLabelValues("challenge").Inc()
		httpserve.TooMany(w, wait)
		return
	}
	p, ok := r.purpose(w, req)
	if !ok {
		return
	}
	c, err := r.auth.Challenge(p)
	if err != nil {
		httpserve.WriteError(w, http.StatusInternalServerError, "internal error")
		return
	}
	writeBinary(w, c)
}

// SessionResponse answers a session request.
type SessionResponse struct {
	Token   string `json:"token"`   // base64url, no padding
	Expires int64  `json:"expires"` // Unix seconds
}

// postSession is POST /relay/v1/auth/session?purpose=P with a device-auth
// Response as the body.
func (r *Relay) postSession(w http.ResponseWriter, req *http.Request) {
	if ok, wait := r.challengeLimit.Allow(httpserve.ClientKey(req.RemoteAddr)); !ok {
		r.met.rateLimited.WithLabelValues("challenge").Inc()
		httpserve.TooMany(w, wait)
		return
	}
	p, ok := r.purpose(w, req)
	if !ok {
		return
	}
	body, ok := httpserve.ReadBody(w, req, deviceauth.MaxResponseSize)
	if !ok {
		return
	}
	a, err := r.auth.Verify(body, p, r.channelBinding(req))
	if err != nil {
		r.met.auth.WithLabelValues(authResult(err)).Inc()
		switch {
		case errors.Is(err, deviceauth.ErrReplayCacheFull):
			httpserve.Unavailable(w, 5*time.Second, "too many authentications; try again")
		case errors.Is(err, deviceauth.ErrMalformed):
			httpserve.WriteError(w, http.StatusBadRequest, "malformed response")
		case errors.Is(err, deviceauth.ErrUnknownDevice), errors.Is(err, deviceauth.ErrBadSignature),
			errors.Is(err, deviceauth.ErrReplayed), errors.Is(err, deviceauth.ErrExpired),
			errors.Is(err, deviceauth.ErrBadChallenge), errors.Is(err, deviceauth.ErrWrongRelay),
			errors.Is(err, deviceauth.ErrWrongPurpose):
			unauthorized(w, "authentication failed")
		default:
			httpserve.Unavailable(w, 5*time.Second, "device directory unavailable")
		}
		return
	}
	now := r.opts.Now()
	expires := now.Add(r.opts.Limits.SessionLifetime)
	token, ok := r.sessions.add(a, expires, now)
	if !ok {
		r.met.auth.WithLabelValues("sessions-full").Inc()
		httpserve.Unavailable(w, 5*time.Second, "too many sessions; try again")
		return
	}
	r.met.auth.WithLabelValues("ok").Inc()
	writeJSON(w, &SessionResponse{Token: base64.RawURLEncoding.EncodeToString(token), Expires: expires.Unix()})
}

func authResult(err error) string {
	for name, e := range map[string]error{
		"malformed": deviceauth.ErrMalformed, "bad-challenge": deviceauth.ErrBadChallenge,
		"wrong-relay": deviceauth.ErrWrongRelay, "wrong-purpose": deviceauth.ErrWrongPurpose,
		"expired": deviceauth.ErrExpired, "unknown-device": deviceauth.ErrUnknownDevice,
		"bad-signature": deviceauth.ErrBadSignature, "replayed": deviceauth.ErrReplayed,
		"replay-cache-full": deviceauth.ErrReplayCacheFull,
	} {
		if errors.Is(err, e) {
			return name
		}
	}
	return "error"
}

func unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", AuthScheme+` realm="moat-relay"`)
	httpserve.WriteError(w, http.StatusUnauthorized, msg)
}

// ParseMailboxID parses the hex text of a MailboxID (64 lower-case hex
// digits, tenant then device), refusing a zero half.
func ParseMailboxID(s string) (sealed.MailboxID, error) {
	var mb sealed.MailboxID
	if len(s) != 64 || strings.ToLower(s) != s {
		return mb, ErrMalformed
	}
	if _, err := hex.Decode(mb[:], []byte(s)); err != nil || !mb.Valid() {
		return mb, ErrMalformed
	}
	return mb, nil
}

// MailboxText returns the path text of a MailboxID.
func MailboxText(mb sealed.MailboxID) string { return hex.EncodeToString(mb[:]) }

// authn checks the request's session for purpose p and the per-device and
// per-tenant limits, and that the device is still active. It returns the
// session, or writes the response and returns nil.
func (r *Relay) authn(w http.ResponseWriter, req *http.Request, p deviceauth.Purpose) *session {
	scheme, tok, ok := strings.Cut(req.Header.Get("Authorization"), " ")
	if !ok || scheme != AuthScheme || len(tok) != base64.RawURLEncoding.EncodedLen(SessionTokenSize) {
		unauthorized(w, "session required")
		return nil
	}
	token, err := base64.RawURLEncoding.Strict().DecodeString(tok)
	if err != nil {
		unauthorized(w, "session required")
		return nil
	}
	now := r.opts.Now()
	ss := r.sessions.lookup(token, now)
	if ss == nil {
		unauthorized(w, "session unknown or expired")
		return nil
	}
	if !ss.Purpose.Covers(p) {
		httpserve.WriteError(w, http.StatusForbidden, "session is for another purpose")
		return nil
	}
	if _, err := r.opts.Directory.Device(ss.Tenant, ss.Device, now); err != nil {
		if errors.Is(err, ErrUnknownDevice) {
			r.forgetRevoked(req.Context(), ss.Mailbox()) // revoked.go
			unauthorized(w, "device no longer certified")
		} else {
			httpserve.Unavailable(w, 5*time.Second, "device directory unavailable")
		}
		return nil
	}
	mb := ss.Mailbox()
	if ok, wait := r.deviceLimit.Allow(string(mb[:])); !ok {
		r.met.rateLimited.WithLabelValues("device").Inc()
		httpserve.TooMany(w, wait)
		return nil
	}
	if ok, wait := r.tenantLimit.Allow(string(ss.Tenant[:])); !ok {
		r.met.rateLimited.WithLabelValues("tenant").Inc()
		httpserve.TooMany(w, wait)
		return nil
	}
	return ss
}

// authed wraps a handler of the device's own mailbox or keys: the path's
// mailbox must be the session's device (T44).
func (r *Relay) authed(p deviceauth.Purpose, h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		mb, err := ParseMailboxID(req.PathValue("mailbox"))
		if err != nil {
			httpserve.WriteError(w, http.StatusBadRequest, "bad mailbox id")
			return
		}
		ss := r.authn(w, req, p)
		if ss == nil {
			return
		}
		if err := ss.Authorize(mb); err != nil {
			r.met.forbidden.Inc()
			httpserve.WriteError(w, http.StatusForbidden, "not your mailbox")
			return
		}
		h(w, req, ss)
	}
}

// authedAny wraps a handler of another device's published keys: any
// authenticated device of the same tenant may call it.
func (r *Relay) authedAny(p deviceauth.Purpose, h func(http.ResponseWriter, *http.Request, *session, sealed.MailboxID)) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		mb, err := ParseMailboxID(req.PathValue("mailbox"))
		if err != nil {
			httpserve.WriteError(w, http.StatusBadRequest, "bad mailbox id")
			return
		}
		ss := r.authn(w, req, p)
		if ss == nil {
			return
		}
		if mb.Tenant() != ss.Tenant {
			r.met.forbidden.Inc()
			httpserve.WriteError(w, http.StatusForbidden, "device of another tenant")
			return
		}
		h(w, req, ss, mb)
	}
}
