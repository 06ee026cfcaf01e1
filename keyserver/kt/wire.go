package kt

// Wire formats of docs/spec/directory.md §Proof bundles, parsed strictly
// (STYLE 3): every length is checked against its bound before anything is
// allocated, trailing bytes are rejected, and an accepted encoding
// re-encodes to itself.

import (
	"bytes"
	"fmt"
	"time"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/crypto/vrf"
	"github.com/moat-im/moat/keyserver/vmap"
	"golang.org/x/crypto/cryptobyte"
)

// Bounds of the encodings.
const (
	// MaxProofHashes bounds inclusion and consistency proofs: an
	// inclusion proof in a tree of at most 2^63-1 leaves has at most 63
	// hashes, and C2SP tlog-witness applies the same bound to consistency
	// proofs.
	MaxProofHashes = 63
	// MaxNoteSize bounds a checkpoint note with its signatures.
	MaxNoteSize = tlog.MaxNoteSize
)

// CheckpointUpdate carries the checkpoint a response is proven against,
// relative to the tree size the client said it trusts
// (docs/spec/directory.md §Proof bundles).
type CheckpointUpdate struct {
	// BaseSize is the tree size the client trusts, from its request (0
	// before it trusts any checkpoint).
	BaseSize uint64
	// Note is the signed checkpoint note with its cosignatures. Empty
	// means the client's trusted checkpoint, which must be of size
	// BaseSize: the directory has nothing newer.
	Note []byte
	// Consistency is the RFC 6962 consistency proof from BaseSize to the
	// note's size; empty from size 0, for an unchanged size, and with an
	// empty note.
	Consistency []tlog.Hash
}

//	struct {
//	    uint64 base_size;                 /* ≤ 2^63-1 */
//	    opaque note<0..2^24-1>;           /* ≤ 256 KiB */
//	    opaque consistency<0..2^16-1>;    /* Hash[n], n ≤ 63; empty if note is */
//	} CheckpointUpdate;

func (c *CheckpointUpdate) add(b *cryptobyte.Builder) {
	if c.BaseSize > tlog.MaxTreeSize || len(c.Note) > MaxNoteSize || len(c.Consistency) > MaxProofHashes ||
		(len(c.Note) == 0 && len(c.Consistency) != 0) {
		b.SetError(ErrMalformed)
		return
	}
	b.AddUint64(c.BaseSize)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(c.Note) })
	addHashes(b, c.Consistency)
}

func (c *CheckpointUpdate) read(s *cryptobyte.String) bool {
	var note cryptobyte.String
	if !s.ReadUint64(&c.BaseSize) || c.BaseSize > tlog.MaxTreeSize ||
		!s.ReadUint24LengthPrefixed(&note) || len(note) > MaxNoteSize || !readHashes(s, &c.Consistency) ||
		(len(note) == 0 && len(c.Consistency) != 0) {
		return false
	}
	c.Note = nil
	if len(note) > 0 {
		c.Note = bytes.Clone(note)
	}
	return true
}

// LabelProof is the proof of one label at one epoch
// (docs/spec/directory.md §Proof bundles): the epoch's log entry and its
// inclusion in the checkpoint's tree, the VRF proof of the label, and the
// map proof of the label at the entry's map root.
type LabelProof struct {
	Entry     EpochEntry
	Inclusion []tlog.Hash // leaf Entry.Epoch in the checkpoint's tree
	VRFProof  []byte      // vrf.ProofSize bytes
	MapProof  *vmap.Proof
}

//	struct {
//	    EpochEntry entry;
//	    opaque inclusion<0..2^16-1>;      /* Hash[n], n ≤ 63 */
//	    opaque vrf_proof[80];
//	    opaque map_proof<1..2^16-1>;      /* vmap.md §Proof encoding */
//	} LabelProof;

func (p *LabelProof) add(b *cryptobyte.Builder) {
	entry, err := p.Entry.Marshal()
	if err != nil || len(p.Inclusion) > MaxProofHashes || len(p.VRFProof) != vrf.ProofSize || p.MapProof == nil {
		b.SetError(ErrMalformed)
		return
	}
	mp, err := p.MapProof.Marshal()
	if err != nil {
		b.SetError(ErrMalformed)
		return
	}
	b.AddBytes(entry)
	addHashes(b, p.Inclusion)
	b.AddBytes(p.VRFProof)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(mp) })
}

func (p *LabelProof) read(s *cryptobyte.String) bool {
	e, err := readEpochEntry(s)
	if err != nil {
		return false
	}
	var pi []byte
	var mp cryptobyte.String
	if !readHashes(s, &p.Inclusion) || !s.ReadBytes(&pi, vrf.ProofSize) || !s.ReadUint16LengthPrefixed(&mp) || len(mp) == 0 {
		return false
	}
	if p.MapProof, err = vmap.ParseProof(mp); err != nil {
		return false
	}
	p.Entry, p.VRFProof = *e, bytes.Clone(pi)
	return true
}

// Anchor turns p's inclusion proof, the whole RFC 6962 inclusion proof of
// its entry as the last leaf of the checkpoint's tree, into the one the
// response must carry against cu (docs/spec/directory.md §Anchored
// inclusion): when cu proves consistency from a tree the client trusts
// to the larger tree of p's entry, the proof's prefix that leads to the
// consistency proof's node covering the last leaf; otherwise p is left
// as it is. A directory calls it on the label proof of a lookup or a
// history before sending it.
func (p *LabelProof) Anchor(cu *CheckpointUpdate) error {
	return anchor(cu, p.Entry.Epoch, &p.Inclusion)
}

// anchor trims incl, the whole inclusion proof of the last leaf (epoch)
// of its tree, to its anchored prefix against cu, if cu proves
// consistency from a smaller, non-empty tree.
func anchor(cu *CheckpointUpdate, epoch uint64, incl *[]tlog.Hash) error {
	size := epoch + 1
	if cu.BaseSize == 0 || cu.BaseSize >= size {
		return nil
	}
	n := tlog.AnchoredInclusionLen(cu.BaseSize, size)
	if len(*incl) < n {
		return fmt.Errorf("%w: inclusion proof of %d hashes to anchor, want at least %d", ErrMalformed, len(*incl), n)
	}
	*incl = (*incl)[:n:n]
	return nil
}

// EpochProof is the proof of a label at an earlier epoch of a response's
// checkpoint (docs/spec/directory.md §Proof bundles): that epoch's log
// entry, its inclusion in the checkpoint's tree, and the label's map
// proof at the entry's map root. A response carries one as the record
// proof: the label at its record's epoch.
type EpochProof struct {
	Entry     EpochEntry
	Inclusion []tlog.Hash // leaf Entry.Epoch in the checkpoint's tree
	MapProof  *vmap.Proof
}

//	struct {
//	    EpochEntry entry;
//	    opaque inclusion<0..2^16-1>;      /* Hash[n], n ≤ 63 */
//	    opaque map_proof<1..2^16-1>;      /* vmap.md §Proof encoding */
//	} EpochProof;
//
//	struct {
//	    uint8 has_record_proof;           /* 0 or 1 */
//	    select (has_record_proof) {
//	        case 0: struct {};
//	        case 1: EpochProof record_proof;
//	    };
//	} OptionalRecordProof;

func addRecordProof(b *cryptobyte.Builder, p *EpochProof) {
	if p == nil {
		b.AddUint8(0)
		return
	}
	entry, err := p.Entry.Marshal()
	if err != nil || len(p.Inclusion) > MaxProofHashes || p.MapProof == nil {
		b.SetError(ErrMalformed)
		return
	}
	mp, err := p.MapProof.Marshal()
	if err != nil {
		b.SetError(ErrMalformed)
		return
	}
	b.AddUint8(1)
	b.AddBytes(entry)
	addHashes(b, p.Inclusion)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(mp) })
}

func readRecordProof(s *cryptobyte.String, out **EpochProof) bool {
	var has uint8
	if !s.ReadUint8(&has) || has > 1 {
		return false
	}
	*out = nil
	if has == 0 {
		return true
	}
	e, err := readEpochEntry(s)
	if err != nil {
		return false
	}
	p := &EpochProof{Entry: *e}
	var mp cryptobyte.String
	if !readHashes(s, &p.Inclusion) || !s.ReadUint16LengthPrefixed(&mp) || len(mp) == 0 {
		return false
	}
	if p.MapProof, err = vmap.ParseProof(mp); err != nil {
		return false
	}
	*out = p
	return true
}

// LookupResponse is the directory's answer to a lookup of one label
// (docs/spec/directory.md §Proof bundles).
type LookupResponse struct {
	Checkpoint CheckpointUpdate
	Proof      LabelProof
	// Record is the label's latest value record, present exactly when
	// Proof.MapProof is an inclusion proof.
	Record *ValueRecord
	// RecordProof is the label's proof at Record.Epoch, or nil: the
	// directory sends it when the record is older than the tenant's
	// latest CA rotation. Only with a Record.
	RecordProof *EpochProof
}

//	struct {
//	    uint8 type = 0x52;
//	    uint8 format = 3;
//	    CheckpointUpdate checkpoint;
//	    LabelProof proof;
//	    select (proof.map_proof.kind) {
//	        case inclusion: ValueRecord record; OptionalRecordProof record_proof;
//	        default:        struct {};
//	    };
//	} LookupResponse;

// Marshal returns the LookupResponse encoding.
func (r *LookupResponse) Marshal() ([]byte, error) {
	return build(func(b *cryptobyte.Builder) {
		b.AddUint8(typeLookupResponse)
		b.AddUint8(format3)
		r.Checkpoint.add(b)
		r.Proof.add(b)
		if r.Proof.MapProof != nil && (r.Proof.MapProof.Kind == vmap.ProofInclusion) != (r.Record != nil) ||
			(r.Record == nil && r.RecordProof != nil) {
			b.SetError(ErrMalformed)
			return
		}
		if r.Record != nil {
			addRecord(b, r.Record)
			addRecordProof(b, r.RecordProof)
		}
	})
}

// ParseLookupResponse parses a LookupResponse encoding strictly. It
// verifies nothing: Client.VerifyLookup does.
func ParseLookupResponse(data []byte) (*LookupResponse, error) {
	s := newReader(data)
	r := &LookupResponse{}
	if !readHeaderFormat(s, typeLookupResponse, format3) || !r.Checkpoint.read(s) || !r.Proof.read(s) {
		return nil, fmt.Errorf("%w: lookup response", ErrMalformed)
	}
	if r.Proof.MapProof.Kind == vmap.ProofInclusion {
		rec, err := readRecord(s)
		if err != nil {
			return nil, fmt.Errorf("%w: lookup response record", ErrMalformed)
		}
		r.Record = rec
		if !readRecordProof(s, &r.RecordProof) {
			return nil, fmt.Errorf("%w: lookup response record proof", ErrMalformed)
		}
	}
	if !s.Empty() {
		return nil, fmt.Errorf("%w: lookup response: trailing bytes", ErrMalformed)
	}
	return r, nil
}

// HistoryResponse is the directory's answer to a history request: every
// version of one label after Since, and the proof of the label at the
// latest epoch (docs/spec/directory.md §Proof bundles).
type HistoryResponse struct {
	Checkpoint CheckpointUpdate
	Proof      LabelProof
	// Since is the version the client asked to start after: the version
	// it already knows, 0 for the whole history.
	Since uint32
	// Records are versions Since+1 to the latest, in order; empty if the
	// label has not changed since version Since.
	Records []*ValueRecord
	// RecordProof is the label's proof at the last record's epoch, or nil
	// (as LookupResponse.RecordProof). Only with records.
	RecordProof *EpochProof
}

//	struct {
//	    uint8 type = 0x53;
//	    uint8 format = 3;
//	    CheckpointUpdate checkpoint;
//	    LabelProof proof;
//	    uint32 since;
//	    opaque records<0..2^32-1>;        /* ValueRecord, consecutive versions */
//	    OptionalRecordProof record_proof; /* none without records */
//	} HistoryResponse;

// Marshal returns the HistoryResponse encoding.
func (r *HistoryResponse) Marshal() ([]byte, error) {
	return build(func(b *cryptobyte.Builder) {
		b.AddUint8(typeHistoryResponse)
		b.AddUint8(format3)
		r.Checkpoint.add(b)
		r.Proof.add(b)
		b.AddUint32(r.Since)
		b.AddUint32LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, rec := range r.Records {
				if rec == nil {
					b.SetError(ErrMalformed)
					return
				}
				addRecord(b, rec)
			}
		})
		if len(r.Records) == 0 && r.RecordProof != nil {
			b.SetError(ErrMalformed)
			return
		}
		addRecordProof(b, r.RecordProof)
	})
}

// ParseHistoryResponse parses a HistoryResponse encoding strictly. It
// verifies nothing, not even that the records are consecutive:
// Client.VerifyHistory does.
func ParseHistoryResponse(data []byte) (*HistoryResponse, error) {
	s := newReader(data)
	r := &HistoryResponse{}
	var recs cryptobyte.String
	if !readHeaderFormat(s, typeHistoryResponse, format3) || !r.Checkpoint.read(s) || !r.Proof.read(s) ||
		!s.ReadUint32(&r.Since) || !readUint32Prefixed(s, &recs) || !readRecordProof(s, &r.RecordProof) || !s.Empty() {
		return nil, fmt.Errorf("%w: history response", ErrMalformed)
	}
	for !recs.Empty() {
		rec, err := readRecord(&recs)
		if err != nil {
			return nil, fmt.Errorf("%w: history response record %d", ErrMalformed, len(r.Records))
		}
		r.Records = append(r.Records, rec)
	}
	if len(r.Records) == 0 && r.RecordProof != nil {
		return nil, fmt.Errorf("%w: history response: record proof without records", ErrMalformed)
	}
	return r, nil
}

// ConsistencyResponse carries a newer checkpoint and its consistency with
// the client's (docs/spec/directory.md §Proof bundles), for a client that
// wants the latest checkpoint without a lookup, and with it the
// checkpoint's last entry, which the client then holds (§Held entry).
type ConsistencyResponse struct {
	Checkpoint CheckpointUpdate
	// Last is the note's last entry and its inclusion proof (anchored
	// against Checkpoint as a label proof's is), or nil. Only with a
	// note.
	Last *LastEntry
}

// LastEntry is the last entry of a checkpoint's tree and its inclusion
// proof.
type LastEntry struct {
	Entry     EpochEntry
	Inclusion []tlog.Hash
}

// Anchor is LabelProof.Anchor for the last entry.
func (l *LastEntry) Anchor(cu *CheckpointUpdate) error {
	return anchor(cu, l.Entry.Epoch, &l.Inclusion)
}

//	struct {
//	    uint8 type = 0x54;
//	    uint8 format = 2;
//	    CheckpointUpdate checkpoint;
//	    uint8 has_last;                   /* 0 or 1; 0 if checkpoint.note is empty */
//	    select (has_last) {
//	        case 0: struct {};
//	        case 1: EpochEntry entry; opaque inclusion<0..2^16-1>;
//	    };
//	} ConsistencyResponse;

// Marshal returns the ConsistencyResponse encoding.
func (r *ConsistencyResponse) Marshal() ([]byte, error) {
	return build(func(b *cryptobyte.Builder) {
		b.AddUint8(typeConsistencyResponse)
		b.AddUint8(format2)
		r.Checkpoint.add(b)
		if r.Last == nil {
			b.AddUint8(0)
			return
		}
		entry, err := r.Last.Entry.Marshal()
		if err != nil || len(r.Checkpoint.Note) == 0 || len(r.Last.Inclusion) > MaxProofHashes {
			b.SetError(ErrMalformed)
			return
		}
		b.AddUint8(1)
		b.AddBytes(entry)
		addHashes(b, r.Last.Inclusion)
	})
}

// ParseConsistencyResponse parses a ConsistencyResponse encoding strictly.
func ParseConsistencyResponse(data []byte) (*ConsistencyResponse, error) {
	s := newReader(data)
	r := &ConsistencyResponse{}
	var has uint8
	if !readHeaderFormat(s, typeConsistencyResponse, format2) || !r.Checkpoint.read(s) || !s.ReadUint8(&has) || has > 1 ||
		(has == 1 && len(r.Checkpoint.Note) == 0) {
		return nil, fmt.Errorf("%w: consistency response", ErrMalformed)
	}
	if has == 1 {
		e, err := readEpochEntry(s)
		if err != nil {
			return nil, fmt.Errorf("%w: consistency response entry", ErrMalformed)
		}
		r.Last = &LastEntry{Entry: *e}
		if !readHashes(s, &r.Last.Inclusion) {
			return nil, fmt.Errorf("%w: consistency response inclusion", ErrMalformed)
		}
	}
	if !s.Empty() {
		return nil, fmt.Errorf("%w: consistency response: trailing bytes", ErrMalformed)
	}
	return r, nil
}

// --- helpers ---

func newReader(data []byte) *cryptobyte.String {
	s := cryptobyte.String(data)
	return &s
}

func readHeader(s *cryptobyte.String, typ uint8) bool { return readHeaderFormat(s, typ, format1) }

func readHeaderFormat(s *cryptobyte.String, typ, format uint8) bool {
	var t, f uint8
	return s.ReadUint8(&t) && t == typ && s.ReadUint8(&f) && f == format
}

func build(f func(b *cryptobyte.Builder)) ([]byte, error) {
	var b cryptobyte.Builder
	f(&b)
	out, err := b.Bytes()
	if err != nil {
		return nil, ErrMalformed
	}
	return out, nil
}

// readUint32Prefixed reads opaque<0..2^32-1>, checking the length against
// what is left before taking it.
func readUint32Prefixed(s *cryptobyte.String, out *cryptobyte.String) bool {
	var n uint32
	if !s.ReadUint32(&n) || uint64(n) > uint64(len(*s)) {
		return false
	}
	var v []byte
	if !s.ReadBytes(&v, int(n)) {
		return false
	}
	*out = v
	return true
}

func addHashes(b *cryptobyte.Builder, hs []tlog.Hash) {
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, h := range hs {
			b.AddBytes(h[:])
		}
	})
}

func readHashes(s *cryptobyte.String, out *[]tlog.Hash) bool {
	var v cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&v) || len(v)%tlog.HashSize != 0 || len(v)/tlog.HashSize > MaxProofHashes {
		return false
	}
	*out = nil
	if len(v) > 0 {
		hs := make([]tlog.Hash, len(v)/tlog.HashSize)
		for i := range hs {
			copy(hs[i][:], v[i*tlog.HashSize:])
		}
		*out = hs
	}
	return true
}

func addRecord(b *cryptobyte.Builder, r *ValueRecord) {
	enc, err := r.Marshal()
	if err != nil {
		b.SetError(err)
		return
	}
	b.AddBytes(enc)
}

func readRecord(s *cryptobyte.String) (*ValueRecord, error) {
	r := &ValueRecord{}
	var prev, nonce []byte
	var value cryptobyte.String
	if !readHeader(s, typeValueRecord) || !s.ReadUint64(&r.Epoch) || !s.ReadUint32(&r.Version) ||
		!s.ReadBytes(&prev, vmap.CommitmentSize) || !s.ReadBytes(&nonce, NonceSize) || !s.ReadUint24LengthPrefixed(&value) {
		return nil, ErrMalformed
	}
	r.Prev, r.Nonce = vmap.Commitment(prev), [NonceSize]byte(nonce)
	r.Value = bytes.Clone([]byte(value))
	if r.Value == nil {
		r.Value = []byte{}
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	return r, nil
}

func readEpochEntry(s *cryptobyte.String) (*EpochEntry, error) {
	e := &EpochEntry{}
	var t uint64
	var root []byte
	if !readHeader(s, typeEpochEntry) || !s.ReadUint64(&e.Epoch) || e.Epoch > MaxEpoch ||
		!s.ReadUint64(&t) || t > MaxEpoch || !s.ReadBytes(&root, vmap.HashSize) {
		return nil, ErrMalformed
	}
	e.Time, e.MapRoot = time.Unix(int64(t), 0).UTC(), vmap.Hash(root)
	return e, nil
}
