package relay

import (
	"errors"
	"net/http"
	"time"

	"github.com/moat-im/moat/internal/httpserve"
)

// Attachment byte budgets (docs/spec/attachments.md §Quotas): a creation
// takes its declared size from the device's and its tenant's byte
// buckets in the relay's QuotaStore, durably, before the blob is
// created.

// budgetRates returns the device and tenant budgets and whether either is
// enforced.
func (a *attachments) budgetRates() ([2]Rate, bool) {
	d, t := a.limits.DeviceBudget, a.limits.TenantBudget
	// A disabled budget (negative rate) never refuses.
	if d.PerSecond < 0 {
		d = Rate{PerSecond: 1, Burst: 1 << 62}
	}
	if t.PerSecond < 0 {
		t = Rate{PerSecond: 1, Burst: 1 << 62}
	}
	return [2]Rate{d, t}, a.limits.DeviceBudget.PerSecond >= 0 || a.limits.TenantBudget.PerSecond >= 0
}

var budgetScopes = [2]string{"device", "tenant"}

// takeAttachmentBudget takes size bytes from the session's device's and
// tenant's budgets, or answers 507 (over budget, with Retry-After) or 503
// (the quota store failed) and returns false.
func (r *Relay) takeAttachmentBudget(w http.ResponseWriter, ss *session, size int64) bool {
	rates, on := r.att.budgetRates()
	if !on {
		return true
	}
	mb := ss.Mailbox()
	err := chargeBytes(r.opts.Quotas, mb[:], ss.Tenant, size, rates, budgetScopes, time.Now())
	var qr *quotaRefused
	switch {
	case err == nil:
		return true
	case errors.As(err, &qr):
		r.att.met.quota.WithLabelValues(qr.scope).Inc()
		httpserve.RetryAfter(w, qr.wait)
		httpserve.WriteError(w, http.StatusInsufficientStorage, qr.scope+" attachment quota exceeded")
	default:
		r.quotaUnavailable(w, "create")
	}
	return false
}

// giveAttachmentBudget gives back what a creation that failed took. A
// failure leaves the budgets charged: an under-grant, never an
// over-grant.
func (r *Relay) giveAttachmentBudget(ss *session, size int64) {
	if rates, on := r.att.budgetRates(); on {
		mb := ss.Mailbox()
		chargeBytes(r.opts.Quotas, mb[:], ss.Tenant, -size, rates, budgetScopes, time.Now())
	}
}

// quotaUnavailable answers 503 for a quota store that failed.
func (r *Relay) quotaUnavailable(w http.ResponseWriter, op string) {
	r.met.unavailable.Inc()
	r.opts.Logger.Warn("quota store unavailable", "op", op)
	httpserve.Unavailable(w, 5*time.Second, "quota storage unavailable")
}
