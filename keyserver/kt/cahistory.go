package kt

import (
	"fmt"
	"slices"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/keyserver/org"
)

// CA history (docs/spec/directory.md §CA history): the values of a label
// are signed by the CA key in force when they were published. A client
// keeps, besides the pinned CA key, the CA keys before it with the epoch
// of the rotation away from each, and verifies a record of epoch e under
// the key in force at e.

// pastCA is a CA key the tenant used before the pinned one: records of
// epochs before until are under it, unless an earlier pastCA covers them.
type pastCA struct {
	key   *keys.OrgPublicKey
	until uint64 // the epoch that published the rotation away from key
}

// maxPastCAs bounds the CA history a client keeps (and parses).
const maxPastCAs = 64

// caAt returns the CA key in force at epoch: the first past key whose
// rotation came after epoch, else the pinned one.
func (c *Client) caAt(epoch uint64) *keys.OrgPublicKey {
	for _, p := range c.pastCAs {
		if epoch < p.until {
			return p.key
		}
	}
	return c.bundle.CA
}

// verifyRotation verifies a CARotation published at epoch: a rotation
// away from the pinned CA, under both keys, or the rotation to the CA
// key in force at epoch, under both keys.
func (c *Client) verifyRotation(r *org.CARotation, epoch uint64) error {
	if r.Old != nil && r.Old.Equal(c.bundle.CA) {
		return r.Verify(c.bundle.CA, c.bundle.Tenant)
	}
	if r.New == nil || !r.New.Equal(c.caAt(epoch)) {
		return org.ErrUnknownIssuer
	}
	return r.Verify(r.Old, c.bundle.Tenant)
}

// learnRotation records, for a client that knows no CA key before the
// pinned one, the old key of a verified rotation to the pinned key
// published at epoch.
func (c *Client) learnRotation(r *org.CARotation, epoch uint64) {
	if len(c.pastCAs) == 0 && epoch > 0 && r.New.Equal(c.bundle.CA) && !r.Old.Equal(c.bundle.CA) {
		c.pastCAs = []pastCA{{key: r.Old, until: epoch}}
	}
}

// verifyCAChain verifies the records recs of the ca-rotation label after
// the position since (docs/spec/directory.md §CA history, the chain) as a
// chain that ends at the pinned CA key: walking back from the latest
// record, each CARotation must rotate to the key the one after it rotates
// from (the last one, to the pinned key), and carry valid signatures by
// both of its keys. A last rotation away from the pinned key (published,
// not yet followed) verifies under the pinned key and teaches nothing. The
// first record must rotate from the key the position's statement rotated
// to. It returns the statements, in order, and the past CA keys the chain
// proves, oldest first; the caller merges them (mergePastCAs) when it
// commits. It changes nothing.
func (c *Client) verifyCAChain(pv *proven, since OrgPosition, recs []*ValueRecord) ([]any, []pastCA, error) {
	tenant, pinned := c.bundle.Tenant, c.bundle.CA
	rots := make([]*org.CARotation, len(recs))
	sts := make([]any, len(recs))
	for i, r := range recs {
		rot, err := org.ParseCARotation(r.Value)
		if err != nil {
			return nil, nil, ktErr(StepValue, pv, fmt.Sprintf("CA rotation at version %d", r.Version), err)
		}
		rots[i], sts[i] = rot, rot
	}
	last := len(rots) - 1
	if last >= 0 && rots[last].Old != nil && rots[last].Old.Equal(pinned) {
		if err := rots[last].Verify(pinned, tenant); err != nil {
			return nil, nil, ktErr(StepValue, pv, fmt.Sprintf("CA rotation at version %d", recs[last].Version), err)
		}
		last--
	}
	var learned []pastCA
	want := pinned
	for i := last; i >= 0; i-- {
		r, rec := rots[i], recs[i]
		var err error
		switch {
		case r.New == nil || !r.New.Equal(want):
			err = fmt.Errorf("%w: the rotation does not lead to the CA key in force after it", org.ErrUnknownIssuer)
		case rec.Epoch == 0:
			err = org.ErrMalformed
		default:
			err = r.Verify(r.Old, tenant)
		}
		if err != nil {
			return nil, nil, ktErr(StepValue, pv, fmt.Sprintf("CA rotation at version %d", rec.Version), err)
		}
		learned = append(learned, pastCA{key: r.Old, until: rec.Epoch})
		want = r.Old
	}
	if prev, ok := since.Statement.(*org.CARotation); ok && len(rots) > 0 && (rots[0].Old == nil || !rots[0].Old.Equal(prev.New)) {
		return nil, nil, ktErr(StepValue, pv, fmt.Sprintf("CA rotation at version %d", recs[0].Version),
			fmt.Errorf("%w: the rotation does not continue the one at version %d", org.ErrUnknownIssuer, since.Version))
	}
	slices.Reverse(learned)
	if _, err := mergePastCAs(c.pastCAs, learned); err != nil {
		return nil, nil, ktErr(StepValue, pv, "CA history", err)
	}
	return sts, learned, nil
}

// mergePastCAs returns the CA history known plus the keys learned, by
// until, keeping the newest maxPastCAs. Two keys for one until are a
// contradiction: the directory proved two CA histories.
func mergePastCAs(known, learned []pastCA) ([]pastCA, error) {
	out := slices.Clone(known)
	for _, l := range learned {
		i, found := slices.BinarySearchFunc(out, l.until, func(p pastCA, u uint64) int {
			switch {
			case p.until < u:
				return -1
			case p.until > u:
				return 1
			}
			return 0
		})
		if found {
			if !out[i].key.Equal(l.key) {
				return nil, fmt.Errorf("%w: two CA keys before the rotation of epoch %d", org.ErrUnknownIssuer, l.until)
			}
			continue
		}
		out = slices.Insert(out, i, l)
	}
	if n := len(out); n > maxPastCAs {
		out = out[n-maxPastCAs:]
	}
	return out, nil
}

// hybridKeySize is the size of a tagged hybrid PublicKey (keys.md §Binary
// encoding): a tag byte, Ed25519 and ML-DSA-65 public keys.
const hybridKeySize = 1 + 32 + 1952
