package client

import (
	"context"
	"fmt"
	"io"
	"mime"
	"os"
	"path/filepath"

	"github.com/moat-im/moat/client/attach"
)

// Files (docs/spec/attachments.md, docs/spec/content.md §Attachment): a
// file is encrypted under a fresh key and uploaded to the relay with this
// device's attachments session (client/attach); the message that carries
// its reference, key included, is end-to-end encrypted like any other.
// A recipient downloads anonymously, by the attachment's id, and
// authenticates every byte against the reference's digest as it streams.

// FileOptions tune SendFile. The zero value sends the file under its base
// name, with the media type its extension implies.
type FileOptions struct {
	// Caption is text sent with the file.
	Caption string
	// Name is the file name shown to the recipients; default the base
	// name of the path.
	Name string
	// MediaType is the file's media type; default the one its extension
	// implies (mime.TypeByExtension), else application/octet-stream.
	MediaType string
	// Attach tunes the upload (TTL, chunk size, retries); nil: defaults.
	Attach *attach.Options
}

// defaultMediaType is the media type of a file whose extension implies
// none.
const defaultMediaType = "application/octet-stream"

// UploadAttachment encrypts size bytes read from r under a fresh key,
// uploads them to the relay as this device (client/attach.Upload) and
// returns the Attachment to send in a Message of KindAttachment. The
// upload does not hold the client's lock: messages keep flowing while a
// large file uploads.
func (c *Client) UploadAttachment(ctx context.Context, r io.Reader, size int64, name, mediaType string, o *attach.Options) (*Attachment, error) {
	if err := c.lock(); err != nil {
		return nil, err
	}
	c.mu.Unlock()
	if size < 0 {
		return nil, fmt.Errorf("%w: negative file size", ErrInvalidMessage)
	}
	a := &Attachment{Name: name, MediaType: mediaType, Size: uint64(size), Ref: make([]byte, attach.ReferenceSize)}
	if err := c.checkAttachment(a); err != nil {
		return nil, err
	}
	ref, tok, err := attach.UploadOwned(ctx, c.rel, r, size, o)
	if err != nil {
		return nil, fmt.Errorf("client: uploading %q: %w", name, err)
	}
	a.uploadToken = tok
	if a.Ref, err = ref.Marshal(); err != nil {
		return nil, err
	}
	return a, nil
}

// checkAttachment refuses, before anything is uploaded, an attachment
// that a message cannot carry (a name or media type too long or empty).
func (c *Client) checkAttachment(a *Attachment) error {
	_, err := c.buildContent(&Message{Kind: KindAttachment, Attachment: a}, 0)
	return err
}

// SendFile uploads the file at path (UploadAttachment) and sends it to
// user to as a Message of KindAttachment (Send): to every usable device of
// to and to this user's other devices. to is verified in the directory
// before the upload, so that nothing is uploaded for a recipient that
// Send would refuse. It returns the message's id.
func (c *Client) SendFile(ctx context.Context, to UserID, path string, o *FileOptions) (MessageID, error) {
	if o == nil {
		o = &FileOptions{}
	}
	name, mt := o.Name, o.MediaType
	if name == "" {
		name = filepath.Base(path)
	}
	if mt == "" {
		if mt = mime.TypeByExtension(filepath.Ext(path)); mt == "" {
			mt = defaultMediaType
		}
	}
	if to == c.Self().User {
		return MessageID{}, fmt.Errorf("%w: a 1:1 conversation with oneself", ErrInvalidMessage)
	}
	if _, err := c.Contact(ctx, to); err != nil {
		return MessageID{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return MessageID{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return MessageID{}, err
	}
	if !st.Mode().IsRegular() {
		return MessageID{}, fmt.Errorf("client: %s is not a regular file", path)
	}
	a, err := c.UploadAttachment(ctx, f, st.Size(), name, mt, o.Attach)
	if err != nil {
		return MessageID{}, err
	}
	return c.Send(ctx, to, Message{Kind: KindAttachment, Text: o.Caption, Attachment: a})
}

// reference parses a's reference, checking that it agrees with the size
// the message claims.
func (a *Attachment) reference() (*attach.Reference, error) {
	ref, err := attach.ParseReference(a.Ref)
	if err != nil {
		return nil, err
	}
	if uint64(ref.PlaintextSize) != a.Size {
		return nil, fmt.Errorf("%w: the message says %d bytes, its reference %d", attach.ErrMalformedReference, a.Size, ref.PlaintextSize)
	}
	return ref, nil
}

// DownloadAttachment downloads the attachment a (from a received Record),
// decrypts and authenticates it as it streams, and writes it to a new
// file at path (client/attach.DownloadFile): path appears only once every
// byte verified, and an existing file is never replaced. The download is
// anonymous, by the attachment's id (docs/spec/attachments.md §Download).
func (c *Client) DownloadAttachment(ctx context.Context, a *Attachment, path string, o *attach.Options) error {
	ref, err := c.attachmentRef(a)
	if err != nil {
		return err
	}
	return attach.DownloadFile(ctx, c.anon, ref, path, o)
}

// ReadAttachment is DownloadAttachment writing to w. w receives each
// segment only once it authenticates; on error w holds a prefix of the
// file (possibly all of it, if only the final digest check failed), which
// the caller discards.
func (c *Client) ReadAttachment(ctx context.Context, a *Attachment, w io.Writer, o *attach.Options) error {
	ref, err := c.attachmentRef(a)
	if err != nil {
		return err
	}
	return attach.Download(ctx, c.anon, ref, w, o)
}

func (c *Client) attachmentRef(a *Attachment) (*attach.Reference, error) {
	if err := c.lock(); err != nil {
		return nil, err
	}
	c.mu.Unlock()
	if a == nil {
		return nil, fmt.Errorf("%w: no attachment", ErrInvalidMessage)
	}
	return a.reference()
}
