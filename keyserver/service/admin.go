package service

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/store"
)

// adminOp is one admin operation: it runs with the tenant's lock held,
// unless it is publish, and returns the JSON answer.
type adminOp struct {
	locked bool
	run    func(s *Service, t *Tenant, p *principal, body []byte, now time.Time) (any, error)
}

var adminOps = map[string]adminOp{
	"add-user":          {true, opAddUser},
	"remove-user":       {true, opRemoveUser},
	"add-department":    {true, opAddDepartment},
	"move-department":   {true, opMoveDepartment},
	"rename-department": {true, opRenameDepartment},
	"remove-department": {true, opRemoveDepartment},
	"set-department":    {true, opSetDepartment},
	"issue-code":        {true, opIssueCode},
	"cancel-code":       {true, opCancelCode},
	"revoke-device":     {true, opRevokeDevice},
	"approve":           {true, opApprove},
	"set-witnesses":     {true, opSetWitnesses},
	"rotate-log-key":    {true, opRotateLogKey},
	"rotate-ca":         {true, opRotateCA},
	"list":              {true, opList},
	"publish":           {false, opPublish},
	"publish-policy":    {true, opPublishPolicy},
	"assign-policy":     {true, opAssignPolicy},
	"set-escrow-policy": {true, opSetEscrowPolicy},
	"update-roster":     {true, opUpdateRoster},
	"get-roster":        {true, opGetRoster},
}

// AdminOperations lists the operations of POST /v1/{tenant}/admin/{op}.
func AdminOperations() []string {
	var ops []string
	for op := range adminOps {
		ops = append(ops, op)
	}
	slices.Sort(ops)
	return ops
}

// apiError is an admin request's failure with its status.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(msg string) error { return &apiError{http.StatusBadRequest, msg} }

// postAdmin is POST /v1/{tenant}/admin/{op}: a request signed by an admin
// of the tenant's roster.
func (s *Service) postAdmin(w http.ResponseWriter, r *http.Request, t *Tenant) {
	name := r.PathValue("op")
	op, ok := adminOps[name]
	if !ok {
		writeError(w, http.StatusNotFound, "unknown admin operation")
		return
	}
	body, ok := readBody(w, r, s.adminBodyLimit(name))
	if !ok {
		return
	}
	now := s.opts.Now()
	tid := t.id.String()
	p, err := t.authenticate(r, body, now)
	if err != nil {
		s.met.adminOps.WithLabelValues(tid, name, "unauthenticated").Inc()
		writeAuthError(w, err)
		return
	}
	if !p.admin {
		s.met.adminOps.WithLabelValues(tid, name, "forbidden").Inc()
		writeError(w, http.StatusForbidden, "admin operations need an admin signature")
		return
	}
	var out any
	if op.locked {
		// The change is acknowledged once durable (journal.go).
		var je *journalEntry
		var unlodged []store.LodgedKey
		t.mu.Lock()
		if err = t.jr.check(); err == nil {
			out, err = op.run(s, t, p, body, now)
			var jerr error
			if je, jerr = t.durable(); err == nil {
				err = jerr
			}
		}
		unlodged = t.takeUnlodged()
		t.mu.Unlock()
		werr := je.wait()
		if err == nil {
			err = werr
		}
		if werr == nil {
			t.dropLodged(unlodged) // used up by a change now durable
		}
	} else {
		out, err = op.run(s, t, p, body, now)
	}
	if err != nil {
		status, msg := adminError(err)
		if status >= 500 {
			t.log.Error("admin operation failed", slog.String("op", name), slog.Any("err", err))
		}
		s.met.adminOps.WithLabelValues(tid, name, strconvStatus(status)).Inc()
		writeError(w, status, msg)
		return
	}
	s.met.adminOps.WithLabelValues(tid, name, "ok").Inc()
	t.log.Info("admin operation", slog.String("op", name), slog.String("admin", p.id.String()))
	writeJSON(w, out)
}

func strconvStatus(code int) string {
	switch code {
	case http.StatusBadRequest:
		return "invalid"
	case http.StatusNotFound:
		return "not-found"
	case http.StatusConflict:
		return "conflict"
	case http.StatusForbidden:
		return "forbidden"
	}
	return "error"
}

func adminError(err error) (int, string) {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.status, ae.msg
	}
	switch {
	case errors.Is(err, errJournal):
		return http.StatusServiceUnavailable, "the change could not be made durable; try again after the next epoch"
	case errors.Is(err, org.ErrStatementSequence):
		return http.StatusConflict, err.Error()
	case errors.Is(err, org.ErrInvalidArgument), errors.Is(err, org.ErrMalformed), errors.Is(err, org.ErrWrongTenant),
		errors.Is(err, org.ErrRosterTooSmall), errors.Is(err, org.ErrAuditorQuorum), errors.Is(err, org.ErrBadSignature):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, org.ErrUnknownUser), errors.Is(err, org.ErrUnknownDepartment),
		errors.Is(err, org.ErrUnknownDevice), errors.Is(err, org.ErrBadEnrolmentCode):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, org.ErrUserExists), errors.Is(err, org.ErrDepartmentExists), errors.Is(err, org.ErrDeviceRevoked),
		errors.Is(err, org.ErrDepartmentNotEmpty), errors.Is(err, org.ErrDepartmentCycle), errors.Is(err, org.ErrUserRemoved),
		errors.Is(err, org.ErrPendingUpdates):
		return http.StatusConflict, err.Error()
	case errors.Is(err, org.ErrApprovalInvalid), errors.Is(err, org.ErrDuplicateApproval), errors.Is(err, org.ErrInsufficientApprovals):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, org.ErrUnknownAdmin):
		return http.StatusForbidden, err.Error()
	}
	return http.StatusInternalServerError, "internal error"
}

func decodeAdmin(body []byte, v any) error {
	if err := decodeJSON(body, v); err != nil {
		return badRequest("malformed request body")
	}
	return nil
}

// Admin operations share one shape (docs/spec/directory-api.md §Admin
// operations): decode the JSON body strictly, check and apply the change
// to the tenant's state machine (with the tenant's lock held: see
// adminOp), mark the state changed, and answer with the epoch that
// publishes it. withBody, noBody and change build operations of that
// shape from the part that differs.

// runFunc is an admin operation's implementation.
type runFunc = func(s *Service, t *Tenant, p *principal, body []byte, now time.Time) (any, error)

// withBody returns the operation that decodes the body into a new In (400
// if it does not decode) and runs f with it.
func withBody[In any](f func(s *Service, t *Tenant, p *principal, in *In, now time.Time) (any, error)) runFunc {
	return func(s *Service, t *Tenant, p *principal, body []byte, now time.Time) (any, error) {
		var in In
		if err := decodeAdmin(body, &in); err != nil {
			return nil, err
		}
		return f(s, t, p, &in, now)
	}
}

// noBody returns the operation of f, which takes no arguments: the body
// is empty or {}.
func noBody(f func(s *Service, t *Tenant, p *principal, now time.Time) (any, error)) runFunc {
	return func(s *Service, t *Tenant, p *principal, body []byte, now time.Time) (any, error) {
		if len(body) > 0 {
			var in struct{}
			if err := decodeAdmin(body, &in); err != nil {
				return nil, err
			}
		}
		return f(s, t, p, now)
	}
}

// change returns the operation that decodes the body into In and applies
// it: apply changes the tenant's state (or fails, leaving it unchanged),
// and may fill in fields of the answer; the state is then marked changed
// and the answer carries the pending epoch.
func change[In any](apply func(t *Tenant, p *principal, in *In, now time.Time, out *OKResponse) error) runFunc {
	return withBody(func(s *Service, t *Tenant, p *principal, in *In, now time.Time) (any, error) {
		var out OKResponse
		if err := apply(t, p, in, now, &out); err != nil {
			return nil, err
		}
		t.dirty = true
		out.PendingEpoch = t.Head().Epoch + 1
		return out, nil
	})
}

func userParam(s string) (org.UserID, error) {
	id, err := ParseUserID(s)
	if err != nil {
		return id, badRequest("bad user id")
	}
	return id, nil
}

// deptParam parses an optional department id; empty is zero (none).
func deptParam(s string) (org.DepartmentID, error) {
	var id org.DepartmentID
	if s == "" {
		return id, nil
	}
	if err := parseID(s, id[:]); err != nil {
		return id, badRequest("bad department id")
	}
	return id, nil
}

var opAddUser = change(func(t *Tenant, p *principal, in *AddUserRequest, now time.Time, out *OKResponse) error {
	var uid org.UserID
	if in.User == "" {
		rand.Read(uid[:])
	} else {
		var err error
		if uid, err = userParam(in.User); err != nil {
			return err
		}
	}
	dept, err := deptParam(in.Department)
	if err != nil {
		return err
	}
	if _, err := t.org.AddUser(p.id, uid, in.DisplayName, dept, now); err != nil {
		return err
	}
	out.User = uid.String()
	return nil
})

var opRemoveUser = change(func(t *Tenant, p *principal, in *UserRequest, now time.Time, out *OKResponse) error {
	uid, err := userParam(in.User)
	if err != nil {
		return err
	}
	if _, err := t.org.RemoveUser(p.id, uid, now); err != nil {
		return err
	}
	t.indexUser(uid)
	return nil
})

var opAddDepartment = change(func(t *Tenant, p *principal, in *DepartmentRequest, now time.Time, out *OKResponse) error {
	id, err := deptParam(in.Department)
	if err != nil {
		return err
	}
	if id.IsZero() {
		rand.Read(id[:])
	}
	parent, err := deptParam(in.Parent)
	if err != nil {
		return err
	}
	if err := t.org.AddDepartment(p.id, id, parent, in.Name); err != nil {
		return err
	}
	out.Department = id.String()
	return nil
})

var opMoveDepartment = change(func(t *Tenant, p *principal, in *DepartmentRequest, now time.Time, out *OKResponse) error {
	id, err := deptParam(in.Department)
	if err != nil {
		return err
	}
	parent, err := deptParam(in.Parent)
	if err != nil {
		return err
	}
	return t.org.MoveDepartment(p.id, id, parent)
})

var opRenameDepartment = change(func(t *Tenant, p *principal, in *DepartmentRequest, now time.Time, out *OKResponse) error {
	id, err := deptParam(in.Department)
	if err != nil {
		return err
	}
	return t.org.RenameDepartment(p.id, id, in.Name)
})

var opRemoveDepartment = change(func(t *Tenant, p *principal, in *DepartmentRequest, now time.Time, out *OKResponse) error {
	id, err := deptParam(in.Department)
	if err != nil {
		return err
	}
	return t.org.RemoveDepartment(p.id, id)
})

var opSetDepartment = change(func(t *Tenant, p *principal, in *DepartmentRequest, now time.Time, out *OKResponse) error {
	uid, err := userParam(in.User)
	if err != nil {
		return err
	}
	id, err := deptParam(in.Department)
	if err != nil {
		return err
	}
	return t.org.SetUserDepartment(p.id, uid, id)
})

var opIssueCode = withBody(func(s *Service, t *Tenant, p *principal, in *IssueCodeRequest, now time.Time) (any, error) {
	uid, err := userParam(in.User)
	if err != nil {
		return nil, err
	}
	life := 24 * time.Hour
	if in.LifetimeSeconds != 0 {
		if in.LifetimeSeconds < 0 || in.LifetimeSeconds > int64(t.org.Config().MaxCodeLifetime/time.Second) {
			return nil, badRequest("lifetime out of range")
		}
		life = time.Duration(in.LifetimeSeconds) * time.Second
	}
	code, err := t.org.IssueEnrolmentCode(rand.Reader, p.id, uid, life, now)
	if err != nil {
		return nil, err
	}
	t.dirty = true
	return &IssueCodeResponse{Code: code.Text(), CodeID: code.ID.String(), ExpiresAt: now.Add(life).Unix()}, nil
})

var opCancelCode = change(func(t *Tenant, p *principal, in *CancelCodeRequest, now time.Time, out *OKResponse) error {
	var id org.CodeID
	if parseID(in.CodeID, id[:]) != nil {
		return badRequest("bad code id")
	}
	return t.org.CancelEnrolmentCode(p.id, id)
})

var revocationReasons = map[string]org.RevocationReason{
	"": org.ReasonUnspecified, "unspecified": org.ReasonUnspecified, "lost": org.ReasonLost,
	"compromised": org.ReasonCompromised, "user-removed": org.ReasonUserRemoved, "retired": org.ReasonRetired,
}

var opRevokeDevice = withBody(func(s *Service, t *Tenant, p *principal, in *RevokeDeviceRequest, now time.Time) (any, error) {
	uid, err := userParam(in.User)
	if err != nil {
		return nil, err
	}
	var dev org.DeviceID
	if parseID(in.Device, dev[:]) != nil {
		return nil, badRequest("bad device id")
	}
	reason, ok := revocationReasons[in.Reason]
	if !ok {
		return nil, badRequest("unknown revocation reason")
	}
	rv, err := t.org.RevokeDevice(p.id, uid, dev, reason, now)
	if err != nil {
		return nil, err
	}
	t.dirty = true
	t.revokeIndexed(dev) // no more signed lookups from it
	rev, err := rv.Revocation.Marshal()
	if err != nil {
		return nil, err
	}
	wipe, err := rv.Wipe.Marshal()
	if err != nil {
		return nil, err
	}
	return &RevokeDeviceResponse{Serials: rv.Revocation.Serials, Revocation: rev, Wipe: wipe}, nil
})

// ownApproval parses an approval that the requesting admin lodges: it
// must be its own (403 otherwise).
func ownApproval(p *principal, enc []byte) (*org.Approval, error) {
	ap, err := org.ParseApproval(enc)
	if err != nil {
		return nil, badRequest("bad approval")
	}
	if ap.Kind != org.ApproverAdmin || ap.Signer != p.id {
		return nil, &apiError{http.StatusForbidden, "an admin lodges only its own approval"}
	}
	return ap, nil
}

// verifyOwnApproval checks the requesting admin's approval ap of msg under
// its roster key (400 "approval does not verify for this <what>").
func verifyOwnApproval(t *Tenant, p *principal, msg []byte, ap *org.Approval, what string) error {
	if k := t.trust.Load().roster.Admin(p.id); k == nil || k.Verify(msg, ap.Signature) != nil {
		return badRequest("approval does not verify for this " + what)
	}
	return nil
}

// holdApproval adds ap to the approvals held under key in held (for user,
// zero for approvals of org statements), after dropping the expired ones:
// held approvals expire after the tenant's maximum code lifetime, at most
// Limits.MaxPendingApprovals are held (503 beyond), and an admin approves
// a request once (409). The approvals are lodged (lodged.go, kind kind)
// before they are held: if that fails, nothing changed.
func holdApproval(s *Service, t *Tenant, held map[[32]byte]*pendingApprovals, kind byte, key [32]byte, user org.UserID, ap *org.Approval, now time.Time) (*pendingApprovals, error) {
	for k, v := range held {
		if !now.Before(v.expires) {
			delete(held, k)
		}
	}
	pa := held[key]
	if pa == nil {
		if len(held) >= s.opts.Limits.MaxPendingApprovals {
			return nil, &apiError{http.StatusServiceUnavailable, "too many pending approvals"}
		}
		pa = &pendingApprovals{user: user, expires: now.Add(t.org.Config().MaxCodeLifetime)}
	}
	if pa.user != user {
		return nil, badRequest("request approved for another user")
	}
	for _, a := range pa.approvals {
		if a.Signer == ap.Signer {
			return nil, &apiError{http.StatusConflict, "already approved"}
		}
	}
	if len(pa.approvals) >= maxLodgedApprovals {
		return nil, &apiError{http.StatusConflict, "too many approvals"}
	}
	next := &pendingApprovals{user: pa.user, approvals: append(slices.Clone(pa.approvals), ap), expires: pa.expires}
	l := &lodgedApprovals{subject: next.user, approvals: next.approvals}
	if err := t.lodge(lodgedKey(kind, key), l, next.expires, now); err != nil {
		return nil, err
	}
	held[key] = next
	return next, nil
}

// opApprove holds an admin's approval of an enrolment request until the
// device enrols (dual control of a lost-device recovery, org.md §Dual
// control). The approval must be the signing admin's own and verify over
// the request; org checks it again, with the threshold, at redemption.
var opApprove = withBody(func(s *Service, t *Tenant, p *principal, in *ApproveRequest, now time.Time) (any, error) {
	uid, err := userParam(in.User)
	if err != nil {
		return nil, err
	}
	req, err := org.ParseEnrolmentRequest(in.Request)
	if err != nil || req.Tenant != t.id {
		return nil, badRequest("bad enrolment request")
	}
	ap, err := ownApproval(p, in.Approval)
	if err != nil {
		return nil, err
	}
	msg, err := org.DeviceApprovalMessage(uid, req)
	if err != nil {
		return nil, badRequest("bad enrolment request")
	}
	if err := verifyOwnApproval(t, p, msg, ap, "request"); err != nil {
		return nil, err
	}
	pa, err := holdApproval(s, t, t.approvals, lodgedDevice, sha256.Sum256(in.Request), uid, ap, now)
	if err != nil {
		return nil, err
	}
	return struct {
		Approvals int `json:"approvals"`
		Threshold int `json:"threshold"`
	}{len(pa.approvals), t.org.Roster().Threshold}, nil
})

// MarshalProposal returns the encoding of a proposed, unsigned trust
// bundle (org.Tenant.ProposeWitnesses, ProposeLogKey) for a
// TrustBundleApproveRequest: the TrustBundle encoding with an all-zero
// signature, which the service ignores.
func MarshalProposal(b *org.TrustBundle) ([]byte, error) {
	p := *b
	p.Signature = make([]byte, org.SignatureSize)
	return p.Marshal()
}

// ProposeWitnesses returns the proposal, from the current bundle cur, of
// the trust bundle that replaces the witness set and quorum by ws, issued
// at now: what org.Tenant.ProposeWitnesses returns, for an admin tool that
// has only the published bundle.
func ProposeWitnesses(cur *org.TrustBundle, ws org.WitnessSet, now time.Time) *org.TrustBundle {
	p := *cur
	p.Sequence++
	p.IssuedAt = now.UTC().Truncate(time.Second)
	p.Signature = nil
	p.Witnesses = org.WitnessSet{Witnesses: slices.Clone(ws.Witnesses), Quorum: ws.Quorum}
	org.SortWitnesses(p.Witnesses.Witnesses)
	return &p
}

// opSetWitnesses holds an admin's approval of a proposed trust bundle that
// replaces the witness set (org.md §Witness set changes), like opApprove:
// the approval must be the signing admin's own and verify over the
// proposal. Once the roster's threshold of distinct admins approved the
// same proposal, org.Tenant.ReplaceWitnesses signs it, and it is published
// under the trust-bundle org label at the next epoch.
var opSetWitnesses = withBody(func(s *Service, t *Tenant, p *principal, in *TrustBundleApproveRequest, now time.Time) (any, error) {
	prop, err := org.ParseTrustBundle(in.Bundle)
	if err != nil || prop.Tenant != t.id {
		return nil, badRequest("bad proposed trust bundle")
	}
	prop.Signature = nil
	ap, err := ownApproval(p, in.Approval)
	if err != nil {
		return nil, err
	}
	msg, err := org.TrustBundleApprovalMessage(prop)
	if err != nil {
		return nil, badRequest("bad proposed trust bundle")
	}
	if err := verifyOwnApproval(t, p, msg, ap, "bundle"); err != nil {
		return nil, err
	}
	cur := t.org.TrustBundle()
	if prop.Sequence != cur.Sequence+1 {
		return nil, &apiError{http.StatusConflict, "proposal is not for the next trust bundle"}
	}
	h := sha256.Sum256(msg)
	pa, err := holdApproval(s, t, t.bundleApprovals, lodgedStatement, h, org.UserID{}, ap, now)
	if err != nil {
		return nil, err
	}
	out := &TrustBundleApproveResponse{Approvals: len(pa.approvals), Threshold: t.org.Roster().Threshold}
	if out.Approvals < out.Threshold {
		return out, nil
	}
	nb, err := t.org.ReplaceWitnesses(prop, pa.approvals)
	delete(t.bundleApprovals, h)
	t.unlodge(lodgedKey(lodgedStatement, h))
	if err != nil {
		return nil, err
	}
	t.dirty = true
	out.Applied, out.Sequence, out.PendingEpoch = true, nb.Sequence, t.Head().Epoch+1
	return out, nil
})

var opList = noBody(func(s *Service, t *Tenant, p *principal, now time.Time) (any, error) {
	chart, err := t.orgChart(context.Background())
	if err != nil {
		return nil, err
	}
	out := &ListResponse{Epoch: t.Head().Epoch, Users: []ListUser{}}
	if chart == nil {
		return out, nil
	}
	for _, m := range chart.Members {
		u := ListUser{User: m.User.String(), DisplayName: m.DisplayName, Devices: []ListDevice{}}
		if !m.Department.IsZero() {
			u.Department = m.Department.String()
		}
		if v, err := t.org.UserValue(m.User); err == nil {
			for _, c := range v.Certificates {
				u.Devices = append(u.Devices, ListDevice{Device: c.Device.String(), Serial: c.Serial, NotAfter: c.NotAfter.Unix()})
			}
		}
		out.Users = append(out.Users, u)
	}
	return out, nil
})

// opPublish commits an epoch now, and has the witnesses cosign it within
// 20 seconds.
var opPublish = noBody(func(s *Service, t *Tenant, p *principal, now time.Time) (any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ep, err := t.PublishEpoch(ctx, now)
	if errors.Is(err, errTransitionUncosigned) {
		return nil, &apiError{http.StatusServiceUnavailable, err.Error()}
	}
	if err != nil {
		return nil, err
	}
	return &PublishResponse{Epoch: ep.Entry.Epoch, Cosigned: ep.Cosigned}, nil
})
