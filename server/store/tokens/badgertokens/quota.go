package badgertokens

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Quota counters (docs/spec/relay-storage.md §Delivery-token state,
// §Quota counters): the relay's anonymous-token issuance counts and
// attachment byte budgets, kept here so that a restart does not reset
// them. The store does not interpret a counter: the relay reads the
// records of a charge, computes their new values (or refuses), and the
// store writes them in the group commit, durably, before Charge returns.
//
//	"q" || counter key (1..64 bytes)     a counter; value and key are the relay's

const prefixQuota = 'q'

// MaxQuotaKey bounds a counter key, MaxQuotaValue a counter's value, and
// MaxQuotaKeys the counters of one charge.
const (
	MaxQuotaKey   = 64
	MaxQuotaValue = 64
	MaxQuotaKeys  = 4
)

// ErrQuotaRequest is returned for a charge with no key, too many keys, a
// key or value out of bounds, or a TTL that is not positive.
var ErrQuotaRequest = errors.New("badgertokens: invalid quota charge")

func quotaKey(k []byte) []byte {
	return append([]byte{prefixQuota}, k...)
}

// Charge reads the counters of keys (nil for one that is absent or has
// expired), passes them to f, and stores what f returns: one value per
// key, each kept for ttl (after which it reads as absent). If f returns
// an error nothing is stored and Charge returns it. The new values are
// durable when Charge returns nil; the calls of one group commit run one
// after the other, each seeing the values stored by the ones before it.
//
// f runs inside the batch, holding the store's batch lock: it must be
// quick and must not call the store.
func (s *Store) Charge(keys [][]byte, f func(old [][]byte) (updated [][]byte, ttl time.Duration, err error)) error {
	if len(keys) == 0 || len(keys) > MaxQuotaKeys {
		return ErrQuotaRequest
	}
	for _, k := range keys {
		if len(k) == 0 || len(k) > MaxQuotaKey {
			return ErrQuotaRequest
		}
	}
	return s.write(true, func(txn *badger.Txn) error {
		old := make([][]byte, len(keys))
		for i, k := range keys {
			v, _, err := get(txn, quotaKey(k))
			if err != nil {
				return err
			}
			old[i] = v
		}
		updated, ttl, err := f(old)
		if err != nil {
			return err
		}
		if len(updated) != len(keys) || ttl <= 0 {
			return ErrQuotaRequest
		}
		for _, v := range updated {
			if len(v) == 0 || len(v) > MaxQuotaValue {
				return ErrQuotaRequest
			}
		}
		for i, k := range keys {
			// A failed Set (ErrTxnTooBig) leaves the earlier keys'
			// values in the batch: an over-charge, never an
			// under-charge, and this call is refused.
			if err := txn.SetEntry(badger.NewEntry(quotaKey(k), updated[i]).WithTTL(ttl)); err != nil {
				return fmt.Errorf("%w: %v", ErrUnavailable, err)
			}
		}
		return nil
	})
}
