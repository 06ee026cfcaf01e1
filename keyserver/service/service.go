package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/moat-im/moat/internal/httpserve"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configures a Service. Zero values select the defaults.
type Options struct {
	Tenants []TenantConfig
	Logger  *slog.Logger // default slog.Default()
	// Registry receives the metrics. Default: a new registry with the Go
	// and process collectors.
	Registry *prometheus.Registry
	Now      func() time.Time // default time.Now

	// EpochInterval is the epoch cadence of Run. Default 30s.
	EpochInterval time.Duration
	// RecosignInterval is how often Run has the witnesses cosign an
	// unchanged checkpoint again. It must be well below clients' MaxAge
	// (docs/spec/tlog.md §Witness policy: 15 minutes for a MaxAge of one
	// hour). Default 15m.
	RecosignInterval time.Duration

	// Witness requests: per-request timeout (default 10s), attempts per
	// round (default 5), and the exponential backoff between attempts
	// (default 250ms doubling up to 10s).
	WitnessTimeout    time.Duration
	WitnessAttempts   int
	WitnessBackoff    time.Duration
	WitnessMaxBackoff time.Duration

	Limits Limits

	// Cache sizes, in entries: VRF outputs (default 2^20) and the latest
	// record of labels written (default 2^21).
	VRFCache    int
	RecordCache int
}

// Limits are the HTTP API's limits.
type Limits struct {
	// PerIP limits every /v1 request by client address (IPv6: by /64).
	// Default 50/s, burst 100.
	PerIP Rate
	// PerTenant limits every request to one tenant. Default 500/s, burst
	// 1000.
	PerTenant Rate
	// PerDevice limits the signed reads (lookups, histories, monitoring,
	// wipe) of each authenticated device, on top of PerIP and PerTenant,
	// so that one device's credentials cannot take a tenant's whole
	// budget. Default 20/s, burst 100.
	PerDevice Rate
	// Enrol limits enrolment attempts by client address, on top of the
	// per-code and per-tenant failure limits of org. Default 1 every 6s,
	// burst 5.
	Enrol Rate
	// MaxBuckets bounds the number of addresses tracked. Default 100,000.
	MaxBuckets int
	// MaxBody bounds enrolment and admin request bodies. Default 64 KiB.
	MaxBody int64
	// MaxStatementBody bounds the bodies of the admin operations that
	// carry org statements (publish-policy, set-escrow-policy). Default
	// 1 MiB.
	MaxStatementBody int64
	// AuthWindow is how far a signed request's time may be from the
	// service's. Default 5 minutes.
	AuthWindow time.Duration
	// MaxNonces bounds each tenant's replay cache. Default 1,000,000.
	MaxNonces int
	// MaxPendingApprovals bounds each tenant's held admin approvals.
	// Default 10,000.
	MaxPendingApprovals int
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.EpochInterval == 0 {
		o.EpochInterval = 30 * time.Second
	}
	if o.RecosignInterval == 0 {
		o.RecosignInterval = 15 * time.Minute
	}
	if o.WitnessTimeout == 0 {
		o.WitnessTimeout = 10 * time.Second
	}
	if o.WitnessAttempts == 0 {
		o.WitnessAttempts = 5
	}
	if o.WitnessBackoff == 0 {
		o.WitnessBackoff = 250 * time.Millisecond
	}
	if o.WitnessMaxBackoff == 0 {
		o.WitnessMaxBackoff = 10 * time.Second
	}
	if o.VRFCache == 0 {
		o.VRFCache = 1 << 20
	}
	if o.RecordCache == 0 {
		o.RecordCache = 1 << 21
	}
	l := &o.Limits
	if l.PerIP == (Rate{}) {
		l.PerIP = Rate{PerSecond: 50, Burst: 100}
	}
	if l.PerTenant == (Rate{}) {
		l.PerTenant = Rate{PerSecond: 500, Burst: 1000}
	}
	if l.PerDevice == (Rate{}) {
		l.PerDevice = Rate{PerSecond: 20, Burst: 100}
	}
	if l.Enrol == (Rate{}) {
		l.Enrol = Rate{PerSecond: 1.0 / 6, Burst: 5}
	}
	if l.MaxBuckets == 0 {
		l.MaxBuckets = 100_000
	}
	if l.MaxBody == 0 {
		l.MaxBody = 64 << 10
	}
	if l.MaxStatementBody == 0 {
		l.MaxStatementBody = 1 << 20
	}
	if l.AuthWindow == 0 {
		l.AuthWindow = 5 * time.Minute
	}
	if l.MaxNonces == 0 {
		l.MaxNonces = 1_000_000
	}
	if l.MaxPendingApprovals == 0 {
		l.MaxPendingApprovals = 10_000
	}
}

// Service is Moat's key directory service: one or more tenants, each with
// its own store, log, map and keys (docs/spec/directory-api.md), behind a
// versioned HTTP API.
type Service struct {
	opts    Options
	reg     *prometheus.Registry
	met     *metrics
	tenants map[org.TenantID]*Tenant
	order   []*Tenant

	ipLimit, tenantLimit, enrolLimit *httpserve.Limiter
	deviceLimit                      *httpserve.Limiter // by tenant and device

	runMu   sync.Mutex
	running bool
	// epochTicks, if set (tests), replaces Run's EpochInterval ticker.
	epochTicks <-chan time.Time
}

// New opens every tenant of opts: it loads each one's head and admin state
// from its store, or creates the tenant and commits its first epoch if the
// store is empty. Nothing runs in the background until Run.
func New(ctx context.Context, opts Options) (*Service, error) {
	opts.defaults()
	s := &Service{opts: opts, reg: opts.Registry, tenants: map[org.TenantID]*Tenant{}}
	if s.reg == nil {
		s.reg = prometheus.NewRegistry()
		httpserve.RegisterProcess(s.reg)
	}
	s.met = newMetrics(s.reg)
	s.opts.Registry = s.reg
	l := &s.opts.Limits
	// Rate limits run on the wall clock, whatever Now says.
	s.ipLimit = httpserve.NewLimiter(l.PerIP, l.MaxBuckets, time.Now)
	s.tenantLimit = httpserve.NewLimiter(l.PerTenant, l.MaxBuckets, time.Now)
	s.enrolLimit = httpserve.NewLimiter(l.Enrol, l.MaxBuckets, time.Now)
	s.deviceLimit = httpserve.NewLimiter(l.PerDevice, l.MaxBuckets, time.Now)
	for _, tc := range opts.Tenants {
		if _, dup := s.tenants[tc.ID]; dup {
			return nil, fmt.Errorf("service: tenant %s configured twice", tc.ID)
		}
		t, err := openTenant(ctx, tc, &s.opts, s.met)
		if err != nil {
			return nil, err
		}
		s.tenants[tc.ID] = t
		s.order = append(s.order, t)
	}
	if len(s.order) == 0 {
		return nil, errors.New("service: no tenants")
	}
	return s, nil
}

// Tenant returns the tenant id, or nil.
func (s *Service) Tenant(id org.TenantID) *Tenant { return s.tenants[id] }

// Tenants returns the tenants, in configuration order.
func (s *Service) Tenants() []*Tenant { return append([]*Tenant(nil), s.order...) }

// Registry returns the metrics registry.
func (s *Service) Registry() *prometheus.Registry { return s.reg }

// Cosign has the witnesses of every tenant cosign its latest checkpoint
// (again), and returns the errors of the tenants that did not reach a
// quorum.
func (s *Service) Cosign(ctx context.Context) error {
	var errs []error
	for _, t := range s.order {
		size, err := t.cos.round(ctx)
		if err == nil && size != t.Head().LogSize {
			err = fmt.Errorf("service: tenant %s serves size %d of %d", t.id, size, t.Head().LogSize)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Run publishes an epoch of every tenant every EpochInterval, and on
// demand (Tenant.Kick and the admin publish operation); has the witnesses
// cosign each new checkpoint, and cosign the unchanged one again after
// RecosignInterval; until ctx is done. An epoch in progress when ctx ends
// is committed or rolled back, not torn: the commit does not see the
// cancellation. Run returns nil after a graceful stop.
func (s *Service) Run(ctx context.Context) error {
	s.runMu.Lock()
	if s.running {
		s.runMu.Unlock()
		return errors.New("service: already running")
	}
	s.running = true
	s.runMu.Unlock()
	defer func() {
		s.runMu.Lock()
		s.running = false
		s.runMu.Unlock()
	}()

	var wg sync.WaitGroup
	defer wg.Wait()
	cosignKick := make(map[*Tenant]chan struct{}, len(s.order))
	for _, t := range s.order {
		ch := make(chan struct{}, 1)
		ch <- struct{}{} // serve what the store holds as soon as possible
		cosignKick[t] = ch
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-ch:
					t.cos.round(ctx) // errors are logged and counted
				}
			}
		})
	}
	kick := func(t *Tenant) {
		select {
		case cosignKick[t] <- struct{}{}:
		default:
		}
	}
	publish := func(t *Tenant) {
		commitCtx := context.WithoutCancel(ctx)
		t.mu.Lock()
		_, err := t.publish(commitCtx, s.opts.Now())
		t.mu.Unlock()
		if err == nil || errors.Is(err, errTransitionUncosigned) {
			kick(t) // the new checkpoint, or the transition that holds it up
		}
	}
	epochs := time.NewTicker(s.opts.EpochInterval)
	defer epochs.Stop()
	epochTicks := epochs.C
	if s.epochTicks != nil {
		epochTicks = s.epochTicks
	}
	recheck := time.NewTicker(max(s.opts.RecosignInterval/4, time.Second))
	defer recheck.Stop()
	// One goroutine per tenant's on-demand epochs.
	for _, t := range s.order {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.kick:
					publish(t)
				}
			}
		})
	}
	s.opts.Logger.Info("directory running", slog.Int("tenants", len(s.order)),
		slog.Duration("epoch", s.opts.EpochInterval), slog.Duration("recosign", s.opts.RecosignInterval))
	for {
		select {
		case <-ctx.Done():
			s.opts.Logger.Info("directory stopping")
			return nil
		case <-epochTicks:
			for _, t := range s.order {
				if ctx.Err() != nil {
					break
				}
				publish(t)
			}
		case <-recheck.C:
			now := s.opts.Now()
			for _, t := range s.order {
				if now.Sub(t.cos.lastCosigned()) >= s.opts.RecosignInterval {
					kick(t)
				}
			}
		}
	}
}

// Ready reports whether every tenant serves a cosigned checkpoint.
func (s *Service) Ready() error {
	for _, t := range s.order {
		if t.served.Load() == nil {
			return fmt.Errorf("tenant %s has no cosigned checkpoint yet", t.id)
		}
	}
	return nil
}

// NewHTTPServer returns an http.Server for h with the service's
// limits (internal/httpserve defaults: 5s to read headers, 30s to read a
// request, 30s to write a response, 120s idle, HTTP/2 stream limits) and
// 32 KiB of headers (a hybrid admin signature is 4.5 KB of base64).
func NewHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return httpserve.NewServer(h, httpserve.Options{MaxHeaderBytes: 32 << 10, Logger: log})
}
