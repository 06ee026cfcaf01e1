package org

import (
	"bytes"
	"crypto/subtle"
	"slices"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"golang.org/x/crypto/cryptobyte"
)

// Signed org statements (docs/spec/org.md §Org statements): values the key
// directory publishes under org labels, each signed by the org CA and
// numbered, so that a client refuses an older one after a newer.

// Header starts every org statement.
type Header struct {
	Tenant   TenantID
	Sequence uint64 // ≥ 1; +1 for each new statement of the same label
	IssuedAt time.Time
}

//	struct {
//	    uint8  type;                  /* the statement's type byte */
//	    uint8  version = 1;
//	    opaque tenant[16];
//	    uint64 sequence;
//	    uint64 issued_at;
//	} StatementHeader;

func addHeader(b *cryptobyte.Builder, typ uint8, h *Header) {
	if h.Tenant.IsZero() || h.Sequence == 0 {
		b.SetError(errEncode)
	}
	b.AddUint8(typ)
	b.AddUint8(version1)
	addID(b, h.Tenant[:])
	b.AddUint64(h.Sequence)
	addTime(b, h.IssuedAt)
}

func readHeader(s *cryptobyte.String, typ uint8, h *Header) bool {
	var t, v uint8
	return s.ReadUint8(&t) && t == typ && s.ReadUint8(&v) && v == version1 &&
		readID(s, (*[16]byte)(&h.Tenant)) && !h.Tenant.IsZero() &&
		s.ReadUint64(&h.Sequence) && h.Sequence != 0 && readTime(s, &h.IssuedAt)
}

func verifyStatement(ca *keys.OrgPublicKey, tenant TenantID, h *Header, label string, body func() ([]byte, error), sig []byte) error {
	if h.Tenant != tenant {
		return ErrWrongTenant
	}
	b, err := body()
	if err != nil {
		return ErrMalformed
	}
	return verifyCA(ca, label, b, sig)
}

// parseSigned splits data into body and signature and runs parse on the
// body, which must consume it entirely.
func parseSigned[T any](what string, data []byte, parse func(*cryptobyte.String, []byte) (*T, error)) (*T, error) {
	body, sig, ok := splitSigned(data)
	if !ok {
		return nil, &parseError{what: what}
	}
	s := cryptobyte.String(body)
	v, err := parse(&s, clone(sig))
	if err == nil && !s.Empty() {
		err = ErrMalformed
	}
	if err != nil {
		return nil, parseErr(what, err)
	}
	return v, nil
}

func marshalSigned(body func() ([]byte, error), sig []byte) ([]byte, error) {
	b, err := body()
	if err != nil {
		return nil, err
	}
	return joinSigned(b, sig)
}

// Durations are whole seconds, encoded as uint64 (§Times).
const maxDurationSeconds = uint64(1<<63-1) / uint64(time.Second)

func addDuration(b *cryptobyte.Builder, d time.Duration) {
	if d < 0 || d%time.Second != 0 {
		b.SetError(errEncode)
		return
	}
	b.AddUint64(uint64(d / time.Second))
}

func readDuration(s *cryptobyte.String, out *time.Duration) bool {
	var v uint64
	if !s.ReadUint64(&v) || v > maxDurationSeconds {
		return false
	}
	*out = time.Duration(v) * time.Second
	return true
}

// ---------------------------------------------------------------------------
// Admin roster

// AdminRoster is the tenant's set of admins and the number M of distinct
// admin approvals that dual control requires (§Admin roster). M ≥ 2, so a
// single admin can never add a device to a user who has one.
type AdminRoster struct {
	Header
	Threshold int         // M
	Admins    []*AdminKey // N = len(Admins), sorted by id
	Signature []byte
}

//	struct {
//	    StatementHeader header;      /* type 0x36 */
//	    uint8 threshold;             /* M: 2 ≤ M ≤ N */
//	    AdminKey admins<1..2^24-1>;  /* N ≤ 255, sorted by id */
//	} AdminRosterBody;

func checkAdmins(admins []*AdminKey, threshold int) error {
	n := len(admins)
	if n > 255 || threshold < 2 || threshold > n {
		return ErrInvalidArgument
	}
	for i, a := range admins {
		if a == nil {
			return ErrInvalidArgument
		}
		if i > 0 && bytes.Compare(admins[i-1].id[:], a.id[:]) >= 0 {
			return ErrInvalidArgument
		}
		for _, o := range admins[:i] {
			if subtle.ConstantTimeCompare(o.raw[:32], a.raw[:32]) == 1 {
				return ErrInvalidArgument // one key counted twice
			}
		}
	}
	return nil
}

// SortAdmins sorts admin keys by id, as the roster encoding requires.
func SortAdmins(admins []*AdminKey) {
	slices.SortFunc(admins, func(a, b *AdminKey) int { return bytes.Compare(a.id[:], b.id[:]) })
}

func (r *AdminRoster) body() ([]byte, error) {
	return build(func(b *cryptobyte.Builder) {
		addHeader(b, typeAdminRoster, &r.Header)
		if checkAdmins(r.Admins, r.Threshold) != nil {
			b.SetError(errEncode)
			return
		}
		b.AddUint8(uint8(r.Threshold))
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, a := range r.Admins {
				addAdminKey(b, a)
			}
		})
	})
}

// Marshal returns the AdminRoster encoding.
func (r *AdminRoster) Marshal() ([]byte, error) { return marshalSigned(r.body, r.Signature) }

// Verify checks that r is tenant's and signed by ca.
func (r *AdminRoster) Verify(ca *keys.OrgPublicKey, tenant TenantID) error {
	return verifyStatement(ca, tenant, &r.Header, labelAdminRoster, r.body, r.Signature)
}

// Admin returns the admin with id, or nil.
func (r *AdminRoster) Admin(id AdminID) *AdminKey {
	for _, a := range r.Admins {
		if a.id == id {
			return a
		}
	}
	return nil
}

// ParseAdminRoster parses an AdminRoster encoding strictly.
func ParseAdminRoster(data []byte) (*AdminRoster, error) {
	return parseSigned("admin roster", data, func(s *cryptobyte.String, sig []byte) (*AdminRoster, error) {
		r := &AdminRoster{Signature: sig}
		var m uint8
		var list cryptobyte.String
		if !readHeader(s, typeAdminRoster, &r.Header) || !s.ReadUint8(&m) || !s.ReadUint24LengthPrefixed(&list) {
			return nil, ErrMalformed
		}
		r.Threshold = int(m)
		for !list.Empty() {
			a, err := readAdminKey(&list)
			if err != nil {
				return nil, err
			}
			r.Admins = append(r.Admins, a)
			if len(r.Admins) > 255 {
				return nil, ErrMalformed
			}
		}
		if checkAdmins(r.Admins, r.Threshold) != nil {
			return nil, ErrMalformed
		}
		return r, nil
	})
}

// ---------------------------------------------------------------------------
// Org chart

// Department is a node of the department tree.
type Department struct {
	ID     DepartmentID
	Parent DepartmentID // zero for a top-level department
	Name   string
}

// Member is a user's entry in the org chart: the only place a display name
// appears.
type Member struct {
	User        UserID
	Department  DepartmentID // zero for none
	DisplayName string
}

// OrgChart is the tenant's department tree and its members' display names
// (§Org chart).
type OrgChart struct {
	Header
	Departments []Department // sorted by id
	Members     []Member     // sorted by user id
	Signature   []byte
}

//	struct {
//	    opaque id[16];
//	    opaque parent[16];              /* zero: top level */
//	    opaque name<1..255>;
//	} Department;
//
//	struct {
//	    opaque user[16];
//	    opaque department[16];          /* zero: none */
//	    opaque display_name<1..255>;
//	} Member;
//
//	struct {
//	    StatementHeader header;         /* type 0x37 */
//	    Department departments<0..2^24-1>;
//	    Member members<0..2^24-1>;
//	} OrgChartBody;

// check enforces §Org chart: ids non-zero and strictly increasing,
// parents present and acyclic, member departments present.
func (c *OrgChart) check() error {
	idx := make(map[DepartmentID]int, len(c.Departments))
	for i, d := range c.Departments {
		if d.ID.IsZero() || !validText(d.Name) || (i > 0 && bytes.Compare(c.Departments[i-1].ID[:], d.ID[:]) >= 0) {
			return ErrMalformed
		}
		idx[d.ID] = i
	}
	if !acyclic(c.Departments, idx) {
		return ErrMalformed
	}
	for i, m := range c.Members {
		if m.User.IsZero() || !validText(m.DisplayName) || (i > 0 && bytes.Compare(c.Members[i-1].User[:], m.User[:]) >= 0) {
			return ErrMalformed
		}
		if _, ok := idx[m.Department]; !m.Department.IsZero() && !ok {
			return ErrMalformed
		}
	}
	return nil
}

func (c *OrgChart) body() ([]byte, error) {
	return build(func(b *cryptobyte.Builder) {
		addHeader(b, typeOrgChart, &c.Header)
		if c.check() != nil {
			b.SetError(errEncode)
			return
		}
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, d := range c.Departments {
				addID(b, d.ID[:])
				addID(b, d.Parent[:])
				addText(b, d.Name)
			}
		})
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, m := range c.Members {
				addID(b, m.User[:])
				addID(b, m.Department[:])
				addText(b, m.DisplayName)
			}
		})
	})
}

// Marshal returns the OrgChart encoding.
func (c *OrgChart) Marshal() ([]byte, error) { return marshalSigned(c.body, c.Signature) }

// Verify checks that c is tenant's and signed by ca.
func (c *OrgChart) Verify(ca *keys.OrgPublicKey, tenant TenantID) error {
	return verifyStatement(ca, tenant, &c.Header, labelOrgChart, c.body, c.Signature)
}

// ParseOrgChart parses an OrgChart encoding strictly.
func ParseOrgChart(data []byte) (*OrgChart, error) {
	return parseSigned("org chart", data, func(s *cryptobyte.String, sig []byte) (*OrgChart, error) {
		c := &OrgChart{Signature: sig}
		var deps, mems cryptobyte.String
		if !readHeader(s, typeOrgChart, &c.Header) || !s.ReadUint24LengthPrefixed(&deps) || !s.ReadUint24LengthPrefixed(&mems) {
			return nil, ErrMalformed
		}
		for !deps.Empty() {
			var d Department
			if !readID(&deps, (*[16]byte)(&d.ID)) || !readID(&deps, (*[16]byte)(&d.Parent)) || !readText(&deps, &d.Name) {
				return nil, ErrMalformed
			}
			c.Departments = append(c.Departments, d)
		}
		for !mems.Empty() {
			var m Member
			if !readID(&mems, (*[16]byte)(&m.User)) || !readID(&mems, (*[16]byte)(&m.Department)) || !readText(&mems, &m.DisplayName) {
				return nil, ErrMalformed
			}
			c.Members = append(c.Members, m)
		}
		if c.check() != nil {
			return nil, ErrMalformed
		}
		return c, nil
	})
}

// ---------------------------------------------------------------------------
// Policy bundles

// PolicyEntry is one key/value pair of a policy bundle.
type PolicyEntry struct {
	Key   string // text
	Value []byte // opaque to this package
}

// PolicyBundle is a named set of policy values, such as a DLP word list
// (§Policy bundles). The directory publishes it under the org label of its
// PolicyID; its sequence counts versions of that policy.
type PolicyBundle struct {
	Header
	PolicyID  string
	Entries   []PolicyEntry // sorted by key, keys distinct
	Signature []byte
}

//	struct {
//	    opaque key<1..255>;
//	    opaque value<0..2^24-1>;
//	} PolicyEntry;
//
//	struct {
//	    StatementHeader header;          /* type 0x38 */
//	    opaque policy_id<1..255>;
//	    PolicyEntry entries<0..2^24-1>;  /* sorted by key */
//	} PolicyBundleBody;

func checkPolicyEntries(es []PolicyEntry) error {
	for i, e := range es {
		if !validText(e.Key) || (i > 0 && es[i-1].Key >= e.Key) {
			return ErrMalformed
		}
	}
	return nil
}

func (p *PolicyBundle) body() ([]byte, error) {
	return build(func(b *cryptobyte.Builder) {
		addHeader(b, typePolicyBundle, &p.Header)
		addText(b, p.PolicyID)
		if checkPolicyEntries(p.Entries) != nil {
			b.SetError(errEncode)
			return
		}
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, e := range p.Entries {
				addText(b, e.Key)
				b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(e.Value) })
			}
		})
	})
}

// Marshal returns the PolicyBundle encoding.
func (p *PolicyBundle) Marshal() ([]byte, error) { return marshalSigned(p.body, p.Signature) }

// Verify checks that p is tenant's and signed by ca.
func (p *PolicyBundle) Verify(ca *keys.OrgPublicKey, tenant TenantID) error {
	return verifyStatement(ca, tenant, &p.Header, labelPolicyBundle, p.body, p.Signature)
}

// ParsePolicyBundle parses a PolicyBundle encoding strictly.
func ParsePolicyBundle(data []byte) (*PolicyBundle, error) {
	return parseSigned("policy bundle", data, func(s *cryptobyte.String, sig []byte) (*PolicyBundle, error) {
		p := &PolicyBundle{Signature: sig}
		var list cryptobyte.String
		if !readHeader(s, typePolicyBundle, &p.Header) || !readText(s, &p.PolicyID) || !s.ReadUint24LengthPrefixed(&list) {
			return nil, ErrMalformed
		}
		for !list.Empty() {
			var e PolicyEntry
			var v cryptobyte.String
			if !readText(&list, &e.Key) || !list.ReadUint24LengthPrefixed(&v) {
				return nil, ErrMalformed
			}
			e.Value = clone(v)
			p.Entries = append(p.Entries, e)
		}
		if checkPolicyEntries(p.Entries) != nil {
			return nil, ErrMalformed
		}
		return p, nil
	})
}

// ---------------------------------------------------------------------------
// CA rotation

// CARotation replaces the tenant's CA key (§CA rotation). The old key signs
// it, so a client that trusts the old key can move to the new one; the new
// key signs it too, proving that the rotation's author holds it.
type CARotation struct {
	Header
	Old          *keys.OrgPublicKey
	New          *keys.OrgPublicKey
	OldSignature []byte
	NewSignature []byte
}

//	struct {
//	    StatementHeader header;         /* type 0x35 */
//	    opaque old_key[1985];           /* PublicKey, tag 0x10 */
//	    opaque new_key[1985];
//	} CARotationBody;
//
//	struct {
//	    CARotationBody body;
//	    opaque old_signature[3373];     /* both over "moat/v1/org/ca-rotation" || 0x00 || body */
//	    opaque new_signature[3373];
//	} CARotation;

func (r *CARotation) body() ([]byte, error) {
	return build(func(b *cryptobyte.Builder) {
		addHeader(b, typeCARotation, &r.Header)
		addKey(b, r.Old, r.Old == nil)
		addKey(b, r.New, r.New == nil)
		if r.Old != nil && r.New != nil && r.Old.Equal(r.New) {
			b.SetError(errEncode)
		}
	})
}

// Marshal returns the CARotation encoding.
func (r *CARotation) Marshal() ([]byte, error) {
	body, err := r.body()
	if err != nil {
		return nil, err
	}
	if len(r.OldSignature) != SignatureSize || len(r.NewSignature) != SignatureSize {
		return nil, errEncode
	}
	out := append(body, r.OldSignature...)
	return append(out, r.NewSignature...), nil
}

// ParseCARotation parses a CARotation encoding strictly.
func ParseCARotation(data []byte) (*CARotation, error) {
	r, err := parseCARotation(data)
	if err != nil {
		return nil, parseErr("CA rotation", err)
	}
	return r, nil
}

func parseCARotation(data []byte) (*CARotation, error) {
	if len(data) <= 2*SignatureSize {
		return nil, ErrMalformed
	}
	n := len(data) - 2*SignatureSize
	s := cryptobyte.String(data[:n])
	r := &CARotation{OldSignature: clone(data[n : n+SignatureSize]), NewSignature: clone(data[n+SignatureSize:])}
	if !readHeader(&s, typeCARotation, &r.Header) {
		return nil, ErrMalformed
	}
	var err error
	if r.Old, err = readOrgKey(&s); err != nil {
		return nil, err
	}
	if r.New, err = readOrgKey(&s); err != nil {
		return nil, err
	}
	if !s.Empty() || r.Old.Equal(r.New) {
		return nil, ErrMalformed
	}
	return r, nil
}

// Verify checks a rotation for a client that trusts current for tenant:
// the rotation is tenant's, its old key is current (else
// ErrUnknownIssuer), and both signatures verify. The client then trusts
// r.New in place of current, and should require r.Sequence to be one more
// than that of the last rotation it applied.
func (r *CARotation) Verify(current *keys.OrgPublicKey, tenant TenantID) error {
	if r.Tenant != tenant {
		return ErrWrongTenant
	}
	if current == nil || r.Old == nil || !r.Old.Equal(current) {
		return ErrUnknownIssuer
	}
	body, err := r.body()
	if err != nil {
		return ErrMalformed
	}
	if verifyCA(r.Old, labelCARotation, body, r.OldSignature) != nil || verifyCA(r.New, labelCARotation, body, r.NewSignature) != nil {
		return ErrBadSignature
	}
	return nil
}

// acyclic reports whether every parent exists and following parents from
// any department reaches the top level, in time linear in the number of
// departments.
func acyclic(deps []Department, idx map[DepartmentID]int) bool {
	const (
		unseen = iota
		onPath
		done
	)
	state := make([]uint8, len(deps))
	var path []int
	for i := range deps {
		path = path[:0]
		cur := i
		for {
			if state[cur] == done {
				break
			}
			if state[cur] == onPath {
				return false
			}
			state[cur] = onPath
			path = append(path, cur)
			p := deps[cur].Parent
			if p.IsZero() {
				break
			}
			next, ok := idx[p]
			if !ok {
				return false
			}
			cur = next
		}
		for _, j := range path {
			state[j] = done
		}
	}
	return true
}
