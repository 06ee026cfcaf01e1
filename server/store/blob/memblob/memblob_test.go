package memblob

import (
	"testing"

	"github.com/moat-im/moat/server/store/blob"
	"github.com/moat-im/moat/server/store/blob/blobtest"
)

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T, cfg blobtest.Config) blob.Store {
		s, err := New(Options{Limits: cfg.Limits, Now: cfg.Now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
