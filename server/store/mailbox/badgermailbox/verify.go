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
// every record's own checksum and encoding, and each mailbox's meta
// record against its messages (count, bytes, no sequence number above
// the head). Open runs it unless Options.SkipVerify is set; a relay
// should also run it periodically. It takes time proportional to the
// database size.
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

// boxStats is what a mailbox's records say about it.
type boxStats struct {
	count    uint32
	bytes    uint64
	maxSeq   uint64 // of messages and dedup records
	lowestEx int64  // earliest message expiry
	expiry   int64  // time of the expiry entry
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
	stats := make(map[mailbox.ID]*boxStats)
	get := func(mb mailbox.ID) *boxStats {
		st := stats[mb]
		if st == nil {
			st = &boxStats{}
			stats[mb] = st
		}
		return st
	}
	metas := make(map[mailbox.ID]meta)
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
				m, err := decodeMeta(k, v)
				if err != nil {
					return err
				}
				metas[mailbox.ID(k[1:])] = m
			case prefixMsg:
				mb, seq, err := parseMsgKey(k)
				if err != nil {
					return err
				}
				_, exp, body, err := decodeMsg(k, v)
				if err != nil {
					return err
				}
				st := get(mb)
				st.count++
				st.bytes += uint64(len(body))
				st.maxSeq = max(st.maxSeq, seq)
				if st.lowestEx == 0 || exp < st.lowestEx {
					st.lowestEx = exp
				}
			case prefixDedup:
				if len(k) != dedupKeySize {
					return fmt.Errorf("%w: key %x", mailbox.ErrCorrupt, k)
				}
				d, err := decodeDedup(k, v)
				if err != nil {
					return err
				}
				st := get(mailbox.ID(k[1:17]))
				st.maxSeq = max(st.maxSeq, d.seq)
			case prefixExpiry:
				at, mb, err := parseExpiryKey(k)
				if err != nil {
					return err
				}
				if err := decodeExpiry(k, v); err != nil {
					return err
				}
				st := get(mb)
				if st.expiry != 0 {
					return fmt.Errorf("%w: mailbox %v has two expiry entries", mailbox.ErrCorrupt, mb)
				}
				st.expiry = at
			default:
				return fmt.Errorf("%w: unknown key %x", mailbox.ErrCorrupt, k)
			}
			return nil
		})
		if err != nil {
			return wrapRead(err)
		}
	}
	for mb, st := range stats {
		m, ok := metas[mb]
		if !ok {
			return fmt.Errorf("%w: mailbox %v has records but no meta record", mailbox.ErrCorrupt, mb)
		}
		if st.maxSeq > m.head {
			return fmt.Errorf("%w: mailbox %v has a record of sequence number %d above its head %d", mailbox.ErrCorrupt, mb, st.maxSeq, m.head)
		}
		if st.count != m.count || st.bytes != m.bytes {
			return fmt.Errorf("%w: mailbox %v holds %d messages (%d bytes), its meta record counts %d (%d bytes)", mailbox.ErrCorrupt, mb, st.count, st.bytes, m.count, m.bytes)
		}
		if st.count > 0 && (m.lowExpiry == 0 || m.lowExpiry > st.lowestEx) {
			return fmt.Errorf("%w: mailbox %v: meta low expiry %d above the earliest expiry %d", mailbox.ErrCorrupt, mb, m.lowExpiry, st.lowestEx)
		}
		if st.expiry != m.lowExpiry {
			return fmt.Errorf("%w: mailbox %v: expiry entry at %d, meta low expiry %d", mailbox.ErrCorrupt, mb, st.expiry, m.lowExpiry)
		}
	}
	for mb, m := range metas {
		if _, ok := stats[mb]; !ok && (m.count != 0 || m.lowExpiry != 0) {
			return fmt.Errorf("%w: mailbox %v: meta record counts %d messages, expiry %d; none stored", mailbox.ErrCorrupt, mb, m.count, m.lowExpiry)
		}
	}
	return nil
}
