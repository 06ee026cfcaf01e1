package kt

import (
	"bytes"
	"errors"
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
//	    uint8  format = 4;
//	    opaque bundle<1..2^24-1>;           /* the pinned TrustBundle */
//	    opaque checkpoint_log_key<0..2^16-1>; /* empty, or the log key of the
//	                                           trusted checkpoint if not the bundle's */
//	    PastCA past_cas<0..2^16-1>;         /* oldest first, until strictly increasing */
//	    opaque tlog_state<1..2^24-1>;       /* tlog.md §Trust state */
//	    uint64 seen;                        /* POSIX seconds, ≤ 2^63-1 */
//	    uint8  has_epoch;                   /* 0 or 1 */
//	    uint64 epoch;                       /* 0 unless has_epoch */
//	    uint64 epoch_time;                  /* 0 unless has_epoch */
//	    opaque held_entry<0..2^8-1>;        /* empty, or the EpochEntry held as the
//	                                           trusted checkpoint's last leaf */
//	    LabelState labels<0..2^32-1>;       /* by label, strictly increasing */
//	    MonitorState monitors<0..2^32-1>;   /* by user, strictly increasing */
//	    opaque verified_signatures<0..2^24-1>; /* ≤ 4,096 distinct 32-byte keys, oldest first */
//	} ClientState;
//
//	struct {
//	    opaque ca_key[1985];                /* PublicKey, tag org_signing */
//	    uint64 until;                       /* 1 ≤ until ≤ 2^63-1 */
//	} PastCA;
//
//	struct {
//	    opaque label[32];
//	    uint32 version;                     /* ≥ 1 */
//	    opaque commitment[32];
//	    uint64 epoch;                       /* ≤ 2^63-1 */
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
//	    uint64 verified;                    /* the last epoch verified, ≤ 2^63-1 */
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
	bundle, err := c.bundle.Marshal()
	if err != nil {
		return nil, err
	}
	return build(func(b *cryptobyte.Builder) {
		b.AddUint8(typeClientState)
		b.AddUint8(format4)
		b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(bundle) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			if c.cpLogKey != nil {
				b.AddBytes(c.cpLogKey.Bytes())
			}
		})
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, p := range c.pastCAs {
				b.AddBytes(p.key.Bytes())
				b.AddUint64(p.until)
			}
		})
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
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) {
			if held := c.heldEntry(); held != nil {
				enc, err := held.Marshal()
				if err != nil {
					b.SetError(err)
					return
				}
				b.AddBytes(enc)
			}
		})
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
				b.AddUint64(st.epoch)
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

func addMonitor(b *cryptobyte.Builder, u org.UserID, ms *monitorState) {
	b.AddBytes(u[:])
	b.AddBytes(ms.self[:])
	b.AddUint32(ms.pos.Version)
	b.AddBytes(ms.pos.Commitment[:])
	b.AddUint64(ms.pos.Epoch)
	b.AddUint64(ms.pos.Head.Seq)
	b.AddBytes(ms.pos.Head.Hash[:])
	b.AddUint64(ms.verified)
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

// ErrStateBundle is returned by RestoreClient for a state saved under a
// trust bundle that the configured one does not continue.
var ErrStateBundle = errors.New("kt: client state saved under another trust bundle")

// RestoreClient returns a client for cfg with a state from MarshalState.
// Parsing is strict. cfg.Bundle must be the bundle the state was saved
// with, or a signed successor of it (same tenant, log origin and VRF key,
// a higher sequence, signed by the saved bundle's CA); anything else is
// ErrStateBundle. The tlog trust state is restored as tlog.RestoreVerifier
// does it, its checkpoint opening under the log key it was accepted
// under: the saved bundle's, or the old key of a log key rotation the
// client followed (docs/spec/directory.md §Client state), so that a state
// restores after any rotation.
func RestoreClient(cfg Config, state []byte) (*Client, error) {
	c, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	s := newReader(state)
	var bundle, cpKey, cas, ts cryptobyte.String
	var seen, epochAt uint64
	var hasEpoch uint8
	var labels, monitors, sigs, held cryptobyte.String
	if !readHeaderFormat(s, typeClientState, format4) || !s.ReadUint24LengthPrefixed(&bundle) || len(bundle) == 0 ||
		!s.ReadUint16LengthPrefixed(&cpKey) || !s.ReadUint16LengthPrefixed(&cas) ||
		!s.ReadUint24LengthPrefixed(&ts) || len(ts) == 0 ||
		!s.ReadUint64(&seen) || seen > MaxEpoch || !s.ReadUint8(&hasEpoch) || hasEpoch > 1 ||
		!s.ReadUint64(&c.epoch) || c.epoch > MaxEpoch || !s.ReadUint64(&epochAt) || epochAt > MaxEpoch ||
		(hasEpoch == 0 && (c.epoch != 0 || epochAt != 0)) || !s.ReadUint8LengthPrefixed(&held) ||
		!readUint32Prefixed(s, &labels) || !readUint32Prefixed(s, &monitors) ||
		!s.ReadUint24LengthPrefixed(&sigs) || !s.Empty() ||
		len(sigs)%32 != 0 || len(sigs) > 32*maxVerifiedSigs {
		return nil, fmt.Errorf("%w: client state", ErrMalformed)
	}
	saved, err := org.ParseTrustBundle(bundle)
	if err != nil {
		return nil, fmt.Errorf("%w: client state: trust bundle: %v", ErrMalformed, err)
	}
	logKey := saved.Log
	if len(cpKey) > 0 {
		if logKey, err = keys.ParseLogPublicKey(cpKey); err != nil || logKey.Equal(saved.Log) {
			return nil, fmt.Errorf("%w: client state: checkpoint log key", ErrMalformed)
		}
	}
	for !cas.Empty() {
		var k []byte
		var until uint64
		if !cas.ReadBytes(&k, hybridKeySize) || !cas.ReadUint64(&until) || until == 0 || until > MaxEpoch ||
			len(c.pastCAs) >= maxPastCAs || (len(c.pastCAs) > 0 && until <= c.pastCAs[len(c.pastCAs)-1].until) {
			return nil, fmt.Errorf("%w: client state: CA history", ErrMalformed)
		}
		ca, err := keys.ParseOrgPublicKey(k)
		if err != nil {
			return nil, fmt.Errorf("%w: client state: CA history", ErrMalformed)
		}
		c.pastCAs = append(c.pastCAs, pastCA{key: ca, until: until})
	}
	if err := restoredBundle(saved, bundle, cfg.Bundle); err != nil {
		return nil, err
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
		var e uint64
		if !labels.ReadBytes(&l, vmap.LabelSize) || !labels.ReadUint32(&v) || v == 0 ||
			!labels.ReadBytes(&cm, vmap.CommitmentSize) || !labels.ReadUint64(&e) || e > MaxEpoch ||
			(last != nil && bytes.Compare(last, l) >= 0) {
			return nil, fmt.Errorf("%w: client state: label", ErrMalformed)
		}
		last = l
		c.labels[vmap.Label(l)] = &labelState{version: v, commitment: vmap.Commitment(cm), epoch: e}
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
	// The trusted checkpoint opens under the key it was accepted under;
	// the verifier then moves to the configured bundle's policy (a forked
	// verifier accepts nothing more, under any policy).
	vcfg := c.tcfg
	vcfg.LogKey = logKey
	if c.verifier, err = tlog.RestoreVerifier(vcfg, ts); err != nil {
		return nil, fmt.Errorf("kt: client state: %w", err)
	}
	if cp, _ := c.verifier.Checkpoint(); cp == nil && len(cpKey) > 0 {
		return nil, fmt.Errorf("%w: client state: checkpoint log key without a checkpoint", ErrMalformed)
	}
	// The held entry, the last leaf of the trusted checkpoint
	// (§Held entry).
	if len(held) > 0 {
		e, err := readEpochEntry(&held)
		cp, _ := c.verifier.Checkpoint()
		if err != nil || !held.Empty() || cp == nil || e.Epoch+1 != cp.Size || c.verifier.Fork() != nil {
			return nil, fmt.Errorf("%w: client state: held entry", ErrMalformed)
		}
		c.held, c.heldSize, c.heldRoot = e, cp.Size, cp.Root
	}
	if !logKey.Equal(cfg.Bundle.Log) && c.verifier.Fork() == nil {
		if c.verifier, err = c.verifier.Repin(c.tcfg); err != nil {
			return nil, fmt.Errorf("kt: client state: %w", err)
		}
		if cp, _ := c.verifier.Checkpoint(); cp != nil {
			c.cpLogKey = logKey
		}
	}
	return c, nil
}

// restoredBundle checks that nb, the bundle a client is restored with,
// is saved (whose encoding is enc) or a signed successor of it.
func restoredBundle(saved *org.TrustBundle, enc []byte, nb *org.TrustBundle) error {
	if b, err := nb.Marshal(); err == nil && bytes.Equal(b, enc) {
		return nil
	}
	if err := successor(saved, nb); err != nil {
		return fmt.Errorf("%w: %w", ErrStateBundle, err)
	}
	if err := nb.Verify(saved.CA, saved.Tenant); err != nil {
		return fmt.Errorf("%w: not signed by the saved bundle's CA: %w", ErrStateBundle, err)
	}
	return nil
}

func readMonitor(s *cryptobyte.String) (org.UserID, *monitorState, error) {
	var u org.UserID
	ms := &monitorState{devices: map[org.DeviceID]*monitoredDevice{}}
	var devs cryptobyte.String
	if !s.CopyBytes(u[:]) || !s.CopyBytes(ms.self[:]) || !s.ReadUint32(&ms.pos.Version) ||
		!s.CopyBytes(ms.pos.Commitment[:]) || !s.ReadUint64(&ms.pos.Epoch) || !s.ReadUint64(&ms.pos.Head.Seq) ||
		!s.CopyBytes(ms.pos.Head.Hash[:]) || !s.ReadUint64(&ms.verified) || !s.ReadUint24LengthPrefixed(&devs) ||
		u.IsZero() || ms.self.IsZero() || ms.pos.Version == 0 || ms.pos.Epoch > MaxEpoch || ms.pos.Head.Seq == 0 ||
		ms.verified > MaxEpoch {
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
