package client

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/moat-im/moat/client/localstore"
	"github.com/moat-im/moat/crypto/bundle"
	"github.com/moat-im/moat/crypto/keys"
)

// Medium-term key rotation (docs/spec/bundle.md §Rotation): every
// Config.KeyRotation the device replaces its signed prekey, its
// last-resort KEM prekey and its sealed-sender key at the relay. The
// replaced private keys are kept for Config.KeyGrace, so that initial
// messages and envelopes made with them and still in flight decrypt, and
// then erased (their store records deleted, which destroys their record
// keys: docs/spec/client-store.md). A sealed-sender key is kept for
// KeyGrace after its published expiry, since senders seal to the record
// they hold until it expires.

const (
	defaultKeyRotation = 7 * 24 * time.Hour
	// defaultKeyGrace covers the relay's default maximum envelope TTL
	// (mailbox.DefaultMaxTTL, 30 days).
	defaultKeyGrace = 30 * 24 * time.Hour
)

// Kinds of retired keys.
const (
	retiredSPK    = "spk"
	retiredKEM    = "kem"
	retiredSealed = "sealed"
)

// retiredKey is a replaced private key kept until DeleteAt. A signed
// prekey or KEM prekey stays in its own store record; a sealed-sender
// key's seed is held here, in the device record.
type retiredKey struct {
	Kind     string
	ID       uint32
	Seed     []byte `json:",omitempty"`
	DeleteAt time.Time
}

// rotateKeys erases the retired keys due at now, rotates the medium-term
// keys if the current ones are KeyRotation old, and (re)publishes keys a
// previous rotation could not upload. c.mu is held.
func (c *Client) rotateKeys(ctx context.Context, now time.Time) error {
	if err := c.eraseRetired(now); err != nil {
		return err
	}
	if !c.dev.RotationPending {
		if c.cfg.KeyRotation < 0 || now.Before(c.dev.SignedCreated.Add(c.cfg.KeyRotation)) {
			return nil
		}
		if err := c.newMediumTermKeys(now); err != nil {
			return err
		}
	}
	return c.publishMediumTermKeys(ctx)
}

// eraseRetired deletes the retired keys whose time has come. c.mu is
// held.
func (c *Client) eraseRetired(now time.Time) error {
	var keep, gone []retiredKey
	for _, r := range c.dev.Retired {
		if now.Before(r.DeleteAt) {
			keep = append(keep, r)
		} else {
			gone = append(gone, r)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	if err := c.update(func(tx localstore.Tx) error {
		for _, r := range gone {
			switch r.Kind {
			case retiredSPK:
				if err := tx.Delete("", kindSPK, u32(r.ID)); err != nil {
					return err
				}
			case retiredKEM:
				if err := tx.Delete("", kindKEM, u32(r.ID)); err != nil {
					return err
				}
			}
		}
		c.dev.Retired = keep // the replaced device record takes the sealed seeds with it
		return nil
	}); err != nil {
		return err
	}
	for _, r := range gone {
		if r.Kind == retiredSealed {
			c.ring.Remove(r.ID)
		}
	}
	c.log.Info("retired keys erased", "count", len(gone))
	return nil
}

// newMediumTermKeys generates the next signed prekey, last-resort KEM
// prekey and sealed-sender key, stores them, and retires the current
// ones, in one transaction. c.mu is held.
func (c *Client) newMediumTermKeys(now time.Time) error {
	now = now.Truncate(time.Second).UTC()
	spk, err := keys.GenerateSignedPrekeyKey(rand.Reader)
	if err != nil {
		return err
	}
	kem, err := keys.GenerateKEMPrekeyKey(rand.Reader)
	if err != nil {
		return err
	}
	ssk, err := keys.GenerateSealedSenderKey(rand.Reader)
	if err != nil {
		return err
	}
	grace := now.Add(c.cfg.KeyGrace)
	var newSSK uint32
	if err := c.update(func(tx localstore.Tx) error {
		type kindID struct {
			kind string
			id   uint32
		}
		retired := map[kindID]bool{}
		for _, r := range c.dev.Retired {
			retired[kindID{r.Kind, r.ID}] = true
		}
		c.dev.Retired = append(c.dev.Retired, retiredKey{Kind: retiredSPK, ID: c.dev.SignedID, DeleteAt: grace})
		// Every last-resort KEM prekey held so far is retired.
		if err := tx.List("", kindKEM, func(id, v []byte) error {
			var pr prekeyRecord
			if err := json.Unmarshal(v, &pr); err != nil || !pr.LastResort || len(id) != 4 {
				return err
			}
			kid := binary.BigEndian.Uint32(id)
			if !retired[kindID{retiredKEM, kid}] {
				c.dev.Retired = append(c.dev.Retired, retiredKey{Kind: retiredKEM, ID: kid, DeleteAt: grace})
			}
			return nil
		}); err != nil {
			return err
		}
		c.dev.Retired = append(c.dev.Retired, retiredKey{Kind: retiredSealed, ID: c.dev.SealedID,
			Seed: c.dev.SealedSeed, DeleteAt: c.dev.SealedExpires.Add(c.cfg.KeyGrace)})

		c.dev.SignedID++
		c.dev.SignedCreated = now
		if err := tx.Put("", kindSPK, u32(c.dev.SignedID), spk.Bytes()); err != nil {
			return err
		}
		c.dev.LastResortID = c.dev.NextPrekeyID
		c.dev.NextPrekeyID++
		if err := putJSON(tx, kindKEM, u32(c.dev.LastResortID), prekeyRecord{Seed: kem.Seed(), LastResort: true}); err != nil {
			return err
		}
		c.dev.SealedID++
		newSSK = c.dev.SealedID
		c.dev.SealedSeed, c.dev.SealedCreated, c.dev.SealedExpires = ssk.Seed(), now, now.Add(sealedKeyLifetime*time.Second)
		c.dev.RotationPending = true
		return nil
	}); err != nil {
		return err
	}
	c.ring.Add(newSSK, ssk)
	return nil
}

// publishMediumTermKeys uploads the current signed prekey, last-resort
// KEM prekey and sealed-sender key; the relay replaces its copies.
// c.mu is held.
func (c *Client) publishMediumTermKeys(ctx context.Context) error {
	var spk *keys.SignedPrekeyPrivateKey
	var kem *keys.KEMPrekeyPrivateKey
	if err := c.st.View(func(tx localstore.Tx) error {
		b, err := tx.Get("", kindSPK, u32(c.dev.SignedID))
		if err != nil {
			return err
		}
		if spk, err = keys.NewSignedPrekeyPrivateKey(b); err != nil {
			return err
		}
		var pr prekeyRecord
		found, err := getJSON(tx, kindKEM, u32(c.dev.LastResortID), &pr)
		if err != nil {
			return err
		}
		if !found || !pr.LastResort {
			return fmt.Errorf("client: the last-resort KEM prekey %d is missing", c.dev.LastResortID)
		}
		kem, err = keys.NewKEMPrekeyPrivateKey(pr.Seed)
		return err
	}); err != nil {
		return err
	}
	ssk, err := keys.NewSealedSenderPrivateKey(c.dev.SealedSeed)
	if err != nil {
		return err
	}
	created := c.dev.SignedCreated
	u := &bundle.Upload{
		SignedPrekey:    keys.SignSignedPrekey(c.dev.SignedID, created, spk.Public(), c.id.Signing),
		KEMPrekeys:      []*keys.KEMPrekey{keys.SignKEMPrekey(c.dev.LastResortID, created, true, kem.Public(), c.id.Signing)},
		SealedSenderKey: keys.SignSealedSenderKey(c.dev.SealedID, c.dev.SealedCreated, c.dev.SealedExpires, ssk.Public(), c.id.Signing),
	}
	enc, err := u.Marshal()
	if err != nil {
		return err
	}
	if err := c.rel.UploadPrekeys(ctx, enc); err != nil {
		return err
	}
	c.log.Info("medium-term keys rotated", "signed_prekey", c.dev.SignedID, "sealed_sender_key", c.dev.SealedID)
	return c.update(func(localstore.Tx) error {
		c.dev.RotationPending = false
		return nil
	})
}
