// Package localstore is a device's sealed local store: every record is
// sealed with an AEAD under a key of its own, grouped by its scope (a
// conversation), and those keys live in a small encrypted key table, so
// that deleting a record or a scope destroys its keys and the ciphertext
// left behind in the underlying files cannot be opened again
// (docs/spec/client-store.md).
package localstore

import "errors"

// ErrNotFound is returned by Get for an absent record.
var ErrNotFound = errors.New("localstore: record not found")

// Scope names a group of records, such as a conversation, whose keys
// DeleteScope destroys together. Every record, in every scope, has a key
// of its own (docs/spec/client-store.md §Interface); the empty scope is
// the store's general scope.
type Scope string

// Tx is one atomic unit of reads and writes.
type Tx interface {
	// Get returns the record (scope, kind, id) or ErrNotFound.
	Get(scope Scope, kind string, id []byte) ([]byte, error)
	// Put creates or replaces a record.
	Put(scope Scope, kind string, id, value []byte) error
	// Delete removes a record and destroys its key.
	Delete(scope Scope, kind string, id []byte) error
	// List calls fn for every record of (scope, kind) in ascending id
	// order; fn must not keep id or value after it returns.
	List(scope Scope, kind string, fn func(id, value []byte) error) error
	// DeleteScope destroys the scope's key and removes its records.
	DeleteScope(scope Scope) error
}

// Store is the seam between the client and its storage; every
// implementation passes the conformance suite in storetest.
type Store interface {
	// Update runs fn in a read-write transaction; it is durable when
	// Update returns nil, and leaves nothing behind when fn fails.
	Update(fn func(Tx) error) error
	// View runs fn in a read-only transaction.
	View(fn func(Tx) error) error
	// Wipe destroys every key and record and the store's files (remote
	// wipe after revocation).
	Wipe() error
	Close() error
}
