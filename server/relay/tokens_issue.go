package relay

import (
	"errors"
	"net/http"
	"sync"

	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/deviceauth"
	"github.com/moat-im/moat/internal/httpserve"
)

// Anonymous-token issuance (docs/spec/api.md §Anonymous-token issuance,
// docs/spec/envelope.md §Anonymous delivery tokens). An enrolled device,
// authenticated for purpose token-issuance, sends a TokenIssuanceRequest
// and gets the blind signatures of its tenant's issuer key, within a
// per-device daily quota and a per-tenant daily cap.

// TokenIssuer gives the relay the current issuer private key of each
// tenant. IssuerSet implements it.
type TokenIssuer interface {
	// IssuerPrivateKey returns the current issuer key of tenant, or nil.
	IssuerPrivateKey(tenant [16]byte) *deliverytoken.IssuerPrivateKey
}

// IssuanceLimits bound anonymous-token issuance. A zero field selects its
// default.
type IssuanceLimits struct {
	// PerDevicePerDay is how many tokens one device may obtain per UTC
	// day. Default 100 (envelope.md §Anonymous delivery tokens).
	PerDevicePerDay int
	// PerTenantPerDay is how many tokens all devices of one tenant may
	// obtain together per UTC day. Default 100,000.
	PerTenantPerDay int
}

func (l *IssuanceLimits) defaults() {
	if l.PerDevicePerDay == 0 {
		l.PerDevicePerDay = 100
	}
	if l.PerTenantPerDay == 0 {
		l.PerTenantPerDay = 100_000
	}
}

// tokenRequestSize is the size of one RFC 9578 §6.1 TokenRequest of type
// 0x0002 (envelope.md §Anonymous delivery tokens): type, truncated key id,
// blinded message.
const tokenRequestSize = 2 + 1 + 256

// MaxIssuanceRequest bounds a TokenIssuanceRequest: MaxBatch requests.
const MaxIssuanceRequest = 4 + deliverytoken.MaxBatch*tokenRequestSize

func (r *Relay) issuerKey(w http.ResponseWriter, tenant [16]byte) *deliverytoken.IssuerPrivateKey {
	var k *deliverytoken.IssuerPrivateKey
	if r.opts.TokenIssuer != nil {
		k = r.opts.TokenIssuer.IssuerPrivateKey(tenant)
	}
	if k == nil {
		httpserve.WriteError(w, http.StatusNotFound, "no token issuer for this tenant")
	}
	return k
}

// getIssuerKey is GET /relay/v1/tokens/issuer-key: the SPKI encoding of
// the caller's tenant's current issuer key. A client MUST check it against
// the key its tenant publishes in the directory before it uses it.
func (r *Relay) getIssuerKey(w http.ResponseWriter, req *http.Request) {
	ss := r.authn(w, req, deviceauth.PurposeTokenIssuance)
	if ss == nil {
		return
	}
	if k := r.issuerKey(w, ss.Tenant); k != nil {
		writeBinary(w, k.Public().Bytes())
	}
}

// postIssueTokens is POST /relay/v1/tokens/issue: a TokenIssuanceRequest
// in, the TokenIssuanceResponse out.
func (r *Relay) postIssueTokens(w http.ResponseWriter, req *http.Request) {
	ss := r.authn(w, req, deviceauth.PurposeTokenIssuance)
	if ss == nil {
		return
	}
	k := r.issuerKey(w, ss.Tenant)
	if k == nil {
		return
	}
	if req.ContentLength > MaxIssuanceRequest {
		httpserve.WriteError(w, http.StatusRequestEntityTooLarge, "issuance request too large")
		return
	}
	body, ok := httpserve.ReadBody(w, req, MaxIssuanceRequest)
	if !ok {
		return
	}
	n := (len(body) - 4) / tokenRequestSize
	if n < 1 || len(body) != 4+n*tokenRequestSize {
		r.met.issued.WithLabelValues("malformed").Inc()
		httpserve.WriteError(w, http.StatusBadRequest, "malformed issuance request")
		return
	}
	now := r.opts.Now()
	mb := ss.Mailbox()
	lim := r.opts.Issuance
	lim.defaults()
	if !r.reserveIssuance(w, mb, n, lim, now) {
		return
	}
	resp, issued, err := k.Issue(body)
	if err != nil || issued != n {
		r.refundIssuance(mb, n, lim, now)
		if errors.Is(err, deliverytoken.ErrMalformed) {
			r.met.issued.WithLabelValues("malformed").Inc()
			httpserve.WriteError(w, http.StatusBadRequest, "malformed issuance request")
			return
		}
		httpserve.WriteError(w, http.StatusInternalServerError, "internal error")
		return
	}
	r.met.issued.WithLabelValues("ok").Add(float64(n))
	writeBinary(w, resp)
}

// IssuerSet is an in-memory TokenIssuer and deliverytoken.IssuerKeys:
// each tenant's current issuer key, and the public halves of keys retired
// but still accepted. It is safe for concurrent use.
type IssuerSet struct {
	mu      sync.RWMutex
	current map[[16]byte]*deliverytoken.IssuerPrivateKey
	public  *deliverytoken.MemoryIssuerKeys
}

// NewIssuerSet returns an empty set.
func NewIssuerSet() *IssuerSet {
	return &IssuerSet{current: map[[16]byte]*deliverytoken.IssuerPrivateKey{}, public: deliverytoken.NewMemoryIssuerKeys()}
}

// Set makes k the current issuer key of tenant: the relay issues under
// it and accepts its tokens. A previous key's tokens stay accepted until
// Retire.
func (s *IssuerSet) Set(tenant [16]byte, k *deliverytoken.IssuerPrivateKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.current[tenant] = k
	s.public.Add(tenant, k.Public())
}

// Retire refuses the tokens of tenant's key keyID from now on.
func (s *IssuerSet) Retire(tenant [16]byte, keyID [32]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := s.current[tenant]; k != nil && k.Public().KeyID() == keyID {
		delete(s.current, tenant)
	}
	s.public.Remove(tenant, keyID)
}

// IssuerPrivateKey implements TokenIssuer.
func (s *IssuerSet) IssuerPrivateKey(tenant [16]byte) *deliverytoken.IssuerPrivateKey {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.current[tenant]
}

// IssuerKey implements deliverytoken.IssuerKeys.
func (s *IssuerSet) IssuerKey(tenant [16]byte, keyID [32]byte) *deliverytoken.IssuerPublicKey {
	return s.public.IssuerKey(tenant, keyID)
}
