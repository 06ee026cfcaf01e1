package kttest

import (
	"errors"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/keyserver/org"
)

// Device is a user's device: its private keys and its certificate.
type Device struct {
	User        org.UserID
	ID          org.DeviceID
	Identity    *keys.DeviceIdentityPrivate
	MLS         *org.MLSSignatureKey
	Certificate *org.DeviceCertificate
	Entry       *org.Entry // the device_added or device_recovered entry
}

// AddUser adds a user as the first admin.
func (d *Directory) AddUser(user org.UserID, displayName string, now time.Time) error {
	_, err := d.Tenant.AddUser(d.Admins[0].Public().ID(), user, displayName, org.DepartmentID{}, now)
	return err
}

// NewDeviceKeys returns a new device's keys, not yet enrolled.
func (d *Directory) NewDeviceKeys(user org.UserID) (*Device, error) {
	id, err := keys.GenerateDeviceIdentity(d.Rand)
	if err != nil {
		return nil, err
	}
	mk, err := keys.GenerateIdentitySigningKey(d.Rand) // any Ed25519 key stands in for the MLS key
	if err != nil {
		return nil, err
	}
	mls, err := org.NewMLSSignatureKey(org.MLSSchemeEd25519, mk.Public().Raw())
	if err != nil {
		return nil, err
	}
	return &Device{User: user, Identity: id, MLS: mls}, nil
}

// Request issues an enrolment code for dev's user (as the first admin) and
// returns it with dev's enrolment request.
func (d *Directory) Request(dev *Device, now time.Time) (*org.EnrolmentCode, *org.EnrolmentRequest, error) {
	code, err := d.Tenant.IssueEnrolmentCode(d.Rand, d.Admins[0].Public().ID(), dev.User, 24*time.Hour, now)
	if err != nil {
		return nil, nil, err
	}
	req, err := org.NewEnrolmentRequest(code, dev.Identity, dev.MLS)
	if err != nil {
		return nil, nil, err
	}
	return code, req, nil
}

// Redeem redeems dev's enrolment with the given approvals and fills in
// its certificate.
func (d *Directory) Redeem(dev *Device, code *org.EnrolmentCode, req *org.EnrolmentRequest, approvals []*org.Approval, now time.Time) error {
	en, err := d.Tenant.RedeemEnrolmentCode(code, req, approvals, now)
	if err != nil {
		return err
	}
	dev.ID, dev.Certificate, dev.Entry = en.Certificate.Device, en.Certificate, en.Entry
	return nil
}

// Enrol enrols a new device for user: the user's first device if approver
// is nil, else a device approved by approver, one of the user's devices
// (docs/spec/org.md §Dual control). The device appears in the directory
// at the next PublishEpoch.
func (d *Directory) Enrol(user org.UserID, approver *Device, now time.Time) (*Device, error) {
	dev, err := d.NewDeviceKeys(user)
	if err != nil {
		return nil, err
	}
	code, req, err := d.Request(dev, now)
	if err != nil {
		return nil, err
	}
	var approvals []*org.Approval
	if approver != nil {
		a, err := org.ApproveByDevice(approver.Identity.Signing, approver.ID, user, req)
		if err != nil {
			return nil, err
		}
		approvals = append(approvals, a)
	}
	return dev, d.Redeem(dev, code, req, approvals, now)
}

// Recover enrols a new device for user on the approval of the first n
// admins, without any device of the user: the lost-device recovery path
// of dual control, recorded as device_recovered.
func (d *Directory) Recover(user org.UserID, n int, now time.Time) (*Device, error) {
	if n > len(d.Admins) {
		return nil, errors.New("kttest: not that many admins")
	}
	dev, err := d.NewDeviceKeys(user)
	if err != nil {
		return nil, err
	}
	code, req, err := d.Request(dev, now)
	if err != nil {
		return nil, err
	}
	var approvals []*org.Approval
	for _, k := range d.Admins[:n] {
		a, err := org.ApproveByAdmin(k, user, req)
		if err != nil {
			return nil, err
		}
		approvals = append(approvals, a)
	}
	return dev, d.Redeem(dev, code, req, approvals, now)
}

// Revoke revokes one of user's devices, as the first admin.
func (d *Directory) Revoke(dev *Device, reason org.RevocationReason, now time.Time) error {
	_, err := d.Tenant.RevokeDevice(d.Admins[0].Public().ID(), dev.User, dev.ID, reason, now)
	return err
}
