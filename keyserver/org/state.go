package org

import (
	"bytes"
	"fmt"
	"slices"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// Tenant state encoding (docs/spec/org.md §Tenant state): everything a
// Tenant holds except its Signer, so that the directory service can persist
// it and restore it. The encoding is canonical (maps sorted by key) and
// parsed strictly, like every other encoding of this package.
//
//	struct {
//	    uint8  type = 0x3e;
//	    uint8  version = 1;
//	    opaque tenant[16];
//	    uint64 certificate_lifetime;        /* seconds */
//	    uint64 max_code_lifetime;           /* seconds */
//	    uint8  code_failure_limit;
//	    uint32 tenant_failure_limit;
//	    uint64 tenant_failure_window;       /* seconds */
//	    opaque trust_bundle<1..2^24-1>;     /* TrustBundle */
//	    opaque admin_roster<1..2^24-1>;     /* AdminRoster */
//	    opaque ca_rotation<0..2^24-1>;      /* CARotation, or empty */
//	    opaque org_chart<0..2^24-1>;        /* the last published OrgChart, or empty */
//	    opaque escrow_policy<0..2^24-1>;    /* EscrowPolicy, or empty */
//	    opaque policies<0..2^32-1>;         /* PolicyBundle each as opaque<1..2^24-1>, by policy id */
//	    opaque departments<0..2^32-1>;      /* Department, by id */
//	    opaque users<0..2^32-1>;            /* UserState, by id */
//	    opaque codes<0..2^32-1>;            /* CodeState, by id */
//	    uint64 next_serial;
//	    opaque used_keys<0..2^32-1>;        /* 32-byte hashes of certified keys, increasing */
//	    opaque used_approvals<0..2^32-1>;   /* 32-byte hashes, increasing */
//	    uint64 fail_window_start;           /* 0 when fail_count is 0 */
//	    uint32 fail_count;
//	    uint8  chart_dirty;
//	    opaque org_dirty<0..2^32-1>;        /* labels, each opaque<1..2^16-1>, increasing */
//	} TenantState;
//
//	struct {
//	    opaque id[16];
//	    opaque display_name<0..255>;        /* empty iff removed */
//	    opaque department[16];
//	    uint8  removed;
//	    uint8  had_device;
//	    uint8  dirty;
//	    opaque policy<0..255>;
//	    uint64 head_seq;
//	    opaque head_hash[32];
//	    opaque devices<0..2^32-1>;          /* DeviceState, by device id */
//	    opaque pending<0..2^32-1>;          /* TimelineEntry each as opaque<1..2^24-1> */
//	} UserState;
//
//	struct {
//	    opaque certificate<1..2^16-1>;      /* the latest DeviceCertificate */
//	    uint64 serials<8..2^16-1>;          /* every serial of the device, increasing */
//	    uint8  revoked;
//	    uint64 revoked_at;                  /* 0 unless revoked */
//	} DeviceState;
//
//	struct {
//	    opaque id[16];
//	    opaque user[16];
//	    opaque secret_hash[32];
//	    opaque issued_by[16];
//	    uint64 issued_at;
//	    uint64 expires_at;
//	    uint8  failures;
//	    uint8  used;
//	} CodeState;

func addU32Prefixed(b *cryptobyte.Builder, f cryptobyte.BuilderContinuation) {
	b.AddUint32LengthPrefixed(f)
}

func readU32Prefixed(s *cryptobyte.String, out *cryptobyte.String) bool {
	var n uint32
	var v []byte
	if !s.ReadUint32(&n) || !s.ReadBytes(&v, int(n)) {
		return false
	}
	*out = v
	return true
}

func addEncoded(b *cryptobyte.Builder, m interface{ Marshal() ([]byte, error) }, present bool) {
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		if !present {
			return
		}
		enc, err := m.Marshal()
		if err != nil {
			b.SetError(err)
			return
		}
		b.AddBytes(enc)
	})
}

// MarshalBinary returns the TenantState encoding.
func (t *Tenant) MarshalBinary() ([]byte, error) {
	out, err := build(func(b *cryptobyte.Builder) {
		t.addHeader(b, version1)
		addEncoded(b, t.trust, true)
		addEncoded(b, t.roster, true)
		addEncoded(b, t.rotation, t.rotation != nil)
		addEncoded(b, t.chart, t.chart != nil)
		addEncoded(b, t.escrow, t.escrow != nil)
		addU32Prefixed(b, func(b *cryptobyte.Builder) {
			for _, id := range sortedKeys(t.policies) {
				enc, err := t.policies[id].Marshal()
				if err != nil {
					b.SetError(err)
					return
				}
				b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(enc) })
			}
		})
		addU32Prefixed(b, func(b *cryptobyte.Builder) {
			for _, id := range sortedIDs(t.departments) {
				d := t.departments[id]
				addID(b, id[:])
				addID(b, d.parent[:])
				addText(b, d.name)
			}
		})
		addU32Prefixed(b, func(b *cryptobyte.Builder) {
			for _, id := range t.sortedUsers() {
				addUserState(b, id, t.users[id], false)
			}
		})
		addU32Prefixed(b, func(b *cryptobyte.Builder) {
			for _, id := range sortedIDs(t.codes) {
				c := t.codes[id]
				addID(b, id[:])
				addID(b, c.user[:])
				b.AddBytes(c.hash[:])
				addID(b, c.issuedBy[:])
				addTime(b, c.issuedAt)
				addTime(b, c.expiresAt)
				b.AddUint8(uint8(c.failures))
				addBool(b, c.used)
			}
		})
		b.AddUint64(t.nextSerial)
		for _, set := range []map[[32]byte]bool{t.usedKeys, t.usedApprovals} {
			addU32Prefixed(b, func(b *cryptobyte.Builder) {
				for _, h := range sortedIDs(set) {
					b.AddBytes(h[:])
				}
			})
		}
		t.addFailuresAndDirty(b)
	})
	if err != nil {
		return nil, fmt.Errorf("org: encoding tenant state: %w", err)
	}
	return out, nil
}

// addUserState adds a user as the whole-state encoding holds it
// (UserState, every certificate inline), or, if record, as its state
// record does (UserRecord, records.go: a certificate that a published
// value holds is referred to, not repeated).
func addUserState(b *cryptobyte.Builder, id UserID, u *user, record bool) {
	addID(b, id[:])
	addOptText(b, u.displayName)
	addID(b, u.department[:])
	addBool(b, u.removed)
	addBool(b, u.hadDevice)
	addBool(b, u.dirty)
	addOptText(b, u.policy)
	b.AddUint64(u.head.Seq)
	b.AddBytes(u.head.Hash[:])
	if record {
		b.AddBytes(u.label[:])
	}
	addU32Prefixed(b, func(b *cryptobyte.Builder) {
		for _, did := range sortedDevices(u) {
			d := u.devices[did]
			if record {
				addID(b, did[:])
				b.AddUint32(d.ref)
			}
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				if record && d.ref != 0 {
					return
				}
				enc, err := d.cert.Marshal()
				if err != nil {
					b.SetError(err)
					return
				}
				b.AddBytes(enc)
			})
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				for _, s := range d.serials {
					b.AddUint64(s)
				}
			})
			addBool(b, d.revoked)
			if d.revoked {
				addTime(b, d.revokedAt)
			} else {
				b.AddUint64(0)
			}
		}
	})
	addU32Prefixed(b, func(b *cryptobyte.Builder) {
		for _, e := range u.pending {
			enc, err := e.Marshal()
			if err != nil {
				b.SetError(err)
				return
			}
			b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(enc) })
		}
	})
}

// UnmarshalTenant restores a Tenant from its TenantState encoding. signer
// must hold the CA key the state's trust bundle names (ErrSignerMismatch
// otherwise). The encoding is checked for internal consistency, not
// re-verified signature by signature: it is the service's own storage.
func UnmarshalTenant(data []byte, signer Signer) (*Tenant, error) {
	t, err := parseTenant(data)
	if err != nil {
		return nil, parseErr("tenant state", err)
	}
	if signer == nil || signer.Public() == nil || !signer.Public().Equal(t.trust.CA) {
		return nil, ErrSignerMismatch
	}
	t.signer = signer
	return t, nil
}

func parseTenant(data []byte) (*Tenant, error) {
	s := cryptobyte.String(data)
	t := &Tenant{
		policies: map[string]*PolicyBundle{}, departments: map[DepartmentID]*department{},
		users: map[UserID]*user{}, codes: map[CodeID]*codeRecord{},
		usedKeys: map[[32]byte]bool{}, usedApprovals: map[[32]byte]bool{}, orgDirty: map[string]bool{},
	}
	var typ, ver, codeLimit uint8
	var tenantLimit uint32
	var trust, roster, rotation, chart, escrow cryptobyte.String
	if !s.ReadUint8(&typ) || typ != typeTenantState || !s.ReadUint8(&ver) || ver != version1 ||
		!readID(&s, (*[16]byte)(&t.id)) || t.id.IsZero() ||
		!readDuration(&s, &t.config.CertificateLifetime) || !readDuration(&s, &t.config.MaxCodeLifetime) ||
		!s.ReadUint8(&codeLimit) || !s.ReadUint32(&tenantLimit) || !readDuration(&s, &t.config.TenantFailureWindow) ||
		!s.ReadUint24LengthPrefixed(&trust) || !s.ReadUint24LengthPrefixed(&roster) ||
		!s.ReadUint24LengthPrefixed(&rotation) || !s.ReadUint24LengthPrefixed(&chart) || !s.ReadUint24LengthPrefixed(&escrow) {
		return nil, ErrMalformed
	}
	t.config.CodeFailureLimit, t.config.TenantFailureLimit = int(codeLimit), int(tenantLimit)
	if !t.config.valid() {
		return nil, ErrMalformed
	}
	var err error
	if t.trust, err = ParseTrustBundle(trust); err != nil {
		return nil, err
	}
	if t.roster, err = ParseAdminRoster(roster); err != nil {
		return nil, err
	}
	if t.trust.Tenant != t.id || t.roster.Tenant != t.id {
		return nil, ErrMalformed
	}
	if len(rotation) > 0 {
		if t.rotation, err = ParseCARotation(rotation); err != nil {
			return nil, err
		}
		if t.rotation.Tenant != t.id || !t.rotation.New.Equal(t.trust.CA) {
			return nil, ErrMalformed
		}
	}
	if len(chart) > 0 {
		if t.chart, err = ParseOrgChart(chart); err != nil {
			return nil, err
		}
		if t.chart.Tenant != t.id {
			return nil, ErrMalformed
		}
	}
	if len(escrow) > 0 {
		if t.escrow, err = ParseEscrowPolicy(escrow); err != nil {
			return nil, err
		}
		if t.escrow.Tenant != t.id {
			return nil, ErrMalformed
		}
	}

	var policies, deps, users, codes cryptobyte.String
	if !readU32Prefixed(&s, &policies) || !readU32Prefixed(&s, &deps) || !readU32Prefixed(&s, &users) || !readU32Prefixed(&s, &codes) {
		return nil, ErrMalformed
	}
	last := ""
	for !policies.Empty() {
		var enc cryptobyte.String
		if !policies.ReadUint24LengthPrefixed(&enc) {
			return nil, ErrMalformed
		}
		p, err := ParsePolicyBundle(enc)
		if err != nil {
			return nil, err
		}
		if p.Tenant != t.id || (len(t.policies) > 0 && p.PolicyID <= last) {
			return nil, ErrMalformed
		}
		last = p.PolicyID
		t.policies[p.PolicyID] = p
	}
	var prevDep DepartmentID
	for !deps.Empty() {
		var id DepartmentID
		d := &department{}
		if !readID(&deps, (*[16]byte)(&id)) || !readID(&deps, (*[16]byte)(&d.parent)) || !readText(&deps, &d.name) ||
			id.IsZero() || bytes.Compare(prevDep[:], id[:]) >= 0 {
			return nil, ErrMalformed
		}
		prevDep = id
		t.departments[id] = d
	}
	if !t.departmentsAcyclic() {
		return nil, ErrMalformed
	}
	var prevUser UserID
	for !users.Empty() {
		id, u, err := t.readUserState(&users, false)
		if err != nil {
			return nil, err
		}
		if bytes.Compare(prevUser[:], id[:]) >= 0 {
			return nil, ErrMalformed
		}
		prevUser = id
		t.users[id] = u
	}
	var prevCode CodeID
	for !codes.Empty() {
		var id CodeID
		c := &codeRecord{}
		var failures uint8
		if !readID(&codes, (*[16]byte)(&id)) || !readID(&codes, (*[16]byte)(&c.user)) || !codes.CopyBytes(c.hash[:]) ||
			!readID(&codes, (*[16]byte)(&c.issuedBy)) || !readTime(&codes, &c.issuedAt) || !readTime(&codes, &c.expiresAt) ||
			!codes.ReadUint8(&failures) || !readBool(&codes, &c.used) {
			return nil, ErrMalformed
		}
		c.failures = int(failures)
		if (len(t.codes) > 0 && bytes.Compare(prevCode[:], id[:]) >= 0) || c.failures > t.config.CodeFailureLimit {
			return nil, ErrMalformed
		}
		if u, ok := t.users[c.user]; !ok || u.removed {
			return nil, ErrMalformed
		}
		prevCode = id
		t.codes[id] = c
	}
	if !s.ReadUint64(&t.nextSerial) || t.nextSerial == 0 {
		return nil, ErrMalformed
	}
	for _, set := range []map[[32]byte]bool{t.usedKeys, t.usedApprovals} {
		var list cryptobyte.String
		if !readU32Prefixed(&s, &list) || len(list)%32 != 0 {
			return nil, ErrMalformed
		}
		var prev [32]byte
		for i := 0; !list.Empty(); i++ {
			var h [32]byte
			list.CopyBytes(h[:])
			if i > 0 && bytes.Compare(prev[:], h[:]) >= 0 {
				return nil, ErrMalformed
			}
			prev = h
			set[h] = true
		}
	}
	var windowStart uint64
	var failCount uint32
	var dirty cryptobyte.String
	if !s.ReadUint64(&windowStart) || windowStart > maxUnix || !s.ReadUint32(&failCount) || !readBool(&s, &t.chartDirty) ||
		!readU32Prefixed(&s, &dirty) || !s.Empty() {
		return nil, ErrMalformed
	}
	if failCount == 0 {
		if windowStart != 0 {
			return nil, ErrMalformed
		}
	} else {
		t.failWindowStart = time.Unix(int64(windowStart), 0).UTC()
	}
	t.failCount = int(failCount)
	lastLabel := ""
	for !dirty.Empty() {
		var l cryptobyte.String
		if !dirty.ReadUint16LengthPrefixed(&l) || (len(t.orgDirty) > 0 && string(l) <= lastLabel) {
			return nil, ErrMalformed
		}
		lastLabel = string(l)
		t.orgDirty[lastLabel] = true
		if _, err := t.orgValue(lastLabel); err != nil {
			return nil, ErrMalformed
		}
	}
	// A dirty user is a changed record (dirtyUsers).
	for id, u := range t.users {
		if u.dirty {
			t.touch(recUser, id[:])
		}
	}
	return t, t.checkSerials()
}

func (t *Tenant) departmentsAcyclic() bool {
	deps := make([]Department, 0, len(t.departments))
	idx := make(map[DepartmentID]int, len(t.departments))
	for _, id := range sortedIDs(t.departments) {
		idx[id] = len(deps)
		deps = append(deps, Department{ID: id, Parent: t.departments[id].parent})
	}
	return acyclic(deps, idx)
}

// readUserState reads a user as addUserState(record) adds it. A
// referred certificate is the one of the user's current state if it is
// the same (device and serial), else read from the value it names
// (t.values).
func (t *Tenant) readUserState(s *cryptobyte.String, record bool) (UserID, *user, error) {
	var id UserID
	u := &user{devices: map[DeviceID]*device{}}
	var devices, pending cryptobyte.String
	defer func() { u.id = id }()
	if !readID(s, (*[16]byte)(&id)) || id.IsZero() || !readOptText(s, &u.displayName) || !readID(s, (*[16]byte)(&u.department)) ||
		!readBool(s, &u.removed) || !readBool(s, &u.hadDevice) || !readBool(s, &u.dirty) || !readOptText(s, &u.policy) ||
		!s.ReadUint64(&u.head.Seq) || u.head.Seq == 0 || !s.CopyBytes(u.head.Hash[:]) ||
		(record && !s.CopyBytes(u.label[:])) ||
		!readU32Prefixed(s, &devices) || !readU32Prefixed(s, &pending) {
		return id, nil, ErrMalformed
	}
	if u.removed != (u.displayName == "") || (u.removed && (!u.department.IsZero() || u.policy != "")) {
		return id, nil, ErrMalformed
	}
	if _, ok := t.departments[u.department]; !u.department.IsZero() && !ok {
		return id, nil, ErrMalformed
	}
	if _, ok := t.policies[u.policy]; u.policy != "" && !ok {
		return id, nil, ErrMalformed
	}
	var prev DeviceID
	var refs *valueCerts
	for !devices.Empty() {
		var enc, serials cryptobyte.String
		d := &device{}
		var did DeviceID
		var revokedAt uint64
		if record && (!readID(&devices, (*[16]byte)(&did)) || did.IsZero() || !devices.ReadUint32(&d.ref)) {
			return id, nil, ErrMalformed
		}
		if !devices.ReadUint16LengthPrefixed(&enc) || !devices.ReadUint16LengthPrefixed(&serials) || !readBool(&devices, &d.revoked) {
			return id, nil, ErrMalformed
		}
		for !serials.Empty() {
			var v uint64
			if !serials.ReadUint64(&v) {
				return id, nil, ErrMalformed
			}
			d.serials = append(d.serials, v)
		}
		if !checkSerials(d.serials) {
			return id, nil, ErrMalformed
		}
		serial := d.serials[len(d.serials)-1]
		switch {
		case d.ref == 0:
			if len(enc) == 0 {
				return id, nil, ErrMalformed
			}
			c, err := parseDeviceCertificate(enc)
			if err != nil {
				return id, nil, err
			}
			d.cert = c
			if !record {
				did = c.Device
			}
		case len(enc) != 0 || u.label == [32]byte{}:
			return id, nil, ErrMalformed
		default:
			if refs == nil {
				refs = &valueCerts{t: t, label: u.label}
			}
			c, err := refs.cert(t.users[id], did, serial, d.ref)
			if err != nil {
				return id, nil, err
			}
			d.cert = c
		}
		c := d.cert
		if d.revoked {
			if !readTime(&devices, &d.revokedAt) {
				return id, nil, ErrMalformed
			}
		} else if !devices.ReadUint64(&revokedAt) || revokedAt != 0 {
			return id, nil, ErrMalformed
		}
		if c.Tenant != t.id || c.User != id || c.Device != did || serial != c.Serial ||
			(len(u.devices) > 0 && bytes.Compare(prev[:], c.Device[:]) >= 0) {
			return id, nil, ErrMalformed
		}
		prev = c.Device
		u.devices[c.Device] = d
	}
	if len(u.devices) > 0 && !u.hadDevice {
		return id, nil, ErrMalformed
	}
	for !pending.Empty() {
		var enc cryptobyte.String
		if !pending.ReadUint24LengthPrefixed(&enc) {
			return id, nil, ErrMalformed
		}
		e, err := ParseEntry(enc)
		if err != nil {
			return id, nil, err
		}
		u.pending = append(u.pending, e)
	}
	if len(u.pending) > 0 {
		v := &UserValue{Tenant: t.id, User: id, Entries: u.pending, Head: u.head}
		if v.check() != nil || !u.dirty {
			return id, nil, ErrMalformed
		}
	}
	return id, u, nil
}

// checkSerials checks that every serial is below next_serial and that no
// serial belongs to two devices.
func (t *Tenant) checkSerials() error {
	seen := map[uint64]bool{}
	for _, u := range t.users {
		for _, d := range u.devices {
			for _, s := range d.serials {
				if s >= t.nextSerial || seen[s] {
					return ErrMalformed
				}
				seen[s] = true
			}
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func sortedIDs[K ~[16]byte | ~[32]byte, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sortByteArrays(out)
	return out
}
