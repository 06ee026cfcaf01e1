package service_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"regexp"
	"strconv"
	"testing"

	"github.com/moat-im/moat/keyserver/kt"
	"github.com/moat-im/moat/keyserver/org"
)

// vrfEvaluations reads moat_directory_vrf_evaluations_total of the
// world's tenant.
func (w *world) vrfEvaluations() int {
	m := regexp.MustCompile(`(?m)^moat_directory_vrf_evaluations_total\{tenant="` + w.tenant.String() + `"\} (\d+)$`).FindStringSubmatch(get(w.t, w.srv.URL+"/metrics"))
	if m == nil {
		return 0 // not counted yet
	}
	return must(strconv.Atoi(m[1]))
}

// TestVRFOutputsSurviveRestart: the VRF outputs of published labels are
// kept in the store, under the VRF key's id and the input's hash, as the
// label and proof the VRF gives; after a restart, lookups and the epochs
// that write those labels again read them instead of evaluating the VRF
// (the evaluation counter stays at 0); a new user's label is evaluated
// once, and kept too. With badger (a clean restart and a crash) and the
// memstore.
func TestVRFOutputsSurviveRestart(t *testing.T) {
	for _, badger := range []bool{false, true} {
		t.Run(fmt.Sprintf("badger=%v", badger), func(t *testing.T) {
			ctx := context.Background()
			w := newWorld(t, worldOptions{seed: 122, badger: badger})
			alice, bob := w.addUser("Alice"), w.addUser("Bob")
			a1 := w.mustEnrol(alice)
			b1 := w.mustEnrol(bob)
			w.publish()
			// The store holds the outputs of both users' labels.
			h := sha256.New()
			h.Write([]byte("moat/v1/directory-service/vrf-outputs\x00"))
			h.Write(w.keys.VRF.Public().Bytes())
			keyID := [32]byte(h.Sum(nil))
			for _, u := range []org.UserID{alice, bob} {
				alpha := kt.UserAlpha(w.tenant, u)
				label, pi := kt.EvaluateLabel(w.keys.VRF, alpha)
				var got []byte
				ok(t, w.st.GetVRFOutputs(ctx, keyID, [][32]byte{sha256.Sum256(alpha)}, func(_ int, o []byte) { got = append([]byte{}, o...) }))
				if string(got) != string(append(label[:], pi...)) {
					t.Fatalf("stored output of %s: %x", u, got)
				}
			}

			restart := func(crash bool) {
				if crash {
					w.crash()
				} else {
					w.stop()
					w.start()
				}
				if n := w.vrfEvaluations(); n != 0 {
					t.Fatalf("%d VRF evaluations opening the tenant", n)
				}
			}
			must(w.lookup(a1, bob)) // proves the ca-rotation label (absent)
			restart(!badger)
			// Lookups and a new version of alice's label: no evaluation.
			must(w.lookup(b1, alice))
			must(w.lookup(a1, bob))
			a2 := must(w.enrol(alice, func(req *org.EnrolmentRequest) []*org.Approval {
				return []*org.Approval{must(org.ApproveByDevice(a1.id.Signing, a1.cert.Device, alice, req))}
			}))
			w.publish()
			if _, err := w.lookup(a2, bob); err != nil {
				t.Fatal(err)
			}
			if n := w.vrfEvaluations(); n != 0 {
				t.Fatalf("%d VRF evaluations after the restart, want 0", n)
			}
			// A new user: one evaluation, kept.
			carol := w.addUser("Carol")
			w.mustEnrol(carol)
			w.publish()
			if n := w.vrfEvaluations(); n != 1 {
				t.Fatalf("%d VRF evaluations for a new user, want 1", n)
			}
			restart(true)
			lr, err := w.lookup(a1, carol)
			if err != nil || len(lr.Devices) != 1 {
				t.Fatalf("lookup of the new user after the restart: %v", err)
			}
			if n := w.vrfEvaluations(); n != 0 {
				t.Fatalf("%d VRF evaluations after the second restart, want 0", n)
			}
		})
	}
}
