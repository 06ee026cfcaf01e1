package org

import (
	"bytes"
	"crypto/subtle"
	"slices"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/vrf"
	"github.com/moat-im/moat/internal/pqc"
	"golang.org/x/crypto/cryptobyte"
)

// WitnessKey is a transparency-log witness's public key
// (docs/spec/org.md §Witness keys): its C2SP signed-note key name, its
// Ed25519 cosigning key (C2SP tlog-cosignature, required) and optionally its
// ML-DSA-44 cosigning key.
type WitnessKey struct {
	Name    string
	Ed25519 []byte // 32 bytes
	MLDSA44 []byte // nil, or a 1312-byte ML-DSA-44 public key
}

func (w *WitnessKey) check() error {
	if !validKeyName(w.Name) {
		return ErrMalformed
	}
	if err := checkEd25519(w.Ed25519); err != nil {
		return err
	}
	if len(w.MLDSA44) != 0 {
		if _, err := pqc.ParseMLDSA44PublicKey(w.MLDSA44); err != nil {
			return ErrMalformed
		}
	}
	return nil
}

// WitnessSet is a list of witnesses and the number of their cosignatures a
// client requires (§Witness keys). Witnesses are sorted by name; names and
// Ed25519 keys are distinct; 1 ≤ Quorum ≤ len(Witnesses) ≤ 255, and the
// quorum is a strict majority: 2·Quorum > len(Witnesses) (ErrWitnessQuorum
// otherwise), so that two disjoint sets of witnesses cannot both make a
// quorum.
type WitnessSet struct {
	Witnesses []WitnessKey
	Quorum    int
}

//	struct {
//	    opaque name<1..255>;
//	    opaque ed25519_key[32];
//	    opaque mldsa44_key<0..2^16-1>;    /* empty or 1312 bytes */
//	} WitnessKey;
//
//	struct {
//	    WitnessKey witnesses<1..2^24-1>;  /* sorted by name */
//	    uint8 quorum;
//	} WitnessSet;

func (ws *WitnessSet) check() error {
	n := len(ws.Witnesses)
	if n == 0 || n > 255 || ws.Quorum < 1 || ws.Quorum > n {
		return ErrMalformed
	}
	if 2*ws.Quorum <= n {
		return ErrWitnessQuorum
	}
	for i := range ws.Witnesses {
		if err := ws.Witnesses[i].check(); err != nil {
			return err
		}
		if i > 0 && ws.Witnesses[i-1].Name >= ws.Witnesses[i].Name {
			return ErrMalformed
		}
		for j := range i {
			if bytes.Equal(ws.Witnesses[j].Ed25519, ws.Witnesses[i].Ed25519) {
				return ErrMalformed
			}
		}
	}
	return nil
}

func addWitnessSet(b *cryptobyte.Builder, ws *WitnessSet) {
	if ws.check() != nil {
		b.SetError(errEncode)
		return
	}
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, w := range ws.Witnesses {
			addText(b, w.Name)
			b.AddBytes(w.Ed25519)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(w.MLDSA44) })
		}
	})
	b.AddUint8(uint8(ws.Quorum))
}

func readWitnessSet(s *cryptobyte.String, ws *WitnessSet) error {
	var list cryptobyte.String
	var q uint8
	if !s.ReadUint24LengthPrefixed(&list) || !s.ReadUint8(&q) {
		return ErrMalformed
	}
	ws.Witnesses = nil
	for !list.Empty() {
		var w WitnessKey
		var ed []byte
		var pq cryptobyte.String
		if !readText(&list, &w.Name) || !list.ReadBytes(&ed, 32) || !list.ReadUint16LengthPrefixed(&pq) {
			return ErrMalformed
		}
		w.Ed25519 = clone(ed)
		if len(pq) > 0 {
			w.MLDSA44 = clone(pq)
		}
		ws.Witnesses = append(ws.Witnesses, w)
		if len(ws.Witnesses) > 255 {
			return ErrMalformed
		}
	}
	ws.Quorum = int(q)
	return ws.check()
}

// SortWitnesses sorts witnesses by name, as the encoding requires.
func SortWitnesses(ws []WitnessKey) {
	slices.SortFunc(ws, func(a, b WitnessKey) int { return bytes.Compare([]byte(a.Name), []byte(b.Name)) })
}

// TrustBundle is a device's trust anchors (docs/spec/org.md §Trust
// bundles): the tenant's CA key, the key-directory log's origin and key,
// the directory's VRF key, and the witnesses with their quorum. A new
// device receives it at enrolment and checks it against the fingerprint in
// its enrolment code; later versions come through the directory, signed by
// the CA key they name, which the client must already trust.
type TrustBundle struct {
	Tenant    TenantID
	Sequence  uint64 // 1 for the first bundle, +1 for each change
	IssuedAt  time.Time
	CA        *keys.OrgPublicKey
	LogOrigin string // the log's checkpoint origin line (a note key name)
	Log       *keys.LogPublicKey
	// VRF is the key directory's VRF public key (docs/spec/vrf.md): map
	// labels are its outputs (docs/spec/directory.md §Labels), so a client
	// that pins it can check every label the directory proves.
	VRF       *vrf.PublicKey
	Witnesses WitnessSet
	Signature []byte // by CA, over "moat/v1/org/trust-bundle" || 0x00 || body
}

//	struct {
//	    uint8  type = 0x31;
//	    uint8  version = 1;
//	    opaque tenant[16];
//	    uint64 sequence;
//	    uint64 issued_at;
//	    opaque ca_key[1985];              /* PublicKey, tag 0x10 */
//	    opaque log_origin<1..255>;
//	    opaque log_key[1985];             /* PublicKey, tag 0x12 */
//	    opaque vrf_key[32];               /* ECVRF PK_string, docs/spec/vrf.md */
//	    WitnessSet witnesses;
//	} TrustBundleBody;
//
//	struct { TrustBundleBody body; opaque signature[3373]; } TrustBundle;

func (t *TrustBundle) body() ([]byte, error) {
	return build(func(b *cryptobyte.Builder) {
		if t.Tenant.IsZero() || t.Sequence == 0 || !validKeyName(t.LogOrigin) {
			b.SetError(errEncode)
		}
		b.AddUint8(typeTrustBundle)
		b.AddUint8(version1)
		addID(b, t.Tenant[:])
		b.AddUint64(t.Sequence)
		addTime(b, t.IssuedAt)
		addKey(b, t.CA, t.CA == nil)
		addText(b, t.LogOrigin)
		addKey(b, t.Log, t.Log == nil)
		addKey(b, t.VRF, t.VRF == nil)
		addWitnessSet(b, &t.Witnesses)
	})
}

// Marshal returns the TrustBundle encoding.
func (t *TrustBundle) Marshal() ([]byte, error) {
	body, err := t.body()
	if err != nil {
		return nil, err
	}
	return joinSigned(body, t.Signature)
}

// Fingerprint returns the bundle's fingerprint, SHA-256 of
// "moat/v1/org/fingerprint/trust-bundle" || 0x00 || TrustBundleBody. It
// covers every trust anchor, the tenant and the sequence number, and not
// the signature.
func (t *TrustBundle) Fingerprint() ([32]byte, error) {
	body, err := t.body()
	if err != nil {
		return [32]byte{}, err
	}
	return sha256Sum(labelled(labelTrustFingerprint, body)), nil
}

// ParseTrustBundle parses a TrustBundle encoding strictly.
func ParseTrustBundle(data []byte) (*TrustBundle, error) {
	t, err := parseTrustBundle(data)
	if err != nil {
		return nil, parseErr("trust bundle", err)
	}
	return t, nil
}

func parseTrustBundle(data []byte) (*TrustBundle, error) {
	body, sig, ok := splitSigned(data)
	if !ok {
		return nil, ErrMalformed
	}
	s := cryptobyte.String(body)
	t := &TrustBundle{Signature: clone(sig)}
	var typ, ver uint8
	if !s.ReadUint8(&typ) || typ != typeTrustBundle || !s.ReadUint8(&ver) || ver != version1 ||
		!readID(&s, (*[16]byte)(&t.Tenant)) || !s.ReadUint64(&t.Sequence) || !readTime(&s, &t.IssuedAt) {
		return nil, ErrMalformed
	}
	var err error
	if t.CA, err = readOrgKey(&s); err != nil {
		return nil, err
	}
	var logRaw []byte
	if !readText(&s, &t.LogOrigin) || !validKeyName(t.LogOrigin) || !s.ReadBytes(&logRaw, hybridTagged) {
		return nil, ErrMalformed
	}
	if t.Log, err = keys.ParseLogPublicKey(logRaw); err != nil {
		return nil, &KeyError{err}
	}
	var vrfRaw []byte
	if !s.ReadBytes(&vrfRaw, vrf.PublicKeySize) {
		return nil, ErrMalformed
	}
	if t.VRF, err = vrf.NewPublicKey(vrfRaw); err != nil {
		return nil, &KeyError{err}
	}
	if err := readWitnessSet(&s, &t.Witnesses); err != nil {
		return nil, err
	}
	if !s.Empty() || t.Tenant.IsZero() || t.Sequence == 0 {
		return nil, ErrMalformed
	}
	return t, nil
}

// Verify checks that the bundle is tenant's and signed by trustedCA, which
// must also be the CA key the bundle names.
func (t *TrustBundle) Verify(trustedCA *keys.OrgPublicKey, tenant TenantID) error {
	if t.Tenant != tenant {
		return ErrWrongTenant
	}
	if trustedCA == nil || t.CA == nil || !t.CA.Equal(trustedCA) {
		return ErrUnknownIssuer
	}
	body, err := t.body()
	if err != nil {
		return ErrMalformed
	}
	return verifyCA(trustedCA, labelTrustBundle, body, t.Signature)
}

// CheckTrustBundle is a new device's trust bootstrap (§Trust bootstrap): it
// parses bundle, checks that its fingerprint equals the one carried in the
// enrolment code and that it names the code's tenant, and checks its
// signature under the CA key it names. Only then may the device pin the
// bundle's CA, log and witness keys.
func CheckTrustBundle(code *EnrolmentCode, bundle []byte) (*TrustBundle, error) {
	t, err := ParseTrustBundle(bundle)
	if err != nil {
		return nil, err
	}
	fp, err := t.Fingerprint()
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(fp[:], code.Fingerprint[:]) != 1 {
		return nil, ErrFingerprintMismatch
	}
	if err := t.Verify(t.CA, code.Tenant); err != nil {
		return nil, err
	}
	return t, nil
}
