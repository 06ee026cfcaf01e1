package kt

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/keyserver/org"
)

// Monitoring (docs/spec/directory.md §Monitoring): a device checks its own
// user's label at every epoch, or at least once per monitoring window,
// with a history since the version it last processed, and raises an Alert
// for every change it cannot attribute to the user's own devices (T29).

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
)

var alertNames = [...]string{
	AlertDeviceAdded: "device added without the user's approval", AlertDeviceRecovered: "device recovered by admins",
	AlertDeviceRevoked: "device revoked", AlertPolicyChanged: "policy changed", AlertUserRemoved: "user removed",
	AlertUnexplainedCertificate: "certificate without a timeline entry", AlertKeyChanged: "device keys changed",
	AlertDeviceRemoved: "device removed without a revocation",
}

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
}

func (a Alert) String() string {
	return fmt.Sprintf("%v: device %v at epoch %d (version %d)", a.Kind, a.Device, a.Epoch, a.Version)
}

// MonitorResult is the outcome of one monitoring step.
type MonitorResult struct {
	// Epoch is the epoch monitored up to; Version the label's version.
	Epoch   uint64
	Version uint32
	// Alerts are the unexpected changes since the last step, in order.
	Alerts []Alert
	// Devices are the usable certificates of the user's current value;
	// nil if the value did not change.
	Devices []*org.DeviceCertificate
}

// monitorState is what Monitor remembers of its user's label.
type monitorState struct {
	self    org.DeviceID
	pos     Position
	devices map[org.DeviceID]*monitoredDevice // the current value's devices
}

type monitoredDevice struct {
	serial  uint64
	keys    [32]byte // keysHash of its certificate
	signing *keys.IdentitySigningPublicKey
	own     bool // one of the user's own devices (§Monitoring rules)
}

// MonitorSince returns the version from which Monitor needs the history
// of user: 0 before the first step.
func (c *Client) MonitorSince(user org.UserID) uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ms := c.monitors[user]; ms != nil {
		return ms.pos.Version
	}
	return 0
}

// Monitor runs one monitoring step for the device's own user (T29): it
// verifies the history since MonitorSince(user) as VerifyHistory does,
// then judges every change in it by the rules of
// docs/spec/directory.md §Monitoring rules and returns an Alert for each
// one the device did not make and exp does not explain.
//
// The first step needs the whole history (since 0), and this device's own
// enrolment in it (ErrNotEnrolled until the epoch that publishes it): the
// device's own device_added or device_recovered entry is the baseline.
// Before it, only devices still present are judged; after it, everything.
// The devices that approved this device's enrolment, and those that
// approved theirs, back to the user's first device, are the user's own.
//
// On error the state is unchanged; on success the position moves to the
// latest version, so each change is reported once.
func (c *Client) Monitor(user org.UserID, exp Expected, resp *HistoryResponse, now time.Time) (*MonitorResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	prev := c.monitors[user]
	if exp.Self.IsZero() || (prev != nil && prev.self != exp.Self) {
		return nil, errors.New("kt: monitor: Expected.Self must be this device, the same at every step")
	}
	var since Position
	if prev != nil {
		since = prev.pos
	}
	pv, res, err := c.verifyHistory(user, since, resp, now)
	if err != nil {
		return nil, c.fail(pv, err, resp)
	}
	run, err := judge(prev, exp, res)
	if err != nil {
		return nil, err
	}
	next := &monitorState{self: exp.Self, pos: res.Position, devices: run.devices}
	if err := c.finish(pv, now, func() {
		c.trackHistory(pv, res)
		c.monitors[user] = next
	}); err != nil {
		return nil, err
	}
	return &MonitorResult{Epoch: res.Epoch, Version: res.Position.Version, Alerts: run.alerts, Devices: res.Devices}, nil
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
		for i, v := range res.Values {
			for _, cert := range v.Certificates {
				known[cert.Device] = cert.Identity.Signing
			}
			for _, e := range v.Entries {
				if cert := e.Certificate(); cert != nil {
					known[cert.Device] = cert.Identity.Signing
					if cert.Device == exp.Self && selfEntry == nil {
						selfEntry, baseline = e, i
					}
				}
			}
		}
		if selfEntry == nil {
			return nil, ErrNotEnrolled
		}
		// The devices that approved the enrolment of one of the user's own
		// devices are the user's own, back to the first device.
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
						if ap.Kind == org.ApproverDevice && !expected[id] && validDeviceApproval(e, known[id], ap) {
							expected[id], grew = true, true
						}
					}
				}
			}
		}
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
				if expected[id] || (isAdd && approvedByOwn(e, ownKeys)) {
					ownAdd[id] = true
					ownKeys[id] = cert.Identity.Signing
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
		case AlertDeviceAdded, AlertDeviceRecovered, AlertUnexplainedCertificate, AlertKeyChanged:
			if d := devices[a.Device]; d != nil && !d.own {
				kept = append(kept, a)
			}
		}
	}
	return &judgement{alerts: append(kept, alerts...), devices: devices}, nil
}

// approvedByOwn reports whether one of the user's own devices (keys in
// ownKeys) validly approved the device_added entry e.
func approvedByOwn(e *org.Entry, ownKeys map[org.DeviceID]*keys.IdentitySigningPublicKey) bool {
	for _, ap := range e.Approvals {
		if ap.Kind == org.ApproverDevice && validDeviceApproval(e, ownKeys[org.DeviceID(ap.Signer)], ap) {
			return true
		}
	}
	return false
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
