package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/moat-im/moat/crypto/deviceauth"
	"github.com/moat-im/moat/server/store/blob"
)

// Client side of the attachment endpoints (docs/spec/attachments.md
// §Relay API). client/attach builds uploads and downloads on these.

// OffsetError is a 409 answer to an upload: the chunk did not fit the
// committed offset, which it carries.
type OffsetError struct {
	Committed int64
	Err       *APIError
}

func (e *OffsetError) Error() string {
	return fmt.Sprintf("%v (committed offset %d)", e.Err, e.Committed)
}

func (e *OffsetError) Unwrap() error { return e.Err }

// attachReq sends an attachments-session request, authenticating first if
// needed and again once if the relay forgot the session. body, if not nil,
// is sent with its length.
func (c *Client) attachReq(ctx context.Context, method, path string, body []byte, header http.Header) (*http.Response, []byte, error) {
	for attempt := 0; ; attempt++ {
		h, err := c.sessionHeader(ctx, deviceauth.PurposeAttachments)
		if err != nil {
			return nil, nil, err
		}
		for k, v := range header {
			h[k] = v
		}
		resp, b, err := c.do(ctx, method, path, body, h)
		var ae *APIError
		if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized && attempt == 0 {
			c.dropSession(deviceauth.PurposeAttachments)
			continue
		}
		if errors.As(err, &ae) && ae.Status == http.StatusConflict && resp != nil {
			if off, ok := parseDecimal(resp.Header.Get(HeaderUploadOffset)); ok {
				return resp, nil, &OffsetError{Committed: off, Err: ae}
			}
		}
		return resp, b, err
	}
}

func attachmentPath(id blob.ID) string { return "/relay/v1/attachments/" + id.String() }

// AttachmentUpload is an upload in progress: its blob id, its expiry, and
// the upload token that only the creating device holds (in memory; it
// survives a relay restart, not the client process). The id alone lets
// anyone download the finalized blob; appending, the upload's state and
// finalizing need the token as well (docs/spec/attachments.md §Upload
// capability).
type AttachmentUpload struct {
	ID      blob.ID
	Token   UploadToken
	Expires time.Time
}

// header returns the request header carrying u's token, and extra.
func (u *AttachmentUpload) header(extra http.Header) http.Header {
	h := http.Header{HeaderUploadToken: {FormatUploadToken(&u.Token)}}
	for k, v := range extra {
		h[k] = v
	}
	return h
}

// CreateAttachment creates an upload of size ciphertext bytes that expires
// at expires, and returns it with its id, the expiry the relay recorded and
// its upload token.
func (c *Client) CreateAttachment(ctx context.Context, size int64, expires time.Time) (*AttachmentUpload, error) {
	path := fmt.Sprintf("/relay/v1/attachments?size=%d&expires=%d", size, expires.UnixMilli())
	_, b, err := c.attachReq(ctx, http.MethodPost, path, nil, nil)
	if err != nil {
		return nil, err
	}
	var cr AttachmentCreated
	if err := json.Unmarshal(b, &cr); err != nil {
		return nil, fmt.Errorf("%w: attachment creation answer", ErrMalformed)
	}
	id, err := ParseBlobID(cr.ID)
	if err != nil || cr.Size != size || cr.Expires != expires.UnixMilli() {
		return nil, fmt.Errorf("%w: attachment creation answer", ErrMalformed)
	}
	tok, err := ParseUploadToken(cr.UploadToken)
	if err != nil {
		return nil, fmt.Errorf("%w: attachment creation answer without an upload token", ErrMalformed)
	}
	return &AttachmentUpload{ID: id, Token: tok, Expires: time.UnixMilli(cr.Expires)}, nil
}

// AttachmentUploadStatus returns the state of an upload.
func (c *Client) AttachmentUploadStatus(ctx context.Context, u *AttachmentUpload) (*AttachmentStatus, error) {
	_, b, err := c.attachReq(ctx, http.MethodGet, attachmentPath(u.ID)+"/upload", nil, u.header(nil))
	if err != nil {
		return nil, err
	}
	var st AttachmentStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("relay: attachment status: %w", err)
	}
	if st.Size < 1 || st.Committed < 0 || st.Committed > st.Size {
		return nil, fmt.Errorf("%w: attachment status", ErrMalformed)
	}
	return &st, nil
}

// AppendAttachment uploads chunk at offset and returns the committed
// offset. A 409 is an *OffsetError carrying the committed offset.
func (c *Client) AppendAttachment(ctx context.Context, u *AttachmentUpload, offset int64, chunk []byte) (int64, error) {
	if len(chunk) == 0 {
		return 0, errors.New("relay: empty attachment chunk")
	}
	resp, _, err := c.attachReq(ctx, http.MethodPatch, attachmentPath(u.ID)+"/upload", chunk, u.header(http.Header{
		HeaderUploadOffset: {strconv.FormatInt(offset, 10)},
		"Content-Type":     {"application/offset+octet-stream"},
	}))
	if err != nil {
		return 0, err
	}
	committed, ok := parseDecimal(resp.Header.Get(HeaderUploadOffset))
	if !ok || committed < offset+int64(len(chunk)) {
		return 0, fmt.Errorf("%w: append answer without the chunk's offset", ErrMalformed)
	}
	return committed, nil
}

// FinalizeAttachment seals a fully uploaded attachment. Before every byte
// is committed it is an *OffsetError.
func (c *Client) FinalizeAttachment(ctx context.Context, u *AttachmentUpload) error {
	_, _, err := c.attachReq(ctx, http.MethodPost, attachmentPath(u.ID)+"/finalize", nil, u.header(nil))
	return err
}

// DownloadAttachment returns a reader of a finalized attachment's
// ciphertext from offset to its end, of the length the relay announces
// (Content-Length). It needs no device credentials. The caller closes it.
func (c *Client) DownloadAttachment(ctx context.Context, id blob.ID, offset int64) (io.ReadCloser, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.BaseURL, "/")+attachmentPath(id), nil)
	if err != nil {
		return nil, 0, err
	}
	if offset > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, 0, err
	}
	want := http.StatusOK
	if offset > 0 {
		want = http.StatusPartialContent
	}
	if resp.StatusCode != want {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		e := &APIError{Status: resp.StatusCode, Message: strings.TrimSpace(string(b))}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			e.RetryAfter = time.Duration(s) * time.Second
		}
		if resp.StatusCode/100 == 2 {
			e.Message = "unexpected status"
		}
		return nil, 0, e
	}
	if offset > 0 {
		var first, last, size int64
		if _, err := fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes %d-%d/%d", &first, &last, &size); err != nil ||
			first != offset || last != size-1 || resp.ContentLength != size-offset {
			resp.Body.Close()
			return nil, 0, fmt.Errorf("%w: Content-Range does not answer the request", ErrMalformed)
		}
	}
	if resp.ContentLength < 0 {
		resp.Body.Close()
		return nil, 0, fmt.Errorf("%w: download without Content-Length", ErrMalformed)
	}
	return resp.Body, resp.ContentLength, nil
}
