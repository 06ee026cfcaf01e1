package badgertokens

import (
	"github.com/dgraph-io/badger/v4"
	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/internal/badgerutil"
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
		return badgerutil.DeletePrefix(txn, prefix)
	})
}
