package badgertokens

import (
	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/sealed"
)

// Key schema (docs/spec/relay-storage.md §Delivery-token state). Every key
// starts with one prefix byte. A present record's value is the one byte
// marker; any other value is corrupt.
//
//	"v"                                  schema version (ASCII "1")
//	"m" || mailbox[32] || verifier[32]   a registered MAC-token verifier
//	"s" || key_id[32] || nonce[32]       a spent anonymous token
const (
	prefixVerifier = 'm'
	prefixSpent    = 's'
	schemaVersion  = "1"
	marker         = "\x01"
)

var keyVersion = []byte("v")

func verifierPrefix(mailbox sealed.MailboxID) []byte {
	k := make([]byte, 0, 1+32+32)
	k = append(k, prefixVerifier)
	return append(k, mailbox[:]...)
}

func verifierKey(mailbox sealed.MailboxID, v deliverytoken.Verifier) []byte {
	return append(verifierPrefix(mailbox), v[:]...)
}

func spentPrefix(keyID [32]byte) []byte {
	k := make([]byte, 0, 1+32+32)
	k = append(k, prefixSpent)
	return append(k, keyID[:]...)
}

func spentKey(keyID, nonce [32]byte) []byte {
	return append(spentPrefix(keyID), nonce[:]...)
}
