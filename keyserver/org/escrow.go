package org

import (
	"bytes"
	"crypto/ed25519"
	"crypto/mlkem"
	"crypto/subtle"
	"fmt"
	"io"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/internal/pqc"
	"golang.org/x/crypto/cryptobyte"
)

// Escrow policy (docs/spec/org.md §Escrow policy): the tenant's escrow
// auditors, the escrow rules of its conversation classes, the release
// log's witnesses and the escrow public keys of its key periods, signed by
// M of the N auditors and by the org CA. This package defines the
// statement, its auditor signatures and their verification; the escrow
// itself (key ceremony, shares, releases) is audit/'s.

// Auditor is one member of the escrow auditor set.
type Auditor struct {
	Name string
	// SigningKey is the auditor's hybrid signing key: Ed25519 (32 bytes)
	// then ML-DSA-65 (1952 bytes).
	SigningKey []byte
	// EncryptionKey is the auditor's X-Wing (ML-KEM-768 + X25519) public
	// key, 1216 bytes: the ML-KEM-768 encapsulation key then the X25519 key.
	EncryptionKey []byte
}

const (
	auditorSigningKeySize = ed25519.PublicKeySize + pqc.MLDSA65PublicKeySize
	// AuditorSignatureSize is the size of an auditor's signature: Ed25519
	// then ML-DSA-65.
	AuditorSignatureSize = ed25519.SignatureSize + pqc.MLDSA65SignatureSize
	// XWingPublicKeySize is the size of an X-Wing public key: an
	// ML-KEM-768 encapsulation key then an X25519 key.
	XWingPublicKeySize       = mlkem.EncapsulationKeySize768 + 32
	auditorEncryptionKeySize = XWingPublicKeySize
)

// checkXWing applies §Escrow policy to an X-Wing public key: the ML-KEM-768
// modulus check (FIPS 203) and the X25519 checks of keys.md.
func checkXWing(k []byte) error {
	if len(k) != XWingPublicKeySize {
		return ErrMalformed
	}
	if _, err := mlkem.NewEncapsulationKey768(k[:mlkem.EncapsulationKeySize768]); err != nil {
		return &KeyError{keys.ErrInvalidKEMKey}
	}
	if _, err := keys.NewIdentityDHPublicKey(k[mlkem.EncapsulationKeySize768:]); err != nil {
		return &KeyError{err}
	}
	return nil
}

func (a *Auditor) check() error {
	if !validText(a.Name) || len(a.SigningKey) != auditorSigningKeySize {
		return ErrMalformed
	}
	if _, _, err := parseHybridPublic(a.SigningKey); err != nil {
		return err
	}
	return checkXWing(a.EncryptionKey)
}

// DisclosureMode says when the people whose messages are released are told
// (§Escrow policy).
type DisclosureMode uint8

const (
	// DisclosureImmediate: members are notified when the release happens.
	DisclosureImmediate DisclosureMode = 0x01
	// DisclosureDelayed: notice may be delayed by at most MaxDelay, as a
	// commitment an independent checker holds the auditors to.
	DisclosureDelayed DisclosureMode = 0x02
)

// ConversationClass is an admin-assigned label of conversations, such as
// "trading", with its escrow rules.
type ConversationClass struct {
	Name       string
	Retention  time.Duration // > 0, whole seconds
	Disclosure DisclosureMode
	MaxDelay   time.Duration // 0 for DisclosureImmediate, > 0 for DisclosureDelayed
}

// EscrowKey is the escrow public key of one key period.
type EscrowKey struct {
	NotBefore time.Time // the period's first second
	NotAfter  time.Time // NotBefore + the policy's Period
	// PublicKey is the period's X-Wing public key (XWingPublicKeySize).
	PublicKey []byte
	// ShareHashes are the hashes of the period key's shares, one per
	// auditor, in the order of the policy's Auditors (audit/ defines
	// what they cover).
	ShareHashes [][32]byte
}

// AuditorSignature is an auditor's signature of an escrow policy: Auditor
// is the signer's index in the auditor list it belongs to (the policy's,
// or the previous policy's).
type AuditorSignature struct {
	Auditor   int
	Signature []byte // AuditorSignatureSize bytes
}

// EscrowPolicy is the tenant's escrow policy (§Escrow policy). The
// auditors sign everything but the Header (AuditorMessage); the org CA
// signs the whole. Header.Tenant is also the tenant the auditors sign.
type EscrowPolicy struct {
	Header
	// PolicyVersion counts the policies the auditors sign: 1 for the
	// first, +1 for each new one. A CA rotation re-signs the policy with a
	// new Header and the same PolicyVersion.
	PolicyVersion uint64
	Auditors      []Auditor // sorted by name; names and keys distinct
	M, N          int       // 2 ≤ M ≤ N = len(Auditors) ≤ 255
	Period        time.Duration
	Classes       []ConversationClass // sorted by name
	Witnesses     WitnessSet
	Keys          []EscrowKey // sorted by NotBefore, not overlapping
	// AuditorSignatures are by this policy's auditors, at least M of
	// them; PreviousSignatures by the previous policy's auditors, which
	// admit a new auditor set. Both sorted by Auditor.
	AuditorSignatures  []AuditorSignature
	PreviousSignatures []AuditorSignature
	Signature          []byte
}

//	struct {
//	    opaque name<1..255>;
//	    opaque signing_key[1984];       /* Ed25519 || ML-DSA-65 */
//	    opaque encryption_key[1216];    /* X-Wing: ML-KEM-768 ek || X25519 */
//	} Auditor;
//
//	struct {
//	    opaque name<1..255>;
//	    uint64 retention;               /* seconds, > 0 */
//	    DisclosureMode disclosure;
//	    uint64 max_delay;               /* seconds; 0 iff immediate */
//	} ConversationClass;
//
//	struct {
//	    uint64 not_before;
//	    uint64 not_after;               /* not_before + period */
//	    opaque public_key[1216];        /* X-Wing */
//	    opaque share_hashes<32..2^16-1>;/* n SHA-256 hashes */
//	} EscrowKey;
//
//	struct {
//	    opaque tenant[16];
//	    uint64 policy_version;          /* ≥ 1 */
//	    Auditor auditors<1..2^24-1>;    /* sorted by name */
//	    uint8 m;
//	    uint8 n;                        /* number of auditors */
//	    uint64 period;                  /* seconds, > 0 */
//	    ConversationClass classes<0..2^24-1>; /* sorted by name */
//	    WitnessSet witnesses;
//	    EscrowKey keys<0..2^24-1>;      /* sorted by not_before */
//	} EscrowPolicyTBS;
//
//	struct {
//	    uint8 auditor;
//	    opaque signature[3373];
//	} AuditorSignature;
//
//	struct {
//	    StatementHeader header;         /* type 0x39 */
//	    EscrowPolicyTBS policy;
//	    AuditorSignature auditor_signatures<0..2^24-1>;
//	    AuditorSignature previous_signatures<0..2^24-1>;
//	} EscrowPolicyBody;

// checkTBS enforces the rules of §Escrow policy on the auditor-signed part.
func (e *EscrowPolicy) checkTBS() error {
	n := len(e.Auditors)
	if e.Tenant.IsZero() || e.PolicyVersion == 0 || n == 0 || n > 255 || e.N != n || e.M < 2 || e.M > e.N || e.Period <= 0 {
		return ErrMalformed
	}
	for i := range e.Auditors {
		if err := e.Auditors[i].check(); err != nil {
			return err
		}
		if i > 0 && e.Auditors[i-1].Name >= e.Auditors[i].Name {
			return ErrMalformed
		}
		for j := range i {
			if bytes.Equal(e.Auditors[j].SigningKey[:32], e.Auditors[i].SigningKey[:32]) ||
				bytes.Equal(e.Auditors[j].EncryptionKey, e.Auditors[i].EncryptionKey) {
				return ErrMalformed
			}
		}
	}
	for i, c := range e.Classes {
		if !validText(c.Name) || (i > 0 && e.Classes[i-1].Name >= c.Name) || c.Retention <= 0 {
			return ErrMalformed
		}
		switch c.Disclosure {
		case DisclosureImmediate:
			if c.MaxDelay != 0 {
				return ErrMalformed
			}
		case DisclosureDelayed:
			if c.MaxDelay <= 0 {
				return ErrMalformed
			}
		default:
			return ErrMalformed
		}
	}
	if err := e.Witnesses.check(); err != nil {
		return err
	}
	for i, k := range e.Keys {
		if !validTime(k.NotBefore) || !validTime(k.NotAfter) || k.NotAfter.Sub(k.NotBefore) != e.Period ||
			len(k.ShareHashes) != n || (i > 0 && k.NotBefore.Before(e.Keys[i-1].NotAfter)) {
			return ErrMalformed
		}
		if err := checkXWing(k.PublicKey); err != nil {
			return err
		}
		for j := range i {
			if bytes.Equal(e.Keys[j].PublicKey, k.PublicKey) {
				return ErrMalformed
			}
		}
	}
	return nil
}

func checkAuditorSignatures(sigs []AuditorSignature, n int) error {
	for i, s := range sigs {
		if s.Auditor < 0 || s.Auditor >= n || len(s.Signature) != AuditorSignatureSize ||
			(i > 0 && sigs[i-1].Auditor >= s.Auditor) {
			return ErrMalformed
		}
	}
	return nil
}

func (e *EscrowPolicy) addTBS(b *cryptobyte.Builder) {
	if err := e.checkTBS(); err != nil {
		b.SetError(errEncode)
		return
	}
	addID(b, e.Tenant[:])
	b.AddUint64(e.PolicyVersion)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, a := range e.Auditors {
			addText(b, a.Name)
			b.AddBytes(a.SigningKey)
			b.AddBytes(a.EncryptionKey)
		}
	})
	b.AddUint8(uint8(e.M))
	b.AddUint8(uint8(e.N))
	addDuration(b, e.Period)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, c := range e.Classes {
			addText(b, c.Name)
			addDuration(b, c.Retention)
			b.AddUint8(uint8(c.Disclosure))
			addDuration(b, c.MaxDelay)
		}
	})
	addWitnessSet(b, &e.Witnesses)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, k := range e.Keys {
			addTime(b, k.NotBefore)
			addTime(b, k.NotAfter)
			b.AddBytes(k.PublicKey)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				for _, h := range k.ShareHashes {
					b.AddBytes(h[:])
				}
			})
		}
	})
}

func (e *EscrowPolicy) tbs() ([]byte, error) { return build(e.addTBS) }

func addAuditorSignatures(b *cryptobyte.Builder, sigs []AuditorSignature) {
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, s := range sigs {
			b.AddUint8(uint8(s.Auditor))
			b.AddBytes(s.Signature)
		}
	})
}

func (e *EscrowPolicy) body() ([]byte, error) {
	return build(func(b *cryptobyte.Builder) {
		addHeader(b, typeEscrowPolicy, &e.Header)
		e.addTBS(b)
		if checkAuditorSignatures(e.AuditorSignatures, len(e.Auditors)) != nil ||
			checkAuditorSignatures(e.PreviousSignatures, 256) != nil {
			b.SetError(errEncode)
			return
		}
		addAuditorSignatures(b, e.AuditorSignatures)
		addAuditorSignatures(b, e.PreviousSignatures)
	})
}

// AuditorMessage returns what each auditor signs (§Escrow policy):
// "moat/v1/org/escrow-auditor-signature" || 0x00 || EscrowPolicyTBS.
func (e *EscrowPolicy) AuditorMessage() ([]byte, error) {
	tbs, err := e.tbs()
	if err != nil {
		return nil, err
	}
	return labelled(labelEscrowAuditor, tbs), nil
}

// Marshal returns the EscrowPolicy encoding.
func (e *EscrowPolicy) Marshal() ([]byte, error) { return marshalSigned(e.body, e.Signature) }

// Verify checks steps 1 and 2 of §Escrow policy, Verification: e is
// tenant's, signed by ca, and signed by at least M of its own auditors,
// every auditor signature it carries valid. A failure of step 2 is an
// *AuditorSignatureError.
func (e *EscrowPolicy) Verify(ca *keys.OrgPublicKey, tenant TenantID) error {
	if err := verifyStatement(ca, tenant, &e.Header, labelEscrowPolicy, e.body, e.Signature); err != nil {
		return err
	}
	return e.verifyAuditors()
}

func (e *EscrowPolicy) verifyAuditors() error {
	msg, err := e.AuditorMessage()
	if err != nil {
		return ErrMalformed
	}
	return verifyAuditorSet(msg, e.Auditors, e.AuditorSignatures, e.M, false)
}

// verifyAuditorSet checks that every signature verifies under the key of
// the auditor of set it names, and that at least quorum distinct auditors
// signed.
func verifyAuditorSet(msg []byte, set []Auditor, sigs []AuditorSignature, quorum int, previous bool) error {
	signed := make(map[int]bool, len(sigs))
	for _, s := range sigs {
		if s.Auditor < 0 || s.Auditor >= len(set) || !verifyAuditor(set[s.Auditor].SigningKey, msg, s.Signature) {
			return &AuditorSignatureError{Previous: previous, Auditor: s.Auditor, Valid: -1, Required: quorum, Err: ErrBadSignature}
		}
		signed[s.Auditor] = true
	}
	if len(signed) < quorum {
		return &AuditorSignatureError{Previous: previous, Auditor: -1, Valid: len(signed), Required: quorum, Err: ErrAuditorQuorum}
	}
	return nil
}

// VerifyContinuity checks steps 3 and 4 of §Escrow policy, Verification:
// that e follows prev, the previous escrow policy of the tenant (already
// verified). It does not repeat Verify.
func (e *EscrowPolicy) VerifyContinuity(prev *EscrowPolicy) error {
	tbs, err := e.tbs()
	if err != nil {
		return ErrMalformed
	}
	ptbs, err := prev.tbs()
	if err != nil {
		return ErrMalformed
	}
	switch e.PolicyVersion {
	case prev.PolicyVersion:
		// The same policy, re-signed by the CA (a CA rotation): the
		// auditors' part is unchanged, signatures included.
		if !bytes.Equal(tbs, ptbs) || !sameSignatures(e.AuditorSignatures, prev.AuditorSignatures) ||
			!sameSignatures(e.PreviousSignatures, prev.PreviousSignatures) {
			return fmt.Errorf("%w: escrow policy version %d with another content", ErrStatementSequence, e.PolicyVersion)
		}
		return nil
	case prev.PolicyVersion + 1:
	default:
		return fmt.Errorf("%w: escrow policy version %d after %d", ErrStatementSequence, e.PolicyVersion, prev.PolicyVersion)
	}
	quorum := 0
	if !sameAuditorSet(e, prev) {
		quorum = prev.M
	}
	return verifyAuditorSet(labelled(labelEscrowAuditor, tbs), prev.Auditors, e.PreviousSignatures, quorum, true)
}

func sameSignatures(a, b []AuditorSignature) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Auditor != b[i].Auditor || !bytes.Equal(a[i].Signature, b[i].Signature) {
			return false
		}
	}
	return true
}

func sameAuditorSet(a, b *EscrowPolicy) bool {
	if a.M != b.M || len(a.Auditors) != len(b.Auditors) {
		return false
	}
	for i := range a.Auditors {
		x, y := &a.Auditors[i], &b.Auditors[i]
		if x.Name != y.Name || !bytes.Equal(x.SigningKey, y.SigningKey) || !bytes.Equal(x.EncryptionKey, y.EncryptionKey) {
			return false
		}
	}
	return true
}

// KeyAt returns the escrow key whose period covers t, or nil.
func (e *EscrowPolicy) KeyAt(t time.Time) *EscrowKey {
	for i := range e.Keys {
		if k := &e.Keys[i]; !t.Before(k.NotBefore) && t.Before(k.NotAfter) {
			return k
		}
	}
	return nil
}

func readAuditorSignatures(s *cryptobyte.String, out *[]AuditorSignature) bool {
	var list cryptobyte.String
	if !s.ReadUint24LengthPrefixed(&list) {
		return false
	}
	for !list.Empty() {
		var i uint8
		var sig []byte
		if !list.ReadUint8(&i) || !list.ReadBytes(&sig, AuditorSignatureSize) {
			return false
		}
		*out = append(*out, AuditorSignature{Auditor: int(i), Signature: clone(sig)})
	}
	return true
}

// ParseEscrowPolicy parses an EscrowPolicy encoding strictly. It checks
// no signature.
func ParseEscrowPolicy(data []byte) (*EscrowPolicy, error) {
	return parseSigned("escrow policy", data, func(s *cryptobyte.String, sig []byte) (*EscrowPolicy, error) {
		e := &EscrowPolicy{Signature: sig}
		var tenant TenantID
		var auds, classes, ks cryptobyte.String
		var m, n uint8
		if !readHeader(s, typeEscrowPolicy, &e.Header) || !readID(s, (*[16]byte)(&tenant)) || tenant != e.Tenant ||
			!s.ReadUint64(&e.PolicyVersion) || !s.ReadUint24LengthPrefixed(&auds) {
			return nil, ErrMalformed
		}
		for !auds.Empty() {
			var a Auditor
			var sk, ek []byte
			if !readText(&auds, &a.Name) || !auds.ReadBytes(&sk, auditorSigningKeySize) || !auds.ReadBytes(&ek, auditorEncryptionKeySize) {
				return nil, ErrMalformed
			}
			a.SigningKey, a.EncryptionKey = clone(sk), clone(ek)
			e.Auditors = append(e.Auditors, a)
			if len(e.Auditors) > 255 {
				return nil, ErrMalformed
			}
		}
		if !s.ReadUint8(&m) || !s.ReadUint8(&n) || !readDuration(s, &e.Period) || !s.ReadUint24LengthPrefixed(&classes) {
			return nil, ErrMalformed
		}
		e.M, e.N = int(m), int(n)
		for !classes.Empty() {
			var c ConversationClass
			var mode uint8
			if !readText(&classes, &c.Name) || !readDuration(&classes, &c.Retention) || !classes.ReadUint8(&mode) || !readDuration(&classes, &c.MaxDelay) {
				return nil, ErrMalformed
			}
			c.Disclosure = DisclosureMode(mode)
			e.Classes = append(e.Classes, c)
		}
		if err := readWitnessSet(s, &e.Witnesses); err != nil {
			return nil, err
		}
		if !s.ReadUint24LengthPrefixed(&ks) {
			return nil, ErrMalformed
		}
		for !ks.Empty() {
			var k EscrowKey
			var pk []byte
			var hs cryptobyte.String
			if !readTime(&ks, &k.NotBefore) || !readTime(&ks, &k.NotAfter) || !ks.ReadBytes(&pk, XWingPublicKeySize) ||
				!ks.ReadUint16LengthPrefixed(&hs) || len(hs)%32 != 0 || len(hs) > 255*32 {
				return nil, ErrMalformed
			}
			k.PublicKey = clone(pk)
			for !hs.Empty() {
				var h [32]byte
				hs.CopyBytes(h[:])
				k.ShareHashes = append(k.ShareHashes, h)
			}
			e.Keys = append(e.Keys, k)
		}
		if err := e.checkTBS(); err != nil {
			return nil, err
		}
		if !readAuditorSignatures(s, &e.AuditorSignatures) || !readAuditorSignatures(s, &e.PreviousSignatures) ||
			checkAuditorSignatures(e.AuditorSignatures, len(e.Auditors)) != nil || checkAuditorSignatures(e.PreviousSignatures, 256) != nil {
			return nil, ErrMalformed
		}
		return e, nil
	})
}

// ---------------------------------------------------------------------------
// Auditor keys

// parseHybridPublic splits a hybrid public key, Ed25519 (32 bytes) then
// ML-DSA-65 (1952 bytes): the Ed25519 key checked as in keys.md, the
// ML-DSA-65 key re-encoding to itself.
func parseHybridPublic(raw []byte) (ed25519.PublicKey, *pqc.MLDSA65PublicKey, error) {
	if len(raw) != ed25519.PublicKeySize+pqc.MLDSA65PublicKeySize {
		return nil, nil, ErrMalformed
	}
	if err := checkEd25519(raw[:ed25519.PublicKeySize]); err != nil {
		return nil, nil, err
	}
	pq, err := pqc.ParseMLDSA65PublicKey(raw[ed25519.PublicKeySize:])
	if err != nil {
		return nil, nil, ErrMalformed
	}
	return ed25519.PublicKey(clone(raw[:ed25519.PublicKeySize])), pq, nil
}

// verifyHybrid checks a hybrid signature, Ed25519 then ML-DSA-65 (empty
// context), both over m and both required.
func verifyHybrid(ed ed25519.PublicKey, pq *pqc.MLDSA65PublicKey, m, sig []byte) bool {
	if len(sig) != AuditorSignatureSize {
		return false
	}
	edOK := ed25519.Verify(ed, m, sig[:ed25519.SignatureSize])
	pqOK := pq.Verify(m, nil, sig[ed25519.SignatureSize:])
	return edOK && pqOK
}

// signHybrid signs m with both halves of a hybrid key, ML-DSA-65 hedged.
func signHybrid(ed ed25519.PrivateKey, pq *pqc.MLDSA65PrivateKey, m []byte) ([]byte, error) {
	sig := make([]byte, AuditorSignatureSize)
	copy(sig, ed25519.Sign(ed, m))
	err := pq.SignTo(m, nil, sig[ed25519.SignatureSize:])
	if err != nil {
		return nil, err
	}
	return sig, nil
}

func verifyAuditor(key, msg, sig []byte) bool {
	ed, pq, err := parseHybridPublic(key)
	return err == nil && verifyHybrid(ed, pq, msg, sig)
}

// AuditorPrivateKey is an escrow auditor's hybrid signing key (Ed25519 and
// ML-DSA-65). Auditors hold it; the directory never does. It signs escrow
// policies; audit/ uses it for the rest of the escrow.
type AuditorPrivateKey struct {
	_   [0]func()
	ed  ed25519.PrivateKey
	pq  *pqc.MLDSA65PrivateKey
	pub []byte
}

// Format prints nothing secret, whatever the verb.
func (k *AuditorPrivateKey) Format(f fmt.State, _ rune) {
	_, _ = f.Write([]byte("[secret key redacted]"))
}

// GenerateAuditorKey returns a new auditor key with its 64-byte seed read
// from rand.
func GenerateAuditorKey(rand io.Reader) (*AuditorPrivateKey, error) {
	seed := make([]byte, ed25519.SeedSize+pqc.MLDSASeedSize)
	if _, err := io.ReadFull(rand, seed); err != nil {
		return nil, err
	}
	return NewAuditorPrivateKey(seed)
}

// NewAuditorPrivateKey derives an auditor key from its seed: the Ed25519
// seed then the ML-DSA-65 seed ξ.
func NewAuditorPrivateKey(seed []byte) (*AuditorPrivateKey, error) {
	if len(seed) != ed25519.SeedSize+pqc.MLDSASeedSize {
		return nil, ErrInvalidArgument
	}
	var xi [pqc.MLDSASeedSize]byte
	copy(xi[:], seed[ed25519.SeedSize:])
	pqPub, pq := pqc.NewMLDSA65Key(&xi)
	ed := ed25519.NewKeyFromSeed(seed[:ed25519.SeedSize])
	pub := append(clone(ed.Public().(ed25519.PublicKey)), pqPub.Bytes()...)
	return &AuditorPrivateKey{ed: ed, pq: pq, pub: pub}, nil
}

// Public returns the auditor's signing key, as Auditor.SigningKey holds it.
func (k *AuditorPrivateKey) Public() []byte { return clone(k.pub) }

// SignEscrowPolicy returns k's signature of the policy p as an auditor of
// set (p.Auditors for AuditorSignatures, the previous policy's auditors for
// PreviousSignatures); k must be one of them.
func SignEscrowPolicy(k *AuditorPrivateKey, p *EscrowPolicy, set []Auditor) (AuditorSignature, error) {
	idx := -1
	for i := range set {
		if subtle.ConstantTimeCompare(set[i].SigningKey, k.pub) == 1 {
			idx = i
		}
	}
	if idx < 0 {
		return AuditorSignature{}, fmt.Errorf("org: signing escrow policy: %w", ErrUnknownAuditor)
	}
	msg, err := p.AuditorMessage()
	if err != nil {
		return AuditorSignature{}, fmt.Errorf("org: signing escrow policy: %w", ErrInvalidArgument)
	}
	sig, err := signHybrid(k.ed, k.pq, msg)
	if err != nil {
		return AuditorSignature{}, err
	}
	return AuditorSignature{Auditor: idx, Signature: sig}, nil
}
