package service

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/keyserver/org"
	"golang.org/x/crypto/cryptobyte"
)

// Signed requests (docs/spec/directory-api.md §Authentication). Admin
// endpoints take requests signed by an admin key of the tenant's roster;
// the endpoints that return VRF proofs take requests signed by an active
// device of the tenant. The signature covers the method, the request
// target, the tenant, the signer, a timestamp, a nonce and the body's hash.

// Request headers of a signed request.
const (
	HeaderAdmin     = "Moat-Admin"     // hex admin id
	HeaderDevice    = "Moat-Device"    // hex user id "/" hex device id
	HeaderTime      = "Moat-Time"      // POSIX seconds, decimal
	HeaderNonce     = "Moat-Nonce"     // base64url (no padding) of 16 random bytes
	HeaderSignature = "Moat-Signature" // base64url (no padding) of the signature
)

// Domain-separation labels of signed requests.
const (
	labelAdminRequest  = "moat/v1/directory-api/admin-request"
	labelDeviceRequest = "moat/v1/directory-api/device-request"
)

// RequestNonceSize is the size of a request nonce.
const RequestNonceSize = 16

// maxSignatureSize bounds the signature header: a hybrid admin signature
// is 64 + 3309 bytes.
const maxSignatureSize = 4096

// RequestMessage returns the message a signed request's signature covers:
//
//	label || 0x00 ||
//	uint8 len || method || uint16 len || target ||
//	tenant[16] || uint8 len || signer || uint64 time || nonce[16] ||
//	SHA-256(body)
//
// where label is "moat/v1/directory-api/admin-request" (signer = admin
// id) or "moat/v1/directory-api/device-request" (signer = user id ||
// device id), and target is the request's path and query as sent
// (url.URL.RequestURI).
func RequestMessage(admin bool, method, target string, tenant org.TenantID, signer []byte, t uint64, nonce []byte, body []byte) ([]byte, error) {
	label := labelDeviceRequest
	if admin {
		label = labelAdminRequest
	}
	h := sha256.Sum256(body)
	var b cryptobyte.Builder
	b.AddBytes([]byte(label))
	b.AddUint8(0)
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(method)) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(target)) })
	b.AddBytes(tenant[:])
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(signer) })
	b.AddUint64(t)
	if len(nonce) != RequestNonceSize {
		return nil, errors.New("service: bad nonce size")
	}
	b.AddBytes(nonce)
	b.AddBytes(h[:])
	return b.Bytes()
}

func newNonce(rnd io.Reader) ([]byte, error) {
	n := make([]byte, RequestNonceSize)
	_, err := io.ReadFull(rnd, n)
	return n, err
}

func setAuthHeaders(req *http.Request, now time.Time, nonce, sig []byte) {
	req.Header.Set(HeaderTime, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(HeaderNonce, base64.RawURLEncoding.EncodeToString(nonce))
	req.Header.Set(HeaderSignature, base64.RawURLEncoding.EncodeToString(sig))
}

// SignAdminRequest signs req, whose body is body, as admin key of tenant
// at time now, with a nonce from rnd.
func SignAdminRequest(req *http.Request, tenant org.TenantID, key *org.AdminPrivateKey, body []byte, now time.Time, rnd io.Reader) error {
	nonce, err := newNonce(rnd)
	if err != nil {
		return err
	}
	id := key.Public().ID()
	msg, err := RequestMessage(true, req.Method, req.URL.RequestURI(), tenant, id[:], uint64(now.Unix()), nonce, body)
	if err != nil {
		return err
	}
	sig, err := key.Sign(msg)
	if err != nil {
		return err
	}
	req.Header.Set(HeaderAdmin, id.String())
	setAuthHeaders(req, now, nonce, sig)
	return nil
}

// SignDeviceRequest signs req, whose body is body, as device of user in
// tenant, with its identity signing key.
func SignDeviceRequest(req *http.Request, tenant org.TenantID, user org.UserID, device org.DeviceID,
	key *keys.IdentitySigningPrivateKey, body []byte, now time.Time, rnd io.Reader) error {
	nonce, err := newNonce(rnd)
	if err != nil {
		return err
	}
	signer := append(user[:len(user):len(user)], device[:]...)
	msg, err := RequestMessage(false, req.Method, req.URL.RequestURI(), tenant, signer, uint64(now.Unix()), nonce, body)
	if err != nil {
		return err
	}
	req.Header.Set(HeaderDevice, user.String()+"/"+device.String())
	setAuthHeaders(req, now, nonce, key.Sign(msg))
	return nil
}

// principal is who signed a request.
type principal struct {
	admin  bool
	id     org.AdminID
	user   org.UserID
	device org.DeviceID
}

// authError is an authentication failure: 401, or 503 when the replay
// cache is full.
type authError struct {
	status int
	msg    string
}

func (e *authError) Error() string { return e.msg }

func unauthorized(msg string) error { return &authError{http.StatusUnauthorized, msg} }

// authenticate checks the signature of a request to t with body at time
// now, and records its nonce. Only the credential kind the request names
// is checked; the caller authorises the principal.
func (t *Tenant) authenticate(r *http.Request, body []byte, now time.Time) (*principal, error) {
	return t.authenticateAs(r, body, now, t.activeDeviceKey)
}

// activeDeviceKey returns the signing key of device dev of user if it is
// active at now.
func (t *Tenant) activeDeviceKey(user org.UserID, dev org.DeviceID, now time.Time) (*keys.IdentitySigningPublicKey, bool) {
	d, ok := t.device(dev, now)
	if !ok || d.user != user {
		return nil, false
	}
	return d.key, true
}

// authenticateAs is authenticate with deviceKey resolving the key of a
// signing device (wipe.go accepts revoked devices for their wipe
// instruction).
func (t *Tenant) authenticateAs(r *http.Request, body []byte, now time.Time,
	deviceKey func(org.UserID, org.DeviceID, time.Time) (*keys.IdentitySigningPublicKey, bool)) (*principal, error) {
	adminH, deviceH := r.Header.Get(HeaderAdmin), r.Header.Get(HeaderDevice)
	if (adminH == "") == (deviceH == "") {
		return nil, unauthorized("sign the request with exactly one of Moat-Admin or Moat-Device")
	}
	ts, err := strconv.ParseUint(r.Header.Get(HeaderTime), 10, 63)
	if err != nil {
		return nil, unauthorized("bad Moat-Time")
	}
	window := int64(t.opts.Limits.AuthWindow / time.Second)
	if d := now.Unix() - int64(ts); d > window || d < -window {
		return nil, unauthorized("Moat-Time outside the accepted window; check the clock")
	}
	nonce, err := base64.RawURLEncoding.Strict().DecodeString(r.Header.Get(HeaderNonce))
	if err != nil || len(nonce) != RequestNonceSize {
		return nil, unauthorized("bad Moat-Nonce")
	}
	sigText := r.Header.Get(HeaderSignature)
	if len(sigText) > base64.RawURLEncoding.EncodedLen(maxSignatureSize) {
		return nil, unauthorized("bad Moat-Signature")
	}
	sig, err := base64.RawURLEncoding.Strict().DecodeString(sigText)
	if err != nil {
		return nil, unauthorized("bad Moat-Signature")
	}
	p := &principal{}
	var signer []byte
	var verify func(msg []byte) error
	if adminH != "" {
		if err := parseID(adminH, p.id[:]); err != nil {
			return nil, unauthorized("bad Moat-Admin")
		}
		p.admin, signer = true, p.id[:]
		k := t.trust.Load().roster.Admin(p.id)
		if k == nil {
			return nil, unauthorized("not an admin of this tenant")
		}
		verify = func(msg []byte) error { return k.Verify(msg, sig) }
	} else {
		u, d, ok := strings.Cut(deviceH, "/")
		if !ok || parseID(u, p.user[:]) != nil || parseID(d, p.device[:]) != nil {
			return nil, unauthorized("bad Moat-Device")
		}
		signer = append(p.user[:len(p.user):len(p.user)], p.device[:]...)
		key, ok := deviceKey(p.user, p.device, now)
		if !ok {
			return nil, unauthorized("not an active device of this tenant")
		}
		verify = func(msg []byte) error { return key.Verify(msg, sig) }
	}
	msg, err := RequestMessage(p.admin, r.Method, r.URL.RequestURI(), t.id, signer, ts, nonce, body)
	if err != nil {
		return nil, unauthorized("bad request target")
	}
	if err := verify(msg); err != nil {
		return nil, unauthorized("bad signature")
	}
	// Only a validly signed request spends a nonce, so that nobody else
	// can fill the cache.
	key := hex.EncodeToString(signer) + "/" + string(nonce)
	switch t.nonces.add(key, int64(ts), int64(ts)+window, now.Unix()) {
	case replayed:
		return nil, unauthorized("replayed request")
	case beforeStart:
		return nil, unauthorized("request signed before the directory started; sign it again")
	case cacheFull:
		return nil, &authError{http.StatusServiceUnavailable, "too many signed requests; try again"}
	}
	return p, nil
}

// replayCache remembers the nonces of signed requests until their
// timestamps leave the accepted window, after which the request is
// refused anyway. It lives in memory: it refuses every request whose
// Moat-Time is before the second of its creation, so that a request
// signed before a restart, whose nonce the cache no longer knows, cannot
// be replayed after it (directory-api.md §Signed requests); a restart
// takes longer than the second in which the old process signed its last
// answer.
type replayCache struct {
	mu    sync.Mutex
	max   int
	start int64            // creation, POSIX seconds
	m     map[string]int64 // nonce key → expiry, POSIX seconds
}

type replayResult int

const (
	fresh replayResult = iota
	replayed
	cacheFull
	beforeStart
)

func newReplayCache(max int, start int64) *replayCache {
	return &replayCache{max: max, start: start, m: map[string]int64{}}
}

func (c *replayCache) add(key string, signed, expires, now int64) replayResult {
	if signed < c.start {
		return beforeStart
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if exp, ok := c.m[key]; ok && exp >= now {
		return replayed
	}
	if len(c.m) >= c.max {
		for k, exp := range c.m {
			if exp < now {
				delete(c.m, k)
			}
		}
		if len(c.m) >= c.max {
			return cacheFull
		}
	}
	c.m[key] = expires
	return fresh
}

func (p *principal) String() string {
	if p.admin {
		return fmt.Sprintf("admin %s", p.id)
	}
	return "device"
}
