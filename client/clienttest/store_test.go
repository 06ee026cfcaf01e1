package clienttest

import (
	"testing"

	"github.com/moat-im/moat/client/localstore"
	"github.com/moat-im/moat/client/localstore/storetest"
)

func TestStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) localstore.Store { return NewStore() })
}
