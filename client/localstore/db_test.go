package localstore_test

import (
	"testing"

	"github.com/moat-im/moat/client/localstore"
	"github.com/moat-im/moat/client/localstore/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) localstore.Store {
		s, err := localstore.Open(t.TempDir(), localstore.Options{
			Passphrase: []byte("correct horse"),
			// Cheap Argon2id for tests.
			Argon2:       localstore.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1},
			MemTableSize: 8 << 20,
		})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}
