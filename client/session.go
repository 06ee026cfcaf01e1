package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/moat-im/moat/client/localstore"
	"github.com/moat-im/moat/crypto/bundle"
	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/pqxdh"
	"github.com/moat-im/moat/crypto/ratchet"
	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/server/relay"
)

// envelopeTTL is the relay time-to-live of the envelopes this client
// sends (docs/spec/envelope.md §Header): 30 days.
const envelopeTTL = 30 * 24 * 3600

// peerSession is a sessionRecord with its sessions restored.
type peerSession struct {
	rec       sessionRecord
	cur, prev *ratchet.Session
}

func (c *Client) ratchetConfig() ratchet.Config { return ratchet.Config{Now: c.cfg.Now} }

// loadSession returns the sessions with peer device mb, or nil.
func (c *Client) loadSession(tx localstore.Tx, mb sealed.MailboxID) (*peerSession, error) {
	var rec sessionRecord
	found, err := getJSON(tx, kindSession, mb[:], &rec)
	if err != nil || !found {
		return nil, err
	}
	ps := &peerSession{rec: rec}
	if len(rec.Current) > 0 {
		if ps.cur, err = ratchet.Unmarshal(c.ratchetConfig(), rec.Current, rec.CurGen); err != nil {
			return nil, fmt.Errorf("client: stored session: %w", err)
		}
	}
	if len(rec.Previous) > 0 {
		if ps.prev, err = ratchet.Unmarshal(c.ratchetConfig(), rec.Previous, rec.PrevGen); err != nil {
			return nil, fmt.Errorf("client: stored session: %w", err)
		}
	}
	return ps, nil
}

// saveSession writes ps; the states it replaces are destroyed with their
// record keys.
func saveSession(tx localstore.Tx, mb sealed.MailboxID, ps *peerSession) error {
	ps.rec.Current, ps.rec.CurGen, ps.rec.Previous, ps.rec.PrevGen = nil, 0, nil, 0
	if ps.cur != nil {
		ps.rec.Current, ps.rec.CurGen = ps.cur.Marshal(), ps.cur.Generation()
	}
	if ps.prev != nil {
		ps.rec.Previous, ps.rec.PrevGen = ps.prev.Marshal(), ps.prev.Generation()
	}
	if err := tx.Delete("", kindSession, mb[:]); err != nil && !errors.Is(err, localstore.ErrNotFound) {
		return err
	}
	return putJSON(tx, kindSession, mb[:], &ps.rec)
}

// outgoing is one envelope prepared for one device.
type outgoing struct {
	mb   sealed.MailboxID
	ps   *peerSession
	env  []byte
	auth []byte
	// group names the outbox batch (outbox_batch.go).
	group []byte
}

// bundleFor fetches and opens the prekey bundle of device cert (whose
// identity the caller verified in the directory).
func (c *Client) bundleFor(ctx context.Context, cert *org.DeviceCertificate) (*pqxdh.Bundle, []byte, error) {
	mb := sealed.NewMailboxID(cert.Tenant, cert.Device)
	resp, err := c.rel.FetchBundle(ctx, mb)
	if err != nil {
		return nil, nil, fmt.Errorf("client: prekey bundle of device %s: %w", cert.Device, err)
	}
	bun, _, err := bundle.Open(resp, cert.Identity, mb, c.now())
	if err != nil {
		c.noteSubstitution(cert.User, cert.Device, fingerprint(cert))
		return nil, nil, &UnverifiedContactError{User: cert.User, Device: cert.Device, Reason: "its prekey bundle does not verify under its directory identity", Err: err}
	}
	r, err := bundle.ParseResponse(resp)
	if err != nil {
		return nil, nil, err
	}
	ssk, err := sealed.MarshalKeyRecord(r.SealedSenderKey)
	if err != nil {
		return nil, nil, err
	}
	return bun, ssk, nil
}

// prepare encrypts plaintext for device cert with its current session,
// starting one with PQXDH if there is none, and seals it. Nothing is
// stored: the caller commits the session with the envelope (outbox).
func (c *Client) prepare(ctx context.Context, tx localstore.Tx, cert *org.DeviceCertificate, plaintext []byte) (*outgoing, error) {
	mb := sealed.NewMailboxID(cert.Tenant, cert.Device)
	ps, err := c.loadSession(tx, mb)
	if err != nil {
		return nil, err
	}
	if ps != nil && (ps.rec.User != cert.User || ps.cur != nil && !ps.cur.Peer().Equal(cert.Identity)) {
		// The device's keys or user changed in the directory: start over.
		ps = nil
	}
	var rec *sealed.Recipient
	if ps != nil {
		k, err := sealed.ParseKeyRecord(ps.rec.Sealed)
		if err == nil {
			rec, err = sealed.NewRecipient(mb, cert.Identity.Signing, k, c.now())
		}
		if err != nil {
			rec = nil // expired or unusable: fetch a new bundle below
		}
	}
	if ps == nil || ps.cur == nil || rec == nil {
		bun, ssk, err := c.bundleFor(ctx, cert)
		if err != nil {
			return nil, err
		}
		k, err := sealed.ParseKeyRecord(ssk)
		if err != nil {
			return nil, err
		}
		if rec, err = sealed.NewRecipient(mb, cert.Identity.Signing, k, c.now()); err != nil {
			return nil, err
		}
		if ps == nil || ps.cur == nil {
			im, res, err := pqxdh.Initiate(rand.Reader, c.id, bun)
			if err != nil {
				return nil, err
			}
			pre, err := im.Marshal()
			if err != nil {
				return nil, err
			}
			s, err := ratchet.NewInitiator(c.ratchetConfig(), ratchet.Params{SharedKey: res.SharedKey, AD: res.AD,
				Self: c.id.Public(), Peer: cert.Identity}, bun.SignedPrekey.Key, bun.KEMPrekey.Key, pre)
			if err != nil {
				return nil, err
			}
			if ps == nil {
				ps = &peerSession{rec: sessionRecord{User: cert.User, Device: cert.Device}}
			}
			ps.cur = s
		}
		ps.rec.Sealed = ssk
	}
	ct, err := ps.cur.Encrypt(plaintext)
	if err != nil {
		return nil, err
	}
	env, err := rec.Seal(&sealed.Message{MessageID: sealed.NewMessageID(), TTL: envelopeTTL,
		Sender:    sealed.Sender{Tenant: c.dev.Tenant, User: c.dev.User, Device: c.dev.Device, Serial: c.dev.Serial, Identity: c.id.Public()},
		Timestamp: c.now(), ContentType: sealed.ContentRatchetMessage, Content: ct})
	if err != nil {
		return nil, err
	}
	return &outgoing{mb: mb, ps: ps, env: env}, nil
}

// authorization returns the SendAuthorization for device o.mb: its MAC
// token if it gave us one, else an anonymous token from the pool
// (docs/spec/envelope.md §Delivery tokens).
func (c *Client) authorization(tx localstore.Tx, o *outgoing) ([]byte, error) {
	if t := o.ps.rec.Token; len(t) == 64 {
		a := &deliverytoken.SendAuthorization{Kind: deliverytoken.KindMAC, MAC: deliverytoken.Token(t[32:])}
		return a.Marshal()
	}
	var tok []byte
	var id []byte
	err := tx.List("", kindAnon, func(k, v []byte) error {
		if tok == nil {
			tok, id = append([]byte(nil), v...), append([]byte(nil), k...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if tok == nil {
		return nil, ErrNoAnonymousToken
	}
	if err := tx.Delete("", kindAnon, id); err != nil {
		return nil, err
	}
	at, err := deliverytoken.ParseAnonymousToken(tok)
	if err != nil {
		return nil, err
	}
	a := &deliverytoken.SendAuthorization{Kind: deliverytoken.KindAnonymous, Anonymous: at}
	return a.Marshal()
}

// decrypted is an incoming message after the ratchet.
type decrypted struct {
	opened    *sealed.Opened
	mb        sealed.MailboxID
	ps        *peerSession
	plaintext []byte
	// consumed are the one-time prekeys a new session used.
	consumedOPK *uint32
	consumedKEM *uint32
	// lastResort: the new session used the last-resort KEM prekey, so the
	// relay has run out of one-time prekeys (replenishIfDue).
	lastResort bool
}

// decrypt opens the ratchet message of o: with a stored session of the
// sender's device if one decrypts it, else as the first message of a new
// session (PQXDH responder), whose initiator's identity must be the
// sender device's in a verified directory lookup. Nothing is stored.
func (c *Client) decrypt(ctx context.Context, tx localstore.Tx, o *sealed.Opened) (*decrypted, error) {
	s := o.Sender
	if s.Tenant != c.dev.Tenant {
		return nil, &UnverifiedContactError{User: s.User, Device: s.Device, Reason: "sender of another tenant"}
	}
	if o.ContentType != sealed.ContentRatchetMessage {
		return nil, fmt.Errorf("client: unknown envelope content type")
	}
	mb := sealed.NewMailboxID(s.Tenant, s.Device)
	ps, err := c.loadSession(tx, mb)
	if err != nil {
		return nil, err
	}
	if ps != nil && ps.rec.User == UserID(s.User) {
		// T45: a device revoked since the session began is refused.
		if err := c.checkSender(ctx, tx, UserID(s.User), DeviceID(s.Device), o.Sender.Identity); err != nil {
			return nil, err
		}
		for i, sess := range []*ratchet.Session{ps.cur, ps.prev} {
			if sess == nil || o.CheckPeer(sess.Peer()) != nil {
				continue
			}
			got, err := sess.Decrypt(o.Content)
			if err != nil {
				continue
			}
			if i == 1 {
				// The peer uses the other session: make it current.
				ps.cur, ps.prev = ps.prev, ps.cur
			}
			return &decrypted{opened: o, mb: mb, ps: ps, plaintext: got.Plaintext}, nil
		}
	}
	// A new session.
	pre, err := ratchet.PeekPreamble(o.Content)
	if err != nil || len(pre) == 0 {
		return nil, fmt.Errorf("client: message of device %x matches no session", s.Device[:])
	}
	m, err := pqxdh.ParseInitialMessage(pre)
	if err != nil {
		return nil, err
	}
	if err := o.CheckPeer(m.Identity); err != nil {
		return nil, err
	}
	res, err := c.lookup(ctx, UserID(s.User))
	if err != nil {
		return nil, err
	}
	if _, err := res.CheckIdentity(org.DeviceID(s.Device), m.Identity); err != nil {
		return nil, &UnverifiedContactError{User: s.User, Device: s.Device, Reason: "the sender's key is not in the directory", Err: err}
	}
	if err := c.saveContact(ctx, tx, UserID(s.User), res); err != nil {
		return nil, storeError{err}
	}
	rk, err := c.responderKeys(tx, m)
	if err != nil {
		return nil, err
	}
	r, err := pqxdh.Respond(c.id, m, rk)
	if err != nil {
		return nil, err
	}
	sess, err := ratchet.NewResponder(c.ratchetConfig(), ratchet.Params{SharedKey: r.SharedKey, AD: r.AD,
		Self: c.id.Public(), Peer: m.Identity}, rk.SignedPrekey, rk.KEMPrekey)
	if err != nil {
		return nil, err
	}
	got, err := sess.Decrypt(o.Content)
	if err != nil {
		return nil, err
	}
	if ps == nil || ps.rec.User != UserID(s.User) {
		ps = &peerSession{rec: sessionRecord{User: s.User, Device: s.Device}}
	}
	if ps.cur != nil && ps.cur.Peer().Equal(m.Identity) {
		ps.prev = ps.cur
	} else {
		ps.prev = nil
	}
	ps.cur = sess
	d := &decrypted{opened: o, mb: mb, ps: ps, plaintext: got.Plaintext, consumedOPK: m.OneTimePrekeyID}
	if !m.LastResort {
		id := m.KEMPrekeyID
		d.consumedKEM = &id
	}
	d.lastResort = m.LastResort
	return d, nil
}

// responderKeys reads the private prekeys m names from the store.
func (c *Client) responderKeys(tx localstore.Tx, m *pqxdh.InitialMessage) (pqxdh.ResponderKeys, error) {
	var k pqxdh.ResponderKeys
	b, err := tx.Get("", kindSPK, u32(m.SignedPrekeyID))
	if err != nil {
		return k, fmt.Errorf("client: initial message names an unknown signed prekey: %w", err)
	}
	if k.SignedPrekey, err = keys.NewSignedPrekeyPrivateKey(b); err != nil {
		return k, err
	}
	if m.OneTimePrekeyID != nil {
		b, err := tx.Get("", kindOPK, u32(*m.OneTimePrekeyID))
		if err != nil {
			return k, fmt.Errorf("client: initial message names an unknown or used one-time prekey: %w", err)
		}
		if k.OneTimePrekey, err = keys.NewOneTimePrekeyPrivateKey(b); err != nil {
			return k, err
		}
	}
	var pr prekeyRecord
	found, err := getJSON(tx, kindKEM, u32(m.KEMPrekeyID), &pr)
	if err != nil {
		return k, err
	}
	if !found || pr.LastResort != m.LastResort {
		return k, errors.New("client: initial message names an unknown or used KEM prekey")
	}
	if k.KEMPrekey, err = keys.NewKEMPrekeyPrivateKey(pr.Seed); err != nil {
		return k, err
	}
	return k, nil
}

// commitDecrypted stores the session state a decryption produced and
// destroys the one-time prekeys it consumed, in the transaction that also
// stores what the message did.
func commitDecrypted(tx localstore.Tx, d *decrypted) error {
	if d.consumedOPK != nil {
		if err := tx.Delete("", kindOPK, u32(*d.consumedOPK)); err != nil {
			return err
		}
	}
	if d.consumedKEM != nil {
		if err := tx.Delete("", kindKEM, u32(*d.consumedKEM)); err != nil {
			return err
		}
	}
	return saveSession(tx, d.mb, d.ps)
}

// anonBatch is how many anonymous tokens the device obtains at a time.
const anonBatch = 10

// ensureAnonTokens makes the pool of anonymous delivery tokens hold at
// least need tokens, obtaining more from the relay's issuance endpoint
// under the issuer key verified in the directory (docs/spec/api.md
// §Anonymous-token issuance). c.mu is held.
func (c *Client) ensureAnonTokens(ctx context.Context, need int) error {
	if need == 0 {
		return nil
	}
	have := 0
	if err := c.st.View(func(tx localstore.Tx) error {
		return tx.List("", kindAnon, func(_, _ []byte) error { have++; return nil })
	}); err != nil {
		return err
	}
	if have >= need {
		return nil
	}
	pub, err := c.issuerKey(ctx)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoAnonymousToken, err)
	}
	toks, ierr := c.rel.IssueTokens(ctx, pub, max(need-have, anonBatch))
	if err := c.st.Update(func(tx localstore.Tx) error {
		for _, t := range toks {
			var id [16]byte
			rand.Read(id[:])
			if err := tx.Put("", kindAnon, id[:], t.Marshal()); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if ierr != nil && have+len(toks) < need {
		return fmt.Errorf("%w: %v", ErrNoAnonymousToken, ierr)
	}
	return nil
}

// issuerKey returns the tenant's anonymous-token issuer key from the
// verified directory (relay.IssuerPolicyID), never the relay's word.
func (c *Client) issuerKey(ctx context.Context) (*deliverytoken.IssuerPublicKey, error) {
	name := org.OrgLabelPolicyPrefix + relay.IssuerPolicyID
	resp, err := c.dir.LookupOrgFrom(ctx, name, c.kt)
	if err != nil {
		return nil, err
	}
	res, err := c.kt.VerifyOrgLookup(name, resp, c.now())
	if err != nil {
		return nil, err
	}
	pb, _ := res.Statement.(*org.PolicyBundle)
	return relay.IssuerKeyFromPolicy(pb)
}

// needAnon counts the devices of certs that have given this device no
// MAC delivery token yet.
func (c *Client) needAnon(certs []*org.DeviceCertificate) (int, error) {
	n := 0
	err := c.st.View(func(tx localstore.Tx) error {
		for _, d := range certs {
			mb := sealed.NewMailboxID(d.Tenant, d.Device)
			var rec sessionRecord
			found, err := getJSON(tx, kindSession, mb[:], &rec)
			if err != nil {
				return err
			}
			if !found || len(rec.Token) != 64 {
				n++
			}
		}
		return nil
	})
	return n, err
}

// saveContact stores the verified devices of user from res, keeping the
// display name it had.
func (c *Client) saveContact(ctx context.Context, tx localstore.Tx, user UserID, res *kt.LookupResult) error {
	var rec contactRecord
	found, err := getJSON(tx, kindContact, user[:], &rec)
	if err != nil {
		return err
	}
	if !found {
		rec.DisplayName, rec.Department = c.orgInfo(ctx, user)
	}
	if err := c.noteDevices(tx, user, contactDevices(res), res.Epoch); err != nil {
		return err
	}
	rec.User, rec.Epoch, rec.Devices, rec.Verified = user, res.Epoch, nil, c.now()
	for _, d := range res.Devices {
		rec.Devices = append(rec.Devices, ContactDevice{Device: d.Device, Fingerprint: fingerprint(d)})
	}
	return putJSON(tx, kindContact, user[:], &rec)
}

// checkSender checks that device of user, with identity id, is among the
// user's usable devices in a verified lookup at most Config.RecheckAfter
// old, looking the user up again if it is older (adversarial case T45:
// a revoked device's later messages are refused).
func (c *Client) checkSender(ctx context.Context, tx localstore.Tx, user UserID, device DeviceID, id keys.DeviceIdentity) error {
	var rec contactRecord
	found, err := getJSON(tx, kindContact, user[:], &rec)
	if err != nil {
		return storeError{err}
	}
	if !found || c.now().Sub(rec.Verified) >= c.cfg.RecheckAfter || c.now().Before(rec.Verified) {
		res, err := c.lookup(ctx, user)
		if err != nil {
			return err
		}
		if err := c.saveContact(ctx, tx, user, res); err != nil {
			return storeError{err}
		}
		if _, err := getJSON(tx, kindContact, user[:], &rec); err != nil {
			return storeError{err}
		}
	}
	fp := kt.IdentityFingerprint(id)
	want := hex.EncodeToString(fp[:])
	for _, d := range rec.Devices {
		if d.Device == device && d.Fingerprint == want {
			return nil
		}
	}
	return &UnverifiedContactError{User: user, Device: device, Reason: "the device is not among the user's devices in the directory (revoked?)"}
}
