package relay

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/deviceauth"
	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/internal/httpserve"
	"github.com/moat-im/moat/server/store/blob"
	"github.com/moat-im/moat/server/store/mailbox"
	"github.com/moat-im/moat/server/store/prekey"
	"github.com/prometheus/client_golang/prometheus"
)

// Rate is a token-bucket rate limit (internal/httpserve): Burst requests
// at once, refilled at PerSecond. The zero Rate selects a limit's default;
// a negative PerSecond disables the limit.
type Rate = httpserve.Rate

// Limits are the relay's rate and size limits (docs/spec/api.md §Limits).
// A zero field selects its default.
type Limits struct {
	// PerAddress limits every /relay/v1 request per client address (IPv4
	// address or IPv6 /64). Default 200/s, burst 400.
	PerAddress Rate
	// Challenge limits challenge and session requests per address.
	// Default 2/s, burst 20.
	Challenge Rate
	// PerDevice limits the authenticated calls of one device. Default
	// 20/s, burst 100.
	PerDevice Rate
	// PerTenant limits the authenticated calls of one tenant's devices
	// together. Default 2,000/s, burst 4,000.
	PerTenant Rate
	// SendPerAddress limits anonymous sends per address. Default 50/s,
	// burst 200.
	SendPerAddress Rate
	// SendPerToken limits sends per delivery token: per (mailbox,
	// verifier) for a MAC token, per recipient tenant for anonymous
	// tokens (docs/spec/envelope.md §Rate-limit keys). Default 10/s,
	// burst 50.
	SendPerToken Rate
	// SendPerMailbox limits sends to one mailbox, whatever the tokens.
	// Default 100/s, burst 500.
	SendPerMailbox Rate
	// BundlePerTarget limits bundle and KeyPackage fetches of one device's
	// keys, whoever asks (T24). Default 1/s, burst 20.
	BundlePerTarget Rate
	// MaxBuckets bounds each limiter's memory. Default 100,000.
	MaxBuckets int

	// MaxEnvelope bounds a sealed envelope; it must be a size bucket.
	// Default and maximum mailbox.MaxBodySize (512 KiB, the largest
	// bucket, which the ratchet's largest message needs).
	MaxEnvelope int
	// MaxTTL caps an envelope's TTL. Default mailbox.DefaultMaxTTL (30
	// days), the store's default.
	MaxTTL time.Duration

	// SessionLifetime is how long a session lasts. Default 1 hour.
	SessionLifetime time.Duration
	// MaxSessions bounds the sessions held. Default 100,000.
	MaxSessions int
	// MaxSessionsPerDevice bounds one device's sessions; its oldest goes
	// first. Default 16.
	MaxSessionsPerDevice int
	// MaxPushPerDevice bounds one device's open push channels. Default 4.
	MaxPushPerDevice int
	// PushPing is how often the relay pings an idle push channel; a
	// channel that does not answer within PushPing is closed. Default 30s.
	PushPing time.Duration
}

func (l *Limits) defaults() error {
	for _, r := range []struct {
		r *Rate
		d Rate
	}{
		{&l.PerAddress, Rate{PerSecond: 200, Burst: 400}},
		{&l.Challenge, Rate{PerSecond: 2, Burst: 20}},
		{&l.PerDevice, Rate{PerSecond: 20, Burst: 100}},
		{&l.PerTenant, Rate{PerSecond: 2000, Burst: 4000}},
		{&l.SendPerAddress, Rate{PerSecond: 50, Burst: 200}},
		{&l.SendPerToken, Rate{PerSecond: 10, Burst: 50}},
		{&l.SendPerMailbox, Rate{PerSecond: 100, Burst: 500}},
		{&l.BundlePerTarget, Rate{PerSecond: 1, Burst: 20}},
	} {
		if *r.r == (Rate{}) {
			*r.r = r.d
		}
	}
	if l.MaxBuckets == 0 {
		l.MaxBuckets = 100_000
	}
	if l.MaxEnvelope == 0 {
		l.MaxEnvelope = mailbox.MaxBodySize
	}
	if l.MaxEnvelope > mailbox.MaxBodySize || !sealed.IsBucket(l.MaxEnvelope) {
		return fmt.Errorf("relay: MaxEnvelope %d is not a bucket of at most %d bytes", l.MaxEnvelope, mailbox.MaxBodySize)
	}
	if l.MaxTTL == 0 {
		l.MaxTTL = mailbox.DefaultMaxTTL
	}
	if l.SessionLifetime == 0 {
		l.SessionLifetime = time.Hour
	}
	if l.MaxSessions == 0 {
		l.MaxSessions = 100_000
	}
	if l.MaxSessionsPerDevice == 0 {
		l.MaxSessionsPerDevice = 16
	}
	if l.MaxPushPerDevice == 0 {
		l.MaxPushPerDevice = 4
	}
	if l.PushPing == 0 {
		l.PushPing = 30 * time.Second
	}
	return nil
}

// Verifiers is the relay's registry of MAC delivery-token verifiers per
// mailbox (docs/spec/envelope.md §MAC delivery tokens).
// deliverytoken.MemoryVerifiers and badgertokens.Store implement it; Add
// and Remove are durable when they return nil.
type Verifiers interface {
	deliverytoken.VerifierStore
	Add(mb sealed.MailboxID, v deliverytoken.Verifier) error
	Remove(mb sealed.MailboxID, v deliverytoken.Verifier) error
}

// Options configure a Relay.
type Options struct {
	// Name is the relay's name as devices address it (its host name):
	// device authentication binds every response to it.
	Name string
	// ChallengeKey is the 32-byte key of challenge tags; nil draws one
	// at New (challenges then do not outlive the process, which only
	// makes a device ask again).
	ChallengeKey []byte
	// SigningKey signs mailbox heads (T40). Required.
	SigningKey *keys.RelaySigningPrivateKey

	Directory DeviceDirectory // required
	Mailboxes mailbox.Store   // required
	Prekeys   prekey.Store    // required
	// Verifiers holds MAC-token verifiers. Default: in memory (forgotten
	// at a restart: a production relay passes a durable store).
	Verifiers Verifiers
	// Issuers are the tenants' anonymous-token issuer keys; nil refuses
	// anonymous tokens.
	Issuers deliverytoken.IssuerKeys
	// Blobs holds attachments (docs/spec/attachments.md); nil: the
	// attachment endpoints answer 404.
	Blobs blob.Store
	// Spent records redeemed anonymous tokens. Default: in memory (a
	// restart would let every token be spent again: a production relay
	// passes a durable store).
	Spent deliverytoken.SpentStore
	// TokenIssuer issues anonymous tokens (tokens_issue.go); nil answers
	// issuance with 404. Issuance bounds it per device and tenant.
	TokenIssuer TokenIssuer
	Issuance    IssuanceLimits
	// Quotas keeps the issuance counts and attachment byte budgets
	// (quota.go). Default: in memory, at most Limits.MaxBuckets records
	// (a restart resets them: a production relay passes its durable
	// token store).
	Quotas QuotaStore

	Limits Limits
	// AttachmentLimits bound attachments.
	AttachmentLimits AttachmentLimits
	// ReplayCache bounds device-authentication replay entries. Default
	// 1,000,000.
	ReplayCache int
	// NoChannelBinding leaves TLS channel binding out of device
	// authentication even when the relay terminates TLS itself (for a
	// relay behind a proxy that re-encrypts). Default false.
	NoChannelBinding bool

	// Logger receives the request log (route, status, duration: never a
	// secret, a token, an address or content). Default slog.Default().
	Logger *slog.Logger
	// Registry receives the metrics. Default: a new registry with the Go
	// and process collectors.
	Registry *prometheus.Registry
	// Now is the relay's clock. Default time.Now. Rate limits run on the
	// wall clock whatever Now says.
	Now func() time.Time
}

// Relay is the blind relay's HTTP service.
type Relay struct {
	opts   Options
	auth   *deviceauth.Verifier
	author *deliverytoken.Authorizer
	reg    *prometheus.Registry
	met    *metrics

	sessions *sessions
	heads    headBatcher // receipt heads, signed in batches (headbatch.go)

	addrLimit, challengeLimit, deviceLimit, tenantLimit *httpserve.Limiter
	sendAddrLimit, sendTokenLimit, sendMailboxLimit     *httpserve.Limiter
	bundleLimit                                         *httpserve.Limiter
	att                                                 *attachments

	pushMu sync.Mutex
	push   map[sealed.MailboxID]int // open push channels per device

	stop     context.CancelFunc
	stopCtx  context.Context
	pushWait sync.WaitGroup
}

// New checks opts and returns a Relay.
func New(opts Options) (*Relay, error) {
	if opts.SigningKey == nil || opts.Directory == nil || opts.Mailboxes == nil || opts.Prekeys == nil {
		return nil, errors.New("relay: Options need SigningKey, Directory, Mailboxes and Prekeys")
	}
	if err := opts.Limits.defaults(); err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ReplayCache == 0 {
		opts.ReplayCache = 1_000_000
	}
	if opts.ChallengeKey == nil {
		opts.ChallengeKey = make([]byte, deviceauth.ChallengeKeySize)
		rand.Read(opts.ChallengeKey)
	}
	if opts.Verifiers == nil {
		opts.Verifiers = deliverytoken.NewMemoryVerifiers()
	}
	if opts.Spent == nil {
		opts.Spent = deliverytoken.NewMemorySpentStore()
	}
	if opts.Quotas == nil {
		opts.Quotas = NewMemoryQuotas(2 * opts.Limits.MaxBuckets)
	}
	r := &Relay{opts: opts, reg: opts.Registry, push: map[sealed.MailboxID]int{}}
	if r.reg == nil {
		r.reg = prometheus.NewRegistry()
		httpserve.RegisterProcess(r.reg)
	}
	r.met = newMetrics(r.reg)
	var err error
	r.auth, err = deviceauth.NewVerifier(deviceauth.Config{
		Relay: opts.Name, ChallengeKey: opts.ChallengeKey,
		Devices: deviceKeys{dir: opts.Directory, now: opts.Now},
		Replay:  deviceauth.NewMemoryReplayCache(opts.ReplayCache), Now: opts.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	r.author = &deliverytoken.Authorizer{Verifiers: opts.Verifiers, Issuers: hideAbsence(opts.Issuers), Spent: opts.Spent}
	l := &r.opts.Limits
	lim := func(rt Rate) *httpserve.Limiter {
		if rt.PerSecond < 0 {
			return nil
		}
		return httpserve.NewLimiter(rt, l.MaxBuckets, time.Now)
	}
	r.addrLimit, r.challengeLimit = lim(l.PerAddress), lim(l.Challenge)
	r.deviceLimit, r.tenantLimit = lim(l.PerDevice), lim(l.PerTenant)
	r.sendAddrLimit, r.sendTokenLimit, r.sendMailboxLimit = lim(l.SendPerAddress), lim(l.SendPerToken), lim(l.SendPerMailbox)
	r.bundleLimit = lim(l.BundlePerTarget)
	r.sessions = newSessions(l.MaxSessions, l.MaxSessionsPerDevice)
	r.heads.sign = func(ls []mailbox.HeadLeaf) ([]*mailbox.BatchedHead, error) {
		r.met.receiptSigs.Inc()
		return mailbox.SignHeadBatch(r.opts.SigningKey, ls, r.opts.Now())
	}
	r.stopCtx, r.stop = context.WithCancel(context.Background())
	r.initAttachments()
	return r, nil
}

// SigningKey returns the relay's public signing key, which devices must
// obtain from their organisation.
func (r *Relay) SigningKey() *keys.RelaySigningPublicKey { return r.opts.SigningKey.Public() }

// Registry returns the metrics registry.
func (r *Relay) Registry() *prometheus.Registry { return r.reg }

// Close ends every push channel (a graceful shutdown calls it before
// http.Server.Shutdown, which does not wait for hijacked connections) and
// waits for them. It does not close the stores.
func (r *Relay) Close() {
	r.stop()
	r.pushWait.Wait()
}

// Ready reports whether the relay can serve: its mailbox store answers.
func (r *Relay) Ready() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := r.opts.Mailboxes.Status(ctx, mailbox.ID{}); err != nil {
		return errors.New("mailbox store unavailable")
	}
	return nil
}

// Prefix is the path prefix of the relay API.
const Prefix = "/relay/v1/"

// Handler returns the relay's HTTP handler: the API of docs/spec/api.md
// under /relay/v1/, and /healthz, /readyz and /metrics.
func (r *Relay) Handler() http.Handler {
	mux := http.NewServeMux()
	httpserve.HandleOps(mux, r.Ready, r.reg)
	r.Routes(mux)
	return r.instrument(mux)
}

// Routes registers the /relay/v1 API on mux, for a server that serves
// other APIs too (moatd serve). Requests must then pass through
// r.Instrument for the per-address limit, metrics and logs.
func (r *Relay) Routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /relay/v1/auth/challenge", r.postChallenge)
	mux.HandleFunc("POST /relay/v1/auth/session", r.postSession)
	mux.HandleFunc("POST /relay/v1/send", r.postSend)
	mux.HandleFunc("POST /relay/v1/send-batch", r.postSendBatch)
	mux.HandleFunc("POST /relay/v1/attachments", r.authedAttach(r.postAttachment))
	mux.HandleFunc("GET /relay/v1/attachments/{id}/upload", r.authedAttach(r.getAttachmentUpload))
	mux.HandleFunc("PATCH /relay/v1/attachments/{id}/upload", r.authedAttach(r.patchAttachmentUpload))
	mux.HandleFunc("POST /relay/v1/attachments/{id}/finalize", r.authedAttach(r.postAttachmentFinalize))
	mux.HandleFunc("GET /relay/v1/attachments/{id}", r.getAttachment)
	mux.HandleFunc("DELETE /relay/v1/attachments/{id}", r.authedAttach(r.deleteAttachment))
	mux.HandleFunc("GET /relay/v1/mailboxes/{mailbox}/messages", r.authed(deviceauth.PurposeMailbox, r.getMessages))
	mux.HandleFunc("POST /relay/v1/mailboxes/{mailbox}/ack", r.authed(deviceauth.PurposeMailbox, r.postAck))
	mux.HandleFunc("GET /relay/v1/mailboxes/{mailbox}/push", r.authed(deviceauth.PurposeMailbox, r.getPush))
	mux.HandleFunc("PUT /relay/v1/mailboxes/{mailbox}/verifiers/{verifier}", r.authed(deviceauth.PurposeDeliveryTokens, r.putVerifier))
	mux.HandleFunc("DELETE /relay/v1/mailboxes/{mailbox}/verifiers/{verifier}", r.authed(deviceauth.PurposeDeliveryTokens, r.deleteVerifier))
	mux.HandleFunc("PUT /relay/v1/devices/{mailbox}/prekeys", r.authed(deviceauth.PurposePrekeys, r.putPrekeys))
	mux.HandleFunc("GET /relay/v1/devices/{mailbox}/prekeys", r.authed(deviceauth.PurposePrekeys, r.getPrekeyStatus))
	mux.HandleFunc("GET /relay/v1/devices/{mailbox}/bundle", r.authedAny(deviceauth.PurposePrekeys, r.getBundle))
	mux.HandleFunc("GET /relay/v1/devices/{mailbox}/key-package", r.authedAny(deviceauth.PurposePrekeys, r.getKeyPackage))
	mux.HandleFunc("GET /relay/v1/tokens/issuer-key", r.getIssuerKey)
	mux.HandleFunc("POST /relay/v1/tokens/issue", r.postIssueTokens)
}

// Instrument applies the per-address limit to /relay/v1 requests, counts
// requests and writes the request log.
func (r *Relay) Instrument(next http.Handler) http.Handler { return r.instrument(next) }

func (r *Relay) instrument(next http.Handler) http.Handler {
	limited := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.addrLimit != nil && strings.HasPrefix(req.URL.Path, Prefix) {
			if ok, wait := r.addrLimit.Allow(httpserve.ClientKey(req.RemoteAddr)); !ok {
				r.met.rateLimited.WithLabelValues("address").Inc()
				httpserve.TooMany(w, wait)
				return
			}
		}
		next.ServeHTTP(w, req)
	})
	return httpserve.Instrument(limited, r.met.http, func(req *http.Request, route string, code int, start time.Time) {
		if !strings.HasPrefix(route, "GET /relay/") && !strings.HasPrefix(route, "POST /relay/") &&
			!strings.HasPrefix(route, "PUT /relay/") && !strings.HasPrefix(route, "DELETE /relay/") &&
			!strings.HasPrefix(route, "PATCH /relay/") &&
			code < 400 {
			return // health checks and scrapes
		}
		r.opts.Logger.LogAttrs(req.Context(), httpserve.LogLevel(code), "request",
			slog.String("route", route), slog.Int("status", code), slog.Duration("duration", time.Since(start)))
	})
}
