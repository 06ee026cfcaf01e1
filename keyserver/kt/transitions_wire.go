package kt

// Wire format of docs/spec/directory.md §Following transitions, parsed
// strictly like the proof bundles of wire.go.

import (
	"fmt"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/vmap"
	"golang.org/x/crypto/cryptobyte"
)

// MaxTransitions bounds the transitions of one TransitionsResponse: every
// trust bundle change a tenant ever made after the client's bundle (each
// needs the roster's threshold of admins).
const MaxTransitions = 256

// Transition is the proof that one epoch published the next trust bundle
// (docs/spec/directory.md §Following transitions): that epoch's
// checkpoint, cosigned under the bundle before, and the proofs of the
// trust-bundle label (and, for a CA rotation, of the ca-rotation label) at
// its last epoch.
type Transition struct {
	// Note is the epoch's checkpoint, signed by the log key of the bundle
	// before and cosigned by that bundle's witnesses.
	Note []byte
	// Consistency is the consistency proof between the tree the client
	// trusts at this point of the walk and Note's: from the smaller size
	// to the larger, empty if they are equal or the smaller is 0.
	Consistency []tlog.Hash
	// Bundle and BundleRecord prove the trust-bundle label's record
	// published at the checkpoint's last epoch: the new bundle.
	Bundle       LabelProof
	BundleRecord *ValueRecord
	// Rotation and RotationRecord prove the ca-rotation label's record
	// published at the same epoch, for a CA rotation; nil otherwise.
	Rotation       *LabelProof
	RotationRecord *ValueRecord
}

// TransitionsResponse is the directory's answer to a request for the
// transitions after the trust bundle of sequence After, by a client that
// trusts a tree of size BaseSize: the transitions in order, then the
// latest checkpoint (docs/spec/directory.md §Following transitions).
type TransitionsResponse struct {
	BaseSize    uint64
	After       uint64
	Transitions []*Transition
	// Latest is the directory's latest checkpoint, relative to the size
	// the client trusts after the last transition: the larger of
	// BaseSize and the sizes of the transitions' checkpoints.
	Latest CheckpointUpdate
	// Bundle and BundleRecord prove the trust-bundle label's latest
	// record at Latest's last epoch: the bundle the transitions end with.
	Bundle       LabelProof
	BundleRecord *ValueRecord
}

//	struct {
//	    opaque note<1..2^24-1>;             /* ≤ 256 KiB */
//	    opaque consistency<0..2^16-1>;      /* Hash[n], n ≤ 63 */
//	    LabelProof bundle_proof;            /* an inclusion proof */
//	    ValueRecord bundle;
//	    uint8 has_rotation;                 /* 0 or 1 */
//	    select (has_rotation) {
//	        case 0: struct {};
//	        case 1: LabelProof rotation_proof; ValueRecord rotation;
//	    };
//	} Transition;
//
//	struct {
//	    uint8 type = 0x56;
//	    uint8 format = 1;
//	    uint64 base_size;                   /* ≤ 2^63-1 */
//	    uint64 after;
//	    Transition transitions<0..2^32-1>;  /* at most 256 */
//	    CheckpointUpdate latest;
//	    LabelProof bundle_proof;            /* an inclusion proof */
//	    ValueRecord bundle;
//	} TransitionsResponse;

// Marshal returns the TransitionsResponse encoding.
func (r *TransitionsResponse) Marshal() ([]byte, error) {
	return build(func(b *cryptobyte.Builder) {
		if r.BaseSize > tlog.MaxTreeSize || len(r.Transitions) > MaxTransitions {
			b.SetError(ErrMalformed)
			return
		}
		b.AddUint8(typeTransitionsResponse)
		b.AddUint8(format1)
		b.AddUint64(r.BaseSize)
		b.AddUint64(r.After)
		b.AddUint32LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, t := range r.Transitions {
				if t == nil {
					b.SetError(ErrMalformed)
					return
				}
				t.add(b)
			}
		})
		r.Latest.add(b)
		if !provesRecord(&r.Bundle, r.BundleRecord) {
			b.SetError(ErrMalformed)
			return
		}
		r.Bundle.add(b)
		addRecord(b, r.BundleRecord)
	})
}

func (t *Transition) add(b *cryptobyte.Builder) {
	if len(t.Note) == 0 || len(t.Note) > MaxNoteSize || len(t.Consistency) > MaxProofHashes ||
		!provesRecord(&t.Bundle, t.BundleRecord) || (t.Rotation == nil) != (t.RotationRecord == nil) ||
		(t.Rotation != nil && !provesRecord(t.Rotation, t.RotationRecord)) {
		b.SetError(ErrMalformed)
		return
	}
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(t.Note) })
	addHashes(b, t.Consistency)
	t.Bundle.add(b)
	addRecord(b, t.BundleRecord)
	if t.Rotation == nil {
		b.AddUint8(0)
		return
	}
	b.AddUint8(1)
	t.Rotation.add(b)
	addRecord(b, t.RotationRecord)
}

// provesRecord reports whether p is an inclusion proof and rec present.
func provesRecord(p *LabelProof, rec *ValueRecord) bool {
	return rec != nil && p.MapProof != nil && p.MapProof.Kind == vmap.ProofInclusion
}

// ParseTransitionsResponse parses a TransitionsResponse encoding strictly.
// It verifies nothing: Client.FollowTransitions does.
func ParseTransitionsResponse(data []byte) (*TransitionsResponse, error) {
	s := newReader(data)
	r := &TransitionsResponse{}
	var ts cryptobyte.String
	if !readHeader(s, typeTransitionsResponse) || !s.ReadUint64(&r.BaseSize) || r.BaseSize > tlog.MaxTreeSize ||
		!s.ReadUint64(&r.After) || !readUint32Prefixed(s, &ts) || !r.Latest.read(s) || !r.Bundle.read(s) {
		return nil, fmt.Errorf("%w: transitions response", ErrMalformed)
	}
	var err error
	if r.BundleRecord, err = readRecord(s); err != nil || !provesRecord(&r.Bundle, r.BundleRecord) || !s.Empty() {
		return nil, fmt.Errorf("%w: transitions response: latest bundle", ErrMalformed)
	}
	for !ts.Empty() {
		if len(r.Transitions) == MaxTransitions {
			return nil, fmt.Errorf("%w: transitions response: more than %d transitions", ErrMalformed, MaxTransitions)
		}
		t, err := readTransition(&ts)
		if err != nil {
			return nil, fmt.Errorf("%w: transitions response: transition %d", ErrMalformed, len(r.Transitions))
		}
		r.Transitions = append(r.Transitions, t)
	}
	return r, nil
}

func readTransition(s *cryptobyte.String) (*Transition, error) {
	t := &Transition{}
	var note cryptobyte.String
	var has uint8
	if !s.ReadUint24LengthPrefixed(&note) || len(note) == 0 || len(note) > MaxNoteSize ||
		!readHashes(s, &t.Consistency) || !t.Bundle.read(s) {
		return nil, ErrMalformed
	}
	t.Note = append([]byte(nil), note...)
	var err error
	if t.BundleRecord, err = readRecord(s); err != nil || !provesRecord(&t.Bundle, t.BundleRecord) {
		return nil, ErrMalformed
	}
	if !s.ReadUint8(&has) || has > 1 {
		return nil, ErrMalformed
	}
	if has == 1 {
		t.Rotation = &LabelProof{}
		if !t.Rotation.read(s) {
			return nil, ErrMalformed
		}
		if t.RotationRecord, err = readRecord(s); err != nil || !provesRecord(t.Rotation, t.RotationRecord) {
			return nil, ErrMalformed
		}
	}
	return t, nil
}
