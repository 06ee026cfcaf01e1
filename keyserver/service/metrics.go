package service

import (
	"github.com/moat-im/moat/internal/httpserve"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the service's Prometheus metrics. Labels are bounded: route
// patterns (never raw paths), tenant ids, witness names, and fixed sets of
// results.
type metrics struct {
	http          *httpserve.Metrics       // requests{route, code}, duration{route}
	rateLimited   *prometheus.CounterVec   // scope
	epochs        *prometheus.CounterVec   // tenant
	publishFail   *prometheus.CounterVec   // tenant
	publishTime   *prometheus.HistogramVec // tenant
	updates       *prometheus.CounterVec   // tenant
	logSize       *prometheus.GaugeVec     // tenant
	servedSize    *prometheus.GaugeVec     // tenant
	servedTime    *prometheus.GaugeVec     // tenant: quorum-th newest cosignature time
	witnessReqs   *prometheus.CounterVec   // tenant, witness, result
	witnessAlarms *prometheus.CounterVec   // tenant, witness, kind
	enrolments    *prometheus.CounterVec   // tenant, result
	adminOps      *prometheus.CounterVec   // tenant, op, result
	// Pending journal (journal.go): WritePending calls (each one store
	// transaction and one sync) and the operations they made durable.
	journalBatches *prometheus.CounterVec // tenant
	journalOps     *prometheus.CounterVec // tenant
	// VRF evaluations: labels neither cached in memory nor in the store
	// (vrfcache.go).
	vrfEvals *prometheus.CounterVec // tenant
}

func newMetrics(reg prometheus.Registerer) *metrics {
	t := []string{"tenant"}
	m := &metrics{
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_directory_rate_limited_total",
			Help: "Requests refused with 429, by limit (ip, tenant, device, enrol).",
		}, []string{"scope"}),
		epochs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_directory_epochs_total",
			Help: "Epochs committed.",
		}, t),
		publishFail: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_directory_publish_failures_total",
			Help: "Epochs that failed to commit; the previous epoch stays served.",
		}, t),
		publishTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "moat_directory_publish_seconds",
			Help:    "Time to build and durably commit an epoch, cosigning excluded.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, t),
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_directory_label_updates_total",
			Help: "Labels written (new value records).",
		}, t),
		logSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "moat_directory_log_size",
			Help: "Size of the committed log (epochs).",
		}, t),
		servedSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "moat_directory_served_size",
			Help: "Size of the witness-cosigned checkpoint being served. Alert if it lags moat_directory_log_size.",
		}, t),
		servedTime: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "moat_directory_served_witnessed_timestamp_seconds",
			Help: "Witnessed time (quorum-th newest cosignature) of the served checkpoint. Alert if it lags by more than clients' MaxAge.",
		}, t),
		witnessReqs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_directory_witness_requests_total",
			Help: "add-checkpoint requests to witnesses, by result (ok, conflict, inconsistent, refused, error).",
		}, []string{"tenant", "witness", "result"}),
		witnessAlarms: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_directory_witness_alarms_total",
			Help: "Witness answers that mean the log and a witness disagree about the log's history (422, or a witnessed size above the log's). Alert on any increase.",
		}, []string{"tenant", "witness", "kind"}),
		enrolments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_directory_enrolments_total",
			Help: "Enrolment attempts by result.",
		}, []string{"tenant", "result"}),
		adminOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_directory_admin_operations_total",
			Help: "Authenticated admin operations by result.",
		}, []string{"tenant", "op", "result"}),
		journalBatches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_directory_pending_writes_total",
			Help: "Durable writes of pending tenant records (one store transaction and one sync each, for a batch of operations).",
		}, t),
		journalOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_directory_pending_operations_total",
			Help: "Admin operations, enrolments and failed redemptions made durable before their answer.",
		}, t),
		vrfEvals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_directory_vrf_evaluations_total",
			Help: "VRF evaluations of labels cached neither in memory nor in the store (about 220 µs each).",
		}, t),
	}
	reg.MustRegister(m.rateLimited, m.epochs, m.publishFail, m.publishTime, m.updates,
		m.logSize, m.servedSize, m.servedTime, m.witnessReqs, m.witnessAlarms, m.enrolments, m.adminOps,
		m.journalBatches, m.journalOps, m.vrfEvals)
	m.http = httpserve.NewMetrics(reg, "moat_directory", "route")
	return m
}
