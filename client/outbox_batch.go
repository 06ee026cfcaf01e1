package client

import (
	"bytes"
	"context"
	"errors"
	"net/http"

	"github.com/moat-im/moat/server/relay"
)

// Batched outbox sends (docs/spec/api.md §Batch send). The envelopes of
// one message to the devices of one recipient user leave together, so the
// relay could link them anyway; they go in one request. Envelopes of
// different messages, or to different users, never share a request.

// outboxGroup names the batch of an outbox record: the message id and the
// recipient user.
func outboxGroup(msg [16]byte, user UserID) []byte {
	return append(append([]byte(nil), msg[:]...), user[:]...)
}

// outboxRun returns how many records at the front of recs form one batch:
// consecutive records of the same non-empty group, at most
// relay.MaxBatchItems.
func outboxRun(recs []outboxRecord) int {
	n := 1
	for n < len(recs) && n < relay.MaxBatchItems && len(recs[0].Group) > 0 && bytes.Equal(recs[n].Group, recs[0].Group) {
		n++
	}
	return n
}

// sendOutbox sends recs, in one batch request when there are several,
// and returns each one's error (nil: the relay accepted it, with a
// verified receipt).
func (c *Client) sendOutbox(ctx context.Context, recs []outboxRecord) []error {
	errs := make([]error, len(recs))
	if len(recs) == 1 {
		_, errs[0] = c.anon.Send(ctx, recs[0].Auth, recs[0].Envelope)
		return errs
	}
	items := make([]relay.BatchItem, len(recs))
	for i, r := range recs {
		items[i] = relay.BatchItem{Auth: r.Auth, Envelope: r.Envelope}
	}
	rs, err := c.anon.SendBatch(ctx, items)
	if ae, ok := errors.AsType[*relay.APIError](err); ok && (ae.Status == http.StatusNotFound || ae.Status == http.StatusMethodNotAllowed) {
		// A relay without the batch endpoint: the whole request is
		// refused, which says nothing of the items. Send them one by one.
		for i, r := range recs {
			_, errs[i] = c.anon.Send(ctx, r.Auth, r.Envelope)
		}
		return errs
	}
	for i := range errs {
		if err != nil {
			errs[i] = err
		} else {
			errs[i] = rs[i].Err
		}
	}
	return errs
}
