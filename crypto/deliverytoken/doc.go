// Package deliverytoken implements the delivery tokens of
// docs/spec/envelope.md §Delivery tokens, with which a sender is allowed to
// send a sealed envelope without saying who it is:
//
//   - MAC delivery tokens: a device derives one token per contact from a
//     secret TokenKey, hands it out inside end-to-end encrypted messages,
//     and registers only its Verifier at the relay; revoking one contact is
//     deleting one verifier.
//   - Anonymous delivery tokens, for a first contact: one-time Privacy Pass
//     tokens (RFC 9578 §6, token type 0x0002, blind RSA 2048) that a
//     tenant's issuer signs blindly for its enrolled devices and the relay
//     redeems once each, against a SpentStore.
//
// Authorizer is the relay's check of a SendAuthorization against the
// recipient mailbox. The package does no I/O: stores are interfaces with
// in-memory implementations, and deliverytokentest holds the conformance
// suite every SpentStore must pass.
package deliverytoken
