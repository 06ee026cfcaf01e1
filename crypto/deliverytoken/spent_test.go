package deliverytoken_test

import (
	"testing"

	"github.com/moat-im/moat/crypto/deliverytoken"
	"github.com/moat-im/moat/crypto/deliverytoken/deliverytokentest"
)

func TestMemorySpentStore(t *testing.T) {
	deliverytokentest.TestSpentStore(t, func(*testing.T) deliverytoken.SpentStore {
		return deliverytoken.NewMemorySpentStore()
	})
}

func TestMemoryVerifiers(t *testing.T) {
	deliverytokentest.TestVerifiers(t, func(*testing.T) deliverytokentest.Verifiers {
		return deliverytoken.NewMemoryVerifiers()
	})
}
