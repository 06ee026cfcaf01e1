package service

import (
	"bytes"
	"errors"
	"testing"

	"github.com/moat-im/moat/keyserver/org"
)

func testLodgedValues() []*lodgedApprovals {
	ap := func(b byte, kind org.ApproverKind) *org.Approval {
		return &org.Approval{Kind: kind, Signer: [16]byte{b}, Signature: bytes.Repeat([]byte{b}, 64+int(b))}
	}
	return []*lodgedApprovals{
		{subject: [16]byte{1, 2}, approvals: []*org.Approval{ap(1, org.ApproverAdmin)}},
		{proposal: []byte("a proposed bundle")},
		{proposal: []byte("p"), approvals: []*org.Approval{ap(1, org.ApproverAdmin), ap(2, org.ApproverAdmin), ap(3, org.ApproverDevice)}},
	}
}

// TestLodgedApprovalsEncoding: values round-trip; duplicated signers,
// another version, trailing bytes, truncations and more than 255
// approvals are refused.
func TestLodgedApprovalsEncoding(t *testing.T) {
	for i, l := range testLodgedValues() {
		enc, err := l.marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseLodgedApprovals(enc)
		if err != nil {
			t.Fatalf("value %d: %v", i, err)
		}
		again, _ := got.marshal()
		if !bytes.Equal(again, enc) || got.subject != l.subject || len(got.approvals) != len(l.approvals) {
			t.Fatalf("value %d does not round-trip", i)
		}
		for n := range len(enc) {
			if _, err := parseLodgedApprovals(enc[:n]); !errors.Is(err, errLodgedMalformed) {
				t.Fatalf("value %d truncated to %d bytes: %v", i, n, err)
			}
		}
		if _, err := parseLodgedApprovals(append(bytes.Clone(enc), 0)); err == nil {
			t.Fatalf("value %d with a trailing byte parsed", i)
		}
		bad := bytes.Clone(enc)
		bad[0] = 2
		if _, err := parseLodgedApprovals(bad); err == nil {
			t.Fatalf("value %d of version 2 parsed", i)
		}
	}
	dup := testLodgedValues()[2]
	dup.approvals[1].Signer = dup.approvals[0].Signer
	if _, err := parseLodgedApprovals(must(dup.marshal())); !errors.Is(err, errLodgedMalformed) {
		t.Fatalf("duplicate signers: %v", err)
	}
	many := &lodgedApprovals{}
	for i := range maxLodgedApprovals + 1 {
		many.approvals = append(many.approvals, &org.Approval{Kind: org.ApproverAdmin, Signer: [16]byte{byte(i), byte(i >> 8)}, Signature: []byte{1}})
	}
	if _, err := many.marshal(); err == nil {
		t.Fatal("256 approvals encoded")
	}
	many.approvals = many.approvals[:maxLodgedApprovals]
	enc := must(many.marshal())
	if _, err := parseLodgedApprovals(enc); err != nil {
		t.Fatalf("255 approvals: %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// FuzzLodgedApprovals: whatever parses re-encodes to the same bytes.
func FuzzLodgedApprovals(f *testing.F) {
	for _, l := range testLodgedValues() {
		f.Add(must(l.marshal()))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := parseLodgedApprovals(data)
		if err != nil {
			return
		}
		enc, err := l.marshal()
		if err != nil || !bytes.Equal(enc, data) {
			t.Fatalf("parsed value re-encodes to %x, %v", enc, err)
		}
	})
}
