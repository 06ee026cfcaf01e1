package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/moat-im/moat/client"
	"github.com/moat-im/moat/client/localstore"
	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/internal/cli"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/spf13/cobra"
)

// device is this device's client, open on its unlocked local store.
type device struct {
	*client.Client
	st    localstore.Store
	data  string
	names map[client.UserID]string // display names, filled by name
}

// Close closes the client, then its store.
func (d *device) Close() error {
	err := d.Client.Close()
	return errors.Join(err, d.st.Close())
}

// clientConfig is the SDK's configuration for the server at base.
func clientConfig(cmd *cobra.Command, base string, timeout time.Duration) client.Config {
	base = strings.TrimSuffix(base, "/")
	// Sealed sends and downloads get a transport of their own that opens
	// a fresh connection per request (client.Config.AnonymousHTTP).
	anon := http.DefaultTransport.(*http.Transport).Clone()
	anon.DisableKeepAlives = true
	return client.Config{
		DirectoryURL: base,
		RelayURL:     base,
		HTTP: &http.Client{Timeout: timeout, Transport: &retryTransport{
			next: http.DefaultTransport, log: cmd.ErrOrStderr()}},
		AnonymousHTTP: &http.Client{Timeout: timeout, Transport: &retryTransport{
			next: anon, log: cmd.ErrOrStderr()}},
	}
}

// open unlocks the local store in --data and opens the device's client.
func (g *globalOptions) open(cmd *cobra.Command) (*device, error) {
	if g.Data == "" {
		return nil, errNoData
	}
	sec, err := g.secret(false)
	if err != nil {
		return nil, err
	}
	defer sec.wipe()
	cfg, err := readConfig(g.Data)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(g.Data, storeDir, storeKeyTable)); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s holds no local store (wiped after a revocation?)", g.Data)
	}
	st, err := openStore(cmd, g.Data, sec)
	if err != nil {
		return nil, err
	}
	ccfg := clientConfig(cmd, cfg.Server, g.Timeout)
	c, err := client.Open(cmd.Context(), ccfg, st)
	if err != nil {
		st.Close()
		if errors.Is(err, client.ErrRevoked) {
			revoked(g.Data)
		}
		return nil, err
	}
	return &device{Client: c, st: st, data: g.Data}, nil
}

// storeKeyTable is the local store's key table file in its directory
// (docs/spec/client-store.md §Files): the store exists if it does.
const storeKeyTable = "keys"

// openStore opens (or, at enrolment, creates) the sealed local store in
// DATA/store with the secret.
// openFor opens the device and resolves user (see resolve); the caller
// closes the device.
func (g *globalOptions) openFor(cmd *cobra.Command, user string) (*device, client.UserID, error) {
	d, err := g.open(cmd)
	if err != nil {
		return nil, client.UserID{}, err
	}
	u, err := d.resolve(cmd.Context(), user)
	if err != nil {
		d.Close()
		return nil, client.UserID{}, err
	}
	return d, u, nil
}

func openStore(cmd *cobra.Command, data string, sec *storeSecret) (*localstore.DB, error) {
	log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	return localstore.Open(filepath.Join(data, storeDir), localstore.Options{
		Passphrase: sec.passphrase, KeyFile: sec.keyFile, Logger: log,
	})
}

// revoked removes what is left of a revoked device's data directory
// once the SDK wiped its store: its configuration.
func revoked(data string) {
	os.Remove(filepath.Join(data, configFile))
}

// enrol enrols a new device (or resumes an enrolment that waited for
// approval) into the store in DATA/store, then writes DATA/moat.json.
func enrol(cmd *cobra.Command, g *globalOptions, o *enrolOptions, code *org.EnrolmentCode) error {
	if err := checkServer(o.Server); err != nil {
		return fmt.Errorf("--server: %w", err)
	}
	if o.RelayKey == "" {
		return errors.New("--relay-key is required (moatd serve's DATA/relay/relay.pub, from the organisation)")
	}
	rk, err := keys.ParseRelaySigningPublicKeyText(strings.TrimSpace(o.RelayKey))
	if err != nil {
		return fmt.Errorf("--relay-key: %w", err)
	}
	var approvals [][]byte
	if o.Approval != "" {
		b, err := os.ReadFile(o.Approval)
		if err != nil {
			return fmt.Errorf("--approval: %w", err)
		}
		approvals = append(approvals, b)
	}
	sec, err := g.secret(true)
	if err != nil {
		return err
	}
	defer sec.wipe()
	if err := os.MkdirAll(g.Data, 0o700); err != nil {
		return err
	}
	st, err := openStore(cmd, g.Data, sec)
	if err != nil {
		return err
	}
	defer st.Close()
	cfg := clientConfig(cmd, o.Server, g.Timeout)
	cfg.RelayKey = rk
	c, err := client.Enrol(cmd.Context(), cfg, st, code.Text(), approvals...)
	var ar *client.ApprovalRequiredError
	if c != nil || errors.As(err, &ar) {
		// Enrolled, or pending with its keys in the store.
		if werr := writeConfig(g.Data, &deviceConfig{Server: o.Server}); werr != nil {
			return errors.Join(err, werr)
		}
	}
	if errors.As(err, &ar) {
		out := cmd.OutOrStdout()
		fmt.Fprintf(out, "request %s\n", ar.Fingerprint)
		if o.Request != "" {
			if werr := os.WriteFile(o.Request, ar.Request, 0o644); werr != nil {
				return werr
			}
			fmt.Fprintf(out, "wrote %s: approve it on another device of this user (moat approve --request %s --expect %s --out FILE),\nthen run moat enrol again with --approval FILE\n", o.Request, o.Request, ar.Fingerprint)
		} else {
			fmt.Fprintln(out, "give --request FILE to write the request for another device of this user to approve (moat approve)")
		}
		return err
	}
	if c == nil {
		return err
	}
	defer c.Close()
	self := c.Self()
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "tenant %s\nuser %s\ndevice %s\nfingerprint %s\n", self.Tenant, self.User, self.Device, self.Fingerprint)
	return err // a relay registration failure: enrolled, Open retries it
}

func whoami(cmd *cobra.Command, g *globalOptions) error {
	d, err := g.open(cmd)
	if err != nil {
		return err
	}
	defer d.Close()
	self := d.Self()
	fmt.Fprintf(cmd.OutOrStdout(), "tenant %s\nuser %s\ndevice %s\nfingerprint %s\n", self.Tenant, self.User, self.Device, self.Fingerprint)
	return nil
}

func contacts(cmd *cobra.Command, g *globalOptions, noVerify bool) error {
	d, err := g.open(cmd)
	if err != nil {
		return err
	}
	defer d.Close()
	ctx := cmd.Context()
	dir, err := d.OrgDirectory(ctx, !noVerify)
	if errors.Is(err, client.ErrNoOrgChart) {
		// No org chart: the contacts verified so far.
		fmt.Fprintln(cmd.ErrOrStderr(), "moat: the organisation publishes no org chart; listing the contacts verified so far")
		dir, noVerify, err = &client.OrgDirectory{}, true, nil
		list, lerr := d.Contacts()
		if lerr != nil {
			return lerr
		}
		for _, c := range list {
			dir.Users = append(dir.Users, client.DirectoryUser{User: c.User, DisplayName: c.DisplayName, DepartmentPath: c.Department})
		}
	}
	if err != nil {
		return d.checkRevoked(ctx, err)
	}
	// Without verification, the state of the last verification (a
	// contact in the local store), if any.
	stored := map[client.UserID]client.Contact{}
	if noVerify {
		list, err := d.Contacts()
		if err != nil {
			return err
		}
		for _, c := range list {
			stored[c.User] = c
		}
	}
	self := d.Self().User
	out := cmd.OutOrStdout()
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tNAME\tDEPARTMENT\tDEVICES\tVERIFIED")
	var reasons []string
	for _, u := range dir.Users {
		name := u.DisplayName
		if u.User == self {
			name += " (you)"
		}
		devices, state := "-", "-"
		if v := u.Verification; v != nil {
			devices = fmt.Sprint(len(v.Devices))
			if v.Verified {
				state = fmt.Sprintf("epoch %d", v.Epoch)
			} else {
				state = "no"
				reasons = append(reasons, fmt.Sprintf("unverified %s %s: %s", u.User, u.DisplayName, v.Reason))
			}
		} else if c, ok := stored[u.User]; ok {
			devices, state = fmt.Sprint(len(c.Devices)), fmt.Sprintf("epoch %d (stored)", c.Epoch)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.User, name, orDash(u.DepartmentPath), devices, state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range reasons {
		fmt.Fprintln(out, r)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// resolve returns the user that s names: a user id in hex, or the display
// name of exactly one user: a contact verified so far, or else one of the
// organisation's verified org chart.
func (d *device) resolve(ctx context.Context, s string) (client.UserID, error) {
	if id, err := client.ParseUserID(s); err == nil {
		return id, nil
	}
	list, err := d.Contacts()
	if err != nil {
		return client.UserID{}, err
	}
	var found []client.UserID
	for _, c := range list {
		if strings.EqualFold(c.DisplayName, s) {
			found = append(found, c.User)
		}
	}
	if len(found) == 0 {
		users, err := d.FindUser(ctx, s)
		if err != nil {
			return client.UserID{}, fmt.Errorf("no contact named %q, and the organisation's directory: %w", s, err)
		}
		for _, u := range users {
			found = append(found, u.User)
		}
	}
	switch len(found) {
	case 0:
		return client.UserID{}, fmt.Errorf("no user named %q in the organisation's directory (moat contacts lists them)", s)
	case 1:
		return found[0], nil
	}
	return client.UserID{}, fmt.Errorf("%d users are named %q: give the user id (moat contacts lists them)", len(found), s)
}

// name returns a user's display name: a contact's, or else the one the
// directory's verified org chart gives (which makes the user a contact);
// the user id if there is none.
func (d *device) name(ctx context.Context, u client.UserID) string {
	if d.names == nil {
		d.names = map[client.UserID]string{}
		if list, err := d.Contacts(); err == nil {
			for _, c := range list {
				d.names[c.User] = c.DisplayName
			}
		}
	}
	n, ok := d.names[u]
	if !ok {
		if c, err := d.Contact(ctx, u); err == nil {
			n = c.DisplayName
		}
		d.names[u] = n
	}
	if n == "" {
		return u.String()
	}
	return n
}

func send(cmd *cobra.Command, g *globalOptions, o *sendOptions, user, text string) error {
	d, to, err := g.openFor(cmd, user)
	if err != nil {
		return err
	}
	defer d.Close()
	ctx := cmd.Context()
	m := client.Message{Kind: client.KindText, Text: text}
	for _, s := range []struct {
		id   string
		kind client.Kind
	}{{o.Reply, client.KindReply}, {o.Edit, client.KindEdit}, {o.Delete, client.KindDelete}, {o.React, client.KindReaction}} {
		if s.id == "" {
			continue
		}
		if m.Target, err = client.ParseMessageID(s.id); err != nil {
			return err
		}
		m.Kind = s.kind
	}
	if m.Kind == client.KindReaction {
		m.Text, m.Reaction = "", text
	}
	for _, u := range o.Mentions {
		id, err := d.resolve(ctx, u)
		if err != nil {
			return fmt.Errorf("--mention: %w", err)
		}
		m.Mentions = append(m.Mentions, id)
	}
	if o.TTL >= 0 {
		// The timer is the conversation's (docs/spec/content.md §Kinds):
		// set it first, then send.
		if _, err := d.Send(ctx, to, client.Message{Kind: client.KindTimer, Timer: o.TTL}); err != nil {
			return err
		}
	}
	id, err := d.Send(ctx, to, m)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "sent %s\n", id)
	return nil
}

func sendFile(cmd *cobra.Command, g *globalOptions, user, path, caption string) error {
	d, to, err := g.openFor(cmd, user)
	if err != nil {
		return err
	}
	defer d.Close()
	id, err := d.SendFile(cmd.Context(), to, path, &client.FileOptions{Caption: caption})
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "sent %s\n", id)
	return nil
}

func getFile(cmd *cobra.Command, g *globalOptions, msg, out string) error {
	id, err := client.ParseMessageID(msg)
	if err != nil {
		return err
	}
	d, err := g.open(cmd)
	if err != nil {
		return err
	}
	defer d.Close()
	rec, err := d.find(id)
	if err != nil {
		return err
	}
	if rec.Attachment == nil {
		return fmt.Errorf("message %s carries no file", id)
	}
	if _, err := os.Lstat(out); err == nil {
		return fmt.Errorf("--out: %s exists", out)
	}
	// Downloads are anonymous, by the attachment's id (docs/spec/attachments.md
	// §Download); PATH appears only once every byte verified.
	if err := d.DownloadAttachment(cmd.Context(), rec.Attachment, out, nil); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %d bytes\n", out, rec.Attachment.Size)
	return nil
}

// find returns the history record of message id, in any conversation.
func (d *device) find(id client.MessageID) (*client.Record, error) {
	convs, err := d.Conversations()
	if err != nil {
		return nil, err
	}
	for _, u := range convs {
		recs, err := d.History(u, 0)
		if err != nil {
			return nil, err
		}
		for i := range recs {
			if recs[i].ID == id {
				return &recs[i], nil
			}
		}
	}
	return nil, fmt.Errorf("no message %s in the local history", id)
}

// watch prints the events of a sync (follow false), or of the push
// channel until the context ends or count messages arrived.
func watch(cmd *cobra.Command, g *globalOptions, follow bool, count int) error {
	d, err := g.open(cmd)
	if err != nil {
		return err
	}
	defer d.Close()
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	out := cmd.OutOrStdout()
	if !follow { // Run monitors on every connection (EventAlert)
		if err := d.monitor(ctx, cmd); err != nil {
			return d.checkRevoked(ctx, err)
		}
	}
	done := make(chan error, 1)
	go func() {
		if follow {
			done <- d.Run(ctx)
		} else {
			done <- d.Sync(ctx)
		}
	}()
	messages := 0
	for {
		select {
		case ev := <-d.Events():
			d.printEvent(ctx, out, ev)
			if ev.Kind == client.EventMessage {
				messages++
				if count > 0 && messages == count {
					cancel()
					err := <-done
					d.drain(ctx, out)
					if errors.Is(err, context.Canceled) {
						err = nil
					}
					return d.checkRevoked(cmd.Context(), err)
				}
			}
		case err := <-done:
			d.drain(ctx, out)
			if follow && errors.Is(err, context.Canceled) && cmd.Context().Err() != nil {
				return nil // interrupted
			}
			return d.checkRevoked(cmd.Context(), err)
		}
	}
}

// monitor checks this user's own label in the key directory since the
// last check (client.Monitor) and prints an alert line for every change
// that no device of the user made. Only a revocation of this device is an
// error (the store is wiped); a failed check is reported on stderr.
func (d *device) monitor(ctx context.Context, cmd *cobra.Command) error {
	alerts, err := d.Monitor(ctx)
	d.printAlerts(cmd.OutOrStdout(), alerts)
	if errors.Is(err, client.ErrRevoked) {
		return err
	}
	if err != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "moat: could not check this user's label in the key directory: %v\n", err)
	}
	return nil
}

func (d *device) printAlerts(w io.Writer, alerts []client.Alert) {
	for _, a := range alerts {
		fmt.Fprintf(w, "alert %s: device %s (epoch %d)\n", a.Kind, a.Device, a.Epoch)
	}
}

// drain prints the events already emitted.
func (d *device) drain(ctx context.Context, w io.Writer) {
	for {
		select {
		case ev := <-d.Events():
			d.printEvent(ctx, w, ev)
		default:
			return
		}
	}
}

// checkRevoked returns err; if the client found this device revoked
// (and wiped its store), it also removes the device's configuration and
// says so.
func (d *device) checkRevoked(ctx context.Context, err error) error {
	if !errors.Is(err, client.ErrRevoked) {
		return err
	}
	revoked(d.data)
	d.drain(ctx, io.Discard)
	return fmt.Errorf("this device was revoked by the organisation; its local store is wiped: %w", err)
}

func wipe(cmd *cobra.Command, g *globalOptions, file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("--instruction: %w", err)
	}
	d, err := g.open(cmd)
	if err != nil {
		return err
	}
	defer d.Close()
	err = d.Wipe(b)
	if !errors.Is(err, client.ErrRevoked) {
		return err
	}
	revoked(d.data)
	fmt.Fprintln(cmd.OutOrStdout(), "wiped: the organisation's wipe instruction verified; the local store is destroyed")
	return nil
}

// printEvent prints one event on one line.
func (d *device) printEvent(ctx context.Context, w io.Writer, ev client.Event) {
	switch ev.Kind {
	case client.EventMessage:
		if ev.Record != nil {
			d.printRecord(ctx, w, ev.Record)
		}
	case client.EventEdited:
		if ev.Record != nil {
			fmt.Fprintf(w, "edited %s %s: %s\n", ev.Message, d.name(ctx, ev.Record.From), ev.Record.Text)
		}
	case client.EventDeleted:
		fmt.Fprintf(w, "deleted %s\n", ev.Message)
	case client.EventExpired:
		fmt.Fprintf(w, "expired %s\n", ev.Message)
	case client.EventReaction:
		if ev.Record != nil {
			for u, r := range ev.Record.Reactions {
				fmt.Fprintf(w, "reaction %s %s %s\n", ev.Message, d.name(ctx, u), r)
			}
		}
	case client.EventReceipt:
		if ev.Record != nil {
			for _, u := range ev.Record.Delivered {
				fmt.Fprintf(w, "delivered %s %s\n", ev.Message, d.name(ctx, u))
			}
			for _, u := range ev.Record.Read {
				fmt.Fprintf(w, "read %s %s\n", ev.Message, d.name(ctx, u))
			}
		}
	case client.EventTimer:
		if ev.Record != nil {
			fmt.Fprintf(w, "timer %s %s %v\n", ev.Message, d.name(ctx, ev.Record.From), ev.Record.Timer)
		}
	case client.EventError:
		fmt.Fprintf(w, "refused: %v\n", ev.Err)
	case client.EventRevoked:
		fmt.Fprintln(w, "revoked: the organisation revoked this device; its local store is wiped")
	case client.EventAlert:
		if ev.Alert != nil {
			d.printAlerts(w, []client.Alert{*ev.Alert})
		}
	case client.EventConnected:
	}
}

// printRecord prints a history record on one line:
//
//	ID YYYY-MM-DD HH:MM NAME: TEXT [(reply to ID)] [(mentions NAME, ...)] [(edited)] [(disappears TIME)] [[NAME EMOJI] ...]
func (d *device) printRecord(ctx context.Context, w io.Writer, r *client.Record) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s: ", r.ID, r.Sent.Local().Format("2006-01-02 15:04"), d.name(ctx, r.From))
	switch r.Kind {
	case client.KindTimer:
		if r.Timer == 0 {
			b.WriteString("[disappearing messages off]")
		} else {
			fmt.Fprintf(&b, "[disappearing messages: %v]", r.Timer)
		}
	case client.KindAttachment:
		if a := r.Attachment; a != nil {
			fmt.Fprintf(&b, "[file %q %d bytes]", a.Name, a.Size)
		}
		if r.Text != "" {
			b.WriteString(" " + r.Text)
		}
	default:
		b.WriteString(r.Text)
	}
	if !r.ReplyTo.IsZero() {
		fmt.Fprintf(&b, " (reply to %s)", r.ReplyTo)
	}
	if len(r.Mentions) > 0 {
		names := make([]string, len(r.Mentions))
		for i, u := range r.Mentions {
			names[i] = d.name(ctx, u)
		}
		fmt.Fprintf(&b, " (mentions %s)", strings.Join(names, ", "))
	}
	if r.Edited {
		b.WriteString(" (edited)")
	}
	if !r.ExpiresAt.IsZero() {
		fmt.Fprintf(&b, " (disappears %s)", r.ExpiresAt.Local().Format("2006-01-02 15:04:05"))
	}
	for u, e := range r.Reactions {
		fmt.Fprintf(&b, " [%s %s]", d.name(ctx, u), e)
	}
	fmt.Fprintln(w, b.String())
}

func history(cmd *cobra.Command, g *globalOptions, user string, n int) error {
	d, u, err := g.openFor(cmd, user)
	if err != nil {
		return err
	}
	defer d.Close()
	recs, err := d.History(u, n)
	if err != nil {
		return err
	}
	d.printRecords(cmd, recs)
	return nil
}

func search(cmd *cobra.Command, g *globalOptions, q string) error {
	d, err := g.open(cmd)
	if err != nil {
		return err
	}
	defer d.Close()
	recs, err := d.Search(q)
	if err != nil {
		return err
	}
	d.printRecords(cmd, recs)
	return nil
}

// printRecords prints recs, one a line.
func (d *device) printRecords(cmd *cobra.Command, recs []client.Record) {
	for _, r := range recs {
		d.printRecord(cmd.Context(), cmd.OutOrStdout(), &r)
	}
}

func verify(cmd *cobra.Command, g *globalOptions, user string) error {
	d, u, err := g.openFor(cmd, user)
	if err != nil {
		return err
	}
	defer d.Close()
	ctx := cmd.Context()
	v, err := d.Verify(ctx, u)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if !v.Verified {
		fmt.Fprintf(out, "unverified %s: %s\n", u, v.Reason)
		return cli.ExitError(2) // verify of an unverified contact exits 2
	}
	fmt.Fprintf(out, "verified %s %s at epoch %d\n", u, d.name(ctx, u), v.Epoch)
	for _, dv := range v.Devices {
		fmt.Fprintf(out, "device %s fingerprint %s\n", dv.Device, dv.Fingerprint)
	}
	for _, s := range v.Unusable {
		fmt.Fprintf(out, "unusable %s\n", s)
	}
	return nil
}

func timeline(cmd *cobra.Command, g *globalOptions, user string) error {
	d, err := g.open(cmd)
	if err != nil {
		return err
	}
	defer d.Close()
	ctx := cmd.Context()
	self := user == ""
	var entries []client.TimelineEntry
	if self {
		entries, err = d.Timeline(ctx)
	} else {
		var u client.UserID
		if u, err = d.resolve(ctx, user); err != nil {
			return err
		}
		self = u == d.Self().User
		entries, err = d.TimelineOf(ctx, u)
	}
	if err != nil {
		return d.checkRevoked(ctx, err)
	}
	out := cmd.OutOrStdout()
	for _, e := range entries {
		fmt.Fprintf(out, "%d %s epoch %d %s", e.Seq, e.Time.UTC().Format(time.RFC3339), e.Epoch, e.Action)
		if e.Device != (client.DeviceID{}) {
			fmt.Fprintf(out, " device %s", e.Device)
		}
		if len(e.Actors) > 0 {
			fmt.Fprintf(out, " by %s", strings.Join(e.Actors, ","))
		}
		fmt.Fprintln(out)
	}
	if !self {
		return nil
	}
	alerts, err := d.Monitor(ctx)
	d.printAlerts(out, alerts)
	return d.checkRevoked(ctx, err)
}

func approve(cmd *cobra.Command, g *globalOptions, o *approveOptions) error {
	req, err := os.ReadFile(o.Request)
	if err != nil {
		return fmt.Errorf("--request: %w", err)
	}
	h := sha256.Sum256(req)
	fp := hex.EncodeToString(h[:])
	want := strings.ToLower(strings.TrimSpace(o.Expect))
	if subtle.ConstantTimeCompare([]byte(fp), []byte(want)) != 1 {
		return fmt.Errorf("the request's fingerprint is %s, not the expected %s: not approved", fp, want)
	}
	d, err := g.open(cmd)
	if err != nil {
		return err
	}
	defer d.Close()
	ap, err := d.ApproveDevice(req)
	if err != nil {
		return err
	}
	if err := os.WriteFile(o.Out, ap, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "approved request %s\nwrote %s\n", fp, filepath.Clean(o.Out))
	return nil
}
