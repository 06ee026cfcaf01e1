package attach

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/store/blob"
)

// Deleter is what Delete needs of the relay; *relay.Client implements it.
type Deleter interface {
	DeleteAttachment(ctx context.Context, id blob.ID, token relay.UploadToken) error
}

var _ Deleter = (*relay.Client)(nil)

// Delete deletes the blob id that this device uploaded under token
// (UploadOwned), before its expiry (docs/spec/attachments.md §Delete,
// §Sender-side deletion). Network errors, 429 and 5xx answers are retried
// as uploads are. A 404 is success: the blob is gone (deleted before,
// by a delete whose answer was lost, or expired), or the token is not
// this device's, which the relay does not tell apart. Recipients that
// downloaded the file keep their copies.
func Delete(ctx context.Context, rl Deleter, id blob.ID, token *relay.UploadToken, o *Options) error {
	if token == nil || *token == (relay.UploadToken{}) || id == (blob.ID{}) {
		return fmt.Errorf("%w: no blob id or upload token", ErrMalformedReference)
	}
	opts := o.withDefaults()
	u := &uploader{ctx: ctx, opts: &opts}
	err := u.retry(func() error { return rl.DeleteAttachment(ctx, id, *token) })
	if ae, ok := errors.AsType[*relay.APIError](err); ok && ae.Status == http.StatusNotFound {
		return nil
	}
	if err != nil {
		return fmt.Errorf("attach: deleting: %w", err)
	}
	return nil
}
