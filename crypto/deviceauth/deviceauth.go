package deviceauth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/moat-im/moat/crypto/internal/label"
	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/sealed"
)

const (
	// DefaultLifetime is how long a challenge can be answered.
	DefaultLifetime = 60 * time.Second
	// MaxLifetime is the longest lifetime a relay may configure.
	MaxLifetime = 300 * time.Second
	// MaxSkew is how far in the future a challenge's time may be, for
	// relays whose clocks differ slightly.
	MaxSkew = 5 * time.Second
	// ChallengeKeySize is the size of the relay's challenge key.
	ChallengeKeySize = 32
)

// DeviceKeys gives the relay the identity signing key of a device's
// current, unrevoked certificate, verified against its tenant's CA when
// the device registered.
type DeviceKeys interface {
	// IdentityKey returns the key of (tenant, device), or ErrUnknownDevice
	// (or a wrapped store error) if there is none.
	IdentityKey(tenant, device [16]byte) (*keys.IdentitySigningPublicKey, error)
}

// ReplayCache remembers answered challenges until they expire. Use must be
// atomic: of concurrent calls with one nonce, at most one succeeds.
// deviceauthtest.TestReplayCache checks the rules.
type ReplayCache interface {
	// Use records nonce as answered until expires. It returns ErrReplayed
	// if the nonce is recorded and not expired at now, and
	// ErrReplayCacheFull if it cannot record it.
	Use(nonce [32]byte, expires, now time.Time) error
}

// Config configures a relay's Verifier.
type Config struct {
	// Relay is the relay's name, as clients address it: 1 to 255 bytes of
	// 0x21-0x7e.
	Relay string
	// ChallengeKey is the relay's 32-byte secret for challenge tags.
	ChallengeKey []byte
	// Lifetime of a challenge; 0 means DefaultLifetime. At most MaxLifetime.
	Lifetime time.Duration
	Devices  DeviceKeys
	Replay   ReplayCache
	// Now is the relay's clock; nil means time.Now.
	Now func() time.Time
	// Rand is the source of nonces; nil means crypto/rand.
	Rand io.Reader
}

// Verifier is the relay side of device authentication. It is safe for
// concurrent use if its DeviceKeys and ReplayCache are.
type Verifier struct {
	relay    string
	key      []byte
	lifetime time.Duration
	devices  DeviceKeys
	replay   ReplayCache
	now      func() time.Time
	rand     io.Reader
}

// NewVerifier checks cfg and returns a Verifier.
func NewVerifier(cfg Config) (*Verifier, error) {
	if !validRelay(cfg.Relay) || len(cfg.ChallengeKey) != ChallengeKeySize || cfg.Devices == nil || cfg.Replay == nil ||
		cfg.Lifetime < 0 || cfg.Lifetime > MaxLifetime {
		return nil, fmt.Errorf("deviceauth: invalid configuration")
	}
	v := &Verifier{relay: cfg.Relay, key: append([]byte(nil), cfg.ChallengeKey...), lifetime: cfg.Lifetime,
		devices: cfg.Devices, replay: cfg.Replay, now: cfg.Now, rand: cfg.Rand}
	if v.lifetime == 0 {
		v.lifetime = DefaultLifetime
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.rand == nil {
		v.rand = rand.Reader
	}
	return v, nil
}

func (v *Verifier) tag(c *challenge) (t [tagSize]byte) {
	m := hmac.New(sha256.New, v.key)
	m.Write([]byte(label.DeviceAuthChallenge))
	m.Write([]byte{0})
	m.Write(c.appendUntagged(nil))
	m.Sum(t[:0])
	return t
}

// Challenge issues a challenge for purpose (docs/spec/api.md §Relay:
// issuing a challenge). It stores nothing.
func (v *Verifier) Challenge(p Purpose) ([]byte, error) {
	if !p.valid() {
		return nil, ErrMalformed
	}
	c := &challenge{purpose: p, relay: v.relay, issuedAt: unixSeconds(v.now())}
	if _, err := io.ReadFull(v.rand, c.nonce[:]); err != nil {
		return nil, err
	}
	c.tag = v.tag(c)
	return c.marshal(), nil
}

// Authenticated is a device that answered a challenge.
type Authenticated struct {
	Tenant, Device [16]byte
	Purpose        Purpose
}

// Mailbox returns the device's own mailbox.
func (a *Authenticated) Mailbox() sealed.MailboxID { return sealed.NewMailboxID(a.Tenant, a.Device) }

// Authorize allows a request on mailbox only if it is the device's own
// (docs/spec/api.md §Relay: verifying); otherwise ErrForbidden.
func (a *Authenticated) Authorize(mailbox sealed.MailboxID) error {
	if mailbox != a.Mailbox() {
		return ErrForbidden
	}
	return nil
}

// Verify checks a response for an endpoint of purpose p, with the
// connection's channel binding (empty if none), in the order of
// docs/spec/api.md §Relay: verifying.
func (v *Verifier) Verify(resp []byte, p Purpose, channelBinding []byte) (*Authenticated, error) {
	if len(channelBinding) > maxBinding {
		return nil, ErrMalformed
	}
	r, err := parseResponse(resp)
	if err != nil {
		return nil, err
	}
	c := &r.challenge
	want := v.tag(c)
	if !hmac.Equal(want[:], c.tag[:]) {
		return nil, ErrBadChallenge
	}
	if c.relay != v.relay {
		return nil, ErrWrongRelay
	}
	if c.purpose != p {
		return nil, ErrWrongPurpose
	}
	now := v.now()
	issued := time.Unix(int64(c.issuedAt), 0)
	expires := issued.Add(v.lifetime)
	if issued.After(now.Add(MaxSkew)) || !now.Before(expires) {
		return nil, ErrExpired
	}
	key, err := v.devices.IdentityKey(r.tenant, r.device)
	if err != nil {
		return nil, err
	}
	if key == nil {
		return nil, ErrUnknownDevice
	}
	if key.Verify(responseTBS(c, r.tenant, r.device, channelBinding), r.signature[:]) != nil {
		return nil, ErrBadSignature
	}
	if err := v.replay.Use(c.nonce, expires, now); err != nil {
		return nil, err
	}
	return &Authenticated{Tenant: r.tenant, Device: r.device, Purpose: p}, nil
}

// responseTBS is the message a device signs:
//
//	"moat/v1/device-auth-response" || 0x00 || Challenge || tenant || device ||
//	opaque channel_binding<0..255>
func responseTBS(c *challenge, tenant, device [16]byte, channelBinding []byte) []byte {
	b := make([]byte, 0, len(label.DeviceAuthResponse)+1+4+len(c.relay)+8+nonceSize+tagSize+32+1+len(channelBinding))
	b = append(b, label.DeviceAuthResponse...)
	b = append(b, 0)
	b = c.appendUntagged(b)
	b = append(b, c.tag[:]...)
	b = append(b, tenant[:]...)
	b = append(b, device[:]...)
	b = append(b, byte(len(channelBinding)))
	return append(b, channelBinding...)
}

// Respond answers a challenge as device (tenant, device), signing with its
// identity key, for the connection's channel binding (empty if none). It
// refuses a challenge that names another relay than relay, the name the
// device used to reach it (ErrWrongRelay), or another purpose than p
// (ErrWrongPurpose). It does not check the challenge's time: the device's
// clock is not trusted (docs/spec/api.md §Device: answering).
func Respond(chal []byte, relay string, p Purpose, tenant, device [16]byte, key *keys.IdentitySigningPrivateKey, channelBinding []byte) ([]byte, error) {
	if key == nil || tenant == [16]byte{} || device == [16]byte{} || len(channelBinding) > maxBinding {
		return nil, ErrMalformed
	}
	c, err := parseChallenge(chal)
	if err != nil {
		return nil, err
	}
	if c.relay != relay {
		return nil, ErrWrongRelay
	}
	if c.purpose != p {
		return nil, ErrWrongPurpose
	}
	r := &response{challenge: *c, tenant: tenant, device: device}
	copy(r.signature[:], key.Sign(responseTBS(c, tenant, device, channelBinding)))
	return r.marshal(), nil
}

// MemoryReplayCache is an in-memory ReplayCache of at most max entries,
// safe for concurrent use. Expired entries are dropped when space is
// needed; unexpired ones never are, so a full cache refuses
// (ErrReplayCacheFull) rather than forget a nonce that could be replayed.
type MemoryReplayCache struct {
	mu   sync.Mutex
	max  int
	used map[[32]byte]time.Time
}

// NewMemoryReplayCache returns a cache of at most max entries.
func NewMemoryReplayCache(max int) *MemoryReplayCache {
	return &MemoryReplayCache{max: max, used: map[[32]byte]time.Time{}}
}

// Use implements ReplayCache.
func (c *MemoryReplayCache) Use(nonce [32]byte, expires, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.used[nonce]; ok && now.Before(e) {
		return ErrReplayed
	}
	if len(c.used) >= c.max {
		for n, e := range c.used {
			if !now.Before(e) {
				delete(c.used, n)
			}
		}
		if len(c.used) >= c.max {
			return ErrReplayCacheFull
		}
	}
	c.used[nonce] = expires
	return nil
}

// Len returns the number of entries held.
func (c *MemoryReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.used)
}

// MemoryDeviceKeys is an in-memory DeviceKeys, safe for concurrent use.
type MemoryDeviceKeys struct {
	mu sync.RWMutex
	m  map[[32]byte]*keys.IdentitySigningPublicKey
}

// NewMemoryDeviceKeys returns an empty set.
func NewMemoryDeviceKeys() *MemoryDeviceKeys {
	return &MemoryDeviceKeys{m: map[[32]byte]*keys.IdentitySigningPublicKey{}}
}

// Set records the current key of (tenant, device).
func (d *MemoryDeviceKeys) Set(tenant, device [16]byte, k *keys.IdentitySigningPublicKey) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.m[sealed.NewMailboxID(tenant, device)] = k
}

// Revoke forgets (tenant, device): it can no longer authenticate.
func (d *MemoryDeviceKeys) Revoke(tenant, device [16]byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.m, sealed.NewMailboxID(tenant, device))
}

// IdentityKey implements DeviceKeys.
func (d *MemoryDeviceKeys) IdentityKey(tenant, device [16]byte) (*keys.IdentitySigningPublicKey, error) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	k := d.m[sealed.NewMailboxID(tenant, device)]
	if k == nil {
		return nil, ErrUnknownDevice
	}
	return k, nil
}
