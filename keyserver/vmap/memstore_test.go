package vmap_test

import (
	"testing"

	"github.com/moat-im/moat/keyserver/vmap"
	"github.com/moat-im/moat/keyserver/vmap/vmaptest"
)

func TestMemStoreConformance(t *testing.T) {
	vmaptest.StoreConformance(t, func(t *testing.T) vmaptest.Store { return vmap.NewMemStore() })
}
