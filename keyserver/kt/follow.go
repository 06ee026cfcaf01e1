package kt

import (
	"errors"
	"fmt"
	"time"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/org"
)

// ErrBundleRefused is returned by FollowTrustBundle for a trust bundle the
// client must not move to.
var ErrBundleRefused = errors.New("kt: trust bundle refused")

// Bundle returns the trust bundle the client is pinned to.
func (c *Client) Bundle() *org.TrustBundle {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bundle
}

// FollowTrustBundle verifies a lookup of the trust-bundle org label and,
// if it holds a newer bundle the client may trust, re-pins the client to
// it (docs/spec/directory.md §Trust bundle changes): the new CA, log key,
// witnesses and quorum. The bundle must be the same tenant's, keep the log
// origin and the VRF key, have a higher sequence than the pinned one, and
// be signed by the pinned CA, or, if rot is not nil, rot must be the
// result of a VerifyOrgLookup of org.OrgLabelCARotation, which the client
// makes first, holding a CARotation that verifies under the pinned CA, and
// the bundle must be signed by and name its new key. The client then keeps
// the old CA key for the records published before the rotation's epoch
// (§CA history). A bundle with a new log key must be proven at a
// checkpoint that announces that key (docs/spec/tlog.md §Log key
// rotation).
//
// The log trust state carries over (same origin; the tree never shrinks):
// the checkpoint the lookup is proven against is accepted under the pinned
// bundle, and the next one must be signed under the new bundle and be
// consistent with it. On any error the client's state is unchanged. The
// caller persists MarshalState, which records the bundle.
func (c *Client) FollowTrustBundle(rot *OrgLookupResult, resp *LookupResponse, now time.Time) (*org.TrustBundle, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur := c.bundle
	alpha, err := OrgAlpha(cur.Tenant, org.OrgLabelTrustBundle)
	if err != nil {
		return nil, err
	}
	pv, err := c.openProof(alpha, &resp.Checkpoint, &resp.Proof, now)
	if err != nil {
		return nil, c.fail(pv, err, resp)
	}
	if !pv.mapRes.Present {
		return nil, c.fail(pv, ktErr(StepValue, pv, "no trust bundle", nil), resp)
	}
	if err := c.checkRecord(pv, resp.Record); err != nil {
		return nil, c.fail(pv, err, resp)
	}
	nb, err := org.ParseTrustBundle(resp.Record.Value)
	if err != nil {
		return nil, c.fail(pv, ktErr(StepValue, pv, "trust bundle", err), resp)
	}
	ca := cur.CA
	var rotEpoch uint64
	if rot != nil {
		r, ok := rot.Statement.(*org.CARotation)
		if !ok || rot.Record == nil {
			return nil, fmt.Errorf("%w: not a verified CA rotation", ErrBundleRefused)
		}
		if err := r.Verify(cur.CA, cur.Tenant); err != nil {
			return nil, fmt.Errorf("%w: CA rotation: %w", ErrBundleRefused, err)
		}
		rotEpoch = rot.Record.Epoch
		if n := len(c.pastCAs); rotEpoch == 0 || rotEpoch > pv.entry.Epoch || (n > 0 && rotEpoch <= c.pastCAs[n-1].until) || n >= maxPastCAs {
			return nil, fmt.Errorf("%w: CA rotation of epoch %d", ErrBundleRefused, rotEpoch)
		}
		ca = r.New
	}
	if err := nb.Verify(ca, cur.Tenant); err != nil {
		if rot == nil {
			// Under the pinned CA, a bundle that does not verify is the
			// directory's fault: it serves only CA-signed values.
			if nb.Tenant == cur.Tenant && nb.CA != nil && nb.CA.Equal(cur.CA) {
				return nil, c.fail(pv, ktErr(StepValue, pv, "trust bundle signature", err), resp)
			}
		}
		return nil, fmt.Errorf("%w: %w", ErrBundleRefused, err)
	}
	if err := successor(cur, nb); err != nil {
		return nil, err
	}
	newLog := !nb.Log.Equal(cur.Log)
	if newLog {
		// The witnesses follow only the key the checkpoint announces.
		if next, err := tlog.NextLogKey(pv.cp); err != nil || next == nil || !next.Equal(nb.Log) {
			return nil, fmt.Errorf("%w: the checkpoint of size %d does not announce the bundle's log key", ErrBundleRefused, pv.cp.Size)
		}
	}
	tcfg, err := VerifierConfig(nb, c.tcfg.MaxAge, c.tcfg.MaxSkew)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBundleRefused, err)
	}
	if _, err := tlog.NewVerifier(tcfg); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBundleRefused, err)
	}
	// Accept the checkpoint under the pinned bundle, then move the trust
	// state to the new one. Repin cannot fail here: the config is valid,
	// the origin is the same and a fork was refused by openProof.
	if err := c.finish(pv, now, nil); err != nil {
		return nil, err
	}
	nv, err := c.verifier.Repin(tcfg)
	if err != nil {
		return nil, err
	}
	c.trackEpoch(pv.label, resp.Record.Version, pv.mapRes.Commitment, resp.Record.Epoch)
	c.verifier, c.bundle, c.tcfg = nv, nb, tcfg
	if rot != nil {
		c.pastCAs = append(c.pastCAs, pastCA{key: cur.CA, until: rotEpoch})
		clear(c.values) // values verified under the old CA
	}
	if newLog {
		c.cpLogKey = cur.Log // the trusted checkpoint is under the old key
	}
	return nb, nil
}

// successor checks the parts of a new trust bundle nb that must continue
// the pinned bundle cur: the tenant, the log origin and the VRF key, and
// a higher sequence. The signature is the caller's to check.
func successor(cur, nb *org.TrustBundle) error {
	switch {
	case nb.Tenant != cur.Tenant:
		return fmt.Errorf("%w: another tenant", ErrBundleRefused)
	case nb.Sequence <= cur.Sequence:
		return fmt.Errorf("%w: sequence %d, pinned %d", ErrBundleRefused, nb.Sequence, cur.Sequence)
	case nb.LogOrigin != cur.LogOrigin:
		return fmt.Errorf("%w: log origin changed", ErrBundleRefused)
	case nb.VRF == nil || !nb.VRF.Equal(cur.VRF):
		return fmt.Errorf("%w: VRF key changed", ErrBundleRefused)
	}
	return nil
}
