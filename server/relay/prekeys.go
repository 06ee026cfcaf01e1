package relay

import (
	"errors"
	"net/http"
	"time"

	"github.com/moat-im/moat/crypto/bundle"
	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/pqxdh"
	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/internal/httpserve"
	"github.com/moat-im/moat/server/store/prekey"
)

// Prekeys (docs/spec/api.md §Prekeys, docs/spec/bundle.md). The relay
// stores each item of a verified upload as its own record: a PrekeyUpload
// encoding holding that item alone, so that what it serves is what the
// device signed, parsed again by the strict parser of crypto/bundle.

func prekeyID(mb sealed.MailboxID) prekey.ID { return prekey.ID(mb) }

// uploadItems splits a verified upload into store items.
func uploadItems(u *bundle.Upload) ([]prekey.Item, error) {
	var items []prekey.Item
	add := func(k prekey.Kind, id uint32, one *bundle.Upload) error {
		b, err := one.Marshal()
		if err != nil {
			return err
		}
		items = append(items, prekey.Item{Kind: k, ID: id, Record: b})
		return nil
	}
	if p := u.SignedPrekey; p != nil {
		if err := add(prekey.SignedPrekey, p.ID, &bundle.Upload{SignedPrekey: p}); err != nil {
			return nil, err
		}
	}
	for _, p := range u.OneTimePrekeys {
		if err := add(prekey.OneTimePrekey, p.ID, &bundle.Upload{OneTimePrekeys: []*keys.SignedOneTimePrekey{p}}); err != nil {
			return nil, err
		}
	}
	for _, p := range u.KEMPrekeys {
		k := prekey.OneTimeKEM
		if p.LastResort {
			k = prekey.LastResortKEM
		}
		if err := add(k, p.ID, &bundle.Upload{KEMPrekeys: []*keys.KEMPrekey{p}}); err != nil {
			return nil, err
		}
	}
	if p := u.SealedSenderKey; p != nil {
		if err := add(prekey.SealedSenderKey, p.ID, &bundle.Upload{SealedSenderKey: p}); err != nil {
			return nil, err
		}
	}
	for _, kp := range u.KeyPackages {
		// KeyPackages carry no id: putPrekeys numbers them.
		if err := add(prekey.KeyPackage, 0, &bundle.Upload{KeyPackages: []*bundle.KeyPackageItem{kp}}); err != nil {
			return nil, err
		}
	}
	return items, nil
}

func (r *Relay) prekeyError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, prekey.ErrInvalid):
		httpserve.WriteError(w, http.StatusBadRequest, "invalid request")
	case errors.Is(err, prekey.ErrQuota):
		httpserve.WriteError(w, http.StatusInsufficientStorage, "too many prekeys held")
	case errors.Is(err, prekey.ErrUnavailable), errors.Is(err, prekey.ErrClosed):
		r.met.unavailable.Inc()
		httpserve.Unavailable(w, 5*time.Second, "storage unavailable; try again")
	default:
		r.opts.Logger.Error("prekey store", "err", redactErr(err))
		httpserve.WriteError(w, http.StatusInternalServerError, "internal error")
	}
}

// putPrekeys is PUT /relay/v1/devices/{mailbox}/prekeys with a
// PrekeyUpload: verified under the device's certified identity key, then
// stored whole or not at all.
func (r *Relay) putPrekeys(w http.ResponseWriter, req *http.Request, ss *session) {
	body, ok := httpserve.ReadBody(w, req, bundle.MaxUploadSize)
	if !ok {
		return
	}
	u, err := bundle.ParseUpload(body)
	if err != nil {
		r.met.uploads.WithLabelValues("malformed").Inc()
		httpserve.WriteError(w, http.StatusBadRequest, "malformed upload")
		return
	}
	dev, err := r.opts.Directory.Device(ss.Tenant, ss.Device, r.opts.Now())
	if err != nil {
		unauthorized(w, "device no longer certified")
		return
	}
	if err := u.Verify(dev.Identity.Signing); err != nil {
		r.met.uploads.WithLabelValues("bad-signature").Inc()
		httpserve.WriteError(w, http.StatusBadRequest, "a prekey signature does not verify")
		return
	}
	items, err := uploadItems(u)
	if err != nil {
		httpserve.WriteError(w, http.StatusInternalServerError, "internal error")
		return
	}
	// KeyPackages: ids from the upload's time in milliseconds (modulo
	// 2^32, about 49 days), so that the pool mostly hands out older ones
	// first and a later upload does not replace an earlier one.
	seq := uint32(r.opts.Now().UnixMilli())
	for i := range items {
		if items[i].Kind == prekey.KeyPackage {
			items[i].ID = seq
			seq++
		}
	}
	if err := r.opts.Prekeys.Put(req.Context(), prekeyID(ss.Mailbox()), items); err != nil {
		r.met.uploads.WithLabelValues("store-error").Inc()
		r.prekeyError(w, err)
		return
	}
	r.met.uploads.WithLabelValues("ok").Inc()
	w.WriteHeader(http.StatusNoContent)
}

// PrekeyStatus is the answer of GET /relay/v1/devices/{mailbox}/prekeys:
// what the device has published, and the flags that ask it to replenish.
type PrekeyStatus struct {
	SignedPrekey    bool `json:"signed_prekey"`
	LastResortKEM   bool `json:"last_resort_kem_prekey"`
	SealedSenderKey bool `json:"sealed_sender_key"`
	OneTimePrekeys  int  `json:"one_time_prekeys"`
	OneTimeKEM      int  `json:"one_time_kem_prekeys"`
	KeyPackages     int  `json:"key_packages"`
	// LastResortUses counts the bundles served with the last-resort KEM
	// prekey since the device last uploaded one-time KEM prekeys (T24).
	LastResortUses uint64 `json:"last_resort_kem_uses"`
	// OneTimeExhausted counts bundles served without a one-time X25519
	// prekey since the last upload of some.
	OneTimeExhausted uint64 `json:"one_time_prekeys_exhausted"`
	// KeyPackagesExhausted counts KeyPackage requests refused for want of
	// one since the last upload.
	KeyPackagesExhausted uint64 `json:"key_packages_exhausted"`
}

// getPrekeyStatus is GET /relay/v1/devices/{mailbox}/prekeys.
func (r *Relay) getPrekeyStatus(w http.ResponseWriter, req *http.Request, ss *session) {
	st, err := r.opts.Prekeys.Status(req.Context(), prekeyID(ss.Mailbox()))
	if err != nil {
		r.prekeyError(w, err)
		return
	}
	writeJSON(w, &PrekeyStatus{
		SignedPrekey: st.Has[prekey.SignedPrekey], LastResortKEM: st.Has[prekey.LastResortKEM],
		SealedSenderKey: st.Has[prekey.SealedSenderKey],
		OneTimePrekeys:  st.Pools[prekey.OneTimePrekey], OneTimeKEM: st.Pools[prekey.OneTimeKEM],
		KeyPackages:    st.Pools[prekey.KeyPackage],
		LastResortUses: st.Exhausted[prekey.OneTimeKEM], OneTimeExhausted: st.Exhausted[prekey.OneTimePrekey],
		KeyPackagesExhausted: st.Exhausted[prekey.KeyPackage],
	})
}

// target checks that the device whose keys are asked for is active, and
// the per-target limit. It returns the device or writes the response.
func (r *Relay) target(w http.ResponseWriter, req *http.Request, mb sealed.MailboxID) *Device {
	// The per-target limit comes first, so that a 429 does not tell an
	// existing device from an absent one (existence.go).
	if ok, wait := r.bundleLimit.Allow(string(mb[:])); !ok {
		r.met.rateLimited.WithLabelValues("bundle").Inc()
		httpserve.TooMany(w, wait)
		return nil
	}
	dev, err := r.opts.Directory.Device(mb.Tenant(), mb.Device(), r.opts.Now())
	if err != nil {
		if errors.Is(err, ErrUnknownDevice) {
			r.forgetRevoked(req.Context(), mb) // revoked.go
			httpserve.WriteError(w, http.StatusNotFound, "no such device")
		} else {
			httpserve.Unavailable(w, 5*time.Second, "device directory unavailable")
		}
		return nil
	}
	return dev
}

// getBundle is GET /relay/v1/devices/{mailbox}/bundle: a BundleResponse
// with the device's signed prekey, a one-time X25519 prekey if one is
// left, a one-time KEM prekey or else the last-resort one (flagged inside
// the signed item, and counted for the device), and its sealed-sender key.
// Each one-time item is handed out once.
func (r *Relay) getBundle(w http.ResponseWriter, req *http.Request, ss *session, mb sealed.MailboxID) {
	dev := r.target(w, req, mb)
	if dev == nil {
		return
	}
	id := prekeyID(mb)
	st, err := r.opts.Prekeys.Status(req.Context(), id)
	if err != nil {
		r.prekeyError(w, err)
		return
	}
	if !st.Has[prekey.SignedPrekey] || !st.Has[prekey.SealedSenderKey] || (!st.Has[prekey.LastResortKEM] && st.Pools[prekey.OneTimeKEM] == 0) {
		httpserve.WriteError(w, http.StatusNotFound, "the device has published no complete bundle")
		return
	}
	items, err := r.opts.Prekeys.Take(req.Context(), id,
		[]prekey.Kind{prekey.SignedPrekey, prekey.SealedSenderKey, prekey.LastResortKEM},
		[]prekey.Kind{prekey.OneTimePrekey, prekey.OneTimeKEM})
	if err != nil {
		r.prekeyError(w, err)
		return
	}
	b := &pqxdh.Bundle{Identity: dev.Identity}
	resp := &bundle.Response{Bundle: b}
	var lastResort *keys.KEMPrekey
	for _, it := range items {
		u, err := bundle.ParseUpload(it.Record)
		if err != nil {
			r.opts.Logger.Error("ALARM: stored prekey record does not parse", "kind", int(it.Kind))
			httpserve.WriteError(w, http.StatusInternalServerError, "internal error")
			return
		}
		switch it.Kind {
		case prekey.SignedPrekey:
			b.SignedPrekey = u.SignedPrekey
		case prekey.SealedSenderKey:
			resp.SealedSenderKey = u.SealedSenderKey
		case prekey.LastResortKEM:
			lastResort = u.KEMPrekeys[0]
		case prekey.OneTimeKEM:
			b.KEMPrekey = u.KEMPrekeys[0]
		case prekey.OneTimePrekey:
			p := u.OneTimePrekeys[0]
			b.OneTimePrekey = &pqxdh.OneTimePrekey{ID: p.ID, Key: p.Key}
			resp.OneTimePrekeySignature = p.Signature
		}
	}
	kind := "one-time"
	if b.KEMPrekey == nil {
		b.KEMPrekey, kind = lastResort, "last-resort"
	}
	if b.SignedPrekey == nil || b.KEMPrekey == nil || resp.SealedSenderKey == nil {
		httpserve.WriteError(w, http.StatusNotFound, "the device has published no complete bundle")
		return
	}
	out, err := resp.Marshal()
	if err != nil {
		httpserve.WriteError(w, http.StatusInternalServerError, "internal error")
		return
	}
	r.met.bundles.WithLabelValues(kind).Inc()
	writeBinary(w, out)
}

// getKeyPackage is GET /relay/v1/devices/{mailbox}/key-package: one MLS
// KeyPackage of the device with its identity signature (a
// KeyPackageItem, docs/spec/bundle.md §KeyPackages), handed out once. None left is 404, counted
// for the device (T24).
func (r *Relay) getKeyPackage(w http.ResponseWriter, req *http.Request, ss *session, mb sealed.MailboxID) {
	if r.target(w, req, mb) == nil {
		return
	}
	items, err := r.opts.Prekeys.Take(req.Context(), prekeyID(mb), nil, []prekey.Kind{prekey.KeyPackage})
	if err != nil {
		r.prekeyError(w, err)
		return
	}
	if len(items) == 0 {
		httpserve.WriteError(w, http.StatusNotFound, "no KeyPackage left")
		return
	}
	u, err := bundle.ParseUpload(items[0].Record)
	if err != nil || len(u.KeyPackages) != 1 {
		httpserve.WriteError(w, http.StatusInternalServerError, "internal error")
		return
	}
	out, err := u.KeyPackages[0].Marshal()
	if err != nil {
		httpserve.WriteError(w, http.StatusInternalServerError, "internal error")
		return
	}
	writeBinary(w, out) // a KeyPackageItem: the KeyPackage and its identity signature
}
