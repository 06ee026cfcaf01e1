package kt

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/vmap"
	"golang.org/x/crypto/cryptobyte"
)

// Client state encoding (docs/spec/directory.md §Client state):
//
//	struct {
//	    uint8  type = 0x55;
//	    uint8  format = 2;                  /* 1: no verified_signatures */
//	    opaque tlog_state<1..2^24-1>;       /* tlog.md §Trust state */
//	    uint64 seen;                        /* POSIX seconds, ≤ 2^63-1 */
//	    uint8  has_epoch;                   /* 0 or 1 */
//	    uint64 epoch;                       /* 0 unless has_epoch */
//	    uint64 epoch_time;                  /* 0 unless has_epoch */
//	    LabelState labels<0..2^32-1>;       /* by label, strictly increasing */
//	    MonitorState monitors<0..2^32-1>;   /* by user, strictly increasing */
//	    opaque verified_signatures<0..2^24-1>; /* format 2 only: ≤ 4,096 distinct 32-byte keys, oldest first */
//	} ClientState;
//
//	struct {
//	    opaque label[32];
//	    uint32 version;                     /* ≥ 1 */
//	    opaque commitment[32];
//	} LabelState;
//
//	struct {
//	    opaque user[16];                    /* not zero */
//	    opaque self[16];                    /* not zero */
//	    uint32 version;                     /* ≥ 1 */
//	    opaque commitment[32];
//	    uint64 epoch;
//	    uint64 head_seq;                    /* ≥ 1 */
//	    opaque head_hash[32];
//	    MonitoredDevice devices<0..2^24-1>; /* by device, strictly increasing */
//	} MonitorState;
//
//	struct {
//	    opaque device[16];
//	    uint64 serial;
//	    opaque keys_hash[32];
//	    opaque identity_signing[33];        /* PublicKey, tag identity_signing */
//	    uint8  own;                         /* 0 or 1 */
//	} MonitoredDevice;

// MarshalState returns the client's state, for the caller to persist after
// every accepted response. It holds only public data, but its integrity
// matters: whoever can rewrite it can roll the client back, and, through
// the cache of verified CA signatures it carries, make the client accept
// a certificate or timeline entry the CA never signed.
func (c *Client) MarshalState() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ts, err := c.verifier.MarshalState()
	if err != nil {
		return nil, err
	}
	return build(func(b *cryptobyte.Builder) {
		b.AddUint8(typeClientState)
		b.AddUint8(stateFormat2)
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(ts) })
		b.AddUint64(uint64(c.seen))
		if c.hasEpoch {
			b.AddUint8(1)
			b.AddUint64(c.epoch)
			b.AddUint64(uint64(c.epochAt))
		} else {
			b.AddUint8(0)
			b.AddUint64(0)
			b.AddUint64(0)
		}
		labels := make([]vmap.Label, 0, len(c.labels))
		for l := range c.labels {
			labels = append(labels, l)
		}
		slices.SortFunc(labels, func(a, b vmap.Label) int { return bytes.Compare(a[:], b[:]) })
		b.AddUint32LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, l := range labels {
				st := c.labels[l]
				b.AddBytes(l[:])
				b.AddUint32(st.version)
				b.AddBytes(st.commitment[:])
			}
		})
		users := make([]org.UserID, 0, len(c.monitors))
		for u := range c.monitors {
			users = append(users, u)
		}
		slices.SortFunc(users, func(a, b org.UserID) int { return bytes.Compare(a[:], b[:]) })
		b.AddUint32LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, u := range users {
				addMonitor(b, u, c.monitors[u])
			}
		})
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, k := range c.sigs.order {
				b.AddBytes(k[:])
			}
		})
	})
}

// stateFormat2 is the ClientState format with verified_signatures.
const stateFormat2 = 0x02

func addMonitor(b *cryptobyte.Builder, u org.UserID, ms *monitorState) {
	b.AddBytes(u[:])
	b.AddBytes(ms.self[:])
	b.AddUint32(ms.pos.Version)
	b.AddBytes(ms.pos.Commitment[:])
	b.AddUint64(ms.pos.Epoch)
	b.AddUint64(ms.pos.Head.Seq)
	b.AddBytes(ms.pos.Head.Hash[:])
	ids := make([]org.DeviceID, 0, len(ms.devices))
	for id := range ms.devices {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b org.DeviceID) int { return bytes.Compare(a[:], b[:]) })
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, id := range ids {
			d := ms.devices[id]
			b.AddBytes(id[:])
			b.AddUint64(d.serial)
			b.AddBytes(d.keys[:])
			b.AddBytes(d.signing.Bytes())
			if d.own {
				b.AddUint8(1)
			} else {
				b.AddUint8(0)
			}
		}
	})
}

// RestoreClient returns a client for cfg with a state from MarshalState.
// Parsing is strict; the tlog trust state is restored as
// tlog.RestoreVerifier does it (the checkpoint must open under the bundle's
// log key).
func RestoreClient(cfg Config, state []byte) (*Client, error) {
	c, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	s := newReader(state)
	var ts cryptobyte.String
	var typ, format uint8
	var seen, epochAt uint64
	var hasEpoch uint8
	var labels, monitors, sigs cryptobyte.String
	if !s.ReadUint8(&typ) || typ != typeClientState || !s.ReadUint8(&format) || (format != format1 && format != stateFormat2) ||
		!s.ReadUint24LengthPrefixed(&ts) || len(ts) == 0 ||
		!s.ReadUint64(&seen) || seen > MaxEpoch || !s.ReadUint8(&hasEpoch) || hasEpoch > 1 ||
		!s.ReadUint64(&c.epoch) || c.epoch > MaxEpoch || !s.ReadUint64(&epochAt) || epochAt > MaxEpoch ||
		(hasEpoch == 0 && (c.epoch != 0 || epochAt != 0)) ||
		!readUint32Prefixed(s, &labels) || !readUint32Prefixed(s, &monitors) ||
		(format == stateFormat2 && !s.ReadUint24LengthPrefixed(&sigs)) || !s.Empty() ||
		len(sigs)%32 != 0 || len(sigs) > 32*maxVerifiedSigs {
		return nil, fmt.Errorf("%w: client state", ErrMalformed)
	}
	for !sigs.Empty() {
		var k [32]byte
		sigs.CopyBytes(k[:])
		if c.sigs.has(k) {
			return nil, fmt.Errorf("%w: client state: verified signatures", ErrMalformed)
		}
		c.sigs.add(k)
	}
	c.seen, c.hasEpoch, c.epochAt = int64(seen), hasEpoch == 1, int64(epochAt)
	var last []byte
	for !labels.Empty() {
		var l, cm []byte
		var v uint32
		if !labels.ReadBytes(&l, vmap.LabelSize) || !labels.ReadUint32(&v) || v == 0 ||
			!labels.ReadBytes(&cm, vmap.CommitmentSize) || (last != nil && bytes.Compare(last, l) >= 0) {
			return nil, fmt.Errorf("%w: client state: label", ErrMalformed)
		}
		last = l
		c.labels[vmap.Label(l)] = &labelState{version: v, commitment: vmap.Commitment(cm)}
	}
	var lastUser []byte
	for !monitors.Empty() {
		u, ms, err := readMonitor(&monitors)
		if err != nil || (lastUser != nil && bytes.Compare(lastUser, u[:]) >= 0) {
			return nil, fmt.Errorf("%w: client state: monitor", ErrMalformed)
		}
		lastUser = bytes.Clone(u[:])
		c.monitors[u] = ms
	}
	if c.verifier, err = tlog.RestoreVerifier(c.tcfg, ts); err != nil {
		return nil, fmt.Errorf("kt: client state: %w", err)
	}
	return c, nil
}

func readMonitor(s *cryptobyte.String) (org.UserID, *monitorState, error) {
	var u org.UserID
	ms := &monitorState{devices: map[org.DeviceID]*monitoredDevice{}}
	var devs cryptobyte.String
	if !s.CopyBytes(u[:]) || !s.CopyBytes(ms.self[:]) || !s.ReadUint32(&ms.pos.Version) ||
		!s.CopyBytes(ms.pos.Commitment[:]) || !s.ReadUint64(&ms.pos.Epoch) || !s.ReadUint64(&ms.pos.Head.Seq) ||
		!s.CopyBytes(ms.pos.Head.Hash[:]) || !s.ReadUint24LengthPrefixed(&devs) ||
		u.IsZero() || ms.self.IsZero() || ms.pos.Version == 0 || ms.pos.Epoch > MaxEpoch || ms.pos.Head.Seq == 0 {
		return u, nil, ErrMalformed
	}
	var last []byte
	for !devs.Empty() {
		var id org.DeviceID
		var sk []byte
		var own uint8
		d := &monitoredDevice{}
		if !devs.CopyBytes(id[:]) || !devs.ReadUint64(&d.serial) || !devs.CopyBytes(d.keys[:]) ||
			!devs.ReadBytes(&sk, 33) || !devs.ReadUint8(&own) || own > 1 ||
			(last != nil && bytes.Compare(last, id[:]) >= 0) {
			return u, nil, ErrMalformed
		}
		k, err := keys.ParseIdentitySigningPublicKey(sk)
		if err != nil {
			return u, nil, ErrMalformed
		}
		last = bytes.Clone(id[:])
		d.signing, d.own = k, own == 1
		ms.devices[id] = d
	}
	return u, ms, nil
}
