package kt_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/kt/kttest"
	"github.com/moat-im/moat/keyserver/org"
)

var t0 = kttest.T0

const maxAge = time.Hour

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func ok(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func uid(b byte) org.UserID { return org.UserID{0x05, b} }

// at returns t0 plus n minutes.
func at(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }

// world is a directory with users alice (one device) and bob (two
// devices), published at epoch 0.
type world struct {
	d          *kttest.Directory
	alice, bob org.UserID
	a1, b1, b2 *kttest.Device
	tenant     org.TenantID
	// firstBundle is the trust bundle the world started with.
	firstBundle *org.TrustBundle
}

func newWorld(t testing.TB, seed uint64) *world {
	t.Helper()
	d := must(kttest.New(kttest.Options{Seed: seed}))
	w := &world{d: d, alice: uid(1), bob: uid(2), tenant: d.Tenant.ID(), firstBundle: d.TrustBundle()}
	ok(t, d.AddUser(w.alice, "Alice", at(0)))
	ok(t, d.AddUser(w.bob, "Bob", at(0)))
	w.a1 = must(d.Enrol(w.alice, nil, at(0)))
	w.b1 = must(d.Enrol(w.bob, nil, at(0)))
	w.b2 = must(d.Enrol(w.bob, w.b1, at(0)))
	must(d.PublishEpoch(at(1)))
	return w
}

func (w *world) client(t testing.TB) *kt.Client {
	t.Helper()
	return must(w.d.NewClient(maxAge))
}

// state returns the client's state, for byte-identical comparisons.
func state(t testing.TB, c *kt.Client) []byte {
	t.Helper()
	return must(c.MarshalState())
}

func sameState(t testing.TB, c *kt.Client, before []byte) {
	t.Helper()
	if !bytes.Equal(before, state(t, c)) {
		t.Fatal("rejected response changed the client's state")
	}
}
