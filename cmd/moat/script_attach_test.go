package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/moat-im/moat/client"
	"github.com/moat-im/moat/client/attach"
	"github.com/moat-im/moat/client/localstore/memstore"
	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/service"
	"github.com/moat-im/moat/server/relay"
	"github.com/rogpeppe/go-internal/testscript"
)

// Script commands for a sender of files other than moat: moat send-file
// waits on the client SDK, which has no attachment upload yet, so a
// script's file comes from an SDK client (in memory) carrying a reference
// that a device enrolled through the directory API uploaded.

type sdkKey struct{}

// sdkClients are the script's SDK clients by name.
type sdkClients map[string]*client.Client

func sdk(ts *testscript.TestScript) sdkClients {
	return ts.Value(sdkKey{}).(sdkClients)
}

// sdkenrol NAME ADDRFILE RELAYPUB CODE: enrols an SDK client NAME with
// CODE at the server at the address in ADDRFILE, with an in-memory store.
func cmdSDKEnrol(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 4 {
		ts.Fatalf("usage: sdkenrol name addrfile relaypub code")
	}
	rk, err := keys.ParseRelaySigningPublicKeyText(strings.TrimSpace(ts.ReadFile(args[2])))
	ts.Check(err)
	base := addr(ts, args[1])
	c, err := client.Enrol(context.Background(), client.Config{DirectoryURL: base, RelayURL: base, RelayKey: rk}, memstore.New(), args[3])
	ts.Check(err)
	ts.Defer(func() { c.Close() })
	sdk(ts)[args[0]] = c
}

// sdksendfile NAME USER FILE ADDRFILE RELAYPUB CODE: a device enrolled
// with CODE through the directory API uploads FILE (client/attach), then
// the SDK client NAME sends USER the reference; prints the message id.
func cmdSDKSendFile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 6 {
		ts.Fatalf("usage: sdksendfile name user file addrfile relaypub code")
	}
	c := sdk(ts)[args[0]]
	if c == nil {
		ts.Fatalf("no SDK client %s: sdkenrol first", args[0])
	}
	to, err := client.ParseUserID(args[1])
	ts.Check(err)
	data, err := os.ReadFile(ts.MkAbs(args[2]))
	ts.Check(err)
	rk, err := keys.ParseRelaySigningPublicKeyText(strings.TrimSpace(ts.ReadFile(args[4])))
	ts.Check(err)
	base := addr(ts, args[3])
	ctx := context.Background()

	code, err := org.ParseEnrolmentCodeText(args[5])
	ts.Check(err)
	id, err := keys.GenerateDeviceIdentity(rand.Reader)
	ts.Check(err)
	mk, err := keys.GenerateIdentitySigningKey(rand.Reader)
	ts.Check(err)
	mls, err := org.NewMLSSignatureKey(org.MLSSchemeEd25519, mk.Public().Raw())
	ts.Check(err)
	req, err := org.NewEnrolmentRequest(code, id, mls)
	ts.Check(err)
	res, err := (&service.Client{BaseURL: base, Tenant: code.Tenant}).Enrol(ctx, code, req)
	ts.Check(err)
	_, cert, err := kt.Enrol(code, req, res.Enrolment(), time.Hour, 0, time.Now())
	ts.Check(err)
	up := &relay.Client{BaseURL: base, RelayKey: rk, Device: &relay.DeviceCredentials{Tenant: code.Tenant, Device: cert.Device, Key: id.Signing}}
	ref, err := attach.Upload(ctx, up, bytes.NewReader(data), int64(len(data)), nil)
	ts.Check(err)
	enc, err := ref.Marshal()
	ts.Check(err)
	mid, err := c.Send(ctx, to, client.Message{Kind: client.KindAttachment, Text: "the file",
		Attachment: &client.Attachment{Name: args[2], MediaType: "text/plain", Size: uint64(len(data)), Ref: enc}})
	ts.Check(err)
	fmt.Fprintf(ts.Stdout(), "sent %s\n", mid)
}
