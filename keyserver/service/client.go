package service

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
)

// Client calls the directory's HTTP API for one tenant. It does no
// verification: kt.Client verifies what Lookup, History and Consistency
// return, and org.CheckTrustBundle what TrustBundle returns.
type Client struct {
	// BaseURL is the service's URL, such as https://dir.example.
	BaseURL string
	Tenant  org.TenantID
	// HTTP is the client to use; http.DefaultClient if nil.
	HTTP *http.Client
	// Admin signs admin requests.
	Admin *org.AdminPrivateKey
	// Device signs lookups and history requests.
	Device *DeviceCredentials
	// Now and Rand default to time.Now and crypto/rand.
	Now  func() time.Time
	Rand io.Reader
}

// DeviceCredentials are what a device signs its requests with.
type DeviceCredentials struct {
	User   org.UserID
	Device org.DeviceID
	Key    *keys.IdentitySigningPrivateKey
}

// APIError is a non-2xx answer.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("directory: %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Client) rand() io.Reader {
	if c.Rand != nil {
		return c.Rand
	}
	return rand.Reader
}

func (c *Client) url(path string, q url.Values) string {
	u := strings.TrimSuffix(c.BaseURL, "/") + "/v1/" + c.Tenant.String() + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

type signing int

const (
	unsigned signing = iota
	signAdmin
	signDevice
)

// do sends a request and returns the body of a 2xx answer, at most 16 MiB.
func (c *Client) do(ctx context.Context, method, u string, body []byte, sign signing) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", contentJSON)
	}
	switch sign {
	case signAdmin:
		if c.Admin == nil {
			return nil, fmt.Errorf("directory: no admin key")
		}
		err = SignAdminRequest(req, c.Tenant, c.Admin, body, c.now(), c.rand())
	case signDevice:
		if c.Device == nil {
			return nil, fmt.Errorf("directory: no device credentials")
		}
		d := c.Device
		err = SignDeviceRequest(req, c.Tenant, d.User, d.Device, d.Key, body, c.now(), c.rand())
	}
	if err != nil {
		return nil, err
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, &APIError{Status: resp.StatusCode, Message: strings.TrimSpace(string(b))}
	}
	return b, nil
}

// TrustBundle returns the tenant's trust bundle encoding.
func (c *Client) TrustBundle(ctx context.Context) ([]byte, error) {
	return c.do(ctx, http.MethodGet, c.url("/trust-bundle", nil), nil, unsigned)
}

// Checkpoint returns the served cosigned checkpoint note.
func (c *Client) Checkpoint(ctx context.Context) ([]byte, error) {
	return c.do(ctx, http.MethodGet, c.url("/checkpoint", nil), nil, unsigned)
}

func sizeQuery(name string, n uint64) url.Values {
	return url.Values{name: {strconv.FormatUint(n, 10)}}
}

// Consistency returns the served checkpoint relative to the tree size
// from (kt.Client.TreeSize).
func (c *Client) Consistency(ctx context.Context, from uint64) (*kt.ConsistencyResponse, error) {
	b, err := c.do(ctx, http.MethodGet, c.url("/consistency", sizeQuery("from", from)), nil, unsigned)
	if err != nil {
		return nil, err
	}
	return kt.ParseConsistencyResponse(b)
}

// Transitions returns the transitions after the trust bundle of sequence
// after (kt.Client.Bundle().Sequence), relative to the tree size the
// client trusts, for kt.Client.FollowTransitions.
func (c *Client) Transitions(ctx context.Context, after, size uint64) (*kt.TransitionsResponse, error) {
	q := sizeQuery("size", size)
	q.Set("after", strconv.FormatUint(after, 10))
	b, err := c.do(ctx, http.MethodGet, c.url("/transitions", q), nil, unsigned)
	if err != nil {
		return nil, err
	}
	return kt.ParseTransitionsResponse(b)
}

// Lookup looks user up, relative to the tree size the client trusts.
func (c *Client) Lookup(ctx context.Context, user org.UserID, size uint64) (*kt.LookupResponse, error) {
	b, err := c.do(ctx, http.MethodGet, c.url("/lookup/"+user.String(), sizeQuery("size", size)), nil, signDevice)
	if err != nil {
		return nil, err
	}
	return kt.ParseLookupResponse(b)
}

// LookupOrg looks the org label name up.
func (c *Client) LookupOrg(ctx context.Context, name string, size uint64) (*kt.LookupResponse, error) {
	b, err := c.do(ctx, http.MethodGet, c.url("/org/"+name, sizeQuery("size", size)), nil, signDevice)
	if err != nil {
		return nil, err
	}
	return kt.ParseLookupResponse(b)
}

// History returns user's records after version since.
func (c *Client) History(ctx context.Context, user org.UserID, since uint32, size uint64) (*kt.HistoryResponse, error) {
	q := sizeQuery("size", size)
	q.Set("since", strconv.FormatUint(uint64(since), 10))
	b, err := c.do(ctx, http.MethodGet, c.url("/history/"+user.String(), q), nil, signDevice)
	if err != nil {
		return nil, err
	}
	return kt.ParseHistoryResponse(b)
}

// OrgHistory returns the records of the org label name after version
// since.
func (c *Client) OrgHistory(ctx context.Context, name string, since uint32, size uint64) (*kt.HistoryResponse, error) {
	q := sizeQuery("size", size)
	q.Set("since", strconv.FormatUint(uint64(since), 10))
	b, err := c.do(ctx, http.MethodGet, c.url("/org-history/"+name, q), nil, signDevice)
	if err != nil {
		return nil, err
	}
	return kt.ParseHistoryResponse(b)
}

// Enrol redeems code for the device of req.
func (c *Client) Enrol(ctx context.Context, code *org.EnrolmentCode, req *org.EnrolmentRequest, approvals ...*org.Approval) (*EnrolResponse, error) {
	enc, err := req.Marshal()
	if err != nil {
		return nil, err
	}
	in := EnrolRequest{Code: code.Text(), Request: enc}
	for _, a := range approvals {
		b, err := a.Marshal()
		if err != nil {
			return nil, err
		}
		in.Approvals = append(in.Approvals, b)
	}
	body, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	b, err := c.do(ctx, http.MethodPost, c.url("/enrol", nil), body, unsigned)
	if err != nil {
		return nil, err
	}
	var out EnrolResponse
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AdminOp calls POST /v1/{tenant}/admin/{op} with in as the JSON body and
// decodes the answer into out (either may be nil).
func (c *Client) AdminOp(ctx context.Context, op string, in, out any) error {
	body := []byte("{}")
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	b, err := c.do(ctx, http.MethodPost, c.url("/admin/"+op, nil), body, signAdmin)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}
