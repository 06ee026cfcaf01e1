package memstore_test

import (
	"testing"

	"github.com/moat-im/moat/keyserver/store"
	"github.com/moat-im/moat/keyserver/store/memstore"
	"github.com/moat-im/moat/keyserver/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.DirectoryStore {
		s := memstore.New()
		t.Cleanup(func() { s.Close() })
		return s
	})
}
