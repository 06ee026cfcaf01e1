package kttest

import (
	"crypto/mlkem"
	"crypto/sha256"
	"fmt"
	"io"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/keyserver/org"
)

// Escrow is a test escrow auditor set: its private signing keys, in the
// order of the policies' Auditors.
type Escrow struct {
	Auditors []org.Auditor
	Keys     []*org.AuditorPrivateKey
	Rand     io.Reader
}

// NewEscrow returns an auditor set of n auditors named "auditor 1", …,
// with keys read from rand.
func NewEscrow(rand io.Reader, n int) (*Escrow, error) {
	e := &Escrow{Rand: rand}
	for i := range n {
		k, err := org.GenerateAuditorKey(rand)
		if err != nil {
			return nil, err
		}
		ek, err := XWingKey(rand)
		if err != nil {
			return nil, err
		}
		e.Keys = append(e.Keys, k)
		e.Auditors = append(e.Auditors, org.Auditor{Name: fmt.Sprintf("auditor %d", i+1), SigningKey: k.Public(), EncryptionKey: ek})
	}
	return e, nil
}

// XWingKey returns a new X-Wing public key (an ML-KEM-768 encapsulation
// key then an X25519 key), its private half discarded.
func XWingKey(rand io.Reader) ([]byte, error) {
	seed := make([]byte, mlkem.SeedSize)
	if _, err := io.ReadFull(rand, seed); err != nil {
		return nil, err
	}
	dk, err := mlkem.NewDecapsulationKey768(seed)
	if err != nil {
		return nil, err
	}
	x, err := keys.GenerateIdentityDHKey(rand)
	if err != nil {
		return nil, err
	}
	return append(dk.EncapsulationKey().Bytes(), x.Public().Raw()...), nil
}

// Policy returns an escrow policy of tenant with version version, the
// set's auditors, threshold m, 30-day periods and one escrow key for the
// period starting at start, the release log witnessed by ws; signed by the
// auditors of signers (indices into e.Keys), not yet by the CA.
func (e *Escrow) Policy(tenant org.TenantID, version uint64, m int, ws org.WitnessSet, start time.Time, signers ...int) (*org.EscrowPolicy, error) {
	period := 30 * 24 * time.Hour
	pk, err := XWingKey(e.Rand)
	if err != nil {
		return nil, err
	}
	hashes := make([][32]byte, len(e.Auditors))
	for i := range hashes {
		hashes[i] = sha256.Sum256(fmt.Appendf(nil, "share %d of %x", i, pk[:8]))
	}
	start = start.UTC().Truncate(time.Second)
	p := &org.EscrowPolicy{
		Header: org.Header{Tenant: tenant}, PolicyVersion: version,
		Auditors: e.Auditors, M: m, N: len(e.Auditors), Period: period,
		Classes:   []org.ConversationClass{{Name: "trading", Retention: 7 * 365 * 24 * time.Hour, Disclosure: org.DisclosureImmediate}},
		Witnesses: ws,
		Keys:      []org.EscrowKey{{NotBefore: start, NotAfter: start.Add(period), PublicKey: pk, ShareHashes: hashes}},
	}
	for _, i := range signers {
		s, err := org.SignEscrowPolicy(e.Keys[i], p, p.Auditors)
		if err != nil {
			return nil, err
		}
		p.AuditorSignatures = append(p.AuditorSignatures, s)
	}
	return p, nil
}

// Admit adds to p, a policy of another auditor set, the signatures of the
// auditors of e named by signers, as the outgoing set admitting the new
// one (org.EscrowPolicy.PreviousSignatures).
func (e *Escrow) Admit(p *org.EscrowPolicy, signers ...int) error {
	for _, i := range signers {
		s, err := org.SignEscrowPolicy(e.Keys[i], p, e.Auditors)
		if err != nil {
			return err
		}
		p.PreviousSignatures = append(p.PreviousSignatures, s)
	}
	return nil
}
