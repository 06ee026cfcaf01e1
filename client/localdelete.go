package client

import (
	"errors"

	"github.com/moat-im/moat/client/localstore"
)

// Local deletion: this device forgets messages; nothing is sent (delete
// for everyone is a KindDelete message). Every message record and index
// entry has a key of its own in the store, so deleting them destroys
// those keys and what the store's files keep of them can no longer be
// opened (docs/spec/client-store.md §Erasure). Messages stay in the
// store's general scope rather than one scope per conversation, so a
// conversation is deleted record by record, not with Tx.DeleteScope.

// deleteBatch is how many messages one transaction of DeleteConversation
// deletes, to keep transactions small.
const deleteBatch = 256

// DeleteMessage deletes message id from this device's history of the
// conversation with user, destroying its record's key; ErrUnknownMessage
// if the conversation holds no such message. The other devices and the
// peer keep their copies.
func (c *Client) DeleteMessage(user UserID, id MessageID) error {
	if err := c.lock(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	return c.update(func(tx localstore.Tx) error {
		r, seq, err := findRecord(tx, user, id)
		if err != nil {
			return err
		}
		if r == nil {
			return ErrUnknownMessage
		}
		return forget(tx, user, id, seq)
	})
}

// forget deletes a message record, its index entry and, for a file this
// device sent, the upload token it kept: a local deletion leaves the blob
// at the relay for the other devices until it expires, and the token is
// not kept for a message that is gone (unlike destroy, which queues the
// blob's deletion).
func forget(tx localstore.Tx, conv UserID, id MessageID, seq uint64) error {
	if err := tx.Delete("", kindUpload, id[:]); err != nil {
		return err
	}
	if err := tx.Delete("", msgKind(conv), u64(seq)); err != nil {
		return err
	}
	return tx.Delete("", kindMsgIdx, id[:])
}

// DeleteConversation deletes every message of this device's history of
// the conversation with user, destroying their records' keys, and
// returns how many it deleted. The conversation leaves Conversations
// unless it has a disappearing-message timer, which is kept (a message
// sent later is still timed); the session and the contact stay. If it
// fails part way, the messages deleted so far stay deleted and calling it
// again deletes the rest.
func (c *Client) DeleteConversation(user UserID) (int, error) {
	if err := c.lock(); err != nil {
		return 0, err
	}
	defer c.mu.Unlock()
	n := 0
	for {
		var done bool
		var k int
		err := c.update(func(tx localstore.Tx) error {
			type rec struct {
				id  MessageID
				seq uint64
			}
			var rs []rec
			errFull := errors.New("full")
			err := tx.List("", msgKind(user), func(key, v []byte) error {
				r, err := decodeRecord(v)
				if err != nil {
					return err
				}
				rs = append(rs, rec{r.ID, beUint64(key)})
				if len(rs) == deleteBatch {
					return errFull
				}
				return nil
			})
			if err != nil && !errors.Is(err, errFull) {
				return err
			}
			for _, r := range rs {
				if err := forget(tx, user, r.id, r.seq); err != nil {
					return err
				}
			}
			k = len(rs)
			if k == deleteBatch {
				return nil
			}
			done = true
			var conv convRecord
			found, err := getJSON(tx, kindConv, user[:], &conv)
			if err != nil || !found || conv.Timer != 0 {
				return err
			}
			return tx.Delete("", kindConv, user[:])
		})
		if err != nil {
			return n, err
		}
		n += k
		if done {
			return n, nil
		}
	}
}
