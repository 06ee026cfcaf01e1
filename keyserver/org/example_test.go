package org_test

import (
	"crypto/rand"
	"fmt"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/vrf"
	"github.com/moat-im/moat/keyserver/org"
)

// Example walks through enrolment: the directory service creates a
// tenant and issues an enrolment code; the new device checks its trust
// anchors against the code and asks for a certificate; the service redeems
// the code; any client then verifies the certificate offline.
func Example() {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	check := func(err error) {
		if err != nil {
			panic(err)
		}
	}

	// --- Directory service: create the tenant. ---
	ca, err := org.GenerateMemorySigner(rand.Reader) // or an HSM-backed org.Signer
	check(err)
	alice, _ := org.GenerateAdminKey(rand.Reader, org.AdminID{1}, org.AdminHybrid)
	bob, _ := org.GenerateAdminKey(rand.Reader, org.AdminID{2}, org.AdminEd25519)
	logKey, _ := keys.GenerateLogKey(rand.Reader)
	// The key directory's VRF key: clients pin it with the CA key.
	vrfKey, _ := vrf.GenerateKey(rand.Reader)
	witness, _ := org.GenerateAdminKey(rand.Reader, org.AdminID{3}, org.AdminEd25519) // any Ed25519 key
	tenant, err := org.NewTenant(org.TenantParams{
		ID:        org.TenantID{0xac, 0x3e},
		Admins:    []*org.AdminKey{alice.Public(), bob.Public()},
		Threshold: 2,
		LogOrigin: "keys.acme.example/log",
		Log:       logKey.Public(),
		VRF:       vrfKey.Public(),
		Witnesses: org.WitnessSet{Witnesses: []org.WitnessKey{{Name: "witness.example/w1", Ed25519: witness.Public().Raw()}}, Quorum: 1},
	}, ca, now)
	check(err)
	user := org.UserID{0x05, 1}
	_, err = tenant.AddUser(alice.Public().ID(), user, "Ada Lovelace", org.DepartmentID{}, now)
	check(err)
	code, err := tenant.IssueEnrolmentCode(rand.Reader, alice.Public().ID(), user, 24*time.Hour, now)
	check(err)
	codeText := code.Text() // shown to the user once, e.g. as a QR code
	bundle, err := tenant.TrustBundle().Marshal()
	check(err)

	// --- New device: pin the trust anchors, make its keys, ask. ---
	dc, err := org.ParseEnrolmentCodeText(codeText)
	check(err)
	trust, err := org.CheckTrustBundle(dc, bundle) // refuses a substituted bundle
	check(err)
	id, _ := keys.GenerateDeviceIdentity(rand.Reader)
	mlsPriv, _ := org.GenerateAdminKey(rand.Reader, org.AdminID{9}, org.AdminEd25519) // stands in for an MLS key
	mls, _ := org.NewMLSSignatureKey(org.MLSSchemeEd25519, mlsPriv.Public().Raw())
	req, err := org.NewEnrolmentRequest(dc, id, mls)
	check(err)

	// --- Directory service: redeem the code; publish at the next epoch. ---
	enrolment, err := tenant.RedeemEnrolmentCode(dc, req, nil, now.Add(time.Minute))
	check(err)
	updates, err := tenant.Publish(now.Add(time.Minute))
	check(err)
	_, reuse := tenant.RedeemEnrolmentCode(dc, req, nil, now.Add(2*time.Minute))

	// --- New device: check the answer against its code and its own keys
	// (its time floor is the later of the code's issue time and the
	// certificate's not_before; keyserver/kt.Enrol does all of it). ---
	certBytes, _ := enrolment.Certificate.Marshal()
	_, own, err := org.VerifyEnrolment(dc, req, bundle, certBytes)
	check(err)
	fmt.Println("own certificate:", own.Device == enrolment.Certificate.Device, !own.NotBefore.Before(dc.IssuedAt))

	// --- Any client: verify the certificate offline. ---
	cert, err := org.ParseDeviceCertificate(certBytes)
	check(err)
	fmt.Println("certificate:", org.VerifyDeviceCertificate(cert, trust.CA, trust.Tenant, now.Add(time.Hour), org.NoRevocations))
	fmt.Println("entry:", enrolment.Entry.Action.Kind() == org.ActionDeviceAdded)
	fmt.Println("labels published:", len(updates))
	fmt.Println("code reused:", reuse != nil)
	// Output:
	// own certificate: true true
	// certificate: <nil>
	// entry: true
	// labels published: 4
	// code reused: true
}
