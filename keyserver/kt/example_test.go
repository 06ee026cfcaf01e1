package kt_test

import (
	"fmt"
	"time"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/kt/kttest"
	"github.com/moat-im/moat/keyserver/org"
)

// Example runs a key directory in memory and a client against it: a
// contact looks up a user's devices, and the user's own device monitors
// its label and catches a device that admins added without it.
func Example() {
	now := kttest.T0
	d, err := kttest.New(kttest.Options{Seed: 1})
	if err != nil {
		panic(err)
	}
	alice := org.UserID{0x05, 1}
	_ = d.AddUser(alice, "Alice", now)
	phone, _ := d.Enrol(alice, nil, now) // alice's first device
	_, _ = d.PublishEpoch(now.Add(time.Minute))

	// A contact looks alice up. The trust bundle comes from its own
	// enrolment (org.CheckTrustBundle against its enrolment code).
	contact, _ := kt.NewClient(kt.Config{Bundle: d.TrustBundle(), MaxAge: time.Hour})
	resp, _ := d.Lookup(alice, contact.TreeSize())
	res, err := contact.VerifyLookup(d.Tenant.ID(), alice, resp, now.Add(2*time.Minute))
	fmt.Println("lookup:", err, len(res.Devices), "device(s) at epoch", res.Epoch)

	// Alice's phone monitors her label from its own enrolment on.
	mon, _ := kt.NewClient(kt.Config{Bundle: d.TrustBundle(), MaxAge: time.Hour})
	self := kt.Expected{Self: phone.ID}
	step, _ := d.Monitor(alice, phone.ID, mon.MonitorSince(alice), mon.MonitorStart(alice), mon.TreeSize())
	r, _ := mon.Monitor(alice, self, step, now.Add(2*time.Minute))
	fmt.Println("baseline alerts:", len(r.Alerts))

	// Two admins "recover" a device for alice without her phone.
	_, _ = d.Recover(alice, 2, now.Add(3*time.Minute))
	_, _ = d.PublishEpoch(now.Add(4 * time.Minute))
	step, _ = d.Monitor(alice, phone.ID, mon.MonitorSince(alice), mon.MonitorStart(alice), mon.TreeSize())
	r, _ = mon.Monitor(alice, self, step, now.Add(5*time.Minute))
	for _, a := range r.Alerts {
		fmt.Println("alert:", a.Kind, "at epoch", a.Epoch)
	}
	// Output:
	// lookup: <nil> 1 device(s) at epoch 0
	// baseline alerts: 0
	// alert: device recovered by admins at epoch 1
}
