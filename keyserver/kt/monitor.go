package kt

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/vmap"
)

// Monitoring (docs/spec/directory.md §Monitoring): a device checks its own
// user's label at least once per monitoring window, verifying the label's
// commitment at every epoch since the last one it verified and the
// records since the version it last processed, and raises an Alert for
// every change it cannot attribute to the user's own devices (T29), and
// for every epoch at which the map held something the records do not
// explain.

// Expected is what a device tells Monitor about the changes its user made,
// so that they are not alerts.
type Expected struct {
	// Self is this device, the one monitoring. Its own enrolment is the
	// baseline of monitoring (§Monitoring, bootstrap).
	Self org.DeviceID
	// Devices are devices the user's own devices enrolled or approved, as
	// this device knows them (for instance from a device it approved, or
	// from the user's confirmation in the UI). Their additions are not
	// alerts, and they count as the user's own devices. Self is implied.
	Devices []org.DeviceID
	// Revoked are devices whose revocation the user asked for; their
	// revocations are not alerts.
	Revoked []org.DeviceID
	// Rosters are the admin rosters this device verified (VerifyOrgLookup
	// or VerifyOrgHistory of org.OrgLabelAdminRoster), those in force at
	// the records monitored. When set, the admin approvals of every
	// device_recovered entry, and of every device_added entry that carries
	// one, must verify under one of them (org.Entry.VerifyApprovals: M
	// distinct admins of the roster for a recovery), or the entry raises
	// AlertRecoveryApprovalsInvalid (§Monitoring rules). When empty, the
	// approvals are not checked.
	Rosters []*org.AdminRoster
}

// AlertKind says what changed under a monitored label.
type AlertKind uint8

// Alert kinds (docs/spec/directory.md §Monitoring rules).
const (
	// AlertDeviceAdded: a device_added entry for a device neither in
	// Expected.Devices nor approved by one of the user's own devices.
	AlertDeviceAdded AlertKind = iota + 1
	// AlertDeviceRecovered: a device_recovered entry (M-of-N admins
	// recovered a "lost" device) for a device not in Expected.Devices.
	AlertDeviceRecovered
	// AlertDeviceRevoked: a device was revoked that Expected.Revoked does
	// not name; Device == Expected.Self if it is this device.
	AlertDeviceRevoked
	// AlertPolicyChanged: the user's policy changed.
	AlertPolicyChanged
	// AlertUserRemoved: the user was removed.
	AlertUserRemoved
	// AlertUnexplainedCertificate: a certificate appeared in the value
	// without a device_added or device_recovered entry for its keys: the
	// CA key was used outside the tenant's state machine.
	AlertUnexplainedCertificate
	// AlertKeyChanged: a device kept its id but its keys changed.
	AlertKeyChanged
	// AlertDeviceRemoved: a device left the value without a
	// device_revoked entry.
	AlertDeviceRemoved
	// AlertHistoryRewritten: at Epoch the map held, for the label, a
	// commitment that is no record of the history the device was given
	// (or none): the directory showed some clients a value it then took
	// out of the label's history (docs/spec/directory.md §Per-epoch
	// monitoring). Commitment is what the map held.
	AlertHistoryRewritten
	// AlertRecordEpoch: the record of Version first appears in the map at
	// Epoch, not at the epoch it claims (a backdated or postdated record,
	// for instance one signed by a retired CA key after its rotation), or
	// never appears (Epoch is then where the map moved past it).
	AlertRecordEpoch
	// AlertDeviceAddedByOwnDevice: a device_added entry for a device not
	// in Expected.Devices, approved by another of the user's own devices,
	// ApprovedBy (not by this one). It is informational (Informational):
	// the device is own, and the alert tells each of the user's other
	// devices of a change it did not make.
	AlertDeviceAddedByOwnDevice
	// AlertRecoveryApprovalsInvalid: a device_recovered entry (or a
	// device_added entry with admin approvals) whose approvals do not
	// verify under any roster in Expected.Rosters, or fall short of its
	// threshold: the CA signed a recovery that dual control did not
	// authorise (a CA key used outside the tenant's state machine).
	AlertRecoveryApprovalsInvalid
)

var alertNames = [...]string{
	AlertDeviceAdded: "device added without the user's approval", AlertDeviceRecovered: "device recovered by admins",
	AlertDeviceRevoked: "device revoked", AlertPolicyChanged: "policy changed", AlertUserRemoved: "user removed",
	AlertUnexplainedCertificate: "certificate without a timeline entry", AlertKeyChanged: "device keys changed",
	AlertDeviceRemoved: "device removed without a revocation", AlertHistoryRewritten: "value not in the history at an epoch",
	AlertRecordEpoch:              "record published at another epoch than it claims",
	AlertDeviceAddedByOwnDevice:   "device added with the approval of another of the user's devices",
	AlertRecoveryApprovalsInvalid: "device recovered or added without valid admin approvals",
}

// Informational reports whether k tells of a change the user's own
// devices made (AlertDeviceAddedByOwnDevice), rather than of one that
// the user did not approve.
func (k AlertKind) Informational() bool { return k == AlertDeviceAddedByOwnDevice }

func (k AlertKind) String() string {
	if int(k) < len(alertNames) && alertNames[k] != "" {
		return alertNames[k]
	}
	return fmt.Sprintf("AlertKind(%d)", uint8(k))
}

// Alert is a change under the monitoring device's own label that the
// device did not make and the user did not expect.
type Alert struct {
	Kind AlertKind
	// Epoch and Version are those of the value record that carried the
	// change.
	Epoch   uint64
	Version uint32
	// Device is the device concerned (zero for policy and removal alerts).
	Device org.DeviceID
	// Entry is the timeline entry, for alerts raised by one.
	Entry *org.Entry
	// Certificate is the certificate concerned, if any.
	Certificate *org.DeviceCertificate
	// ApprovedBy is the own device whose approval added Device
	// (AlertDeviceAddedByOwnDevice).
	ApprovedBy org.DeviceID

	// For the per-epoch alerts (AlertHistoryRewritten, AlertRecordEpoch),
	// Epoch is the epoch at which the map showed it, Commitment what the
	// map held there (Absent if nothing), Record the record concerned
	// (AlertRecordEpoch), and Checkpoint and Response the evidence, verbatim:
	// the checkpoint note and the MonitorResponse encoding, from which
	// anyone holding the device's position can redo the walk.
	Commitment vmap.Commitment
	Absent     bool
	Record     *ValueRecord
	Checkpoint []byte
	Response   []byte
}

func (a Alert) String() string {
	switch a.Kind {
	case AlertHistoryRewritten:
		if a.Absent {
			return fmt.Sprintf("%v: no value at epoch %d (after version %d)", a.Kind, a.Epoch, a.Version)
		}
		return fmt.Sprintf("%v: commitment %x at epoch %d (after version %d)", a.Kind, a.Commitment[:8], a.Epoch, a.Version)
	case AlertRecordEpoch:
		claimed := "?"
		if a.Record != nil {
			claimed = fmt.Sprint(a.Record.Epoch)
		}
		return fmt.Sprintf("%v: version %d, of epoch %s, at epoch %d", a.Kind, a.Version, claimed, a.Epoch)
	case AlertDeviceAddedByOwnDevice:
		return fmt.Sprintf("%v: device %v, approved by device %v, at epoch %d (version %d)", a.Kind, a.Device, a.ApprovedBy, a.Epoch, a.Version)
	}
	return fmt.Sprintf("%v: device %v at epoch %d (version %d)", a.Kind, a.Device, a.Epoch, a.Version)
}

// MonitorResult is the outcome of one monitoring step.
type MonitorResult struct {
	// Epoch is the epoch monitored up to (the page's last); Version the
	// label's version there.
	Epoch   uint64
	Version uint32
	// Latest is the last epoch of the checkpoint; More is set when Epoch
	// is before it: the page ended (MaxMonitorEpochs), and the device
	// calls Monitor again.
	Latest uint64
	More   bool
	// Alerts are the unexpected changes since the last step: the
	// per-epoch alerts in epoch order, then the changes in the records,
	// in order.
	Alerts []Alert
	// Devices are the usable certificates of the user's current value;
	// nil if the value did not change.
	Devices []*org.DeviceCertificate
}

// monitorState is what Monitor remembers of its user's label.
type monitorState struct {
	self     org.DeviceID
	pos      Position
	verified uint64                            // the last epoch verified (§Per-epoch monitoring)
	devices  map[org.DeviceID]*monitoredDevice // the current value's devices
}

type monitoredDevice struct {
	serial  uint64
	keys    [32]byte // keysHash of its certificate
	signing *keys.IdentitySigningPublicKey
	own     bool // one of the user's own devices (§Monitoring rules)
}

// MonitorSince returns the version from which Monitor needs the records
// of user: 0 before the first step.
func (c *Client) MonitorSince(user org.UserID) uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ms := c.monitors[user]; ms != nil {
		return ms.pos.Version
	}
	return 0
}

// MonitorStart returns the epoch from which Monitor needs the map proofs
// of user: the epoch after the last one verified. It is 0 before the
// first step, when the directory chooses (BaselineEpoch).
func (c *Client) MonitorStart(user org.UserID) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ms := c.monitors[user]; ms != nil {
		return ms.verified + 1
	}
	return 0
}

// BaselineEpoch returns the epoch of the first of records whose value
// has a timeline entry adding device (device_added or device_recovered):
// where the device's first monitoring step starts
// (docs/spec/directory.md §Per-epoch monitoring, pages). A directory
// answers a first step with it, or with its last epoch if there is none.
// Records whose value does not parse are skipped.
func BaselineEpoch(records []*ValueRecord, device org.DeviceID) (uint64, bool) {
	for _, r := range records {
		if r == nil {
			continue
		}
		v, err := org.ParseUserValue(r.Value)
		if err == nil && baselineIn([]*org.UserValue{v}, device) == 0 {
			return r.Epoch, true
		}
	}
	return 0, false
}

// baselineIn returns the index of the first of values with an entry
// adding device, or -1.
func baselineIn(values []*org.UserValue, device org.DeviceID) int {
	for i, v := range values {
		for _, e := range v.Entries {
			if cert := e.Certificate(); cert != nil && cert.Device == device {
				return i
			}
		}
	}
	return -1
}

// Monitor runs one monitoring step for the device's own user (T29) with
// the directory's MonitorResponse for MonitorSince(user) and
// MonitorStart(user) (docs/spec/directory.md §Per-epoch monitoring): it
// verifies the label's map proof at every epoch of the page, the records
// since the device's position as VerifyHistory does, and the walk that
// matches the two, then judges every change in the records by the rules
// of §Monitoring rules. It returns an Alert for each change the device did
// not make and exp does not explain, and for each epoch at which the map
// held a value the records do not explain (AlertHistoryRewritten) or a
// record appeared at another epoch than it claims (AlertRecordEpoch).
//
// The first step needs the whole history (since 0), and this device's own
// enrolment in it (ErrNotEnrolled until the epoch that publishes it): the
// device's own device_added or device_recovered entry is the baseline.
// Before it, only devices still present are judged; after it, everything.
// The devices that approved this device's enrolment, and those that
// approved theirs, back to the user's first device, are the user's own.
//
// A page covers at most MaxMonitorEpochs epochs; MonitorResult.More says
// that the device is still behind the checkpoint and calls again. On
// error the state is unchanged; on success the position moves to the
// page's last record and epoch, so each change is reported once.
func (c *Client) Monitor(user org.UserID, exp Expected, resp *MonitorResponse, now time.Time) (*MonitorResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	prev := c.monitors[user]
	if exp.Self.IsZero() || (prev != nil && prev.self != exp.Self) {
		return nil, errors.New("kt: monitor: Expected.Self must be this device, the same at every step")
	}
	pv, mr, err := c.verifyMonitor(user, exp.Self, prev, resp, now)
	if err != nil {
		return nil, c.fail(pv, err, resp)
	}
	run, err := judge(prev, exp, mr.hist)
	if err != nil {
		return nil, err
	}
	if len(mr.alerts) > 0 {
		note := bytes.Clone(pv.note)
		enc, _ := resp.Marshal()
		for i := range mr.alerts {
			mr.alerts[i].Checkpoint, mr.alerts[i].Response = note, enc
		}
	}
	pos := mr.hist.Position
	next := &monitorState{self: exp.Self, pos: pos, verified: mr.verified, devices: run.devices}
	if err := c.finish(pv, now, func() {
		if len(mr.hist.Records) > 0 {
			c.trackEpoch(pv.label, pos.Version, pos.Commitment, pos.Epoch)
		}
		c.monitors[user] = next
	}); err != nil {
		return nil, err
	}
	return &MonitorResult{
		Epoch: mr.verified, Version: pos.Version, Latest: mr.size - 1, More: mr.verified+1 < mr.size,
		Alerts: append(mr.alerts, run.alerts...), Devices: mr.hist.Devices,
	}, nil
}

// monitorRun is a verified MonitorResponse.
type monitorRun struct {
	hist     *HistoryResult // the records, their values and the new position
	alerts   []Alert        // the walk's
	verified uint64         // the last epoch verified
	size     uint64         // the checkpoint's size
}

// verifyMonitor runs the verification of docs/spec/directory.md
// §Per-epoch monitoring, steps 1 to 7 (the values, not the monitoring
// rules), for the device self of user, whose monitor state is prev (nil
// before the first step). It changes nothing but the VRF cache.
func (c *Client) verifyMonitor(user org.UserID, self org.DeviceID, prev *monitorState, resp *MonitorResponse, now time.Time) (*proven, *monitorRun, error) {
	var since Position
	if prev != nil {
		since = prev.pos
	}
	// 1. The position, the checkpoint and the page.
	if resp.Since != since.Version {
		return nil, nil, fmt.Errorf("%w: response since version %d, monitor at version %d", ErrSince, resp.Since, since.Version)
	}
	if prev != nil && resp.Start != prev.verified+1 {
		return nil, nil, fmt.Errorf("%w: response from epoch %d, monitor verified through epoch %d", ErrSince, resp.Start, prev.verified)
	}
	pv, err := c.openCheckpoint(&resp.Checkpoint, now)
	if err != nil {
		return pv, nil, err
	}
	n, start, count := pv.cp.Size, resp.Start, uint64(len(resp.Epochs))
	run := &monitorRun{size: n}
	switch {
	case start > n || (start == n && count != 0):
		return pv, nil, ktErr(StepEpoch, pv, fmt.Sprintf("epochs from %d in a tree of size %d", start, n), nil)
	case start < n && count != min(MaxMonitorEpochs, n-start):
		return pv, nil, ktErr(StepEpoch, pv, fmt.Sprintf("%d epochs from %d in a tree of size %d, want %d", count, start, n, min(MaxMonitorEpochs, n-start)), nil)
	}
	// 2. The label.
	alpha := UserAlpha(c.bundle.Tenant, user)
	if c.vrfCached(alpha, resp.VRFProof) {
		pv.label = c.vrfs[string(alpha)].label
	} else {
		if pv.label, err = VerifyLabel(c.bundle.VRF, alpha, resp.VRFProof); err != nil {
			return pv, nil, ktErr(StepVRF, pv, "VRF proof does not verify for the label asked for", err)
		}
		if len(c.vrfs) >= maxCache {
			clear(c.vrfs)
		}
		c.vrfs[string(alpha)] = verifiedVRF{pi: bytes.Clone(resp.VRFProof), label: pv.label}
	}
	// 3. The map proofs, their epoch entries and the range proof.
	held := make([]vmap.Result, count)
	leaves := make([]tlog.Hash, count)
	for i, me := range resp.Epochs {
		e := start + uint64(i)
		if me.MapProof == nil {
			return pv, nil, ktErr(StepMap, pv, fmt.Sprintf("no map proof for epoch %d", e), nil)
		}
		root, res, err := vmap.ProofRoot(pv.label, me.MapProof)
		if err != nil {
			return pv, nil, ktErr(StepMap, pv, fmt.Sprintf("map proof of epoch %d", e), err)
		}
		pv.entry = EpochEntry{Epoch: e, Time: me.Time, MapRoot: root}
		if leaves[i], err = pv.entry.LeafHash(); err != nil {
			return pv, nil, ktErr(StepEpoch, pv, "entry does not encode", err)
		}
		held[i] = res
	}
	if count == 0 {
		if len(resp.Records) > 0 {
			return pv, nil, ktErr(StepHistory, pv, "records without epochs", nil)
		}
		// Up to date: nothing to verify but the checkpoint.
		pv.keepEpoch = true
		run.verified = prev.verifiedOr(0)
		run.hist = &HistoryResult{Label: pv.label, Position: since}
		return pv, run, nil
	}
	if err := tlog.VerifyRange(start, leaves, n, resp.RangeProof, pv.cp.Root); err != nil {
		return pv, nil, ktErr(StepLogInclusion, pv, fmt.Sprintf("entries of epochs %d to %d not in the checkpoint's tree", start, start+count-1), err)
	}
	run.verified = start + count - 1
	if c.hasEpoch && run.verified < c.epoch {
		pv.keepEpoch = true // a page behind the client's latest epoch
	} else if err := c.checkMonitorEntry(pv); err != nil {
		return pv, nil, err
	}
	// A page that ends at the tree's last leaf proves it (§Held entry).
	pv.lastLeaf = !pv.keepEpoch && run.verified == n-1
	pv.mapRes = held[count-1]
	if st := c.labels[pv.label]; st != nil && !pv.mapRes.Present {
		return pv, nil, ktErr(StepRollback, pv, fmt.Sprintf("label seen at version %d is absent", st.version), nil)
	}
	// 4. The records' chain.
	recs := resp.Records
	cms, err := c.monitorChain(pv, since, recs)
	if err != nil {
		return pv, nil, err
	}
	// 5. The map at the page's last epoch holds the last record.
	cur := -1 // the current record of the walk: -1 for the position's
	pos := vmap.Result{Present: since.Version > 0, Commitment: since.Commitment}
	if prev == nil {
		// The leading records from before start, at the first step.
		for cur+1 < len(recs) && recs[cur+1].Epoch < start && (cur < 0 || recs[cur+1].Epoch > recs[cur].Epoch) {
			cur++
		}
	}
	last := pos
	if k := len(recs); k > 0 {
		last = vmap.Result{Present: true, Commitment: cms[k-1]}
	}
	if pv.mapRes != last {
		return pv, nil, ktErr(StepHistory, pv, fmt.Sprintf("the records do not explain the map at epoch %d", run.verified), nil)
	}
	// 6. The walk.
	run.alerts = walkEpochs(start, held, pos, since.Version, cur, recs, cms)
	// 7. The values, and at the first step the baseline.
	run.hist = &HistoryResult{Epoch: run.verified, Label: pv.label, Records: recs, Position: since}
	lastCM := since.Commitment
	if k := len(cms); k > 0 {
		lastCM = cms[k-1]
	}
	if err := c.verifyValues(pv, user, since, recs, lastCM, now, run.hist); err != nil {
		return pv, nil, err
	}
	if prev == nil {
		if i := baselineIn(run.hist.Values, self); i >= 0 && recs[i].Epoch < start {
			return pv, nil, fmt.Errorf("%w: the baseline record of epoch %d is before the first epoch proven, %d", ErrSince, recs[i].Epoch, start)
		}
	}
	return pv, run, nil
}

func (ms *monitorState) verifiedOr(v uint64) uint64 {
	if ms == nil {
		return v
	}
	return ms.verified
}

// checkMonitorEntry is §Client verification step 2's rule on the client's
// last accepted entry, for the entry of a page's last epoch (pv.entry),
// at or after it.
func (c *Client) checkMonitorEntry(pv *proven) error {
	if !c.hasEpoch {
		return nil
	}
	at := pv.entry.Time.Unix()
	if at < c.epochAt || (pv.entry.Epoch == c.epoch && at != c.epochAt) {
		return ktErr(StepEpoch, pv, fmt.Sprintf("epoch %d at %d after epoch %d at %d", pv.entry.Epoch, at, c.epoch, c.epochAt), nil)
	}
	return nil
}

// monitorChain checks step 4 of §Per-epoch monitoring: the records are
// the versions after since, each naming the commitment of the one before,
// with no rollback. It returns their commitments. Their epochs are the
// walk's to judge.
func (c *Client) monitorChain(pv *proven, since Position, recs []*ValueRecord) ([]vmap.Commitment, error) {
	cms := make([]vmap.Commitment, len(recs))
	prev := since.Commitment
	for i, r := range recs {
		if r == nil {
			return nil, ktErr(StepHistory, pv, fmt.Sprintf("record %d missing", i), nil)
		}
		if want := uint64(since.Version) + 1 + uint64(i); uint64(r.Version) != want {
			return nil, ktErr(StepHistory, pv, fmt.Sprintf("record %d has version %d, want %d", i, r.Version, want), nil)
		}
		if r.Prev != prev {
			return nil, ktErr(StepHistory, pv, fmt.Sprintf("version %d does not name the commitment of version %d", r.Version, r.Version-1), nil)
		}
		cm, err := Commit(pv.label, r)
		if err != nil {
			return nil, ktErr(StepHistory, pv, "record does not encode", err)
		}
		if st := c.labels[pv.label]; st != nil && r.Version == st.version && cm != st.commitment {
			return nil, ktErr(StepRollback, pv, fmt.Sprintf("version %d with another commitment", r.Version), nil)
		}
		cms[i], prev = cm, cm
	}
	if k := len(recs); k > 0 {
		if err := c.checkRollback(pv, recs[k-1].Version, cms[k-1]); err != nil {
			return nil, err
		}
	}
	return cms, nil
}

// walkEpochs is step 6 of §Per-epoch monitoring: it matches what the map held
// at each epoch from start (held) with the records. The current record is
// recs[cur], or for cur = -1 the position's value pos, of version
// posVersion. It returns the per-epoch alerts, without their evidence.
func walkEpochs(start uint64, held []vmap.Result, pos vmap.Result, posVersion uint32, cur int, recs []*ValueRecord, cms []vmap.Commitment) []Alert {
	value := func(i int) vmap.Result {
		if i < 0 {
			return pos
		}
		return vmap.Result{Present: true, Commitment: cms[i]}
	}
	version := func(i int) uint32 {
		if i < 0 {
			return posVersion
		}
		return recs[i].Version
	}
	var alerts []Alert
	var foreign *vmap.Result // the run of an unexplained value
	for i, m := range held {
		e := start + uint64(i)
		if m == value(cur) {
			foreign = nil
			continue
		}
		next := -1
		for j := cur + 1; j < len(recs) && m.Present; j++ {
			if cms[j] == m.Commitment {
				next = j
				break
			}
		}
		if next < 0 {
			if foreign == nil || *foreign != m {
				alerts = append(alerts, Alert{Kind: AlertHistoryRewritten, Epoch: e, Version: version(cur),
					Commitment: m.Commitment, Absent: !m.Present})
				foreign = &held[i]
			}
			continue
		}
		foreign = nil
		for j := cur + 1; j < next; j++ { // never in the map
			alerts = append(alerts, Alert{Kind: AlertRecordEpoch, Epoch: e, Version: recs[j].Version, Commitment: cms[j], Record: recs[j]})
		}
		if recs[next].Epoch != e {
			alerts = append(alerts, Alert{Kind: AlertRecordEpoch, Epoch: e, Version: recs[next].Version, Commitment: cms[next], Record: recs[next]})
		}
		cur = next
	}
	return alerts
}

// judgement is the outcome of applying the monitoring rules to a history.
type judgement struct {
	alerts  []Alert
	devices map[org.DeviceID]*monitoredDevice
}

// judge applies §Monitoring rules to a verified history. It is a pure
// function of its inputs.
func judge(prev *monitorState, exp Expected, res *HistoryResult) (*judgement, error) {
	expected := map[org.DeviceID]bool{exp.Self: true}
	for _, d := range exp.Devices {
		expected[d] = true
	}
	revokeOK := map[org.DeviceID]bool{}
	for _, d := range exp.Revoked {
		revokeOK[d] = true
	}
	devices := map[org.DeviceID]*monitoredDevice{}
	if prev != nil {
		for id, d := range prev.devices {
			nd := *d
			nd.own = nd.own || expected[id]
			devices[id] = &nd
		}
	}
	// ownKeys holds the identity keys of the user's own current devices,
	// whose approvals explain a device_added entry.
	ownKeys := map[org.DeviceID]*keys.IdentitySigningPublicKey{}
	for id, d := range devices {
		if d.own {
			ownKeys[id] = d.signing
		}
	}

	// Bootstrap: find this device's enrolment, the baseline; the devices
	// that approved it, and those that approved them, are the user's own.
	bootstrap := prev == nil
	baseline := -1 // index of the record holding the baseline entry
	if bootstrap {
		var selfEntry *org.Entry
		known := map[org.DeviceID]*keys.IdentitySigningPublicKey{}
		addDeviceKeys(known, res)
		for i, v := range res.Values {
			for _, e := range v.Entries {
				if cert := e.Certificate(); selfEntry == nil && cert != nil && cert.Device == exp.Self {
					selfEntry, baseline = e, i
				}
			}
		}
		if selfEntry == nil {
			return nil, ErrNotEnrolled
		}
		rooted := rootedDevices(res, known, exp.Devices)
		// The devices that approved the enrolment of one of the user's own
		// devices are the user's own, back to the first device, if their
		// own additions trace back to it (or the user confirmed them): a
		// device admins recovered does not become own by approving one.
		for grew := true; grew; {
			grew = false
			for _, v := range res.Values {
				for _, e := range v.Entries {
					cert := e.Certificate()
					if cert == nil || !expected[cert.Device] {
						continue
					}
					for _, ap := range e.Approvals {
						id := org.DeviceID(ap.Signer)
						if ap.Kind == org.ApproverDevice && !expected[id] && rooted[id] && validDeviceApproval(e, known[id], ap) {
							expected[id], grew = true, true
						}
					}
				}
			}
		}
	}

	// deviceKeys holds the identity keys of every device the monitor knows
	// of, for checking the device approvals of an entry with admin
	// approvals.
	deviceKeys := map[org.DeviceID]*keys.IdentitySigningPublicKey{}
	if len(exp.Rosters) > 0 {
		for id, d := range devices {
			deviceKeys[id] = d.signing
		}
		addDeviceKeys(deviceKeys, res)
	}

	var alerts, pre []Alert
	for i, v := range res.Values {
		rec := res.Records[i]
		inPre := bootstrap && i <= baseline
		emit := func(a Alert) {
			a.Epoch, a.Version = rec.Epoch, rec.Version
			if inPre {
				pre = append(pre, a)
			} else {
				alerts = append(alerts, a)
			}
		}
		added := map[org.DeviceID]*org.DeviceCertificate{}
		ownAdd := map[org.DeviceID]bool{}
		removed := map[org.DeviceID]bool{}
		for _, e := range v.Entries {
			switch a := e.Action.(type) {
			case *org.DeviceAdded, *org.DeviceRecovered:
				cert := e.Certificate()
				id := cert.Device
				added[id] = cert
				_, isAdd := a.(*org.DeviceAdded)
				if !approvalsValid(e, isAdd, exp.Rosters, deviceKeys) {
					emit(Alert{Kind: AlertRecoveryApprovalsInvalid, Device: id, Entry: e, Certificate: cert})
					if !expected[id] {
						continue // not own: this alert replaces device added or recovered
					}
				}
				var approvers []org.DeviceID
				if isAdd {
					approvers = ownApprovers(e, ownKeys)
				}
				if expected[id] || len(approvers) > 0 {
					ownAdd[id] = true
					ownKeys[id] = cert.Identity.Signing
					if !expected[id] && !slices.Contains(approvers, exp.Self) {
						// Another own device made this change: tell this one.
						emit(Alert{Kind: AlertDeviceAddedByOwnDevice, Device: id, Entry: e, Certificate: cert, ApprovedBy: approvers[0]})
					}
					continue
				}
				kind := AlertDeviceAdded
				if !isAdd {
					kind = AlertDeviceRecovered
				}
				emit(Alert{Kind: kind, Device: id, Entry: e, Certificate: cert})
			case *org.DeviceRevoked:
				removed[a.Device] = true
				delete(ownKeys, a.Device)
				if !revokeOK[a.Device] {
					emit(Alert{Kind: AlertDeviceRevoked, Device: a.Device, Entry: e})
				}
			case *org.PolicyChanged:
				emit(Alert{Kind: AlertPolicyChanged, Entry: e})
			case *org.UserRemoved:
				emit(Alert{Kind: AlertUserRemoved, Entry: e})
			}
		}
		next := make(map[org.DeviceID]*monitoredDevice, len(v.Certificates))
		for _, cert := range v.Certificates {
			id, k := cert.Device, keysHash(cert)
			d := &monitoredDevice{serial: cert.Serial, keys: k, signing: cert.Identity.Signing}
			if ac, ok := added[id]; ok {
				d.own = ownAdd[id]
				if keysHash(ac) != k {
					d.own = false
					emit(Alert{Kind: AlertUnexplainedCertificate, Device: id, Certificate: cert})
				}
			} else if old := devices[id]; old != nil {
				d.own = old.own
				if old.keys != k {
					d.own = false
					emit(Alert{Kind: AlertKeyChanged, Device: id, Certificate: cert})
				}
			} else {
				emit(Alert{Kind: AlertUnexplainedCertificate, Device: id, Certificate: cert})
			}
			next[id] = d
		}
		for id := range devices {
			if next[id] == nil && !removed[id] {
				emit(Alert{Kind: AlertDeviceRemoved, Device: id})
			}
		}
		devices = next
		clear(ownKeys)
		for id, d := range devices {
			if d.own {
				ownKeys[id] = d.signing
			}
		}
	}
	// Before the baseline, only the devices the user still has are judged.
	var kept []Alert
	for _, a := range pre {
		switch a.Kind {
		case AlertDeviceAdded, AlertDeviceRecovered, AlertUnexplainedCertificate, AlertKeyChanged, AlertRecoveryApprovalsInvalid:
			if d := devices[a.Device]; d != nil && !d.own {
				kept = append(kept, a)
			}
		}
	}
	return &judgement{alerts: append(kept, alerts...), devices: devices}, nil
}

// approvalsValid reports whether the approvals of the device_added
// (isAdd) or device_recovered entry e verify under one of rosters
// (org.Entry.VerifyApprovals; deviceKeys are the identity keys of the
// user's devices, for device approvals): always for a recovery, and for an
// addition that carries an admin approval (§Monitoring rules). With no
// rosters, or for an addition approved by devices alone (which the rules
// of own devices judge), it reports true.
func approvalsValid(e *org.Entry, isAdd bool, rosters []*org.AdminRoster, deviceKeys map[org.DeviceID]*keys.IdentitySigningPublicKey) bool {
	if len(rosters) == 0 {
		return true
	}
	if isAdd && !slices.ContainsFunc(e.Approvals, func(a *org.Approval) bool { return a != nil && a.Kind == org.ApproverAdmin }) {
		return true
	}
	key := func(id org.DeviceID) *keys.IdentitySigningPublicKey { return deviceKeys[id] }
	for _, r := range rosters {
		if r != nil && e.VerifyApprovals(r, key) == nil {
			return true
		}
	}
	return false
}

// rootedDevices returns the devices of a whole history whose additions
// trace back through device approvals to the user's first device (the
// first device_added entry of the history) or to a confirmed device: each
// a device_added entry validly approved by such a device
// (docs/spec/directory.md §Monitoring rules). A device_recovered entry
// roots nothing but a confirmed device. known holds the identity keys of
// the history's devices.
func rootedDevices(res *HistoryResult, known map[org.DeviceID]*keys.IdentitySigningPublicKey, confirmed []org.DeviceID) map[org.DeviceID]bool {
	rooted := map[org.DeviceID]bool{}
	rootKeys := map[org.DeviceID]*keys.IdentitySigningPublicKey{}
	root := func(id org.DeviceID) { rooted[id], rootKeys[id] = true, known[id] }
	for _, d := range confirmed {
		root(d)
	}
	first := true
	for _, v := range res.Values {
		for _, e := range v.Entries {
			cert := e.Certificate()
			if cert == nil {
				continue
			}
			if _, isAdd := e.Action.(*org.DeviceAdded); isAdd && (first || approvedByOwn(e, rootKeys)) {
				root(cert.Device)
			}
			first = false
		}
	}
	return rooted
}

// approvedByOwn reports whether one of the user's own devices (keys in
// ownKeys) validly approved the device_added entry e.
func approvedByOwn(e *org.Entry, ownKeys map[org.DeviceID]*keys.IdentitySigningPublicKey) bool {
	return len(ownApprovers(e, ownKeys)) > 0
}

// ownApprovers returns the user's own devices (keys in ownKeys) that
// validly approved the device_added entry e, in the entry's order.
func ownApprovers(e *org.Entry, ownKeys map[org.DeviceID]*keys.IdentitySigningPublicKey) []org.DeviceID {
	var ids []org.DeviceID
	for _, ap := range e.Approvals {
		id := org.DeviceID(ap.Signer)
		if ap.Kind == org.ApproverDevice && validDeviceApproval(e, ownKeys[id], ap) {
			ids = append(ids, id)
		}
	}
	return ids
}

// validDeviceApproval checks a device approval of a device_added or
// device_recovered entry under the approving device's identity key
// (docs/spec/org.md §Dual control).
func validDeviceApproval(e *org.Entry, key *keys.IdentitySigningPublicKey, ap *org.Approval) bool {
	cert := e.Certificate()
	var code org.CodeID
	switch a := e.Action.(type) {
	case *org.DeviceAdded:
		code = a.Code
	case *org.DeviceRecovered:
		code = a.Code
	}
	if key == nil || cert == nil {
		return false
	}
	req := &org.EnrolmentRequest{Tenant: e.Tenant, Code: code, Identity: cert.Identity, MLSKey: cert.MLSKey}
	msg, err := org.DeviceApprovalMessage(e.User, req)
	return err == nil && key.Verify(msg, ap.Signature) == nil
}

// keysHash identifies a certificate's keys: SHA-256 of the identity
// signing key, the identity DH key and the MLS signature key (scheme and
// raw key).
func keysHash(c *org.DeviceCertificate) [32]byte {
	h := sha256.New()
	h.Write(c.Identity.Signing.Bytes())
	h.Write(c.Identity.DH.Bytes())
	h.Write(binary.BigEndian.AppendUint16(nil, c.MLSKey.Scheme()))
	h.Write(c.MLSKey.Raw())
	return [32]byte(h.Sum(nil))
}

// addDeviceKeys adds to m the identity signing key of every device a
// certificate of res names, in its values' certificates and entries.
func addDeviceKeys(m map[org.DeviceID]*keys.IdentitySigningPublicKey, res *HistoryResult) {
	for _, v := range res.Values {
		for _, cert := range v.Certificates {
			m[cert.Device] = cert.Identity.Signing
		}
		for _, e := range v.Entries {
			if cert := e.Certificate(); cert != nil {
				m[cert.Device] = cert.Identity.Signing
			}
		}
	}
}
