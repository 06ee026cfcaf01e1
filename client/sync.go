package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/moat-im/moat/client/internal/content"
	"github.com/moat-im/moat/client/localstore"
	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/server/relay"
)

// pageLimit is how many messages Sync fetches at a time.
const pageLimit = 100

// maxUnacked bounds the processed messages whose Ack is unconfirmed that
// the device remembers (deviceState.Unacked).
const maxUnacked = 1000

// Sync catches up: it retries the outbox, fetches every message waiting
// in the device's mailbox, processes and acknowledges them, and destroys
// expired disappearing messages. It returns once the mailbox is empty.
func (c *Client) Sync(ctx context.Context) error {
	if err := c.lock(); err != nil {
		return err
	}
	defer c.mu.Unlock()
	if err := c.register(ctx); err != nil {
		return c.relayErr(ctx, err)
	}
	if err := c.rotateKeys(ctx, c.now()); err != nil {
		c.log.Warn("medium-term keys not rotated", "err", err)
	}
	if err := c.flushOutbox(ctx); err != nil {
		c.log.Warn("outbox not flushed", "err", err)
	}
	if err := c.retryParked(ctx); err != nil {
		return err
	}
	// The first page starts after the last confirmed ack, not the
	// cursor, if messages were processed since whose Ack the relay never
	// confirmed: a relay restored from a backup must serve them again
	// under the same ids (process checks), else the device would skip
	// what it now holds at those sequence numbers (T40).
	after := c.dev.Cursor
	if len(c.dev.Unacked) > 0 {
		after = min(after, c.dev.Unacked[0].Seq-1)
	}
	for {
		p, err := c.rel.Fetch(ctx, after, pageLimit)
		if err != nil {
			return c.relayErr(ctx, err)
		}
		if err := c.process(ctx, p.Messages); err != nil {
			return err
		}
		if len(p.Messages) < pageLimit {
			break
		}
		after = max(c.dev.Cursor, p.Messages[len(p.Messages)-1].Seq)
	}
	// After the messages: the initial messages among them may have used
	// one-time prekeys or the last-resort key (prekeycheck.go).
	if err := c.replenishIfDue(ctx); err != nil {
		c.log.Warn("prekeys not replenished", "err", err)
	}
	if err := c.expire(); err != nil {
		return err
	}
	if err := c.deleteQueuedBlobs(ctx); err != nil {
		c.log.Warn("attachments not deleted at the relay; retried later", "err", err)
	}
	return nil
}

// relayErr says that a relay refusing the device may mean a revocation;
// the relay's word alone is no reason to wipe (only a CA-signed record
// is: Wipe, checkSelf, and the wipe instruction the device then fetches
// from the directory, wipe.go). c.mu is held.
func (c *Client) relayErr(ctx context.Context, err error) error {
	if errors.Is(err, ErrRollback) {
		return c.noteRollback(err) // rollback.go
	}
	if err = c.refused(ctx, err); errors.Is(err, ErrRevoked) {
		return err
	}
	var ae *relay.APIError
	if errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden) {
		return fmt.Errorf("client: the relay refuses this device (revoked?): %w", err)
	}
	return err
}

// Run keeps the device's push channel open until ctx ends or the client
// is closed: it catches up after every (re)connection from the last
// processed sequence number and monitors this user's label (EventAlert),
// processes pushed messages as they arrive, and reconnects with backoff
// after an error. It returns ErrRevoked if
// the device learns it was revoked, and ErrRollback if the relay rolled
// its mailbox back.
func (c *Client) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		err := c.runOnce(ctx)
		if errors.Is(err, ErrRevoked) || errors.Is(err, ErrClosed) || errors.Is(err, ErrRollback) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.log.Info("push channel closed; reconnecting", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return ErrClosed
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func (c *Client) runOnce(ctx context.Context) error {
	if err := c.connectChecks(ctx); err != nil {
		return err
	}
	if err := c.Sync(ctx); err != nil {
		return err
	}
	// Each (re)connection also monitors this user's label (T29).
	if err := c.lock(); err != nil {
		return err
	}
	alerts, err := c.monitor(ctx)
	c.mu.Unlock()
	if errors.Is(err, ErrRevoked) {
		return err
	}
	if err != nil {
		c.log.Warn("monitoring this user's label failed", "err", err)
	}
	for i := range alerts {
		c.emit(Event{Kind: EventAlert, Alert: &alerts[i]})
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-c.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := c.lock(); err != nil {
		return err
	}
	cursor := c.dev.Cursor
	c.mu.Unlock()
	push, err := c.rel.Push(ctx, cursor)
	if err != nil {
		if lerr := c.lock(); lerr != nil {
			return lerr
		}
		defer c.mu.Unlock()
		return c.relayErr(ctx, err)
	}
	defer push.Close()
	first := true
	for {
		p, err := push.Next(ctx)
		if err != nil {
			return c.noteRollback(err)
		}
		if err := c.lock(); err != nil {
			return err
		}
		err = c.process(ctx, p.Messages)
		c.mu.Unlock()
		if err != nil {
			return err
		}
		if first {
			first = false
			c.emit(Event{Kind: EventConnected})
		}
	}
}

// process handles fetched or pushed messages in order: each is opened,
// decrypted and applied, and its session state, consumed prekeys, history
// change and the new cursor are committed in one transaction; only then is
// it acknowledged at the relay. A message that cannot be opened, verified
// or decrypted is refused with an EventError, leaves every session
// unchanged, and is acknowledged so that it does not block the mailbox.
// c.mu is held.
func (c *Client) process(ctx context.Context, msgs []relay.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if err := c.checkReplayed(msgs); err != nil {
		return c.noteRollback(err)
	}
	receipts := map[UserID][]MessageID{}
	for _, m := range msgs {
		if m.Seq <= c.dev.Cursor {
			continue
		}
		var events []Event
		var refused error
		err := c.update(func(tx localstore.Tx) error {
			events, refused = nil, nil
			evs, rcpt, err := c.receive(ctx, tx, m.Envelope)
			if err != nil {
				if errors.Is(err, ErrRevoked) {
					return err
				}
				var se storeError
				if errors.As(err, &se) {
					return se.err
				}
				refused = err
				var ue *UnverifiedContactError
				if errors.As(err, &ue) {
					// Kept and tried again at every Sync: the sender may
					// not be published yet, or the directory unreachable.
					if err := putJSON(tx, kindParked, u64(m.Seq), &parkedRecord{Envelope: m.Envelope, Since: c.now()}); err != nil {
						return err
					}
				}
			}
			events = evs
			if rcpt != nil {
				receipts[rcpt.conv] = append(receipts[rcpt.conv], rcpt.id)
			}
			c.dev.Cursor = m.Seq
			c.noteUnacked(m)
			return nil
		})
		if errors.Is(err, ErrRevoked) {
			return err
		}
		if err != nil {
			return fmt.Errorf("client: storing a received message: %w", err)
		}
		if refused != nil {
			c.log.Warn("incoming message refused", "err", refused)
			c.emit(Event{Kind: EventError, Err: refused})
		}
		for _, e := range events {
			c.emit(e)
		}
	}
	if err := c.rel.Ack(ctx, c.dev.Cursor); err != nil {
		c.log.Warn("ack failed; the messages come again and are recognised", "err", err)
	} else if err := c.update(func(localstore.Tx) error {
		c.dev.Unacked = nil
		return nil
	}); err != nil {
		// The confirmed ack (saved with the device state) is what a
		// restored relay's acknowledgement floor is checked against
		// (T40); it is saved again with the next change.
		c.log.Warn("confirmed ack not saved", "err", err)
	}
	c.sendReceipts(ctx, receipts)
	return nil
}

// noteUnacked remembers a processed message until its Ack is confirmed.
// c.mu is held, in a transaction.
func (c *Client) noteUnacked(m relay.Message) {
	var id sealed.MessageID
	if h, err := sealed.ParseHeader(m.Envelope); err == nil {
		id = h.MessageID
	}
	if len(c.dev.Unacked) == maxUnacked {
		c.dev.Unacked = c.dev.Unacked[1:]
	}
	c.dev.Unacked = append(c.dev.Unacked, unackedMessage{Seq: m.Seq, ID: id})
}

// checkReplayed compares the messages served again at sequence numbers
// the device processed without a confirmed Ack with those it processed:
// another message id there means the relay lost them and reused their
// sequence numbers (T40), which is ErrRollback, before anything of msgs
// is processed. c.mu is held.
func (c *Client) checkReplayed(msgs []relay.Message) error {
	un := c.dev.Unacked
	for _, m := range msgs {
		if m.Seq > c.dev.Cursor {
			break
		}
		for len(un) > 0 && un[0].Seq < m.Seq {
			un = un[1:]
		}
		if len(un) == 0 || un[0].Seq != m.Seq || un[0].ID == (sealed.MessageID{}) {
			continue
		}
		h, err := sealed.ParseHeader(m.Envelope)
		if err != nil || h.MessageID != un[0].ID {
			return fmt.Errorf("%w: the relay serves another message at sequence number %d, which this device processed", ErrRollback, m.Seq)
		}
	}
	return nil
}

func (c *Client) sendReceipts(ctx context.Context, receipts map[UserID][]MessageID) {
	for conv, ids := range receipts {
		for len(ids) > 0 {
			n := min(len(ids), content.MaxTargets)
			if _, err := c.send(ctx, conv, &Message{Kind: KindDelivered, Targets: ids[:n]}); err != nil {
				c.log.Warn("delivered receipt not sent", "err", err)
			}
			ids = ids[n:]
		}
	}
}

// parkTTL is how long a message from a sender that cannot be verified yet
// is kept and tried again.
const parkTTL = 7 * 24 * time.Hour

type parkedRecord struct {
	Envelope []byte
	Since    time.Time
}

var errStillUnverified = errors.New("client: sender still unverified")

// retryParked tries the parked messages again (docs/spec/content.md
// §Processing): one whose sender now verifies is processed; one still
// unverified after parkTTL is dropped with an EventError. c.mu is held.
func (c *Client) retryParked(ctx context.Context) error {
	items, err := listJSON[parkedRecord](c.st, kindParked)
	if err != nil {
		return err
	}
	receipts := map[UserID][]MessageID{}
	for _, it := range items {
		var events []Event
		var refused error
		err := c.update(func(tx localstore.Tx) error {
			evs, rcpt, err := c.receive(ctx, tx, it.rec.Envelope)
			var se storeError
			switch {
			case errors.Is(err, ErrRevoked):
				return err
			case errors.As(err, &se):
				return se.err
			case err != nil:
				var ue *UnverifiedContactError
				if errors.As(err, &ue) && c.now().Sub(it.rec.Since) < parkTTL {
					return errStillUnverified
				}
				refused = err
			}
			events = evs
			if rcpt != nil {
				receipts[rcpt.conv] = append(receipts[rcpt.conv], rcpt.id)
			}
			return tx.Delete("", kindParked, it.id)
		})
		if errors.Is(err, errStillUnverified) {
			continue
		}
		if err != nil {
			return err
		}
		if refused != nil {
			c.emit(Event{Kind: EventError, Err: fmt.Errorf("client: message dropped after %v: %w", parkTTL, refused)})
		}
		for _, e := range events {
			c.emit(e)
		}
	}
	c.sendReceipts(ctx, receipts)
	return nil
}

// storeError marks an error of the store, which aborts processing rather
// than refusing the message.
type storeError struct{ err error }

func (e storeError) Error() string { return e.err.Error() }

type receipt struct {
	conv UserID
	id   MessageID
}

// receive opens, decrypts and applies one envelope in tx
// (docs/spec/content.md §Processing).
func (c *Client) receive(ctx context.Context, tx localstore.Tx, env []byte) ([]Event, *receipt, error) {
	o, err := c.ring.Open(env)
	if err != nil {
		return nil, nil, fmt.Errorf("client: envelope does not open: %w", err)
	}
	if _, err := tx.Get("", kindSeen, o.MessageID[:]); err == nil {
		return nil, nil, nil // processed before: a redelivery
	} else if !errors.Is(err, localstore.ErrNotFound) {
		return nil, nil, storeError{err}
	}
	d, err := c.decrypt(ctx, tx, o)
	if err != nil {
		return nil, nil, err
	}
	ct, err := content.Parse(d.plaintext)
	sender := UserID(o.Sender.User)
	if err == nil {
		err = c.checkConversation(ct, sender, d)
	}
	// The ratchet authenticated the message: its session state is kept
	// even if the content is refused (the keys it used are spent).
	if cerr := commitDecrypted(tx, d); cerr != nil {
		return nil, nil, storeError{cerr}
	}
	if d.lastResort {
		c.prekeysDue = true
	}
	if perr := putJSON(tx, kindSeen, o.MessageID[:], &seenRecord{At: c.now()}); perr != nil {
		return nil, nil, storeError{perr}
	}
	if err != nil {
		return nil, nil, err
	}
	conv := sender
	if sender == c.dev.User {
		conv = UserID(ct.Conversation)
	}
	events, err := c.apply(tx, conv, sender, DeviceID(o.Sender.Device), ct)
	if err != nil {
		return nil, nil, storeError{err}
	}
	var rc *receipt
	if sender != c.dev.User && len(events) > 0 && events[0].Kind == EventMessage {
		rc = &receipt{conv, MessageID(ct.MessageID)}
	}
	return events, rc, nil
}

// checkConversation checks the content's conversation and delivery token
// against its sender (docs/spec/content.md §Sync transcripts, §Delivery
// tokens), and takes the sender device's token.
func (c *Client) checkConversation(ct *content.Content, sender UserID, d *decrypted) error {
	if sender == c.dev.User {
		if ct.Conversation == (content.ID{}) || UserID(ct.Conversation) == c.dev.User {
			return errors.New("client: a message of this user's own device without its conversation")
		}
	} else if ct.Conversation != (content.ID{}) {
		return errors.New("client: a contact's message names a conversation")
	}
	if len(ct.Token) == content.TokenSize {
		if sealed.MailboxID(ct.Token[:32]) != d.mb {
			return errors.New("client: delivery token of another mailbox")
		}
		d.ps.rec.Token = append([]byte(nil), ct.Token...)
	}
	return nil
}
