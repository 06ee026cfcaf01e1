package kt

import (
	"crypto/sha256"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/keyserver/org"
)

// maxVerifiedSigs bounds the cache of verified CA signatures; when full,
// the oldest half is dropped. It bounds the cache's part of the client
// state to 128 KiB.
const maxVerifiedSigs = 4096

// Kinds of signed object in the signature cache.
const (
	sigKindCertificate = 0x01
	sigKindEntry       = 0x02
)

// sigCache is the set of CA-signed objects (device certificates and
// timeline entries) whose hybrid signature the client verified
// (docs/spec/directory.md §Client verification, caching), each named by
// sigKey: SHA-256 of the object's kind, the CA key's id, the tenant and
// the SHA-256 of the object's full encoding, signature included. A hit
// therefore stands only for a byte-identical object verified under the
// same CA key for the same tenant.
//
// The cache is part of the client state (MarshalState), so it has the
// state's integrity and no more: whoever can rewrite the state can add a
// key, and the client then accepts that object without checking its
// signature. Keys found by a call are staged and become part of the state
// only when the call is accepted (finish), so that a rejected response
// leaves the state byte-identical.
type sigCache struct {
	set     map[[32]byte]struct{}
	order   [][32]byte // insertion order, for eviction and encoding
	pending map[[32]byte]struct{}
	staged  [][32]byte // pending's keys in staging order, so that commit is deterministic
}

func sigKey(kind byte, caID [32]byte, tenant org.TenantID, encHash [32]byte) [32]byte {
	var in [1 + 32 + 16 + 32]byte
	in[0] = kind
	copy(in[1:], caID[:])
	copy(in[33:], tenant[:])
	copy(in[49:], encHash[:])
	return sha256.Sum256(in[:])
}

// has reports whether k was verified, in the state or earlier in this
// call.
func (s *sigCache) has(k [32]byte) bool {
	if _, ok := s.set[k]; ok {
		return true
	}
	_, ok := s.pending[k]
	return ok
}

// stage records k, verified by the current call, until commit or discard.
func (s *sigCache) stage(k [32]byte) {
	if s.pending == nil {
		s.pending = map[[32]byte]struct{}{}
	}
	if _, ok := s.pending[k]; !ok {
		s.pending[k] = struct{}{}
		s.staged = append(s.staged, k)
	}
}

// discard drops the staged keys of a call that was not accepted.
func (s *sigCache) discard() {
	clear(s.pending)
	s.staged = s.staged[:0]
}

// commit adds the staged keys to the cache.
func (s *sigCache) commit() {
	for _, k := range s.staged {
		s.add(k)
	}
	s.discard()
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

// caKeyID returns the SHA-256 of the CA key ca's tagged encoding (the
// issuer id of org.DeviceCertificate), computed once while ca stays the
// same key.
func (c *Client) caKeyID(ca *keys.OrgPublicKey) [32]byte {
	if c.caIDOf != ca {
		c.caID, c.caIDOf = sha256.Sum256(ca.Bytes()), ca
	}
	return c.caID
}

// valueSigs is the outcome of the CA-signature checks of one user value:
// for each entry and certificate, nil or the error of e.Verify or
// org.VerifyDeviceCertificate, and the cache keys to add once the value is
// accepted.
type valueSigs struct {
	entries []error
	certs   []error
	cached  []bool // certs whose signature was verified before, or that a CA-signed entry carries (chain)
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
// of v, a value from org.ParseUserValue, except those byte-identical to ones verified before, for the caller to run
// (runJobs, possibly with others) before calling r.collect. Certificates are checked by
// org.VerifyDeviceCertificate at now against revoked; a cached
// certificate's remaining checks (validity, revocation) are the caller's.
//
// With chain set (a lookup, docs/spec/directory.md §Client verification,
// step 8), only the last entry's signature is checked: each entry's
// signed body names the EntryHash of the one before (Prev), which
// ParseUserValue checked, so the CA's signature on the last entry
// authenticates every entry of the value. Every entry is still checked
// to name the tenant and the user. A certificate byte-identical to the
// one a device_added or device_recovered entry of the value carries is
// authenticated the same way, by the CA's signature on that entry: its
// issuer is checked, its own signature is not, and, as for a cached one,
// its validity and revocation are the caller's.
func (c *Client) prepareValueSigs(v *org.UserValue, user org.UserID, ca *keys.OrgPublicKey, now time.Time, revoked func(uint64) bool, chain bool) (*valueSigs, []func()) {
	tenant, caID := c.bundle.Tenant, c.caKeyID(ca)
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
		// v parsed, so its hash chain holds: the next entry's Prev, or
		// the head, is this entry's EntryHash, the SHA-256 of its
		// encoding.
		h := v.Head.Hash
		if i+1 < len(v.Entries) {
			h = v.Entries[i+1].Prev
		}
		if chain && i+1 < len(v.Entries) {
			continue // authenticated by the last entry's signature
		}
		k := sigKey(sigKindEntry, caID, tenant, h)
		if c.sigs.has(k) {
			continue
		}
		job(k, func() bool {
			r.entries[i] = e.Verify(ca, tenant, user)
			return r.entries[i] == nil
		})
	}
	// The certificates the value's entries carry, by encoding, and those
	// they name by hash (chain; directory.md §Client verification, step
	// 8).
	var vouched map[string]bool
	var vouchedHash map[[32]byte]bool
	if chain {
		for _, e := range v.Entries {
			if ec := e.Certificate(); ec != nil {
				if enc, err := ec.Marshal(); err == nil {
					if vouched == nil {
						vouched = map[string]bool{}
					}
					vouched[string(enc)] = true
				}
			}
			for _, h := range e.OtherCertificates() {
				if vouchedHash == nil {
					vouchedHash = map[[32]byte]bool{}
				}
				vouchedHash[h] = true
			}
		}
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
		if vouched[string(enc)] && cert.Issuer == caID {
			r.cached[i] = true // in an entry the CA signed, through the chain
			continue
		}
		h := sha256.Sum256(enc)
		if vouchedHash[h] && cert.Issuer == caID {
			r.cached[i] = true // named by an entry the CA signed, through the chain
			continue
		}
		k := sigKey(sigKindCertificate, caID, tenant, h)
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
