package relay

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/deviceauth"
	"github.com/moat-im/moat/keyserver/org"
)

// Issuer-key distribution (docs/spec/api.md §Anonymous-token issuance):
// a tenant publishes its issuer key in its key directory as the policy
// bundle IssuerPolicyID, entry IssuerPolicyKey, the SPKI encoding. The
// directory is a transparency log, so every device of the tenant sees the
// same key; a device uses no other.
const (
	// IssuerPolicyID is the policy bundle (org label "policy/" ||
	// IssuerPolicyID) that carries the tenant's token issuer key.
	IssuerPolicyID = "delivery-token-issuer"
	// IssuerPolicyKey is the entry of that bundle holding the SPKI.
	IssuerPolicyKey = "issuer-key"
)

// ErrNoIssuerKey is returned by IssuerKeyFromPolicy for a policy bundle
// without an issuer key entry.
var ErrNoIssuerKey = errors.New("relay: policy bundle has no token issuer key")

// IssuerKeyFromPolicy returns the issuer key of a policy bundle the caller
// verified in its tenant's directory (kt.Client.VerifyOrgLookup of
// "policy/"+IssuerPolicyID), parsed strictly.
func IssuerKeyFromPolicy(p *org.PolicyBundle) (*deliverytoken.IssuerPublicKey, error) {
	if p == nil || p.PolicyID != IssuerPolicyID {
		return nil, ErrNoIssuerKey
	}
	for _, e := range p.Entries {
		if e.Key == IssuerPolicyKey {
			return deliverytoken.ParseIssuerPublicKey(e.Value)
		}
	}
	return nil, ErrNoIssuerKey
}

// IssuerKey returns the issuer key the relay serves for the device's
// tenant. It is not trusted: a relay that served each device a key of its
// own could link tokens to devices. A client compares it with the key in
// its directory (IssuerKeyFromPolicy) and otherwise uses it only where it
// has no directory (tests, development).
func (c *Client) IssuerKey(ctx context.Context) (*deliverytoken.IssuerPublicKey, error) {
	b, err := c.authed(ctx, deviceauth.PurposeTokenIssuance, http.MethodGet, "/relay/v1/tokens/issuer-key", nil)
	if err != nil {
		return nil, err
	}
	return deliverytoken.ParseIssuerPublicKey(b)
}

// IssueTokens obtains n anonymous delivery tokens of the device's tenant
// under pub, in requests of at most deliverytoken.MaxBatch. pub MUST be
// the key the device verified in its tenant's directory: every token is
// verified under it (deliverytoken.ErrWrongKey otherwise), so a relay
// that signs with another key gets no token used. On an error the tokens
// of the requests that succeeded are returned with it; a 429 is an
// *APIError whose RetryAfter is the wait until the quota's next day.
func (c *Client) IssueTokens(ctx context.Context, pub *deliverytoken.IssuerPublicKey, n int) ([]*deliverytoken.AnonymousToken, error) {
	if c.Device == nil {
		return nil, errors.New("relay: client has no device credentials")
	}
	if pub == nil || n < 1 {
		return nil, fmt.Errorf("relay: IssueTokens needs an issuer key and n ≥ 1")
	}
	var out []*deliverytoken.AnonymousToken
	for n > 0 {
		k := min(n, deliverytoken.MaxBatch)
		req, pending, err := deliverytoken.RequestTokens(pub, c.Device.Tenant, k)
		if err != nil {
			return out, err
		}
		resp, err := c.authed(ctx, deviceauth.PurposeTokenIssuance, http.MethodPost, "/relay/v1/tokens/issue", req)
		if err != nil {
			return out, err
		}
		toks, err := pending.Finalize(resp)
		if err != nil {
			return out, err
		}
		out = append(out, toks...)
		n -= k
	}
	return out, nil
}

// AnonymousAuthorization returns the SendAuthorization of an anonymous
// token, for Send.
func AnonymousAuthorization(t *deliverytoken.AnonymousToken) ([]byte, error) {
	return (&deliverytoken.SendAuthorization{Kind: deliverytoken.KindAnonymous, Anonymous: t}).Marshal()
}
