package localstore

import (
	"errors"
	"fmt"
)

// Errors shared by every implementation (docs/spec/client-store.md §Interface).
var (
	// ErrInvalid reports a request out of bounds: a scope, kind, id or
	// value longer than its limit.
	ErrInvalid = errors.New("localstore: invalid request")
	// ErrReadOnly is returned by a write inside View.
	ErrReadOnly = errors.New("localstore: write in a read-only transaction")
	// ErrTxDone is returned by a Tx used after its function returned.
	ErrTxDone = errors.New("localstore: transaction finished")
	// ErrClosed is returned by a store after Close or Wipe.
	ErrClosed = errors.New("localstore: store closed")
	// ErrWrongKey is returned by Open when the passphrase or key file does
	// not open the key table (or its header was altered, which cannot be
	// told apart). Open changes nothing on disk before it returns it.
	ErrWrongKey = errors.New("localstore: wrong passphrase or key file")
	// ErrCorrupt reports stored data that fails authentication or strict
	// parsing: a tampered or damaged record or key table.
	ErrCorrupt = errors.New("localstore: store corrupted")
	// ErrNotErased is returned by Update when its changes were committed
	// durably but destroying the keys of the records it deleted failed
	// (an I/O error). The store then refuses writes; the keys are
	// destroyed when the store is next opened.
	ErrNotErased = errors.New("localstore: committed, but keys of deleted records not yet destroyed")
)

// Limits on record names and values (docs/spec/client-store.md §Limits).
const (
	MaxScopeLen = 255
	MaxKindLen  = 255
	MaxIDLen    = 1024
	MaxValueLen = 4 << 20
)

// CheckName returns ErrInvalid (wrapped) if scope, kind or id exceeds its
// limit.
func CheckName(scope Scope, kind string, id []byte) error {
	switch {
	case len(scope) > MaxScopeLen:
		return fmt.Errorf("%w: scope of %d bytes (limit %d)", ErrInvalid, len(scope), MaxScopeLen)
	case len(kind) > MaxKindLen:
		return fmt.Errorf("%w: kind of %d bytes (limit %d)", ErrInvalid, len(kind), MaxKindLen)
	case len(id) > MaxIDLen:
		return fmt.Errorf("%w: id of %d bytes (limit %d)", ErrInvalid, len(id), MaxIDLen)
	}
	return nil
}

// CheckValue returns ErrInvalid (wrapped) if value exceeds MaxValueLen.
func CheckValue(value []byte) error {
	if len(value) > MaxValueLen {
		return fmt.Errorf("%w: value of %d bytes (limit %d)", ErrInvalid, len(value), MaxValueLen)
	}
	return nil
}
