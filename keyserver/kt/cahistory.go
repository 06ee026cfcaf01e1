package kt

import (
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

// hybridKeySize is the size of a tagged hybrid PublicKey (keys.md §Binary
// encoding): a tag byte, Ed25519 and ML-DSA-65 public keys.
const hybridKeySize = 1 + 32 + 1952
