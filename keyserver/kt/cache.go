package kt

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/keyserver/org"
	"golang.org/x/crypto/cryptobyte"
)

// maxVerifiedSigs bounds the cache of verified CA signatures; when full,
// the oldest half is dropped.
const maxVerifiedSigs = 4096

// Kinds of signed object in the signature cache.
const (
	sigKindCertificate = 0x01
	sigKindEntry       = 0x02
)

// sigCache is the set of CA-signed objects (device certificates and
// timeline entries) whose hybrid signature the client verified, each
// named by sigKey: SHA-256 of the object's kind, the CA key, the tenant
// and the object's full encoding, signature included. A hit therefore
// stands only for a byte-identical object verified under the same CA key
// for the same tenant. The cache is not part of MarshalState; the caller
// may persist MarshalSignatureCache alongside it.
type sigCache struct {
	set   map[[32]byte]struct{}
	order [][32]byte // insertion order, for eviction
}

func sigKey(kind byte, ca *keys.OrgPublicKey, tenant org.TenantID, enc []byte) [32]byte {
	caID := sha256.Sum256(ca.Bytes())
	h := sha256.New()
	h.Write([]byte{kind})
	h.Write(caID[:])
	h.Write(tenant[:])
	h.Write(enc)
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func (s *sigCache) has(k [32]byte) bool {
	_, ok := s.set[k]
	return ok
}

func (s *sigCache) add(k [32]byte) {
	if s.set == nil {
		s.set = map[[32]byte]struct{}{}
	}
	if _, ok := s.set[k]; ok {
		return
	}
	if len(s.order) >= maxVerifiedSigs {
		half := len(s.order) / 2
		for _, o := range s.order[:half] {
			delete(s.set, o)
		}
		s.order = append(s.order[:0], s.order[half:]...)
	}
	s.set[k] = struct{}{}
	s.order = append(s.order, k)
}

// Signature cache encoding (local to the client, not a protocol message):
//
//	struct {
//	    opaque ca_id[32];                   /* SHA-256 of the CA key */
//	    opaque tenant[16];
//	    opaque keys[0..2^32-1];             /* 32-byte keys, oldest first */
//	} SignatureCache;

// MarshalSignatureCache returns the client's cache of verified CA
// signatures, for the caller to persist with MarshalState. Its integrity
// matters as the state's does, and more: whoever can rewrite it can make
// the client accept a certificate or timeline entry the CA never signed.
func (c *Client) MarshalSignatureCache() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	caID := sha256.Sum256(c.bundle.CA.Bytes())
	return build(func(b *cryptobyte.Builder) {
		b.AddBytes(caID[:])
		b.AddBytes(c.bundle.Tenant[:])
		b.AddUint32LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, k := range c.sigs.order {
				b.AddBytes(k[:])
			}
		})
	})
}

// RestoreSignatureCache adds the keys of a MarshalSignatureCache of a
// client of the same tenant and CA key to c's cache. A cache of another
// tenant or CA key, as after a CA rotation, is ignored.
func (c *Client) RestoreSignatureCache(data []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := cryptobyte.String(data)
	var caID, tenant []byte
	var ks cryptobyte.String
	if !s.ReadBytes(&caID, 32) || !s.ReadBytes(&tenant, 16) || !readUint32Prefixed(&s, &ks) || !s.Empty() || len(ks)%32 != 0 {
		return fmt.Errorf("%w: signature cache", ErrMalformed)
	}
	if [32]byte(caID) != sha256.Sum256(c.bundle.CA.Bytes()) || org.TenantID(tenant) != c.bundle.Tenant {
		return nil
	}
	for !ks.Empty() {
		var k [32]byte
		ks.CopyBytes(k[:])
		c.sigs.add(k)
	}
	return nil
}

// valueSigs is the outcome of the CA-signature checks of one user value:
// for each entry and certificate, nil or the error of e.Verify or
// org.VerifyDeviceCertificate, and the cache keys to add once the value is
// accepted.
type valueSigs struct {
	entries []error
	certs   []error
	cached  []bool // certs whose signature was verified before
	keys    [][32]byte

	pending [][32]byte // keys of the objects the jobs verify
	ok      []*bool    // and whether each verified
}

// collect sets r.keys once the jobs of prepareValueSigs have run.
func (r *valueSigs) collect() {
	for i, k := range r.pending {
		if *r.ok[i] {
			r.keys = append(r.keys, k)
		}
	}
}

// prepareValueSigs returns the jobs that verify the signature by the CA key ca of every entry and certificate
// of v, except those byte-identical to ones verified before, for the caller to run
// (runJobs, possibly with others) before calling r.collect. Certificates are checked by
// org.VerifyDeviceCertificate at now against revoked; a cached
// certificate's remaining checks (validity, revocation) are the caller's.
func (c *Client) prepareValueSigs(v *org.UserValue, user org.UserID, ca *keys.OrgPublicKey, now time.Time, revoked func(uint64) bool) (*valueSigs, []func()) {
	tenant := c.bundle.Tenant
	r := &valueSigs{entries: make([]error, len(v.Entries)), certs: make([]error, len(v.Certificates)), cached: make([]bool, len(v.Certificates))}
	var jobs []func()
	job := func(k [32]byte, f func() bool) {
		done := new(bool)
		r.pending, r.ok = append(r.pending, k), append(r.ok, done)
		jobs = append(jobs, func() { *done = f() })
	}
	for i, e := range v.Entries {
		if e.Tenant != tenant {
			r.entries[i] = org.ErrWrongTenant
			continue
		}
		if e.User != user {
			r.entries[i] = org.ErrWrongSubject
			continue
		}
		enc, err := e.Marshal()
		if err != nil {
			r.entries[i] = org.ErrMalformed
			continue
		}
		k := sigKey(sigKindEntry, ca, tenant, enc)
		if c.sigs.has(k) {
			continue
		}
		job(k, func() bool {
			r.entries[i] = e.Verify(ca, tenant, user)
			return r.entries[i] == nil
		})
	}
	for i, cert := range v.Certificates {
		check := func() bool {
			r.certs[i] = org.VerifyDeviceCertificate(cert, ca, tenant, now, revoked)
			return sigVerified(r.certs[i])
		}
		if cert == nil || cert.Tenant != tenant {
			jobs = append(jobs, func() { check() }) // fails, not cached
			continue
		}
		enc, err := cert.Marshal()
		if err != nil {
			jobs = append(jobs, func() { check() })
			continue
		}
		k := sigKey(sigKindCertificate, ca, tenant, enc)
		if c.sigs.has(k) {
			r.cached[i] = true
			continue
		}
		job(k, check)
	}
	return r, jobs
}

// sigVerified reports whether err from org.VerifyDeviceCertificate comes
// after its signature check passed.
func sigVerified(err error) bool {
	return err == nil || errors.Is(err, org.ErrExpired) || errors.Is(err, org.ErrNotYetValid) || errors.Is(err, org.ErrRevoked)
}

// runJobs runs independent jobs on up to GOMAXPROCS goroutines, the
// calling one among them.
func runJobs(jobs []func()) {
	n := min(len(jobs), runtime.GOMAXPROCS(0))
	if n <= 1 {
		for _, j := range jobs {
			j()
		}
		return
	}
	var next atomic.Int64
	work := func() {
		for i := next.Add(1) - 1; i < int64(len(jobs)); i = next.Add(1) - 1 {
			jobs[i]()
		}
	}
	var wg sync.WaitGroup
	for range n - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
}
