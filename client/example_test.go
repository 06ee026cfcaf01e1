package client_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/moat-im/moat/client"
	"github.com/moat-im/moat/client/localstore"
	"github.com/moat-im/moat/crypto/keys"
)

// Example shows a device's life: enrolment (with the dual-control detour
// for a user's second device), then a session that receives and sends.
// It is compiled, not run: it needs a server (moatd serve).
func Example() {
	ctx := context.Background()
	relayKey, err := keys.ParseRelaySigningPublicKeyText(os.Getenv("MOAT_RELAY_KEY")) // DATA/relay/relay.pub
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg := client.Config{DirectoryURL: "http://127.0.0.1:8440", RelayURL: "http://127.0.0.1:8440", RelayKey: relayKey}
	st, err := localstore.Open("device/store", localstore.Options{KeyFile: "device/key"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer st.Close()

	c, err := client.Enrol(ctx, cfg, st, os.Getenv("MOAT_CODE"))
	var are *client.ApprovalRequiredError
	if errors.As(err, &are) {
		// Show are.Fingerprint; another device of the user runs
		// ApproveDevice(are.Request); then Enrol again with the approval.
		fmt.Println("approve request", are.Fingerprint)
		return
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	go c.Run(ctx) // push channel, catch-up after reconnections
	bob, _ := client.ParseUserID(os.Getenv("MOAT_BOB"))
	if _, err := c.SendText(ctx, bob, "hello"); err != nil {
		var ue *client.UnverifiedContactError
		if errors.As(err, &ue) {
			fmt.Println("not sent:", ue.Reason)
		}
		return
	}
	for e := range c.Events() {
		if e.Kind == client.EventMessage && !e.Record.Outgoing {
			fmt.Printf("%s: %s\n", e.Conversation, e.Record.Text)
		}
	}
}
