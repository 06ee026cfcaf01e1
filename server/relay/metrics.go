package relay

import (
	"github.com/moat-im/moat/internal/httpserve"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the relay's Prometheus metrics. Labels are bounded: route
// patterns and fixed sets of results; never a tenant, device, mailbox or
// token.
type metrics struct {
	http        *httpserve.Metrics
	rateLimited *prometheus.CounterVec // scope
	auth        *prometheus.CounterVec // result
	sends       *prometheus.CounterVec // result
	// sendsOK and sendsDuplicate are sends' children of the results
	// every accepted send counts, resolved once.
	sendsOK, sendsDuplicate prometheus.Counter
	sendBytes               prometheus.Histogram
	forbidden               prometheus.Counter
	unavailable             prometheus.Counter
	pushOpen                prometheus.Gauge
	pushPages               prometheus.Counter
	bundles                 *prometheus.CounterVec // kem: one-time, last-resort; opk: yes, no
	uploads                 *prometheus.CounterVec // result
	issued                  *prometheus.CounterVec // result: anonymous tokens issued
	receiptSigs             prometheus.Counter     // signatures of batched receipt heads
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		http: httpserve.NewMetrics(reg, "moat_relay", "route"),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_relay_rate_limited_total",
			Help: "Requests refused with 429, by limit (address, challenge, device, tenant, send-address, send-token, send-mailbox, bundle, push, issue-device, issue-tenant).",
		}, []string{"scope"}),
		auth: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_relay_device_auth_total",
			Help: "Device authentications by result.",
		}, []string{"result"}),
		sends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_relay_sends_total",
			Help: "Anonymous sends by result.",
		}, []string{"result"}),
		receiptSigs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "moat_relay_receipt_signatures_total",
			Help: "Signatures of batches of send-receipt heads (each signs one or more receipts).",
		}),
		sendBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "moat_relay_send_envelope_bytes",
			Help:    "Sizes (buckets) of envelopes enqueued.",
			Buckets: prometheus.ExponentialBuckets(2048, 2, 9),
		}),
		forbidden: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "moat_relay_forbidden_total",
			Help: "Authenticated requests for another device's mailbox or another tenant's keys (T44). Alert on a rise.",
		}),
		unavailable: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "moat_relay_store_unavailable_total",
			Help: "Requests answered 503 because a store could not make writes durable (T38).",
		}),
		pushOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "moat_relay_push_connections",
			Help: "Open push channels.",
		}),
		pushPages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "moat_relay_push_pages_total",
			Help: "Mailbox pages sent on push channels.",
		}),
		bundles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_relay_bundles_served_total",
			Help: "Prekey bundles served, by KEM prekey kind (one-time, last-resort).",
		}, []string{"kem"}),
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_relay_prekey_uploads_total",
			Help: "Prekey uploads by result.",
		}, []string{"result"}),
	}
	reg.MustRegister(m.rateLimited, m.auth, m.sends, m.sendBytes, m.forbidden, m.unavailable,
		m.pushOpen, m.pushPages, m.bundles, m.uploads)
	m.issued = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "moat_relay_tokens_issued_total",
		Help: "Anonymous delivery tokens issued (ok, counted per token) and refused issuance requests (malformed).",
	}, []string{"result"})
	reg.MustRegister(m.issued, m.receiptSigs)
	m.sendsOK, m.sendsDuplicate = m.sends.WithLabelValues("ok"), m.sends.WithLabelValues("duplicate")
	return m
}
