package relay_test

import (
	"context"
	"encoding/base64"
	"sync/atomic"

	"github.com/coder/websocket"
	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/store/mailbox"
)

// faultyStore is a mailbox store that fails every call with
// ErrUnavailable while down, as a store with a full disk does (T38; the
// badger backend's own fault injection is tested in badgermailbox).
type faultyStore struct {
	mailbox.Store
	down atomic.Bool
	// enqueueErr, if set, is what Enqueue fails with while down.
	enqueueErr error
}

func (f *faultyStore) Enqueue(ctx context.Context, mb mailbox.ID, m mailbox.Message) (mailbox.Receipt, error) {
	if f.down.Load() {
		if f.enqueueErr != nil {
			return mailbox.Receipt{}, f.enqueueErr
		}
		return mailbox.Receipt{}, mailbox.ErrUnavailable
	}
	return f.Store.Enqueue(ctx, mb, m)
}

func (f *faultyStore) Fetch(ctx context.Context, mb mailbox.ID, after uint64, limit int) (mailbox.Page, error) {
	if f.down.Load() {
		return mailbox.Page{}, mailbox.ErrUnavailable
	}
	return f.Store.Fetch(ctx, mb, after, limit)
}

func (f *faultyStore) Ack(ctx context.Context, mb mailbox.ID, upTo uint64) error {
	if f.down.Load() {
		return mailbox.ErrUnavailable
	}
	return f.Store.Ack(ctx, mb, upTo)
}

func (f *faultyStore) Status(ctx context.Context, mb mailbox.ID) (mailbox.Status, error) {
	if f.down.Load() {
		return mailbox.Status{}, mailbox.ErrUnavailable
	}
	return f.Store.Status(ctx, mb)
}

func encodeAuth(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// pushWriteRaw writes a frame on a push channel, bypassing Push.Ack.
func pushWriteRaw(p *relay.Push, frame []byte) error {
	return relay.PushConn(p).Write(context.Background(), websocket.MessageBinary, frame)
}
