package service

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/store"
)

// Key rotations (docs/spec/directory-api.md §Key rotations): the CA key and
// the log key are replaced under dual control. An admin asks for a
// proposal: the service takes a new key from the tenant's KeyStore, which
// stores it, and returns the unsigned trust bundle that names it. At least
// the roster's threshold of admins then approve that bundle; the tenant
// signs it (org.Tenant.RotateCA, RotateLogKey) and the next epoch
// publishes it. A new log key takes over from the epoch after
// (docs/spec/directory.md §Trust bundle changes); the checkpoint of the
// publishing epoch, signed by the old key, announces it to the witnesses
// (docs/spec/tlog.md §Log key rotation).

// keyProposal is a rotation under approval: the new key, the proposed
// bundle naming it and the approvals lodged so far.
type keyProposal struct {
	bundle    *org.TrustBundle
	enc       []byte // MarshalProposal(bundle)
	ca        org.Signer
	log       *keys.LogPrivateKey
	key       string // the new key's text encoding, for admins
	fp        string // hex SHA-256 of its binary encoding, for logs
	approvals []*org.Approval
	expires   time.Time
}

// fingerprint is the hex SHA-256 of a key's binary encoding, as admin
// tools show it.
func fingerprint(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// loadOrg reads the tenant's state from the store's records, one at a
// time (org.TenantLoader), with the CA signer, among those the service
// holds, that its trust bundle names.
func (t *Tenant) loadOrg(ctx context.Context) (*org.Tenant, error) {
	l := org.NewTenantLoader(t.userValueReader(ctx))
	err := t.st.TenantRecords(ctx, t.id, func(k store.TenantKey, v []byte) error { return l.Add(org.StateKey(k), v) })
	if err != nil {
		return nil, fmt.Errorf("reading state: %w", err)
	}
	for _, ca := range t.cas {
		ot, err := l.Finish(ca)
		if err == nil {
			return ot, nil
		}
		if !errors.Is(err, org.ErrSignerMismatch) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%w: no CA key held for the tenant's trust bundle", org.ErrSignerMismatch)
}

// logKey returns the private log key of pub, or nil.
func (t *Tenant) logKey(pub *keys.LogPublicKey) *keys.LogPrivateKey {
	for _, k := range t.logKeys {
		if k.Public().Equal(pub) {
			return k
		}
	}
	return nil
}

// checkpointKeys returns the key that signs the checkpoint of the epoch
// being committed, the published bundle's, and the new log key the
// checkpoint announces if the epoch publishes a bundle with another one.
// t.mu is held, after t.org.Publish.
func (t *Tenant) checkpointKeys() (*keys.LogPrivateKey, *keys.LogPublicKey, error) {
	pub := t.trust.Load().bundle.Log
	signer := t.logKey(pub)
	if signer == nil {
		return nil, nil, errors.New("service: no private key for the published log key")
	}
	nb := t.org.TrustBundle()
	if nb.Log.Equal(pub) {
		return signer, nil, nil
	}
	if t.logKey(nb.Log) == nil {
		return nil, nil, errors.New("service: no private key for the new log key")
	}
	return signer, nb.Log, nil
}

// newTrustInfo returns the trust of bundle b with the roster r.
func newTrustInfo(b *org.TrustBundle, r *org.AdminRoster) (*trustInfo, error) {
	enc, err := b.Marshal()
	if err != nil {
		return nil, err
	}
	vcfg, err := kt.VerifierConfig(b, 100*365*24*time.Hour, 0)
	if err != nil {
		return nil, err
	}
	return &trustInfo{bundle: b, enc: enc, vcfg: vcfg, roster: r}, nil
}

// loadTrust sets the trust of a tenant restored from the store at a head
// of headSize: its bundle, and the bundle before it, which the store keeps
// as the previous version of the trust-bundle label, for the checkpoints
// up to the one of the epoch that published the current bundle.
func (t *Tenant) loadTrust(ctx context.Context, headSize uint64) error {
	ti, err := newTrustInfo(t.org.TrustBundle(), t.org.Roster())
	if err != nil {
		return err
	}
	alpha, err := kt.OrgAlpha(t.id, org.OrgLabelTrustBundle)
	if err != nil {
		return err
	}
	label, _ := t.label(alpha)
	v, err := t.st.LatestVersion(ctx, label)
	if err != nil {
		return err
	}
	if v == 0 {
		return fmt.Errorf("%w: no published trust bundle", store.ErrCorrupt)
	}
	latest, err := t.record(ctx, label, v)
	if err != nil {
		return err
	}
	if !bytes.Equal(latest.Value, ti.enc) {
		return fmt.Errorf("%w: the published trust bundle is not the tenant state's", store.ErrCorrupt)
	}
	if v > 1 {
		rec, err := t.record(ctx, label, v-1)
		if err != nil {
			return err
		}
		pb, err := org.ParseTrustBundle(rec.Value)
		if err != nil {
			return fmt.Errorf("%w: previous trust bundle: %v", store.ErrCorrupt, err)
		}
		if ti.prev, err = newTrustInfo(pb, nil); err != nil {
			return err
		}
		ti.from = latest.Epoch + 2
	}
	if ti.from > headSize+1 {
		return fmt.Errorf("%w: trust bundle published after the head", store.ErrCorrupt)
	}
	t.trust.Store(ti)
	return nil
}

// logSignedOnly returns note with its log signature lines only: the
// checkpoint the log signed, without cosignatures.
func logSignedOnly(note []byte, origin string) []byte {
	i := bytes.Index(note, []byte("\n\n"))
	if i < 0 {
		return bytes.Clone(note)
	}
	out := bytes.Clone(note[:i+2])
	prefix := []byte("— " + origin + " ")
	for _, l := range bytes.SplitAfter(note[i+2:], []byte("\n")) {
		if bytes.HasPrefix(l, prefix) {
			out = append(out, l...)
		}
	}
	return out
}

func noteSize(note []byte) (uint64, error) {
	i := bytes.Index(note, []byte("\n\n"))
	if i < 0 {
		return 0, tlog.ErrMalformed
	}
	cp, err := tlog.ParseCheckpoint(note[:i+1])
	if err != nil {
		return 0, err
	}
	return cp.Size, nil
}

// keep tells the key store, and the service's own key lists, which keys
// may still be needed: the published bundle's, the approved one the next
// epoch publishes, and those of rotations under approval. t.mu is held
// (or the tenant is not shared yet).
func (t *Tenant) keep() {
	b := t.trust.Load().bundle
	cas := []*keys.OrgPublicKey{b.CA}
	logs := []*keys.LogPublicKey{b.Log}
	if nb := t.org.TrustBundle(); nb != b {
		// Approved, published by the next epoch (also after a restart).
		cas = append(cas, nb.CA)
		logs = append(logs, nb.Log)
	}
	if p := t.caProposal; p != nil {
		cas = append(cas, p.ca.Public())
	}
	if p := t.logProposal; p != nil {
		logs = append(logs, p.log.Public())
	}
	var keptCA []org.Signer
	for _, s := range t.cas {
		for _, k := range cas {
			if s.Public().Equal(k) {
				keptCA = append(keptCA, s)
				break
			}
		}
	}
	var keptLog []*keys.LogPrivateKey
	for _, l := range t.logKeys {
		for _, k := range logs {
			if l.Public().Equal(k) {
				keptLog = append(keptLog, l)
				break
			}
		}
	}
	t.cas, t.logKeys = keptCA, keptLog
	if t.keyStore != nil {
		if err := t.keyStore.Keep(cas, logs); err != nil {
			t.log.Error("key store: dropping retired keys", slog.Any("err", err))
		}
	}
}

// rotation is one kind of key rotation.
type rotation struct {
	kind    byte // its lodged record kind (lodged.go)
	slot    func(t *Tenant) **keyProposal
	propose func(t *Tenant, now time.Time) (*keyProposal, error)
	apply   func(t *Tenant, kp *keyProposal, now time.Time, out *TrustBundleApproveResponse) error
}

var logRotation = rotation{
	kind: lodgedRotateLog,
	slot: func(t *Tenant) **keyProposal { return &t.logProposal },
	propose: func(t *Tenant, now time.Time) (*keyProposal, error) {
		next, err := t.keyStore.NewLogKey()
		if err != nil {
			return nil, err
		}
		t.logKeys = append(t.logKeys, next)
		b, err := t.org.ProposeLogKey(next.Public(), now)
		if err != nil {
			return nil, err
		}
		return &keyProposal{bundle: b, log: next, key: next.Public().String(), fp: fingerprint(next.Public().Bytes())}, nil
	},
	apply: func(t *Tenant, kp *keyProposal, now time.Time, out *TrustBundleApproveResponse) error {
		nb, err := t.org.RotateLogKey(kp.bundle, kp.approvals)
		if err != nil {
			return err
		}
		out.Sequence = nb.Sequence
		return nil
	},
}

var caRotation = rotation{
	kind: lodgedRotateCA,
	slot: func(t *Tenant) **keyProposal { return &t.caProposal },
	propose: func(t *Tenant, now time.Time) (*keyProposal, error) {
		next, err := t.keyStore.NewCA()
		if err != nil {
			return nil, err
		}
		t.cas = append(t.cas, next)
		b, err := t.org.ProposeCA(next.Public(), now)
		if err != nil {
			return nil, err
		}
		return &keyProposal{bundle: b, ca: next, key: next.Public().String(), fp: fingerprint(next.Public().Bytes())}, nil
	},
	apply: func(t *Tenant, kp *keyProposal, now time.Time, out *TrustBundleApproveResponse) error {
		res, err := t.org.RotateCA(kp.bundle, kp.approvals, kp.ca, now)
		if err != nil {
			return err
		}
		for h := range t.approvals { // enrolment requests name the old bundle
			t.unlodge(lodgedKey(lodgedDevice, h))
		}
		clear(t.approvals)
		out.Sequence, out.Certificates = res.TrustBundle.Sequence, len(res.Certificates)
		return nil
	},
}

// opRotateLogKey is admin/rotate-log-key (§Key rotations).
func opRotateLogKey(s *Service, t *Tenant, p *principal, body []byte, now time.Time) (any, error) {
	return rotate(s, t, p, body, now, &logRotation)
}

// opRotateCA is admin/rotate-ca (§Key rotations).
func opRotateCA(s *Service, t *Tenant, p *principal, body []byte, now time.Time) (any, error) {
	return rotate(s, t, p, body, now, &caRotation)
}

// rotate runs a rotation request: without a bundle, it returns the
// rotation under approval, proposing one if there is none; with the
// pending proposal and the requesting admin's own approval of it, it
// lodges the approval, and applies the rotation once the roster's
// threshold of admins approved. t.mu is held.
func rotate(s *Service, t *Tenant, p *principal, body []byte, now time.Time, r *rotation) (any, error) {
	var in RotateRequest
	if len(body) > 0 {
		if err := decodeAdmin(body, &in); err != nil {
			return nil, err
		}
	}
	if t.keyStore == nil {
		return nil, &apiError{http.StatusNotImplemented, "key rotations need a key store, and this service has none configured"}
	}
	slot := r.slot(t)
	if kp := *slot; kp != nil && (!now.Before(kp.expires) || kp.bundle.Sequence != t.org.TrustBundle().Sequence+1) {
		*slot = nil // expired, or another bundle change came first
		t.unlodge(lodgedKey(r.kind, sha256.Sum256(kp.enc)))
	}
	threshold := t.org.Roster().Threshold
	if in.Bundle == nil && in.Approval == nil {
		if *slot == nil {
			kp, err := r.propose(t, now)
			if err != nil {
				return nil, err
			}
			if kp.enc, err = MarshalProposal(kp.bundle); err != nil {
				return nil, err
			}
			kp.expires = now.Add(t.org.Config().MaxCodeLifetime)
			// Lodged before it is answered, so that the approvals that
			// follow find it after a restart.
			if err := t.lodge(lodgedKey(r.kind, sha256.Sum256(kp.enc)), &lodgedApprovals{proposal: kp.enc}, kp.expires, now); err != nil {
				return nil, err
			}
			*slot = kp
			t.log.Info("key rotation proposed", slog.String("key_fingerprint", kp.fp), slog.Uint64("sequence", kp.bundle.Sequence))
		}
		kp := *slot
		return &RotationProposal{Bundle: kp.enc, Key: kp.key, Sequence: kp.bundle.Sequence, Approvals: len(kp.approvals), Threshold: threshold}, nil
	}
	if in.Bundle == nil || in.Approval == nil {
		return nil, badRequest("give both the proposed bundle and an approval, or neither")
	}
	kp := *slot
	prop, err := org.ParseTrustBundle(in.Bundle)
	if err != nil {
		return nil, badRequest("bad proposed trust bundle")
	}
	if enc, err := MarshalProposal(prop); err != nil || kp == nil || !bytes.Equal(enc, kp.enc) {
		return nil, &apiError{http.StatusConflict, "not the rotation under approval: ask for the proposal again"}
	}
	ap, err := org.ParseApproval(in.Approval)
	if err != nil {
		return nil, badRequest("bad approval")
	}
	if ap.Kind != org.ApproverAdmin || ap.Signer != p.id {
		return nil, &apiError{http.StatusForbidden, "an admin lodges only its own approval"}
	}
	msg, err := org.TrustBundleApprovalMessage(kp.bundle)
	if err != nil {
		return nil, err
	}
	if k := t.trust.Load().roster.Admin(p.id); k == nil || k.Verify(msg, ap.Signature) != nil {
		return nil, badRequest("approval does not verify for this bundle")
	}
	again := false
	for _, a := range kp.approvals {
		if a.Signer == ap.Signer {
			again = true
		}
	}
	if again && len(kp.approvals) < threshold {
		return nil, &apiError{http.StatusConflict, "already approved"}
	}
	if !again {
		if len(kp.approvals) >= maxLodgedApprovals {
			return nil, &apiError{http.StatusConflict, "too many approvals"}
		}
		aps := append(slices.Clone(kp.approvals), ap)
		if err := t.lodge(lodgedKey(r.kind, sha256.Sum256(kp.enc)), &lodgedApprovals{proposal: kp.enc, approvals: aps}, kp.expires, now); err != nil {
			return nil, err
		}
		kp.approvals = aps
	}
	out := &TrustBundleApproveResponse{Approvals: len(kp.approvals), Threshold: threshold}
	if out.Approvals < threshold {
		return out, nil
	}
	// Applied once; a refusal (pending timeline entries) keeps the
	// approvals, and any approving admin may try again.
	if err := r.apply(t, kp, now, out); err != nil {
		return nil, err
	}
	*slot = nil
	t.unlodge(lodgedKey(r.kind, sha256.Sum256(kp.enc)))
	t.dirty = true
	out.Applied, out.PendingEpoch = true, t.Head().Epoch+1
	t.log.Info("key rotation approved", slog.String("key_fingerprint", kp.fp), slog.Uint64("sequence", out.Sequence))
	return out, nil
}
