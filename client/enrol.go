package client

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/moat-im/moat/client/localstore"
	"github.com/moat-im/moat/crypto/bundle"
	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/service"
)

// sealedKeyLifetime is how long a sealed-sender key is published for.
const sealedKeyLifetime = 30 * 24 * 3600 // seconds

// Enrol enrols a new device with the enrolment code text an admin issued
// (moat-enrol2:…), into the empty store st:
//
//  1. it generates the device's keys and its enrolment request, and keeps
//     them in st before anything leaves the device;
//  2. it redeems the code at the directory with approvals (org.Approval
//     encodings from one of the user's devices, Client.ApproveDevice);
//     if the directory wants approvals it returns an
//     *ApprovalRequiredError with the request to show the approvers, and
//     a later Enrol with the same store and code resumes with the same
//     keys;
//  3. it checks the answer with kt.Enrol (trust bundle against the code,
//     certificate against its keys, clock, first checkpoint and its last
//     entry, which the client state then holds so that the first lookups
//     need no log inclusion proof) and pins the trust bundle and
//     cfg.RelayKey;
//  4. it registers with the relay: a signed prekey, one-time X25519 and
//     ML-KEM prekeys, a last-resort ML-KEM prekey and a sealed-sender key,
//     all signed by its identity key (docs/spec/bundle.md).
//
// The device is published in the directory at the next epoch; until then
// other devices cannot verify it and refuse its messages.
func Enrol(ctx context.Context, cfg Config, st localstore.Store, code string, approvals ...[]byte) (*Client, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if cfg.RelayKey == nil {
		return nil, errors.New("client: Enrol needs Config.RelayKey")
	}
	ec, err := org.ParseEnrolmentCodeText(strings.TrimSpace(code))
	if err != nil {
		return nil, fmt.Errorf("client: enrolment code: %w", err)
	}
	if err := kt.CheckEnrolmentClock(ec, 0, cfg.Now()); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	var aps []*org.Approval
	for _, b := range approvals {
		ap, err := org.ParseApproval(b)
		if err != nil {
			return nil, fmt.Errorf("client: approval: %w", err)
		}
		aps = append(aps, ap)
	}

	// 1. Keys and request, kept before the directory sees them.
	var dev deviceState
	err = st.Update(func(tx localstore.Tx) error {
		found, err := getJSON(tx, kindDevice, selfID, &dev)
		if err != nil {
			return err
		}
		if found {
			if dev.Enrolled {
				return ErrAlreadyEnrolled
			}
			req, err := org.ParseEnrolmentRequest(dev.Request)
			if err != nil {
				return err
			}
			if req.Code == ec.ID && req.Tenant == ec.Tenant {
				return nil // resume
			}
		}
		nd, err := newPendingDevice(ec, cfg.RelayKey)
		if err != nil {
			return err
		}
		dev = *nd
		return putJSON(tx, kindDevice, selfID, &dev)
	})
	if err != nil {
		return nil, err
	}
	req, err := org.ParseEnrolmentRequest(dev.Request)
	if err != nil {
		return nil, err
	}

	// 2. Redeem.
	api := &service.Client{BaseURL: cfg.DirectoryURL, Tenant: ec.Tenant, HTTP: cfg.HTTP, Now: cfg.Now}
	res, err := api.Enrol(ctx, ec, req, aps...)
	if err != nil {
		var ae *service.APIError
		if errors.As(err, &ae) && ae.Status == http.StatusForbidden && strings.Contains(ae.Message, "approval required") {
			h := sha256.Sum256(dev.Request)
			return nil, &ApprovalRequiredError{Request: dev.Request, Fingerprint: hex.EncodeToString(h[:]), Reason: ae.Message}
		}
		return nil, fmt.Errorf("client: enrolment: %w", err)
	}

	// 3. Check and pin.
	ktc, cert, err := kt.Enrol(ec, req, res.Enrolment(), cfg.MaxAge, 0, cfg.Now())
	if err != nil {
		return nil, fmt.Errorf("client: enrolment answer refused: %w", err)
	}
	dev.Enrolled = true
	dev.Tenant, dev.User, dev.Device, dev.Serial = cert.Tenant, cert.User, cert.Device, cert.Serial
	dev.Certificate, dev.TrustBundle = res.Certificate, res.TrustBundle
	ks, err := ktc.MarshalState()
	if err != nil {
		return nil, err
	}
	if err := st.Update(func(tx localstore.Tx) error {
		if err := putJSON(tx, kindDevice, selfID, &dev); err != nil {
			return err
		}
		return tx.Put("", kindKT, []byte("state"), ks)
	}); err != nil {
		return nil, err
	}
	c, err := newClient(cfg, st, &dev, ks)
	if err != nil {
		return nil, err
	}
	// 4. Register with the relay.
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.register(ctx); err != nil {
		return c, fmt.Errorf("client: enrolled, but relay registration failed (Open retries it): %w", err)
	}
	return c, nil
}

// newPendingDevice generates a device's keys and its enrolment request.
func newPendingDevice(ec *org.EnrolmentCode, relayKey *keys.RelaySigningPublicKey) (*deviceState, error) {
	id, err := keys.GenerateDeviceIdentity(rand.Reader)
	if err != nil {
		return nil, err
	}
	mk, err := keys.GenerateIdentitySigningKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	mls, err := org.NewMLSSignatureKey(org.MLSSchemeEd25519, mk.Public().Raw())
	if err != nil {
		return nil, err
	}
	req, err := org.NewEnrolmentRequest(ec, id, mls)
	if err != nil {
		return nil, err
	}
	enc, err := req.Marshal()
	if err != nil {
		return nil, err
	}
	tk, err := deliverytoken.GenerateTokenKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	ssk, err := keys.GenerateSealedSenderKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &deviceState{
		Tenant: ec.Tenant, IdentitySigning: id.Signing.Seed(), IdentityDH: id.DH.Bytes(), MLSSigning: mk.Seed(),
		Request: enc, RelayKey: relayKey.String(), TokenKey: tk.Bytes(), SealedID: 1, SealedSeed: ssk.Seed(),
		SignedID: 1, NextPrekeyID: 1,
	}, nil
}

// register uploads the device's prekeys and sealed-sender key, keeping
// their private halves in the store first. c.mu is held.
func (c *Client) register(ctx context.Context) error {
	if c.dev.Registered {
		return nil
	}
	now := c.now().Truncate(1e9).UTC()
	ssk, err := keys.NewSealedSenderPrivateKey(c.dev.SealedSeed)
	if err != nil {
		return err
	}
	spk, err := keys.GenerateSignedPrekeyKey(rand.Reader)
	if err != nil {
		return err
	}
	c.dev.SealedExpires = now.Add(sealedKeyLifetime * 1e9)
	c.dev.SignedCreated, c.dev.SealedCreated = now, now
	u := &bundle.Upload{
		SignedPrekey:    keys.SignSignedPrekey(c.dev.SignedID, now, spk.Public(), c.id.Signing),
		SealedSenderKey: keys.SignSealedSenderKey(c.dev.SealedID, now, c.dev.SealedExpires, ssk.Public(), c.id.Signing),
	}
	opks, kems, err := c.newOneTimePrekeys(u, true)
	if err != nil {
		return err
	}
	enc, err := u.Marshal()
	if err != nil {
		return err
	}
	if err := c.update(func(tx localstore.Tx) error {
		if err := tx.Put("", kindSPK, u32(c.dev.SignedID), spk.Bytes()); err != nil {
			return err
		}
		for _, k := range kems {
			if k.lastResort {
				c.dev.LastResortID = k.id
			}
		}
		return putPrekeys(tx, opks, kems)
	}); err != nil {
		return err
	}
	if err := c.rel.UploadPrekeys(ctx, enc); err != nil {
		return err
	}
	c.dev.Registered = true
	c.notePrekeysChecked() // the relay holds the full set just uploaded
	return c.update(func(localstore.Tx) error { return nil })
}

type newKEM struct {
	id         uint32
	k          *keys.KEMPrekeyPrivateKey
	lastResort bool
}

// newOneTimePrekeys adds cfg.OneTimePrekeys one-time X25519 and ML-KEM
// prekeys (and a last-resort ML-KEM prekey if lastResort) to u.
func (c *Client) newOneTimePrekeys(u *bundle.Upload, lastResort bool) (map[uint32]*keys.OneTimePrekeyPrivateKey, []newKEM, error) {
	t := c.now().Truncate(1e9).UTC()
	opks := map[uint32]*keys.OneTimePrekeyPrivateKey{}
	var kems []newKEM
	for range c.cfg.OneTimePrekeys {
		id := c.dev.NextPrekeyID
		c.dev.NextPrekeyID++
		k, err := keys.GenerateOneTimePrekey(rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		opks[id] = k
		u.OneTimePrekeys = append(u.OneTimePrekeys, keys.SignOneTimePrekey(id, k.Public(), c.id.Signing))
	}
	n := c.cfg.OneTimePrekeys
	if lastResort {
		n++
	}
	for i := range n {
		id := c.dev.NextPrekeyID
		c.dev.NextPrekeyID++
		k, err := keys.GenerateKEMPrekeyKey(rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		lr := lastResort && i == n-1
		kems = append(kems, newKEM{id, k, lr})
		u.KEMPrekeys = append(u.KEMPrekeys, keys.SignKEMPrekey(id, t, lr, k.Public(), c.id.Signing))
	}
	return opks, kems, nil
}

func putPrekeys(tx localstore.Tx, opks map[uint32]*keys.OneTimePrekeyPrivateKey, kems []newKEM) error {
	for id, k := range opks {
		if err := tx.Put("", kindOPK, u32(id), k.Bytes()); err != nil {
			return err
		}
	}
	for _, k := range kems {
		if err := putJSON(tx, kindKEM, u32(k.id), prekeyRecord{Seed: k.k.Seed(), LastResort: k.lastResort}); err != nil {
			return err
		}
	}
	return nil
}

// ApproveDevice approves, as this device, the enrolment request of a new
// device of the same user (the Request of its *ApprovalRequiredError),
// and returns the org.Approval encoding to give to that device's Enrol
// (docs/spec/org.md §Dual control). Compare the request's fingerprint
// with the one the new device shows before approving.
func (c *Client) ApproveDevice(request []byte) ([]byte, error) {
	if err := c.lock(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	req, err := org.ParseEnrolmentRequest(request)
	if err != nil {
		return nil, fmt.Errorf("client: enrolment request: %w", err)
	}
	if req.Tenant != c.dev.Tenant {
		return nil, fmt.Errorf("client: enrolment request of another tenant")
	}
	ap, err := org.ApproveByDevice(c.id.Signing, c.dev.Device, c.dev.User, req)
	if err != nil {
		return nil, err
	}
	return ap.Marshal()
}

// replenish uploads new one-time prekeys when the relay holds fewer than
// half of Config.OneTimePrekeys of either kind (docs/spec/bundle.md: the
// relay adds one-time prekeys to those it holds), and at once when the
// relay flags that it served the last-resort KEM prekey. c.mu is held.
func (c *Client) replenish(ctx context.Context) error {
	st, err := c.rel.PrekeyStatus(ctx)
	if err != nil {
		return err
	}
	low := c.cfg.OneTimePrekeys / 2
	if st.LastResortUses > 0 {
		c.lastResortUsed(ctx, st.LastResortUses) // lastresort.go
	} else if st.OneTimePrekeys > low && st.OneTimeKEM > low {
		return nil
	}
	u := &bundle.Upload{}
	opks, kems, err := c.newOneTimePrekeys(u, false)
	if err != nil {
		return err
	}
	enc, err := u.Marshal()
	if err != nil {
		return err
	}
	// The private halves are stored before the public ones are published.
	if err := c.update(func(tx localstore.Tx) error { return putPrekeys(tx, opks, kems) }); err != nil {
		return err
	}
	return c.rel.UploadPrekeys(ctx, enc)
}
