// Package store defines the storage seam of Moat's key directory: the
// DirectoryStore interface through which the directory reads its head, its
// verifiable-map and log nodes, its value records and its tenants' admin
// state, and through which it commits one epoch atomically.
//
// Backends: memstore (in memory, for tests) and badgerstore (the embedded
// default). Every backend runs the conformance suite in storetest, which
// also runs vmaptest.StoreConformance and tlogtest.TestNodeStore through
// small adapters.
//
// # Visibility
//
// The head is the visibility barrier. A reader sees only what the head it
// observes covers: map nodes of epochs up to Head.Epoch, log nodes inside
// a tree of Head.LogSize leaves, value records written in epochs up to
// Head.Epoch, and tenant records as of Head.Epoch. A commit becomes visible
// all at once when the head moves, and only after it is durable.
//
// Each read call sees one head, at least as new as any head returned
// before the call began. Map nodes, log nodes and value records are
// immutable once visible, so a caller that pins an epoch (for example a
// proof at Head.Epoch) can make several calls and still read one epoch's
// state; LatestVersion and TenantRecords move with the head.
//
// Pending tenant records (WritePending) sit beside the head: those written
// after the head's epoch are visible through PendingRecords once durable,
// and the next epoch's commit supersedes them all atomically, so that a
// restart finds the published state and the changes made since, each
// exactly once.
package store

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/vmap"
)

// Errors. Backends wrap them with context; callers test with errors.Is.
var (
	// ErrEmpty is returned by Head when no epoch has been committed.
	ErrEmpty = errors.New("store: no epoch committed")
	// ErrNotFound is returned for a value record, tenant state or log node
	// that is not stored (or not yet visible). GetNodes reports a missing
	// map node with vmap.ErrNodeNotFound instead, as vmap.NodeStore
	// requires.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict is returned by CommitEpoch when the commit does not
	// follow the stored state: an epoch other than Head.Epoch+1 (0 for an
	// empty store), a value version other than the label's latest+1, or a
	// log node rewritten with another hash. Nothing is written. It means
	// the writer's view is stale, or another writer exists.
	ErrConflict = errors.New("store: commit conflicts with the stored state")
	// ErrInvalidCommit is returned by CommitEpoch for a commit that is
	// malformed in itself. Nothing is written. An invalid map batch also
	// matches vmap.ErrInvalidBatch.
	ErrInvalidCommit = errors.New("store: invalid epoch commit")
	// ErrCorrupt is returned when stored bytes do not decode, or the
	// backend's own integrity checks (checksums) fail. Never ignore it.
	ErrCorrupt = errors.New("store: stored data is corrupt")
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("store: closed")
)

// Limits on what one commit may carry. They bound allocations on read as
// well; backends may store anything up to them.
const (
	// MaxRecordSize bounds one value record: a kt value of up to 16 MiB
	// and its framing.
	MaxRecordSize = 16<<20 + 64<<10
	// MaxTenantRecordSize bounds one record of a tenant's admin state.
	MaxTenantRecordSize = 16<<20 + 64<<10
	// MaxTenantRecords bounds the tenant records one commit writes.
	MaxTenantRecords = 1 << 24
	// MaxSummarySize bounds a value record's summary (ValueWrite.Summary).
	MaxSummarySize = 64
	// MaxCheckpointSize bounds the checkpoint note kept in the head
	// (a signed note with its cosignatures).
	MaxCheckpointSize = 256 << 10
)

// Head is the state a reader sees: the latest committed epoch, the size
// of the log after it, and that epoch's checkpoint (a signed note, opaque
// to the store).
type Head struct {
	Epoch      uint64
	LogSize    uint64
	Checkpoint []byte
}

// Clone returns a copy of h that shares no memory with it.
func (h Head) Clone() Head {
	h.Checkpoint = slices.Clone(h.Checkpoint)
	return h
}

// A Transition is the checkpoint of an epoch that published a new trust
// bundle, which the directory keeps permanently so that a client that was
// offline across the change can still follow it
// (docs/spec/directory-api.md §Transitions).
type Transition struct {
	Epoch      uint64
	Checkpoint []byte
}

// A ValueWrite appends version Version of label Label's value records.
// Summary, optional, is what the writer needs of the record to write the
// label's next version (the directory: its epoch and commitment), which
// LatestSummary returns without reading the record.
type ValueWrite struct {
	Label   vmap.Label
	Version uint32
	Record  []byte
	Summary []byte
}

// TenantKeySize is the size of a tenant record key.
const TenantKeySize = 33

// A TenantKey names one record of a tenant's admin state. The store does
// not interpret it; the org package defines it (docs/spec/org.md §Tenant
// state: a kind byte and a 32-byte id), and records are read back in
// increasing key order.
type TenantKey [TenantKeySize]byte

// A TenantRecord is one record of a tenant's admin state
// (org.StateRecord). An empty Value deletes the record.
type TenantRecord struct {
	Key   TenantKey
	Value []byte
}

// A TenantWrite changes a tenant's admin state as of the commit's epoch:
// it writes (or deletes) the records the epoch changed, and leaves every
// other record as it was. The admin state is stored per record so that
// an epoch writes what changed, not the whole state.
type TenantWrite struct {
	ID      [16]byte
	Records []TenantRecord
}

// An EpochCommit is everything one epoch writes. The store must not be
// handed a commit that is modified while CommitEpoch runs; it retains
// nothing once CommitEpoch returns.
type EpochCommit struct {
	Epoch uint64
	// Map holds the map nodes of Epoch, from vmap.Map.Update. Required:
	// every epoch has a map root.
	Map *vmap.Batch
	// LogNodes are the log nodes the epoch's log append wrote (see
	// TreeStore): every perfect-subtree node that lies inside a tree of
	// Head.LogSize leaves and not inside the previous head's tree, and no
	// node outside Head.LogSize. Repeating a stored node with its stored
	// hash is allowed.
	LogNodes []tlog.Node
	// Values are the value records of the epoch. Versions of a label
	// start at 1 and have no gaps: the first write of a label in a commit
	// is its latest version + 1, and several versions of one label may be
	// written in one commit.
	Values []ValueWrite
	// Tenants are the admin-state records that changed in the epoch, at
	// most one TenantWrite per tenant, each key at most once.
	Tenants []TenantWrite
	// Head is the new head; Head.Epoch must equal Epoch and Head.LogSize
	// must not be below the previous head's.
	Head Head
	// Transition marks an epoch that publishes a new trust bundle: the
	// store keeps Head.Checkpoint as the epoch's transition, permanently,
	// and UpdateHeadCheckpoint of this head replaces that too. The head's
	// checkpoint must not be empty.
	Transition bool
}

// DirectoryStore is the directory's storage seam. Implementations are
// safe for concurrent use by any number of readers and one writer
// (CommitEpoch calls are serialised); WritePending may be called
// concurrently with CommitEpoch, and the two are ordered: a WritePending
// after the commit of the next epoch fails with ErrConflict. They run
// storetest.Run.
type DirectoryStore interface {
	// Head returns the latest committed head, or ErrEmpty.
	Head(ctx context.Context) (Head, error)

	// GetNodes reads map nodes (vmap.NodeStore): nodes of epochs after
	// the head are not found.
	GetNodes(keys []vmap.NodeKey) ([]vmap.Node, error)

	// ReadNodes reads log node hashes (tlog.NodeReader), in order; a node
	// outside the tree of Head.LogSize leaves is not found (ErrNotFound).
	ReadNodes(ctx context.Context, ids []tlog.NodeID) ([]tlog.Hash, error)

	// Values returns the value records of label with versions from to to,
	// inclusive (1 ≤ from ≤ to). If any of them is not visible it returns
	// an error matching ErrNotFound.
	Values(ctx context.Context, label vmap.Label, from, to uint32) ([][]byte, error)

	// LatestVersion returns the latest visible version of label's value
	// records, 0 if it has none.
	LatestVersion(ctx context.Context, label vmap.Label) (uint32, error)

	// LatestValue returns the latest visible version of label's value
	// records and that record, or 0 and nil if it has none: LatestVersion
	// and Values in one read, which the directory makes for every label
	// it writes whose latest record it has not cached (after a restart,
	// every label of the first epochs).
	LatestValue(ctx context.Context, label vmap.Label) (uint32, []byte, error)

	// LatestSummary returns the latest visible version of label (0 if
	// none) and the Summary it was written with. The summary is nil if
	// the version was written without one, or if the store does not have
	// it at hand (badger after a failed commit, after a crash that lost
	// the hints its cleanup writes after each commit, or corruption); then the
	// caller reads the record (LatestValue). It is the cheapest way to
	// the latest version: badger answers it from one small index key,
	// checked against the version keys, without reading the record.
	LatestSummary(ctx context.Context, label vmap.Label) (uint32, []byte, error)

	// WritePending writes records of tenant w.ID's pending admin state:
	// changes made after the head of epoch after and not yet published,
	// which the directory makes durable before it acknowledges them
	// (docs/spec/directory.md §Storage). It is atomic and durable: when it
	// returns nil every record is durable, and when it returns an error
	// none is visible. Each record replaces the tenant's pending record of
	// its key; an empty Value records a pending deletion. The records are
	// visible through PendingRecords while the head is of epoch after; the
	// commit of the next epoch supersedes every pending record (that epoch
	// publishes them: its TenantWrite carries them), and the store may
	// delete them from then on. It returns ErrEmpty for an empty store,
	// ErrConflict if the head is not of epoch after, and ErrInvalidCommit
	// for a write TenantWrite.Check refuses.
	WritePending(ctx context.Context, after uint64, w TenantWrite) error

	// PendingRecords calls fn with every pending record of tenant id that
	// WritePending wrote after the head's epoch, by increasing key,
	// deletions included (an empty value), all read at one head. It
	// returns nil, without calling fn, if there is none. fn must not
	// retain value, nor call the store; an error from fn stops the walk
	// and is returned.
	PendingRecords(ctx context.Context, id [16]byte, fn func(key TenantKey, value []byte) error) error

	// TenantRecords calls fn with every record of a tenant's admin state
	// as of the head (deleted records excluded), by increasing key, all
	// read at one head; it returns ErrNotFound if the tenant has no
	// record. fn must not retain value, nor call the store. An error
	// from fn stops the walk and is returned. Memory use is bounded by
	// one record, not by the tenant's size.
	TenantRecords(ctx context.Context, id [16]byte, fn func(key TenantKey, value []byte) error) error

	// UpdateHeadCheckpoint replaces the checkpoint of the head, which
	// must be of epoch, by checkpoint, atomically and durably: when it
	// returns nil, Head returns it (until the next commit), also after a
	// restart; when it returns an error, the head is unchanged. The
	// directory uses it to keep the head's checkpoint with the witnesses'
	// cosignatures, which arrive after the commit. If the head's epoch is
	// a transition (EpochCommit.Transition), the transition's checkpoint
	// is replaced with it, and keeps the last one once the head moves on.
	// The store does not interpret the bytes. It returns ErrEmpty for an
	// empty store, ErrConflict if the head is of another epoch, and
	// ErrInvalidCommit for an empty checkpoint or one over
	// MaxCheckpointSize.
	UpdateHeadCheckpoint(ctx context.Context, epoch uint64, checkpoint []byte) error

	// Transitions returns every transition visible at the head, by
	// increasing epoch: the epochs committed with EpochCommit.Transition,
	// each with the checkpoint its commit wrote, or the last one
	// UpdateHeadCheckpoint gave it while it was the head. They are never
	// removed.
	Transitions(ctx context.Context) ([]Transition, error)

	// CommitEpoch writes c atomically and durably, then moves the head to
	// c.Head: when it returns nil every part of c is durable and visible,
	// and when it returns an error none of it is visible. It calls
	// c.Check first, then refuses conflicts with ErrConflict.
	CommitEpoch(ctx context.Context, c *EpochCommit) error

	// Close releases the store. Calls after Close return ErrClosed.
	Close() error

	LodgedStore   // lodged.go
	VRFCacheStore // vrfcache.go
}

// Compile-time checks that a DirectoryStore serves vmap and tlog.
var (
	_ vmap.NodeStore  = DirectoryStore(nil)
	_ tlog.NodeReader = DirectoryStore(nil)
)

// CheckHeadCheckpoint checks an UpdateHeadCheckpoint call against the
// head it must update (nil for an empty store), as every backend does
// first.
func CheckHeadCheckpoint(h *Head, epoch uint64, checkpoint []byte) error {
	switch {
	case h == nil:
		return ErrEmpty
	case len(checkpoint) == 0 || len(checkpoint) > MaxCheckpointSize:
		return fmt.Errorf("%w: head checkpoint of %d bytes", ErrInvalidCommit, len(checkpoint))
	case h.Epoch != epoch:
		return fmt.Errorf("%w: head checkpoint of epoch %d, head is epoch %d", ErrConflict, epoch, h.Epoch)
	}
	return nil
}

// A VersionRun is the versions First..Last of one label that a commit
// writes.
type VersionRun struct {
	Label       vmap.Label
	First, Last uint32
}

// Check verifies everything about c that does not need the stored data,
// given the head it must follow (nil for an empty store), and returns the
// commit's version runs sorted by label. Backends call it first, then
// check each run's First against the label's latest version, and the log
// nodes against stored ones.
//
// An epoch other than prev.Epoch+1 (or 0 after nil) is ErrConflict; every
// other failure is ErrInvalidCommit.
func (c *EpochCommit) Check(prev *Head) ([]VersionRun, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: nil commit", ErrInvalidCommit)
	}
	want := uint64(0)
	if prev != nil {
		want = prev.Epoch + 1
		if prev.Epoch == ^uint64(0) {
			return nil, fmt.Errorf("%w: epoch space exhausted", ErrConflict)
		}
	}
	if c.Epoch != want {
		return nil, fmt.Errorf("%w: epoch %d, want %d", ErrConflict, c.Epoch, want)
	}
	if c.Head.Epoch != c.Epoch {
		return nil, fmt.Errorf("%w: head epoch %d in commit of epoch %d", ErrInvalidCommit, c.Head.Epoch, c.Epoch)
	}
	if c.Head.LogSize > tlog.MaxTreeSize {
		return nil, fmt.Errorf("%w: log size %d", ErrInvalidCommit, c.Head.LogSize)
	}
	if prev != nil && c.Head.LogSize < prev.LogSize {
		return nil, fmt.Errorf("%w: log size %d below the previous %d", ErrInvalidCommit, c.Head.LogSize, prev.LogSize)
	}
	if len(c.Head.Checkpoint) > MaxCheckpointSize {
		return nil, fmt.Errorf("%w: checkpoint of %d bytes", ErrInvalidCommit, len(c.Head.Checkpoint))
	}
	if c.Transition && len(c.Head.Checkpoint) == 0 {
		return nil, fmt.Errorf("%w: a transition without a checkpoint", ErrInvalidCommit)
	}
	if c.Map == nil {
		return nil, fmt.Errorf("%w: no map batch", ErrInvalidCommit)
	}
	if c.Map.Epoch != c.Epoch {
		return nil, fmt.Errorf("%w: map batch of epoch %d in commit of epoch %d", ErrInvalidCommit, c.Map.Epoch, c.Epoch)
	}
	if err := c.Map.Check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidCommit, err)
	}
	oldSize := uint64(0)
	if prev != nil {
		oldSize = prev.LogSize
	}
	// The log nodes must hold every node the growth from oldSize to
	// Head.LogSize creates, so that a node inside the head's tree is
	// always stored (a missing one is corruption, not absence).
	seenLog := make(map[tlog.NodeID]tlog.Hash, len(c.LogNodes))
	fresh := uint64(0)
	for _, n := range c.LogNodes {
		if !LogNodeInside(n.ID, c.Head.LogSize) {
			return nil, fmt.Errorf("%w: log node (%d, %d) outside a tree of %d leaves", ErrInvalidCommit, n.ID.Level, n.ID.Index, c.Head.LogSize)
		}
		if h, ok := seenLog[n.ID]; ok {
			if h != n.Hash {
				return nil, fmt.Errorf("%w: log node (%d, %d) written twice with different hashes", ErrInvalidCommit, n.ID.Level, n.ID.Index)
			}
			continue
		}
		seenLog[n.ID] = n.Hash
		if !LogNodeInside(n.ID, oldSize) {
			fresh++
		}
	}
	if want := newLogNodes(oldSize, c.Head.LogSize); fresh != want {
		return nil, fmt.Errorf("%w: %d new log nodes for a log growing from %d to %d leaves, want %d", ErrInvalidCommit, fresh, oldSize, c.Head.LogSize, want)
	}
	seenTenant := make(map[[16]byte]bool, len(c.Tenants))
	for _, t := range c.Tenants {
		if seenTenant[t.ID] {
			return nil, fmt.Errorf("%w: tenant %x written twice", ErrInvalidCommit, t.ID)
		}
		seenTenant[t.ID] = true
		if err := t.Check(); err != nil {
			return nil, err
		}
	}
	type lv struct {
		label   vmap.Label
		version uint32
	}
	vs := make([]lv, len(c.Values))
	for i := range c.Values {
		w := &c.Values[i]
		if w.Version == 0 {
			return nil, fmt.Errorf("%w: version 0 of label %x", ErrInvalidCommit, w.Label[:])
		}
		if len(w.Record) == 0 || len(w.Record) > MaxRecordSize {
			return nil, fmt.Errorf("%w: record of %d bytes for label %x", ErrInvalidCommit, len(w.Record), w.Label[:])
		}
		if len(w.Summary) > MaxSummarySize {
			return nil, fmt.Errorf("%w: summary of %d bytes for label %x", ErrInvalidCommit, len(w.Summary), w.Label[:])
		}
		vs[i] = lv{w.Label, w.Version}
	}
	slices.SortFunc(vs, func(a, b lv) int {
		if c := bytes.Compare(a.label[:], b.label[:]); c != 0 {
			return c
		}
		return cmp.Compare(a.version, b.version)
	})
	var runs []VersionRun
	for i, v := range vs {
		if i > 0 && vs[i-1].label == v.label {
			if v.version != vs[i-1].version+1 {
				return nil, fmt.Errorf("%w: label %x: version %d after %d", ErrInvalidCommit, v.label[:], v.version, vs[i-1].version)
			}
			runs[len(runs)-1].Last = v.version
			continue
		}
		runs = append(runs, VersionRun{Label: v.label, First: v.version, Last: v.version})
	}
	return runs, nil
}

// Check verifies a TenantWrite in itself: one to MaxTenantRecords
// records, each key at most once, each value at most MaxTenantRecordSize.
// A failure is ErrInvalidCommit.
func (w *TenantWrite) Check() error {
	if len(w.Records) == 0 || len(w.Records) > MaxTenantRecords {
		return fmt.Errorf("%w: tenant %x: %d records", ErrInvalidCommit, w.ID, len(w.Records))
	}
	seenKey := make(map[TenantKey]bool, len(w.Records))
	for _, r := range w.Records {
		if seenKey[r.Key] {
			return fmt.Errorf("%w: tenant %x record %x written twice", ErrInvalidCommit, w.ID, r.Key[:])
		}
		seenKey[r.Key] = true
		if len(r.Value) > MaxTenantRecordSize {
			return fmt.Errorf("%w: tenant %x record %x of %d bytes", ErrInvalidCommit, w.ID, r.Key[:], len(r.Value))
		}
	}
	return nil
}

// CheckPending checks a WritePending call against the head it must follow
// (nil for an empty store), then the write itself, as every backend does
// first.
func CheckPending(h *Head, after uint64, w *TenantWrite) error {
	switch {
	case h == nil:
		return ErrEmpty
	case h.Epoch != after:
		return fmt.Errorf("%w: pending records after epoch %d, head is epoch %d", ErrConflict, after, h.Epoch)
	}
	return w.Check()
}

// newLogNodes returns how many perfect-subtree nodes a log gains growing
// from oldSize to newSize leaves.
func newLogNodes(oldSize, newSize uint64) uint64 {
	n := uint64(0)
	for l := 0; l < 64; l++ {
		n += newSize>>l - oldSize>>l
	}
	return n
}

// LogNodeInside reports whether the log node id lies inside a tree of size
// leaves: whether every leaf it covers, [Index·2^Level, (Index+1)·2^Level),
// is below size.
func LogNodeInside(id tlog.NodeID, size uint64) bool {
	return id.Level < 64 && id.Index < size>>id.Level
}
