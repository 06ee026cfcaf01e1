package relay

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/internal/httpserve"
	"github.com/moat-im/moat/server/store/mailbox"
)

// postSendBatch is POST /relay/v1/send-batch: up to MaxBatchItems
// anonymous sends in one request, each checked as a single send is, in
// the same order, with the same limits, and answered on its own
// (docs/spec/api.md §Batch send). The accepted items are enqueued
// together, so that they ride the same group commit of the mailbox store.
func (r *Relay) postSendBatch(w http.ResponseWriter, req *http.Request) {
	addr := httpserve.ClientKey(req.RemoteAddr)
	// Step 1 of the first item, before a byte of the body is read.
	if ok, wait := r.sendAddrLimit.Allow(addr); !ok {
		r.sendRefused(w, "address", wait)
		return
	}
	n, ok := r.sendLength(w, req, MaxBatchSize, "batch too large")
	if !ok {
		return
	}
	// The body is read into a pooled buffer: the items alias it until the
	// store has taken their envelopes (Enqueue keeps no reference to a
	// message's body) and the answer is written.
	bp := batchBodies.Get().(*[]byte)
	body, ok := readDeclared(w, req, n, *bp)
	defer putBody(&batchBodies, bp, body, maxPooledBatchBody)
	if !ok {
		return
	}
	items, err := ParseSendBatch(body)
	if err != nil {
		r.met.sends.WithLabelValues("malformed").Inc()
		httpserve.WriteError(w, http.StatusBadRequest, "malformed batch")
		return
	}
	res := make([]BatchResult, len(items))
	accepted := make([]*sealed.Header, len(items))
	// Steps 1-5 of each item, in order; then step 6 for the items that
	// passed, in one call (one read of the verifier store for all MAC
	// tokens; anonymous tokens spent in item order); then step 7. An
	// item's result is the same as with the steps run item by item: a
	// step's outcome depends on no later item's, and the limits are spent
	// at steps 1 and 5 only.
	mbs := make([]sealed.MailboxID, len(items))
	sas := make([]*deliverytoken.SendAuthorization, len(items))
	for i, it := range items {
		h, sa, st, wait := r.checkBatchItem(addr, i > 0, it)
		if st != 0 {
			res[i] = BatchResult{Status: st, RetryAfter: retryAfterSeconds(st, wait)}
			continue
		}
		accepted[i], mbs[i], sas[i] = h, h.Mailbox, sa
	}
	authErrs := make([]error, len(items))
	r.author.AuthorizeBatch(mbs, sas, authErrs)
	for i, h := range accepted {
		if h == nil {
			continue
		}
		v := r.authVerdict(authErrs[i])
		if v.status == 0 {
			v = r.deviceVerdict(h)
		}
		if v.status != 0 {
			res[i] = BatchResult{Status: v.status, RetryAfter: retryAfterSeconds(v.status, v.wait)}
			accepted[i] = nil
		}
	}
	// Step 8 for the accepted items at once: one batch enqueue, whose
	// items ride the store's group commit together (mailbox.EnqueueBatch;
	// each is durable before it is answered); then the heads of all are
	// signed together, on this goroutine.
	batch := make([]mailbox.Item, 0, len(items))
	now := r.opts.Now()
	for i, h := range accepted {
		if h == nil {
			continue
		}
		// The store copies the envelope (it keeps no reference to a
		// body), so the pooled buffer may be reused after.
		batch = append(batch, r.storeItem(StoreMailboxID(h.Mailbox), h, items[i].Envelope, now))
	}
	results := make([]mailbox.Result, len(batch))
	mailbox.EnqueueBatch(req.Context(), r.opts.Mailboxes, batch, results)
	ens := make([]enqueued, 0, len(batch))
	leaves := make([]mailbox.HeadLeaf, 0, len(batch))
	stored := make([]int, 0, len(batch))
	j := 0
	for i, h := range accepted {
		if h == nil {
			continue
		}
		o, it := &results[j], &batch[j]
		j++
		if o.Err != nil {
			r.met.sends.WithLabelValues("store-error").Inc()
			res[i] = r.storeResult(o.Err)
			continue
		}
		e := enqueuedAs(it, o.Receipt)
		ens = append(ens, e)
		leaves = append(leaves, e.leaf)
		stored = append(stored, i)
	}
	if len(leaves) > 0 {
		heads, err := r.heads.signHeads(leaves)
		for j, i := range stored {
			if err != nil {
				res[i] = BatchResult{Status: http.StatusInternalServerError}
			} else {
				res[i] = BatchResult{Status: http.StatusOK, Receipt: r.receipt(ens[j], heads[j])}
			}
		}
	}
	out, err := MarshalBatchResults(res)
	if err != nil {
		httpserve.WriteError(w, http.StatusInternalServerError, "internal error")
		return
	}
	// Content-Length, not chunked: the answer is known whole.
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	writeBinary(w, out)
}

// batchBodies and sendBodies pool the buffers send-batch and send
// requests are read into (*[]byte); a buffer grown past the pool's bound
// is left to the garbage collector rather than kept.
var (
	batchBodies = sync.Pool{New: func() any { return new([]byte) }}
	sendBodies  = sync.Pool{New: func() any { return new([]byte) }}
)

const (
	maxPooledBatchBody = 256 << 10
	maxPooledSendBody  = 64 << 10
)

// putBody returns the buffer behind bp to pool once nothing uses body,
// which was read into *bp's memory or, if it did not fit, into a larger
// buffer that then replaces it.
func putBody(pool *sync.Pool, bp *[]byte, body []byte, limit int) {
	if cap(body) > limit {
		return
	}
	if cap(body) > cap(*bp) {
		*bp = body[:0]
	}
	pool.Put(bp)
}

// checkBatchItem runs steps 1-5 of §Send on one item and returns its
// parsed header and authorization, or the status (and the wait of a 429)
// of the first failure. Step 1 is skipped for the first item: the request
// spent it.
func (r *Relay) checkBatchItem(addr string, spendAddr bool, it BatchItem) (*sealed.Header, *deliverytoken.SendAuthorization, int, time.Duration) {
	if spendAddr {
		if ok, wait := r.sendAddrLimit.Allow(addr); !ok {
			r.itemRefused("address")
			return nil, nil, http.StatusTooManyRequests, wait
		}
	}
	if st := batchEnvelopeStatus(len(it.Envelope), r.opts.Limits.MaxEnvelope); st != 0 {
		if st == http.StatusRequestEntityTooLarge {
			r.met.sends.WithLabelValues("too-large").Inc()
		} else {
			r.met.sends.WithLabelValues("malformed").Inc()
		}
		return nil, nil, st, 0
	}
	switch {
	case len(it.Auth) == 0:
		r.met.sends.WithLabelValues("unauthorized").Inc()
		return nil, nil, http.StatusUnauthorized, 0
	case len(it.Auth) > maxItemAuth:
		return nil, nil, http.StatusBadRequest, 0
	}
	sa, err := deliverytoken.ParseSendAuthorization(it.Auth)
	if err != nil {
		r.met.sends.WithLabelValues("malformed").Inc()
		return nil, nil, http.StatusBadRequest, 0
	}
	h, err := sealed.ParseHeader(it.Envelope)
	if err != nil {
		r.met.sends.WithLabelValues("malformed").Inc()
		return nil, nil, http.StatusBadRequest, 0
	}
	if v := r.sendLimits(h, sa); v.status != 0 {
		return nil, nil, v.status, v.wait
	}
	return h, sa, 0, 0
}

// storeResult is storeError as an item's result.
func (r *Relay) storeResult(err error) BatchResult {
	switch {
	case errors.Is(err, errSignHead):
		return BatchResult{Status: http.StatusInternalServerError}
	case errors.Is(err, mailbox.ErrInvalid):
		return BatchResult{Status: http.StatusBadRequest}
	case errors.Is(err, mailbox.ErrIDConflict):
		return BatchResult{Status: http.StatusConflict}
	case errors.Is(err, mailbox.ErrQuota):
		return BatchResult{Status: http.StatusInsufficientStorage}
	case errors.Is(err, mailbox.ErrUnavailable), errors.Is(err, mailbox.ErrClosed), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		r.met.unavailable.Inc()
		return BatchResult{Status: http.StatusServiceUnavailable, RetryAfter: 5}
	case errors.Is(err, mailbox.ErrCorrupt):
		r.opts.Logger.Error("ALARM: corrupt mailbox store", "err", redactErr(err))
	default:
		r.opts.Logger.Error("mailbox store", "err", redactErr(err))
	}
	return BatchResult{Status: http.StatusInternalServerError}
}

func (r *Relay) itemRefused(scope string) {
	r.met.rateLimited.WithLabelValues("send-" + scope).Inc()
	r.met.sends.WithLabelValues("rate-limited").Inc()
}

// retryAfterSeconds is the Retry-After of an item: whole seconds, at
// least 1, for 429 and 503 (httpserve.RetryAfter), else 0.
func retryAfterSeconds(status int, wait time.Duration) uint32 {
	if status != http.StatusTooManyRequests && status != http.StatusServiceUnavailable {
		return 0
	}
	s := int64((wait + time.Second - 1) / time.Second)
	return uint32(min(max(s, 1), 1<<31))
}
