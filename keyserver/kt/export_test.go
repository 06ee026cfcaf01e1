package kt

import (
	"crypto/sha256"

	"github.com/moat-im/moat/keyserver/org"
)

// DropCaches empties the client's in-memory caches of verified VRF proofs
// and user values, and its signature cache unless keepSigs, so that a
// benchmark can verify the same response as a first sight again without
// building a new client.
func (c *Client) DropCaches(keepSigs bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.vrfs)
	clear(c.values)
	c.held = nil
	if !keepSigs {
		c.sigs = sigCache{}
	}
}

// SignatureCacheLen returns the number of committed keys in the signature
// cache.
func (c *Client) SignatureCacheLen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sigs.order)
}

// CertificateCached reports whether cert's key is in the committed
// signature cache.
func (c *Client) CertificateCached(cert *org.DeviceCertificate) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	enc, err := cert.Marshal()
	if err != nil {
		return false
	}
	_, ok := c.sigs.set[sigKey(sigKindCertificate, c.caKeyID(c.bundle.CA), c.bundle.Tenant, sha256.Sum256(enc))]
	return ok
}

// EntryCached reports whether e's key is in the committed signature
// cache.
func (c *Client) EntryCached(e *org.Entry) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, err := e.Hash()
	if err != nil {
		return false
	}
	_, ok := c.sigs.set[sigKey(sigKindEntry, c.caKeyID(c.bundle.CA), c.bundle.Tenant, h)]
	return ok
}
