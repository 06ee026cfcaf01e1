package org

import (
	"github.com/moat-im/moat/crypto/keys"
	"golang.org/x/crypto/cryptobyte"
)

// ApproverKind says who signed an approval (docs/spec/org.md §Approvals).
type ApproverKind uint8

const (
	// ApproverDevice is one of the user's existing devices, signing with
	// its identity signing key.
	ApproverDevice ApproverKind = 0x01
	// ApproverAdmin is an admin of the roster, signing with its AdminKey.
	ApproverAdmin ApproverKind = 0x02
)

// Approval is one signature in favour of a dual-controlled action: adding
// a device to a user who has or had one (§Dual control), or replacing the
// admin roster (§Admin roster).
type Approval struct {
	Kind      ApproverKind
	Signer    [16]byte // a DeviceID for ApproverDevice, an AdminID for ApproverAdmin
	Signature []byte
}

//	enum { device(0x01), admin(0x02), (255) } ApproverKind;
//
//	struct {
//	    ApproverKind kind;
//	    opaque signer[16];
//	    opaque signature<1..2^16-1>;
//	} ApprovalBody;
//
//	struct {
//	    uint8 type = 0x34;
//	    uint8 version = 1;
//	    ApprovalBody approval;
//	} Approval;

func addApprovalBody(b *cryptobyte.Builder, a *Approval) {
	if a == nil || (a.Kind != ApproverDevice && a.Kind != ApproverAdmin) || len(a.Signature) == 0 {
		b.SetError(errEncode)
		return
	}
	b.AddUint8(uint8(a.Kind))
	b.AddBytes(a.Signer[:])
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(a.Signature) })
}

func readApprovalBody(s *cryptobyte.String) (*Approval, bool) {
	a := &Approval{}
	var kind uint8
	var sig cryptobyte.String
	if !s.ReadUint8(&kind) || !s.CopyBytes(a.Signer[:]) || !s.ReadUint16LengthPrefixed(&sig) || len(sig) == 0 {
		return nil, false
	}
	a.Kind = ApproverKind(kind)
	if a.Kind != ApproverDevice && a.Kind != ApproverAdmin {
		return nil, false
	}
	a.Signature = clone(sig)
	return a, true
}

// Marshal returns the Approval encoding, for carrying an approval from
// the approving device or admin tool to the directory.
func (a *Approval) Marshal() ([]byte, error) {
	return build(func(b *cryptobyte.Builder) {
		b.AddUint8(typeApproval)
		b.AddUint8(version1)
		addApprovalBody(b, a)
	})
}

// ParseApproval parses an Approval encoding strictly.
func ParseApproval(data []byte) (*Approval, error) {
	s := cryptobyte.String(data)
	var typ, ver uint8
	if !s.ReadUint8(&typ) || typ != typeApproval || !s.ReadUint8(&ver) || ver != version1 {
		return nil, &parseError{what: "approval"}
	}
	a, ok := readApprovalBody(&s)
	if !ok || !s.Empty() {
		return nil, &parseError{what: "approval"}
	}
	return a, nil
}

// DeviceApprovalMessage returns the message an approver signs to approve
// adding the device of req to user (§Dual control):
//
//	"moat/v1/org/device-approval" || 0x00 || tenant[16] || user[16] ||
//	code_id[16] || identity_signing[33] || identity_dh[33] || MLSSignatureKey
//
// It names the new device's keys and the enrolment code, which is single
// use, so an approval cannot be used for other keys, another user or a
// second enrolment.
func DeviceApprovalMessage(user UserID, req *EnrolmentRequest) ([]byte, error) {
	body, err := build(func(b *cryptobyte.Builder) {
		addID(b, req.Tenant[:])
		addID(b, user[:])
		addID(b, req.Code[:])
		addIdentity(b, req.Identity)
		addMLSKey(b, req.MLSKey)
	})
	if err != nil {
		return nil, err
	}
	return labelled(labelDeviceApproval, body), nil
}

// ApproveByDevice returns the approval of req by the user's existing device
// device, whose identity signing key is key. The approving device's UI must
// show the new device's keys (or a safety number of them) before signing.
func ApproveByDevice(key *keys.IdentitySigningPrivateKey, device DeviceID, user UserID, req *EnrolmentRequest) (*Approval, error) {
	msg, err := DeviceApprovalMessage(user, req)
	if err != nil {
		return nil, err
	}
	return &Approval{Kind: ApproverDevice, Signer: device, Signature: key.Sign(msg)}, nil
}

// ApproveByAdmin returns an admin's approval of req for user, for the
// recovery of a user who lost their devices. M distinct admins must approve.
func ApproveByAdmin(key *AdminPrivateKey, user UserID, req *EnrolmentRequest) (*Approval, error) {
	msg, err := DeviceApprovalMessage(user, req)
	if err != nil {
		return nil, err
	}
	sig, err := key.Sign(msg)
	if err != nil {
		return nil, err
	}
	return &Approval{Kind: ApproverAdmin, Signer: key.Public().ID(), Signature: sig}, nil
}

// RosterApprovalMessage returns the message an admin signs to approve
// replacing the roster by r: "moat/v1/org/roster-approval" || 0x00 ||
// AdminRosterBody. The body carries the new sequence number, so an approval
// counts for one roster change only.
func RosterApprovalMessage(r *AdminRoster) ([]byte, error) {
	body, err := r.body()
	if err != nil {
		return nil, err
	}
	return labelled(labelRosterApproval, body), nil
}

// ApproveRoster returns an admin's approval of the roster r.
func ApproveRoster(key *AdminPrivateKey, r *AdminRoster) (*Approval, error) {
	msg, err := RosterApprovalMessage(r)
	if err != nil {
		return nil, err
	}
	sig, err := key.Sign(msg)
	if err != nil {
		return nil, err
	}
	return &Approval{Kind: ApproverAdmin, Signer: key.Public().ID(), Signature: sig}, nil
}
