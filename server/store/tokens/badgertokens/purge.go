package badgertokens

import (
	"github.com/dgraph-io/badger/v4"
	"github.com/moat-im/moat/crypto/sealed"
)

// RemoveMailbox deletes every verifier of mailbox, durably: the relay
// found its device revoked (docs/spec/api.md §Delivery-token verifiers).
// A mailbox without verifiers costs a read, no write.
func (s *Store) RemoveMailbox(mailbox sealed.MailboxID) error {
	prefix := verifierPrefix(mailbox)
	var found bool
	if err := s.view(func(txn *badger.Txn) error {
		found = countPrefix(txn, prefix, 1) > 0
		return nil
	}); err != nil || !found {
		return err
	}
	return s.write(false, func(txn *badger.Txn) error {
		var keys [][]byte
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
		it.Close()
		for _, k := range keys {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}
