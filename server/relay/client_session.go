package relay

import (
	"context"
	"errors"
	"net/http"

	"github.com/moat-im/moat/crypto/deviceauth"
)

// Session reuse across purposes (docs/spec/api.md §Sessions). A device
// that uses several purposes — a first message to a new contact needs a
// prekeys session for the bundle, a token-issuance session for an
// anonymous token and a mailbox session to sync — authenticates once, for
// purpose "all", and sends that one session token with every request.
// The purpose is still signed (the device signed a challenge for "all")
// and still checked by the relay on every request; the channel binding
// is that of the connection the session request travelled on, as for any
// purpose.

// sessionPurpose returns the purpose of the session that serves p.
func (c *Client) sessionPurpose(p deviceauth.Purpose) deviceauth.Purpose {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.PerPurposeSessions || c.noAll {
		return p
	}
	return deviceauth.PurposeAll
}

// sessionHeader returns the Authorization header of the session that
// serves p, authenticating first if there is none. A relay that does not
// know purpose "all" (400 to its challenge) is asked per purpose from
// then on.
func (c *Client) sessionHeader(ctx context.Context, p deviceauth.Purpose) (http.Header, error) {
	sp := c.sessionPurpose(p)
	c.mu.Lock()
	tok := c.sessions[sp]
	c.mu.Unlock()
	if tok == "" {
		err := c.Authenticate(ctx, sp)
		var ae *APIError
		if sp == deviceauth.PurposeAll && errors.As(err, &ae) && ae.Status == http.StatusBadRequest {
			c.mu.Lock()
			c.noAll = true
			c.mu.Unlock()
			sp = p
			err = c.Authenticate(ctx, sp)
		}
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		tok = c.sessions[sp]
		c.mu.Unlock()
	}
	return http.Header{"Authorization": {AuthScheme + " " + tok}}, nil
}

// dropSession forgets the session that serves p (the relay answered 401:
// it restarted, or the session expired), so that the next request
// authenticates again.
func (c *Client) dropSession(p deviceauth.Purpose) {
	sp := c.sessionPurpose(p)
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.sessions, sp)
}
