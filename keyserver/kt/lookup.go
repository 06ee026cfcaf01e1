package kt

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/vmap"
)

// LookupResult is a verified lookup of a user (docs/spec/directory.md
// §Client verification).
type LookupResult struct {
	// Epoch is the epoch the lookup proves the value at: the last epoch of
	// the trusted checkpoint.
	Epoch uint64
	// Label is the user's map label.
	Label vmap.Label
	// Record is the label's latest value record; Record.Version is the
	// value's version.
	Record *ValueRecord
	// Value is the user's value: its timeline entries authenticated by
	// the CA's signature on the last of them through their hash chain,
	// and every certificate either carried by one of those entries or
	// verified under the trusted CA key (docs/spec/directory.md §Client
	// verification, step 8).
	Value *org.UserValue
	// Devices are the certificates of Value that a client may use now:
	// each passed org.VerifyDeviceCertificate with the trusted CA, the
	// tenant, the time of verification, and the revocations the verified
	// timeline entries name.
	Devices []*org.DeviceCertificate
	// Unusable are the certificates of Value that are expired, not yet
	// valid or revoked, each with the reason.
	Unusable []*org.CertificateError
}

// Device returns the usable certificate of device, or nil.
func (r *LookupResult) Device(device org.DeviceID) *org.DeviceCertificate {
	for _, c := range r.Devices {
		if c.Device == device {
			return c
		}
	}
	return nil
}

// VerifyLookup verifies the directory's answer to a lookup of user in
// tenant, which must be the trust bundle's, at local time now
// (docs/spec/directory.md §Client verification), and returns the user's
// verified value and usable devices.
//
// A response the directory cannot justify is a *KTProofError (matching
// ErrProof), with the evidence; a checkpoint that the tlog rules reject is
// the crypto/tlog error, a *tlog.ForkError among them. A valid proof that
// the user has no value is ErrNotFound. On any error but ErrNotFound the
// client's state is unchanged (except a proven fork); ErrNotFound and
// success commit the checkpoint and the label's version.
func (c *Client) VerifyLookup(tenant org.TenantID, user org.UserID, resp *LookupResponse, now time.Time) (*LookupResult, error) {
	if tenant != c.bundle.Tenant {
		return nil, fmt.Errorf("kt: lookup: %w", org.ErrWrongTenant)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	alpha := UserAlpha(tenant, user)
	// On first sight of the label, the VRF proof is verified on a
	// goroutine of its own while this one parses the value, and then
	// alongside the value's CA signatures, on up to GOMAXPROCS
	// goroutines: both depend on the response alone, and their outcomes
	// are consulted where the sequential checks would make them, so
	// errors and their order are unchanged, and so is the state on any
	// rejection.
	var preVRF *vrfResult
	var pre *preValue
	if resp.Record != nil && !c.vrfCached(alpha, resp.Proof.VRFProof) {
		preVRF = new(vrfResult)
		vrfDone := make(chan struct{})
		go func() {
			defer close(vrfDone)
			preVRF.label, preVRF.err = VerifyLabel(c.bundle.VRF, alpha, resp.Proof.VRFProof)
		}()
		var jobs []func()
		pre, jobs = c.prepareUserValue(user, resp.Record.Value, c.caAt(resp.Record.Epoch), c.clientTime(now), nil, true)
		runJobs(jobs)
		<-vrfDone
		if pre != nil {
			pre.sigs.collect()
		}
	}
	pv, err := c.openProofWith(alpha, &resp.Checkpoint, &resp.Proof, now, preVRF)
	if err != nil {
		return nil, c.fail(pv, err, resp)
	}
	if !pv.mapRes.Present {
		if err := c.finish(pv, now, nil); err != nil {
			return nil, err
		}
		return nil, ErrNotFound
	}
	if err := c.checkRecord(pv, resp.Record); err != nil {
		return nil, c.fail(pv, err, resp)
	}
	if err := c.checkRecordEpoch(pv, resp.Record, resp.RecordProof); err != nil {
		return nil, c.fail(pv, err, resp)
	}
	t := c.clientTime(now)
	var v *userValue
	if cv := c.values[pv.label]; cv != nil && cv.commitment == pv.mapRes.Commitment {
		// The same value as verified before (the commitment binds it):
		// only validity and revocation depend on the time.
		v = &userValue{UserValue: cv.value, revoked: cv.revoked}
		v.devices, v.unusable = usable(cv.value.Certificates, t, cv.revoked)
	} else {
		var err error
		if v, err = c.verifyUserValueWith(pv, user, resp.Record.Value, c.caAt(resp.Record.Epoch), org.TimelineHead{}, false, t, nil, pre, true); err != nil {
			return nil, c.fail(pv, err, resp)
		}
	}
	res := &LookupResult{Epoch: pv.entry.Epoch, Label: pv.label, Record: resp.Record, Value: v.UserValue, Devices: v.devices, Unusable: v.unusable}
	err = c.finish(pv, now, func() {
		c.track(pv.label, resp.Record.Version, pv.mapRes.Commitment)
		if len(c.values) >= maxCache {
			clear(c.values)
		}
		c.values[pv.label] = &verifiedValue{commitment: pv.mapRes.Commitment, value: v.UserValue, revoked: v.revoked}
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// VerifyAbsence verifies the directory's proof that user has no value in
// tenant at the trusted checkpoint's last epoch, and returns that epoch.
// A valid proof that the user is present is ErrIncluded. Errors are as for
// VerifyLookup.
func (c *Client) VerifyAbsence(tenant org.TenantID, user org.UserID, resp *LookupResponse, now time.Time) (uint64, error) {
	if tenant != c.bundle.Tenant {
		return 0, fmt.Errorf("kt: absence: %w", org.ErrWrongTenant)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	pv, err := c.openProof(UserAlpha(tenant, user), &resp.Checkpoint, &resp.Proof, now)
	if err != nil {
		return 0, c.fail(pv, err, resp)
	}
	if pv.mapRes.Present {
		if err := c.checkRecord(pv, resp.Record); err != nil {
			return 0, c.fail(pv, err, resp)
		}
		err := c.finish(pv, now, func() { c.track(pv.label, resp.Record.Version, pv.mapRes.Commitment) })
		if err != nil {
			return 0, err
		}
		return pv.entry.Epoch, ErrIncluded
	}
	if err := c.finish(pv, now, nil); err != nil {
		return 0, err
	}
	return pv.entry.Epoch, nil
}

// OrgLookupResult is a verified lookup of an org label.
type OrgLookupResult struct {
	Epoch  uint64
	Label  vmap.Label
	Record *ValueRecord
	// Statement is the parsed org statement, verified under the trusted
	// CA key: *org.TrustBundle, *org.AdminRoster, *org.CARotation,
	// *org.OrgChart, *org.EscrowPolicy or *org.PolicyBundle.
	Statement any
}

// VerifyOrgLookup verifies the directory's answer to a lookup of the org
// label name (org.OrgLabel*) and returns the verified statement, signed
// by the CA key in force at the record's epoch. Errors are as for
// VerifyLookup.
//
// A CARotation verifies if it rotates away from the pinned CA (the client
// then follows it with FollowTrustBundle), or if it is the rotation to the
// CA key in force at its epoch. A client that knows no CA key before its
// pinned one (enrolled after a rotation) learns the old key of the
// rotation to it, so that records published before the rotation verify
// (docs/spec/directory.md §CA history).
func (c *Client) VerifyOrgLookup(name string, resp *LookupResponse, now time.Time) (*OrgLookupResult, error) {
	alpha, err := OrgAlpha(c.bundle.Tenant, name)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	pv, err := c.openProof(alpha, &resp.Checkpoint, &resp.Proof, now)
	if err != nil {
		return nil, c.fail(pv, err, resp)
	}
	if !pv.mapRes.Present {
		if err := c.finish(pv, now, nil); err != nil {
			return nil, err
		}
		return nil, ErrNotFound
	}
	if err := c.checkRecord(pv, resp.Record); err != nil {
		return nil, c.fail(pv, err, resp)
	}
	if err := c.checkRecordEpoch(pv, resp.Record, resp.RecordProof); err != nil {
		return nil, c.fail(pv, err, resp)
	}
	st, err := c.verifyOrgValue(name, resp.Record)
	if err != nil {
		return nil, c.fail(pv, ktErr(StepValue, pv, "org statement for "+name, err), resp)
	}
	err = c.finish(pv, now, func() {
		c.track(pv.label, resp.Record.Version, pv.mapRes.Commitment)
		if r, ok := st.(*org.CARotation); ok {
			c.learnRotation(r, resp.Record.Epoch)
		}
	})
	if err != nil {
		return nil, err
	}
	return &OrgLookupResult{Epoch: pv.entry.Epoch, Label: pv.label, Record: resp.Record, Statement: st}, nil
}

func (c *Client) verifyOrgValue(name string, rec *ValueRecord) (any, error) {
	value := rec.Value
	ca, tenant := c.caAt(rec.Epoch), c.bundle.Tenant
	verify := func(st any, err error, v func() error) (any, error) {
		if err != nil {
			return nil, err
		}
		if err := v(); err != nil {
			return nil, err
		}
		return st, nil
	}
	switch name {
	case org.OrgLabelTrustBundle:
		s, err := org.ParseTrustBundle(value)
		return verify(s, err, func() error { return s.Verify(ca, tenant) })
	case org.OrgLabelAdminRoster:
		s, err := org.ParseAdminRoster(value)
		return verify(s, err, func() error { return s.Verify(ca, tenant) })
	case org.OrgLabelCARotation:
		s, err := org.ParseCARotation(value)
		return verify(s, err, func() error { return c.verifyRotation(s, rec.Epoch) })
	case org.OrgLabelOrgChart:
		s, err := org.ParseOrgChart(value)
		return verify(s, err, func() error { return s.Verify(ca, tenant) })
	case org.OrgLabelEscrowPolicy:
		s, err := org.ParseEscrowPolicy(value)
		return verify(s, err, func() error { return s.Verify(ca, tenant) })
	}
	if id, ok := strings.CutPrefix(name, org.OrgLabelPolicyPrefix); ok && id != "" {
		s, err := org.ParsePolicyBundle(value)
		return verify(s, err, func() error {
			if s.PolicyID != id {
				return org.ErrWrongSubject
			}
			return s.Verify(ca, tenant)
		})
	}
	return nil, errors.New("kt: unknown org label " + name)
}

// verifyUserValue is step 8 for one value of user: it parses and names
// the tenant and user; every certificate passes
// org.VerifyDeviceCertificate with ca (the CA key in force at the
// record's epoch, caAt), the tenant, the
// client's time now and revoked, except that an expired, not yet valid or revoked certificate is
// only unusable; every entry is signed by the CA; and the entries continue
// the timeline from since (from its first entry if fromStart). A
// certificate of another tenant, from another CA or with a bad signature
// is the directory's doing (T31) and fails the whole value. History and
// monitoring use it; a lookup checks only the last entry's signature
// (verifyUserValueWith with chain set).
func (c *Client) verifyUserValue(pv *proven, user org.UserID, value []byte, ca *keys.OrgPublicKey, since org.TimelineHead, fromStart bool,
	now time.Time, revoked map[uint64]bool) (*userValue, error) {
	return c.verifyUserValueWith(pv, user, value, ca, since, fromStart, now, revoked, nil, false)
}

// preValue is a user value parsed, naming the expected tenant and user,
// with its CA signatures checked, ahead of verifyUserValueWith.
type preValue struct {
	v    *org.UserValue
	rv   map[uint64]bool
	sigs *valueSigs
}

// prepareUserValue parses value and, if it names the tenant and user,
// returns it with the jobs that check its CA signatures at now against
// revoked (as verifyUserValue would); the caller runs the jobs and then
// calls sigs.collect. A value that fails before the signatures is nil:
// verifyUserValue reports it.
func (c *Client) prepareUserValue(user org.UserID, value []byte, ca *keys.OrgPublicKey, now time.Time, revoked map[uint64]bool, chain bool) (*preValue, []func()) {
	v, err := org.ParseUserValue(value)
	if err != nil || v.Tenant != c.bundle.Tenant || v.User != user {
		return nil, nil
	}
	rv := revokedBy(v.Entries)
	isRevoked := func(s uint64) bool { return revoked[s] || rv[s] }
	sigs, jobs := c.prepareValueSigs(v, user, ca, now, isRevoked, chain)
	return &preValue{v: v, rv: rv, sigs: sigs}, jobs
}

// verifyUserValueWith is verifyUserValue, taking the parsed value and
// its signature checks from pre when it is not nil; pre must be
// prepareUserValue's for the same user, value, now, revoked and chain,
// its jobs run, with no change to the signature cache since. With chain
// set (a lookup) only the last entry's signature is checked
// (prepareValueSigs).
func (c *Client) verifyUserValueWith(pv *proven, user org.UserID, value []byte, ca *keys.OrgPublicKey, since org.TimelineHead, fromStart bool,
	now time.Time, revoked map[uint64]bool, pre *preValue, chain bool) (*userValue, error) {
	if pre == nil {
		var jobs []func()
		if pre, jobs = c.prepareUserValue(user, value, ca, now, revoked, chain); pre == nil {
			if _, err := org.ParseUserValue(value); err != nil {
				return nil, ktErr(StepValue, pv, "user value does not parse", err)
			}
			return nil, ktErr(StepValue, pv, "value of another tenant or user", org.ErrWrongSubject)
		}
		// The entries' and certificates' CA signatures, in parallel,
		// except those verified before.
		runJobs(jobs)
		pre.sigs.collect()
	}
	// Errors are reported in the order of the sequential checks: entries,
	// the timeline, then certificates.
	v, rv, sigs := pre.v, pre.rv, pre.sigs
	for i, e := range v.Entries {
		if err := sigs.entries[i]; err != nil {
			return nil, ktErr(StepValue, pv, fmt.Sprintf("timeline entry %d", e.Seq), err)
		}
	}
	switch {
	case len(v.Entries) == 0:
		if fromStart || (since.Seq != 0 && v.Head != since) {
			return nil, ktErr(StepValue, pv, "timeline head changed without entries", org.ErrTimelineGap)
		}
	case fromStart:
		if v.Entries[0].Seq != 1 {
			return nil, ktErr(StepValue, pv, "timeline does not start at entry 1", org.ErrTimelineGap)
		}
	case since.Seq != 0:
		if first := v.Entries[0]; first.Seq != since.Seq+1 || first.Prev != since.Hash {
			return nil, ktErr(StepValue, pv, fmt.Sprintf("entry %d does not follow entry %d", first.Seq, since.Seq), org.ErrTimelineGap)
		}
	}
	if revoked == nil {
		revoked = map[uint64]bool{}
	}
	for s := range rv {
		revoked[s] = true
	}
	uv := &userValue{UserValue: v, revoked: revoked}
	for i, cert := range v.Certificates {
		if sigs.cached[i] {
			// Tenant, issuer and signature verified before for these
			// bytes under this CA and tenant: validity and revocation
			// remain.
			d, u := usable(v.Certificates[i:i+1], now, revoked)
			uv.devices, uv.unusable = append(uv.devices, d...), append(uv.unusable, u...)
			continue
		}
		err := sigs.certs[i]
		var ce *org.CertificateError
		switch {
		case err == nil:
			uv.devices = append(uv.devices, cert)
		case errors.As(err, &ce) && (errors.Is(err, org.ErrExpired) || errors.Is(err, org.ErrNotYetValid) || errors.Is(err, org.ErrRevoked)):
			uv.unusable = append(uv.unusable, ce)
		default:
			return nil, ktErr(StepValue, pv, "certificate in the value not issued to this user by the tenant's CA", err)
		}
	}
	// The signatures verified join the cache if the response is
	// accepted (finish).
	for _, k := range sigs.keys {
		c.sigs.stage(k)
	}
	return uv, nil
}

// userValue is a verified user value with its certificates sorted by use,
// and the revoked serials they were judged against.
type userValue struct {
	*org.UserValue
	revoked  map[uint64]bool
	devices  []*org.DeviceCertificate
	unusable []*org.CertificateError
}

// usable sorts certificates whose issuer and signature were verified
// before by the remaining checks of org.VerifyDeviceCertificate (docs/spec/org.md
// §Certificate verification, steps 5 to 7): validity at now, then
// revocation.
func usable(certs []*org.DeviceCertificate, now time.Time, revoked map[uint64]bool) ([]*org.DeviceCertificate, []*org.CertificateError) {
	var ok []*org.DeviceCertificate
	var bad []*org.CertificateError
	for _, cert := range certs {
		var err error
		switch {
		case now.Before(cert.NotBefore):
			err = org.ErrNotYetValid
		case !now.Before(cert.NotAfter):
			err = org.ErrExpired
		case revoked[cert.Serial]:
			err = org.ErrRevoked
		}
		if err != nil {
			bad = append(bad, &org.CertificateError{Tenant: cert.Tenant, User: cert.User, Device: cert.Device, Serial: cert.Serial, Err: err})
		} else {
			ok = append(ok, cert)
		}
	}
	return ok, bad
}

// revokedBy returns the serials that the DeviceRevoked entries among
// entries revoke: the revocation check derived from the timeline.
func revokedBy(entries []*org.Entry) map[uint64]bool {
	r := map[uint64]bool{}
	for _, e := range entries {
		if a, ok := e.Action.(*org.DeviceRevoked); ok {
			for _, s := range a.Serials {
				r[s] = true
			}
		}
	}
	return r
}
