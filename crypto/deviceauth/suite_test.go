package deviceauth_test

import (
	"testing"

	"github.com/moat-im/moat/crypto/deviceauth"
	"github.com/moat-im/moat/crypto/deviceauth/deviceauthtest"
)

func TestMemoryReplayCache(t *testing.T) {
	deviceauthtest.TestReplayCache(t, func(*testing.T) deviceauth.ReplayCache {
		return deviceauth.NewMemoryReplayCache(4096)
	})
}
