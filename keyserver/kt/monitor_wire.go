package kt

// Wire format of docs/spec/directory.md §Per-epoch monitoring: the
// MonitorResponse, whose map proofs are delta-encoded against the previous
// epoch's. Parsing is strict (STYLE 3): every count is bounded before
// anything is allocated, each sequence of proofs has exactly one encoding,
// and an accepted encoding re-encodes to itself.

import (
	"bytes"
	"fmt"
	"math/bits"
	"time"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/crypto/vrf"
	"github.com/moat-im/moat/keyserver/vmap"
	"golang.org/x/crypto/cryptobyte"
)

// MaxMonitorEpochs is the number of epochs a MonitorResponse proves when
// the log has that many after its start: a page (docs/spec/directory.md
// §Per-epoch monitoring). A device further behind asks again.
const MaxMonitorEpochs = 4096

// MonitoredEpoch is one epoch of a MonitorResponse: the epoch entry's time
// and the label's map proof at that epoch. The entry's map root is the
// root the proof leads to (vmap.ProofRoot).
type MonitoredEpoch struct {
	Time     time.Time // whole seconds
	MapProof *vmap.Proof
}

// MonitorResponse is the directory's answer to a monitoring step
// (docs/spec/directory.md §Per-epoch monitoring): the label's map proof
// at every epoch Start, Start+1, … of a page, the records those epochs
// show after version Since, and one range proof of the page's epoch
// entries in the checkpoint's tree.
type MonitorResponse struct {
	Checkpoint CheckpointUpdate
	VRFProof   []byte // vrf.ProofSize bytes
	// Since is the version the device knows, 0 at its first step.
	Since uint32
	// Start is the first epoch proven: the epoch after the last one the
	// device verified, or at its first step the epoch the directory
	// chose (the first record that adds the device).
	Start uint64
	// Records are the versions after Since up to the one the map holds
	// at the page's last epoch, in order.
	Records []*ValueRecord
	// Epochs are the epochs Start, Start+1, …: min(MaxMonitorEpochs,
	// size-Start) of them for a checkpoint of size size.
	Epochs []MonitoredEpoch
	// RangeProof proves the entries of the epochs in the checkpoint's
	// tree (tlog.VerifyRange).
	RangeProof []tlog.Hash
}

// End returns the epoch after the response's last: Start + len(Epochs).
func (r *MonitorResponse) End() uint64 { return r.Start + uint64(len(r.Epochs)) }

//	struct {
//	    uint64 time;
//	    ProofKind kind;
//	    uint16 depth;                       /* 0..256 */
//	    opaque changed[(depth+7)/8];        /* bit i: sibling[i] is sent */
//	    opaque siblings[32 * popcount(changed)];
//	    select (kind) {
//	        case inclusion:     uint8 same_commitment;
//	                            select (same_commitment) { case 0: opaque commitment[32]; case 1: struct {}; };
//	        case absence_empty: struct {};
//	        case absence_leaf:  opaque other_label[32]; opaque other_commitment[32];
//	    };
//	} EpochMapProof;
//
//	struct {
//	    uint8  type = 0x57;
//	    uint8  format = 1;
//	    CheckpointUpdate checkpoint;
//	    opaque vrf_proof[80];
//	    uint32 since;
//	    uint64 start;                       /* ≤ 2^63-1 */
//	    opaque records<0..2^32-1>;          /* ValueRecord, in order */
//	    EpochMapProof epochs<0..2^32-1>;    /* at most 4,096 */
//	    opaque range_proof<0..2^16-1>;      /* Hash[n], n ≤ 189 */
//	} MonitorResponse;

// Marshal returns the MonitorResponse encoding.
func (r *MonitorResponse) Marshal() ([]byte, error) {
	if len(r.VRFProof) != vrf.ProofSize || r.Start > MaxEpoch || len(r.Epochs) > MaxMonitorEpochs ||
		uint64(len(r.Epochs)) > MaxEpoch+1-r.Start || len(r.RangeProof) > tlog.MaxRangeProofLen ||
		(len(r.Epochs) == 0 && (len(r.Records) != 0 || len(r.RangeProof) != 0)) {
		return nil, ErrMalformed
	}
	return build(func(b *cryptobyte.Builder) {
		b.AddUint8(typeMonitorResponse)
		b.AddUint8(format1)
		r.Checkpoint.add(b)
		b.AddBytes(r.VRFProof)
		b.AddUint32(r.Since)
		b.AddUint64(r.Start)
		b.AddUint32LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, rec := range r.Records {
				if rec == nil {
					b.SetError(ErrMalformed)
					return
				}
				addRecord(b, rec)
			}
		})
		b.AddUint32LengthPrefixed(func(b *cryptobyte.Builder) {
			var prev *vmap.Proof
			for _, e := range r.Epochs {
				addEpochMapProof(b, e, prev)
				prev = e.MapProof
			}
		})
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, h := range r.RangeProof {
				b.AddBytes(h[:])
			}
		})
	})
}

// ParseMonitorResponse parses a MonitorResponse encoding strictly,
// decoding each map proof against the one before it. It verifies nothing:
// Client.Monitor does.
func ParseMonitorResponse(data []byte) (*MonitorResponse, error) {
	s := newReader(data)
	r := &MonitorResponse{}
	var pi []byte
	var recs, epochs, rp cryptobyte.String
	if !readHeader(s, typeMonitorResponse) || !r.Checkpoint.read(s) || !s.ReadBytes(&pi, vrf.ProofSize) ||
		!s.ReadUint32(&r.Since) || !s.ReadUint64(&r.Start) || r.Start > MaxEpoch ||
		!readUint32Prefixed(s, &recs) || !readUint32Prefixed(s, &epochs) || !s.ReadUint16LengthPrefixed(&rp) ||
		len(rp)%tlog.HashSize != 0 || len(rp)/tlog.HashSize > tlog.MaxRangeProofLen || !s.Empty() {
		return nil, fmt.Errorf("%w: monitor response", ErrMalformed)
	}
	r.VRFProof = bytes.Clone(pi)
	for !recs.Empty() {
		rec, err := readRecord(&recs)
		if err != nil {
			return nil, fmt.Errorf("%w: monitor response record %d", ErrMalformed, len(r.Records))
		}
		r.Records = append(r.Records, rec)
	}
	var prev *vmap.Proof
	for !epochs.Empty() {
		if len(r.Epochs) == MaxMonitorEpochs || uint64(len(r.Epochs)) > MaxEpoch-r.Start {
			return nil, fmt.Errorf("%w: monitor response: too many epochs", ErrMalformed)
		}
		e, ok := readEpochMapProof(&epochs, prev)
		if !ok {
			return nil, fmt.Errorf("%w: monitor response epoch %d", ErrMalformed, r.Start+uint64(len(r.Epochs)))
		}
		r.Epochs = append(r.Epochs, e)
		prev = e.MapProof
	}
	if n := len(rp) / tlog.HashSize; n > 0 {
		r.RangeProof = make([]tlog.Hash, n)
		for i := range r.RangeProof {
			copy(r.RangeProof[i][:], rp[i*tlog.HashSize:])
		}
	}
	if len(r.Epochs) == 0 && (len(r.Records) != 0 || len(r.RangeProof) != 0) {
		return nil, fmt.Errorf("%w: monitor response: records or a range proof without epochs", ErrMalformed)
	}
	return r, nil
}

// sentBit reports whether sibling i of p must be sent against prev: prev
// has no sibling i, or another one.
func sentBit(p, prev *vmap.Proof, i int) bool {
	return prev == nil || i >= len(prev.Siblings) || p.Siblings[i] != prev.Siblings[i]
}

func addEpochMapProof(b *cryptobyte.Builder, e MonitoredEpoch, prev *vmap.Proof) {
	p, t := e.MapProof, e.Time.Unix()
	if p == nil || t < 0 || t > MaxEpoch || e.Time.Nanosecond() != 0 || len(p.Siblings) > vmap.MaxDepth {
		b.SetError(ErrMalformed)
		return
	}
	switch p.Kind {
	case vmap.ProofInclusion:
		if p.Label != (vmap.Label{}) {
			b.SetError(ErrMalformed)
			return
		}
	case vmap.ProofAbsenceEmpty:
		if p.Label != (vmap.Label{}) || p.Commitment != (vmap.Commitment{}) {
			b.SetError(ErrMalformed)
			return
		}
	case vmap.ProofAbsenceLeaf:
	default:
		b.SetError(ErrMalformed)
		return
	}
	depth := len(p.Siblings)
	changed := make([]byte, (depth+7)/8)
	for i := range depth {
		if sentBit(p, prev, i) {
			changed[i>>3] |= 0x80 >> uint(i&7)
		}
	}
	b.AddUint64(uint64(t))
	b.AddUint8(uint8(p.Kind))
	b.AddUint16(uint16(depth))
	b.AddBytes(changed)
	for i := range depth {
		if changed[i>>3]&(0x80>>uint(i&7)) != 0 {
			b.AddBytes(p.Siblings[i][:])
		}
	}
	switch p.Kind {
	case vmap.ProofInclusion:
		if prev != nil && prev.Kind == vmap.ProofInclusion && prev.Commitment == p.Commitment {
			b.AddUint8(1)
		} else {
			b.AddUint8(0)
			b.AddBytes(p.Commitment[:])
		}
	case vmap.ProofAbsenceLeaf:
		b.AddBytes(p.Label[:])
		b.AddBytes(p.Commitment[:])
	}
}

func readEpochMapProof(s *cryptobyte.String, prev *vmap.Proof) (MonitoredEpoch, bool) {
	var t uint64
	var kind uint8
	var depth uint16
	var changed []byte
	if !s.ReadUint64(&t) || t > MaxEpoch || !s.ReadUint8(&kind) || !s.ReadUint16(&depth) || depth > vmap.MaxDepth ||
		!s.ReadBytes(&changed, (int(depth)+7)/8) {
		return MonitoredEpoch{}, false
	}
	if r := depth & 7; r != 0 && changed[len(changed)-1]&(0xff>>r) != 0 {
		return MonitoredEpoch{}, false // padding bits set
	}
	p := &vmap.Proof{Kind: vmap.ProofKind(kind)}
	switch p.Kind {
	case vmap.ProofInclusion, vmap.ProofAbsenceEmpty, vmap.ProofAbsenceLeaf:
	default:
		return MonitoredEpoch{}, false
	}
	n := 0
	for _, x := range changed {
		n += bits.OnesCount8(x)
	}
	if len(*s) < n*vmap.HashSize {
		return MonitoredEpoch{}, false
	}
	p.Siblings = make([]vmap.Hash, depth)
	for i := range p.Siblings {
		sent := changed[i>>3]&(0x80>>uint(i&7)) != 0
		known := prev != nil && i < len(prev.Siblings)
		switch {
		case !sent && !known:
			return MonitoredEpoch{}, false // nothing to take it from
		case !sent:
			p.Siblings[i] = prev.Siblings[i]
		case !s.CopyBytes(p.Siblings[i][:]):
			return MonitoredEpoch{}, false
		case known && p.Siblings[i] == prev.Siblings[i]:
			return MonitoredEpoch{}, false // a sibling that could have been omitted
		}
	}
	switch p.Kind {
	case vmap.ProofInclusion:
		var same uint8
		if !s.ReadUint8(&same) {
			return MonitoredEpoch{}, false
		}
		prevIncl := prev != nil && prev.Kind == vmap.ProofInclusion
		switch same {
		case 1:
			if !prevIncl {
				return MonitoredEpoch{}, false
			}
			p.Commitment = prev.Commitment
		case 0:
			if !s.CopyBytes(p.Commitment[:]) || (prevIncl && p.Commitment == prev.Commitment) {
				return MonitoredEpoch{}, false
			}
		default:
			return MonitoredEpoch{}, false
		}
	case vmap.ProofAbsenceLeaf:
		if !s.CopyBytes(p.Label[:]) || !s.CopyBytes(p.Commitment[:]) {
			return MonitoredEpoch{}, false
		}
	}
	return MonitoredEpoch{Time: time.Unix(int64(t), 0).UTC(), MapProof: p}, true
}
