// Package client is the Moat client SDK that every UI and bot is built
// on: a device enrols with its organisation's key directory and relay,
// verifies its contacts in the key directory, and exchanges end-to-end
// encrypted 1:1 messages with every device of a contact and with its own
// other devices, keeping a local history in a sealed store.
//
// Sessions are PQXDH (docs/spec/pqxdh.md) and the ratchet
// (docs/spec/ratchet.md), messages are sealed-sender envelopes
// (docs/spec/envelope.md) sent anonymously with delivery tokens, and the
// plaintext is docs/spec/content.md. client/README.md describes the
// design and its limits.
package client

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/moat-im/moat/client/localstore"
	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/service"
	"github.com/moat-im/moat/server/relay"
	"github.com/moat-im/moat/server/store/mailbox"
)

// Client is an enrolled device. Its methods are safe for concurrent use;
// they run one at a time.
type Client struct {
	cfg Config
	st  localstore.Store
	log *slog.Logger

	mu     sync.Mutex
	closed bool
	// prekeysDue asks the next Sync to check the relay's prekeys: a new
	// session used the last-resort KEM prekey (prekeycheck.go).
	prekeysDue bool
	dev        *deviceState
	id         *keys.DeviceIdentityPrivate
	cert       *org.DeviceCertificate
	tokens     *deliverytoken.TokenKey
	ring       *sealed.Keyring
	kt         *kt.Client
	dir        *service.Client
	rel        *relay.Client
	anon       *relay.Client

	events chan Event
	drops  eventDrops // events.go
	done   chan struct{}

	// bundleSeq is the sequence of the trust bundle in dev.TrustBundle.
	bundleSeq uint64

	// inTx is set while update runs; a wipe decided inside a transaction
	// is done once it ends (wipePending).
	inTx, wipePending bool

	// changes are the contact key changes of the running transaction
	// (contactchange.go).
	changes []pendingChange
}

func (cfg *Config) defaults() error {
	if cfg.DirectoryURL == "" || cfg.RelayURL == "" {
		return errors.New("client: Config needs DirectoryURL and RelayURL")
	}
	if cfg.HTTP == nil {
		cfg.HTTP = http.DefaultClient
	}
	anon, err := anonymousHTTP(cfg)
	if err != nil {
		return err
	}
	cfg.AnonymousHTTP = anon
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = time.Hour
	}
	if cfg.RecheckAfter == 0 {
		cfg.RecheckAfter = time.Minute
	}
	if cfg.KeyRotation == 0 {
		cfg.KeyRotation = defaultKeyRotation
	}
	if cfg.KeyGrace <= 0 {
		cfg.KeyGrace = defaultKeyGrace
	}
	if cfg.OneTimePrekeys <= 0 {
		cfg.OneTimePrekeys = 20
	}
	return nil
}

// eventBuffer is how many events Events buffers; when a UI falls further
// behind, events are dropped, security events last (events.go; History
// stays complete).
const eventBuffer = 1024

// Open opens the device enrolled in st. It refuses a store without an
// enrolled device (ErrNotEnrolled), a wiped or revoked one (ErrRevoked),
// and a Config.RelayKey other than the pinned one (ErrRelayKeyMismatch).
// The caller keeps ownership of st; Close does not close it.
func Open(ctx context.Context, cfg Config, st localstore.Store) (*Client, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	var dev deviceState
	var ktState []byte
	err := st.View(func(tx localstore.Tx) error {
		found, err := getJSON(tx, kindDevice, selfID, &dev)
		if err != nil {
			return err
		}
		if !found || !dev.Enrolled {
			return ErrNotEnrolled
		}
		ktState, err = tx.Get("", kindKT, []byte("state"))
		return err
	})
	if err != nil {
		return nil, err
	}
	if dev.Revoked {
		return nil, ErrRevoked
	}
	return newClient(cfg, st, &dev, ktState)
}

// newClient builds a client from its stored state.
func newClient(cfg Config, st localstore.Store, dev *deviceState, ktState []byte) (*Client, error) {
	rk, err := keys.ParseRelaySigningPublicKeyText(dev.RelayKey)
	if err != nil {
		return nil, fmt.Errorf("client: stored relay key: %w", err)
	}
	if cfg.RelayKey != nil && !cfg.RelayKey.Equal(rk) {
		return nil, ErrRelayKeyMismatch
	}
	id, err := identityOf(dev)
	if err != nil {
		return nil, err
	}
	cert, err := org.ParseDeviceCertificate(dev.Certificate)
	if err != nil {
		return nil, fmt.Errorf("client: stored certificate: %w", err)
	}
	tb, err := org.ParseTrustBundle(dev.TrustBundle)
	if err != nil {
		return nil, fmt.Errorf("client: stored trust bundle: %w", err)
	}
	ktc, err := kt.RestoreClient(kt.Config{Bundle: tb, MaxAge: cfg.MaxAge}, ktState)
	if err != nil {
		return nil, fmt.Errorf("client: stored directory state: %w", err)
	}
	tk, err := deliverytoken.NewTokenKey(dev.TokenKey)
	if err != nil {
		return nil, fmt.Errorf("client: stored token key: %w", err)
	}
	ssk, err := keys.NewSealedSenderPrivateKey(dev.SealedSeed)
	if err != nil {
		return nil, fmt.Errorf("client: stored sealed-sender key: %w", err)
	}
	c := &Client{cfg: cfg, st: st, log: cfg.Logger, dev: dev, id: id, cert: cert, tokens: tk, kt: ktc, bundleSeq: tb.Sequence,
		events: make(chan Event, eventBuffer), done: make(chan struct{})}
	c.ring = sealed.NewKeyring(c.mailbox())
	c.ring.Add(dev.SealedID, ssk)
	for _, r := range dev.Retired {
		if r.Kind == retiredSealed {
			k, err := keys.NewSealedSenderPrivateKey(r.Seed)
			if err != nil {
				return nil, fmt.Errorf("client: stored sealed-sender key: %w", err)
			}
			c.ring.Add(r.ID, k)
		}
	}
	c.dir = &service.Client{BaseURL: cfg.DirectoryURL, Tenant: dev.Tenant, HTTP: cfg.HTTP, Now: cfg.Now,
		Device: &service.DeviceCredentials{User: dev.User, Device: dev.Device, Key: id.Signing}}
	c.rel = &relay.Client{BaseURL: cfg.RelayURL, Name: cfg.RelayName, RelayKey: rk, HTTP: cfg.HTTP,
		Device: &relay.DeviceCredentials{Tenant: dev.Tenant, Device: dev.Device, Key: id.Signing}}
	c.anon = &relay.Client{BaseURL: cfg.RelayURL, Name: cfg.RelayName, RelayKey: rk, HTTP: cfg.AnonymousHTTP}
	if len(dev.Head) > 0 {
		h, err := mailbox.ParseSignedHead(dev.Head)
		if err != nil {
			return nil, fmt.Errorf("client: stored relay head: %w", err)
		}
		c.rel.SetHead(h)
	}
	c.rel.SetAcked(dev.Acked)
	return c, nil
}

func identityOf(dev *deviceState) (*keys.DeviceIdentityPrivate, error) {
	s, err := keys.NewIdentitySigningKeyFromSeed(dev.IdentitySigning)
	if err != nil {
		return nil, fmt.Errorf("client: stored identity: %w", err)
	}
	d, err := keys.NewIdentityDHPrivateKey(dev.IdentityDH)
	if err != nil {
		return nil, fmt.Errorf("client: stored identity: %w", err)
	}
	return &keys.DeviceIdentityPrivate{Signing: s, DH: d}, nil
}

func (c *Client) mailbox() sealed.MailboxID { return sealed.NewMailboxID(c.dev.Tenant, c.dev.Device) }

func (c *Client) now() time.Time { return c.cfg.Now() }

// Close stops the client; the store stays open (the caller closes it).
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		close(c.done)
	}
	return nil
}

// lock takes the client's lock, refusing a closed or revoked client.
func (c *Client) lock() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	if c.dev.Revoked {
		c.mu.Unlock()
		return ErrRevoked
	}
	return nil
}

// Self describes this device.
func (c *Client) Self() Self {
	c.mu.Lock()
	defer c.mu.Unlock()
	fp := kt.IdentityFingerprint(c.id.Public())
	return Self{Tenant: c.dev.Tenant, User: c.dev.User, Device: c.dev.Device, Fingerprint: hex.EncodeToString(fp[:])}
}

// Events returns the event stream. There is one stream per Client; it is
// never closed (Run returns when the client is closed). When a UI falls
// more than 1024 events behind, the oldest non-security event is dropped
// (events.go; DroppedEvents counts drops); History is the record.
func (c *Client) Events() <-chan Event { return c.events }

// saveDevice writes the device state and the kt state in tx.
func (c *Client) saveDevice(tx localstore.Tx) error {
	if h := c.rel.Head(); h != nil {
		b, err := h.MarshalBinary()
		if err != nil {
			return err
		}
		c.dev.Head = b
	}
	c.dev.Acked = max(c.dev.Acked, c.rel.Acked())
	if err := c.syncTrustBundle(); err != nil {
		return err
	}
	if err := putJSON(tx, kindDevice, selfID, c.dev); err != nil {
		return err
	}
	ks, err := c.kt.MarshalState()
	if err != nil {
		return err
	}
	return tx.Put("", kindKT, []byte("state"), ks)
}

// update runs fn in a store transaction and saves the device state with
// it; if the transaction fails, the in-memory device state is restored.
func (c *Client) update(fn func(tx localstore.Tx) error) error {
	saved, savedSeq := *c.dev, c.bundleSeq
	c.inTx = true
	err := c.st.Update(func(tx localstore.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		return c.saveDevice(tx)
	})
	c.inTx = false
	c.flushChanges(err == nil && !c.wipePending)
	if c.wipePending {
		c.wipePending = false
		if werr := c.st.Wipe(); werr != nil {
			return fmt.Errorf("%w (wipe failed: %v)", ErrRevoked, werr)
		}
		return ErrRevoked
	}
	if err != nil {
		*c.dev, c.bundleSeq = saved, savedSeq
	}
	return err
}
