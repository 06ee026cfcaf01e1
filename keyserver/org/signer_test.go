package org_test

import (
	"crypto/rand"
	"testing"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/org/signertest"
)

func TestMemorySignerConformance(t *testing.T) {
	signertest.TestSigner(t, func(t *testing.T) org.Signer {
		s, err := org.GenerateMemorySigner(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestOrgPrivateKeyConformance(t *testing.T) {
	signertest.TestSigner(t, func(t *testing.T) org.Signer {
		k, err := keys.GenerateOrgKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	})
}
