package client

import (
	"context"
	"errors"

	"github.com/moat-im/moat/client/attach"
	"github.com/moat-im/moat/client/localstore"
	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/store/blob"
)

// Sender-side deletion of attachments (docs/spec/attachments.md
// §Sender-side deletion). UploadAttachment keeps the upload token in the
// Attachment, in memory; Send stores it in the sealed local store under
// the message's id, never in the message. When the message is destroyed
// on this device — deleted for everyone, or by its disappearing-message
// timer — the token and the blob id move to a queue in the same
// transaction, and the next Send or Sync deletes the blob at the relay
// (attach.Delete) and drops the entry; a failed deletion stays queued.

const (
	kindUpload = "upload" // message id: the upload token of a file this device sent
	kindUnlink = "unlink" // message id: blob id || upload token, a blob to delete at the relay
)

// keepUploadToken stores the upload token of the attachment m, sent as
// message id, if this device uploaded it.
func keepUploadToken(tx localstore.Tx, m *Message, id MessageID) error {
	if m.Kind != KindAttachment || m.Attachment == nil || m.Attachment.uploadToken == nil {
		return nil
	}
	return tx.Put("", kindUpload, id[:], m.Attachment.uploadToken[:])
}

// queueBlobDeletion, as message id (record seq of conv) is destroyed,
// queues the deletion of its blob if this device uploaded it.
func queueBlobDeletion(tx localstore.Tx, conv UserID, id MessageID, seq uint64) error {
	tok, err := tx.Get("", kindUpload, id[:])
	if errors.Is(err, localstore.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := tx.Delete("", kindUpload, id[:]); err != nil {
		return err
	}
	b, err := tx.Get("", msgKind(conv), u64(seq))
	if err != nil {
		return err
	}
	r, err := decodeRecord(b)
	if err != nil || r.Attachment == nil || len(tok) != relay.UploadTokenSize {
		return err
	}
	ref, err := attach.ParseReference(r.Attachment.Ref)
	if err != nil {
		return nil // nothing this device could delete
	}
	return tx.Put("", kindUnlink, id[:], append(ref.ID[:len(ref.ID):len(ref.ID)], tok...))
}

// deleteQueuedBlobs deletes at the relay the blobs queued for deletion and
// drops their entries; one that fails stays for the next call.
func (c *Client) deleteQueuedBlobs(ctx context.Context) error {
	type item struct {
		key []byte
		id  blob.ID
		tok relay.UploadToken
	}
	var items []item
	if err := c.st.View(func(tx localstore.Tx) error {
		return tx.List("", kindUnlink, func(k, v []byte) error {
			if len(v) != len(blob.ID{})+relay.UploadTokenSize {
				return nil
			}
			var it item
			it.key = append([]byte(nil), k...)
			copy(it.id[:], v)
			copy(it.tok[:], v[len(it.id):])
			items = append(items, it)
			return nil
		})
	}); err != nil {
		return err
	}
	var errs []error
	for _, it := range items {
		if err := attach.Delete(ctx, c.rel, it.id, &it.tok, &attach.Options{Retries: 1}); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := c.st.Update(func(tx localstore.Tx) error { return tx.Delete("", kindUnlink, it.key) }); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}
