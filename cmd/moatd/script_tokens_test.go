package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/crypto/sealed"
	"github.com/moat-im/moat/internal/scriptcmds"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/server/relay"
	"github.com/rogpeppe/go-internal/testscript"
)

// relaytoken ADDRFILE PUBFILE N: the script's device takes its tenant's
// token issuer key from the directory (the verified policy bundle
// delivery-token-issuer), checks that the relay serves the same key,
// obtains N anonymous tokens from the relay under it, and sends one
// envelope to its own mailbox with the first token; prints the key id's
// first bytes, the number of tokens and the send's sequence number. A
// second send with the same token must be refused.
func cmdRelayTokens(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: relaytoken addrfile pubfile n")
	}
	st := state(ts)
	if st.api == nil || st.api.Device == nil {
		ts.Fatalf("relaytoken: enrol first")
	}
	n, err := strconv.Atoi(args[2])
	ts.Check(err)
	ctx := context.Background()
	st.api.BaseURL = scriptcmds.Addr(ts, args[0])
	name := org.OrgLabelPolicyPrefix + relay.IssuerPolicyID
	resp, err := st.api.LookupOrg(ctx, name, st.kt.TreeSize())
	ts.Check(err)
	res, err := st.kt.VerifyOrgLookup(name, resp, time.Now())
	ts.Check(err)
	pub, err := relay.IssuerKeyFromPolicy(res.Statement.(*org.PolicyBundle))
	ts.Check(err)

	key, err := keys.ParseRelaySigningPublicKeyText(strings.TrimSpace(ts.ReadFile(args[1])))
	ts.Check(err)
	c := &relay.Client{BaseURL: scriptcmds.Addr(ts, args[0]), RelayKey: key, Device: &relay.DeviceCredentials{
		Tenant: st.api.Tenant, Device: st.api.Device.Device, Key: st.api.Device.Key}}
	served, err := c.IssuerKey(ctx)
	ts.Check(err)
	if served.KeyID() != pub.KeyID() {
		ts.Fatalf("the relay serves another issuer key than the directory's")
	}
	toks, err := c.IssueTokens(ctx, pub, n)
	ts.Check(err)

	// An envelope to the device's own mailbox, under a sealed-sender key
	// the device signs here (the relay reads only the header).
	ssk, err := keys.GenerateSealedSenderKey(rand.Reader)
	ts.Check(err)
	now := time.Now().Truncate(time.Second)
	rec := keys.SignSealedSenderKey(1, now, now.Add(time.Hour), ssk.Public(), st.api.Device.Key)
	mb := sealed.NewMailboxID(st.api.Tenant, st.api.Device.Device)
	r, err := sealed.NewRecipient(mb, st.api.Device.Key.Public(), rec, now)
	ts.Check(err)
	sender, err := keys.GenerateDeviceIdentity(rand.Reader)
	ts.Check(err)
	env, err := r.Seal(&sealed.Message{MessageID: sealed.NewMessageID(), TTL: 3600,
		Sender:    sealed.Sender{Tenant: st.api.Tenant, User: [16]byte{1}, Device: [16]byte{2}, Serial: 1, Identity: sender.Public()},
		Timestamp: now, ContentType: sealed.ContentRatchetMessage, Content: []byte("first contact")})
	ts.Check(err)
	auth, err := relay.AnonymousAuthorization(toks[0])
	ts.Check(err)
	rc, err := c.Send(ctx, auth, env)
	ts.Check(err)
	env2, err := r.Seal(&sealed.Message{MessageID: sealed.NewMessageID(), TTL: 3600,
		Sender:    sealed.Sender{Tenant: st.api.Tenant, User: [16]byte{1}, Device: [16]byte{2}, Serial: 1, Identity: sender.Public()},
		Timestamp: now, ContentType: sealed.ContentRatchetMessage, Content: []byte("spent token")})
	ts.Check(err)
	if _, err := c.Send(ctx, auth, env2); err == nil {
		ts.Fatalf("a spent token was accepted")
	}
	id := pub.KeyID()
	fmt.Fprintf(ts.Stdout(), "issuer %x tokens %d seq %d\n", id[:4], len(toks), rc.Seq)
}
