package badgermailbox

import (
	"context"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/moat-im/moat/server/store/mailbox"
)

// Verify checks the whole database and returns an error matching
// mailbox.ErrCorrupt if anything fails: badger's checksum of every table
// block (a read skips a block that fails it, as if its keys were absent),
// every record's own checksum and encoding, and that no acknowledged
// record lies above its mailbox's "Q" head (docs/spec/relay-storage.md
// §Badger backend, Corruption). Open runs it unless Options.SkipVerify is
// set; a relay should also run it periodically. It takes time
// proportional to the database size.
//
// After it reports corruption, close the store and restore the directory
// from a backup: badger v4.9.6 panics on the first table block that fails
// (DB.VerifyChecksum), and Verify recovers the panic, leaking badger's
// references to the tables.
func (s *Store) Verify(ctx context.Context) error {
	err := s.view(func(txn *badger.Txn) error { return s.check(ctx, txn) })
	if err != nil {
		return fmt.Errorf("badgermailbox: verify: %w", err)
	}
	return nil
}

// verify runs the check of Verify during Open.
func (s *Store) verify(ctx context.Context) error {
	txn := s.db.NewTransactionAt(s.readTs.Load(), false)
	defer txn.Discard()
	if err := s.check(ctx, txn); err != nil {
		return fmt.Errorf("badgermailbox: verify: %w", err)
	}
	return nil
}

func (s *Store) check(ctx context.Context, txn *badger.Txn) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: a table block failed verification (badger panicked: %v)", mailbox.ErrCorrupt, r)
		}
	}()
	if err := s.db.VerifyChecksum(); err != nil {
		return fmt.Errorf("%w: %w", mailbox.ErrCorrupt, err)
	}
	heads := make(map[mailbox.ID]uint64) // "Q"
	acked := make(map[mailbox.ID]uint64) // highest acknowledged record
	it := txn.NewIterator(badger.IteratorOptions{})
	defer it.Close()
	n := 0
	for it.Rewind(); it.Valid(); it.Next() {
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		item := it.Item()
		k := item.Key()
		if len(k) == 0 {
			return fmt.Errorf("%w: empty key", mailbox.ErrCorrupt)
		}
		err := item.Value(func(v []byte) error {
			switch k[0] {
			case prefixSchema:
				if len(k) != 1 || string(v) != schemaVersion {
					return fmt.Errorf("%w: schema record", mailbox.ErrCorrupt)
				}
			case prefixCommit:
				if len(k) != 1 {
					return fmt.Errorf("%w: key %x", mailbox.ErrCorrupt, k)
				}
				if _, err := decodeCommit(v); err != nil {
					return err
				}
			case prefixMeta:
				if len(k) != metaKeySize {
					return fmt.Errorf("%w: key %x", mailbox.ErrCorrupt, k)
				}
				h, _, err := decodeMeta(k, v)
				if err != nil {
					return err
				}
				heads[mailbox.ID(k[1:])] = h
			case prefixMsg:
				mb, seq, err := parseMsgKey(k)
				if err != nil {
					return err
				}
				r, err := decodeRecord(k, v)
				if err != nil {
					return err
				}
				if r.kind == kindAcked {
					acked[mb] = max(acked[mb], seq)
				}
			default:
				return fmt.Errorf("%w: unknown key %x", mailbox.ErrCorrupt, k)
			}
			return nil
		})
		if err != nil {
			return wrapRead(err)
		}
	}
	for mb, seq := range acked {
		if h, ok := heads[mb]; !ok || seq > h {
			return fmt.Errorf("%w: mailbox %v: acknowledged message %d above its head record %d", mailbox.ErrCorrupt, mb, seq, h)
		}
	}
	return nil
}
