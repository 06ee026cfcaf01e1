package store

import (
	"context"
	"fmt"
	"time"
)

// Lodged records (docs/spec/directory.md §Lodged approvals): what the
// directory has acknowledged holding between epochs outside the tenant's
// admin state, such as admin approvals waiting for the roster's threshold
// and key rotations under approval. They belong to no epoch: an epoch
// commit neither writes nor supersedes them, and they stay until the
// directory deletes them or they expire.

// LodgedKeySize is the size of a lodged record key.
const LodgedKeySize = 33

// A LodgedKey names one lodged record of a tenant. The store does not
// interpret it (the directory: a kind byte and a 32-byte id); records are
// read back in increasing key order.
type LodgedKey [LodgedKeySize]byte

// MaxLodgedSize bounds one lodged record's value.
const MaxLodgedSize = 4 << 20

// LodgedStore keeps tenants' lodged records. Part of DirectoryStore.
type LodgedStore interface {
	// PutLodged writes the lodged record key of tenant id, which expires
	// at expires, or deletes it if value is empty; in the same write it
	// deletes every record of the tenant expired at now (expires not
	// after now). It is atomic and durable: when it returns nil the
	// change is durable, and when it returns an error nothing changed.
	// It does not need a head. It returns ErrInvalidCommit for a value
	// over MaxLodgedSize or a write that expires at now or before.
	PutLodged(ctx context.Context, id [16]byte, key LodgedKey, value []byte, expires, now time.Time) error

	// LodgedRecords calls fn with every lodged record of tenant id not
	// expired at now, by increasing key. fn must not retain value, nor
	// call the store; an error from fn stops the walk and is returned.
	LodgedRecords(ctx context.Context, id [16]byte, now time.Time, fn func(key LodgedKey, value []byte, expires time.Time) error) error
}

// CheckLodged checks a PutLodged call, as every backend does first.
func CheckLodged(value []byte, expires, now time.Time) error {
	switch {
	case len(value) > MaxLodgedSize:
		return fmt.Errorf("%w: lodged record of %d bytes", ErrInvalidCommit, len(value))
	case len(value) > 0 && !expires.After(now):
		return fmt.Errorf("%w: lodged record expiring at %v, not after %v", ErrInvalidCommit, expires, now)
	}
	return nil
}

// LodgedExpired reports whether a lodged record expiring at expires has
// expired at now.
func LodgedExpired(expires, now time.Time) bool { return !now.Before(expires) }
