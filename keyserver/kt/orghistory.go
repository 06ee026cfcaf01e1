package kt

import (
	"fmt"
	"time"

	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/vmap"
)

// OrgPosition is how far a client has verified an org label's history:
// the version it knows, that version's commitment and epoch, and the
// verified statement at that version. The zero OrgPosition is the start,
// before version 1.
type OrgPosition struct {
	Version    uint32
	Commitment vmap.Commitment
	Epoch      uint64
	// Statement is the statement of Version, as OrgLookupResult.Statement
	// has it; nil at the start.
	Statement any
}

// OrgHistoryResult is a verified history of an org label: every change of
// the org statement since the requested position, in order.
type OrgHistoryResult struct {
	// Epoch is the epoch the history is proven at: the last epoch of the
	// trusted checkpoint.
	Epoch uint64
	Label vmap.Label
	// Records are the versions after the requested position, in order,
	// and Statements their verified statements (as
	// OrgLookupResult.Statement).
	Records    []*ValueRecord
	Statements []any
	// Position is the position after the last record (the requested one
	// if there is none).
	Position OrgPosition

	learned []pastCA // the CA keys a ca-rotation history proves
}

// VerifyOrgHistory verifies the directory's answer to a history request
// for the org label name (org.OrgLabel*) since the position since, which
// must come from an earlier verified result (the zero OrgPosition for the
// whole history), and returns every new version (docs/spec/directory.md
// §History, docs/spec/org.md §Org statements).
//
// Besides the checks of VerifyHistory on the records, every record's value
// must be the label's statement, verified as VerifyOrgLookup verifies it
// (tenant, CA signature, and for the escrow policy its auditors'
// signatures), with a sequence greater than the one before, and each
// escrow policy must follow the one before (org.EscrowPolicy.
// VerifyContinuity). A statement that fails is a *KTProofError of step
// StepValue wrapping the org error (org.ErrWrongTenant,
// org.ErrBadSignature, *org.AuditorSignatureError,
// org.ErrStatementSequence). Errors and state are otherwise as for
// VerifyHistory. Statements signed by a CA key the client does not know
// (before a CA rotation it has not learnt) do not verify.
//
// The history of org.OrgLabelCARotation is verified as a chain back from
// the pinned CA key (docs/spec/directory.md §CA history): each rotation
// leads to the key the next one rotates from, the last to the pinned key
// (or away from it, a rotation not yet followed), each signed by both of
// its keys. The client then knows every CA key before the pinned one and
// the epoch it ended, and verifies each record, user values included,
// under the key in force at its epoch.
func (c *Client) VerifyOrgHistory(name string, since OrgPosition, resp *HistoryResponse, now time.Time) (*OrgHistoryResult, error) {
	alpha, err := OrgAlpha(c.bundle.Tenant, name)
	if err != nil {
		return nil, err
	}
	if resp.Since != since.Version {
		return nil, fmt.Errorf("%w: response since version %d, asked since %d", ErrSince, resp.Since, since.Version)
	}
	if since.Version == 0 && (since.Commitment != (vmap.Commitment{}) || since.Epoch != 0 || since.Statement != nil) {
		return nil, fmt.Errorf("%w: a position before version 1 must be zero", ErrSince)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	pv, err := c.openProof(alpha, &resp.Checkpoint, &resp.Proof, now)
	if err != nil {
		return nil, c.fail(pv, err, resp)
	}
	res, err := c.verifyOrgHistory(pv, name, since, resp.Records, resp.RecordProof)
	if err != nil {
		return nil, c.fail(pv, err, resp)
	}
	err = c.finish(pv, now, func() {
		if pv.mapRes.Present {
			c.trackEpoch(pv.label, res.Position.Version, pv.mapRes.Commitment, res.Position.Epoch)
		}
		if len(res.learned) > 0 {
			c.pastCAs, _ = mergePastCAs(c.pastCAs, res.learned) // checked by verifyCAChain
		}
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (c *Client) verifyOrgHistory(pv *proven, name string, since OrgPosition, recs []*ValueRecord, recordProof *EpochProof) (*OrgHistoryResult, error) {
	last, err := c.verifyChain(pv, since.Version, since.Commitment, since.Epoch, recs)
	if err != nil {
		return nil, err
	}
	if n := len(recs); n > 0 {
		if err := c.checkRecordEpoch(pv, recs[n-1], recordProof); err != nil {
			return nil, err
		}
	}
	res := &OrgHistoryResult{Epoch: pv.entry.Epoch, Label: pv.label, Records: recs, Position: since}
	var chain []any
	if name == org.OrgLabelCARotation {
		// The CA rotations form a chain back from the pinned key, which
		// the client learns (§CA history).
		if chain, res.learned, err = c.verifyCAChain(pv, since, recs); err != nil {
			return nil, err
		}
	}
	prev := since.Statement
	for i, r := range recs {
		var st any
		if chain != nil {
			st = chain[i]
		} else {
			st, err = c.verifyOrgValue(name, r)
		}
		if err == nil && prev != nil {
			err = follows(st, prev)
		}
		if err != nil {
			return nil, ktErr(StepValue, pv, fmt.Sprintf("org statement for %s at version %d", name, r.Version), err)
		}
		res.Statements = append(res.Statements, st)
		prev = st
	}
	if n := len(recs); n > 0 {
		res.Position = OrgPosition{Version: recs[n-1].Version, Commitment: last, Epoch: recs[n-1].Epoch, Statement: prev}
	}
	return res, nil
}

// follows checks that the verified statement st may follow prev under one
// label (docs/spec/org.md §Org statements): a greater sequence, and for an
// escrow policy, continuity of its auditors.
func follows(st, prev any) error {
	s, p := statementSequence(st), statementSequence(prev)
	if s <= p {
		return fmt.Errorf("%w: sequence %d after %d", org.ErrStatementSequence, s, p)
	}
	if e, ok := st.(*org.EscrowPolicy); ok {
		pe, ok := prev.(*org.EscrowPolicy)
		if !ok {
			return org.ErrStatementSequence
		}
		return e.VerifyContinuity(pe)
	}
	return nil
}

// statementSequence returns the sequence of a statement that
// verifyOrgValue returns.
func statementSequence(st any) uint64 {
	switch s := st.(type) {
	case *org.TrustBundle:
		return s.Sequence
	case *org.AdminRoster:
		return s.Sequence
	case *org.CARotation:
		return s.Sequence
	case *org.OrgChart:
		return s.Sequence
	case *org.PolicyBundle:
		return s.Sequence
	case *org.EscrowPolicy:
		return s.Sequence
	}
	return 0
}
