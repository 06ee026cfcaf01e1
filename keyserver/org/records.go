package org

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/cryptobyte"
)

// Tenant state records (docs/spec/org.md §Tenant state records): the
// directory stores a tenant's state as records, one per user, code,
// department, policy and certified-key hash, plus three tenant-wide ones,
// so that an epoch writes only what changed. Each record is named by a
// StateKey, a kind byte and a 32-byte id:
//
//	kind  id                                   value
//	0x01  zero                                 TenantCore
//	0x02  zero                                 TenantTrust
//	0x03  zero                                 OrgChart (the last published)
//	0x04  SHA-256(policy id)                   PolicyBundle
//	0x05  department id || 16 zero bytes       DepartmentState
//	0x06  user id || 16 zero bytes             UserRecord
//	0x07  code id || 16 zero bytes             CodeState (state.go)
//	0x08  SHA-256 of a certified key           uint8 1
//	0x09  SHA-256 of a consumed approval       uint8 1
//
//	struct {
//	    uint8  type = 0x3e;
//	    uint8  version = 3;                 /* 2: UserState records, refused (ErrStateVersion) */
//	    opaque tenant[16];
//	    uint64 certificate_lifetime;        /* seconds */
//	    uint64 max_code_lifetime;           /* seconds */
//	    uint8  code_failure_limit;
//	    uint32 tenant_failure_limit;
//	    uint64 tenant_failure_window;       /* seconds */
//	    uint64 next_serial;
//	    uint64 fail_window_start;           /* 0 when fail_count is 0 */
//	    uint32 fail_count;
//	    uint8  chart_dirty;
//	    opaque org_dirty<0..2^32-1>;        /* labels, each opaque<1..2^16-1>, increasing */
//	} TenantCore;
//
//	struct {
//	    opaque trust_bundle<1..2^24-1>;
//	    opaque admin_roster<1..2^24-1>;
//	    opaque ca_rotation<0..2^24-1>;
//	    opaque escrow_policy<0..2^24-1>;
//	} TenantTrust;
//
//	struct {
//	    opaque id[16];
//	    opaque parent[16];
//	    opaque name<1..255>;
//	} DepartmentState;
//
//	struct {
//	    opaque id[16];                      /* as in UserState (state.go) */
//	    opaque display_name<0..255>;
//	    opaque department[16];
//	    uint8  removed;
//	    uint8  had_device;
//	    uint8  dirty;
//	    opaque policy<0..255>;
//	    uint64 head_seq;
//	    opaque head_hash[32];
//	    opaque value_label[32];             /* the user's map label once a value is stored, else zero */
//	    opaque devices<0..2^32-1>;          /* DeviceRecord, by device id */
//	    opaque pending<0..2^32-1>;          /* TimelineEntry each as opaque<1..2^24-1> */
//	} UserRecord;
//
//	struct {
//	    opaque device[16];
//	    uint32 value_version;               /* 0: the certificate follows */
//	    opaque certificate<0..2^16-1>;      /* empty iff value_version > 0 */
//	    uint64 serials<8..2^16-1>;
//	    uint8  revoked;
//	    uint64 revoked_at;                  /* 0 unless revoked */
//	} DeviceRecord;
//
// A DeviceRecord with a value_version refers to its certificate instead
// of repeating it: the certificate of device in that version of the
// user's value (a UserValue, under value_label), whose serial is the last
// of serials. The directory stores a user's value and the user's record
// in the same epoch commit (ValuesStored), so a record that refers to a
// value is never stored without it; a certificate issued since the
// user's last value is inline until the next one.
//
// Records come back in increasing key order, so the core and trust
// records come first and every record a later one refers to (policies and
// departments before users, users before codes) before it.

// StateKeySize is the size of a StateKey.
const StateKeySize = 33

// A StateKey names one record of a tenant's state.
type StateKey [StateKeySize]byte

// A StateRecord is one record of a tenant's state; a nil Value means the
// record was deleted.
type StateRecord struct {
	Key   StateKey
	Value []byte
}

// Record kinds.
const (
	recCore         = 0x01
	recTrust        = 0x02
	recChart        = 0x03
	recPolicy       = 0x04
	recDepartment   = 0x05
	recUser         = 0x06
	recCode         = 0x07
	recUsedKey      = 0x08
	recUsedApproval = 0x09
)

// persistedState is what the last MarkPersisted saw of the records that
// are compared rather than tracked: the tenant-wide ones.
type persistedState struct {
	valid    bool // false: every record is pending
	trust    *TrustBundle
	roster   *AdminRoster
	rotation *CARotation
	escrow   *EscrowPolicy
	chart    *OrgChart
}

// snapshot returns what the trust and chart records hold now.
func (t *Tenant) snapshot() persistedState {
	return persistedState{valid: true, trust: t.trust, roster: t.roster, rotation: t.rotation, escrow: t.escrow, chart: t.chart}
}

// trustChanged reports whether the trust record differs from p's.
func (p *persistedState) trustChanged(t *Tenant) bool {
	return p.trust != t.trust || p.roster != t.roster || p.rotation != t.rotation || p.escrow != t.escrow
}

// recordsOf returns the core record, the trust and chart records if asked
// for, and the records of keys, by key.
func (t *Tenant) recordsOf(keys map[StateKey]struct{}, trust, chart bool) ([]StateRecord, error) {
	sorted := make([]StateKey, 0, len(keys)+3)
	sorted = append(sorted, stateKey(recCore, nil))
	if trust {
		sorted = append(sorted, stateKey(recTrust, nil))
	}
	if chart {
		sorted = append(sorted, stateKey(recChart, nil))
	}
	for k := range keys {
		sorted = append(sorted, k)
	}
	slices.SortFunc(sorted, func(a, b StateKey) int { return bytes.Compare(a[:], b[:]) })
	out := make([]StateRecord, 0, len(sorted))
	for _, k := range sorted {
		v, err := t.encodeRecord(k)
		if err != nil {
			return nil, err
		}
		out = append(out, StateRecord{Key: k, Value: v})
	}
	return out, nil
}

// resetJournal starts tracking JournalRecords anew from the tenant's
// state now.
func (t *Tenant) resetJournal() {
	clear(t.journal)
	t.journaled = t.snapshot()
	t.journaledCore, _ = t.encodeRecord(stateKey(recCore, nil))
}

func stateKey(kind byte, id []byte) StateKey {
	var k StateKey
	k[0] = kind
	copy(k[1:], id)
	return k
}

func policyKeyID(id string) []byte {
	h := sha256.Sum256([]byte(id))
	return h[:]
}

// touch marks a record changed.
func (t *Tenant) touch(kind byte, id []byte) {
	if t.changed == nil {
		t.changed = map[StateKey]struct{}{}
	}
	t.changed[stateKey(kind, id)] = struct{}{}
	if t.journal == nil {
		t.journal = map[StateKey]struct{}{}
	}
	t.journal[stateKey(kind, id)] = struct{}{}
}

func (t *Tenant) touchUser(u *user) { t.touch(recUser, u.id[:]) }

// dirtyUsers returns the users with unpublished changes, by id. Every one
// of them is a changed record (appendTo and touchUser mark them), so it
// looks at the changed records only.
func (t *Tenant) dirtyUsers() []UserID {
	var out []UserID
	for k := range t.changed {
		if k[0] != recUser {
			continue
		}
		id := UserID(k[1:17])
		if u := t.users[id]; u != nil && u.dirty {
			out = append(out, id)
		}
	}
	sortByteArrays(out)
	return out
}

// PendingRecords returns the records of the tenant's state that changed
// since the last MarkPersisted, by key: every record of a tenant never
// persisted, else the core record, the trust and chart records if they
// changed, and every user, code, department, policy and hash record an
// operation changed (a nil Value for one deleted). The chart record is
// also included while the chart is to be republished, so that the records
// returned before Publish restore everything Publish changes
// (RestoreRecords). The cost is that of the records returned, not of the
// tenant's size.
func (t *Tenant) PendingRecords() ([]StateRecord, error) {
	if !t.persisted.valid {
		return t.StateRecords()
	}
	p := &t.persisted
	return t.recordsOf(t.changed, p.trustChanged(t), t.chart != nil && (p.chart != t.chart || t.chartDirty))
}

// MarkPersisted records that the records PendingRecords returned are
// stored: the next PendingRecords returns only what changes from now on,
// and the users with unpublished changes.
func (t *Tenant) MarkPersisted() {
	for k := range t.changed {
		// A user with unpublished changes stays changed (dirtyUsers).
		if u := t.users[UserID(k[1:17])]; k[0] != recUser || u == nil || !u.dirty {
			delete(t.changed, k)
		}
	}
	t.persisted = t.snapshot()
	t.resetJournal()
}

// User returns the user whose record k names, if it names one.
func (k StateKey) User() (UserID, bool) {
	return UserID(k[1:17]), k[0] == recUser
}

// JournalRecords returns the records of the tenant's state that changed
// since the last JournalRecords or MarkPersisted, by key, as
// PendingRecords does (the core record with any other; a nil Value for
// one deleted), or none if nothing changed, and starts tracking anew: the
// directory writes them as pending records before it acknowledges the
// operation that changed them (docs/spec/directory.md §Storage). Every
// record JournalRecords returns is also one PendingRecords returns until
// MarkPersisted. It returns every record of a tenant never persisted.
func (t *Tenant) JournalRecords() ([]StateRecord, error) {
	if !t.persisted.valid {
		return t.StateRecords()
	}
	core, err := t.encodeRecord(stateKey(recCore, nil))
	if err != nil {
		return nil, err
	}
	j := &t.journaled
	trust, chart := j.trustChanged(t), j.chart != t.chart
	if len(t.journal) == 0 && bytes.Equal(core, t.journaledCore) && !trust && !chart {
		return nil, nil
	}
	out, err := t.recordsOf(t.journal, trust, chart)
	if err != nil {
		return nil, err
	}
	clear(t.journal)
	t.journaled = t.snapshot()
	t.journaledCore = core
	return out, nil
}

// ApplyPending puts records changed since the persisted state back into a
// tenant restored from it (TenantLoader): the pending records the
// directory wrote before acknowledging the operations of an epoch that
// was not published (JournalRecords; docs/spec/directory.md §Storage), in
// increasing key order, a nil or empty Value for a deletion. Each is
// parsed strictly against the records before it, and the whole is checked
// as Finish checks it; the records are pending (PendingRecords returns
// them). If they rotate the CA, the signer becomes the one of signers
// that holds the new CA key (ErrSignerMismatch if none does). On error
// the tenant must be discarded.
func (t *Tenant) ApplyPending(recs []StateRecord, signers []Signer) error {
	for i, r := range recs {
		if i > 0 && bytes.Compare(recs[i-1].Key[:], r.Key[:]) >= 0 {
			return fmt.Errorf("org: pending state record %x out of order: %w", r.Key[:1], ErrMalformed)
		}
		if r.Key[0] == recCore && len(r.Value) == 0 {
			return fmt.Errorf("org: pending core record deleted: %w", ErrMalformed)
		}
		if err := t.applyRecord(r.Key, r.Value); err != nil {
			return recordErr("pending state record", err)
		}
		if r.Key[0] > recChart { // the others are compared, not tracked
			t.touch(r.Key[0], r.Key[1:])
		}
	}
	if !t.departmentsAcyclic() || t.checkSerials() != nil {
		return parseErr("pending state", ErrMalformed)
	}
	for _, d := range t.departments {
		if _, ok := t.departments[d.parent]; !d.parent.IsZero() && !ok {
			return parseErr("pending state", ErrMalformed)
		}
	}
	for lb := range t.orgDirty {
		if _, err := t.orgValue(lb); err != nil {
			return parseErr("pending state", ErrMalformed)
		}
	}
	if t.signer == nil || !t.signer.Public().Equal(t.trust.CA) {
		t.signer = nil
		for _, sg := range signers {
			if sg != nil && sg.Public() != nil && sg.Public().Equal(t.trust.CA) {
				t.signer = sg
			}
		}
		if t.signer == nil {
			return ErrSignerMismatch
		}
	}
	// What is journaled now is what was before the restart.
	t.resetJournal()
	return nil
}

// StateRecords returns every record of the tenant's state, by key.
func (t *Tenant) StateRecords() ([]StateRecord, error) {
	keys := t.stateKeys()
	out := make([]StateRecord, 0, len(keys))
	for _, k := range keys {
		v, err := t.encodeRecord(k)
		if err != nil {
			return nil, err
		}
		out = append(out, StateRecord{Key: k, Value: v})
	}
	return out, nil
}

// stateKeys returns the key of every record of the tenant's state, sorted.
func (t *Tenant) stateKeys() []StateKey {
	keys := []StateKey{stateKey(recCore, nil), stateKey(recTrust, nil)}
	if t.chart != nil {
		keys = append(keys, stateKey(recChart, nil))
	}
	for id := range t.policies {
		keys = append(keys, stateKey(recPolicy, policyKeyID(id)))
	}
	for id := range t.departments {
		keys = append(keys, stateKey(recDepartment, id[:]))
	}
	for id := range t.users {
		keys = append(keys, stateKey(recUser, id[:]))
	}
	for id := range t.codes {
		keys = append(keys, stateKey(recCode, id[:]))
	}
	for h := range t.usedKeys {
		keys = append(keys, stateKey(recUsedKey, h[:]))
	}
	for h := range t.usedApprovals {
		keys = append(keys, stateKey(recUsedApproval, h[:]))
	}
	slices.SortFunc(keys, func(a, b StateKey) int { return bytes.Compare(a[:], b[:]) })
	return keys
}

// encodeRecord returns the current encoding of record k, nil if the
// record does not exist.
func (t *Tenant) encodeRecord(k StateKey) ([]byte, error) {
	id16 := [16]byte(k[1:17])
	var f func(b *cryptobyte.Builder)
	switch k[0] {
	case recCore:
		f = t.addCore
	case recTrust:
		f = func(b *cryptobyte.Builder) {
			addEncoded(b, t.trust, true)
			addEncoded(b, t.roster, true)
			addEncoded(b, t.rotation, t.rotation != nil)
			addEncoded(b, t.escrow, t.escrow != nil)
		}
	case recChart:
		if t.chart == nil {
			return nil, nil
		}
		return t.chart.Marshal()
	case recPolicy:
		for id, p := range t.policies {
			if bytes.Equal(policyKeyID(id), k[1:]) {
				return p.Marshal()
			}
		}
		return nil, nil
	case recDepartment:
		d, ok := t.departments[DepartmentID(id16)]
		if !ok {
			return nil, nil
		}
		f = func(b *cryptobyte.Builder) {
			addID(b, id16[:])
			addID(b, d.parent[:])
			addText(b, d.name)
		}
	case recUser:
		u, ok := t.users[UserID(id16)]
		if !ok {
			return nil, nil
		}
		f = func(b *cryptobyte.Builder) { addUserState(b, UserID(id16), u, true) }
	case recCode:
		c, ok := t.codes[CodeID(id16)]
		if !ok {
			return nil, nil
		}
		f = func(b *cryptobyte.Builder) { addCodeState(b, CodeID(id16), c) }
	case recUsedKey, recUsedApproval:
		set := t.usedKeys
		if k[0] == recUsedApproval {
			set = t.usedApprovals
		}
		if !set[[32]byte(k[1:])] {
			return nil, nil
		}
		return []byte{1}, nil
	default:
		return nil, fmt.Errorf("org: state record kind %#x: %w", k[0], ErrInvalidArgument)
	}
	out, err := build(f)
	if err != nil {
		return nil, fmt.Errorf("org: encoding state record %x: %w", k[:1], err)
	}
	return out, nil
}

func (t *Tenant) addCore(b *cryptobyte.Builder) {
	t.addHeader(b, version3)
	b.AddUint64(t.nextSerial)
	t.addFailuresAndDirty(b)
}

// addHeader adds what the TenantState encoding (version1) and the core
// record (version3) start with: the type, version, tenant id and
// configuration.
func (t *Tenant) addHeader(b *cryptobyte.Builder, version uint8) {
	b.AddUint8(typeTenantState)
	b.AddUint8(version)
	addID(b, t.id[:])
	addDuration(b, t.config.CertificateLifetime)
	addDuration(b, t.config.MaxCodeLifetime)
	b.AddUint8(uint8(t.config.CodeFailureLimit))
	b.AddUint32(uint32(t.config.TenantFailureLimit))
	addDuration(b, t.config.TenantFailureWindow)
}

// addFailuresAndDirty adds the tenant-wide failure window and what the
// next Publish republishes (the chart, departments), as the core record
// and the whole-state encoding both end.
func (t *Tenant) addFailuresAndDirty(b *cryptobyte.Builder) {
	if t.failCount == 0 {
		b.AddUint64(0)
	} else {
		addTime(b, t.failWindowStart)
	}
	b.AddUint32(uint32(t.failCount))
	addBool(b, t.chartDirty)
	addU32Prefixed(b, func(b *cryptobyte.Builder) {
		for _, l := range sortedKeys(t.orgDirty) {
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(l)) })
		}
	})
}

func addCodeState(b *cryptobyte.Builder, id CodeID, c *codeRecord) {
	addID(b, id[:])
	addID(b, c.user[:])
	b.AddBytes(c.hash[:])
	addID(b, c.issuedBy[:])
	addTime(b, c.issuedAt)
	addTime(b, c.expiresAt)
	b.AddUint8(uint8(c.failures))
	addBool(b, c.used)
}

func readCodeState(s *cryptobyte.String, limit int) (CodeID, *codeRecord, bool) {
	var id CodeID
	c := &codeRecord{}
	var failures uint8
	if !readID(s, (*[16]byte)(&id)) || !readID(s, (*[16]byte)(&c.user)) || !s.CopyBytes(c.hash[:]) ||
		!readID(s, (*[16]byte)(&c.issuedBy)) || !readTime(s, &c.issuedAt) || !readTime(s, &c.expiresAt) ||
		!s.ReadUint8(&failures) || !readBool(s, &c.used) {
		return id, nil, false
	}
	c.failures = int(failures)
	return id, c, c.failures <= limit
}

// TenantLoader restores a Tenant from its records (StateRecords or a
// store's copy of them), one at a time, in increasing key order, so that
// the records need not all be in memory at once. Each record is checked
// as it is added, against the ones before; Finish checks the whole.
type TenantLoader struct {
	t     *Tenant
	last  *StateKey
	err   error
	users []loadedUser // user records not yet parsed (flush)
}

// loadedUser is a user record the loader parses in a batch.
type loadedUser struct {
	key   StateKey
	value []byte
	u     *user
	err   error
}

// loaderBatch is how many user records the loader parses at once, on
// every core: parsing a user's device keys is most of a restart's cost.
const loaderBatch = 4096

// A ValueReader returns the value that version version of the user label
// label holds (a UserValue encoding), for user records that refer to it
// (UserRecord). The directory reads it from its store. It may be called
// from several goroutines at once.
type ValueReader func(label [32]byte, version uint32) ([]byte, error)

// NewTenantLoader returns an empty loader. values reads the values that
// user records refer to; the loaded tenant keeps it, for ApplyPending.
func NewTenantLoader(values ValueReader) *TenantLoader {
	return &TenantLoader{t: &Tenant{values: values,
		policies: map[string]*PolicyBundle{}, departments: map[DepartmentID]*department{},
		users: map[UserID]*user{}, codes: map[CodeID]*codeRecord{},
		usedKeys: map[[32]byte]bool{}, usedApprovals: map[[32]byte]bool{}, orgDirty: map[string]bool{},
		changed: map[StateKey]struct{}{},
	}}
}

// Add adds the next record. Keys must increase; value is not retained.
// User records are parsed in batches, on every core, so an error in one
// may be returned by a later Add or by Finish. After an error every later
// call fails.
func (l *TenantLoader) Add(key StateKey, value []byte) error {
	if l.err != nil {
		return l.err
	}
	switch {
	case l.last != nil && bytes.Compare(l.last[:], key[:]) >= 0:
		l.err = fmt.Errorf("org: tenant state record %x out of order: %w", key[:1], ErrMalformed)
	case len(value) == 0:
		l.err = fmt.Errorf("org: tenant state record %x empty: %w", key[:1], ErrMalformed)
	case l.last == nil && key[0] != recCore:
		l.err = fmt.Errorf("org: tenant state without its core record: %w", ErrMalformed)
	case key[0] > recTrust && l.last != nil && l.last[0] < recTrust:
		l.err = fmt.Errorf("org: tenant state without its trust record: %w", ErrMalformed)
	case key[0] == recUser:
		// Users refer to policies and departments, whose keys are
		// smaller: those are all applied already.
		l.users = append(l.users, loadedUser{key: key, value: bytes.Clone(value)})
		if len(l.users) >= loaderBatch {
			l.flush()
		}
	default:
		if l.flush(); l.err == nil {
			if err := l.t.applyRecord(key, value); err != nil {
				l.err = recordErr("tenant state record", err)
			}
		}
	}
	k := key
	l.last = &k
	return l.err
}

// flush parses the pending user records, in parallel, then adds them in
// order, as applyRecord would.
func (l *TenantLoader) flush() {
	if len(l.users) == 0 || l.err != nil {
		return
	}
	// readUserState reads the tenant (id, departments, policies) and
	// writes only the user it returns.
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), (len(l.users)+63)/64) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(l.users) {
					return
				}
				p := &l.users[i]
				s := cryptobyte.String(p.value)
				id, u, err := l.t.readUserState(&s, true)
				switch {
				case err != nil:
					p.err = err
				case !s.Empty() || [16]byte(id) != [16]byte(p.key[1:17]) || !bytes.Equal(p.key[17:], make([]byte, 16)):
					p.err = ErrMalformed
				default:
					p.u = u
				}
			}
		})
	}
	wg.Wait()
	for i := range l.users {
		p := &l.users[i]
		if p.err != nil {
			l.err = recordErr("tenant state record", p.err)
			break
		}
		l.t.users[p.u.id] = p.u
	}
	clear(l.users)
	l.users = l.users[:0]
}

// Finish checks the tenant as a whole and returns it, with signer, which
// must hold the CA key of the state's trust bundle (ErrSignerMismatch
// otherwise). The tenant's state counts as persisted.
func (l *TenantLoader) Finish(signer Signer) (*Tenant, error) {
	t, err := l.check()
	if err != nil {
		return nil, err
	}
	if signer == nil || signer.Public() == nil || !signer.Public().Equal(t.trust.CA) {
		return nil, ErrSignerMismatch
	}
	t.signer = signer
	l.err = fmt.Errorf("org: tenant loader already finished: %w", ErrInvalidArgument)
	return t, nil
}

// check is Finish without the signer.
func (l *TenantLoader) check() (*Tenant, error) {
	if l.flush(); l.err != nil {
		return nil, l.err
	}
	t := l.t
	if l.last == nil || t.trust == nil {
		return nil, fmt.Errorf("org: tenant state incomplete: %w", ErrMalformed)
	}
	if !t.departmentsAcyclic() || t.checkSerials() != nil {
		return nil, parseErr("tenant state", ErrMalformed)
	}
	for _, d := range t.departments {
		if _, ok := t.departments[d.parent]; !d.parent.IsZero() && !ok {
			return nil, parseErr("tenant state", ErrMalformed)
		}
	}
	for lb := range t.orgDirty {
		if _, err := t.orgValue(lb); err != nil {
			return nil, parseErr("tenant state", ErrMalformed)
		}
	}
	t.MarkPersisted()
	// A dirty user is a changed record (dirtyUsers).
	for id, u := range t.users {
		if u.dirty {
			t.touch(recUser, id[:])
		}
	}
	return t, nil
}

// RestoreRecords puts back records that PendingRecords returned, undoing
// what happened to them since: the directory calls it with the records it
// took before Publish when the epoch's commit fails (§Publishing). The
// records are the tenant's own encodings; each is parsed strictly. The
// records stay pending.
func (t *Tenant) RestoreRecords(recs []StateRecord) error {
	for _, r := range recs {
		if err := t.applyRecord(r.Key, r.Value); err != nil {
			return recordErr("tenant state record", err)
		}
	}
	return nil
}

// applyRecord parses record k and puts it in the tenant's state, or
// deletes it if value is empty. Cross-record checks use the records
// applied so far.
func (t *Tenant) applyRecord(k StateKey, value []byte) error {
	id16 := [16]byte(k[1:17])
	zeroTail := func(n int) bool {
		for _, x := range k[1+n:] {
			if x != 0 {
				return false
			}
		}
		return true
	}
	s := cryptobyte.String(value)
	if len(value) == 0 {
		switch k[0] {
		case recPolicy:
			for id := range t.policies {
				if bytes.Equal(policyKeyID(id), k[1:]) {
					delete(t.policies, id)
				}
			}
		case recDepartment:
			delete(t.departments, DepartmentID(id16))
		case recUser:
			delete(t.users, UserID(id16))
		case recCode:
			delete(t.codes, CodeID(id16))
		case recUsedKey:
			delete(t.usedKeys, [32]byte(k[1:]))
		case recUsedApproval:
			delete(t.usedApprovals, [32]byte(k[1:]))
		case recChart:
			t.chart = nil
		default:
			return ErrMalformed
		}
		return nil
	}
	switch k[0] {
	case recCore:
		return t.parseCore(k, s)
	case recTrust:
		if !zeroTail(0) || t.id.IsZero() {
			return ErrMalformed
		}
		return t.parseTrust(s)
	case recChart:
		c, err := ParseOrgChart(value)
		if err != nil {
			return err
		}
		if !zeroTail(0) || c.Tenant != t.id {
			return ErrMalformed
		}
		t.chart = c
	case recPolicy:
		p, err := ParsePolicyBundle(value)
		if err != nil {
			return err
		}
		if p.Tenant != t.id || !bytes.Equal(policyKeyID(p.PolicyID), k[1:]) {
			return ErrMalformed
		}
		t.policies[p.PolicyID] = p
	case recDepartment:
		var id, parent DepartmentID
		d := &department{}
		if !readID(&s, (*[16]byte)(&id)) || !readID(&s, (*[16]byte)(&parent)) || !readText(&s, &d.name) || !s.Empty() ||
			id.IsZero() || [16]byte(id) != id16 || !zeroTail(16) {
			return ErrMalformed
		}
		d.parent = parent
		t.departments[id] = d
	case recUser:
		id, u, err := t.readUserState(&s, true)
		if err != nil {
			return err
		}
		if !s.Empty() || [16]byte(id) != id16 || !zeroTail(16) {
			return ErrMalformed
		}
		t.users[id] = u
	case recCode:
		id, c, ok := readCodeState(&s, t.config.CodeFailureLimit)
		if !ok || !s.Empty() || [16]byte(id) != id16 || !zeroTail(16) {
			return ErrMalformed
		}
		if u, ok := t.users[c.user]; !ok || u.removed {
			return ErrMalformed
		}
		t.codes[id] = c
	case recUsedKey, recUsedApproval:
		if len(value) != 1 || value[0] != 1 {
			return ErrMalformed
		}
		if k[0] == recUsedKey {
			t.usedKeys[[32]byte(k[1:])] = true
		} else {
			t.usedApprovals[[32]byte(k[1:])] = true
		}
	default:
		return ErrMalformed
	}
	return nil
}

func (t *Tenant) parseCore(k StateKey, s cryptobyte.String) error {
	var typ, ver, codeLimit uint8
	var tenantLimit, failCount uint32
	var id TenantID
	var cfg Config
	var nextSerial, windowStart uint64
	var chartDirty bool
	var dirty cryptobyte.String
	if c := cryptobyte.String(s); k == stateKey(recCore, nil) && c.ReadUint8(&typ) && typ == typeTenantState &&
		c.ReadUint8(&ver) && ver == version2 {
		return ErrStateVersion
	}
	if k != stateKey(recCore, nil) ||
		!s.ReadUint8(&typ) || typ != typeTenantState || !s.ReadUint8(&ver) || ver != version3 ||
		!readID(&s, (*[16]byte)(&id)) || id.IsZero() || (!t.id.IsZero() && id != t.id) ||
		!readDuration(&s, &cfg.CertificateLifetime) || !readDuration(&s, &cfg.MaxCodeLifetime) ||
		!s.ReadUint8(&codeLimit) || !s.ReadUint32(&tenantLimit) || !readDuration(&s, &cfg.TenantFailureWindow) ||
		!s.ReadUint64(&nextSerial) || nextSerial == 0 ||
		!s.ReadUint64(&windowStart) || windowStart > maxUnix || !s.ReadUint32(&failCount) || !readBool(&s, &chartDirty) ||
		!readU32Prefixed(&s, &dirty) || !s.Empty() {
		return ErrMalformed
	}
	cfg.CodeFailureLimit, cfg.TenantFailureLimit = int(codeLimit), int(tenantLimit)
	if !cfg.valid() || (failCount == 0 && windowStart != 0) {
		return ErrMalformed
	}
	orgDirty := map[string]bool{}
	last := ""
	for !dirty.Empty() {
		var l cryptobyte.String
		if !dirty.ReadUint16LengthPrefixed(&l) || len(l) == 0 || (len(orgDirty) > 0 && string(l) <= last) {
			return ErrMalformed
		}
		last = string(l)
		orgDirty[last] = true
	}
	t.id, t.config, t.nextSerial, t.failCount, t.chartDirty, t.orgDirty = id, cfg, nextSerial, int(failCount), chartDirty, orgDirty
	t.failWindowStart = time.Time{}
	if failCount > 0 {
		t.failWindowStart = time.Unix(int64(windowStart), 0).UTC()
	}
	return nil
}

func (t *Tenant) parseTrust(s cryptobyte.String) error {
	var trust, roster, rotation, escrow cryptobyte.String
	if !s.ReadUint24LengthPrefixed(&trust) || !s.ReadUint24LengthPrefixed(&roster) ||
		!s.ReadUint24LengthPrefixed(&rotation) || !s.ReadUint24LengthPrefixed(&escrow) || !s.Empty() {
		return ErrMalformed
	}
	tb, err := ParseTrustBundle(trust)
	if err != nil {
		return err
	}
	r, err := ParseAdminRoster(roster)
	if err != nil {
		return err
	}
	if tb.Tenant != t.id || r.Tenant != t.id {
		return ErrMalformed
	}
	var rot *CARotation
	if len(rotation) > 0 {
		if rot, err = ParseCARotation(rotation); err != nil {
			return err
		}
		if rot.Tenant != t.id || !rot.New.Equal(tb.CA) {
			return ErrMalformed
		}
	}
	var esc *EscrowPolicy
	if len(escrow) > 0 {
		if esc, err = ParseEscrowPolicy(escrow); err != nil {
			return err
		}
		if esc.Tenant != t.id {
			return ErrMalformed
		}
	}
	t.trust, t.roster, t.rotation, t.escrow = tb, r, rot, esc
	return nil
}

// A ValueRef names where the directory stored a user's value published
// by Publish: version Version of the user's map label Label.
type ValueRef struct {
	User    UserID
	Label   [32]byte
	Version uint32
}

// ValuesStored records where the user values that the last Publish
// returned are stored, so that the records of those users refer to the
// certificates in them instead of repeating them (UserRecord). The
// directory calls it after Publish, with the values it writes in the
// epoch's commit, and before PendingRecords, whose records the same
// commit writes. If the commit fails, RestoreRecords with the records
// from before Publish undoes it. A ref naming an unknown user is ignored.
func (t *Tenant) ValuesStored(refs []ValueRef) {
	for _, r := range refs {
		u := t.users[r.User]
		if u == nil || r.Version == 0 || r.Label == [32]byte{} {
			continue
		}
		u.label = r.Label
		// The value holds the certificate of every device not revoked
		// (userValue), as they are now.
		for _, d := range u.devices {
			if !d.revoked {
				d.ref = r.Version
			}
		}
		t.touchUser(u)
	}
}

// valueCerts resolves the certificates that one user record refers to
// (readUserState), reading each value version once.
type valueCerts struct {
	t     *Tenant
	label [32]byte
	read  map[uint32][]*DeviceCertificate
}

// cert returns the certificate of device did with serial serial in
// version version of the user's value: cur's (the user's current state,
// or nil) if it holds that one, else the stored value's.
func (v *valueCerts) cert(cur *user, did DeviceID, serial uint64, version uint32) (*DeviceCertificate, error) {
	if cur != nil {
		if d := cur.devices[did]; d != nil && d.cert.Serial == serial {
			return d.cert, nil
		}
	}
	certs, ok := v.read[version]
	if !ok {
		if v.t.values == nil {
			return nil, &valueReadError{fmt.Errorf("org: a user record refers to value version %d and no ValueReader was given: %w", version, ErrInvalidArgument)}
		}
		data, err := v.t.values(v.label, version)
		if err != nil {
			return nil, &valueReadError{fmt.Errorf("org: reading value version %d of a user record: %w", version, err)}
		}
		if certs, err = userValueCerts(data); err != nil {
			return nil, err
		}
		if v.read == nil {
			v.read = map[uint32][]*DeviceCertificate{}
		}
		v.read[version] = certs
	}
	for _, c := range certs {
		if c.Device == did && c.Serial == serial {
			return c, nil
		}
	}
	return nil, ErrMalformed
}

// userValueCerts returns the certificates of a UserValue encoding: the
// value's framing and certificates are parsed strictly, its entries only
// framed (the directory checked them when it published the value).
func userValueCerts(data []byte) ([]*DeviceCertificate, error) {
	s := cryptobyte.String(data)
	var typ, ver uint8
	var tenant, user [16]byte
	var seq uint64
	var certs, entries cryptobyte.String
	if !s.ReadUint8(&typ) || typ != typeUserValue || !s.ReadUint8(&ver) || ver != version1 ||
		!readID(&s, &tenant) || !readID(&s, &user) ||
		!s.ReadUint24LengthPrefixed(&certs) || !s.ReadUint24LengthPrefixed(&entries) ||
		!s.ReadUint64(&seq) || !s.Skip(32) || !s.Empty() {
		return nil, ErrMalformed
	}
	var out []*DeviceCertificate
	for !certs.Empty() {
		var enc cryptobyte.String
		if !certs.ReadUint16LengthPrefixed(&enc) {
			return nil, ErrMalformed
		}
		c, err := parseDeviceCertificate(enc)
		if err != nil {
			return nil, err
		}
		if c.Tenant != TenantID(tenant) || c.User != UserID(user) {
			return nil, ErrMalformed
		}
		out = append(out, c)
	}
	return out, nil
}

// valueReadError is a failure to read a value a user record refers to:
// not a malformed record, so recordErr keeps it.
type valueReadError struct{ err error }

func (e *valueReadError) Error() string { return e.err.Error() }
func (e *valueReadError) Unwrap() error { return e.err }

// recordErr is parseErr for a state record, except that it keeps
// ErrStateVersion and failures to read a referred value.
func recordErr(what string, err error) error {
	var ve *valueReadError
	if errors.Is(err, ErrStateVersion) || errors.As(err, &ve) {
		return err
	}
	return parseErr(what, err)
}
