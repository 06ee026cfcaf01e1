package org

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/vrf"
)

// Admin operations (docs/spec/org.md §Admin operations): a Tenant is the
// in-memory state of one organisation, changed only by the operations
// below. Each operation checks everything first, then signs what it must,
// and changes the state only once nothing can fail: a refused operation
// leaves the state unchanged, except for the failed-attempt counters of
// enrolment (§Enrolment codes), which exist to record failures.
//
// A Tenant is deterministic given its inputs (times, random readers and
// the Signer); only the hedged ML-DSA half of signatures varies. It is not
// safe for concurrent use: the directory service serialises operations.
// The objects a Tenant returns (certificates, entries, statements) are
// shared with its state and must not be modified.
// The service authenticates admins; the Tenant checks that the acting
// admin is in the roster and records it in the timeline.

// ErrPendingUpdates is returned by RotateCA while timeline entries signed
// by the current CA are still unpublished, and by every trust bundle
// change while the previous one is unpublished: call Publish first.
var ErrPendingUpdates = errors.New("org: unpublished updates; publish first")

// Config holds a tenant's limits. The zero value of a field selects its
// default.
type Config struct {
	// CertificateLifetime is the validity of device certificates.
	// Default 365 days.
	CertificateLifetime time.Duration
	// MaxCodeLifetime bounds the lifetime of enrolment codes. Default 7 days.
	MaxCodeLifetime time.Duration
	// CodeFailureLimit is the number of wrong secrets after which an
	// enrolment code is locked for good. Default 5; at most 255.
	CodeFailureLimit int
	// TenantFailureLimit is the number of failed redemptions (unknown code
	// or wrong secret) within TenantFailureWindow after which the tenant
	// refuses every redemption until the window ends. Default 100.
	TenantFailureLimit int
	// TenantFailureWindow is the length of that window. Default 1 hour.
	TenantFailureWindow time.Duration
}

// Defaults of Config.
const (
	DefaultCertificateLifetime = 365 * 24 * time.Hour
	DefaultMaxCodeLifetime     = 7 * 24 * time.Hour
	DefaultCodeFailureLimit    = 5
	DefaultTenantFailureLimit  = 100
	DefaultTenantFailureWindow = time.Hour
)

func (c Config) withDefaults() Config {
	if c.CertificateLifetime == 0 {
		c.CertificateLifetime = DefaultCertificateLifetime
	}
	if c.MaxCodeLifetime == 0 {
		c.MaxCodeLifetime = DefaultMaxCodeLifetime
	}
	if c.CodeFailureLimit == 0 {
		c.CodeFailureLimit = DefaultCodeFailureLimit
	}
	if c.TenantFailureLimit == 0 {
		c.TenantFailureLimit = DefaultTenantFailureLimit
	}
	if c.TenantFailureWindow == 0 {
		c.TenantFailureWindow = DefaultTenantFailureWindow
	}
	return c
}

func (c Config) valid() bool {
	whole := func(d time.Duration) bool { return d > 0 && d%time.Second == 0 }
	return whole(c.CertificateLifetime) && whole(c.MaxCodeLifetime) && whole(c.TenantFailureWindow) &&
		c.CodeFailureLimit >= 1 && c.CodeFailureLimit <= 255 && c.TenantFailureLimit >= 1 && c.TenantFailureLimit <= 1<<32-1
}

// TenantParams are the arguments of NewTenant.
type TenantParams struct {
	ID        TenantID
	Admins    []*AdminKey // the initial roster, in any order
	Threshold int         // M, 2 ≤ M ≤ len(Admins)
	LogOrigin string      // the key directory log's checkpoint origin
	Log       *keys.LogPublicKey
	VRF       *vrf.PublicKey // the key directory's VRF key
	Witnesses WitnessSet     // in any order
	Config    Config
}

// Tenant is the admin-operations state of one organisation.
type Tenant struct {
	id     TenantID
	config Config
	signer Signer

	trust    *TrustBundle
	roster   *AdminRoster
	rotation *CARotation // the last one, or nil
	chart    *OrgChart   // the last published, or nil
	policies map[string]*PolicyBundle
	escrow   *EscrowPolicy

	departments map[DepartmentID]*department
	users       map[UserID]*user
	codes       map[CodeID]*codeRecord

	nextSerial    uint64
	usedKeys      map[[32]byte]bool // SHA-256 of every identity signing key certified
	usedApprovals map[[32]byte]bool // SHA-256 of every approval signature consumed

	failWindowStart time.Time
	failCount       int

	chartDirty bool
	orgDirty   map[string]bool // org labels to publish

	// changed and persisted track what PendingRecords returns
	// (records.go).
	changed   map[StateKey]struct{}
	persisted persistedState
	// journal and journaled track what JournalRecords returns, as
	// changed and persisted do for PendingRecords.
	journal       map[StateKey]struct{}
	journaled     persistedState
	journaledCore []byte

	// values reads the published values that user records refer to
	// (NewTenantLoader); nil if none was given.
	values ValueReader
}

type department struct {
	parent DepartmentID
	name   string
}

type user struct {
	id          UserID
	displayName string // empty once removed
	department  DepartmentID
	removed     bool
	hadDevice   bool
	policy      string
	head        TimelineHead
	label       [32]byte // the map label of the user's value, once stored (ValuesStored)
	devices     map[DeviceID]*device
	pending     []*Entry // entries not yet published
	dirty       bool     // the user's value changed since the last Publish
}

type device struct {
	cert      *DeviceCertificate // the latest certificate
	ref       uint32             // the version of the user's value that holds cert, 0 if none is stored yet
	serials   []uint64           // every serial issued to the device, increasing
	revoked   bool
	revokedAt time.Time
}

type codeRecord struct {
	user      UserID
	hash      [32]byte
	issuedBy  AdminID
	issuedAt  time.Time
	expiresAt time.Time
	failures  int
	used      bool
}

// Org labels (docs/spec/org.md §Labels in the directory).
const (
	OrgLabelTrustBundle  = "trust-bundle"
	OrgLabelAdminRoster  = "admin-roster"
	OrgLabelCARotation   = "ca-rotation"
	OrgLabelOrgChart     = "org-chart"
	OrgLabelEscrowPolicy = "escrow-policy"
	// OrgLabelPolicyPrefix followed by the policy id labels a policy bundle.
	OrgLabelPolicyPrefix = "policy/"
)

// NewTenant creates a tenant (§Creating a tenant): it signs the initial
// trust bundle and admin roster with signer, the tenant's CA.
func NewTenant(p TenantParams, signer Signer, now time.Time) (*Tenant, error) {
	now = seconds(now)
	cfg := p.Config.withDefaults()
	if p.ID.IsZero() || !cfg.valid() || signer == nil || signer.Public() == nil || !validTime(now) {
		return nil, fmt.Errorf("org: creating tenant: %w", ErrInvalidArgument)
	}
	admins := slices.Clone(p.Admins)
	SortAdmins(admins)
	if checkAdmins(admins, p.Threshold) != nil {
		return nil, fmt.Errorf("org: creating tenant: admin roster: %w", ErrInvalidArgument)
	}
	ws := WitnessSet{Witnesses: slices.Clone(p.Witnesses.Witnesses), Quorum: p.Witnesses.Quorum}
	SortWitnesses(ws.Witnesses)
	if errors.Is(ws.check(), ErrWitnessQuorum) {
		return nil, fmt.Errorf("org: creating tenant: %w", ErrWitnessQuorum)
	}
	trust := &TrustBundle{Tenant: p.ID, Sequence: 1, IssuedAt: now, CA: signer.Public(), LogOrigin: p.LogOrigin, Log: p.Log, VRF: p.VRF, Witnesses: ws}
	if err := signTrustBundle(signer, trust); err != nil {
		return nil, fmt.Errorf("org: creating tenant: trust bundle: %w", err)
	}
	roster := &AdminRoster{Header: Header{Tenant: p.ID, Sequence: 1, IssuedAt: now}, Threshold: p.Threshold, Admins: admins}
	if err := signStatement(signer, labelAdminRoster, roster.body, &roster.Signature); err != nil {
		return nil, fmt.Errorf("org: creating tenant: admin roster: %w", err)
	}
	t := &Tenant{
		id: p.ID, config: cfg, signer: signer, trust: trust, roster: roster,
		policies: map[string]*PolicyBundle{}, departments: map[DepartmentID]*department{},
		users: map[UserID]*user{}, codes: map[CodeID]*codeRecord{}, nextSerial: 1,
		usedKeys: map[[32]byte]bool{}, usedApprovals: map[[32]byte]bool{},
		chartDirty: true, orgDirty: map[string]bool{OrgLabelTrustBundle: true, OrgLabelAdminRoster: true},
	}
	return t, nil
}

func signTrustBundle(s Signer, t *TrustBundle) error {
	return signStatement(s, labelTrustBundle, t.body, &t.Signature)
}

func signStatement(s Signer, label string, body func() ([]byte, error), sig *[]byte) error {
	b, err := body()
	if err != nil {
		return ErrInvalidArgument
	}
	out, err := signCA(s, label, b)
	if err != nil {
		return err
	}
	*sig = out
	return nil
}

// ID returns the tenant id.
func (t *Tenant) ID() TenantID { return t.id }

// CA returns the tenant's current CA key.
func (t *Tenant) CA() *keys.OrgPublicKey { return t.trust.CA }

// TrustBundle returns the current signed trust bundle, which a new device
// receives at enrolment.
func (t *Tenant) TrustBundle() *TrustBundle { return t.trust }

// Roster returns the current signed admin roster.
func (t *Tenant) Roster() *AdminRoster { return t.roster }

// Config returns the tenant's limits, defaults filled in.
func (t *Tenant) Config() Config { return t.config }

func (t *Tenant) checkActor(actor AdminID) error {
	if t.roster.Admin(actor) == nil {
		return ErrUnknownAdmin
	}
	return nil
}

func (t *Tenant) liveUser(id UserID) (*user, error) {
	u, ok := t.users[id]
	if !ok {
		return nil, ErrUnknownUser
	}
	if u.removed {
		return nil, ErrUserRemoved
	}
	return u, nil
}

// newEntry signs the next entry of a user's timeline after head, without
// changing any state.
func (t *Tenant) newEntry(id UserID, head TimelineHead, now time.Time, actors []Actor, approvals []*Approval, a Action) (*Entry, TimelineHead, error) {
	e := &Entry{Tenant: t.id, User: id, Seq: head.Seq + 1, Prev: head.Hash, Time: now, Actors: actors, Approvals: approvals, Action: a}
	if err := signStatement(t.signer, labelTimelineEntry, e.body, &e.Signature); err != nil {
		return nil, head, err
	}
	h, err := e.Hash()
	if err != nil {
		return nil, head, err
	}
	return e, TimelineHead{Seq: e.Seq, Hash: h}, nil
}

// appendTo appends entries to a user's timeline, to be published.
func (t *Tenant) appendTo(u *user, es []*Entry, head TimelineHead) {
	u.pending = append(u.pending, es...)
	u.head = head
	u.dirty = true
	t.touchUser(u)
}

func adminActor(a AdminID) []Actor { return []Actor{{Kind: ActorAdmin, ID: a}} }

// ---------------------------------------------------------------------------
// Users

// AddUser adds a user with its display name and department (zero for none)
// to the org chart, and starts its timeline with a UserAdded entry.
// User ids are never reused, even after RemoveUser.
func (t *Tenant) AddUser(actor AdminID, id UserID, displayName string, dept DepartmentID, now time.Time) (*Entry, error) {
	now = seconds(now)
	if err := t.checkActor(actor); err != nil {
		return nil, fmt.Errorf("org: adding user: %w", err)
	}
	if id.IsZero() || !validText(displayName) {
		return nil, fmt.Errorf("org: adding user: %w", ErrInvalidArgument)
	}
	if _, ok := t.users[id]; ok {
		return nil, fmt.Errorf("org: adding user %s: %w", id, ErrUserExists)
	}
	if _, ok := t.departments[dept]; !dept.IsZero() && !ok {
		return nil, fmt.Errorf("org: adding user: %w", ErrUnknownDepartment)
	}
	e, head, err := t.newEntry(id, TimelineHead{}, now, adminActor(actor), nil, &UserAdded{})
	if err != nil {
		return nil, fmt.Errorf("org: adding user: %w", err)
	}
	u := &user{id: id, displayName: displayName, department: dept, devices: map[DeviceID]*device{}}
	t.appendTo(u, []*Entry{e}, head)
	t.users[id] = u
	t.chartDirty = true
	return e, nil
}

// UserRemoval is the result of RemoveUser: the revocation of each active
// device, then the UserRemoved entry.
type UserRemoval struct {
	Devices []*DeviceRevocation
	Entry   *Entry
}

// RemoveUser revokes every active device of the user (reason
// ReasonUserRemoved), cancels its enrolment codes, removes it from the org
// chart and closes its timeline with a UserRemoved entry.
func (t *Tenant) RemoveUser(actor AdminID, id UserID, now time.Time) (*UserRemoval, error) {
	now = seconds(now)
	if err := t.checkActor(actor); err != nil {
		return nil, fmt.Errorf("org: removing user: %w", err)
	}
	u, err := t.liveUser(id)
	if err != nil {
		return nil, fmt.Errorf("org: removing user %s: %w", id, err)
	}
	head := u.head
	res := &UserRemoval{}
	var entries []*Entry
	for _, d := range sortedDevices(u) {
		if u.devices[d].revoked {
			continue
		}
		r, h, err := t.revocation(actor, id, head, d, u.devices[d], ReasonUserRemoved, now)
		if err != nil {
			return nil, fmt.Errorf("org: removing user %s: %w", id, err)
		}
		head = h
		entries = append(entries, r.Entry)
		res.Devices = append(res.Devices, r)
	}
	e, head, err := t.newEntry(id, head, now, adminActor(actor), nil, &UserRemoved{})
	if err != nil {
		return nil, fmt.Errorf("org: removing user %s: %w", id, err)
	}
	res.Entry = e
	// Commit.
	for _, r := range res.Devices {
		d := u.devices[r.Revocation.Device]
		d.revoked, d.revokedAt = true, now
	}
	for cid, c := range t.codes {
		if c.user == id {
			delete(t.codes, cid)
			t.touch(recCode, cid[:])
		}
	}
	t.appendTo(u, append(entries, e), head)
	u.removed, u.displayName, u.department, u.policy = true, "", DepartmentID{}, ""
	t.chartDirty = true
	return res, nil
}

func sortedDevices(u *user) []DeviceID {
	ids := make([]DeviceID, 0, len(u.devices))
	for d := range u.devices {
		ids = append(ids, d)
	}
	slices.SortFunc(ids, func(a, b DeviceID) int { return bytes.Compare(a[:], b[:]) })
	return ids
}

// ---------------------------------------------------------------------------
// Departments

// AddDepartment adds a department under parent (zero for top level).
func (t *Tenant) AddDepartment(actor AdminID, id, parent DepartmentID, name string) error {
	if err := t.checkActor(actor); err != nil {
		return fmt.Errorf("org: adding department: %w", err)
	}
	if id.IsZero() || !validText(name) {
		return fmt.Errorf("org: adding department: %w", ErrInvalidArgument)
	}
	if _, ok := t.departments[id]; ok {
		return fmt.Errorf("org: adding department %s: %w", id, ErrDepartmentExists)
	}
	if _, ok := t.departments[parent]; !parent.IsZero() && !ok {
		return fmt.Errorf("org: adding department %s: parent: %w", id, ErrUnknownDepartment)
	}
	t.departments[id] = &department{parent: parent, name: name}
	t.touch(recDepartment, id[:])
	t.chartDirty = true
	return nil
}

// MoveDepartment moves a department, with its sub-tree, under parent (zero
// for top level). A move under the department itself or one of its
// descendants is ErrDepartmentCycle.
func (t *Tenant) MoveDepartment(actor AdminID, id, parent DepartmentID) error {
	if err := t.checkActor(actor); err != nil {
		return fmt.Errorf("org: moving department: %w", err)
	}
	d, ok := t.departments[id]
	if !ok {
		return fmt.Errorf("org: moving department %s: %w", id, ErrUnknownDepartment)
	}
	if _, ok := t.departments[parent]; !parent.IsZero() && !ok {
		return fmt.Errorf("org: moving department %s: parent: %w", id, ErrUnknownDepartment)
	}
	// Walk up from the new parent; meeting id means a cycle. The tree is
	// acyclic, so the walk ends within len(departments) steps.
	for cur := parent; !cur.IsZero(); cur = t.departments[cur].parent {
		if cur == id {
			return fmt.Errorf("org: moving department %s: %w", id, ErrDepartmentCycle)
		}
	}
	d.parent = parent
	t.touch(recDepartment, id[:])
	t.chartDirty = true
	return nil
}

// RenameDepartment renames a department.
func (t *Tenant) RenameDepartment(actor AdminID, id DepartmentID, name string) error {
	if err := t.checkActor(actor); err != nil {
		return fmt.Errorf("org: renaming department: %w", err)
	}
	d, ok := t.departments[id]
	if !ok {
		return fmt.Errorf("org: renaming department %s: %w", id, ErrUnknownDepartment)
	}
	if !validText(name) {
		return fmt.Errorf("org: renaming department: %w", ErrInvalidArgument)
	}
	d.name = name
	t.touch(recDepartment, id[:])
	t.chartDirty = true
	return nil
}

// RemoveDepartment removes a department that has no sub-department and no
// member.
func (t *Tenant) RemoveDepartment(actor AdminID, id DepartmentID) error {
	if err := t.checkActor(actor); err != nil {
		return fmt.Errorf("org: removing department: %w", err)
	}
	if _, ok := t.departments[id]; !ok {
		return fmt.Errorf("org: removing department %s: %w", id, ErrUnknownDepartment)
	}
	for _, d := range t.departments {
		if d.parent == id {
			return fmt.Errorf("org: removing department %s: %w", id, ErrDepartmentNotEmpty)
		}
	}
	for _, u := range t.users {
		if !u.removed && u.department == id {
			return fmt.Errorf("org: removing department %s: %w", id, ErrDepartmentNotEmpty)
		}
	}
	delete(t.departments, id)
	t.touch(recDepartment, id[:])
	t.chartDirty = true
	return nil
}

// SetUserDepartment moves a user to another department (zero for none).
func (t *Tenant) SetUserDepartment(actor AdminID, id UserID, dept DepartmentID) error {
	if err := t.checkActor(actor); err != nil {
		return fmt.Errorf("org: moving user: %w", err)
	}
	u, err := t.liveUser(id)
	if err != nil {
		return fmt.Errorf("org: moving user %s: %w", id, err)
	}
	if _, ok := t.departments[dept]; !dept.IsZero() && !ok {
		return fmt.Errorf("org: moving user %s: %w", id, ErrUnknownDepartment)
	}
	u.department = dept
	t.touchUser(u)
	t.chartDirty = true
	return nil
}

// ---------------------------------------------------------------------------
// Enrolment

// secretEqual compares enrolment secret hashes. It is constant time; a
// test replaces it to check that redemption goes through it.
var secretEqual = func(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }

// IssueEnrolmentCode issues a single-use enrolment code for a user's new
// device, valid for lifetime (at most Config.MaxCodeLifetime). The code
// carries the fingerprint of the current trust bundle. The tenant keeps
// only a hash of the code's secret.
func (t *Tenant) IssueEnrolmentCode(rand io.Reader, actor AdminID, id UserID, lifetime time.Duration, now time.Time) (*EnrolmentCode, error) {
	now = seconds(now)
	if err := t.checkActor(actor); err != nil {
		return nil, fmt.Errorf("org: issuing enrolment code: %w", err)
	}
	if _, err := t.liveUser(id); err != nil {
		return nil, fmt.Errorf("org: issuing enrolment code for %s: %w", id, err)
	}
	if lifetime <= 0 || lifetime > t.config.MaxCodeLifetime || lifetime%time.Second != 0 {
		return nil, fmt.Errorf("org: issuing enrolment code: lifetime: %w", ErrInvalidArgument)
	}
	fp, err := t.trust.Fingerprint()
	if err != nil {
		return nil, fmt.Errorf("org: issuing enrolment code: %w", err)
	}
	if now.Unix() < 1 {
		return nil, fmt.Errorf("org: issuing enrolment code: time: %w", ErrInvalidArgument)
	}
	code, err := newEnrolmentCode(rand, t.id, fp, now)
	if err != nil {
		return nil, fmt.Errorf("org: issuing enrolment code: %w", err)
	}
	if _, dup := t.codes[code.ID]; dup {
		return nil, fmt.Errorf("org: issuing enrolment code: duplicate code id: %w", ErrInvalidArgument)
	}
	t.pruneCodes(now)
	t.codes[code.ID] = &codeRecord{
		user: id, hash: secretHash(t.id, code.ID, code.secretBytes()), issuedBy: actor,
		issuedAt: now, expiresAt: now.Add(lifetime),
	}
	t.touch(recCode, code.ID[:])
	return code, nil
}

// CancelEnrolmentCode withdraws an unredeemed code.
func (t *Tenant) CancelEnrolmentCode(actor AdminID, id CodeID) error {
	if err := t.checkActor(actor); err != nil {
		return fmt.Errorf("org: cancelling enrolment code: %w", err)
	}
	if _, ok := t.codes[id]; !ok {
		return fmt.Errorf("org: cancelling enrolment code: %w", ErrBadEnrolmentCode)
	}
	delete(t.codes, id)
	t.touch(recCode, id[:])
	return nil
}

// pruneCodes forgets codes that expired: they can no longer be redeemed,
// and an unknown code id is refused like a wrong secret.
func (t *Tenant) pruneCodes(now time.Time) {
	for id, c := range t.codes {
		if !now.Before(c.expiresAt) {
			delete(t.codes, id)
			t.touch(recCode, id[:])
		}
	}
}

// Enrolment is the result of a redeemed enrolment code.
type Enrolment struct {
	User        UserID
	Certificate *DeviceCertificate
	Entry       *Entry       // DeviceAdded or DeviceRecovered
	TrustBundle *TrustBundle // for the device to check against its code
}

// recordFailure counts a failed redemption against the tenant window.
func (t *Tenant) recordFailure(now time.Time) {
	if t.failCount == 0 || !now.Before(t.failWindowStart.Add(t.config.TenantFailureWindow)) {
		t.failWindowStart, t.failCount = now, 0
	}
	t.failCount++
}

func (t *Tenant) tenantLocked(now time.Time) bool {
	return t.failCount >= t.config.TenantFailureLimit && now.Before(t.failWindowStart.Add(t.config.TenantFailureWindow))
}

// deviceID derives a device's id from its identity signing key, which is
// never certified twice in a tenant:
// SHA-256("moat/v1/org/device-id" || 0x00 || tenant || user || key)[:16].
func deviceID(tenant TenantID, u UserID, idKey *keys.IdentitySigningPublicKey) DeviceID {
	h := sha256Sum(labelled(labelDeviceID, nil), tenant[:], u[:], idKey.Bytes())
	return DeviceID(h[:16])
}

// keyHashes returns the hashes under which a request's keys are recorded
// as certified: SHA-256 of each key's tagged encoding, and for the MLS key
// SHA-256 of "mls" || scheme || raw key. No key of any of the three kinds
// is ever certified twice in a tenant.
func keyHashes(r *EnrolmentRequest) [3][32]byte {
	var scheme [2]byte
	binary.BigEndian.PutUint16(scheme[:], r.MLSKey.Scheme())
	return [3][32]byte{
		sha256.Sum256(r.Identity.Signing.Bytes()),
		sha256.Sum256(r.Identity.DH.Bytes()),
		sha256Sum([]byte("mls"), scheme[:], r.MLSKey.raw),
	}
}

// RedeemEnrolmentCode certifies the device of req (§Redeeming a code):
//
//  1. the tenant is not locked by failed attempts (ErrTenantLocked);
//  2. the code exists and its secret matches, compared as hashes in
//     constant time (else ErrBadEnrolmentCode, and the failure counts
//     against the code and the tenant); a code locked by failures stays
//     locked (ErrCodeLocked);
//  3. the code is unused (ErrCodeUsed) and unexpired (ErrCodeExpired);
//  4. the request is self-signed by its identity key
//     (ErrBadProofOfPossession) and the key was never certified in the
//     tenant (ErrKeyReused);
//  5. dual control (§Dual control): a user who has or had a device needs
//     the approval of one of its active devices, or of M distinct admins
//     (a *DualControlError otherwise).
//
// On success the code is spent, the certificate issued, and a DeviceAdded
// (first device, or device-approved) or DeviceRecovered (admin-approved)
// entry appended to the user's timeline.
func (t *Tenant) RedeemEnrolmentCode(code *EnrolmentCode, req *EnrolmentRequest, approvals []*Approval, now time.Time) (*Enrolment, error) {
	now = seconds(now)
	if code == nil || req == nil {
		return nil, fmt.Errorf("org: redeeming enrolment code: %w", ErrInvalidArgument)
	}
	if code.Tenant != t.id || req.Tenant != t.id {
		return nil, fmt.Errorf("org: redeeming enrolment code: %w", ErrWrongTenant)
	}
	if req.Code != code.ID {
		return nil, fmt.Errorf("org: redeeming enrolment code: request names another code: %w", ErrInvalidArgument)
	}
	if t.tenantLocked(now) {
		return nil, fmt.Errorf("org: redeeming enrolment code: %w", ErrTenantLocked)
	}
	rec, ok := t.codes[code.ID]
	if !ok {
		t.recordFailure(now)
		return nil, fmt.Errorf("org: redeeming enrolment code: %w", ErrBadEnrolmentCode)
	}
	if rec.failures >= t.config.CodeFailureLimit {
		return nil, fmt.Errorf("org: redeeming enrolment code: %w", ErrCodeLocked)
	}
	h := secretHash(t.id, code.ID, code.secretBytes())
	if !secretEqual(h[:], rec.hash[:]) {
		rec.failures++
		t.touch(recCode, code.ID[:])
		t.recordFailure(now)
		return nil, fmt.Errorf("org: redeeming enrolment code: %w", ErrBadEnrolmentCode)
	}
	if !code.IssuedAt.IsZero() && !code.IssuedAt.Equal(rec.issuedAt) {
		// The right secret with another issue time: not the code that was
		// issued. Not a guess, so it does not count as a failure.
		return nil, fmt.Errorf("org: redeeming enrolment code: issue time: %w", ErrBadEnrolmentCode)
	}
	if rec.used {
		return nil, fmt.Errorf("org: redeeming enrolment code: %w", ErrCodeUsed)
	}
	if !now.Before(rec.expiresAt) {
		return nil, fmt.Errorf("org: redeeming enrolment code: %w", ErrCodeExpired)
	}
	u, err := t.liveUser(rec.user)
	if err != nil {
		return nil, fmt.Errorf("org: redeeming enrolment code: %w", err)
	}
	if err := req.verify(); err != nil {
		return nil, fmt.Errorf("org: redeeming enrolment code: %w", err)
	}
	khs := keyHashes(req)
	for _, kh := range khs {
		if t.usedKeys[kh] {
			return nil, fmt.Errorf("org: redeeming enrolment code: %w", ErrKeyReused)
		}
	}
	if khs[0] == khs[1] || khs[0] == khs[2] || khs[1] == khs[2] {
		return nil, fmt.Errorf("org: redeeming enrolment code: %w", ErrKeyReused)
	}

	// Dual control.
	recovered := false
	var approvalHashes [][32]byte
	for _, a := range approvals {
		if a == nil {
			return nil, &DualControlError{User: rec.user, Required: t.roster.Threshold, Err: ErrApprovalInvalid}
		}
		ah := sha256.Sum256(a.Signature)
		if t.usedApprovals[ah] {
			return nil, &DualControlError{User: rec.user, Required: t.roster.Threshold, Err: ErrApprovalReplayed}
		}
		approvalHashes = append(approvalHashes, ah)
	}
	activeKey := func(d DeviceID) *keys.IdentitySigningPublicKey {
		dev, ok := u.devices[d]
		if !ok || dev.revoked || now.Before(dev.cert.NotBefore) || !now.Before(dev.cert.NotAfter) {
			return nil
		}
		return dev.cert.Identity.Signing
	}
	byDevice, admins, err := checkApprovals(rec.user, req, approvals, t.roster, activeKey)
	if err != nil {
		return nil, err
	}
	if u.hadDevice && !byDevice {
		switch {
		case len(approvals) == 0:
			return nil, &DualControlError{User: rec.user, Required: t.roster.Threshold, Err: ErrApprovalRequired}
		case admins < t.roster.Threshold:
			return nil, &DualControlError{User: rec.user, Valid: admins, Required: t.roster.Threshold, Err: ErrInsufficientApprovals}
		}
		recovered = true
	}

	// Issue.
	cert := &DeviceCertificate{
		Tenant: t.id, User: rec.user, Device: deviceID(t.id, rec.user, req.Identity.Signing),
		Serial: t.nextSerial, NotBefore: now, NotAfter: now.Add(t.config.CertificateLifetime),
		Identity: req.Identity, MLSKey: req.MLSKey,
	}
	if _, exists := u.devices[cert.Device]; exists {
		return nil, fmt.Errorf("org: redeeming enrolment code: %w", ErrKeyReused)
	}
	if err := issueCertificate(t.signer, cert); err != nil {
		return nil, fmt.Errorf("org: redeeming enrolment code: %w", err)
	}
	// The entry vouches for the user's other current certificates by
	// hash, so that one signature covers every certificate of the value
	// it is published in (§Timeline entries).
	var others [][32]byte
	for _, d := range u.devices {
		if !d.revoked {
			h, err := CertificateHash(d.cert)
			if err != nil {
				return nil, fmt.Errorf("org: redeeming enrolment code: %w", err)
			}
			others = append(others, h)
		}
	}
	slices.SortFunc(others, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	if len(others) > maxOtherCertificates {
		others = nil // each certificate then keeps its own signature check
	}
	var action Action = &DeviceAdded{Code: code.ID, Certificate: cert, Others: others}
	if recovered {
		action = &DeviceRecovered{Code: code.ID, Certificate: cert, Others: others}
	}
	actors := []Actor{{Kind: ActorAdmin, ID: rec.issuedBy}, {Kind: ActorDevice, ID: cert.Device}}
	e, head, err := t.newEntry(rec.user, u.head, now, actors, approvals, action)
	if err != nil {
		return nil, fmt.Errorf("org: redeeming enrolment code: %w", err)
	}

	// Commit.
	rec.used = true
	t.touch(recCode, code.ID[:])
	t.nextSerial++
	for _, kh := range khs {
		t.usedKeys[kh] = true
		t.touch(recUsedKey, kh[:])
	}
	for _, ah := range approvalHashes {
		t.usedApprovals[ah] = true
		t.touch(recUsedApproval, ah[:])
	}
	u.devices[cert.Device] = &device{cert: cert, serials: []uint64{cert.Serial}}
	u.hadDevice = true
	t.appendTo(u, []*Entry{e}, head)
	return &Enrolment{User: rec.user, Certificate: cert, Entry: e, TrustBundle: t.trust}, nil
}

// ---------------------------------------------------------------------------
// Devices

// DeviceRevocation is the result of revoking a device: the signed
// revocation for relays and clients, the signed wipe instruction for the
// device itself, and the DeviceRevoked timeline entry.
type DeviceRevocation struct {
	Revocation *Revocation
	Wipe       *WipeInstruction
	Entry      *Entry
}

// revocation signs the three objects of a device revocation after head.
func (t *Tenant) revocation(actor AdminID, id UserID, head TimelineHead, devID DeviceID, d *device, reason RevocationReason, now time.Time) (*DeviceRevocation, TimelineHead, error) {
	r := &Revocation{Tenant: t.id, User: id, Device: devID, Serials: slices.Clone(d.serials), RevokedAt: now, Reason: reason}
	if err := signStatement(t.signer, labelRevocation, r.body, &r.Signature); err != nil {
		return nil, head, err
	}
	w := &WipeInstruction{Tenant: t.id, User: id, Device: devID, Serial: d.cert.Serial, IssuedAt: now}
	if err := signStatement(t.signer, labelWipeInstruction, w.body, &w.Signature); err != nil {
		return nil, head, err
	}
	e, head, err := t.newEntry(id, head, now, adminActor(actor), nil, &DeviceRevoked{Device: devID, Serials: slices.Clone(d.serials), Reason: reason})
	if err != nil {
		return nil, head, err
	}
	return &DeviceRevocation{Revocation: r, Wipe: w, Entry: e}, head, nil
}

// RevokeDevice revokes one of a user's devices: every certificate it was
// issued is void, it leaves the user's published certificates at the next
// Publish, and a DeviceRevoked entry is appended to the timeline (T45).
func (t *Tenant) RevokeDevice(actor AdminID, id UserID, devID DeviceID, reason RevocationReason, now time.Time) (*DeviceRevocation, error) {
	now = seconds(now)
	if err := t.checkActor(actor); err != nil {
		return nil, fmt.Errorf("org: revoking device: %w", err)
	}
	if !reason.valid() {
		return nil, fmt.Errorf("org: revoking device: %w", ErrInvalidArgument)
	}
	u, err := t.liveUser(id)
	if err != nil {
		return nil, fmt.Errorf("org: revoking device: %w", err)
	}
	d, ok := u.devices[devID]
	if !ok {
		return nil, fmt.Errorf("org: revoking device %s: %w", devID, ErrUnknownDevice)
	}
	if d.revoked {
		return nil, fmt.Errorf("org: revoking device %s: %w", devID, ErrDeviceRevoked)
	}
	r, head, err := t.revocation(actor, id, u.head, devID, d, reason, now)
	if err != nil {
		return nil, fmt.Errorf("org: revoking device %s: %w", devID, err)
	}
	d.revoked, d.revokedAt = true, now
	t.appendTo(u, []*Entry{r.Entry}, head)
	return r, nil
}

// RenewCertificate issues a new certificate, with a new serial and a fresh
// validity period, for the same keys of an active device. The keys do not
// change, so no timeline entry is added; the new certificate replaces the
// old in the user's value at the next Publish.
func (t *Tenant) RenewCertificate(actor AdminID, id UserID, devID DeviceID, now time.Time) (*DeviceCertificate, error) {
	now = seconds(now)
	if err := t.checkActor(actor); err != nil {
		return nil, fmt.Errorf("org: renewing certificate: %w", err)
	}
	u, err := t.liveUser(id)
	if err != nil {
		return nil, fmt.Errorf("org: renewing certificate: %w", err)
	}
	d, ok := u.devices[devID]
	if !ok {
		return nil, fmt.Errorf("org: renewing certificate of %s: %w", devID, ErrUnknownDevice)
	}
	if d.revoked {
		return nil, fmt.Errorf("org: renewing certificate of %s: %w", devID, ErrDeviceRevoked)
	}
	c, err := t.reissue(t.signer, d, t.nextSerial, now)
	if err != nil {
		return nil, fmt.Errorf("org: renewing certificate of %s: %w", devID, err)
	}
	t.nextSerial++
	d.cert, d.ref, d.serials = c, 0, append(d.serials, c.Serial)
	u.dirty = true
	t.touchUser(u)
	return c, nil
}

func (t *Tenant) reissue(s Signer, d *device, serial uint64, now time.Time) (*DeviceCertificate, error) {
	old := d.cert
	c := &DeviceCertificate{
		Tenant: old.Tenant, User: old.User, Device: old.Device, Serial: serial,
		NotBefore: now, NotAfter: now.Add(t.config.CertificateLifetime), Identity: old.Identity, MLSKey: old.MLSKey,
	}
	if err := issueCertificate(s, c); err != nil {
		return nil, err
	}
	return c, nil
}

// ---------------------------------------------------------------------------
// Policies

// PublishPolicy signs a new version of the policy bundle id, and appends a
// PolicyChanged entry to the timeline of every user assigned to it.
func (t *Tenant) PublishPolicy(actor AdminID, id string, entries []PolicyEntry, now time.Time) (*PolicyBundle, error) {
	now = seconds(now)
	if err := t.checkActor(actor); err != nil {
		return nil, fmt.Errorf("org: publishing policy: %w", err)
	}
	es := slices.Clone(entries)
	slices.SortFunc(es, func(a, b PolicyEntry) int { return bytes.Compare([]byte(a.Key), []byte(b.Key)) })
	seq := uint64(1)
	if old := t.policies[id]; old != nil {
		seq = old.Sequence + 1
	}
	p := &PolicyBundle{Header: Header{Tenant: t.id, Sequence: seq, IssuedAt: now}, PolicyID: id, Entries: es}
	if _, err := p.body(); err != nil {
		return nil, fmt.Errorf("org: publishing policy: %w", ErrInvalidArgument)
	}
	if err := signStatement(t.signer, labelPolicyBundle, p.body, &p.Signature); err != nil {
		return nil, fmt.Errorf("org: publishing policy: %w", err)
	}
	change, err := policyChange(p)
	if err != nil {
		return nil, err
	}
	type pend struct {
		u    *user
		e    *Entry
		head TimelineHead
	}
	var updates []pend
	for _, uid := range t.sortedUsers() {
		u := t.users[uid]
		if u.removed || u.policy != id {
			continue
		}
		e, head, err := t.newEntry(uid, u.head, now, adminActor(actor), nil, change)
		if err != nil {
			return nil, fmt.Errorf("org: publishing policy: %w", err)
		}
		updates = append(updates, pend{u, e, head})
	}
	t.policies[id] = p
	t.touch(recPolicy, policyKeyID(id))
	t.orgDirty[OrgLabelPolicyPrefix+id] = true
	for _, up := range updates {
		t.appendTo(up.u, []*Entry{up.e}, up.head)
	}
	return p, nil
}

func policyChange(p *PolicyBundle) (*PolicyChanged, error) {
	enc, err := p.Marshal()
	if err != nil {
		return nil, err
	}
	return &PolicyChanged{PolicyID: p.PolicyID, PolicySequence: p.Sequence, PolicyHash: sha256.Sum256(enc)}, nil
}

// AssignPolicy makes the user subject to the policy bundle id ("" for
// none), recorded as a PolicyChanged entry.
func (t *Tenant) AssignPolicy(actor AdminID, uid UserID, id string, now time.Time) (*Entry, error) {
	now = seconds(now)
	if err := t.checkActor(actor); err != nil {
		return nil, fmt.Errorf("org: assigning policy: %w", err)
	}
	u, err := t.liveUser(uid)
	if err != nil {
		return nil, fmt.Errorf("org: assigning policy: %w", err)
	}
	change := &PolicyChanged{}
	if id != "" {
		p := t.policies[id]
		if p == nil {
			return nil, fmt.Errorf("org: assigning policy %q: %w", id, ErrInvalidArgument)
		}
		if change, err = policyChange(p); err != nil {
			return nil, err
		}
	}
	e, head, err := t.newEntry(uid, u.head, now, adminActor(actor), nil, change)
	if err != nil {
		return nil, fmt.Errorf("org: assigning policy: %w", err)
	}
	u.policy = id
	t.appendTo(u, []*Entry{e}, head)
	return e, nil
}

// SetEscrowPolicy publishes p, signed by its auditors, as the tenant's new
// escrow policy (docs/spec/org.md §Escrow policy): p names the tenant, its
// PolicyVersion is one more than the current policy's (1 for the first),
// at least M of its auditors signed it and, if it replaces the current
// policy's auditor set, at least the current M of the current auditors
// too. The CA then signs it with its Header, which is filled in here; it
// is published at the next Publish. A policy that fails the auditor
// checks is an *AuditorSignatureError, a stale one ErrStatementSequence.
func (t *Tenant) SetEscrowPolicy(actor AdminID, p *EscrowPolicy, now time.Time) (*EscrowPolicy, error) {
	now = seconds(now)
	if err := t.checkActor(actor); err != nil {
		return nil, fmt.Errorf("org: setting escrow policy: %w", err)
	}
	if p == nil {
		return nil, fmt.Errorf("org: setting escrow policy: %w", ErrInvalidArgument)
	}
	if p.Tenant != t.id {
		return nil, fmt.Errorf("org: setting escrow policy: %w", ErrWrongTenant)
	}
	seq, version := uint64(1), uint64(1)
	if t.escrow != nil {
		seq, version = t.escrow.Sequence+1, t.escrow.PolicyVersion+1
	}
	if p.PolicyVersion != version {
		return nil, fmt.Errorf("org: setting escrow policy version %d, want %d: %w", p.PolicyVersion, version, ErrStatementSequence)
	}
	np := cloneEscrowPolicy(p)
	np.Header = Header{Tenant: t.id, Sequence: seq, IssuedAt: now}
	np.Signature = nil
	if _, err := np.body(); err != nil {
		return nil, fmt.Errorf("org: setting escrow policy: %w", ErrInvalidArgument)
	}
	if err := np.verifyAuditors(); err != nil {
		return nil, fmt.Errorf("org: setting escrow policy: %w", err)
	}
	if t.escrow == nil {
		if len(np.PreviousSignatures) > 0 {
			return nil, fmt.Errorf("org: setting the first escrow policy: previous signatures: %w", ErrInvalidArgument)
		}
	} else if err := np.VerifyContinuity(t.escrow); err != nil {
		return nil, fmt.Errorf("org: setting escrow policy: %w", err)
	}
	if err := signStatement(t.signer, labelEscrowPolicy, np.body, &np.Signature); err != nil {
		return nil, fmt.Errorf("org: setting escrow policy: %w", err)
	}
	t.escrow = np
	t.orgDirty[OrgLabelEscrowPolicy] = true
	return np, nil
}

// cloneEscrowPolicy copies p deeply enough that the caller's slices are
// not shared.
func cloneEscrowPolicy(p *EscrowPolicy) *EscrowPolicy {
	np := *p
	np.Auditors = slices.Clone(p.Auditors)
	np.Classes = slices.Clone(p.Classes)
	np.Witnesses.Witnesses = slices.Clone(p.Witnesses.Witnesses)
	np.Keys = slices.Clone(p.Keys)
	for i := range np.Keys {
		np.Keys[i].ShareHashes = slices.Clone(np.Keys[i].ShareHashes)
	}
	np.AuditorSignatures = slices.Clone(p.AuditorSignatures)
	np.PreviousSignatures = slices.Clone(p.PreviousSignatures)
	return &np
}

// ---------------------------------------------------------------------------
// Roster and CA

// ProposeRoster returns the unsigned roster that replaces cur by admins
// (in any order) and threshold, issued at now, for the admins to approve
// (ApproveRoster) and UpdateRoster to apply. A threshold below 2 or above
// the number of admins is ErrRosterTooSmall: a roster change never leaves
// fewer admins than the threshold.
func ProposeRoster(cur *AdminRoster, admins []*AdminKey, threshold int, now time.Time) (*AdminRoster, error) {
	if threshold < 2 || threshold > len(admins) {
		return nil, fmt.Errorf("org: proposing roster: %d admins, threshold %d: %w", len(admins), threshold, ErrRosterTooSmall)
	}
	as := slices.Clone(admins)
	SortAdmins(as)
	r := &AdminRoster{Header: Header{Tenant: cur.Tenant, Sequence: cur.Sequence + 1, IssuedAt: seconds(now)}, Threshold: threshold, Admins: as}
	if now.Before(cur.IssuedAt) {
		r.IssuedAt = cur.IssuedAt
	}
	if _, err := r.body(); err != nil {
		return nil, fmt.Errorf("org: proposing roster: %w", ErrInvalidArgument)
	}
	return r, nil
}

// UpdateRoster replaces the admin roster by proposed, which must be the
// tenant's, numbered one more than the current roster (else
// ErrInvalidArgument and ErrStatementSequence), issued no earlier than it,
// with at least as many admins as its threshold (ErrRosterTooSmall), and
// approved by at least the current threshold of distinct current admins,
// each signing RosterApprovalMessage(proposed). So no admin, alone, can
// add admins until dual control is theirs.
func (t *Tenant) UpdateRoster(proposed *AdminRoster, approvals []*Approval) (*AdminRoster, error) {
	if proposed == nil || proposed.Tenant != t.id || proposed.IssuedAt.Before(t.roster.IssuedAt) {
		return nil, fmt.Errorf("org: updating roster: %w", ErrInvalidArgument)
	}
	if proposed.Sequence != t.roster.Sequence+1 {
		return nil, fmt.Errorf("org: updating roster: %w: %w", ErrInvalidArgument, ErrStatementSequence)
	}
	if proposed.Threshold < 2 || proposed.Threshold > len(proposed.Admins) {
		return nil, fmt.Errorf("org: updating roster: %w", ErrRosterTooSmall)
	}
	msg, err := RosterApprovalMessage(proposed)
	if err != nil {
		return nil, fmt.Errorf("org: updating roster: %w", ErrInvalidArgument)
	}
	if err := t.checkAdminApprovals(msg, approvals); err != nil {
		return nil, fmt.Errorf("org: updating roster: %w", err)
	}
	r := &AdminRoster{Header: proposed.Header, Threshold: proposed.Threshold, Admins: slices.Clone(proposed.Admins)}
	if err := signStatement(t.signer, labelAdminRoster, r.body, &r.Signature); err != nil {
		return nil, fmt.Errorf("org: updating roster: %w", err)
	}
	t.roster = r
	t.orgDirty[OrgLabelAdminRoster] = true
	return r, nil
}

// CARotationResult is what RotateCA produces besides the new state.
type CARotationResult struct {
	Rotation     *CARotation
	TrustBundle  *TrustBundle         // the new bundle, signed by the new CA
	Certificates []*DeviceCertificate // every active device, re-issued by the new CA
}

// ProposeCA returns the unsigned trust bundle of a rotation to the CA key
// next, for the admins to approve (§CA rotation): the current bundle with
// the next sequence number, issued at now, naming next.
func (t *Tenant) ProposeCA(next *keys.OrgPublicKey, now time.Time) (*TrustBundle, error) {
	if next == nil || next.Equal(t.trust.CA) {
		return nil, fmt.Errorf("org: proposing CA: %w", ErrInvalidArgument)
	}
	p := t.nextBundle(now)
	p.CA = next
	if _, err := p.body(); err != nil {
		return nil, fmt.Errorf("org: proposing CA: %w", ErrInvalidArgument)
	}
	return p, nil
}

// RotateCA moves the tenant to the CA key held by next (§CA rotation),
// under dual control: proposed must be the bundle ProposeCA returns for
// next.Public() (differing from the current bundle only in its CA key, its
// sequence, one more, and its issue time), approved by at least the
// roster's threshold of distinct admins (TrustBundleApprovalMessage). The
// old CA signs a CARotation naming the new key, and the new key signs it
// too. The trust bundle (proposed), the roster, the policy bundles, the
// escrow policy and the org chart are signed by the new key with new
// sequence numbers; every active device's certificate is re-issued with
// the same keys and a new serial; outstanding enrolment codes, which carry
// the old bundle's fingerprint, are cancelled. Unpublished timeline
// entries must be published first (ErrPendingUpdates).
func (t *Tenant) RotateCA(proposed *TrustBundle, approvals []*Approval, next Signer, now time.Time) (*CARotationResult, error) {
	now = seconds(now)
	cur := t.trust
	if next == nil || next.Public() == nil || next.Public().Equal(cur.CA) || proposed == nil || proposed.CA == nil ||
		!proposed.CA.Equal(next.Public()) || proposed.Tenant != t.id || proposed.Sequence != cur.Sequence+1 ||
		proposed.LogOrigin != cur.LogOrigin || proposed.Log == nil || !proposed.Log.Equal(cur.Log) ||
		proposed.VRF == nil || !proposed.VRF.Equal(cur.VRF) || !sameWitnesses(&proposed.Witnesses, &cur.Witnesses) ||
		proposed.IssuedAt.Before(cur.IssuedAt) {
		return nil, fmt.Errorf("org: rotating CA: %w", ErrInvalidArgument)
	}
	msg, err := TrustBundleApprovalMessage(proposed)
	if err != nil {
		return nil, fmt.Errorf("org: rotating CA: %w", ErrInvalidArgument)
	}
	if err := t.checkAdminApprovals(msg, approvals); err != nil {
		return nil, fmt.Errorf("org: rotating CA: %w", err)
	}
	for _, u := range t.users {
		if len(u.pending) > 0 {
			return nil, ErrPendingUpdates
		}
	}
	if err := t.bundleSettled(); err != nil {
		return nil, fmt.Errorf("org: rotating CA: %w", err)
	}
	seq := uint64(1)
	if t.rotation != nil {
		seq = t.rotation.Sequence + 1
	}
	rot := &CARotation{Header: Header{Tenant: t.id, Sequence: seq, IssuedAt: now}, Old: t.trust.CA, New: next.Public()}
	body, err := rot.body()
	if err != nil {
		return nil, fmt.Errorf("org: rotating CA: %w", err)
	}
	if rot.OldSignature, err = signCA(t.signer, labelCARotation, body); err != nil {
		return nil, fmt.Errorf("org: rotating CA: old key: %w", err)
	}
	if rot.NewSignature, err = signCA(next, labelCARotation, body); err != nil {
		return nil, fmt.Errorf("org: rotating CA: new key: %w", err)
	}
	trust := *proposed
	trust.Witnesses.Witnesses = slices.Clone(proposed.Witnesses.Witnesses)
	if err := signTrustBundle(next, &trust); err != nil {
		return nil, fmt.Errorf("org: rotating CA: %w", err)
	}
	roster := *t.roster
	roster.Sequence++
	roster.IssuedAt = now
	if err := signStatement(next, labelAdminRoster, roster.body, &roster.Signature); err != nil {
		return nil, fmt.Errorf("org: rotating CA: %w", err)
	}
	policies := make(map[string]*PolicyBundle, len(t.policies))
	for id, p := range t.policies {
		np := *p
		np.Sequence++
		np.IssuedAt = now
		if err := signStatement(next, labelPolicyBundle, np.body, &np.Signature); err != nil {
			return nil, fmt.Errorf("org: rotating CA: %w", err)
		}
		policies[id] = &np
	}
	var escrow *EscrowPolicy
	if t.escrow != nil {
		np := *t.escrow
		np.Sequence++
		np.IssuedAt = now
		if err := signStatement(next, labelEscrowPolicy, np.body, &np.Signature); err != nil {
			return nil, fmt.Errorf("org: rotating CA: %w", err)
		}
		escrow = &np
	}
	type reissued struct {
		d *device
		c *DeviceCertificate
		u *user
	}
	var certs []reissued
	serial := t.nextSerial
	for _, uid := range t.sortedUsers() {
		u := t.users[uid]
		for _, did := range sortedDevices(u) {
			d := u.devices[did]
			if d.revoked {
				continue
			}
			c, err := t.reissue(next, d, serial, now)
			if err != nil {
				return nil, fmt.Errorf("org: rotating CA: %w", err)
			}
			serial++
			certs = append(certs, reissued{d, c, u})
		}
	}
	// Commit.
	res := &CARotationResult{Rotation: rot, TrustBundle: &trust}
	for id := range t.policies {
		t.touch(recPolicy, policyKeyID(id))
	}
	for id := range policies {
		t.touch(recPolicy, policyKeyID(id))
	}
	t.signer, t.rotation, t.trust, t.roster, t.policies, t.escrow = next, rot, &trust, &roster, policies, escrow
	t.nextSerial = serial
	for _, r := range certs {
		r.d.cert, r.d.ref, r.d.serials = r.c, 0, append(r.d.serials, r.c.Serial)
		r.u.dirty = true
		t.touchUser(r.u)
		res.Certificates = append(res.Certificates, r.c)
	}
	for id := range t.codes {
		t.touch(recCode, id[:])
	}
	clear(t.codes)
	t.chartDirty = true
	for _, l := range []string{OrgLabelCARotation, OrgLabelTrustBundle, OrgLabelAdminRoster} {
		t.orgDirty[l] = true
	}
	for id := range t.policies {
		t.orgDirty[OrgLabelPolicyPrefix+id] = true
	}
	if t.escrow != nil {
		t.orgDirty[OrgLabelEscrowPolicy] = true
	}
	return res, nil
}

// ---------------------------------------------------------------------------
// Publishing

// Label names a key-directory label: a user's, or an org label.
type Label struct {
	User UserID // non-zero for a user label
	Org  string // non-empty for an org label
}

// Update is a new value for a label, to be written into the verifiable map
// at the next epoch.
type Update struct {
	Label Label
	Value []byte
}

// Publish returns the label values that changed since the last Publish, in
// a fixed order (org labels by name, then users by id), and marks them
// published (§Publishing). It signs a new org chart if the chart changed.
// The service writes the updates and the tenant's new state in the same
// durable commit as the epoch; if that commit fails, it must reload the
// state from before Publish.
func (t *Tenant) Publish(now time.Time) ([]Update, error) {
	now = seconds(now)
	var chart *OrgChart
	if t.chartDirty {
		chart = t.buildChart(now)
		if err := signStatement(t.signer, labelOrgChart, chart.body, &chart.Signature); err != nil {
			return nil, fmt.Errorf("org: publishing: org chart: %w", err)
		}
	}
	org := map[string][]byte{}
	if chart != nil {
		enc, err := chart.Marshal()
		if err != nil {
			return nil, err
		}
		org[OrgLabelOrgChart] = enc
	}
	for l := range t.orgDirty {
		enc, err := t.orgValue(l)
		if err != nil {
			return nil, fmt.Errorf("org: publishing %s: %w", l, err)
		}
		org[l] = enc
	}
	var out []Update
	names := make([]string, 0, len(org))
	for l := range org {
		names = append(names, l)
	}
	slices.Sort(names)
	for _, l := range names {
		out = append(out, Update{Label: Label{Org: l}, Value: org[l]})
	}
	// Every dirty user is a changed record (appendTo, touchUser): only
	// those are visited, not every user of the tenant.
	dirty := t.dirtyUsers()
	for _, uid := range dirty {
		u := t.users[uid]
		v := t.userValue(uid, u)
		enc, err := v.Marshal()
		if err != nil {
			return nil, fmt.Errorf("org: publishing user %s: %w", uid, err)
		}
		out = append(out, Update{Label: Label{User: uid}, Value: enc})
	}
	// Commit.
	if chart != nil {
		t.chart = chart
	}
	t.chartDirty = false
	clear(t.orgDirty)
	for _, uid := range dirty {
		u := t.users[uid]
		u.pending, u.dirty = nil, false
	}
	return out, nil
}

func (t *Tenant) orgValue(l string) ([]byte, error) {
	switch l {
	case OrgLabelTrustBundle:
		return t.trust.Marshal()
	case OrgLabelAdminRoster:
		return t.roster.Marshal()
	case OrgLabelCARotation:
		return t.rotation.Marshal()
	case OrgLabelEscrowPolicy:
		return t.escrow.Marshal()
	}
	if id, ok := cutPolicyLabel(l); ok && t.policies[id] != nil {
		return t.policies[id].Marshal()
	}
	return nil, ErrInvalidArgument
}

func cutPolicyLabel(l string) (string, bool) {
	if len(l) > len(OrgLabelPolicyPrefix) && l[:len(OrgLabelPolicyPrefix)] == OrgLabelPolicyPrefix {
		return l[len(OrgLabelPolicyPrefix):], true
	}
	return "", false
}

func (t *Tenant) buildChart(now time.Time) *OrgChart {
	seq := uint64(1)
	if t.chart != nil {
		seq = t.chart.Sequence + 1
	}
	c := &OrgChart{Header: Header{Tenant: t.id, Sequence: seq, IssuedAt: now}}
	for id, d := range t.departments {
		c.Departments = append(c.Departments, Department{ID: id, Parent: d.parent, Name: d.name})
	}
	slices.SortFunc(c.Departments, func(a, b Department) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	for _, uid := range t.sortedUsers() {
		if u := t.users[uid]; !u.removed {
			c.Members = append(c.Members, Member{User: uid, Department: u.department, DisplayName: u.displayName})
		}
	}
	return c
}

func (t *Tenant) userValue(uid UserID, u *user) *UserValue {
	v := &UserValue{Tenant: t.id, User: uid, Entries: u.pending, Head: u.head}
	for _, did := range sortedDevices(u) {
		if d := u.devices[did]; !d.revoked {
			v.Certificates = append(v.Certificates, d.cert)
		}
	}
	return v
}

func (t *Tenant) sortedUsers() []UserID {
	ids := make([]UserID, 0, len(t.users))
	for id := range t.users {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b UserID) int { return bytes.Compare(a[:], b[:]) })
	return ids
}

// UserValue returns the user's current value as Publish would encode it,
// with the entries not yet published.
func (t *Tenant) UserValue(uid UserID) (*UserValue, error) {
	u, ok := t.users[uid]
	if !ok {
		return nil, ErrUnknownUser
	}
	return t.userValue(uid, u), nil
}
