package memprekey_test

import (
	"testing"

	"github.com/moat-im/moat/server/store/prekey"
	"github.com/moat-im/moat/server/store/prekey/memprekey"
	"github.com/moat-im/moat/server/store/prekey/prekeytest"
)

func TestConformance(t *testing.T) {
	prekeytest.Run(t, func(t *testing.T, maxPool int) prekey.Store { return memprekey.New(maxPool) })
}
