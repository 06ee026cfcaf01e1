package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/internal/scriptcmds"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/kt/kttest"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/moat-im/moat/keyserver/service"
	"github.com/moat-im/moat/server/relay"
	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	// The scripts run moatd as a subprocess of this test binary.
	testscript.Main(m, map[string]func(){"moatd": main})
}

// TestScript runs the transcripts in testdata/script, but for the
// adversarial cases' (t<NN>_*.txtar), which run under their own TestT<NN>
// names. They also run the real moat-witness, built here from
// ./cmd/moat-witness.
func TestScript(t *testing.T) {
	all, err := filepath.Glob("testdata/script/*.txtar")
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, f := range all {
		if !adversarialScript.MatchString(filepath.Base(f)) {
			files = append(files, f)
		}
	}
	runScripts(t, files...)
}

// adversarialScript matches the names of the adversarial cases'
// transcripts, t<NN>_*.txtar.
var adversarialScript = regexp.MustCompile(`^t\d\d_`)

// TestT27SplitViewWithWitnessBinaries (adversarial case T27) runs
// testdata/script/t27_split_view.txtar: a split view against three real
// moat-witness processes in a 2-of-3 set, with moatd.
func TestT27SplitViewWithWitnessBinaries(t *testing.T) {
	runScripts(t, "testdata/script/t27_split_view.txtar")
}

// runScripts runs the transcripts files with moatd, the real moat-witness
// (built here from ./cmd/moat-witness) and the script commands below.
func runScripts(t *testing.T, files ...string) {
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "moat-witness"), "github.com/moat-im/moat/cmd/moat-witness")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("building moat-witness: %v", err)
	}
	testscript.Run(t, testscript.Params{
		Files:               files,
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("PATH", bin+string(os.PathListSeparator)+env.Getenv("PATH"))
			env.Values[scriptStateKey{}] = &scriptState{}
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitfile":   scriptcmds.WaitFileCmd,
			"waitready":  scriptcmds.WaitReadyCmd,
			"envfrom":    scriptcmds.EnvFrom,
			"enrol":      cmdEnrol,
			"lookup":     cmdLookup,
			"httpget":    cmdHTTPGet,
			"perm":       scriptcmds.Perm,
			"orglookup":  cmdOrgLookup,
			"escrow":     cmdEscrow,
			"follow":     cmdFollow,
			"history":    cmdHistory,
			"request":    cmdRequest,
			"use":        cmdUse,
			"monitor":    cmdMonitor,
			"splitview":  cmdSplitView,
			"relayfetch": cmdRelayFetch,
			"relaytoken": cmdRelayTokens,
		},
	})
}

type scriptStateKey struct{}

// scriptState is the script's device (its API client, with its keys, and
// its kt client), the other devices it enrolled, the enrolment requests it
// made, and the views of a split-view attack (splitview).
type scriptState struct {
	api *service.Client
	kt  *kt.Client

	devices map[org.DeviceID]*scriptDevice
	pending map[string]*pendingDevice // by the request file's absolute path
	views   map[string]*logView
}

// scriptDevice is an enrolled device that is not the script's device at
// the moment (use switches).
type scriptDevice struct {
	api *service.Client
	kt  *kt.Client
}

func state(ts *testscript.TestScript) *scriptState {
	return ts.Value(scriptStateKey{}).(*scriptState)
}

// enrol ADDRFILE CODE [REQUESTFILE]: a new device enrols with CODE at the
// directory at the address in ADDRFILE, checks the answer (kt.Enrol: the
// trust bundle against the code's fingerprint, the certificate against its
// keys, its clock against the enrolment's time floor, the first
// checkpoint), and becomes the script's device. With REQUESTFILE, the
// device is the one request made that file for (it stays pending if the
// enrolment is refused). Prints the device id.
func cmdEnrol(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 && len(args) != 3 {
		ts.Fatalf("usage: enrol addrfile code [requestfile]")
	}
	code, err := org.ParseEnrolmentCodeText(args[1])
	ts.Check(err)
	st := state(ts)
	var p *pendingDevice
	if len(args) == 3 {
		if p = st.pending[ts.MkAbs(args[2])]; p == nil {
			ts.Fatalf("no request in %s: make one with request", args[2])
		}
		if p.req.Code != code.ID {
			ts.Fatalf("%s is a request for another code", args[2])
		}
	} else {
		p = newPendingDevice(ts, code)
	}
	ts.Check(kt.CheckEnrolmentClock(code, 0, time.Now()))
	api := &service.Client{BaseURL: scriptcmds.Addr(ts, args[0]), Tenant: code.Tenant}
	res, err := api.Enrol(context.Background(), code, p.req)
	if neg {
		if err == nil {
			ts.Fatalf("enrolment succeeded")
		}
		fmt.Fprintf(ts.Stdout(), "%v\n", err)
		return
	}
	ts.Check(err)
	c, cert, err := kt.Enrol(code, p.req, res.Enrolment(), time.Hour, 0, time.Now())
	ts.Check(err)
	if len(args) == 3 {
		delete(st.pending, ts.MkAbs(args[2]))
	}
	api.Device = &service.DeviceCredentials{User: cert.User, Device: cert.Device, Key: p.id.Signing}
	st.stash()
	st.api, st.kt = api, c
	fmt.Fprintf(ts.Stdout(), "device %s\n", cert.Device)
}

// lookup ADDRFILE USER: the script's device looks USER up at the address
// in ADDRFILE and verifies the answer; prints the epoch and the number of
// usable devices, or the error.
func cmdLookup(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: lookup addrfile user")
	}
	st := state(ts)
	if st.api == nil {
		ts.Fatalf("enrol first")
	}
	user, err := service.ParseUserID(args[1])
	ts.Check(err)
	st.api.BaseURL = scriptcmds.Addr(ts, args[0])
	resp, err := st.api.Lookup(context.Background(), user, st.kt.TreeSize())
	if err == nil {
		var res *kt.LookupResult
		if res, err = st.kt.VerifyLookup(st.kt.Tenant(), user, resp, time.Now()); err == nil {
			fmt.Fprintf(ts.Stdout(), "epoch %d\ndevices %d\n", res.Epoch, len(res.Devices))
		}
	}
	if (err == nil) == neg {
		ts.Fatalf("lookup: %v", err)
	}
	if err != nil {
		fmt.Fprintf(ts.Stdout(), "%v\n", err)
	}
}

// follow ADDRFILE: the script's device follows the tenant's new trust
// bundle (after verifying the CA rotation to it, if there is one), then
// saves its state and restores it with the new bundle, as an app that
// restarts would; prints the bundle's sequence.
func cmdFollow(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: follow addrfile")
	}
	st := state(ts)
	if st.api == nil {
		ts.Fatalf("enrol first")
	}
	ctx := context.Background()
	st.api.BaseURL = scriptcmds.Addr(ts, args[0])
	var rot *kt.OrgLookupResult
	rr, err := st.api.LookupOrg(ctx, org.OrgLabelCARotation, st.kt.TreeSize())
	ts.Check(err)
	r, err := st.kt.VerifyOrgLookup(org.OrgLabelCARotation, rr, time.Now())
	switch {
	case err == nil:
		if r.Statement.(*org.CARotation).Old.Equal(st.kt.Bundle().CA) {
			rot = r
		}
	case !errors.Is(err, kt.ErrNotFound):
		ts.Fatalf("CA rotation: %v", err)
	}
	resp, err := st.api.LookupOrg(ctx, org.OrgLabelTrustBundle, st.kt.TreeSize())
	ts.Check(err)
	nb, err := st.kt.FollowTrustBundle(rot, resp, time.Now())
	ts.Check(err)
	saved, err := st.kt.MarshalState()
	ts.Check(err)
	st.kt, err = kt.RestoreClient(kt.Config{Bundle: nb, MaxAge: time.Hour}, saved)
	ts.Check(err)
	fmt.Fprintf(ts.Stdout(), "bundle %d\n", nb.Sequence)
}

// history ADDRFILE USER: the script's device verifies USER's whole history
// and prints the number of versions and the epoch of the first.
func cmdHistory(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: history addrfile user")
	}
	st := state(ts)
	user, err := service.ParseUserID(args[1])
	ts.Check(err)
	st.api.BaseURL = scriptcmds.Addr(ts, args[0])
	resp, err := st.api.History(context.Background(), user, 0, st.kt.TreeSize())
	ts.Check(err)
	res, err := st.kt.VerifyHistory(st.kt.Tenant(), user, kt.Position{}, resp, time.Now())
	ts.Check(err)
	fmt.Fprintf(ts.Stdout(), "versions %d\nfirst-epoch %d\n", len(res.Records), res.Records[0].Epoch)
}

// httpget ADDRFILE PATH: prints the status and body of GET PATH.
func cmdHTTPGet(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: httpget addrfile path")
	}
	resp, err := http.Get(scriptcmds.Addr(ts, args[0]) + args[1])
	ts.Check(err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	ts.Check(err)
	fmt.Fprintf(ts.Stdout(), "status %d\n%s", resp.StatusCode, b)
}

// orglookup ADDRFILE NAME: the script's device looks up the org label NAME
// and verifies the answer; prints the statement's type and sequence, and
// for the org chart each department (id, parent or -, name) and member
// (user, department or -, display name).
func cmdOrgLookup(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: orglookup addrfile name")
	}
	st := state(ts)
	if st.api == nil {
		ts.Fatalf("enrol first")
	}
	st.api.BaseURL = scriptcmds.Addr(ts, args[0])
	resp, err := st.api.LookupOrg(context.Background(), args[1], st.kt.TreeSize())
	if err == nil {
		var res *kt.OrgLookupResult
		if res, err = st.kt.VerifyOrgLookup(args[1], resp, time.Now()); err == nil {
			switch s := res.Statement.(type) {
			case *org.PolicyBundle:
				fmt.Fprintf(ts.Stdout(), "policy %s sequence %d entries %d\n", s.PolicyID, s.Sequence, len(s.Entries))
			case *org.EscrowPolicy:
				fmt.Fprintf(ts.Stdout(), "escrow policy sequence %d version %d auditors %d of %d keys %d\n", s.Sequence, s.PolicyVersion, s.M, s.N, len(s.Keys))
			case *org.AdminRoster:
				fmt.Fprintf(ts.Stdout(), "roster sequence %d threshold %d admins %d\n", s.Sequence, s.Threshold, len(s.Admins))
			case *org.OrgChart:
				fmt.Fprintf(ts.Stdout(), "org chart sequence %d departments %d members %d\n", s.Sequence, len(s.Departments), len(s.Members))
				for _, d := range s.Departments {
					fmt.Fprintf(ts.Stdout(), "department %s parent %s name %q\n", d.ID, idOrNone(d.Parent), d.Name)
				}
				for _, m := range s.Members {
					fmt.Fprintf(ts.Stdout(), "member %s department %s name %q\n", m.User, idOrNone(m.Department), m.DisplayName)
				}
			default:
				fmt.Fprintf(ts.Stdout(), "%T\n", s)
			}
		}
	}
	if (err == nil) == neg {
		ts.Fatalf("org lookup: %v", err)
	}
}

// escrow FILE N: writes to FILE an escrow policy (version 1) of the script
// device's tenant, 2 of 3 auditors, one escrow key, signed by the first N
// auditors, as the auditors' key ceremony would hand it to an admin.
func cmdEscrow(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: escrow file signers")
	}
	st := state(ts)
	if st.kt == nil {
		ts.Fatalf("enrol first")
	}
	n, err := strconv.Atoi(args[1])
	ts.Check(err)
	esc, err := kttest.NewEscrow(rand.Reader, 3)
	ts.Check(err)
	b := st.kt.Bundle()
	signers := []int{0, 1, 2}[:n]
	p, err := esc.Policy(b.Tenant, 1, 2, b.Witnesses, time.Now(), signers...)
	ts.Check(err)
	enc, err := service.MarshalEscrowProposal(p)
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), enc, 0o644))
}

// idOrNone is the hex id, or - for the zero id (none).
func idOrNone(id org.DepartmentID) string {
	if id.IsZero() {
		return "-"
	}
	return id.String()
}

// relayfetch ADDRFILE PUBFILE: the script's enrolled device authenticates
// to the relay at ADDRFILE (moatd serve) and fetches its mailbox, checking
// the signed head with the relay key in PUBFILE; prints the head and the
// number of messages.
func cmdRelayFetch(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: relayfetch addrfile pubfile")
	}
	st := state(ts)
	if st.api == nil || st.api.Device == nil {
		ts.Fatalf("relayfetch: enrol first")
	}
	key, err := keys.ParseRelaySigningPublicKeyText(strings.TrimSpace(ts.ReadFile(args[1])))
	ts.Check(err)
	c := &relay.Client{BaseURL: scriptcmds.Addr(ts, args[0]), RelayKey: key, Device: &relay.DeviceCredentials{
		Tenant: st.api.Tenant, Device: st.api.Device.Device, Key: st.api.Device.Key}}
	p, err := c.Fetch(context.Background(), 0, 10)
	if neg {
		if err == nil {
			ts.Fatalf("relay fetch succeeded")
		}
		fmt.Fprintf(ts.Stdout(), "%v\n", err)
		return
	}
	ts.Check(err)
	fmt.Fprintf(ts.Stdout(), "head %d messages %d\n", p.Head.Head, len(p.Messages))
}
