package kt

import (
	"fmt"
	"time"

	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/vmap"
)

// Position is how far a client has verified a user's label: the version it
// knows, that version's commitment and epoch, and the user's timeline head
// after it. The zero Position is the start, before version 1.
type Position struct {
	Version    uint32
	Commitment vmap.Commitment
	Epoch      uint64
	Head       org.TimelineHead
}

// HistoryResult is a verified history of a user's label.
type HistoryResult struct {
	// Epoch is the epoch the history is proven at: the last epoch of the
	// trusted checkpoint.
	Epoch uint64
	Label vmap.Label
	// Records are the versions after the requested position, in order,
	// and Values their verified values.
	Records []*ValueRecord
	Values  []*org.UserValue
	// Position is the position after the last record (the requested one
	// if there is none).
	Position Position
	// Devices and Unusable sort the certificates of the latest value, as
	// in LookupResult, with the revocations of every entry of the history.
	// Both are nil if there is no new record.
	Devices  []*org.DeviceCertificate
	Unusable []*org.CertificateError
}

// VerifyHistory verifies the directory's answer to a history request for
// user in tenant since the position since, which must come from an
// earlier verified result (the zero Position for the whole history), and
// returns every new version (docs/spec/directory.md §History).
//
// It checks, besides what VerifyLookup checks, that the records are the
// versions since.Version+1, since.Version+2, … in order, that each names
// the commitment of the one before (the first, since.Commitment), that
// their epochs increase, that the last one opens the map's commitment,
// and that the users' timeline runs on through them from since.Head. A
// gap, a reordering or a substituted record is a *KTProofError of step
// StepHistory. Errors and state are otherwise as for VerifyLookup.
func (c *Client) VerifyHistory(tenant org.TenantID, user org.UserID, since Position, resp *HistoryResponse, now time.Time) (*HistoryResult, error) {
	if tenant != c.bundle.Tenant {
		return nil, fmt.Errorf("kt: history: %w", org.ErrWrongTenant)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	pv, res, err := c.verifyHistory(user, since, resp, now)
	if err != nil {
		return nil, c.fail(pv, err, resp)
	}
	if err := c.finish(pv, now, func() { c.trackHistory(pv, res) }); err != nil {
		return nil, err
	}
	return res, nil
}

func (c *Client) trackHistory(pv *proven, res *HistoryResult) {
	if pv.mapRes.Present {
		c.trackEpoch(pv.label, res.Position.Version, pv.mapRes.Commitment, res.Position.Epoch)
	}
}

// verifyHistory runs §History without committing anything.
func (c *Client) verifyHistory(user org.UserID, since Position, resp *HistoryResponse, now time.Time) (*proven, *HistoryResult, error) {
	if resp.Since != since.Version {
		return nil, nil, fmt.Errorf("%w: response since version %d, asked since %d", ErrSince, resp.Since, since.Version)
	}
	if since.Version == 0 && since != (Position{}) {
		return nil, nil, fmt.Errorf("%w: a position before version 1 must be zero", ErrSince)
	}
	pv, err := c.openProof(UserAlpha(c.bundle.Tenant, user), &resp.Checkpoint, &resp.Proof, now)
	if err != nil {
		return pv, nil, err
	}
	res := &HistoryResult{Epoch: pv.entry.Epoch, Label: pv.label, Records: resp.Records, Position: since}
	recs := resp.Records
	prev, err := c.verifyChain(pv, since.Version, since.Commitment, since.Epoch, recs)
	if err != nil {
		return pv, nil, err
	}
	if n := len(recs); n > 0 {
		if err := c.checkRecordEpoch(pv, recs[n-1], resp.RecordProof); err != nil {
			return pv, nil, err
		}
	}
	if err := c.verifyValues(pv, user, since, recs, prev, now, res); err != nil {
		return pv, nil, err
	}
	return pv, res, nil
}

// verifyValues verifies the values of the records recs of user after the
// position since (docs/spec/directory.md §History: each passes step 8
// under the CA key in force at its record's epoch, the timeline running on
// through them, revocations accumulating) and fills in res's Values,
// Devices, Unusable and Position, last being the last record's
// commitment.
func (c *Client) verifyValues(pv *proven, user org.UserID, since Position, recs []*ValueRecord, last vmap.Commitment, now time.Time, res *HistoryResult) error {
	head := since.Head
	revoked := map[uint64]bool{}
	for i, r := range recs {
		uv, err := c.verifyUserValue(pv, user, r.Value, c.caAt(r.Epoch), head, since.Version == 0 && i == 0, c.clientTime(now), revoked)
		if err != nil {
			return err
		}
		head = uv.Head
		res.Values = append(res.Values, uv.UserValue)
		if i == len(recs)-1 {
			res.Devices, res.Unusable = uv.devices, uv.unusable
		}
	}
	if n := len(recs); n > 0 {
		res.Position = Position{Version: recs[n-1].Version, Commitment: last, Epoch: recs[n-1].Epoch, Head: head}
	}
	return nil
}

// verifyChain checks the records of a history after the version since
// (with commitment sinceCM, of epoch sinceEpoch) against the proven map
// (docs/spec/directory.md §History): versions in order, each naming the
// commitment of the one before, epochs increasing, the last one the map's,
// no rollback. It returns the commitment of the last record (sinceCM if
// there is none).
func (c *Client) verifyChain(pv *proven, since uint32, sinceCM vmap.Commitment, sinceEpoch uint64, recs []*ValueRecord) (vmap.Commitment, error) {
	var err error
	prev, prevEpoch := sinceCM, sinceEpoch
	for i, r := range recs {
		if r == nil {
			return prev, ktErr(StepHistory, pv, fmt.Sprintf("record %d missing", i), nil)
		}
		want := uint64(since) + 1 + uint64(i)
		if uint64(r.Version) != want {
			return prev, ktErr(StepHistory, pv, fmt.Sprintf("record %d has version %d, want %d", i, r.Version, want), nil)
		}
		if r.Prev != prev {
			return prev, ktErr(StepHistory, pv, fmt.Sprintf("version %d does not name the commitment of version %d", r.Version, r.Version-1), nil)
		}
		if (r.Version > 1 && r.Epoch <= prevEpoch) || r.Epoch > pv.entry.Epoch {
			return prev, ktErr(StepHistory, pv, fmt.Sprintf("version %d of epoch %d after epoch %d, proven at %d", r.Version, r.Epoch, prevEpoch, pv.entry.Epoch), nil)
		}
		if prev, err = Commit(pv.label, r); err != nil {
			return prev, ktErr(StepHistory, pv, "record does not encode", err)
		}
		if st := c.labels[pv.label]; st != nil && r.Version == st.version && prev != st.commitment {
			return prev, ktErr(StepRollback, pv, fmt.Sprintf("version %d with another commitment", r.Version), nil)
		}
		prevEpoch = r.Epoch
	}
	switch {
	case len(recs) == 0 && since == 0:
		if pv.mapRes.Present {
			return prev, ktErr(StepHistory, pv, "label present but no record given", nil)
		}
	case !pv.mapRes.Present:
		return prev, ktErr(StepHistory, pv, "records given for an absent label", nil)
	case prev != pv.mapRes.Commitment:
		return prev, ktErr(StepHistory, pv, "the latest record does not open the map's commitment", nil)
	}
	latest, latestEpoch := since, sinceEpoch
	if n := len(recs); n > 0 {
		latest, latestEpoch = recs[n-1].Version, recs[n-1].Epoch
	}
	if pv.mapRes.Present {
		if err := c.checkRollback(pv, latest, pv.mapRes.Commitment); err != nil {
			return prev, err
		}
		if err := c.checkRecordOrder(pv, latest, latestEpoch); err != nil {
			return prev, err
		}
	}
	return prev, nil
}
