package badgerstore

// Key schema (STYLE 14: one key-schema file per backend). Every key starts
// with one prefix byte; integers are big-endian, so byte order is numeric
// order.
//
//	key                                       value
//	"m"                                       schemaVersion (ASCII)
//	"h"                                       uint64 epoch of the latest head
//	"H" || uint64 epoch                       head of that epoch
//	"M" || vmap NodeKey encoding of a tile    map tile (tiles.go)
//	"L" || uint8 level || uint64 index        32-byte log node hash
//	"R" || label[32]                          uint32 version || uint64 epoch
//	                                          || summary (latest-version hint)
//	"V" || label[32] || uint32 version
//	    || uint32 fragment                    blob fragment
//	"U" || tenant[16] || record key[33]
//	    || uint64 epoch || uint32 fragment    blob fragment (tenant record)
//	"P" || tenant[16] || record key[33]
//	    || uint64 epoch || uint32 fragment    blob fragment (pending tenant
//	                                          record, after that epoch)
//	"J" || uint64 epoch                       empty (staging marker)
//	"J" || uint64 epoch || base key           empty (staging journal)
//	"C" || uint64 epoch || uint64 seq
//	    || uint32 fragment                    blob fragment (head checkpoint update)
//	"X" || uint64 epoch                       empty (the epoch is a transition)
//	"A" || tenant[16] || lodged key[33]       lodged record (side.go)
//	"B" || VRF key id[32] || input[32]        VRF output (side.go)
//
// Map nodes: stored by tile (tiles.go), the nodes of one version in a band
// of tileHeight levels under one path prefix, under the NodeKey of the
// band's top position: depth a multiple of tileHeight. The vmap NodeKey
// encoding starts with the version (the epoch that wrote the nodes), so
// one epoch's tiles are contiguous and ordered as vmap.CompareNodeKeys
// orders their keys. A node is visible while its version is at most the
// head's epoch.
//
// Log nodes: the perfect-subtree node (level, index) of the RFC 6962 tree.
// A node is visible while it lies inside the head's tree
// (store.LogNodeInside).
//
// Blobs (value records and tenant records) start with a header, uint64
// epoch || uint32 length: the epoch that wrote the blob and its total
// length. A value record is one badger value (fragment 0), which goes to
// the value log when it is 256 bytes or more (valueThreshold; 1 KiB up to
// schema 3's first releases, which changes no key). A tenant record is
// split into fragments below that threshold, so that it stays in the LSM
// tree: tenant
// records are superseded and deleted, and deleted values in the value log
// would be garbage that only value-log GC reclaims. The fragments'
// payloads concatenate to the blob; fragment 0 holds the header. The base
// key of a blob is its key without the fragment number.
//
// Value records are visible while their epoch is at most the head's epoch.
// Versions of a label are 1, 2, … without gaps once visible.
//
// Latest-version hints: "R" || label holds the highest version a commit
// wrote of the label, the commit's epoch and the version's
// ValueWrite.Summary, overwritten after every
// commit that writes the label, so that LatestSummary costs one lookup
// instead of a search over the label's version keys and a record read.
// The hints are not in the commit's transaction: the cleanup after the
// commit (gc.go) writes them, unsynced, and the store answers from memory
// until it has; a crash can lose them, which leaves the hint stale.
// It is only a hint: a reader uses it only if version v is stored and
// visible and version v+1 is not (visible), and otherwise searches the
// version keys. A hint names only a committed version (the cleanup
// writes it after the head moved), and committed versions are never
// rewritten; it can be older than the label's latest (a cleanup that
// failed or was lost in a crash) or hidden by a skipped table block. It
// is never journaled nor rolled back. (Schema 3 wrote hints inside the
// commit, so a rolled-back commit could leave one naming a version that
// is later written again with another summary: schema 3 is refused.)
//
// Tenant records (store.TenantRecord, one per user, code, department, …
// of a tenant's admin state; docs/spec/org.md §Tenant state) are versioned
// by the epoch that wrote them, which is also in the key; a reader takes,
// for each record key, the latest version at most the head's epoch. A
// version of length 0 is a deletion. An epoch writes only the records it
// changed. Once a commit is visible, every older version of each record
// key it wrote is deleted (gc.go: after CommitEpoch returns, by key where
// the store knows the superseded version); a deletion's own version
// stays, 74 bytes per deleted record. Readers open their badger transaction
// between two loads of the same head (TenantRecords), so that its
// snapshot holds every version that head shows.
//
// Pending tenant records (store.DirectoryStore.WritePending): the same
// layout as "U", under "P", versioned by the epoch they follow (the head's
// when written); a version of length 0 is a pending deletion. A reader
// takes, for each record key, the version of the head's epoch only: older
// versions were published by a later epoch and are garbage, which the
// cleanup after each commit (gc.go) deletes. One WritePending is one badger
// transaction (never staged) and one sync; it first deletes the fragments
// of the versions it replaces, so that a record's fragments never mix.
//
// Staging journal: a commit too large for one badger transaction is
// written in several, then made visible by the head write. Its first
// transaction writes the staging marker "J" || epoch and the base key of
// every value record and tenant state the epoch stages, so that a failed
// or interrupted commit can be rolled back (recover): staged map nodes and
// log nodes are found by range instead, as those past the head. The
// journal of a visible epoch is garbage and deleted.
//
// Head: "H" || epoch holds uint8 headVersion || uint64 epoch || uint64
// log size || checkpoint (the rest); "h" holds the latest epoch. Both are
// written in the same transaction, the last of the commit. "H" keeps every
// epoch's head (the checkpoint history) and lets Open check that "h" is
// not stale: no "H" may be newer.
//
// Head checkpoint updates: "C" || epoch || seq holds version seq of a
// later checkpoint of the head of that epoch (UpdateHeadCheckpoint), a blob
// in fragments below the value threshold; the latest version of the
// head's epoch is the head's checkpoint. See headnote.go.
//
// Transitions (store.EpochCommit.Transition): "X" || epoch marks a
// transition epoch, written in the transaction of its head. Its checkpoint
// is that of the epoch's latest "C" version, if there is one, else the
// one "H" || epoch holds. The "C" versions of a transition epoch other
// than its latest are deleted like any other; its latest is kept for
// good.
//
// Every key but "h", the "R" hints and the "P" pending records (a
// pending record written again after the same epoch reuses its keys) is
// written once and never changed (some are deleted):
// a badger table block that fails its checksum can make a key look absent
// (see Store.Verify), but cannot make an old value reappear for it.
//
// "m" holds schemaVersion from the first Open on; Open refuses a directory
// with other contents.

import (
	"encoding/binary"
	"fmt"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/store"
	"github.com/moat-im/moat/keyserver/vmap"
)

// Schema 4 writes latest-version hints only after the commit; schema 3
// wrote them inside it. Schema 3 stores tenant admin state per record
// ("U"); schema 2 stored it as one blob per epoch ("T"). Schema 2 stores
// map nodes by tile; schema 1 stored one key per node.
const schemaVersion = "moat keyserver directory store, badger schema 4"

// oldSchemas are the schemas Open recognises and refuses with advice.
var oldSchemas = map[string]string{
	"moat keyserver directory store, badger schema 3": "latest-version hints written inside the epoch's commit (a rolled-back commit could leave a hint that is later trusted)",
	"moat keyserver directory store, badger schema 2": "tenant admin state stored whole every epoch",
	"moat keyserver directory store, badger schema 1": "map nodes stored one key per node",
}

// Key prefixes.
const (
	prefixMeta    = 'm'
	prefixHead    = 'h'
	prefixHeadAt  = 'H'
	prefixMap     = 'M'
	prefixLog     = 'L'
	prefixValue   = 'V'
	prefixHint    = 'R'
	prefixTenant  = 'U' // 'T' held schema 2's tenant state blobs
	prefixJournal = 'J'
	prefixPending = 'P'

	prefixCheckpoint = 'C'
	prefixTransition = 'X'
)

var (
	keyMeta = []byte{prefixMeta}
	keyHead = []byte{prefixHead}
)

const (
	headVersion    = 1
	headHeaderSize = 1 + 8 + 8

	blobHeaderSize = 8 + 4
	hintHeaderSize = 4 + 8
	fragNumSize    = 4

	valueBaseSize    = 1 + vmap.LabelSize + 4
	tenantPrefixSize = 1 + 16
	tenantRecordSize = tenantPrefixSize + store.TenantKeySize // a record key's versions
	tenantBaseSize   = tenantRecordSize + 8
	logKeySize       = 1 + 1 + 8

	checkpointBaseSize = 1 + 8 + 8
)

func transitionKey(epoch uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixTransition}, epoch)
}

func headAtKey(epoch uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixHeadAt}, epoch)
}

func appendMapKey(b []byte, k vmap.NodeKey) []byte {
	return k.AppendBinary(append(b, prefixMap))
}

// mapEpochStart is the first map key of epoch e.
func mapEpochStart(e uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixMap}, e)
}

func appendLogKey(b []byte, id tlog.NodeID) []byte {
	b = append(b, prefixLog, id.Level)
	return binary.BigEndian.AppendUint64(b, id.Index)
}

func appendValueBase(b []byte, label vmap.Label, version uint32) []byte {
	b = append(b, prefixValue)
	b = append(b, label[:]...)
	return binary.BigEndian.AppendUint32(b, version)
}

func valuePrefix(label vmap.Label) []byte {
	return append([]byte{prefixValue}, label[:]...)
}

func appendHintKey(b []byte, label vmap.Label) []byte {
	return append(append(b, prefixHint), label[:]...)
}

func appendTenantRecord(b []byte, id [16]byte, key store.TenantKey) []byte {
	b = append(b, prefixTenant)
	b = append(b, id[:]...)
	return append(b, key[:]...)
}

func appendTenantBase(b []byte, id [16]byte, key store.TenantKey, epoch uint64) []byte {
	return binary.BigEndian.AppendUint64(appendTenantRecord(b, id, key), epoch)
}

// tenantKeyEpoch returns the epoch of a tenant record key (base or
// fragment).
func tenantKeyEpoch(k []byte) uint64 { return binary.BigEndian.Uint64(k[tenantRecordSize:]) }

func tenantPrefix(id [16]byte) []byte {
	return append([]byte{prefixTenant}, id[:]...)
}

func pendingPrefix(id [16]byte) []byte {
	return append([]byte{prefixPending}, id[:]...)
}

// appendPendingBase is appendTenantBase under "P".
func appendPendingBase(b []byte, id [16]byte, key store.TenantKey, epoch uint64) []byte {
	b = append(b, prefixPending)
	b = append(b, id[:]...)
	b = append(b, key[:]...)
	return binary.BigEndian.AppendUint64(b, epoch)
}

func appendFragKey(b, base []byte, frag uint32) []byte {
	b = append(b, base...)
	return binary.BigEndian.AppendUint32(b, frag)
}

func journalPrefix(epoch uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixJournal}, epoch)
}

func appendJournalKey(b []byte, epoch uint64, base []byte) []byte {
	b = append(b, prefixJournal)
	b = binary.BigEndian.AppendUint64(b, epoch)
	return append(b, base...)
}

// parseJournalKey returns the epoch and base key of a journal key; the
// base key is empty for a staging marker.
func parseJournalKey(k []byte) (uint64, []byte, error) {
	if len(k) < 9 || k[0] != prefixJournal {
		return 0, nil, fmt.Errorf("%w: journal key %x", store.ErrCorrupt, k)
	}
	base := k[9:]
	switch {
	case len(base) == 0:
	case len(base) == valueBaseSize && base[0] == prefixValue:
	case len(base) == tenantBaseSize && base[0] == prefixTenant:
	default:
		return 0, nil, fmt.Errorf("%w: journal key %x", store.ErrCorrupt, k)
	}
	return binary.BigEndian.Uint64(k[1:]), base, nil
}

func encodeHeadPointer(epoch uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, epoch)
}

func decodeHeadPointer(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: head pointer", store.ErrCorrupt)
	}
	return binary.BigEndian.Uint64(b), nil
}

func encodeHead(h *store.Head) []byte {
	b := make([]byte, 0, headHeaderSize+len(h.Checkpoint))
	b = append(b, headVersion)
	b = binary.BigEndian.AppendUint64(b, h.Epoch)
	b = binary.BigEndian.AppendUint64(b, h.LogSize)
	return append(b, h.Checkpoint...)
}

func decodeHead(b []byte) (store.Head, error) {
	if len(b) < headHeaderSize || b[0] != headVersion || len(b)-headHeaderSize > store.MaxCheckpointSize {
		return store.Head{}, fmt.Errorf("%w: head record", store.ErrCorrupt)
	}
	h := store.Head{
		Epoch:      binary.BigEndian.Uint64(b[1:]),
		LogSize:    binary.BigEndian.Uint64(b[9:]),
		Checkpoint: append([]byte{}, b[headHeaderSize:]...),
	}
	if h.LogSize > tlog.MaxTreeSize {
		return store.Head{}, fmt.Errorf("%w: head record", store.ErrCorrupt)
	}
	return h, nil
}

// Fragment sizes (whole badger values, header included).
const (
	recordFragSize = blobHeaderSize + store.MaxRecordSize // one fragment
	tenantFragSize = valueThreshold - 1                   // below the value threshold
)

// fragments splits a blob written in epoch into fragment values of at most
// fragSize bytes, the first carrying the header. Fragment 0 is a copy; the
// others alias data.
func fragments(epoch uint64, data []byte, fragSize int) [][]byte {
	out := make([][]byte, 0, fragCount(len(data), fragSize))
	first := min(len(data), fragSize-blobHeaderSize)
	f0 := make([]byte, 0, blobHeaderSize+first)
	f0 = binary.BigEndian.AppendUint64(f0, epoch)
	f0 = binary.BigEndian.AppendUint32(f0, uint32(len(data)))
	f0 = append(f0, data[:first]...)
	out = append(out, f0)
	for data = data[first:]; len(data) > 0; {
		k := min(len(data), fragSize)
		out = append(out, data[:k])
		data = data[k:]
	}
	return out
}

// parseBlobHeader splits fragment 0 into the epoch, the total length and
// its payload.
func parseBlobHeader(f0 []byte, maxLen int) (epoch uint64, total int, payload []byte, err error) {
	if len(f0) == 0 {
		// Badger returns an empty value, and logs the cause, when it cannot
		// read a value-log entry (checksum mismatch, truncated file).
		return 0, 0, nil, fmt.Errorf("%w: value unreadable", store.ErrCorrupt)
	}
	if len(f0) < blobHeaderSize {
		return 0, 0, nil, fmt.Errorf("%w: blob header", store.ErrCorrupt)
	}
	epoch = binary.BigEndian.Uint64(f0)
	total = int(binary.BigEndian.Uint32(f0[8:]))
	payload = f0[blobHeaderSize:]
	if total > maxLen || len(payload) > total {
		return 0, 0, nil, fmt.Errorf("%w: blob header", store.ErrCorrupt)
	}
	return epoch, total, payload, nil
}
