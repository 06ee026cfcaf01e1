package relay

import "github.com/prometheus/client_golang/prometheus"

// attachMetrics are the attachment metrics (docs/spec/attachments.md
// §Metrics). Labels are fixed sets, never an id, device, tenant or address.
type attachMetrics struct {
	requests *prometheus.CounterVec // op, result
	bytes    *prometheus.CounterVec // dir
	quota    *prometheus.CounterVec // scope
	swept    prometheus.Counter
}

func newAttachMetrics(reg prometheus.Registerer) *attachMetrics {
	m := &attachMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_relay_attachment_requests_total",
			Help: "Attachment requests by operation (create, status, append, finalize, delete, download) and result.",
		}, []string{"op", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_relay_attachment_bytes_total",
			Help: "Attachment ciphertext bytes uploaded (up) and served (down).",
		}, []string{"dir"}),
		quota: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moat_relay_attachment_quota_refused_total",
			Help: "Attachment requests refused by a quota: device or tenant budget (507), size (413).",
		}, []string{"scope"}),
		swept: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "moat_relay_attachment_swept_total",
			Help: "Expired attachment blobs deleted.",
		}),
	}
	reg.MustRegister(m.requests, m.bytes, m.quota, m.swept)
	return m
}
