package kt_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/vmap"
)

// epochEnc is a hand-made EpochMapProof encoding (docs/spec/directory.md
// §Per-epoch monitoring), so that the tests can write what the encoder
// never does.
type epochEnc struct {
	time    uint64
	kind    vmap.ProofKind
	depth   int
	changed []byte
	sibs    []vmap.Hash
	tail    []byte // same_commitment and commitment, or the other leaf
}

func (e epochEnc) bytes() []byte {
	b := binary.BigEndian.AppendUint64(nil, e.time)
	b = append(b, byte(e.kind))
	b = binary.BigEndian.AppendUint16(b, uint16(e.depth))
	b = append(b, e.changed...)
	for _, s := range e.sibs {
		b = append(b, s[:]...)
	}
	return append(b, e.tail...)
}

func hashOf(b byte) vmap.Hash { return vmap.Hash(bytes.Repeat([]byte{b}, 32)) }

// monitorEnc returns a MonitorResponse encoding with the given epochs,
// records (encoded) and range proof, around a real response's header.
func monitorEnc(t *testing.T, epochs []epochEnc, records []byte, rangeProof []byte) []byte {
	t.Helper()
	w := newWorld(t, 90)
	base := must(w.d.Monitor(w.alice, w.a1.ID, 1, 1, 1)) // up to date: no epochs
	if len(base.Epochs) != 0 {
		t.Fatal("base response has epochs")
	}
	enc := must(base.Marshal())
	b := bytes.Clone(enc[:len(enc)-4-4-2]) // records, epochs, range proof: all empty
	b = binary.BigEndian.AppendUint32(b, uint32(len(records)))
	b = append(b, records...)
	var eb []byte
	for _, e := range epochs {
		eb = append(eb, e.bytes()...)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(eb)))
	b = append(b, eb...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(rangeProof)))
	return append(b, rangeProof...)
}

// TestMonitorResponseStrict: the delta encoding of map proofs has one
// encoding per sequence of proofs; anything else is ErrMalformed.
func TestMonitorResponseStrict(t *testing.T) {
	cm := hashOf(0xcc)
	incl := func(same bool) []byte {
		if same {
			return []byte{1}
		}
		return append([]byte{0}, cm[:]...)
	}
	e0 := epochEnc{time: 100, kind: vmap.ProofInclusion, depth: 2, changed: []byte{0xc0}, sibs: []vmap.Hash{hashOf(1), hashOf(2)}, tail: incl(false)}
	e1 := epochEnc{time: 130, kind: vmap.ProofInclusion, depth: 2, changed: []byte{0x40}, sibs: []vmap.Hash{hashOf(3)}, tail: incl(true)}
	good := monitorEnc(t, []epochEnc{e0, e1}, nil, nil)
	r, err := kt.ParseMonitorResponse(good)
	if err != nil {
		t.Fatal(err)
	}
	p := r.Epochs[1].MapProof
	if len(r.Epochs) != 2 || p.Siblings[0] != hashOf(1) || p.Siblings[1] != hashOf(3) || p.Commitment != vmap.Commitment(cm) ||
		r.Epochs[1].Time.Unix() != 130 {
		t.Fatalf("decoded %+v", p)
	}
	if !bytes.Equal(must(r.Marshal()), good) {
		t.Fatal("does not re-encode to itself")
	}

	absent := epochEnc{time: 100, kind: vmap.ProofAbsenceEmpty}
	for _, m := range []struct {
		name   string
		epochs []epochEnc
	}{
		{"a sibling sent that equals the previous one", []epochEnc{e0, {time: 130, kind: vmap.ProofInclusion, depth: 2, changed: []byte{0xc0},
			sibs: []vmap.Hash{hashOf(1), hashOf(3)}, tail: incl(true)}}},
		{"a sibling not sent beyond the previous depth", []epochEnc{e0, {time: 130, kind: vmap.ProofInclusion, depth: 3, changed: []byte{0x40},
			sibs: []vmap.Hash{hashOf(3)}, tail: incl(true)}}},
		{"the first epoch not sending every sibling", []epochEnc{{time: 100, kind: vmap.ProofInclusion, depth: 2, changed: []byte{0x80},
			sibs: []vmap.Hash{hashOf(1)}, tail: incl(false)}}},
		{"same commitment after an absence", []epochEnc{absent, {time: 130, kind: vmap.ProofInclusion, tail: incl(true)}}},
		{"same commitment first", []epochEnc{{time: 100, kind: vmap.ProofInclusion, tail: incl(true)}}},
		{"the previous commitment sent again", []epochEnc{e0, {time: 130, kind: vmap.ProofInclusion, depth: 2, changed: []byte{0x40},
			sibs: []vmap.Hash{hashOf(3)}, tail: incl(false)}}},
		{"same_commitment 2", []epochEnc{e0, {time: 130, kind: vmap.ProofInclusion, depth: 2, changed: []byte{0x40},
			sibs: []vmap.Hash{hashOf(3)}, tail: []byte{2}}}},
		{"padding bit", []epochEnc{{time: 100, kind: vmap.ProofInclusion, depth: 2, changed: []byte{0xe0},
			sibs: []vmap.Hash{hashOf(1), hashOf(2), hashOf(4)}, tail: incl(false)}}},
		{"unknown kind", []epochEnc{{time: 100, kind: 0x44}}},
		{"depth 257", []epochEnc{{time: 100, kind: vmap.ProofAbsenceEmpty, depth: 257, changed: bytes.Repeat([]byte{0xff}, 33)}}},
		{"time above 2^63-1", []epochEnc{{time: 1 << 63, kind: vmap.ProofAbsenceEmpty}}},
		{"a sibling short", []epochEnc{{time: 100, kind: vmap.ProofInclusion, depth: 2, changed: []byte{0xc0}, sibs: []vmap.Hash{hashOf(1)}}}},
		{"an other leaf short", []epochEnc{{time: 100, kind: vmap.ProofAbsenceLeaf, tail: make([]byte, 63)}}},
	} {
		if _, err := kt.ParseMonitorResponse(monitorEnc(t, m.epochs, nil, nil)); !errors.Is(err, kt.ErrMalformed) {
			t.Errorf("%s: %v", m.name, err)
		}
	}

	// Counts and vectors.
	many := make([]epochEnc, kt.MaxMonitorEpochs+1)
	for i := range many {
		many[i] = epochEnc{time: 100, kind: vmap.ProofAbsenceEmpty}
	}
	if _, err := kt.ParseMonitorResponse(monitorEnc(t, many[:kt.MaxMonitorEpochs], nil, nil)); err != nil {
		t.Fatalf("a full page: %v", err)
	}
	if _, err := kt.ParseMonitorResponse(monitorEnc(t, many, nil, nil)); !errors.Is(err, kt.ErrMalformed) {
		t.Errorf("more than a page: %v", err)
	}
	w := newWorld(t, 91)
	rec := must(must(w.d.Records(org.Label{User: w.alice}))[0].Marshal())
	if _, err := kt.ParseMonitorResponse(monitorEnc(t, nil, rec, nil)); !errors.Is(err, kt.ErrMalformed) {
		t.Errorf("records without epochs: %v", err)
	}
	if _, err := kt.ParseMonitorResponse(monitorEnc(t, nil, nil, make([]byte, 32))); !errors.Is(err, kt.ErrMalformed) {
		t.Errorf("a range proof without epochs: %v", err)
	}
	if _, err := kt.ParseMonitorResponse(monitorEnc(t, []epochEnc{absent}, nil, make([]byte, 33))); !errors.Is(err, kt.ErrMalformed) {
		t.Errorf("a range proof of 33 bytes: %v", err)
	}
	if _, err := kt.ParseMonitorResponse(monitorEnc(t, []epochEnc{absent}, nil, make([]byte, 32*(tlog.MaxRangeProofLen+1)))); !errors.Is(err, kt.ErrMalformed) {
		t.Errorf("a range proof too long: %v", err)
	}
	if _, err := kt.ParseMonitorResponse(append(good, 0)); !errors.Is(err, kt.ErrMalformed) {
		t.Errorf("trailing byte: %v", err)
	}

	// The encoder refuses what it could not decode.
	bad := []*kt.MonitorResponse{
		{VRFProof: r.VRFProof, Epochs: []kt.MonitoredEpoch{{Time: time.Unix(100, 0)}}},
		{VRFProof: r.VRFProof, Epochs: []kt.MonitoredEpoch{{Time: time.Unix(100, 5), MapProof: r.Epochs[0].MapProof}}},
		{VRFProof: r.VRFProof, Records: []*kt.ValueRecord{must(kt.ParseValueRecord(rec))}},
		{VRFProof: r.VRFProof[1:]},
		{VRFProof: r.VRFProof, Start: kt.MaxEpoch + 1},
		{VRFProof: r.VRFProof, Epochs: []kt.MonitoredEpoch{{Time: time.Unix(100, 0), MapProof: &vmap.Proof{Kind: vmap.ProofAbsenceEmpty, Commitment: vmap.Commitment(cm)}}}},
	}
	for i, b := range bad {
		if _, err := b.Marshal(); !errors.Is(err, kt.ErrMalformed) {
			t.Errorf("bad response %d encoded: %v", i, err)
		}
	}
}
