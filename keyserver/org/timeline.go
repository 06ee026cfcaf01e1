package org

import (
	"bytes"
	"crypto/sha256"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"golang.org/x/crypto/cryptobyte"
)

// ActionKind names an admin action recorded in a user's security timeline
// (docs/spec/org.md §Timeline entries).
type ActionKind uint8

// Action kinds, one per concrete Action type.
const (
	ActionUserAdded       ActionKind = 0x01
	ActionUserRemoved     ActionKind = 0x02
	ActionDeviceAdded     ActionKind = 0x03
	ActionDeviceRevoked   ActionKind = 0x04
	ActionDeviceRecovered ActionKind = 0x05
	ActionPolicyChanged   ActionKind = 0x06
)

// Action is the kind-specific part of a timeline entry: one of *UserAdded,
// *UserRemoved, *DeviceAdded, *DeviceRevoked, *DeviceRecovered or
// *PolicyChanged.
type Action interface {
	Kind() ActionKind
	add(b *cryptobyte.Builder)
}

// UserAdded records the creation of the user.
type UserAdded struct{}

// UserRemoved records the removal of the user; every device of the user is
// revoked by DeviceRevoked entries just before it.
type UserRemoved struct{}

// DeviceAdded records a device certified for the user: the user's first
// device (no approvals needed), or one approved by an existing device.
type DeviceAdded struct {
	Code        CodeID // the enrolment code redeemed; approvals sign it
	Certificate *DeviceCertificate
	// Others are the CertificateHash of the current certificate of each
	// of the user's other non-revoked devices when the device was added,
	// strictly increasing (§Timeline entries): the CA vouches for those
	// exact certificates with this entry's signature.
	Others [][32]byte
}

// DeviceRecovered records a device certified for a user who has or had
// devices, on the approval of M distinct admins instead of a device: the
// lost-device path. Monitors should draw attention to it.
type DeviceRecovered struct {
	Code        CodeID
	Certificate *DeviceCertificate
	Others      [][32]byte // as DeviceAdded.Others
}

// maxOtherCertificates bounds the certificate hashes of an entry:
// others<0..2^16-1> holds 2,047 of them.
const maxOtherCertificates = (1<<16 - 1) / 32

// CertificateHash returns SHA-256 of the certificate's encoding,
// signature included: how a DeviceAdded or DeviceRecovered entry names
// the user's other certificates (§Timeline entries).
func CertificateHash(c *DeviceCertificate) ([32]byte, error) {
	enc, err := c.Marshal()
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(enc), nil
}

// checkOthers reports whether hs is a valid others list: at most
// maxOtherCertificates hashes, strictly increasing.
func checkOthers(hs [][32]byte) bool {
	if len(hs) > maxOtherCertificates {
		return false
	}
	for i := 1; i < len(hs); i++ {
		if bytes.Compare(hs[i-1][:], hs[i][:]) >= 0 {
			return false
		}
	}
	return true
}

// DeviceRevoked records the revocation of one of the user's devices.
type DeviceRevoked struct {
	Device  DeviceID
	Serials []uint64
	Reason  RevocationReason
}

// PolicyChanged records the policy bundle the user is now subject to; an
// empty PolicyID means none.
type PolicyChanged struct {
	PolicyID       string
	PolicySequence uint64   // the bundle's sequence; 0 when PolicyID is empty
	PolicyHash     [32]byte // SHA-256 of the bundle's encoding; zero when PolicyID is empty
}

func (*UserAdded) Kind() ActionKind       { return ActionUserAdded }
func (*UserRemoved) Kind() ActionKind     { return ActionUserRemoved }
func (*DeviceAdded) Kind() ActionKind     { return ActionDeviceAdded }
func (*DeviceRecovered) Kind() ActionKind { return ActionDeviceRecovered }
func (*DeviceRevoked) Kind() ActionKind   { return ActionDeviceRevoked }
func (*PolicyChanged) Kind() ActionKind   { return ActionPolicyChanged }

func (*UserAdded) add(*cryptobyte.Builder)   {}
func (*UserRemoved) add(*cryptobyte.Builder) {}

func addCertAction(b *cryptobyte.Builder, code CodeID, c *DeviceCertificate, others [][32]byte) {
	if c == nil || !checkOthers(others) {
		b.SetError(errEncode)
		return
	}
	enc, err := c.Marshal()
	if err != nil {
		b.SetError(err)
		return
	}
	addID(b, code[:])
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(enc) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, h := range others {
			b.AddBytes(h[:])
		}
	})
}

func (a *DeviceAdded) add(b *cryptobyte.Builder) {
	addCertAction(b, a.Code, a.Certificate, a.Others)
}
func (a *DeviceRecovered) add(b *cryptobyte.Builder) {
	addCertAction(b, a.Code, a.Certificate, a.Others)
}

func (a *DeviceRevoked) add(b *cryptobyte.Builder) {
	if a.Device.IsZero() || !checkSerials(a.Serials) || !a.Reason.valid() {
		b.SetError(errEncode)
		return
	}
	addID(b, a.Device[:])
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, s := range a.Serials {
			b.AddUint64(s)
		}
	})
	b.AddUint8(uint8(a.Reason))
}

func (a *PolicyChanged) add(b *cryptobyte.Builder) {
	if a.PolicyID == "" && (a.PolicySequence != 0 || a.PolicyHash != [32]byte{}) || a.PolicyID != "" && a.PolicySequence == 0 {
		b.SetError(errEncode)
		return
	}
	addOptText(b, a.PolicyID)
	b.AddUint64(a.PolicySequence)
	b.AddBytes(a.PolicyHash[:])
}

// ActorKind says who performed an action.
type ActorKind uint8

const (
	ActorAdmin  ActorKind = 0x01 // an admin of the roster; ID is an AdminID
	ActorDevice ActorKind = 0x02 // a device of the user; ID is a DeviceID
)

// Actor is who performed an action.
type Actor struct {
	Kind ActorKind
	ID   [16]byte
}

// Entry is one signed entry of a user's security timeline (§Timeline
// entries): the directory publishes it under the user's label, so the
// user's devices see every admin action on the user. Entries are numbered
// from 1 and each names the hash of the previous one, so a missing,
// reordered or altered entry breaks the chain.
type Entry struct {
	Tenant    TenantID
	User      UserID
	Seq       uint64
	Prev      [32]byte // EntryHash of entry Seq−1; zero for Seq 1
	Time      time.Time
	Actors    []Actor     // at least one
	Approvals []*Approval // those that authorised the action, possibly none
	Action    Action
	Signature []byte
}

//	enum {
//	    user_added(0x01), user_removed(0x02), device_added(0x03),
//	    device_revoked(0x04), device_recovered(0x05), policy_changed(0x06), (255)
//	} ActionKind;
//
//	enum { admin(0x01), device(0x02), (255) } ActorKind;
//	struct { ActorKind kind; opaque id[16]; } Actor;
//
//	struct {
//	    uint8  type = 0x3c;
//	    uint8  version = 2;
//	    opaque tenant[16];
//	    opaque user[16];
//	    uint64 seq;
//	    opaque prev[32];
//	    uint64 time;
//	    Actor  actors<17..2^16-1>;
//	    ApprovalBody approvals<0..2^24-1>;
//	    ActionKind kind;
//	    select (kind) {
//	        case user_added, user_removed:
//	            struct {};
//	        case device_added, device_recovered:
//	            opaque code_id[16];
//	            opaque certificate<1..2^16-1>;  /* DeviceCertificate */
//	            opaque others<0..2^16-1>;       /* Hash[n]: the user's other current
//	                                               certificates, strictly increasing */
//	        case device_revoked:
//	            opaque device[16];
//	            uint64 serials<8..2^16-1>;      /* strictly increasing */
//	            RevocationReason reason;
//	        case policy_changed:
//	            opaque policy_id<0..255>;
//	            uint64 policy_sequence;
//	            opaque policy_hash[32];
//	    } action;
//	} TimelineEntryBody;
//
//	struct { TimelineEntryBody body; opaque signature[3373]; } TimelineEntry;

func (e *Entry) body() ([]byte, error) {
	return build(func(b *cryptobyte.Builder) {
		if e.Tenant.IsZero() || e.User.IsZero() || e.Seq == 0 || (e.Seq == 1) != (e.Prev == [32]byte{}) ||
			len(e.Actors) == 0 || e.Action == nil || !e.certMatches() {
			b.SetError(errEncode)
			return
		}
		b.AddUint8(typeTimelineEntry)
		b.AddUint8(versionTimelineEntry)
		addID(b, e.Tenant[:])
		addID(b, e.User[:])
		b.AddUint64(e.Seq)
		b.AddBytes(e.Prev[:])
		addTime(b, e.Time)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, a := range e.Actors {
				if a.Kind != ActorAdmin && a.Kind != ActorDevice {
					b.SetError(errEncode)
				}
				b.AddUint8(uint8(a.Kind))
				b.AddBytes(a.ID[:])
			}
		})
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, a := range e.Approvals {
				addApprovalBody(b, a)
			}
		})
		b.AddUint8(uint8(e.Action.Kind()))
		e.Action.add(b)
	})
}

// certMatches checks that a certificate carried by the action is the
// entry's tenant's and user's.
func (e *Entry) certMatches() bool {
	var c *DeviceCertificate
	switch a := e.Action.(type) {
	case *DeviceAdded:
		c = a.Certificate
	case *DeviceRecovered:
		c = a.Certificate
	default:
		return true
	}
	return c != nil && c.Tenant == e.Tenant && c.User == e.User
}

// Certificate returns the device certificate of a DeviceAdded or
// DeviceRecovered entry, else nil.
func (e *Entry) Certificate() *DeviceCertificate {
	switch a := e.Action.(type) {
	case *DeviceAdded:
		return a.Certificate
	case *DeviceRecovered:
		return a.Certificate
	}
	return nil
}

// OtherCertificates returns the others list of a DeviceAdded or
// DeviceRecovered entry (the hashes of the user's other certificates it
// vouches for), else nil.
func (e *Entry) OtherCertificates() [][32]byte {
	switch a := e.Action.(type) {
	case *DeviceAdded:
		return a.Others
	case *DeviceRecovered:
		return a.Others
	}
	return nil
}

// Marshal returns the TimelineEntry encoding.
func (e *Entry) Marshal() ([]byte, error) { return marshalSigned(e.body, e.Signature) }

// Hash returns EntryHash: SHA-256 of the entry's full encoding, signature
// included. The next entry names it as Prev.
func (e *Entry) Hash() ([32]byte, error) {
	enc, err := e.Marshal()
	if err != nil {
		return [32]byte{}, err
	}
	return sha256.Sum256(enc), nil
}

// Verify checks that e is about tenant's user and signed by ca.
func (e *Entry) Verify(ca *keys.OrgPublicKey, tenant TenantID, user UserID) error {
	if e.Tenant != tenant {
		return ErrWrongTenant
	}
	if e.User != user {
		return ErrWrongSubject
	}
	body, err := e.body()
	if err != nil {
		return ErrMalformed
	}
	return verifyCA(ca, labelTimelineEntry, body, e.Signature)
}

// ParseEntry parses a TimelineEntry encoding strictly.
func ParseEntry(data []byte) (*Entry, error) {
	return parseSigned("timeline entry", data, parseEntryBody)
}

func parseEntryBody(s *cryptobyte.String, sig []byte) (*Entry, error) {
	return parseEntryBodyWith(s, sig, nil)
}

// certParser parses device certificates, each distinct encoding once: a
// user value carries the certificate of a device added in it twice, in
// its certificate list and in the entry that added the device. A nil
// certParser parses every time.
type certParser map[string]*DeviceCertificate

func (m certParser) parse(enc []byte) (*DeviceCertificate, error) {
	if c, ok := m[string(enc)]; ok {
		cp := *c
		cp.Signature = clone(c.Signature)
		return &cp, nil
	}
	c, err := parseDeviceCertificate(enc)
	if err == nil && m != nil {
		m[string(enc)] = c
	}
	return c, err
}

func parseEntryBodyWith(s *cryptobyte.String, sig []byte, certs certParser) (*Entry, error) {
	e := &Entry{Signature: sig}
	var typ, ver, kind uint8
	var actors, approvals cryptobyte.String
	if !s.ReadUint8(&typ) || typ != typeTimelineEntry || !s.ReadUint8(&ver) || ver != versionTimelineEntry ||
		!readID(s, (*[16]byte)(&e.Tenant)) || !readID(s, (*[16]byte)(&e.User)) || !s.ReadUint64(&e.Seq) ||
		!s.CopyBytes(e.Prev[:]) || !readTime(s, &e.Time) ||
		!s.ReadUint16LengthPrefixed(&actors) || !s.ReadUint24LengthPrefixed(&approvals) || !s.ReadUint8(&kind) {
		return nil, ErrMalformed
	}
	for !actors.Empty() {
		var a Actor
		var k uint8
		if !actors.ReadUint8(&k) || !actors.CopyBytes(a.ID[:]) {
			return nil, ErrMalformed
		}
		a.Kind = ActorKind(k)
		if a.Kind != ActorAdmin && a.Kind != ActorDevice {
			return nil, ErrMalformed
		}
		e.Actors = append(e.Actors, a)
	}
	for !approvals.Empty() {
		a, ok := readApprovalBody(&approvals)
		if !ok {
			return nil, ErrMalformed
		}
		e.Approvals = append(e.Approvals, a)
	}
	switch ActionKind(kind) {
	case ActionUserAdded:
		e.Action = &UserAdded{}
	case ActionUserRemoved:
		e.Action = &UserRemoved{}
	case ActionDeviceAdded, ActionDeviceRecovered:
		var code CodeID
		var enc, others cryptobyte.String
		if !readID(s, (*[16]byte)(&code)) || !s.ReadUint16LengthPrefixed(&enc) ||
			!s.ReadUint16LengthPrefixed(&others) || len(others)%32 != 0 {
			return nil, ErrMalformed
		}
		c, err := certs.parse(enc)
		if err != nil {
			return nil, err
		}
		var hs [][32]byte
		if len(others) > 0 {
			hs = make([][32]byte, len(others)/32)
			for i := range hs {
				copy(hs[i][:], others[32*i:])
			}
		}
		if !checkOthers(hs) {
			return nil, ErrMalformed
		}
		if ActionKind(kind) == ActionDeviceAdded {
			e.Action = &DeviceAdded{Code: code, Certificate: c, Others: hs}
		} else {
			e.Action = &DeviceRecovered{Code: code, Certificate: c, Others: hs}
		}
	case ActionDeviceRevoked:
		a := &DeviceRevoked{}
		var serials cryptobyte.String
		var reason uint8
		if !readID(s, (*[16]byte)(&a.Device)) || !s.ReadUint16LengthPrefixed(&serials) || !s.ReadUint8(&reason) {
			return nil, ErrMalformed
		}
		for !serials.Empty() {
			var v uint64
			if !serials.ReadUint64(&v) {
				return nil, ErrMalformed
			}
			a.Serials = append(a.Serials, v)
		}
		a.Reason = RevocationReason(reason)
		if a.Device.IsZero() || !checkSerials(a.Serials) || !a.Reason.valid() {
			return nil, ErrMalformed
		}
		e.Action = a
	case ActionPolicyChanged:
		a := &PolicyChanged{}
		if !readOptText(s, &a.PolicyID) || !s.ReadUint64(&a.PolicySequence) || !s.CopyBytes(a.PolicyHash[:]) {
			return nil, ErrMalformed
		}
		if a.PolicyID == "" && (a.PolicySequence != 0 || a.PolicyHash != [32]byte{}) || a.PolicyID != "" && a.PolicySequence == 0 {
			return nil, ErrMalformed
		}
		e.Action = a
	default:
		return nil, ErrMalformed
	}
	if e.Tenant.IsZero() || e.User.IsZero() || e.Seq == 0 || (e.Seq == 1) != (e.Prev == [32]byte{}) ||
		len(e.Actors) == 0 || !e.certMatches() {
		return nil, ErrMalformed
	}
	return e, nil
}

// ApprovedByDevice reports whether device approved the action in e.
func (e *Entry) ApprovedByDevice(device DeviceID) bool {
	for _, a := range e.Approvals {
		if a.Kind == ApproverDevice && a.Signer == device {
			return true
		}
	}
	for _, a := range e.Actors {
		if a.Kind == ActorDevice && a.ID == device {
			return true
		}
	}
	return false
}

// VerifyApprovals re-checks, as a client or auditor, the approvals of a
// DeviceAdded or DeviceRecovered entry (§Dual control): deviceKey returns
// the identity signing key of one of the user's devices (nil if unknown),
// roster is the admin roster in force. Every approval must verify, and a
// DeviceRecovered entry needs the roster's threshold of distinct admin
// approvals. Whether a DeviceAdded entry needed a device approval (it does
// unless it is the user's first device) depends on the user's history,
// which the caller judges: see ApprovedByDevice.
func (e *Entry) VerifyApprovals(roster *AdminRoster, deviceKey func(DeviceID) *keys.IdentitySigningPublicKey) error {
	var code CodeID
	var c *DeviceCertificate
	switch a := e.Action.(type) {
	case *DeviceAdded:
		code, c = a.Code, a.Certificate
	case *DeviceRecovered:
		code, c = a.Code, a.Certificate
	default:
		return nil
	}
	if c == nil {
		return ErrMalformed
	}
	req := &EnrolmentRequest{Tenant: e.Tenant, Code: code, Identity: c.Identity, MLSKey: c.MLSKey}
	_, admins, err := checkApprovals(e.User, req, e.Approvals, roster, deviceKey)
	if err != nil {
		return err
	}
	threshold := 0
	if roster != nil {
		threshold = roster.Threshold
	}
	if _, rec := e.Action.(*DeviceRecovered); rec && (admins < threshold || threshold < 2) {
		return &DualControlError{User: e.User, Valid: admins, Required: threshold, Err: ErrInsufficientApprovals}
	}
	return nil
}

// checkApprovals verifies every approval over the device-approval message
// of (user, req). It returns whether a device approved and how many
// distinct admins did. Any approval that does not verify, or a signer
// appearing twice, refuses the whole set.
func checkApprovals(user UserID, req *EnrolmentRequest, approvals []*Approval, roster *AdminRoster, deviceKey func(DeviceID) *keys.IdentitySigningPublicKey) (device bool, admins int, err error) {
	msg, err := DeviceApprovalMessage(user, req)
	if err != nil {
		return false, 0, ErrMalformed
	}
	threshold := 0
	if roster != nil {
		threshold = roster.Threshold
	}
	refuse := func(e error) (bool, int, error) {
		return false, 0, &DualControlError{User: user, Valid: admins, Required: threshold, Err: e}
	}
	seen := make(map[[17]byte]bool, len(approvals))
	for _, a := range approvals {
		if a == nil {
			return refuse(ErrApprovalInvalid)
		}
		k := [17]byte{byte(a.Kind)}
		copy(k[1:], a.Signer[:])
		if seen[k] {
			return refuse(ErrDuplicateApproval)
		}
		seen[k] = true
		switch a.Kind {
		case ApproverDevice:
			var pk *keys.IdentitySigningPublicKey
			if deviceKey != nil {
				pk = deviceKey(DeviceID(a.Signer))
			}
			if pk == nil || pk.Verify(msg, a.Signature) != nil {
				return refuse(ErrApprovalInvalid)
			}
			device = true
		case ApproverAdmin:
			var ak *AdminKey
			if roster != nil {
				ak = roster.Admin(AdminID(a.Signer))
			}
			if ak == nil || ak.Verify(msg, a.Signature) != nil {
				return refuse(ErrApprovalInvalid)
			}
			admins++
		default:
			return refuse(ErrApprovalInvalid)
		}
	}
	return device, admins, nil
}

// TimelineHead is the latest entry of a user's timeline that a verifier
// has accepted: its sequence number and EntryHash. The zero value means
// none.
type TimelineHead struct {
	Seq  uint64
	Hash [32]byte
}

// UserValue is the value the key directory stores under a user's label at
// an epoch (§User values): the certificates of the user's current devices,
// and the timeline entries appended since the previous value, with the
// resulting timeline head.
type UserValue struct {
	Tenant       TenantID
	User         UserID
	Certificates []*DeviceCertificate // the current devices, sorted by device id
	Entries      []*Entry             // new entries, consecutive, chained
	Head         TimelineHead
}

//	struct {
//	    uint8  type = 0x3d;
//	    uint8  version = 1;
//	    opaque tenant[16];
//	    opaque user[16];
//	    opaque certificates<0..2^24-1>; /* DeviceCertificate, each as opaque<1..2^16-1> */
//	    opaque entries<0..2^24-1>;      /* TimelineEntry, each as opaque<1..2^24-1> */
//	    uint64 head_seq;
//	    opaque head_hash[32];
//	} UserValue;

func (v *UserValue) check() error {
	return v.checkWith(func(i int) ([32]byte, error) { return v.Entries[i].Hash() })
}

// checkWith is check, with entryHash(i) the EntryHash of v.Entries[i].
func (v *UserValue) checkWith(entryHash func(i int) ([32]byte, error)) error {
	if v.Tenant.IsZero() || v.User.IsZero() || v.Head.Seq == 0 {
		return ErrMalformed
	}
	for i, c := range v.Certificates {
		if c == nil || c.Tenant != v.Tenant || c.User != v.User || (i > 0 && bytes.Compare(v.Certificates[i-1].Device[:], c.Device[:]) >= 0) {
			return ErrMalformed
		}
	}
	for i, e := range v.Entries {
		if e == nil || e.Tenant != v.Tenant || e.User != v.User {
			return ErrMalformed
		}
		if i > 0 {
			h, err := entryHash(i - 1)
			if err != nil || e.Seq != v.Entries[i-1].Seq+1 || e.Prev != h {
				return ErrMalformed
			}
		}
	}
	if n := len(v.Entries); n > 0 {
		h, err := entryHash(n - 1)
		if err != nil || v.Entries[n-1].Seq != v.Head.Seq || h != v.Head.Hash {
			return ErrMalformed
		}
	}
	return nil
}

// Marshal returns the UserValue encoding.
func (v *UserValue) Marshal() ([]byte, error) {
	if v.check() != nil {
		return nil, errEncode
	}
	return build(func(b *cryptobyte.Builder) {
		b.AddUint8(typeUserValue)
		b.AddUint8(version1)
		addID(b, v.Tenant[:])
		addID(b, v.User[:])
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, c := range v.Certificates {
				enc, err := c.Marshal()
				if err != nil {
					b.SetError(err)
					return
				}
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(enc) })
			}
		})
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, e := range v.Entries {
				enc, err := e.Marshal()
				if err != nil {
					b.SetError(err)
					return
				}
				b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(enc) })
			}
		})
		b.AddUint64(v.Head.Seq)
		b.AddBytes(v.Head.Hash[:])
	})
}

// ParseUserValue parses a UserValue encoding strictly.
func ParseUserValue(data []byte) (*UserValue, error) {
	v, err := parseUserValue(data)
	if err != nil {
		return nil, parseErr("user value", err)
	}
	return v, nil
}

func parseUserValue(data []byte) (*UserValue, error) {
	s := cryptobyte.String(data)
	v := &UserValue{}
	var typ, ver uint8
	var certs, entries cryptobyte.String
	if !s.ReadUint8(&typ) || typ != typeUserValue || !s.ReadUint8(&ver) || ver != version1 ||
		!readID(&s, (*[16]byte)(&v.Tenant)) || !readID(&s, (*[16]byte)(&v.User)) ||
		!s.ReadUint24LengthPrefixed(&certs) || !s.ReadUint24LengthPrefixed(&entries) ||
		!s.ReadUint64(&v.Head.Seq) || !s.CopyBytes(v.Head.Hash[:]) || !s.Empty() {
		return nil, ErrMalformed
	}
	// Parsing is strict, so each entry's encoding is the input's bytes,
	// and EntryHash is their hash: no need to re-encode.
	parser := certParser{}
	for !certs.Empty() {
		var enc cryptobyte.String
		if !certs.ReadUint16LengthPrefixed(&enc) {
			return nil, ErrMalformed
		}
		c, err := parser.parse(enc)
		if err != nil {
			return nil, err
		}
		v.Certificates = append(v.Certificates, c)
	}
	var hashes [][32]byte
	for !entries.Empty() {
		var enc cryptobyte.String
		if !entries.ReadUint24LengthPrefixed(&enc) {
			return nil, ErrMalformed
		}
		e, err := parseSigned("timeline entry", enc, func(s *cryptobyte.String, sig []byte) (*Entry, error) {
			return parseEntryBodyWith(s, sig, parser)
		})
		if err != nil {
			return nil, err
		}
		v.Entries = append(v.Entries, e)
		hashes = append(hashes, sha256.Sum256(enc))
	}
	if err := v.checkWith(func(i int) ([32]byte, error) { return hashes[i], nil }); err != nil {
		return nil, err
	}
	return v, nil
}

// Verify checks a user value as a client reads it: it is tenant's user's;
// every certificate and entry is signed by ca (certificate validity and
// revocation are checked at use, by VerifyDeviceCertificate); and the
// entries continue the timeline from since (ErrTimelineGap otherwise). A
// zero since accepts any starting point, for a client that has not seen the
// user before. It returns the new head.
func (v *UserValue) Verify(ca *keys.OrgPublicKey, tenant TenantID, user UserID, since TimelineHead) (TimelineHead, error) {
	if v.Tenant != tenant {
		return since, ErrWrongTenant
	}
	if v.User != user {
		return since, ErrWrongSubject
	}
	if err := v.check(); err != nil {
		return since, err
	}
	for _, c := range v.Certificates {
		tbs, err := c.tbs()
		if err != nil {
			return since, ErrMalformed
		}
		if c.Issuer != keyID(ca) || verifyCA(ca, labelDeviceCertificate, tbs, c.Signature) != nil {
			return since, ErrBadSignature
		}
	}
	for _, e := range v.Entries {
		if err := e.Verify(ca, tenant, user); err != nil {
			return since, err
		}
	}
	switch {
	case len(v.Entries) == 0:
		if since.Seq != 0 && v.Head != since {
			return since, ErrTimelineGap
		}
	case since.Seq != 0:
		if first := v.Entries[0]; first.Seq != since.Seq+1 || first.Prev != since.Hash {
			return since, ErrTimelineGap
		}
	}
	return v.Head, nil
}
