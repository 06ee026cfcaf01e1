package service

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/store"
	"github.com/moat-im/moat/keyserver/vmap"
)

// Per-epoch monitoring and record proofs (docs/spec/directory.md
// §Per-epoch monitoring, §Proof bundles; directory-api.md §Monitoring).

// recordProof returns the record proof of rec, the record of label that a
// response at the served epoch carries: the label's proof at rec.Epoch if
// that is before the tenant's latest CA rotation, else nil.
func (t *Tenant) recordProof(ctx context.Context, sv *served, label vmap.Label, rec *kt.ValueRecord) (*kt.EpochProof, error) {
	if rec == nil {
		return nil, nil
	}
	alpha, err := kt.OrgAlpha(t.id, org.OrgLabelCARotation)
	if err != nil {
		return nil, err
	}
	rl, _ := t.label(alpha)
	_, rot, err := t.versionAt(ctx, rl, sv.size-1)
	if err != nil || rot == nil || rec.Epoch >= rot.Epoch {
		return nil, err
	}
	e, err := t.entryAt(ctx, rec.Epoch)
	if err != nil {
		return nil, err
	}
	incl, err := t.tree.Load().InclusionProof(ctx, rec.Epoch, sv.size)
	if err != nil {
		return nil, err
	}
	mp, err := t.m.Prove(rec.Epoch, label)
	if err != nil {
		return nil, err
	}
	return &kt.EpochProof{Entry: *e, Inclusion: incl, MapProof: mp}, nil
}

// errStart is a monitoring request from an epoch after the served one.
type errStart struct{ served uint64 }

func (e *errStart) Error() string {
	return fmt.Sprintf("service: monitoring from an epoch after the served size %d", e.served)
}

// Monitor answers a monitoring step of device for user: since is the
// version the device knows, start the first epoch it needs, and
// clientSize the tree size it trusts (docs/spec/directory.md §Per-epoch
// monitoring). At a first step (since 0) the service chooses start: the
// epoch of the first record that adds device, or the served epoch. The
// page covers min(kt.MaxMonitorEpochs, size-start) epochs of the served
// checkpoint.
func (t *Tenant) Monitor(ctx context.Context, user org.UserID, device org.DeviceID, since uint32, start, clientSize uint64) (*kt.MonitorResponse, error) {
	sv, err := t.servedState()
	if err != nil {
		return nil, err
	}
	cu, err := t.checkpointUpdate(ctx, sv, clientSize)
	if err != nil {
		return nil, err
	}
	label, pi := t.label(kt.UserAlpha(t.id, user))
	n := sv.size
	latest, _, err := t.versionAt(ctx, label, n-1)
	if err != nil {
		return nil, err
	}
	if since > latest {
		return nil, &errSince{latest: latest}
	}
	if since == 0 {
		start = n - 1
		if latest > 0 {
			recs, err := t.records(ctx, label, 1, latest)
			if err != nil {
				return nil, err
			}
			if e, ok := kt.BaselineEpoch(recs, device); ok {
				start = e
			}
		}
	}
	if start > n {
		return nil, &errStart{served: n}
	}
	r := &kt.MonitorResponse{Checkpoint: cu, VRFProof: pi, Since: since, Start: start}
	end := min(start+kt.MaxMonitorEpochs, n)
	if end == start {
		return r, nil
	}
	if end > uint64(^uint32(0)) {
		return nil, errors.New("service: epoch out of range")
	}
	entries, err := t.st.Values(ctx, entriesLabel, uint32(start+1), uint32(end))
	if err != nil {
		return nil, fmt.Errorf("service: epoch entries %d to %d: %w", start, end-1, err)
	}
	for i, b := range entries {
		e, err := kt.ParseEpochEntry(b)
		if err != nil || e.Epoch != start+uint64(i) {
			return nil, fmt.Errorf("service: %w: epoch entry %d", store.ErrCorrupt, start+uint64(i))
		}
		mp, err := t.m.Prove(e.Epoch, label)
		if err != nil {
			return nil, err
		}
		r.Epochs = append(r.Epochs, kt.MonitoredEpoch{Time: e.Time, MapProof: mp})
	}
	if r.RangeProof, err = t.tree.Load().RangeProof(ctx, start, end, n); err != nil {
		return nil, err
	}
	// The records up to the version the map holds at the page's last
	// epoch.
	v, _, err := t.versionAt(ctx, label, end-1)
	if err != nil {
		return nil, err
	}
	if since < v {
		if r.Records, err = t.records(ctx, label, since+1, v); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// records returns the value records of label from version from to to.
func (t *Tenant) records(ctx context.Context, label vmap.Label, from, to uint32) ([]*kt.ValueRecord, error) {
	rs, err := t.st.Values(ctx, label, from, to)
	if err != nil {
		return nil, err
	}
	out := make([]*kt.ValueRecord, len(rs))
	for i, b := range rs {
		if out[i], err = kt.ParseValueRecord(b); err != nil {
			return nil, fmt.Errorf("service: %w: %v", store.ErrCorrupt, err)
		}
	}
	return out, nil
}

// getMonitor is GET /v1/{tenant}/monitor/{user}?since=V&start=E&size=N:
// a monitoring step of the signing device (directory-api.md §Monitoring).
func (s *Service) getMonitor(w http.ResponseWriter, r *http.Request, t *Tenant) {
	user, err := ParseUserID(r.PathValue("user"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad user id")
		return
	}
	size, err := sizeParam(r, "size")
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	since, err := sizeParam(r, "since")
	if err != nil || since > uint64(^uint32(0)) {
		writeError(w, http.StatusBadRequest, "bad since")
		return
	}
	start, err := sizeParam(r, "start")
	if err != nil || (since == 0 && start != 0) {
		writeError(w, http.StatusBadRequest, "bad start")
		return
	}
	p, ok := s.devicePrincipal(w, r, t)
	if !ok {
		return
	}
	resp, err := t.Monitor(r.Context(), user, p.device, uint32(since), start, size)
	if err != nil {
		s.readError(w, t, err)
		return
	}
	b, err := resp.Marshal()
	if err != nil {
		s.readError(w, t, err)
		return
	}
	writeBinary(w, b)
}

// Monitor runs a monitoring request for user: since is
// kt.Client.MonitorSince, start kt.Client.MonitorStart, size the client's
// tree size. The signing device is the one monitoring.
func (c *Client) Monitor(ctx context.Context, user org.UserID, since uint32, start, size uint64) (*kt.MonitorResponse, error) {
	q := sizeQuery("size", size)
	q.Set("since", strconv.FormatUint(uint64(since), 10))
	if since > 0 {
		q.Set("start", strconv.FormatUint(start, 10))
	}
	b, err := c.do(ctx, http.MethodGet, c.url("/monitor/"+user.String(), q), nil, signDevice)
	if err != nil {
		return nil, err
	}
	return kt.ParseMonitorResponse(b)
}
