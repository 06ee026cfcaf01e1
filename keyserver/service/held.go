package service

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
)

// heldParam reads a lookup's entry parameter (directory-api.md
// §HTTP API): whether the client holds the last entry of its tree of
// size, which the parameter must name (size − 1).
func heldParam(r *http.Request, size uint64) (bool, error) {
	if !r.URL.Query().Has("entry") {
		return false, nil
	}
	e, err := sizeParam(r, "entry")
	if err != nil || size == 0 || e != size-1 {
		return false, errors.New("bad entry")
	}
	return true, nil
}

// LookupHeld is Lookup for a client that, if held, holds the last entry
// of its tree of size clientSize (kt.Client.HeldEntry): the label proof
// then leaves the entry's inclusion proof out if the served checkpoint is
// still of that size (docs/spec/directory.md §Held entry).
func (t *Tenant) LookupHeld(ctx context.Context, l org.Label, clientSize uint64, held bool) (*kt.LookupResponse, error) {
	r, err := t.Lookup(ctx, l, clientSize)
	if err != nil {
		return nil, err
	}
	if held && clientSize > 0 && r.Proof.Entry.Epoch == clientSize-1 {
		r.Proof.Inclusion = nil
	}
	return r, nil
}

// heldQuery is the query of a lookup by kc: its tree size and, if it
// holds the last entry of that tree, the entry's epoch.
func heldQuery(kc *kt.Client) url.Values {
	q := sizeQuery("size", kc.TreeSize())
	if e, ok := kc.HeldEntry(); ok {
		q.Set("entry", strconv.FormatUint(e, 10))
	}
	return q
}

// LookupFrom looks user up for the verifying client kc: relative to the
// tree size kc trusts, saying which entry it holds (kt.Client.HeldEntry),
// so that a lookup against a checkpoint kc already proved an entry of
// carries no inclusion proof (docs/spec/directory.md §Held entry).
func (c *Client) LookupFrom(ctx context.Context, user org.UserID, kc *kt.Client) (*kt.LookupResponse, error) {
	b, err := c.do(ctx, http.MethodGet, c.url("/lookup/"+user.String(), heldQuery(kc)), nil, signDevice)
	if err != nil {
		return nil, err
	}
	return kt.ParseLookupResponse(b)
}

// LookupOrgFrom is LookupFrom for the org label name.
func (c *Client) LookupOrgFrom(ctx context.Context, name string, kc *kt.Client) (*kt.LookupResponse, error) {
	b, err := c.do(ctx, http.MethodGet, c.url("/org/"+name, heldQuery(kc)), nil, signDevice)
	if err != nil {
		return nil, err
	}
	return kt.ParseLookupResponse(b)
}
