package tlog_test

import (
	"testing"

	"github.com/moat-im/moat/crypto/tlog"
	"github.com/moat-im/moat/crypto/tlog/tlogtest"
)

func TestMemoryWitnessStore(t *testing.T) {
	tlogtest.TestWitnessStore(t, func(*testing.T) tlog.WitnessStore { return tlog.NewMemoryWitnessStore() })
}

func TestMemoryNodeStore(t *testing.T) {
	tlogtest.TestNodeStore(t, func(*testing.T) tlog.NodeStore { return tlog.NewMemoryNodeStore() })
}
