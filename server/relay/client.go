package relay

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/moat-im/moat/crypto/deviceauth"
	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/server/store/mailbox"
)

// APIError is a relay answer other than success.
type APIError struct {
	Status     int
	Message    string
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	return fmt.Sprintf("relay: %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// Client is a client of the relay API v1 (docs/spec/api.md): anonymous
// sends for anyone, and, with Device set, the device's own mailbox, push
// channel, prekeys and verifiers, and other devices' bundles.
//
// It checks every signed head the relay sends with RelayKey, which the
// caller obtained from its organisation, and refuses a head of its own
// mailbox lower or older than one it verified before, or whose
// acknowledgement floor is below an Ack the relay confirmed before the
// request (T40): Head and Acked hold the latest, and a device keeps them
// across restarts (SetHead, SetAcked).
type Client struct {
	// BaseURL is the relay's URL, such as https://relay.example.com.
	BaseURL string
	// Name is the relay's name for device authentication; default the
	// host of BaseURL.
	Name string
	// RelayKey verifies signed heads. Required.
	RelayKey *keys.RelaySigningPublicKey
	// HTTP is the HTTP client; default http.DefaultClient.
	HTTP *http.Client
	// Device authenticates the client as a device; nil for sends only.
	Device *DeviceCredentials
	// NoChannelBinding leaves TLS channel binding out of authentication
	// (behind a TLS-terminating proxy).
	NoChannelBinding bool
	// PerPurposeSessions authenticates once per purpose, as relays
	// before purpose "all" required; by default one session of purpose
	// "all" serves every purpose (client_session.go).
	PerPurposeSessions bool

	mu       sync.Mutex
	sessions map[deviceauth.Purpose]string
	noAll    bool // the relay refused purpose "all"
	head     *mailbox.SignedHead
	acked    uint64 // the highest Ack the relay confirmed
}

// DeviceCredentials identify a device to the relay.
type DeviceCredentials struct {
	Tenant, Device [16]byte
	Key            *keys.IdentitySigningPrivateKey
}

// Mailbox returns the device's mailbox.
func (d *DeviceCredentials) Mailbox() sealed.MailboxID {
	return sealed.NewMailboxID(d.Tenant, d.Device)
}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

func (c *Client) name() string {
	if c.Name != "" {
		return c.Name
	}
	u, err := url.Parse(c.BaseURL)
	if err != nil {
		return ""
	}
	return u.Host
}

// Head returns the latest signed head of the device's mailbox the client
// verified, or nil.
func (c *Client) Head() *mailbox.SignedHead {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.head
}

// SetHead restores the latest verified head (from the device's store).
func (c *Client) SetHead(h *mailbox.SignedHead) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.head = h
}

// Acked returns the highest sequence number up to which the relay
// confirmed an Ack of the device's mailbox.
func (c *Client) Acked() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.acked
}

// SetAcked restores the highest confirmed Ack (from the device's store).
func (c *Client) SetAcked(upTo uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.acked = upTo
}

// checkPage verifies the signed head of a page of the device's own
// mailbox, fetched after the cursor after and signed after the relay
// confirmed an Ack up to confirmed, checks the page's messages against
// both, and advances the client's view, refusing a rollback (T40). A
// refused page changes nothing.
func (c *Client) checkPage(p *Page, after, confirmed uint64) error {
	h := p.Head
	if c.RelayKey == nil {
		return errors.New("relay: client has no relay key")
	}
	if err := h.Verify(c.RelayKey); err != nil {
		return fmt.Errorf("relay: signed head does not verify: %w", err)
	}
	if h.Mailbox != StoreMailboxID(c.Device.Mailbox()) {
		return errors.New("relay: signed head of another mailbox")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := mailbox.CheckProgress(c.head, h); err != nil {
		return err
	}
	if err := mailbox.CheckAcked(h, confirmed); err != nil {
		return err
	}
	if len(p.Messages) > 0 && p.Messages[0].Seq <= confirmed {
		return fmt.Errorf("%w: message %d at or below the confirmed ack of %d", mailbox.ErrRollback, p.Messages[0].Seq, confirmed)
	}
	if len(p.Messages) > 0 && p.Messages[0].Seq <= after {
		return fmt.Errorf("%w: message at or before the cursor", ErrMalformed)
	}
	c.head = h
	return nil
}

func (c *Client) url(path string) string { return strings.TrimSuffix(c.BaseURL, "/") + path }

func (c *Client) do(ctx context.Context, method, path string, body []byte, header http.Header) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url(path), rd)
	if err != nil {
		return nil, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	return c.roundTrip(req)
}

func (c *Client) roundTrip(req *http.Request) (*http.Response, []byte, error) {
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxPageSize+1))
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode/100 != 2 {
		e := &APIError{Status: resp.StatusCode, Message: strings.TrimSpace(string(b[:min(len(b), 512)]))}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			e.RetryAfter = time.Duration(s) * time.Second
		}
		return resp, nil, e
	}
	return resp, b, nil
}

// Authenticate answers a challenge for purpose p and keeps the session.
// The challenge may come over any connection; the Response is signed over
// the channel binding of the connection that carries it, whichever the
// HTTP client picks (docs/spec/api.md §Sessions).
func (c *Client) Authenticate(ctx context.Context, p deviceauth.Purpose) error {
	if c.Device == nil {
		return errors.New("relay: client has no device credentials")
	}
	_, chal, err := c.do(ctx, http.MethodPost, "/relay/v1/auth/challenge?purpose="+PurposeName(p), nil, nil)
	if err != nil {
		return err
	}
	if len(chal) > deviceauth.MaxResponseSize-responseOverhead {
		return deviceauth.ErrMalformed
	}
	req, bound, err := c.sessionRequest(ctx, p, chal)
	if err != nil {
		return err
	}
	_, b, err := c.roundTrip(req)
	bound.mu.Lock()
	signErr := bound.err
	bound.mu.Unlock()
	if signErr != nil {
		return signErr
	}
	if err != nil {
		return err
	}
	var sr SessionResponse
	if err := json.Unmarshal(b, &sr); err != nil {
		return fmt.Errorf("relay: session answer: %w", err)
	}
	c.mu.Lock()
	if c.sessions == nil {
		c.sessions = map[deviceauth.Purpose]string{}
	}
	c.sessions[p] = sr.Token
	c.mu.Unlock()
	return nil
}

// authed sends a request with the session of purpose p, authenticating
// first if there is none, and once again if the relay forgot it.
func (c *Client) authed(ctx context.Context, p deviceauth.Purpose, method, path string, body []byte) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		h, err := c.sessionHeader(ctx, p)
		if err != nil {
			return nil, err
		}
		_, b, err := c.do(ctx, method, path, body, h)
		var ae *APIError
		if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized && attempt == 0 {
			c.dropSession(p)
			continue
		}
		return b, err
	}
}

// Send sends a sealed envelope anonymously, authorised by auth (a
// SendAuthorization encoding). It checks the receipt's signed head: of the
// envelope's mailbox, at least its sequence number.
func (c *Client) Send(ctx context.Context, auth, envelope []byte) (*Receipt, error) {
	h, err := sealed.ParseHeader(envelope)
	if err != nil {
		return nil, err
	}
	_, b, err := c.do(ctx, http.MethodPost, "/relay/v1/send", envelope, http.Header{
		HeaderSendAuthorization: {base64.RawURLEncoding.EncodeToString(auth)},
		"Content-Type":          {"application/octet-stream"},
	})
	if err != nil {
		return nil, err
	}
	rc, err := ParseReceipt(b)
	if err != nil {
		return nil, err
	}
	if c.RelayKey == nil {
		return nil, errors.New("relay: client has no relay key")
	}
	if err := rc.Head.Verify(c.RelayKey); err != nil {
		return nil, fmt.Errorf("relay: receipt does not verify: %w", err)
	}
	if rc.Head.Mailbox != StoreMailboxID(h.Mailbox) {
		return nil, errors.New("relay: receipt for another mailbox")
	}
	return rc, nil
}

// Fetch returns the device's messages after the cursor, with the page's
// signed head checked against the latest one seen and the Acks confirmed
// before the request (T40).
func (c *Client) Fetch(ctx context.Context, after uint64, limit int) (*Page, error) {
	confirmed := c.Acked()
	path := fmt.Sprintf("/relay/v1/mailboxes/%s/messages?after=%d&limit=%d", MailboxText(c.Device.Mailbox()), after, limit)
	b, err := c.authed(ctx, deviceauth.PurposeMailbox, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	return c.openPage(b, after, confirmed)
}

// openPage parses and checks a page the relay signed after it confirmed
// the device's Acks up to confirmed: a head whose floor is below it, or a
// message at or below it, means the relay forgot an Ack (T40).
func (c *Client) openPage(b []byte, after, confirmed uint64) (*Page, error) {
	p, err := ParsePage(b)
	if err != nil {
		return nil, err
	}
	if err := c.checkPage(p, after, confirmed); err != nil {
		return nil, err
	}
	return p, nil
}

// Ack acknowledges the device's messages up to upTo. Once the relay
// confirms it, every head it signs later must carry a floor of at least
// upTo (Acked).
func (c *Client) Ack(ctx context.Context, upTo uint64) error {
	path := fmt.Sprintf("/relay/v1/mailboxes/%s/ack?up-to=%d", MailboxText(c.Device.Mailbox()), upTo)
	if _, err := c.authed(ctx, deviceauth.PurposeMailbox, http.MethodPost, path, nil); err != nil {
		return err
	}
	c.mu.Lock()
	c.acked = max(c.acked, upTo)
	c.mu.Unlock()
	return nil
}

// AddVerifier registers a delivery-token verifier for the device's
// mailbox; RemoveVerifier deletes one.
func (c *Client) AddVerifier(ctx context.Context, v [32]byte) error {
	_, err := c.authed(ctx, deviceauth.PurposeDeliveryTokens, http.MethodPut, c.verifierPath(v), nil)
	return err
}

// RemoveVerifier deletes a delivery-token verifier.
func (c *Client) RemoveVerifier(ctx context.Context, v [32]byte) error {
	_, err := c.authed(ctx, deviceauth.PurposeDeliveryTokens, http.MethodDelete, c.verifierPath(v), nil)
	return err
}

func (c *Client) verifierPath(v [32]byte) string {
	return fmt.Sprintf("/relay/v1/mailboxes/%s/verifiers/%x", MailboxText(c.Device.Mailbox()), v[:])
}

// UploadPrekeys uploads a PrekeyUpload encoding.
func (c *Client) UploadPrekeys(ctx context.Context, upload []byte) error {
	_, err := c.authed(ctx, deviceauth.PurposePrekeys, http.MethodPut, "/relay/v1/devices/"+MailboxText(c.Device.Mailbox())+"/prekeys", upload)
	return err
}

// PrekeyStatus returns what the device has published and its replenish
// flags.
func (c *Client) PrekeyStatus(ctx context.Context) (*PrekeyStatus, error) {
	b, err := c.authed(ctx, deviceauth.PurposePrekeys, http.MethodGet, "/relay/v1/devices/"+MailboxText(c.Device.Mailbox())+"/prekeys", nil)
	if err != nil {
		return nil, err
	}
	var st PrekeyStatus
	return &st, json.Unmarshal(b, &st)
}

// FetchBundle returns a BundleResponse of device mb; the caller opens it
// with bundle.Open against the identity it verified in the directory.
func (c *Client) FetchBundle(ctx context.Context, mb sealed.MailboxID) ([]byte, error) {
	return c.authed(ctx, deviceauth.PurposePrekeys, http.MethodGet, "/relay/v1/devices/"+MailboxText(mb)+"/bundle", nil)
}

// FetchKeyPackage returns one MLS KeyPackage of device mb, as the
// KeyPackageItem encoding (bundle.ParseKeyPackageItem): the caller checks
// its identity signature against the device's verified identity.
func (c *Client) FetchKeyPackage(ctx context.Context, mb sealed.MailboxID) ([]byte, error) {
	return c.authed(ctx, deviceauth.PurposePrekeys, http.MethodGet, "/relay/v1/devices/"+MailboxText(mb)+"/key-package", nil)
}

// Push is an open push channel.
type Push struct {
	c      *Client
	conn   *websocket.Conn
	cursor uint64
	// confirmed is the highest Ack the relay confirmed before the channel
	// opened: every page it pushes is signed later. Acks confirmed while
	// it is open may be applied after a page was signed, and are checked
	// at the next fetch or channel.
	confirmed uint64
}

// Push opens the device's push channel, starting after the cursor.
func (c *Client) Push(ctx context.Context, after uint64) (*Push, error) {
	confirmed := c.Acked()
	for attempt := 0; ; attempt++ {
		h, err := c.sessionHeader(ctx, deviceauth.PurposeMailbox)
		if err != nil {
			return nil, err
		}
		u := c.url(fmt.Sprintf("/relay/v1/mailboxes/%s/push?after=%d", MailboxText(c.Device.Mailbox()), after))
		conn, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: c.http(), HTTPHeader: h})
		if err != nil {
			if resp != nil && resp.StatusCode == http.StatusUnauthorized && attempt == 0 {
				c.dropSession(deviceauth.PurposeMailbox)
				continue
			}
			if resp != nil {
				return nil, &APIError{Status: resp.StatusCode, Message: err.Error()}
			}
			return nil, err
		}
		conn.SetReadLimit(MaxPageSize)
		return &Push{c: c, conn: conn, cursor: after, confirmed: confirmed}, nil
	}
}

// Next returns the next page the relay pushes, checked like a fetched page.
func (p *Push) Next(ctx context.Context) (*Page, error) {
	typ, b, err := p.conn.Read(ctx)
	if err != nil {
		return nil, err
	}
	if typ != websocket.MessageBinary {
		return nil, ErrMalformed
	}
	pg, err := p.c.openPage(b, p.cursor, p.confirmed)
	if err != nil {
		return nil, err
	}
	if n := len(pg.Messages); n > 0 {
		p.cursor = pg.Messages[n-1].Seq
	}
	return pg, nil
}

// Ack acknowledges messages up to upTo on the channel.
func (p *Push) Ack(ctx context.Context, upTo uint64) error {
	return p.conn.Write(ctx, websocket.MessageBinary, MarshalPushAck(upTo))
}

// Close closes the channel.
func (p *Push) Close() error { return p.conn.Close(websocket.StatusNormalClosure, "") }
