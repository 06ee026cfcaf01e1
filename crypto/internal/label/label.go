// Package label holds every domain-separation label used by Moat's 1:1
// protocols and key types, in one place, so that no two contexts can share a
// label by accident. Each label is a distinct ASCII string; TestLabelsDistinct
// checks that none is a prefix of another.
//
// Specified in docs/spec/keys.md §Labels, docs/spec/pqxdh.md §Labels,
// docs/spec/ratchet.md §Labels, docs/spec/envelope.md §Labels and
// docs/spec/api.md §Device authentication.
package label

const (
	// SignedPrekey prefixes the message an identity key signs to certify a
	// signed X25519 prekey (docs/spec/keys.md §Signed prekeys).
	SignedPrekey = "moat/v1/signed-prekey"
	// KEMPrekey prefixes the message an identity key signs to certify an
	// ML-KEM-768 prekey (docs/spec/keys.md §KEM prekeys).
	KEMPrekey = "moat/v1/kem-prekey"
	// OneTimePrekey prefixes the message an identity key signs to certify
	// a one-time X25519 prekey it publishes (docs/spec/keys.md §One-time
	// prekeys).
	OneTimePrekey = "moat/v1/one-time-prekey"
	// SealedSenderKey prefixes the message an identity key signs to certify
	// a sealed-sender key (docs/spec/keys.md §Sealed-sender keys).
	SealedSenderKey = "moat/v1/sealed-sender-key"
	// KeyPackage prefixes the message an identity key signs to certify an
	// MLS KeyPackage it publishes on the relay (docs/spec/bundle.md
	// §KeyPackages).
	KeyPackage = "moat/v1/key-package"
	// HybridSignature prefixes the message both halves of a hybrid
	// signature cover; the role name follows it (docs/spec/keys.md §Hybrid).
	HybridSignature = "moat/v1/hybrid-signature/"

	// PQXDHInfo is the HKDF info string of PQXDH (Signal PQXDH §2.1 "info"),
	// naming Moat's profile: X25519, SHA-256, ML-KEM-768.
	PQXDHInfo = "moat/v1/pqxdh/x25519-sha256-mlkem768"
	// PQXDHAD prefixes the associated data PQXDH hands to the ratchet.
	PQXDHAD = "moat/v1/pqxdh/ad"

	// RatchetRootAB and RatchetRootBA derive the two per-direction root keys
	// from the PQXDH secret (docs/spec/ratchet.md §Initialisation).
	RatchetRootAB = "moat/v1/ratchet/root/initiator-to-responder"
	RatchetRootBA = "moat/v1/ratchet/root/responder-to-initiator"
	// RatchetChainStep is the HKDF info of KDF_RK (docs/spec/ratchet.md §KDF_RK).
	RatchetChainStep = "moat/v1/ratchet/chain-step"
	// RatchetCKMessage and RatchetCKNext are the HChaCha20 inputs of
	// KDF_CK, zero-padded to 16 bytes (docs/spec/ratchet.md §KDF_CK).
	RatchetCKMessage = "moat/v1/ck/mk"
	RatchetCKNext    = "moat/v1/ck/ck"
	// RatchetAD prefixes the associated data of every ratchet message
	// (docs/spec/ratchet.md §Associated data).
	RatchetAD = "moat/v1/ratchet/ad"
	// RatchetAttribution prefixes the message a sender signs in an
	// attributable conversation (docs/spec/ratchet.md §Attribution).
	RatchetAttribution = "moat/v1/ratchet/attribution"

	// SealedEnvelope is the HPKE info string of a sealed envelope
	// (docs/spec/envelope.md §Sealing).
	SealedEnvelope = "moat/v1/sealed-envelope"

	// DeliveryTokenMAC is the HMAC input prefix that derives a delivery
	// token, DeliveryTokenVerifier the hash prefix of the verifier a relay
	// stores (docs/spec/envelope.md §MAC delivery tokens).
	DeliveryTokenMAC      = "moat/v1/delivery-token/mac"
	DeliveryTokenVerifier = "moat/v1/delivery-token/verifier"
	// DeliveryTokenIssuer prefixes the Privacy Pass issuer name of a
	// tenant; the tenant id in hexadecimal follows it
	// (docs/spec/envelope.md §Anonymous delivery tokens).
	DeliveryTokenIssuer = "moat/v1/delivery-token/issuer/"

	// DeviceAuthChallenge is the HMAC prefix of a relay's challenge tag,
	// DeviceAuthResponse the prefix of the message a device signs
	// (docs/spec/api.md §Device authentication).
	DeviceAuthChallenge = "moat/v1/device-auth-challenge"
	DeviceAuthResponse  = "moat/v1/device-auth-response"
)

// All lists every label, for the distinctness test.
var All = []string{
	SignedPrekey, KEMPrekey, OneTimePrekey, SealedSenderKey, KeyPackage, HybridSignature,
	PQXDHInfo, PQXDHAD,
	RatchetRootAB, RatchetRootBA, RatchetChainStep, RatchetCKMessage, RatchetCKNext, RatchetAD, RatchetAttribution,
	SealedEnvelope, DeliveryTokenMAC, DeliveryTokenVerifier, DeliveryTokenIssuer,
	DeviceAuthChallenge, DeviceAuthResponse,
}
