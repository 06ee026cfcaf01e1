package memstore_test

import (
	"testing"

	"github.com/moat-im/moat/client/localstore"
	"github.com/moat-im/moat/client/localstore/memstore"
	"github.com/moat-im/moat/client/localstore/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) localstore.Store { return memstore.New() })
}
