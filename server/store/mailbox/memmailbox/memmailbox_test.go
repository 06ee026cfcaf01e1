package memmailbox

import (
	"testing"

	"github.com/moat-im/moat/server/store/mailbox"
	"github.com/moat-im/moat/server/store/mailbox/mailboxtest"
)

func TestConformance(t *testing.T) {
	mailboxtest.Run(t, func(t *testing.T, cfg mailboxtest.Config) mailbox.Store {
		s, err := New(Options{Limits: cfg.Limits, Now: cfg.Now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
