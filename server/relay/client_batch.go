package relay

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/moat-im/moat/crypto/sealed"
)

// SendResult is the outcome of one item of SendBatch: a verified
// Receipt, or Err, an *APIError with the status (and Retry-After) a single
// send of the item would have had, or the reason its receipt was refused.
type SendResult struct {
	Receipt *Receipt
	Err     error
}

// SendBatch sends up to MaxBatchItems sealed envelopes anonymously in one
// request, each authorised by its own SendAuthorization
// (docs/spec/api.md §Batch send). The relay can link the items of a batch
// to each other: batch only sends it could link anyway (§Batch send,
// Anonymity). The error is for the whole request; otherwise there is one
// result per item, in order, and every receipt is checked as Send checks
// it: its head verifies under RelayKey and names the item's mailbox.
func (c *Client) SendBatch(ctx context.Context, items []BatchItem) ([]SendResult, error) {
	if c.RelayKey == nil {
		return nil, errors.New("relay: client has no relay key")
	}
	mbs := make([]sealed.MailboxID, len(items))
	for i, it := range items {
		h, err := sealed.ParseHeader(it.Envelope)
		if err != nil {
			return nil, fmt.Errorf("relay: batch item %d: %w", i, err)
		}
		mbs[i] = h.Mailbox
	}
	body, err := MarshalSendBatch(items)
	if err != nil {
		return nil, err
	}
	_, b, err := c.do(ctx, http.MethodPost, "/relay/v1/send-batch", body, http.Header{
		"Content-Type": {"application/octet-stream"},
	})
	if err != nil {
		return nil, err
	}
	rs, err := ParseBatchResults(b)
	if err != nil {
		return nil, err
	}
	if len(rs) != len(items) {
		return nil, fmt.Errorf("relay: %d batch results for %d items: %w", len(rs), len(items), ErrMalformed)
	}
	out := make([]SendResult, len(rs))
	for i, r := range rs {
		if r.Status != http.StatusOK {
			out[i].Err = &APIError{Status: r.Status, Message: "batch item refused",
				RetryAfter: time.Duration(r.RetryAfter) * time.Second}
			continue
		}
		if err := r.Receipt.Head.Verify(c.RelayKey); err != nil {
			out[i].Err = fmt.Errorf("relay: receipt does not verify: %w", err)
			continue
		}
		if r.Receipt.Head.Mailbox != StoreMailboxID(mbs[i]) {
			out[i].Err = errors.New("relay: receipt for another mailbox")
			continue
		}
		out[i].Receipt = r.Receipt
	}
	return out, nil
}
