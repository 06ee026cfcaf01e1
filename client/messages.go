package client

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/moat-im/moat/client/internal/content"
	"github.com/moat-im/moat/client/localstore"
	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/server/relay"
)

func unmarshalJSON(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return errors.New("client: corrupt local record")
	}
	return nil
}

func toIDs[T ~[16]byte](ids []T) []content.ID {
	var out []content.ID
	for _, id := range ids {
		out = append(out, content.ID(id))
	}
	return out
}

func sortIDs(ids []content.ID) []content.ID {
	slices.SortFunc(ids, func(a, b content.ID) int { return strings.Compare(string(a[:]), string(b[:])) })
	return slices.Compact(ids)
}

// buildContent turns a Message into a Content (docs/spec/content.md
// §Kinds), checking it.
func (c *Client) buildContent(m *Message, timer time.Duration) (*content.Content, error) {
	var id content.ID
	rand.Read(id[:])
	ct := &content.Content{Kind: content.Kind(m.Kind), MessageID: id, SentAt: c.now().Truncate(time.Millisecond).UTC(),
		Text: m.Text, Mentions: sortIDs(toIDs(m.Mentions)), Target: content.ID(m.Target), Reaction: m.Reaction}
	switch m.Kind {
	case KindText, KindReply, KindAttachment:
		ct.ExpireAfter = uint32(timer / time.Second)
	case KindDelivered, KindRead:
		ct.Targets = sortIDs(toIDs(m.Targets))
	case KindTimer:
		if m.Timer < 0 || m.Timer%time.Second != 0 {
			return nil, ErrInvalidMessage
		}
		ct.Timer = uint32(m.Timer / time.Second)
	}
	if m.Attachment != nil {
		a := m.Attachment
		ct.File = &content.File{Name: a.Name, MediaType: a.MediaType, Size: a.Size, Ref: a.Ref}
	}
	if _, err := ct.Marshal(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidMessage, err)
	}
	return ct, nil
}

// Send sends m to user to: to every usable device of to, and a sync
// transcript to this user's other devices (docs/spec/content.md §Sync
// transcripts), each verified in the directory first (an unverifiable
// recipient is an *UnverifiedContactError and nothing is sent). The
// sessions' new states, the envelopes and the local history record are
// stored in one transaction before anything is sent; envelopes the relay
// has not accepted stay in an outbox that Sync and Run retry. It returns
// the message's id.
func (c *Client) Send(ctx context.Context, to UserID, m Message) (MessageID, error) {
	if err := c.lock(); err != nil {
		return MessageID{}, err
	}
	defer c.mu.Unlock()
	id, err := c.send(ctx, to, &m)
	return id, c.refused(ctx, err)
}

// SendText sends a text message.
func (c *Client) SendText(ctx context.Context, to UserID, text string) (MessageID, error) {
	return c.Send(ctx, to, Message{Kind: KindText, Text: text})
}

// MarkRead sends read receipts for messages of the conversation with
// user.
func (c *Client) MarkRead(ctx context.Context, user UserID, ids ...MessageID) error {
	_, err := c.Send(ctx, user, Message{Kind: KindRead, Targets: ids})
	return err
}

func (c *Client) send(ctx context.Context, to UserID, m *Message) (MessageID, error) {
	if to == c.dev.User {
		return MessageID{}, fmt.Errorf("%w: a 1:1 conversation with oneself", ErrInvalidMessage)
	}
	var conv convRecord
	if err := c.st.View(func(tx localstore.Tx) error {
		_, err := getJSON(tx, kindConv, to[:], &conv)
		return err
	}); err != nil {
		return MessageID{}, err
	}
	ct, err := c.buildContent(m, conv.Timer)
	if err != nil {
		return MessageID{}, err
	}
	if ct.Target != (content.ID{}) && (m.Kind == KindEdit || m.Kind == KindDelete) {
		// Only one's own messages can be edited or deleted for everyone.
		var r *Record
		if err := c.st.View(func(tx localstore.Tx) error {
			var err error
			r, _, err = findRecord(tx, to, MessageID(ct.Target))
			return err
		}); err != nil {
			return MessageID{}, err
		}
		if r == nil || r.From != c.dev.User {
			return MessageID{}, ErrUnknownMessage
		}
	}
	peer, err := c.lookup(ctx, to)
	if err != nil {
		return MessageID{}, err
	}
	if len(peer.Devices) == 0 {
		return MessageID{}, &UnverifiedContactError{User: to, Reason: "no usable device in the directory"}
	}
	// This user's other devices get a sync transcript; if the directory
	// cannot show them (this device's user not published yet), they get
	// none.
	own, err := c.lookup(ctx, c.dev.User)
	if errors.Is(err, ErrRevoked) {
		return MessageID{}, err
	}
	var ownDevices []*org.DeviceCertificate
	if err != nil {
		c.log.Warn("own devices not verified: no sync transcript", "err", err)
	} else {
		ownDevices = own.Devices
	}
	if err := c.ensureVerifier(ctx, to); err != nil {
		return MessageID{}, err
	}
	if err := c.ensureVerifier(ctx, c.dev.User); err != nil {
		return MessageID{}, err
	}
	type target struct {
		cert *org.DeviceCertificate
		pt   []byte
	}
	var targets []target
	for _, d := range peer.Devices {
		cc := *ct
		cc.Token = c.tokenFor(to)
		pt, err := cc.Marshal()
		if err != nil {
			return MessageID{}, err
		}
		targets = append(targets, target{d, pt})
	}
	for _, d := range ownDevices {
		if d.Device == c.dev.Device {
			continue
		}
		cc := *ct
		cc.Conversation = content.ID(to)
		cc.Token = c.tokenFor(c.dev.User)
		pt, err := cc.Marshal()
		if err != nil {
			return MessageID{}, err
		}
		targets = append(targets, target{d, pt})
	}
	var certs []*org.DeviceCertificate
	for _, t := range targets {
		certs = append(certs, t.cert)
	}
	need, err := c.needAnon(certs)
	if err != nil {
		return MessageID{}, err
	}
	if err := c.ensureAnonTokens(ctx, need); err != nil {
		return MessageID{}, err
	}
	var events []Event
	var failed []error
	err = c.update(func(tx localstore.Tx) error {
		// T14: a change of the recipient's keys is recorded and announced.
		if err := c.saveContact(ctx, tx, to, peer); err != nil {
			return err
		}
		sent := 0
		for _, t := range targets {
			o, err := c.prepare(ctx, tx, t.cert, t.pt)
			if err != nil {
				if t.cert.User == to {
					failed = append(failed, err)
				}
				c.log.Warn("not sending to a device", "err", err)
				continue
			}
			if o.auth, err = c.authorization(tx, o); err != nil {
				if t.cert.User == to {
					failed = append(failed, err)
				}
				continue
			}
			if err := saveSession(tx, o.mb, o.ps); err != nil {
				return err
			}
			o.group = outboxGroup(ct.MessageID, t.cert.User)
			if err := c.putOutbox(tx, o); err != nil {
				return err
			}
			if t.cert.User == to {
				sent++
			}
		}
		if sent == 0 {
			return errors.Join(append([]error{errors.New("client: no device of the recipient could be reached")}, failed...)...)
		}
		var err error
		if events, err = c.apply(tx, to, c.dev.User, c.dev.Device, ct); err != nil {
			return err
		}
		return keepUploadToken(tx, m, MessageID(ct.MessageID))
	})
	if err != nil {
		return MessageID{}, err
	}
	for _, e := range events {
		c.emit(e)
	}
	if err := c.flushOutbox(ctx); err != nil {
		c.log.Warn("outbox not flushed; retried later", "err", err)
	}
	if err := c.deleteQueuedBlobs(ctx); err != nil {
		c.log.Warn("attachments not deleted at the relay; retried later", "err", err)
	}
	return MessageID(ct.MessageID), nil
}

// tokenFor returns this device's MAC delivery token for user, with its
// mailbox (docs/spec/content.md §Delivery tokens).
func (c *Client) tokenFor(user UserID) []byte {
	mb := c.mailbox()
	tok := c.tokens.Token(mb, deliverytoken.NewContactID(c.dev.Tenant, user), 0)
	return append(mb[:], tok[:]...)
}

// ensureVerifier registers at the relay the verifier of this device's
// token for user, once.
func (c *Client) ensureVerifier(ctx context.Context, user UserID) error {
	var done bool
	if err := c.st.View(func(tx localstore.Tx) error {
		_, err := tx.Get("", "verifier", user[:])
		if err == nil {
			done = true
			return nil
		}
		if errors.Is(err, localstore.ErrNotFound) {
			return nil
		}
		return err
	}); err != nil || done {
		return err
	}
	v := c.tokens.Verifier(c.mailbox(), deliverytoken.NewContactID(c.dev.Tenant, user), 0)
	if err := c.rel.AddVerifier(ctx, v); err != nil {
		return fmt.Errorf("client: registering a delivery-token verifier: %w", err)
	}
	return c.st.Update(func(tx localstore.Tx) error { return tx.Put("", "verifier", user[:], []byte{1}) })
}

func (c *Client) putOutbox(tx localstore.Tx, o *outgoing) error {
	id := c.dev.Outbox
	c.dev.Outbox++
	return putJSON(tx, kindOutbox, u64(id), &outboxRecord{Envelope: o.env, Auth: o.auth, Group: o.group})
}

// flushOutbox sends every stored envelope and deletes the ones the relay
// accepted (a retry of an accepted one is idempotent at the relay). An
// envelope refused for its token (403: a spent anonymous token whose
// first send was accepted but its answer lost, or a MAC token the peer
// withdrew) is tried once more with a fresh anonymous token; one refused
// for good (400, 404, 413, or 403 again) is dropped with an EventError;
// anything else stays for the next flush.
func (c *Client) flushOutbox(ctx context.Context) error {
	items, err := listJSON[outboxRecord](c.st, kindOutbox)
	if err != nil {
		return err
	}
	recs := make([]outboxRecord, len(items))
	for i := range items {
		recs[i] = items[i].rec
	}
	var errs []error
	for i := 0; i < len(items); {
		n := outboxRun(recs[i:])
		sendErrs := c.sendOutbox(ctx, recs[i:i+n])
		for k, err := range sendErrs {
			if err := c.flushOne(ctx, items[i+k].id, items[i+k].rec, err, &errs); err != nil {
				return err
			}
		}
		i += n
	}
	return errors.Join(errs...)
}

// flushOne finishes the send of outbox record id, which the relay
// answered with err (see flushOutbox): it retries a 403 once with a fresh
// anonymous token, deletes what was accepted or refused for good, and
// adds what may succeed later to errs. It returns an error of the store.
func (c *Client) flushOne(ctx context.Context, id []byte, rec outboxRecord, err error, errs *[]error) error {
	var ae *relay.APIError
	if errors.As(err, &ae) && ae.Status == http.StatusForbidden && !rec.Retried {
		if terr := c.ensureAnonTokens(ctx, 1); terr == nil {
			if terr := c.st.Update(func(tx localstore.Tx) error {
				auth, err := c.authorization(tx, &outgoing{ps: &peerSession{}})
				if err != nil {
					return err
				}
				rec.Auth, rec.Retried = auth, true
				return putJSON(tx, kindOutbox, id, &rec)
			}); terr == nil {
				_, err = c.anon.Send(ctx, rec.Auth, rec.Envelope)
			}
		}
	}
	if err != nil && !(errors.As(err, &ae) && permanent(ae.Status)) {
		*errs = append(*errs, err)
		return nil
	}
	if err := c.st.Update(func(tx localstore.Tx) error { return tx.Delete("", kindOutbox, id) }); err != nil {
		return err
	}
	if err != nil {
		c.emit(Event{Kind: EventError, Err: fmt.Errorf("client: the relay refused a message for good: %w", err)})
	}
	return nil
}

// permanent reports whether a relay answer to a send will not change on
// a retry.
func permanent(status int) bool {
	switch status {
	case http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound, http.StatusRequestEntityTooLarge:
		return true
	}
	return false
}

// storedRecord is a Record as the store keeps it (JSON has no arrays as
// map keys).
type storedRecord struct {
	Record
	Reactions []reactionEntry // shadows Record.Reactions
}

type reactionEntry struct {
	User     UserID
	Reaction string
}

func putRecord(tx localstore.Tx, conv UserID, seq uint64, r *Record) error {
	sr := storedRecord{Record: *r}
	sr.Record.Reactions = nil
	for u, e := range r.Reactions {
		sr.Reactions = append(sr.Reactions, reactionEntry{u, e})
	}
	slices.SortFunc(sr.Reactions, func(a, b reactionEntry) int { return strings.Compare(string(a.User[:]), string(b.User[:])) })
	return putJSON(tx, msgKind(conv), u64(seq), &sr)
}

func decodeRecord(b []byte) (*Record, error) {
	var sr storedRecord
	if err := unmarshalJSON(b, &sr); err != nil {
		return nil, err
	}
	r := sr.Record
	if len(sr.Reactions) > 0 {
		r.Reactions = map[UserID]string{}
		for _, e := range sr.Reactions {
			r.Reactions[e.User] = e.Reaction
		}
	}
	return &r, nil
}

// findRecord returns the record of message id in conversation conv, and
// its local sequence number; nil if there is none.
func findRecord(tx localstore.Tx, conv UserID, id MessageID) (*Record, uint64, error) {
	var ix msgIndex
	found, err := getJSON(tx, kindMsgIdx, id[:], &ix)
	if err != nil || !found || ix.Conversation != conv {
		return nil, 0, err
	}
	b, err := tx.Get("", msgKind(conv), u64(ix.Seq))
	if errors.Is(err, localstore.ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	r, err := decodeRecord(b)
	return r, ix.Seq, err
}

// destroy deletes a message record and its index entry; each had a key of
// its own, which the store destroys (docs/spec/client-store.md).
func destroy(tx localstore.Tx, conv UserID, id MessageID, seq uint64) error {
	if err := queueBlobDeletion(tx, conv, id, seq); err != nil {
		return err
	}
	if err := tx.Delete("", msgKind(conv), u64(seq)); err != nil {
		return err
	}
	return tx.Delete("", kindMsgIdx, id[:])
}

func addUser(us []UserID, u UserID) []UserID {
	if slices.Contains(us, u) {
		return us
	}
	return append(us, u)
}

// apply applies a content of conversation conv from device fromDev of
// user from (this device's user for its own messages) to the history
// (docs/spec/content.md §Processing). It returns the events to emit.
func (c *Client) apply(tx localstore.Tx, conv, from UserID, fromDev DeviceID, ct *content.Content) ([]Event, error) {
	now := c.now()
	id := MessageID(ct.MessageID)
	outgoing := from == c.dev.User
	target := MessageID(ct.Target)
	switch ct.Kind {
	case content.Text, content.Reply, content.Attachment, content.Timer:
		if r, _, err := findRecord(tx, conv, id); err != nil || r != nil {
			return nil, err // a duplicate
		}
		r := &Record{ID: id, Conversation: conv, From: from, FromDevice: fromDev, Outgoing: outgoing,
			Kind: Kind(ct.Kind), Text: ct.Text, Sent: ct.SentAt, Received: now}
		for _, m := range ct.Mentions {
			r.Mentions = append(r.Mentions, UserID(m))
		}
		if ct.Kind == content.Reply {
			r.ReplyTo = target
		}
		if f := ct.File; f != nil {
			r.Attachment = &Attachment{Name: f.Name, MediaType: f.MediaType, Size: f.Size, Ref: f.Ref}
		}
		if ct.ExpireAfter > 0 {
			r.ExpiresAt = now.Add(time.Duration(ct.ExpireAfter) * time.Second)
		}
		kind := EventMessage
		if ct.Kind == content.Timer {
			r.Timer = time.Duration(ct.Timer) * time.Second
			if err := putJSON(tx, kindConv, conv[:], &convRecord{Timer: r.Timer}); err != nil {
				return nil, err
			}
			kind = EventTimer
		} else if _, err := tx.Get("", kindConv, conv[:]); errors.Is(err, localstore.ErrNotFound) {
			if err := putJSON(tx, kindConv, conv[:], &convRecord{}); err != nil {
				return nil, err
			}
		} else if err != nil {
			return nil, err
		}
		c.dev.Seq++
		if err := putRecord(tx, conv, c.dev.Seq, r); err != nil {
			return nil, err
		}
		if err := putJSON(tx, kindMsgIdx, id[:], &msgIndex{Conversation: conv, Seq: c.dev.Seq}); err != nil {
			return nil, err
		}
		return []Event{{Kind: kind, Conversation: conv, Message: id, Record: r}}, nil

	case content.Edit, content.Delete, content.Reaction:
		r, seq, err := findRecord(tx, conv, target)
		if err != nil || r == nil {
			return nil, err // unknown or already deleted: nothing to do
		}
		switch ct.Kind {
		case content.Edit:
			if r.From != from {
				return nil, nil // only the author edits
			}
			r.Text, r.Edited, r.Mentions = ct.Text, true, nil
			for _, m := range ct.Mentions {
				r.Mentions = append(r.Mentions, UserID(m))
			}
			return []Event{{Kind: EventEdited, Conversation: conv, Message: target, Record: r}},
				putRecord(tx, conv, seq, r)
		case content.Delete:
			if r.From != from {
				return nil, nil // only the author deletes for everyone
			}
			return []Event{{Kind: EventDeleted, Conversation: conv, Message: target}}, destroy(tx, conv, target, seq)
		default:
			if r.Reactions == nil {
				r.Reactions = map[UserID]string{}
			}
			if ct.Reaction == "" {
				delete(r.Reactions, from)
			} else {
				r.Reactions[from] = ct.Reaction
			}
			return []Event{{Kind: EventReaction, Conversation: conv, Message: target, Record: r}},
				putRecord(tx, conv, seq, r)
		}

	case content.Delivered, content.Read:
		if outgoing {
			return nil, nil // this user's own receipts, from another device
		}
		var events []Event
		for _, t := range ct.Targets {
			r, seq, err := findRecord(tx, conv, MessageID(t))
			if err != nil {
				return nil, err
			}
			if r == nil || r.From != c.dev.User {
				continue
			}
			if ct.Kind == content.Delivered {
				r.Delivered = addUser(r.Delivered, from)
			} else {
				r.Read = addUser(r.Read, from)
				r.Delivered = addUser(r.Delivered, from)
			}
			if err := putRecord(tx, conv, seq, r); err != nil {
				return nil, err
			}
			events = append(events, Event{Kind: EventReceipt, Conversation: conv, Message: MessageID(t), Record: r})
		}
		return events, nil
	}
	return nil, fmt.Errorf("client: content kind %d not handled", ct.Kind)
}

// History returns the conversation with user, oldest first; limit > 0
// keeps the newest limit records. Expired disappearing messages are
// destroyed first.
func (c *Client) History(user UserID, limit int) ([]Record, error) {
	if err := c.lock(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	if err := c.expire(); err != nil {
		return nil, err
	}
	var out []Record
	err := c.st.View(func(tx localstore.Tx) error {
		return tx.List("", msgKind(user), func(_, v []byte) error {
			r, err := decodeRecord(v)
			if err != nil {
				return err
			}
			out = append(out, *r)
			return nil
		})
	})
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, err
}

// Conversations returns the users this device has a conversation with.
func (c *Client) Conversations() ([]UserID, error) {
	if err := c.lock(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	return c.conversations()
}

func (c *Client) conversations() ([]UserID, error) {
	var out []UserID
	err := c.st.View(func(tx localstore.Tx) error {
		return tx.List("", kindConv, func(id, _ []byte) error {
			if len(id) == 16 {
				out = append(out, UserID(id))
			}
			return nil
		})
	})
	return out, err
}

// Search returns the records of every conversation whose text, caption or
// attachment name contains query, case-insensitively (Unicode simple
// folding), oldest first within a conversation. It is a scan over the
// decrypted records: linear in the history's size (client/README.md).
func (c *Client) Search(query string) ([]Record, error) {
	if err := c.lock(); err != nil {
		return nil, err
	}
	defer c.mu.Unlock()
	if err := c.expire(); err != nil {
		return nil, err
	}
	q := strings.ToLower(query)
	convs, err := c.conversations()
	if err != nil {
		return nil, err
	}
	var out []Record
	err = c.st.View(func(tx localstore.Tx) error {
		for _, conv := range convs {
			if err := tx.List("", msgKind(conv), func(_, v []byte) error {
				r, err := decodeRecord(v)
				if err != nil {
					return err
				}
				hay := r.Text
				if r.Attachment != nil {
					hay += "\x00" + r.Attachment.Name
				}
				if strings.Contains(strings.ToLower(hay), q) {
					out = append(out, *r)
				}
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// expire destroys every disappearing message whose time has come. c.mu is
// held.
func (c *Client) expire() error {
	convs, err := c.conversations()
	if err != nil {
		return err
	}
	now := c.now()
	var events []Event
	err = c.st.Update(func(tx localstore.Tx) error {
		events = nil
		// A processed envelope's id is kept as long as the relay could
		// deliver it again: its largest time-to-live.
		var old [][]byte
		if err := tx.List("", kindSeen, func(k, v []byte) error {
			var r seenRecord
			if err := unmarshalJSON(v, &r); err != nil {
				return err
			}
			if now.Sub(r.At) > sealed.MaxTTL*time.Second {
				old = append(old, append([]byte(nil), k...))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range old {
			if err := tx.Delete("", kindSeen, k); err != nil {
				return err
			}
		}
		for _, conv := range convs {
			type dead struct {
				id  MessageID
				seq uint64
			}
			var ds []dead
			if err := tx.List("", msgKind(conv), func(k, v []byte) error {
				r, err := decodeRecord(v)
				if err != nil {
					return err
				}
				if !r.ExpiresAt.IsZero() && !now.Before(r.ExpiresAt) {
					ds = append(ds, dead{r.ID, beUint64(k)})
				}
				return nil
			}); err != nil {
				return err
			}
			for _, d := range ds {
				if err := destroy(tx, conv, d.id, d.seq); err != nil {
					return err
				}
				events = append(events, Event{Kind: EventExpired, Conversation: conv, Message: d.id})
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, e := range events {
		c.emit(e)
	}
	return nil
}

func beUint64(b []byte) uint64 {
	var n uint64
	for _, x := range b {
		n = n<<8 | uint64(x)
	}
	return n
}
