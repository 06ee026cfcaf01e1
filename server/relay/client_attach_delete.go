package relay

import (
	"context"
	"net/http"

	"github.com/moat-im/moat/server/store/blob"
)

// DeleteAttachment deletes the blob id uploaded by this device under
// token (docs/spec/attachments.md §Delete). A 404 (already deleted,
// expired, or not this device's) is an *APIError like any other answer;
// client/attach.Delete treats it as done.
func (c *Client) DeleteAttachment(ctx context.Context, id blob.ID, token UploadToken) error {
	u := &AttachmentUpload{ID: id, Token: token}
	_, _, err := c.attachReq(ctx, http.MethodDelete, attachmentPath(id), nil, u.header(nil))
	return err
}
