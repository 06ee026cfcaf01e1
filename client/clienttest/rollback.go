package clienttest

import (
	"context"
	"sync"

	"github.com/moat-im/moat/server/store/mailbox"
)

// backupMailboxes is the relay's mailbox store with a backup copy: until
// BackupMailboxes every write goes to both stores (which assign the same
// sequence numbers), after it only to the live one, and RestoreMailboxes
// puts the backup in its place: the relay restarted on an old copy of its
// data (adversarial case T40).
type backupMailboxes struct {
	mu     sync.Mutex
	live   mailbox.Store
	backup mailbox.Store // nil once restored
	frozen bool
	// failAcks makes every Ack fail (FailAcks).
	failAcks bool
}

// FailAcks makes the relay's mailbox store fail every Ack with
// ErrUnavailable (503) while on: the relay serves messages but the
// device's acknowledgements do not take.
func (s *Server) FailAcks(on bool) {
	s.boxes.mu.Lock()
	defer s.boxes.mu.Unlock()
	s.boxes.failAcks = on
}

// BackupMailboxes freezes the backup copy of the relay's mailboxes as
// they are now.
func (s *Server) BackupMailboxes() {
	s.boxes.mu.Lock()
	defer s.boxes.mu.Unlock()
	s.boxes.frozen = true
}

// RestoreMailboxes replaces the relay's mailboxes by the copy
// BackupMailboxes froze, losing everything since.
func (s *Server) RestoreMailboxes() {
	s.t.Helper()
	b := s.boxes
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.frozen || b.backup == nil {
		s.t.Fatal("clienttest: RestoreMailboxes without a BackupMailboxes")
	}
	b.live.Close()
	b.live, b.backup = b.backup, nil
}

// stores returns the live store and, while not frozen, the backup.
func (b *backupMailboxes) stores() (live, cp mailbox.Store) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.frozen {
		return b.live, nil
	}
	return b.live, b.backup
}

func (b *backupMailboxes) Enqueue(ctx context.Context, mb mailbox.ID, m mailbox.Message) (mailbox.Receipt, error) {
	live, cp := b.stores()
	r, err := live.Enqueue(ctx, mb, m)
	if err == nil && cp != nil {
		cp.Enqueue(ctx, mb, m)
	}
	return r, err
}

func (b *backupMailboxes) Fetch(ctx context.Context, mb mailbox.ID, after uint64, limit int) (mailbox.Page, error) {
	live, _ := b.stores()
	return live.Fetch(ctx, mb, after, limit)
}

func (b *backupMailboxes) Ack(ctx context.Context, mb mailbox.ID, upTo uint64) error {
	b.mu.Lock()
	fail := b.failAcks
	b.mu.Unlock()
	if fail {
		return mailbox.ErrUnavailable
	}
	live, cp := b.stores()
	err := live.Ack(ctx, mb, upTo)
	if err == nil && cp != nil {
		cp.Ack(ctx, mb, upTo)
	}
	return err
}

func (b *backupMailboxes) Status(ctx context.Context, mb mailbox.ID) (mailbox.Status, error) {
	live, _ := b.stores()
	return live.Status(ctx, mb)
}

func (b *backupMailboxes) Subscribe(mb mailbox.ID) *mailbox.Subscription {
	live, _ := b.stores()
	return live.Subscribe(mb)
}

func (b *backupMailboxes) Sweep(ctx context.Context) (int, error) {
	live, cp := b.stores()
	if cp != nil {
		cp.Sweep(ctx)
	}
	return live.Sweep(ctx)
}

func (b *backupMailboxes) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.backup != nil {
		b.backup.Close()
	}
	return b.live.Close()
}
