// Package prekey defines the relay's prekey storage seam: the signed
// prekeys, one-time prekeys, KEM prekeys, sealed-sender keys and MLS
// KeyPackages that devices publish (docs/spec/bundle.md) and the relay
// hands out, each one-time item at most once (T09, T24).
//
// The store keeps opaque records: the relay verifies every record's
// signature before it stores it (bundle.Upload.Verify) and encodes each
// item as it likes. A Store replaces a device's single items (Singleton
// kinds) and keeps pools of one-time items (Pool kinds), from which Take
// removes items atomically: of any number of concurrent Takes, each pool
// item goes to at most one.
//
// Backends: memprekey (in memory, for tests) and badgerprekey (the
// embedded default). Every backend runs the conformance suite in
// prekeytest.
package prekey

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
)

// ID names a device: its tenant and device identifiers, 16 bytes each (the
// mailbox id of docs/spec/envelope.md §Identifiers).
type ID [32]byte

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Kind is the kind of a stored item.
type Kind uint8

// Kinds. A device has at most one item of each singleton kind, and a pool
// of items of each pool kind.
const (
	SignedPrekey    Kind = 1 // singleton: the current signed X25519 prekey
	LastResortKEM   Kind = 2 // singleton: the last-resort ML-KEM prekey
	SealedSenderKey Kind = 3 // singleton: the newest sealed-sender key record
	OneTimePrekey   Kind = 4 // pool: one-time X25519 prekeys
	OneTimeKEM      Kind = 5 // pool: one-time ML-KEM prekeys
	KeyPackage      Kind = 6 // pool: MLS KeyPackages
)

// Singleton reports whether k is a singleton kind.
func (k Kind) Singleton() bool { return k >= SignedPrekey && k <= SealedSenderKey }

// Pool reports whether k is a pool kind.
func (k Kind) Pool() bool { return k >= OneTimePrekey && k <= KeyPackage }

// Valid reports whether k is a defined kind.
func (k Kind) Valid() bool { return k.Singleton() || k.Pool() }

// Kinds lists every kind.
var Kinds = []Kind{SignedPrekey, LastResortKEM, SealedSenderKey, OneTimePrekey, OneTimeKEM, KeyPackage}

// Item is one stored record. ID orders the items of a pool (Take hands out
// the lowest first) and identifies an item to its device; for a singleton
// it is informational.
type Item struct {
	Kind   Kind
	ID     uint32
	Record []byte
}

// Hard limits.
const (
	// MaxRecordSize bounds one record (an MLS KeyPackage is at most
	// 2^16 - 1 bytes in a PrekeyUpload).
	MaxRecordSize = 1<<16 - 1
	// MaxItemsPerPut bounds the items of one Put.
	MaxItemsPerPut = 1024
	// DefaultMaxPool is the default bound of each pool of a device.
	DefaultMaxPool = 1000
)

// Errors. Backends wrap them with context; callers test with errors.Is.
// Every error leaves the store as it was.
var (
	// ErrInvalid: an undefined kind, an empty or oversized record, too
	// many items, a kind asked for twice.
	ErrInvalid = errors.New("prekey: invalid request")
	// ErrQuota: the Put would take a pool past its bound.
	ErrQuota = errors.New("prekey: pool full")
	// ErrUnavailable: the store cannot make writes durable now; retry
	// later (HTTP 503 with Retry-After).
	ErrUnavailable = errors.New("prekey: storage unavailable")
	// ErrCorrupt: stored data failed an integrity check.
	ErrCorrupt = errors.New("prekey: stored data is corrupt")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("prekey: store closed")
)

// Status describes a device's stored items: how many each pool holds,
// which singletons are present, and, per pool kind, how many Takes found
// the pool empty since the device last added to it: the flag that tells a
// device its last-resort key is in use or its KeyPackages ran out (T24).
type Status struct {
	Pools     map[Kind]int
	Has       map[Kind]bool
	Exhausted map[Kind]uint64
}

// Store is the prekey storage seam. Implementations are safe for
// concurrent use and run prekeytest.Run.
type Store interface {
	// Put stores items for dev, atomically and durably: an item of a
	// singleton kind replaces the device's current one (at most one per
	// kind per Put); an item of a pool kind is added to its pool,
	// replacing an item with the same id, and resets that pool's
	// exhausted count. A pool holds at most its bound (ErrQuota).
	Put(ctx context.Context, dev ID, items []Item) error

	// Take returns dev's current items of the singleton kinds get, and
	// removes and returns the lowest-id item of each pool kind in take,
	// atomically and durably. A pool found empty counts as exhausted
	// (Status). Items absent are absent from the result.
	Take(ctx context.Context, dev ID, get, take []Kind) ([]Item, error)

	// Status returns dev's Status; a device never written has empty maps.
	Status(ctx context.Context, dev ID) (Status, error)

	// Delete removes every item of dev, durably (a revoked device).
	Delete(ctx context.Context, dev ID) error

	// Close releases the store; later calls return ErrClosed.
	Close() error
}

// CheckPut validates the items of a Put against a pool bound.
func CheckPut(items []Item) error {
	if len(items) == 0 || len(items) > MaxItemsPerPut {
		return fmt.Errorf("%w: %d items", ErrInvalid, len(items))
	}
	var single [8]bool
	for _, it := range items {
		if !it.Kind.Valid() {
			return fmt.Errorf("%w: kind %d", ErrInvalid, it.Kind)
		}
		if len(it.Record) == 0 || len(it.Record) > MaxRecordSize {
			return fmt.Errorf("%w: record of %d bytes", ErrInvalid, len(it.Record))
		}
		if it.Kind.Singleton() {
			if single[it.Kind] {
				return fmt.Errorf("%w: two items of kind %d", ErrInvalid, it.Kind)
			}
			single[it.Kind] = true
		}
	}
	return nil
}

// CheckTake validates the kinds of a Take.
func CheckTake(get, take []Kind) error {
	var seen [8]bool
	for _, k := range get {
		if !k.Singleton() || seen[k] {
			return fmt.Errorf("%w: get kind %d", ErrInvalid, k)
		}
		seen[k] = true
	}
	for _, k := range take {
		if !k.Pool() || seen[k] {
			return fmt.Errorf("%w: take kind %d", ErrInvalid, k)
		}
		seen[k] = true
	}
	return nil
}

// NewStatus returns an empty Status.
func NewStatus() Status {
	return Status{Pools: map[Kind]int{}, Has: map[Kind]bool{}, Exhausted: map[Kind]uint64{}}
}
