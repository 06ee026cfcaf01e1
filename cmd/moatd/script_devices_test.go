package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"time"

	"github.com/moat-im/moat/crypto/keys"
	"github.com/moat-im/moat/internal/scriptcmds"
	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
	"github.com/rogpeppe/go-internal/testscript"
)

// Script commands for several devices of one script: a device that makes
// its enrolment request before it enrols (so that admins can approve it),
// switching between enrolled devices, and monitoring.

// pendingDevice is a new device's keys and its enrolment request, not
// yet enrolled.
type pendingDevice struct {
	id  *keys.DeviceIdentityPrivate
	req *org.EnrolmentRequest
}

// newPendingDevice generates a device's keys and its request for code.
func newPendingDevice(ts *testscript.TestScript, code *org.EnrolmentCode) *pendingDevice {
	id, err := keys.GenerateDeviceIdentity(rand.Reader)
	ts.Check(err)
	mk, err := keys.GenerateIdentitySigningKey(rand.Reader)
	ts.Check(err)
	mls, err := org.NewMLSSignatureKey(org.MLSSchemeEd25519, mk.Public().Raw())
	ts.Check(err)
	req, err := org.NewEnrolmentRequest(code, id, mls)
	ts.Check(err)
	return &pendingDevice{id: id, req: req}
}

// stash keeps the script's device, if any, among the enrolled devices, so
// that use can switch back to it.
func (st *scriptState) stash() {
	if st.api == nil || st.api.Device == nil {
		return
	}
	if st.devices == nil {
		st.devices = map[org.DeviceID]*scriptDevice{}
	}
	st.devices[st.api.Device.Device] = &scriptDevice{api: st.api, kt: st.kt}
}

// request CODE FILE: a new device makes its enrolment request for CODE and
// writes its encoding to FILE, for admins to approve (moatd admin
// approve); enrol with FILE enrols that device. Prints the request's
// fingerprint, as the device would show it to the admins.
func cmdRequest(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: request code file")
	}
	code, err := org.ParseEnrolmentCodeText(args[0])
	ts.Check(err)
	p := newPendingDevice(ts, code)
	enc, err := p.req.Marshal()
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), enc, 0o644))
	st := state(ts)
	if st.pending == nil {
		st.pending = map[string]*pendingDevice{}
	}
	st.pending[ts.MkAbs(args[1])] = p
	fmt.Fprintf(ts.Stdout(), "request %s\n", requestFingerprint(enc))
}

// use DEVICE: the enrolled device DEVICE (hex id, as enrol prints it)
// becomes the script's device.
func cmdUse(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: use device")
	}
	var id org.DeviceID
	ts.Check(parseHexID(args[0], id[:]))
	st := state(ts)
	st.stash()
	d := st.devices[id]
	if d == nil {
		ts.Fatalf("device %s was not enrolled by this script", args[0])
	}
	st.api, st.kt = d.api, d.kt
}

// monitor ADDRFILE: the script's device runs one monitoring step of its
// own user's label (kt.Client.Monitor, expecting nothing but itself) with
// the history since the version it last processed, from the directory at
// the address in ADDRFILE. Prints the epoch, the version, each alert and
// the number of alerts.
func cmdMonitor(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: monitor addrfile")
	}
	st := state(ts)
	if st.api == nil {
		ts.Fatalf("enrol first")
	}
	user, self := st.api.Device.User, st.api.Device.Device
	st.api.BaseURL = scriptcmds.Addr(ts, args[0])
	var err error
	var alerts []kt.Alert // of every page
	for more := true; more && err == nil; {
		var resp *kt.MonitorResponse
		resp, err = st.api.Monitor(context.Background(), user, st.kt.MonitorSince(user), st.kt.MonitorStart(user), st.kt.TreeSize())
		if err != nil {
			break
		}
		var res *kt.MonitorResult
		if res, err = st.kt.Monitor(user, kt.Expected{Self: self}, resp, time.Now()); err == nil {
			more = res.More
			alerts = append(alerts, res.Alerts...)
			if more {
				continue
			}
			fmt.Fprintf(ts.Stdout(), "epoch %d\nversion %d\n", res.Epoch, res.Version)
			for _, a := range alerts {
				fmt.Fprintf(ts.Stdout(), "alert %v: device %s\n", a.Kind, a.Device)
			}
			fmt.Fprintf(ts.Stdout(), "alerts %d\n", len(alerts))
		}
	}
	if (err == nil) == neg {
		ts.Fatalf("monitor: %v", err)
	}
	if err != nil {
		fmt.Fprintf(ts.Stdout(), "%v\n", err)
	}
}

// parseHexID parses an id in hex of exactly len(id) bytes.
func parseHexID(s string, id []byte) error {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return fmt.Errorf("bad id %q", s)
	}
	copy(id, b)
	return nil
}
